"""Outbound listeners (legacy MTA -> proxy -> destination MTA): the proxy
upgrades to TLS where the destination offers STARTTLS, repeats the EHLO over
TLS and hides STARTTLS from the client; policy none / opportunistic /
required / verify, per-destination policies, fallback by reconnecting.
Nothing of the mail may reach a destination in plaintext when policy
requires TLS, and the session line never claims more security than was had.

Destinations are scripted servers on 127.0.0.1 (harness.ScriptedBackend)
that record every byte; TLS ones use Python's ssl with certificates from the
harness test CA (outbound_harness.certs())."""

import os
import ssl
import time

import harness
import outbound_harness as oh
from harness import CRLF, ProxyTestCase

TLS_EHLO = ["dest.test", "PIPELINING", "SIZE 52428800", "STARTTLS", "ENHANCEDSTATUSCODES",
            "8BITMIME", "AUTH PLAIN"]
PLAIN_EHLO = [k for k in TLS_EHLO if k != "STARTTLS"]
GREETING = b"220 dest.test ESMTP\r\n"
BODY = b"Subject: out\r\n\r\noutbound body\r\n"

_other = [None]


def other_pki():
    """A second CA (and a certificate for mx.test/localhost/127.0.0.1 from
    it) that the proxy does not trust."""
    if _other[0] is None:
        _other[0] = harness.make_pki(os.path.join(harness.tmp_root(), "pki-untrusted"))
    return _other[0]


def verbs_of(conn):
    return [l.split(b" ")[0].upper() for l in conn.commands]


def garbage_after_220(conn, line):
    """STARTTLS action: "220", then wait for the proxy's ClientHello and
    answer it with bytes that are not TLS, then close."""
    conn.sock.settimeout(5)
    conn.sock.sendall(b"220 2.0.0 Ready to start TLS\r\n")
    try:
        conn.client_hello = conn.sock.recv(4096)
    except OSError:
        conn.client_hello = b""
    try:
        conn.sock.sendall(b"this is not TLS, this is a plaintext line\r\n" * 4)
    except OSError:
        pass
    return "close"


def hang_after_220(conn, line):
    """STARTTLS action: "220", then no handshake at all."""
    conn.sock.settimeout(5)
    conn.sock.sendall(b"220 2.0.0 Ready to start TLS\r\n")
    return "hang"


