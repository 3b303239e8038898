"""The proxy's own resolver (libunbound, resolver = { ... }) for a fixed
destination given as a name, against a DNSSEC-signed example.net served by
nsd (dnszone.py) on a 127.x address of its own per test, with the zone's DS
record as the only trust anchor:

  - mx.example.net resolves through the zone (validated: dnssec=secure in the
    debug log) and the mail is delivered to the scripted destination that
    its A record (127.0.0.1) points at; a CNAME is followed;
  - a name that does not exist gives "421 4.4.1" at once, end=destination_not_found
    and a resolve_failed line saying why (NXDOMAIN, proven by NSEC);
  - with the RRSIG over mx's A record broken, dnssec = "validate" gives a
    temporary "421 4.4.3" (the address could not be had: RFC 3463's directory
    server failure, as Postfix defers a bogus address lookup; 4.7.5 is kept
    for TLSA), end=dnssec_bogus, and nothing reaches the destination; never a
    silent success;
  - dnssec = "off" resolves that same bogus zone and delivers.
"""

import itertools
import os
import time
import unittest

import dnszone
import harness
import outbound_harness as oh
from harness import ProxyTestCase

EHLO = ["dest.example.net", "PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"]
BODY = b"Subject: resolver\r\n\r\nresolved body\r\n"

_addrs = itertools.count(1)


def zone_ip():
    """A 127.x address no other test (or run) in this process uses."""
    n = next(_addrs)
    return "127.53.%d.%d" % (os.getpid() % 250 + 1, n % 250 + 1)


@unittest.skipIf(dnszone.available(), dnszone.available() or "")
class ResolverTest(ProxyTestCase):

    def zone(self, broken=()):
        # Its own address, and a high port so that the sandbox needs no
        # privilege to bind it.
        z = dnszone.Zone(harness.new_tmpdir("zone"), zone_ip(), port=10053)
        for name, rtype in broken:
            z.break_signature(name, rtype)
        try:
            z.start()
        except OSError as e:
            self.skipTest("cannot start nsd: %s" % e)
        self.addCleanup(z.stop)
        return z

    def start_out(self, z, host, dest, dnssec="validate"):
        resolver = {"servers": [z.server], "dnssec": dnssec}
        if dnssec == "validate":
            resolver["trust_anchor"] = z.trust_anchor
        l = oh.outbound_listener("%s:%d" % (host, dest.port), "none")
        return self.proxy(oh.outbound_config([l], resolver=resolver))

    def destination(self):
        return self.backend(name="destination", ehlo=EHLO,
                            greeting=b"220 dest.example.net ESMTP\r\n")

    def client(self, p):
        return harness.Client(p.port)

    def delivered(self, p, z, host="mx.example.net"):
        d = self.destination()
        p = self.start_out(z, host, d, **p)
        c = self.client(p)
        self.assertEqual(c.greeting().code, 220)
        self.assertEqual(c.ehlo("legacy.example.org").code, 250)
        codes = [r.code for r in c.send_message("a@example.org", ["b@example.net"], BODY)]
        self.assertEqual(codes, [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(c.cmd("QUIT").code, 221)
        kv = p.wait_session_end(c.local_port)
        self.assertIsNotNone(kv, p.log()[-2000:])
        self.assertEqual(kv["destination"], "%s:%d" % (host, d.port), kv["_line"])
        self.assertEqual(kv["end"], "quit", kv["_line"])
        return p

    def refused(self, p, d):
        """The first reply the client gets is the proxy's 421; returns it and
        the session line."""
        c = self.client(p)
        t0 = time.monotonic()
        r = c.read_reply(5)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.code, 421, r)
        c.expect_closed(5)
        kv = p.wait_session_end(c.local_port)
        self.assertIsNotNone(kv, p.log()[-2000:])
        self.assertEqual(d.conns, [], "the destination was dialled")
        return r, kv, elapsed

    def test_resolves_signed_zone_and_delivers(self):
        z = self.zone()
        p = self.delivered({}, z)
        self.assertRegex(p.log(), r"event=resolved destination=mx\.example\.net:\d+ dnssec=secure")

    def test_cname_is_followed(self):
        z = self.zone()
        p = self.delivered({}, z, host="alias.example.net")
        self.assertRegex(p.log(), r"event=resolved destination=alias\.example\.net:\d+ "
                                  r"dnssec=secure")

    def test_nonexistent_name_is_421_441_quickly(self):
        z = self.zone()
        d = self.destination()
        p = self.start_out(z, "nope.example.net", d)
        r, kv, elapsed = self.refused(p, d)
        self.assertEqual(r.enhanced, "4.4.1", r)
        self.assertLess(elapsed, 3.0, "NXDOMAIN took %.1f s" % elapsed)
        self.assertEqual(kv["end"], "destination_not_found", kv["_line"])
        line = p.wait_log(r"event=resolve_failed destination=nope\.example\.net:\d+ "
                          r"dns=not_found error=\"NXDOMAIN\"")
        self.assertTrue(line, p.log()[-2000:])

    def test_bogus_zone_is_temporary_refusal_under_validate(self):
        z = self.zone(broken=[("mx", "A")])
        d = self.destination()
        p = self.start_out(z, "mx.example.net", d)
        r, kv, _ = self.refused(p, d)
        self.assertEqual(r.enhanced, "4.4.3", r)
        self.assertIn("DNSSEC", r.text, r)
        self.assertEqual(kv["end"], "dnssec_bogus", kv["_line"])
        self.assertTrue(p.wait_log(r"event=resolve_failed destination=mx\.example\.net:\d+ "
                                   r"dns=dnssec_bogus error=\"[^\"]*signature"),
                        p.log()[-2000:])

    def test_bogus_zone_resolves_with_dnssec_off(self):
        z = self.zone(broken=[("mx", "A")])
        p = self.delivered({"dnssec": "off"}, z)
        self.assertRegex(p.log(), r"event=resolved destination=mx\.example\.net:\d+ "
                                  r"dnssec=insecure")


if __name__ == "__main__":
    unittest.main()
