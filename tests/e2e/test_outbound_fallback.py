"""Outbound: falling back to plaintext by reconnecting when STARTTLS or the
handshake fails (opportunistic), refusing instead when policy requires TLS,
bytes behind a 220 never taken as a reply, and destinations that are down.
The fixture is outbound_case.py."""

import time

import harness
from outbound_case import (
    BODY,
    OutboundCase,
    garbage_after_220,
    hang_after_220,
    verbs_of,
)


class FallbackTest(OutboundCase):
    """(b), (e): STARTTLS offered but it fails. Opportunistic reconnects and
    delivers in plaintext without the client noticing; required refuses."""

    def assertFellBack(self, p, c, d, note=None):
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(len(d.conns), 2, "expected a fresh plaintext connection")
        first, second = d.conns
        # Nothing of the mail on the first connection; the second one is
        # plaintext from the start and never tries STARTTLS again.
        self.assertNotIn(b"MAIL", verbs_of(first))
        self.assertEqual(verbs_of(second)[0], b"EHLO", second.commands)
        self.assertEqual(second.commands[0], b"EHLO legacy.test")
        self.assertNotIn(b"STARTTLS", verbs_of(second))
        self.assertIsNone(second.tls_version)
        self.assertEqual(d.messages[0].conn_index, 1)
        self.assertEqual(d.messages[0].data, BODY)
        # The client saw one greeting only, and nothing but 2xx/3xx.
        self.assertEqual(c.received.count(b"220 "), 1, c.received)
        self.assertNotRegex(c.received, rb"(^|\n)[45]\d\d[ -]")
        kv = self.session_line(p, c)
        self.assertSecurity(kv, "plaintext", policy="opportunistic")
        self.assertNotEqual(kv["tls_note"], "-", kv["_line"])
        if note is not None:
            self.assertEqual(kv["tls_note"], note, kv["_line"])
        self.assertTrue(p.wait_log(r"event=tls_fallback destination=127\.0\.0\.1:%d reason="
                                   % d.port, 2), p.log()[-2000:])
        return kv

    def test_opportunistic_falls_back_after_close_behind_220(self):
        d = self.destination(actions={"STARTTLS": "tls_fail"})
        p = self.start_out(d)
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code, 250, r)
        self.assertNotIn("STARTTLS", r.keywords())
        self.assertNotIn("AUTH", r.keywords(), "AUTH offered after falling back to plaintext")
        self.assertFellBack(p, c, d)

    def test_opportunistic_falls_back_after_garbage_handshake(self):
        d = self.destination(actions={"STARTTLS": garbage_after_220})
        p = self.start_out(d)
        c = self.client()
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        self.assertFellBack(p, c, d)
        # The proxy spoke TLS after the 220, and nothing in plaintext.
        hello = getattr(d.conns[0], "client_hello", b"")
        self.assertTrue(hello.startswith(b"\x16\x03"), hello[:40])

    def test_opportunistic_falls_back_after_starttls_refused(self):
        d = self.destination(actions={"STARTTLS": "454 4.7.0 TLS not available due to "
                                                  "temporary reason"})
        p = self.start_out(d)
        c = self.client()
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        self.assertFellBack(p, c, d, note="STARTTLS refused")

    def test_opportunistic_falls_back_after_handshake_timeout(self):
        d = self.destination(actions={"STARTTLS": hang_after_220})
        p = self.start_out(d, timeouts={"handshake": 1})
        c = self.client()
        t0 = time.monotonic()
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        self.assertLess(time.monotonic() - t0, 4.5)
        self.assertFellBack(p, c, d)

    def test_opportunistic_falls_back_when_tls_ehlo_refused(self):
        def ehlo(conn, line):
            return "554 5.7.0 not over TLS" if conn.tls_version else None
        d = self.destination(actions={"EHLO": ehlo})
        p = self.start_out(d)
        c = self.client()
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        self.assertFellBack(p, c, d)

    def test_opportunistic_fallback_holds_pipelined_commands(self):
        d = self.destination(actions={"STARTTLS": "tls_fail"})
        p = self.start_out(d)
        c = self.client()
        c.send(b"EHLO legacy.test\r\nMAIL FROM:<legacy@corp.test>\r\n"
               b"RCPT TO:<ext@dest.test>\r\nDATA\r\n")
        self.assertEqual(c.read_reply().code, 250)
        self.assertEqual([c.read_reply().code for _ in range(3)], [250, 250, 354])
        c.send(harness.dot_stuff(BODY) + b".\r\n")
        self.assertEqual(c.read_reply().code, 250)
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(len(d.conns), 2)
        self.assertEqual(verbs_of(d.conns[0]), [b"EHLO", b"STARTTLS"])
        self.assertEqual(d.verbs().count(b"MAIL"), 1)

    def test_auth_after_fallback_refused(self):
        d = self.destination(actions={"STARTTLS": "tls_fail"})
        self.start_out(d)
        c = self.client()
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        r = c.cmd("AUTH PLAIN AHVzZXIAc2VjcmV0")
        self.assertEqual(r.code, 530, r)
        self.assertNeverForwarded(d, b"AUTH")

    def test_bytes_behind_220_never_a_reply_opportunistic(self):
        # (e) "220" and a fake reply in one write: the fake reply must not
        # be taken as the answer to the EHLO over TLS, nor reach the
        # client; opportunistic starts over in plaintext.
        d = self.destination(actions={
            "STARTTLS": ("tls_inject", b"250-injected\r\n250 INJECTED\r\n")})
        p = self.start_out(d)
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code, 250, r)
        self.assertEqual(r.lines[0][4:], "dest.test")
        self.assertFellBack(p, c, d, note="data after the 220 reply to STARTTLS")
        self.assertNotIn(b"injected", c.received.lower())

    def test_bytes_behind_220_never_a_reply_required(self):
        d = self.destination(actions={
            "STARTTLS": ("tls_inject", b"250 fake\r\n")})
        p = self.start_out(d, policy="required")
        c = self.client()
        self.refused(c, d)
        self.assertNotIn(b"fake", c.received)
        kv = self.session_line(p, c, quit=False)
        self.assertEqual(kv["end"], "policy_refusal", kv["_line"])
        self.assertEqual(len(d.conns), 1, "required must not reconnect")

    def test_required_refuses_failed_handshake(self):
        d = self.destination(actions={"STARTTLS": "tls_fail"})
        p = self.start_out(d, policy="required")
        c = self.client()
        self.refused(c, d)
        # No plaintext second attempt either.
        time.sleep(0.2)
        self.assertEqual(len(d.conns), 1, "required must not reconnect")
        kv = self.session_line(p, c, quit=False)
        self.assertSecurity(kv, "plaintext", policy="required", end="policy_refusal")
        self.assertNotEqual(kv["tls_note"], "-", kv["_line"])

    def test_required_refuses_garbage_handshake(self):
        d = self.destination(actions={"STARTTLS": garbage_after_220})
        self.start_out(d, policy="required")
        self.refused(self.client(), d)
        time.sleep(0.2)
        self.assertEqual(len(d.conns), 1)

    def test_required_refuses_starttls_454(self):
        d = self.destination(actions={"STARTTLS": "454 4.7.0 TLS not available"})
        self.start_out(d, policy="required")
        self.refused(self.client(), d)


class DestinationTroubleTest(OutboundCase):

    def test_destination_down_421(self):
        dead = harness.free_port()
        d = self.destination()
        self.start_out(d, port=dead)
        c = self.client(greet=False)
        t0 = time.monotonic()
        r = c.read_reply(5)
        self.assertEqual(r.code, 421, r)
        self.assertEqual(r.enhanced[:4], "4.4.", r)
        self.assertLess(time.monotonic() - t0, 2.0)
        c.expect_closed(3)

    def test_fallback_reconnect_refused(self):
        # The destination breaks STARTTLS, then refuses the plaintext retry.
        def connect(conn, line):
            return "554 5.3.2 go away" if conn.index > 0 else None
        d = self.destination(actions={"STARTTLS": "tls_fail", "CONNECT": connect})
        self.start_out(d)
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code // 100, 4, r)
        c.expect_closed(5)
        self.assertEqual(d.messages, [])


if __name__ == "__main__":
    harness.run_tests()