class OutboundCase(ProxyTestCase):
    """Builds destinations and proxies with one outbound listener."""

    def destination(self, tls="trusted", ehlo=None, sni_log=None, max_version=None, **kw):
        """A scripted destination; tls is a key of oh.certs(), an harness Pki
        (a foreign CA), or None for a server without STARTTLS."""
        ctx = None
        if isinstance(tls, str):
            ctx = oh.tls_server_context(oh.certs()[tls], sni_log, max_version)
        elif tls is not None:
            ctx = oh.tls_server_context(oh.CertKey(tls.cert, tls.key), sni_log, max_version)
        kw.setdefault("greeting", GREETING)
        return self.backend(name="destination", tls_ctx=ctx,
                            ehlo=ehlo or (TLS_EHLO if ctx else PLAIN_EHLO), **kw)

    def start_out(self, dest, policy="opportunistic", host="127.0.0.1", port=None, **kw):
        """A proxy with listener "relay" -> host:port (dest's port by default)."""
        l = oh.outbound_listener("%s:%d" % (host, port or dest.port), policy, **kw)
        top = {}
        if getattr(self, "mport", None):
            top["metrics_listen"] = "127.0.0.1:%d" % self.mport
        self.proxy_ = self.proxy(oh.outbound_config([l], **top))
        return self.proxy_

    def deliver(self, c, body=BODY, rcpts=("ext@dest.test",)):
        return [r.code for r in c.send_message("legacy@corp.test", list(rcpts), body)]

    def session_line(self, p, c, quit=True, timeout=5.0):
        """The session-end line of client c (after QUIT, unless told not to)."""
        port = c.local_port
        if quit and c.sock is not None:
            try:
                self.assertEqual(c.cmd("QUIT").code, 221)
            except (harness.ConnectionClosed, OSError):
                pass
        kv = p.wait_session_end(port, timeout)
        self.assertIsNotNone(kv, "no session line for client port %d" % port)
        self.assertEqual(kv.get("dir"), "out", kv["_line"])
        self.assertEqual(kv.get("listener"), "relay", kv["_line"])
        for key in ("session", "client", "destination", "policy", "security", "tls", "cipher",
                    "verified", "tls_note", "bytes_in", "bytes_out", "ms", "end"):
            self.assertIn(key, kv, "%s missing: %s" % (key, kv["_line"]))
        return kv

    def assertSecurity(self, kv, security, policy=None, end="quit"):
        line = kv["_line"]
        self.assertEqual(kv["security"], security, line)
        if policy is not None:
            self.assertEqual(kv["policy"], policy, line)
        if end is not None:
            self.assertEqual(kv["end"], end, line)
        if security == "plaintext":
            self.assertEqual(kv["tls"], "none", line)
            self.assertEqual(kv["verified"], "-", line)
        else:
            self.assertRegex(kv["tls"], r"^TLSv1\.[23]$", line)
            self.assertNotEqual(kv["cipher"], "-", line)
            if security == "tls-verified":
                self.assertEqual(kv["verified"], "yes", line)
            else:
                self.assertNotIn(kv["verified"], ("yes", "-", ""), line)

    def refused(self, c, d, ehlo="EHLO legacy.test", pipelined=b""):
        """The client's EHLO (plus whatever it pipelined) is answered with
        "421 4.7.5 ..." and the connection closes; none of the mail reached
        the destination. Returns the 421 reply."""
        c.send(ehlo.encode() + CRLF + pipelined)
        r = c.read_reply(8)
        self.assertEqual(r.code, 421, r)
        self.assertEqual(r.enhanced, "4.7.5", r)
        self.assertEqual(len(r.lines), 1, r)
        c.expect_closed(5)
        self.assertNeverForwarded(d, b"MAIL", settle=0.2)
        for needle in (b"RCPT", b"DATA", b"Subject:"):
            self.assertNotIn(needle, d.raw_all())
        self.assertEqual(d.messages, [])
        return r

    def assertDeliveredOverTls(self, d, conn_index=0):
        self.assertTrue(d.wait_messages(1), "no message arrived")
        conn = d.conns[conn_index]
        self.assertIsNotNone(conn.tls_version, "delivered without TLS")
        self.assertEqual(d.messages[0].conn_index, conn_index)
        self.assertLessEqual(conn.tls_at, conn.commands.index(b"MAIL FROM:<legacy@corp.test>"),
                             "MAIL went out before TLS")
        self.assertEqual(conn.plain_after_starttls, b"")
        self.assertEqual(verbs_of(conn)[:3], [b"EHLO", b"STARTTLS", b"EHLO"], conn.commands)
        return conn


# ---------------------------------------------------------------------------


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


