"""resolver.dnssec = "trust-ad": the proxy's stub resolver (proxy/net/
resolver_stub.c) believes the AD bit of a loopback recursor. The recursor
is a real validating unbound (validating_resolver.Unbound, here without a
network namespace: on a 127.55.x.y address and a free port of its own) with
a stub zone at the signed example.net on nsd (dnszone.py) and that zone's DS
as its only trust anchor:

  - a fixed destination mx.example.net resolves through unbound, secure (AD
    set), and the mail is delivered;
  - dane = true with a DANE-EE (3 1 1) record for the destination's
    certificate: the TLSA answer is secure by AD, delivered tls-verified,
    auth=dane;
  - a broken RRSIG over mx's A record: unbound answers SERVFAIL (its AAAA
    stays secure), which the stub takes as bogus, as libunbound's would be:
    a temporary "421 4.4.3", end=dnssec_bogus, the destination never dialled
    (not even over the AAAA);
  - pointed straight at nsd, which never sets AD, every answer is insecure:
    DANE does not apply (no TLSA lookup) even with a TLSA record that would
    refuse the session, and the mail is delivered under `policy`;
  - a first server that never answers: after its timeout and one retry the
    stub asks the next one, and the mail is delivered.

ResolvConfTest: without `servers`, `smtp-tls-proxy -t` in a mount namespace
whose /etc/resolv.conf is bind-mounted (validating_resolver.Namespace; root)
takes its nameservers: all loopback is accepted, one remote server is a
FILE:LINE error naming it, none is an error too.
"""

import os
import random
import socket
import subprocess
import time
import unittest

import dnszone
import harness
import outbound_harness as oh
import test_dane
import validating_resolver
from harness import ProxyTestCase

EHLO_PLAIN = ["mx.example.net", "PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"]
HOST = "mx.example.net"
BODY = b"Subject: trust-ad\r\n\r\nbody\r\n"

_rng = random.SystemRandom()


