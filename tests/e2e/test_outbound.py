"""Outbound listeners (legacy MTA -> proxy -> destination MTA): the proxy
upgrades to TLS where the destination offers STARTTLS, repeats the EHLO over
TLS and hides STARTTLS from the client; policy none / opportunistic /
required / verify, per-destination policies, fallback by reconnecting.
Nothing of the mail may reach a destination in plaintext when policy
requires TLS, and the session line never claims more security than was had.

Destinations are scripted servers on 127.0.0.1 (harness.ScriptedBackend)
that record every byte; TLS ones use Python's ssl with certificates from the
harness test CA (outbound_harness.certs()); the shared fixture is
outbound_case.py. This file: the upgrade, pipelining and HELO clients, and
destinations without STARTTLS. Fallback and destination trouble are in
test_outbound_fallback.py, certificates, policy rules and metrics in
test_outbound_policy.py."""

import ssl
import time

import harness
# GREETING, TLS_EHLO and OutboundCase are imported from here by
# test_outbound_lenient.py.
from outbound_case import (
    BODY,
    GREETING,
    TLS_EHLO,
    OutboundCase,
    verbs_of,
)


class UpgradeTest(OutboundCase):
    """The destination offers STARTTLS and the handshake works."""

    def test_opportunistic_upgrades_and_hides_starttls(self):
        d = self.destination()
        p = self.start_out(d)
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code, 250, r)
        self.assertNotIn("STARTTLS", r.keywords(), r.raw)
        self.assertEqual(r.lines[0][4:], "dest.test")
        self.assertIn("PIPELINING", r.keywords())
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        conn = self.assertDeliveredOverTls(d)
        self.assertEqual(len(d.conns), 1)
        self.assertEqual(conn.tls_version, "TLSv1.3")
        # Both EHLOs carry the client's name.
        self.assertEqual(conn.commands[0], b"EHLO legacy.test")
        self.assertEqual(conn.commands[2], b"EHLO legacy.test")
        self.assertEqual(d.messages[0].data, BODY)
        # The client saw the destination's own greeting.
        self.assertTrue(c.received.startswith(GREETING), c.received[:100])
        kv = self.session_line(p, c)
        # No ca_file given: the test CA is not trusted, so not "verified".
        self.assertSecurity(kv, "tls-unverified", policy="opportunistic")
        self.assertEqual(kv["destination"], "127.0.0.1:%d" % d.port)
        self.assertEqual(kv["tls"], "TLSv1.3")
        self.assertEqual(kv["tls_note"], "-", kv["_line"])

    def test_opportunistic_with_trusted_ca_logs_verified(self):
        d = self.destination()
        p = self.start_out(d, tls={"ca_file": self.pki.ca})
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        self.assertSecurity(self.session_line(p, c), "tls-verified", policy="opportunistic")

    def test_tls12_destination(self):
        d = self.destination(max_version=ssl.TLSVersion.TLSv1_2)
        p = self.start_out(d)
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        conn = self.assertDeliveredOverTls(d)
        self.assertEqual(conn.tls_version, "TLSv1.2")
        kv = self.session_line(p, c)
        self.assertEqual(kv["tls"], "TLSv1.2", kv["_line"])

    def test_auth_passes_after_upgrade(self):
        d = self.destination()
        self.start_out(d)
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertIn("AUTH", r.keywords())
        self.assertEqual(c.cmd("AUTH PLAIN AHUAcA==").code, 235)
        self.assertTrue(d.wait_raw(b"AUTH PLAIN AHUAcA=="))
        conn = d.conns[0]
        self.assertGreaterEqual(conn.commands.index(b"AUTH PLAIN AHUAcA=="), conn.tls_at)

    def test_client_starttls_refused_locally(self):
        d = self.destination()
        self.start_out(d)
        c = self.client()
        c.ehlo("legacy.test")
        r = c.cmd("STARTTLS")
        self.assertEqual(r.code, 502, r)
        self.assertEqual(r.enhanced, "5.5.1", r)
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        # Only the proxy's own STARTTLS reached the destination.
        self.assertEqual(d.verbs().count(b"STARTTLS"), 1, d.commands_all())

    def test_data_relayed_exactly_over_tls(self):
        d = self.destination()
        self.start_out(d)
        c = self.client()
        c.ehlo("legacy.test")
        body = (b"Subject: exact\r\n\r\n.\r\n..\r\nSTARTTLS\r\nMAIL FROM:<x@y>\r\n"
                b"8bit \xe9\xff\r\n")
        self.assertEqual(self.deliver(c, body), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        self.assertEqual(d.messages[0].data, body)

    def test_bdat_over_tls(self):
        d = self.destination(ehlo=TLS_EHLO + ["CHUNKING"])
        self.start_out(d)
        c = self.client()
        self.assertIn("CHUNKING", c.ehlo("legacy.test").keywords())
        self.assertEqual(c.cmd("MAIL FROM:<legacy@corp.test>").code, 250)
        self.assertEqual(c.cmd("RCPT TO:<ext@dest.test>").code, 250)
        c.send(b"BDAT 7\r\nchunk\r\nBDAT 6 LAST\r\n.last\n")
        self.assertEqual([c.read_reply().code for _ in range(2)], [250, 250])
        self.assertDeliveredOverTls(d)
        # BDAT content is binary: passed exactly, no stuffing, no newline repair.
        self.assertEqual(d.messages[0].data, b"chunk\r\n.last\n")
        self.assertEqual(d.messages[0].kind, "BDAT")

    def test_starttls_keyword_case_insensitive(self):
        d = self.destination(ehlo=["dest.test", "PIPELINING", "starttls", "8BITMIME"])
        self.start_out(d, policy="required")
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code, 250, r)
        self.assertNotIn("STARTTLS", r.keywords())
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)

    def test_bare_lf_in_content_normalized(self):
        d = self.destination()
        self.start_out(d)
        c = self.client()
        c.ehlo("legacy.test")
        c.send(b"MAIL FROM:<legacy@corp.test>\r\nRCPT TO:<ext@dest.test>\r\nDATA\r\n")
        self.assertEqual([c.read_reply().code for _ in range(3)], [250, 250, 354])
        c.send(b"Subject: lf\r\n\r\nline one\nline two\r\nline three\n\r\n.\r\n")
        self.assertEqual(c.read_reply().code, 250)
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(d.messages[0].data,
                         b"Subject: lf\r\n\r\nline one\r\nline two\r\nline three\r\n\r\n")
        # No bare LF left on the wire.
        self.assertNotIn(b"\n", d.messages[0].raw.replace(b"\r\n", b""))

    def test_bare_lf_smuggling_normalized(self):
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