class CertificateTest(OutboundCase):
    """(c), (d): verify checks chain and name; opportunistic and required
    encrypt anyway and say the certificate was not verified."""

    def test_verify_localhost_trusted(self):
        sni = []
        d = self.destination(sni_log=sni)
        p = self.start_out(d, policy="verify", host="localhost", tls={"ca_file": self.pki.ca})
        c = self.client()
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        self.assertEqual(sni, ["localhost"])
        kv = self.session_line(p, c)
        self.assertSecurity(kv, "tls-verified", policy="verify")
        self.assertEqual(kv["destination"], "localhost:%d" % d.port)

    def test_verify_ip_destination_against_ip_san(self):
        sni = []
        d = self.destination(sni_log=sni)
        p = self.start_out(d, policy="verify", tls={"ca_file": self.pki.ca})
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        # RFC 6066 §3: no address in SNI.
        self.assertEqual(sni, [None])
        self.assertSecurity(self.session_line(p, c), "tls-verified", policy="verify")

    def assertCertRefused(self, d, p):
        c = self.client()
        r = self.refused(c, d)
        self.assertIn("certificate did not verify", r.lines[0])
        self.assertEqual(d.verbs(), [b"EHLO", b"STARTTLS"], d.commands_all())
        self.assertEqual(len(d.conns), 1)
        kv = self.session_line(p, c, quit=False)
        self.assertEqual(kv["policy"], "verify", kv["_line"])
        self.assertEqual(kv["end"], "policy_refusal", kv["_line"])
        self.assertNotEqual(kv["security"], "tls-verified", kv["_line"])
        return kv

    def test_verify_refuses_name_mismatch(self):
        d = self.destination(tls="other")
        p = self.start_out(d, policy="verify", host="localhost", tls={"ca_file": self.pki.ca})
        self.assertCertRefused(d, p)
        self.assertRegex(p.log(), r"(?i)event=tls_failed .*(host ?name|mismatch)")

    def test_verify_refuses_self_signed(self):
        d = self.destination(tls="selfsigned")
        p = self.start_out(d, policy="verify", host="localhost", tls={"ca_file": self.pki.ca})
        self.assertCertRefused(d, p)
        self.assertRegex(p.log(), r"event=tls_failed .*certificate")

    def test_verify_refuses_expired(self):
        d = self.destination(tls="expired")
        p = self.start_out(d, policy="verify", host="localhost", tls={"ca_file": self.pki.ca})
        self.assertCertRefused(d, p)
        self.assertRegex(p.log(), r"(?i)event=tls_failed .*expired")

    def test_opportunistic_expired_encrypts_unverified(self):
        kv = self.opportunistic_unverified("expired")
        self.assertRegex(kv["verified"], r"(?i)expired", kv["_line"])

    def test_verify_refuses_foreign_ca(self):
        d = self.destination(tls=other_pki())
        p = self.start_out(d, policy="verify", tls={"ca_file": self.pki.ca})
        self.assertCertRefused(d, p)

    def opportunistic_unverified(self, tls, policy="opportunistic"):
        self.sni = []
        d = self.destination(tls=tls, sni_log=self.sni)
        p = self.start_out(d, policy=policy, host="localhost", tls={"ca_file": self.pki.ca})
        c = self.client()
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        self.assertEqual(len(d.conns), 1, "a certificate problem must not cause a fallback")
        kv = self.session_line(p, c)
        self.assertSecurity(kv, "tls-unverified", policy=policy)
        self.assertNotIn("tls_fallback", p.log())
        return kv

    def test_opportunistic_name_mismatch_encrypts_unverified(self):
        kv = self.opportunistic_unverified("other")
        self.assertEqual(self.sni, ["localhost"])
        self.assertRegex(kv["verified"], r"(?i)host ?name|mismatch", kv["_line"])

    def test_opportunistic_self_signed_encrypts_unverified(self):
        self.opportunistic_unverified("selfsigned")

    def test_required_self_signed_encrypts_unverified(self):
        self.opportunistic_unverified("selfsigned", policy="required")

    def test_required_foreign_ca_delivers(self):
        d = self.destination(tls=other_pki())
        p = self.start_out(d, policy="required")
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        self.assertSecurity(self.session_line(p, c), "tls-unverified", policy="required")