def unavailable():
    if dnszone.available():
        return dnszone.available()
    for tool in ("unbound", "unbound-checkconf"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin"]):
            return "%s not installed (bazel/deps.sh: unbound)" % tool
    return None


class HostNamespace:
    """validating_resolver.Unbound's view of a namespace, for the host's own
    network: commands and sockets run here, as they are."""

    def popen(self, cmd, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(list(cmd), **kw)

    def run(self, cmd, timeout=20):
        r = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        return r.returncode, r.stdout.decode("utf-8", "replace")

    def run_in(self, fn, *args, timeout=30):
        return fn(*args)


def free_udp_tcp_port(ip):
    """A port free for both UDP and TCP on ip."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind((ip, 0))
            port = u.getsockname()[1]
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                t.bind((ip, port))
                return port
            except OSError:
                continue
            finally:
                t.close()
        finally:
            u.close()
    raise RuntimeError("no free port on %s" % ip)


@unittest.skipIf(unavailable(), unavailable() or "")
class TrustAdTest(ProxyTestCase):

    def zone(self, *tlsa, port=None, broken=()):
        for attempt in range(3):
            z = dnszone.Zone(harness.new_tmpdir("zone"), test_dane.zone_ip(), port=10053)
            z.set_tlsa("_25._tcp.mx")
            if tlsa:
                z.set_tlsa("_%d._tcp.mx" % port, *tlsa)
            for name, rtype in broken:
                z.break_signature(name, rtype)
            try:
                z.start()
                break
            except (OSError, RuntimeError) as e:  # the address may be taken
                if attempt == 2:
                    self.skipTest("cannot start nsd: %s" % e)
        self.addCleanup(z.stop)
        return z

    def unbound(self, z):
        ip = "127.55.%d.%d" % (_rng.randint(1, 250), _rng.randint(1, 250))
        u = validating_resolver.Unbound(HostNamespace(), harness.new_tmpdir("unbound"), z,
                                        ip=ip, port=free_udp_tcp_port(ip))
        u.start(timeout=30)
        self.addCleanup(u.stop)
        return u

    def start_out(self, servers, d, policy="opportunistic", dane=False):
        l = oh.outbound_listener("%s:%d" % (HOST, d.port), policy,
                                 timeouts={"connect": 15, "handshake": 10, "idle": 20})
        if dane:
            l["dane"] = True
        resolver = {"servers": list(servers), "dnssec": "trust-ad"}
        return self.proxy(oh.outbound_config([l], resolver=resolver))

    def destination(self, tls=True):
        if tls:
            return self.backend(name="destination", ehlo=test_dane.EHLO,
                                tls_ctx=oh.tls_server_context(test_dane.certs()["mx"]),
                                greeting=b"220 mx.example.net ESMTP\r\n")
        return self.backend(name="destination", ehlo=EHLO_PLAIN,
                            greeting=b"220 mx.example.net ESMTP\r\n")

    def deliver(self, p, d, timeout=15):
        c = harness.Client(p.port, timeout=timeout)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting().code, 220)
        self.assertEqual(c.ehlo("legacy.example.org").code, 250)
        codes = [r.code for r in c.send_message("a@example.org", ["b@example.net"], BODY)]
        self.assertEqual(codes, [250, 250, 354, 250], p.log()[-3000:])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(c.cmd("QUIT").code, 221)
        kv = p.wait_session_end(c.local_port, timeout=10)
        self.assertIsNotNone(kv, p.log()[-3000:])
        self.assertEqual(kv["end"], "quit", kv["_line"])
        return kv

    def test_unbound_secure_answer_delivers(self):
        d = self.destination(tls=False)
        z = self.zone()
        u = self.unbound(z)
        p = self.start_out([u.server], d)
        self.deliver(p, d)
        self.assertRegex(p.log(), r"event=resolved destination=mx\.example\.net:\d+ "
                                  r"dnssec=secure")

    def test_dane_ee_through_unbound_delivers_verified(self):
        d = self.destination()
        z = self.zone("3 1 1 " + test_dane.sha256(test_dane.certs()["spki"]), port=d.port)
        u = self.unbound(z)
        p = self.start_out([u.server], d, dane=True)
        kv = self.deliver(p, d)
        self.assertEqual(kv["security"], "tls-verified", kv["_line"])
        self.assertEqual(kv["auth"], "dane", kv["_line"])
        self.assertTrue(d.conns[0].tls_version, "the mail did not go over TLS")
        self.assertRegex(p.log(), r"event=tlsa name=_%d\._tcp\.mx\.example\.net dnssec=secure "
                                  r"verdict=authenticate records=1 usable=1" % d.port)

    def test_bogus_zone_is_servfail_and_421_443(self):
        d = self.destination(tls=False)
        z = self.zone(broken=[("mx", "A")])
        u = self.unbound(z)
        p = self.start_out([u.server], d)
        c = harness.Client(p.port, timeout=15)
        self.addCleanup(c.close)
        r = c.read_reply(15)
        self.assertEqual(r.code, 421, r)
        self.assertEqual(r.enhanced, "4.4.3", r)
        c.expect_closed(10)
        kv = p.wait_session_end(c.local_port, timeout=10)
        self.assertIsNotNone(kv, p.log()[-3000:])
        self.assertEqual(kv["end"], "dnssec_bogus", kv["_line"])
        self.assertEqual(d.conns, [], "the destination was dialled")
        self.assertTrue(p.wait_log(r"event=resolve_failed destination=mx\.example\.net:\d+ "
                                   r"dns=dnssec_bogus error=\"SERVFAIL from the validating "
                                   r"resolver\""), p.log()[-3000:])

    def test_nsd_without_ad_is_insecure_and_dane_does_not_apply(self):
        d = self.destination()
        # A record that would refuse the session, were DANE to apply.
        z = self.zone("3 1 1 " + "ab" * 32, port=d.port)
        p = self.start_out([z.server], d, dane=True)
        kv = self.deliver(p, d)
        self.assertEqual(kv["auth"], "none", kv["_line"])
        self.assertEqual(kv["policy"], "opportunistic", kv["_line"])
        self.assertRegex(p.log(), r"event=resolved destination=mx\.example\.net:\d+ "
                                  r"dnssec=insecure")
        self.assertNotIn("event=tlsa", p.log())

    def test_silent_first_server_then_the_next(self):
        # A bound UDP socket that never answers: the stub waits out its
        # try and its retry, then asks unbound.
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(silent.close)
        silent.bind(("127.0.0.1", 0))
        d = self.destination(tls=False)
        z = self.zone()
        u = self.unbound(z)
        p = self.start_out(["127.0.0.1:%d" % silent.getsockname()[1], u.server], d)
        t0 = time.monotonic()
        self.deliver(p, d, timeout=30)
        self.assertGreaterEqual(time.monotonic() - t0, 4.5)
        self.assertRegex(p.log(), r"event=resolved destination=mx\.example\.net:\d+ "
                                  r"dnssec=secure")


@unittest.skipIf(validating_resolver.unavailable(), validating_resolver.unavailable() or "")
class ResolvConfTest(unittest.TestCase):

    def check(self, resolv_conf):
        d = harness.new_tmpdir("resolvconf")
        ns = validating_resolver.Namespace(d, resolv_conf=resolv_conf)
        try:
            ns.start()
        except validating_resolver.NamespaceUnavailable as e:
            self.skipTest(str(e))
        self.addCleanup(ns.stop)
        l = oh.outbound_listener("mx.example.net:25", "opportunistic")
        path = os.path.join(d, "t.conf")
        with open(path, "w") as f:
            f.write(harness.write_config(oh.outbound_config(
                [l], resolver={"dnssec": "trust-ad", "trust_anchor": "/nonexistent"})))
        return ns.run([harness.proxy_binary(), "-t", "-c", path])

    def test_loopback_nameservers_are_accepted(self):
        rc, out = self.check("nameserver 127.0.0.1\nnameserver ::1\noptions trust-ad\n")
        self.assertEqual(rc, 0, out)
        self.assertIn("configuration OK", out)

    def test_a_remote_nameserver_is_a_config_error(self):
        rc, out = self.check("# local first\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n")
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"t\.conf:\d+: resolver\.dnssec: \"trust-ad\" is allowed only "
                              r"with loopback servers, and 192\.0\.2\.1:53 \(from "
                              r"/etc/resolv\.conf\) is not one")
        self.assertNotIn("127.0.0.53", out)

    def test_no_nameserver_is_a_config_error(self):
        rc, out = self.check("search example.net\n")
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"t\.conf:\d+: resolver\.dnssec: \"trust-ad\" needs servers, "
                              r"and /etc/resolv\.conf names none")


if __name__ == "__main__":
    unittest.main()