class PipeliningAndHeloTest(OutboundCase):
    """(h) commands sent ahead of the negotiation, and HELO clients."""

    def test_pipelined_after_ehlo_reply(self):
        d = self.destination()
        self.start_out(d)
        c = self.client()
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        replies = c.send_message("legacy@corp.test", ["a@dest.test", "b@dest.test"], BODY,
                                 pipelining=True)
        self.assertEqual([r.code for r in replies], [250, 250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        self.assertEqual(len(d.messages[0].rcpts), 2)

    def test_commands_pipelined_with_ehlo_held_until_tls(self):
        # A legacy client that does not wait for the EHLO reply: nothing of
        # the envelope may leave before the TLS EHLO reply, and each command
        # gets its own reply, in order.
        d = self.destination()
        p = self.start_out(d)
        c = self.client()
        c.send(b"EHLO legacy.test\r\nMAIL FROM:<legacy@corp.test>\r\n"
               b"RCPT TO:<ext@dest.test>\r\nDATA\r\n")
        r = c.read_reply()
        self.assertEqual(r.code, 250, r)
        self.assertNotIn("STARTTLS", r.keywords())
        self.assertEqual([c.read_reply().code for _ in range(3)], [250, 250, 354])
        c.send(harness.dot_stuff(BODY) + b".\r\n")
        self.assertEqual(c.read_reply().code, 250)
        conn = self.assertDeliveredOverTls(d)
        self.assertEqual(verbs_of(conn)[:6],
                         [b"EHLO", b"STARTTLS", b"EHLO", b"MAIL", b"RCPT", b"DATA"])
        self.assertSecurity(self.session_line(p, c), "tls-unverified")

    def test_helo_client_gets_single_line_reply_over_tls(self):
        d = self.destination()
        self.start_out(d)
        c = self.client()
        r = c.cmd("HELO legacy.test")
        self.assertEqual(r.raw, b"250 dest.test\r\n")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        conn = self.assertDeliveredOverTls(d)
        # The proxy says EHLO anyway, or it could not see STARTTLS.
        self.assertEqual(conn.commands[0], b"EHLO legacy.test")
        self.assertNotIn(b"HELO", d.verbs())

    def test_helo_client_plaintext_destination(self):
        d = self.destination(tls=None)
        self.start_out(d)
        c = self.client()
        r = c.cmd("HELO legacy.test")
        self.assertEqual(r.raw, b"250 dest.test\r\n")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))

    def test_helo_client_after_fallback(self):
        d = self.destination(actions={"STARTTLS": "tls_fail"})
        self.start_out(d)
        c = self.client()
        self.assertEqual(c.cmd("HELO legacy.test").raw, b"250 dest.test\r\n")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(d.messages[0].conn_index, 1)

    def test_replies_in_small_pieces(self):
        # Greeting, EHLO replies and the 220 trickle in a few octets at a
        # time: the negotiation must wait for complete replies.
        d = self.destination(reply_chunk=5, reply_delay=0.002)
        self.start_out(d, policy="required")
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code, 250, r)
        self.assertEqual(r.lines[0], "250-dest.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)

    def test_mail_before_ehlo_refused_locally(self):
        d = self.destination()
        self.start_out(d)
        c = self.client()
        r = c.cmd("MAIL FROM:<legacy@corp.test>")
        self.assertEqual(r.code, 503, r)
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        self.assertEqual(d.verbs().count(b"MAIL"), 1)


class NoStartTlsTest(OutboundCase):
    """(a) the destination does not offer STARTTLS; (f) policy none."""

    def test_opportunistic_plaintext_when_not_offered(self):
        d = self.destination(tls=None)
        p = self.start_out(d)
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code, 250)
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(len(d.conns), 1)
        self.assertIsNone(d.conns[0].tls_version)
        self.assertNotIn(b"STARTTLS", d.verbs())
        kv = self.session_line(p, c)
        self.assertSecurity(kv, "plaintext", policy="opportunistic")
        self.assertEqual(kv["tls_note"], "STARTTLS not offered", kv["_line"])

    def test_auth_over_plaintext_outcome_never_relayed(self):
        # (i) The destination offers AUTH but no STARTTLS: the password
        # would travel in clear, so the proxy hides AUTH and answers 530.
        d = self.destination(tls=None)
        self.start_out(d)
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertNotIn("AUTH", r.keywords(), r.raw)
        r = c.cmd("AUTH PLAIN AHVzZXIAc2VjcmV0")
        self.assertEqual(r.code, 530, r)
        self.assertEqual(r.enhanced, "5.7.0", r)
        r = c.cmd("AUTH LOGIN")
        self.assertEqual(r.code, 530, r)
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertNeverForwarded(d, b"AUTH")
        self.assertNeverForwarded(d, b"AHVzZXIAc2VjcmV0", settle=0)

    def test_required_refuses_without_starttls(self):
        d = self.destination(tls=None)
        p = self.start_out(d, policy="required")
        c = self.client()
        self.refused(c, d)
        kv = self.session_line(p, c, quit=False)
        self.assertSecurity(kv, "plaintext", policy="required", end="policy_refusal")
        self.assertEqual(kv["tls_note"], "STARTTLS not offered", kv["_line"])

    def test_required_refuses_pipelined_mail(self):
        # Everything the client pipelined behind EHLO, body included, is
        # dropped: none of it may go out in plaintext.
        d = self.destination(tls=None)
        self.start_out(d, policy="required")
        c = self.client()
        self.refused(c, d, pipelined=b"MAIL FROM:<legacy@corp.test>\r\nRCPT TO:<ext@dest.test>"
                     b"\r\nDATA\r\nSubject: secret\r\n\r\nsecret\r\n.\r\nQUIT\r\n")
        self.assertNotIn(b"secret", d.raw_all())

    def test_verify_refuses_without_starttls(self):
        d = self.destination(tls=None)
        p = self.start_out(d, policy="verify", tls={"ca_file": self.pki.ca})
        c = self.client()
        self.refused(c, d)
        kv = self.session_line(p, c, quit=False)
        self.assertEqual(kv["end"], "policy_refusal", kv["_line"])

    def test_required_helo_client_refused(self):
        d = self.destination(tls=None)
        self.start_out(d, policy="required")
        self.refused(self.client(), d, ehlo="HELO legacy.test")

    def test_required_non_220_greeting_never_plaintext(self):
        # A destination (or a man in the middle rewriting the greeting) that
        # greets with 554 but then answers commands: the client may hear the
        # 554, but under "required" nothing of the mail may then go out in
        # plaintext, as no STARTTLS ever happened.
        d = self.destination(greeting=b"554 5.3.2 not now\r\n")
        self.start_out(d, policy="required")
        c = self.client(greet=False)
        self.assertEqual(c.read_reply().code, 554)
        replies = []
        try:
            replies.append(c.ehlo("legacy.test"))
            if replies[-1].code == 250:
                replies += c.send_message("legacy@corp.test", ["ext@dest.test"], BODY)
        except (harness.ConnectionClosed, OSError):
            pass
        self.assertNeverForwarded(d, b"MAIL FROM", settle=0.3)
        self.assertEqual(d.messages, [], "mail sent in plaintext under policy required: %r"
                         % replies)
        self.assertTrue(any(r.code // 100 in (4, 5) for r in replies), replies)

    def test_policy_none_never_starttls(self):
        d = self.destination()
        p = self.start_out(d, policy="none")
        c = self.client()
        r = c.ehlo("legacy.test")
        self.assertNotIn("STARTTLS", r.keywords())
        self.assertNotIn("AUTH", r.keywords(), "AUTH offered over plaintext")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertNotIn(b"STARTTLS", d.verbs())
        self.assertIsNone(d.conns[0].tls_version)
        self.assertEqual(len(d.conns), 1)
        kv = self.session_line(p, c)
        self.assertSecurity(kv, "plaintext", policy="none")
        self.assertEqual(kv["tls_note"], "policy none", kv["_line"])


if __name__ == "__main__":
    harness.run_tests()