class PolicyRulesTest(OutboundCase):
    """(g) policies = ( { match; policy; } ) overrides the listener's policy."""

    def test_address_rule_requires(self):
        d = self.destination(tls=None)
        p = self.start_out(d, policies=[{"match": "127.0.0.1", "policy": "required"}])
        c = self.client()
        self.refused(c, d)
        kv = self.session_line(p, c, quit=False)
        self.assertEqual(kv["policy"], "required", kv["_line"])

    def test_cidr_rule_requires(self):
        d = self.destination(tls=None)
        self.start_out(d, policies=[{"match": "127.0.0.0/8", "policy": "required"}])
        self.refused(self.client(), d)

    def test_name_rule_requires(self):
        d = self.destination(tls=None)
        p = self.start_out(d, host="localhost",
                           policies=[{"match": "localhost", "policy": "required"}])
        c = self.client()
        self.refused(c, d)
        kv = self.session_line(p, c, quit=False)
        self.assertEqual(kv["policy"], "required", kv["_line"])
        self.assertEqual(kv["destination"], "localhost:%d" % d.port, kv["_line"])

    def test_address_rule_applies_to_named_destination(self):
        # The name resolves to 127.0.0.1; rules may name either.
        d = self.destination(tls=None)
        self.start_out(d, host="localhost",
                       policies=[{"match": "127.0.0.1", "policy": "required"}])
        self.refused(self.client(), d)

    def test_non_matching_rules_keep_default(self):
        d = self.destination(tls=None)
        p = self.start_out(d, host="localhost",
                           policies=[{"match": "mx.example.net", "policy": "required"},
                                     {"match": ".example.org", "policy": "verify"},
                                     {"match": "192.0.2.0/24", "policy": "required"}])
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        kv = self.session_line(p, c)
        self.assertSecurity(kv, "plaintext", policy="opportunistic")

    def test_name_rule_ignored_for_address_destination(self):
        # Destination given as an address: there is no name to match.
        d = self.destination(tls=None)
        p = self.start_out(d, policies=[{"match": "localhost", "policy": "required"}])
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertSecurity(self.session_line(p, c), "plaintext", policy="opportunistic")

    def test_rule_relaxes_to_none(self):
        d = self.destination()
        p = self.start_out(d, policy="required", host="localhost",
                           policies=[{"match": "localhost", "policy": "none"}])
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertNotIn(b"STARTTLS", d.verbs())
        self.assertSecurity(self.session_line(p, c), "plaintext", policy="none")

    def test_rule_selects_verify(self):
        d = self.destination(tls="other")
        p = self.start_out(d, host="localhost", tls={"ca_file": self.pki.ca},
                           policies=[{"match": "localhost", "policy": "verify"}])
        c = self.client()
        r = self.refused(c, d)
        self.assertIn("certificate did not verify", r.lines[0])
        kv = self.session_line(p, c, quit=False)
        self.assertEqual(kv["policy"], "verify", kv["_line"])


class MetricsTest(OutboundCase):

    def setUp(self):
        super().setUp()
        self.mport = harness.free_port()

    def metrics(self):
        ok = harness.wait_until(lambda: harness.is_listening(self.mport), 5)
        self.assertTrue(ok, "metrics listener not up")
        status, body = oh.http_get(self.mport, "/metrics")
        self.assertEqual(status, 200, body[:500])
        return oh.parse_metrics(body)

    def test_policy_refusals_counted(self):
        plain = self.destination(tls=None)
        bad_cert = self.destination(tls="other")
        relay = oh.outbound_listener("127.0.0.1:%d" % plain.port, "required")
        strict = oh.outbound_listener("localhost:%d" % bad_cert.port, "verify", name="strict",
                                      tls={"ca_file": self.pki.ca})
        self.proxy_ = p = self.proxy(oh.outbound_config(
            [relay, strict], metrics_listen="127.0.0.1:%d" % self.mport))
        name = "smtp_tls_proxy_policy_refusals_total"
        for _ in range(2):
            c = harness.Client(harness.listen_port_of(relay))
            self.addCleanup(c.close)
            c.greeting()
            self.refused(c, plain)
        c = harness.Client(harness.listen_port_of(strict))
        self.addCleanup(c.close)
        c.greeting()
        self.refused(c, bad_cert)
        self.assertTrue(harness.wait_until(lambda: len(p.session_ends()) >= 3, 5))
        s = self.metrics()
        self.assertEqual(oh.metric(s, name, listener="relay", policy="required"), 2, s)
        self.assertEqual(oh.metric(s, name, listener="strict", policy="verify"), 1, s)
        self.assertEqual(oh.metric(s, name, listener="relay", policy="verify"), 0)

    def test_successful_session_counts_no_refusal(self):
        d = self.destination()
        self.start_out(d)
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.session_line(self.proxy_, c)
        s = self.metrics()
        self.assertEqual(oh.metric(s, "smtp_tls_proxy_policy_refusals_total"), 0)
        self.assertGreaterEqual(oh.metric(s, "smtp_tls_proxy_starttls_total",
                                          listener="relay", result="ok"), 1, s)


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
