"""STARTTLS and implicit TLS on the inbound side: delivery over TLS 1.2 and
1.3, the proxy's own STARTTLS replies and refusals, command injection, the
post-TLS EHLO rules, AUTH/XCLIENT/XFORWARD policy, require_tls, old
protocol versions."""

import smtplib
import socket
import ssl
import threading
import time
import unittest
import warnings

import harness
from harness import CRLF, Client, ProxyTestCase

BACKEND_EHLO = ["backend.test", "PIPELINING", "SIZE 52428800", "STARTTLS", "AUTH PLAIN LOGIN",
                "AUTH=PLAIN LOGIN", "XCLIENT NAME ADDR", "XFORWARD NAME ADDR",
                "ENHANCEDSTATUSCODES", "8BITMIME", "REQUIRETLS", "CHUNKING"]

READY = "220 2.0.0 Ready to start TLS"


def local_tls11_works():
    """True if this host's OpenSSL can still speak TLS 1.1 at all (checked
    against an in-process server), so a refusal can be blamed on the proxy."""
    if not getattr(ssl, "HAS_TLSv1_1", False):
        return False
    p = harness.pki()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            sctx.load_cert_chain(p.cert, p.key)
            sctx.minimum_version = ssl.TLSVersion.TLSv1_1
            sctx.maximum_version = ssl.TLSVersion.TLSv1_1
            sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        cctx = tls11_client_context()
    except (ssl.SSLError, ValueError):
        return False
    ls = socket.socket()
    ls.bind((harness.HOST, 0))
    ls.listen(1)
    ls.settimeout(5)
    result = {}

    def serve():
        try:
            s, _ = ls.accept()
            s.settimeout(5)
            with sctx.wrap_socket(s, server_side=True) as t:
                result["server"] = t.version()
        except (OSError, ssl.SSLError):
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ok = False
    try:
        with socket.create_connection(ls.getsockname(), timeout=5) as s:
            with cctx.wrap_socket(s, server_hostname="mx.test") as ts:
                ok = ts.version() == "TLSv1.1"
    except (OSError, ssl.SSLError):
        ok = False
    t.join(5)
    ls.close()
    return ok


