"""Outbound listeners (legacy MTA -> proxy -> destination MTA): the proxy
upgrades to TLS where the destination offers STARTTLS, repeats the EHLO over
TLS and hides STARTTLS from the client; policy none / opportunistic /
required / verify, per-destination policies, fallback by reconnecting.
Nothing of the mail may reach a destination in plaintext when policy
requires TLS."""

import os
import time
import unittest

import harness
from harness import CRLF, Client, ProxyTestCase

TLS_EHLO = ["dest.test", "PIPELINING", "SIZE 52428800", "STARTTLS", "ENHANCEDSTATUSCODES",
            "8BITMIME", "AUTH PLAIN"]
PLAIN_EHLO = [k for k in TLS_EHLO if k != "STARTTLS"]

_other = [None]


def other_pki():
    """A second CA and certificate the proxy does not trust."""
    if _other[0] is None:
        _other[0] = harness.make_pki(os.path.join(harness.tmp_root(), "pki-untrusted"))
    return _other[0]


class OutboundTest(ProxyTestCase):

    def destination(self, tls=True, pki_=None, ehlo=None, **kw):
        ctx = harness.server_context(pki_ or self.pki) if tls else None
        return self.backend(name="destination", tls_ctx=ctx,
                            greeting=b"220 dest.test ESMTP\r\n",
                            ehlo=ehlo or (TLS_EHLO if tls else PLAIN_EHLO), **kw)

    def start_out(self, dest, policy="opportunistic", policies=None, tls=None, dest_port=None):
        o = {
            "name": "relay",
            "listen": "127.0.0.1:%d" % harness.free_port(),
            "destination": "127.0.0.1:%d" % (dest_port or dest.port),
            "policy": policy,
            "timeouts": {"connect": 5, "handshake": 5, "idle": 10},
        }
        if policies:
            o["policies"] = policies
        if tls:
            o["tls"] = tls
        cfg = harness.base_config([])
        del cfg["inbound"]
        cfg["outbound"] = [o]
        self.proxy_ = self.proxy(cfg)
        return self.proxy_

    def deliver(self, c, body=b"Subject: out\r\n\r\noutbound body\r\n"):
        return [r.code for r in c.send_message("legacy@corp.test", ["ext@dest.test"], body)]

    def test_opportunistic_upgrades_and_hides_starttls(self):
        d = self.destination()
        p = self.start_out(d)
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code, 250, r)
        self.assertNotIn("STARTTLS", r.keywords(), r.raw)
        self.assertEqual(r.lines[0][4:], "dest.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.assertTrue(d.wait_messages(1))
        conn = d.conns[0]
        self.assertEqual(conn.tls_version, "TLSv1.3")
        verbs = [l.split(b" ")[0].upper() for l in conn.commands]
        self.assertEqual(verbs[:3], [b"EHLO", b"STARTTLS", b"EHLO"], conn.commands)
        # Both EHLOs carry the client's name; the mail went only over TLS.
        self.assertEqual(conn.commands[0], b"EHLO legacy.test")
        self.assertEqual(conn.commands[2], b"EHLO legacy.test")
        self.assertEqual(d.messages[0].conn_index, 0)
        self.assertLessEqual(conn.tls_at, conn.commands.index(b"MAIL FROM:<legacy@corp.test>"),
                             "MAIL went out before TLS")
        self.assertEqual(conn.plain_after_starttls, b"")
        kv = harness.wait_until(lambda: [e for e in p.session_ends()], 3)
        self.assertTrue(kv)
        self.assertEqual(kv[0].get("dir"), "out", kv[0]["_line"])
        self.assertEqual(kv[0].get("end"), "quit", kv[0]["_line"])

    def test_auth_passes_after_upgrade(self):
        d = self.destination()
        self.start_out(d)
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertIn("AUTH", r.keywords())
        self.assertEqual(c.cmd("AUTH PLAIN AHUAcA==").code, 235)

    def test_opportunistic_plaintext_when_not_offered(self):
        d = self.destination(tls=False)
        self.start_out(d)
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code, 250)
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertIsNone(d.conns[0].tls_version)
        self.assertNotIn(b"STARTTLS", d.verbs())

    def test_opportunistic_falls_back_after_failed_handshake(self):
        d = self.destination(actions={"STARTTLS": "tls_fail"})
        self.start_out(d)
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code, 250, r)
        self.assertNotIn("STARTTLS", r.keywords())
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(len(d.conns), 2, "expected a fresh plaintext connection")
        self.assertNotIn(b"STARTTLS", [l.split(b" ")[0].upper() for l in d.conns[1].commands])
        # The client saw one greeting only.
        self.assertEqual(c.received.count(b"220 "), 1, c.received)

    def test_destination_plaintext_injection_after_220_rejected(self):
        # Bytes a destination (or a man in the middle) sends after its 220
        # to STARTTLS, before the handshake, must never reach the client.
        d = self.destination(actions={
            "STARTTLS": ("tls_inject", b"250-injected\r\n250 INJECTED\r\n")})
        self.start_out(d)
        c = self.client()
        try:
            r = c.ehlo("legacy.test")
            if r.code == 250:
                c.cmd("NOOP")
        except harness.ConnectionClosed:
            pass
        time.sleep(0.3)
        self.assertNotIn(b"injected", c.received.lower())

    def test_policy_none_never_starttls(self):
        d = self.destination()
        self.start_out(d, policy="none")
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertNotIn(b"STARTTLS", d.verbs())
        self.assertIsNone(d.conns[0].tls_version)

    def refused(self, c, d):
        """The session is refused with 4xx 4.7.5 before any mail is sent."""
        replies = []
        try:
            r = c.ehlo("legacy.test")
            replies.append(r)
            if r.code == 250:
                replies.append(c.cmd("MAIL FROM:<legacy@corp.test>"))
        except harness.ConnectionClosed:
            pass
        bad = [r for r in replies if r.code // 100 != 2]
        self.assertTrue(bad, "no refusal: %r" % replies)
        self.assertIn(bad[0].code, (421, 451), bad[0])
        self.assertEqual(bad[0].enhanced, "4.7.5", bad[0])
        time.sleep(0.3)
        self.assertNotIn(b"MAIL", d.verbs())
        self.assertEqual(d.messages, [])

    def test_required_refuses_without_starttls(self):
        d = self.destination(tls=False)
        self.start_out(d, policy="required")
        self.refused(self.client(), d)

    def test_required_refuses_failed_handshake(self):
        d = self.destination(actions={"STARTTLS": "tls_fail"})
        self.start_out(d, policy="required")
        self.refused(self.client(), d)
        # No plaintext second attempt either.
        for conn in d.conns:
            self.assertNotIn(b"MAIL", [l.split(b" ")[0].upper() for l in conn.commands])

    def test_required_accepts_untrusted_certificate(self):
        d = self.destination(pki_=other_pki())
        self.start_out(d, policy="required")
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(d.conns[0].tls_version, "TLSv1.3")

    def test_verify_trusted_certificate(self):
        d = self.destination()
        p = self.start_out(d, policy="verify", tls={"ca_file": self.pki.ca})
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertIsNotNone(d.conns[0].tls_version)

    def test_verify_refuses_untrusted_certificate(self):
        d = self.destination(pki_=other_pki())
        self.start_out(d, policy="verify", tls={"ca_file": self.pki.ca})
        self.refused(self.client(), d)

    def test_per_destination_policy_by_cidr(self):
        d = self.destination(tls=False)
        self.start_out(d, policy="opportunistic",
                       policies=[{"match": "127.0.0.0/8", "policy": "required"}])
        self.refused(self.client(), d)

    def test_destination_down_421(self):
        dead = harness.free_port()
        d = self.destination()
        self.start_out(d, dest_port=dead)
        c = self.client(greet=False)
        t0 = time.monotonic()
        r = c.read_reply(5)
        self.assertEqual(r.code, 421, r)
        self.assertEqual(r.enhanced[:4], "4.4.", r)
        self.assertLess(time.monotonic() - t0, 2.0)
        c.expect_closed(3)

    def test_data_relayed_exactly_over_tls(self):
        d = self.destination()
        self.start_out(d)
        c = self.client()
        c.ehlo("legacy.test")
        body = b"Subject: exact\r\n\r\n.\r\n..\r\nSTARTTLS\r\nMAIL FROM:<x@y>\r\n" + b"8bit \xe9\xff\r\n"
        self.assertEqual(self.deliver(c, body), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(d.messages[0].data, body)

    def test_bare_lf_smuggling_normalized_outbound(self):
        d = self.destination(lenient=True)
        self.start_out(d)
        c = self.client()
        c.ehlo("legacy.test")
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        self.assertEqual([c.read_reply().code for _ in range(3)], [250, 250, 354])
        c.send(b"Subject: s\r\n\r\nbefore\n.\r\nMAIL FROM:<smuggled@evil.test>\r\n"
               b"RCPT TO:<v@y.test>\r\nDATA\r\nevil\r\n.\r\n")
        self.assertEqual(c.read_reply().code, 250)
        self.assertEqual(c.cmd("VRFY marker").raw, b"252 2.0.0 marker\r\n")
        time.sleep(0.3)
        self.assertEqual(len(d.messages), 1)
        self.assertEqual([v for v in d.verbs() if v == b"MAIL"], [b"MAIL"])


if __name__ == "__main__":
    harness.run_tests()
