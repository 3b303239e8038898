"""What the outbound e2e tests share (test_outbound*.py): scripted
destinations' EHLO lines and greeting, STARTTLS actions that misbehave, a CA
the proxy does not trust, and OutboundCase, which builds destinations and
proxies with one outbound listener and checks the session line.

Destinations are scripted servers on 127.0.0.1 (harness.ScriptedBackend)
that record every byte; TLS ones use Python's ssl with certificates from the
harness test CA (outbound_harness.certs())."""

import os

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