def tls11_client_context():
    ctx = harness.pki().client_context(verify=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


class StartTlsDeliveryTest(ProxyTestCase):

    def deliver(self, ctx, expect_version):
        b, p = self.start(backend=self.backend(ehlo=BACKEND_EHLO))
        c = self.client()
        r = c.ehlo()
        self.assertIn("STARTTLS", r.keywords())
        r = c.starttls(ctx)
        self.assertEqual(r.raw, (READY + "\r\n").encode())
        self.assertEqual(c.sock.version(), expect_version)
        r = c.ehlo("after-tls.test")
        self.assertEqual(r.code, 250, r)
        body = b"Subject: tls\r\nMessage-Id: <tls@e2e.test>\r\n\r\nover " + expect_version.encode() + b"\r\n"
        replies = c.send_message("a@x.test", ["b@y.test"], body)
        self.assertEqual([x.code for x in replies], [250, 250, 354, 250], replies)
        port = c.local_port
        r = c.cmd("QUIT")
        self.assertEqual(r.code, 221)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, body)
        self.assertNotIn(b"STARTTLS", b.raw_all())
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv, "no session-end line")
        self.assertEqual(kv["tls"], expect_version, kv["_line"])
        self.assertEqual(kv["sni"], "mx.test", kv["_line"])
        self.assertNotIn(kv["cipher"], ("", "none", "-"), kv["_line"])
        self.assertEqual(kv["end"], "quit", kv["_line"])
        return kv

    def test_tls13(self):
        v = ssl.TLSVersion.TLSv1_3
        kv = self.deliver(self.pki.client_context(min_version=v, max_version=v), "TLSv1.3")
        self.assertTrue(kv["cipher"].startswith("TLS_"), kv["_line"])

    def test_tls12(self):
        v = ssl.TLSVersion.TLSv1_2
        self.deliver(self.pki.client_context(min_version=v, max_version=v), "TLSv1.2")

    def test_smtplib_starttls(self):
        b, p = self.start()
        s = smtplib.SMTP(harness.HOST, p.port, timeout=10)
        self.addCleanup(s.close)
        s.ehlo("smtplib.test")
        code, text = s.starttls(context=self.pki.client_context())
        self.assertEqual((code, text), (220, b"2.0.0 Ready to start TLS"))
        s.ehlo("smtplib.test")
        self.assertFalse(s.has_extn("starttls"))
        msg = b"Subject: smtplib\r\n\r\nhello over tls\r\n"
        self.assertEqual(s.sendmail("a@x.test", ["b@y.test"], msg), {})
        s.quit()
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, msg)

    def test_certificate_chain_and_name(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        # Verification against the test CA with name checking is done by the
        # default client context; check the leaf too.
        c.starttls(self.pki.client_context(), server_hostname="mx.test")
        cert = c.sock.getpeercert()
        sans = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
        self.assertIn("mx.test", sans)


class StartTlsRepliesTest(ProxyTestCase):

    def test_starttls_with_argument_501(self):
        b, _ = self.start()
        c = self.client()
        c.ehlo()
        r = c.cmd("STARTTLS now")
        self.assertReply(r, 501, "5.5.4")
        # The session goes on in plaintext.
        self.assertEqual(c.cmd("NOOP").code, 250)
        self.assertNeverForwarded(b, b"STARTTLS")

    def test_starttls_before_ehlo_503(self):
        b, _ = self.start()
        c = self.client()
        r = c.cmd("STARTTLS")
        self.assertReply(r, 503, "5.5.1")
        self.assertEqual(c.cmd("NOOP").code, 250)
        self.assertNeverForwarded(b, b"STARTTLS")

    def test_starttls_inside_tls_503(self):
        b, _ = self.start()
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd("STARTTLS")
        self.assertReply(r, 503, "5.5.1")
        self.assertEqual(c.cmd("NOOP").code, 250)
        self.assertNeverForwarded(b, b"STARTTLS")

    def test_starttls_inside_tls_before_second_ehlo_503(self):
        b, _ = self.start()
        c = self.client()
        c.ehlo()
        c.starttls()
        r = c.cmd("STARTTLS")
        self.assertReply(r, 503, "5.5.1")
        self.assertNeverForwarded(b, b"STARTTLS")

    def test_starttls_during_transaction_503(self):
        b, _ = self.start()
        c = self.client()
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<a@x.test>").code, 250)
        r = c.cmd("STARTTLS")
        self.assertReply(r, 503, "5.5.1")
        # The transaction is still usable.
        self.assertEqual(c.cmd("RCPT TO:<b@y.test>").code, 250)
        self.assertNeverForwarded(b, b"STARTTLS")

    def test_starttls_allowed_after_rset(self):
        b, _ = self.start()
        c = self.client()
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<a@x.test>").code, 250)
        self.assertEqual(c.cmd("RSET").code, 250)
        r = c.cmd("STARTTLS")
        self.assertEqual(r.raw, (READY + "\r\n").encode())
        c.wrap()
        self.assertEqual(c.ehlo().code, 250)

    def test_starttls_allowed_after_completed_message(self):
        b, _ = self.start()
        c = self.client()
        c.ehlo()
        replies = c.send_message("a@x.test", ["b@y.test"], b"Subject: first\r\n\r\nplain\r\n")
        self.assertEqual([x.code for x in replies], [250, 250, 354, 250])
        r = c.cmd("STARTTLS")
        self.assertEqual(r.raw, (READY + "\r\n").encode())
        c.wrap()
        self.assertEqual(c.ehlo().code, 250)

    def test_starttls_allowed_after_rejected_mail(self):
        # A MAIL the backend refused opened no transaction.
        b, _ = self.start(backend=self.backend(actions={"MAIL": b"550 5.7.1 no"}))
        c = self.client()
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<a@x.test>").code, 550)
        r = c.cmd("STARTTLS")
        self.assertEqual(r.raw, (READY + "\r\n").encode())
        c.wrap()
        self.assertEqual(c.ehlo().code, 250)

    def test_starttls_lowercase_accepted(self):
        b, _ = self.start()
        c = self.client()
        c.ehlo()
        r = c.cmd("starttls")
        self.assertEqual(r.raw, (READY + "\r\n").encode())
        c.wrap()
        self.assertEqual(c.ehlo().code, 250)
        self.assertNeverForwarded(b, b"starttls")

    def test_injected_command_after_starttls_discarded(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@x>\r\n")
        r = c.read_reply()
        self.assertEqual(r.raw, (READY + "\r\n").encode())
        # Nothing else may follow the 220 in plaintext; the handshake must
        # succeed (the injected bytes are not fed to TLS).
        c.wrap()
        r = c.ehlo("after.test")
        self.assertEqual(r.code, 250, "first reply after TLS should be EHLO's: %r" % (r,))
        self.assertEqual(r.lines[0][:4], "250-", r)
        # A fresh transaction works, so no MAIL is pending at the backend.
        self.assertEqual(c.cmd("MAIL FROM:<good@x.test>").code, 250)
        self.assertNeverForwarded(b, b"evil")
        self.assertEqual(b.verbs().count(b"MAIL"), 1, b.commands_all())

    def test_injected_ehlo_and_rcpt_after_starttls_discarded(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        c.send(b"STARTTLS\r\nEHLO injected.test\r\nRSET\r\nVRFY injected\r\n")
        r = c.read_reply()
        self.assertEqual(r.code, 220, r)
        c.wrap()
        r = c.cmd("NOOP")
        self.assertEqual(r.code, 250, r)
        self.assertNeverForwarded(b, b"injected")
        self.assertNotIn(b"RSET", b.verbs())


class PostTlsEhloTest(ProxyTestCase):

    def test_mail_before_second_ehlo_503(self):
        b, _ = self.start()
        c = self.client()
        c.ehlo()
        c.starttls()
        r = c.cmd("MAIL FROM:<a@x.test>")
        self.assertReply(r, 503, "5.5.1")
        self.assertNeverForwarded(b, b"MAIL FROM")
        self.assertEqual(c.ehlo().code, 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@x.test>").code, 250)

    def test_envelope_forgotten_after_starttls(self):
        # RFC 3207 4.2: all knowledge from before TLS is discarded, so the
        # backend must be reset (it sees a fresh EHLO, which resets it).
        b, _ = self.start()
        c = self.client()
        c.ehlo("before.test")
        c.starttls()
        c.ehlo("after.test")
        self.assertTrue(b.wait_for(lambda: b"EHLO after.test" in b.commands_all()))
        ehlos = [l for l in b.commands_all() if l.upper().startswith(b"EHLO")]
        self.assertEqual(ehlos, [b"EHLO before.test", b"EHLO after.test"])

    def test_ehlo_after_tls_auth_passes_no_starttls(self):
        b, _ = self.start(backend=self.backend(ehlo=BACKEND_EHLO))
        c = self.client()
        before = c.ehlo()
        self.assertNotIn("AUTH", before.keywords())
        self.assertNotIn("REQUIRETLS", before.keywords())
        c.starttls()
        r = c.ehlo()
        self.assertEqual(r.lines[0], "250-backend.test")
        kws = r.keywords()
        self.assertNotIn("STARTTLS", kws, r.raw)
        self.assertIn("250-AUTH PLAIN LOGIN", r.lines, r.raw)
        self.assertIn("REQUIRETLS", kws, r.raw)
        self.assertIn("PIPELINING", kws)
        self.assertIn("CHUNKING", kws)
        self.assertTrue(r.lines[-1].startswith("250 "), r.raw)

    def test_ehlo_after_tls_no_xclient_xforward(self):
        # XCLIENT/XFORWARD from a client are always refused (550 5.7.0), so
        # they must not be advertised either.
        b, _ = self.start(backend=self.backend(ehlo=BACKEND_EHLO))
        c = self.client()
        c.ehlo()
        c.starttls()
        kws = c.ehlo().keywords()
        self.assertNotIn("XCLIENT", kws)
        self.assertNotIn("XFORWARD", kws)

    def test_ehlo_after_tls_single_line(self):
        b, _ = self.start(backend=self.backend(ehlo=["backend.test"]))
        c = self.client()
        c.ehlo()
        c.starttls()
        r = c.ehlo()
        self.assertEqual(r.raw, b"250 backend.test\r\n")


class AuthPolicyTest(ProxyTestCase):

    def test_auth_before_tls_530(self):
        b, _ = self.start(backend=self.backend(ehlo=BACKEND_EHLO))
        c = self.client()
        c.ehlo()
        r = c.cmd("AUTH PLAIN AHVzZXIAcGFzcw==")
        self.assertReply(r, 530, "5.7.0", "530 5.7.0 Must issue a STARTTLS command first")
        r = c.cmd("AUTH LOGIN")
        self.assertReply(r, 530, "5.7.0")
        self.assertEqual(c.cmd("NOOP").code, 250)
        self.assertNeverForwarded(b, b"AUTH")
        self.assertNeverForwarded(b, b"AHVzZXIAcGFzcw", settle=0)

    def test_auth_after_tls_forwarded(self):
        b, _ = self.start(backend=self.backend(ehlo=BACKEND_EHLO))
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd("AUTH PLAIN AHVzZXIAcGFzcw==")
        self.assertEqual(r.raw, b"235 2.7.0 Authentication successful\r\n")
        self.assertIn(b"AUTH PLAIN AHVzZXIAcGFzcw==", b.commands_all())
        # The payload is never logged.
        self.assertNotIn("AHVzZXIAcGFzcw", self.proxy_.log())

    def test_auth_continuation_long_line_after_tls(self):
        # An AUTH continuation line may be up to 12288 octets.
        b, _ = self.start(backend=self.backend(ehlo=BACKEND_EHLO))
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd("AUTH PLAIN")
        self.assertEqual(r.code, 334, r)
        blob = b"QUFB" * 2000  # 8000 octets
        r = c.cmd(blob)
        self.assertEqual(r.raw, b"235 2.7.0 Authentication successful\r\n")
        self.assertTrue(b.wait_raw(blob + CRLF))

    def test_xclient_xforward_refused_550(self):
        b, _ = self.start(backend=self.backend(ehlo=BACKEND_EHLO))
        c = self.client()
        c.ehlo()
        self.assertReply(c.cmd("XCLIENT ADDR=192.0.2.1 NAME=spoofed.test"), 550, "5.7.0")
        self.assertReply(c.cmd("XFORWARD ADDR=192.0.2.1"), 550, "5.7.0")
        self.assertEqual(c.cmd("NOOP").code, 250)
        c.starttls()
        c.ehlo()
        self.assertReply(c.cmd("XCLIENT ADDR=192.0.2.2"), 550, "5.7.0")
        self.assertReply(c.cmd("xforward NAME=spoofed.test"), 550, "5.7.0")
        self.assertNeverForwarded(b, b"192.0.2.")
        self.assertNeverForwarded(b, b"spoofed", settle=0)


class RequireTlsTest(ProxyTestCase):

    def test_mail_before_starttls_530(self):
        b, _ = self.start(require_tls=True)
        c = self.client()
        r = c.ehlo()
        self.assertIn("STARTTLS", r.keywords())
        r = c.cmd("MAIL FROM:<a@x.test>")
        self.assertReply(r, 530, "5.7.0")
        self.assertNeverForwarded(b, b"MAIL")
        c.starttls()
        c.ehlo()
        replies = c.send_message("a@x.test", ["b@y.test"], b"Subject: req\r\n\r\nok\r\n")
        self.assertEqual([x.code for x in replies], [250, 250, 354, 250], replies)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.verbs().count(b"MAIL"), 1)

    def test_pipelined_envelope_before_starttls_refused(self):
        b, _ = self.start(require_tls=True)
        c = self.client()
        c.ehlo()
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        r1, r2, r3 = c.read_reply(), c.read_reply(), c.read_reply()
        self.assertReply(r1, 530, "5.7.0")
        self.assertNotEqual(r2.code // 100, 2, r2)
        self.assertNotEqual(r3.code, 354, r3)
        self.assertNeverForwarded(b, b"MAIL")
        self.assertNeverForwarded(b, b"RCPT", settle=0)
        self.assertNeverForwarded(b, b"DATA", settle=0)


class ImplicitTlsTest(ProxyTestCase):

    def test_smtp_ssl_delivery(self):
        b, p = self.start(tls_mode="implicit",
                          backend=self.backend(ehlo=BACKEND_EHLO))
        s = smtplib.SMTP_SSL(harness.HOST, p.port, timeout=10,
                             context=self.pki.client_context())
        self.addCleanup(s.close)
        code, _ = s.ehlo("implicit.test")
        self.assertEqual(code, 250)
        self.assertFalse(s.has_extn("starttls"))
        self.assertTrue(s.has_extn("auth"))
        msg = b"Subject: implicit\r\n\r\nport 465 style\r\n"
        self.assertEqual(s.sendmail("a@x.test", ["b@y.test"], msg), {})
        s.quit()
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, msg)

    def test_greeting_only_after_handshake_and_logged(self):
        b, p = self.start(tls_mode="implicit")
        c = Client(p.port)
        self.addCleanup(c.close)
        c.wrap()
        self.assertEqual(c.greeting().raw, b"220 backend.test ESMTP\r\n")
        port = c.local_port
        self.assertEqual(c.cmd("STARTTLS").code // 100, 5)
        c.cmd("QUIT")
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv)
        self.assertEqual(kv["tls"], "TLSv1.3", kv["_line"])
        self.assertEqual(kv["sni"], "mx.test", kv["_line"])
        self.assertEqual(kv["end"], "quit", kv["_line"])
        self.assertNeverForwarded(b, b"STARTTLS")

    def test_silent_client_on_implicit_port(self):
        b, p = self.start(tls_mode="implicit", timeouts={"handshake": 2})
        c = Client(p.port)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        c.expect_closed(5)
        self.assertLess(time.monotonic() - t0, 4.0)
        self.assertNeverForwarded(b, b"EHLO", settle=0)

    def test_plaintext_client_on_implicit_port(self):
        b, p = self.start(tls_mode="implicit", timeouts={"handshake": 2})
        c = Client(p.port)
        self.addCleanup(c.close)
        port = c.local_port
        c.send(b"EHLO plaintext.test\r\n")
        extra = c.expect_closed(5)
        self.assertNotIn(b"250", extra)
        self.assertNeverForwarded(b, b"EHLO")
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv)
        self.assertEqual(kv["end"], "tls_failed", kv["_line"])


class ProtocolVersionTest(ProxyTestCase):

    def test_tls11_refused(self):
        if not local_tls11_works():
            self.skipTest("local OpenSSL cannot speak TLS 1.1")
        b, p = self.start()
        c = self.client()
        c.ehlo()
        port = c.local_port
        with self.assertRaises((ssl.SSLError, OSError)):
            c.starttls(tls11_client_context())
            # Some stacks report the failure only on first use.
            c.ehlo()
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv)
        self.assertEqual(kv["end"], "tls_failed", kv["_line"])
        # A warning line says why.
        self.assertTrue(p.wait_log(r"session=%s .*event=tls_failed.* reason=\S+" % kv["session"], 2),
                        "no tls_failed line with reason= for the session")
        self.assertNeverForwarded(b, b"MAIL")

    def test_min_version_13_refuses_12(self):
        b, p = self.start(tls_overrides={"min_version": "1.3"})
        c = self.client()
        c.ehlo()
        v = ssl.TLSVersion.TLSv1_2
        with self.assertRaises((ssl.SSLError, OSError)):
            c.starttls(self.pki.client_context(min_version=v, max_version=v))
            c.ehlo()
        c2 = self.client()
        c2.ehlo()
        c2.starttls()
        self.assertEqual(c2.sock.version(), "TLSv1.3")

    def test_garbage_instead_of_client_hello(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        port = c.local_port
        self.assertEqual(c.cmd("STARTTLS").code, 220)
        c.send(b"this is not a TLS record\r\nMAIL FROM:<x@y>\r\n")
        c.expect_closed(5)
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv)
        self.assertEqual(kv["end"], "tls_failed", kv["_line"])
        self.assertNeverForwarded(b, b"MAIL")


class PipeliningTlsTest(ProxyTestCase):

    def test_pipelining_after_tls(self):
        b, _ = self.start()
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        replies = c.send_message("a@x.test", ["b@y.test", "c@y.test"],
                                 b"Subject: pipelined\r\n\r\nafter tls\r\n", pipelining=True)
        self.assertEqual([x.code for x in replies], [250, 250, 250, 354, 250], replies)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(len(b.messages[0].rcpts), 2)


if __name__ == "__main__":
    harness.run_tests()
