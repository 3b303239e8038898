"""Inbound basics over plaintext: greeting and EHLO rewriting, HELO, QUIT,
transparent relaying of other verbs, delivery with smtplib, the session log
line."""

import smtplib
import socket
import time
import unittest

import harness
from harness import CRLF, Client, ProxyTestCase


class GreetingTest(ProxyTestCase):

    def test_greeting_passed_verbatim(self):
        greeting = (b"220-backend.test ESMTP first line\r\n"
                    b"220-second line with  two  spaces\r\n"
                    b"220 backend.test last line\r\n")
        self.start(backend=self.backend(greeting=greeting))
        c = self.client(greet=False)
        r = c.greeting()
        self.assertEqual(r.raw, greeting)

    def test_greeting_4xx_passed_verbatim(self):
        greeting = b"421 4.3.2 backend.test busy, try later\r\n"
        self.start(backend=self.backend(actions={"CONNECT": greeting}))
        c = self.client(greet=False)
        self.assertEqual(c.greeting().raw, greeting)


class EhloRewriteTest(ProxyTestCase):

    def ehlo_through(self, backend_lines, client_name="client.test"):
        b, _ = self.start(backend=self.backend(ehlo=backend_lines))
        c = self.client()
        r = c.ehlo(client_name)
        # The backend must see the client's EHLO as sent.
        self.assertTrue(b.wait_for(lambda: b"EHLO " + client_name.encode() in b.commands_all()),
                        b.commands_all())
        return r

    def test_starttls_inserted_after_domain_and_filtered(self):
        r = self.ehlo_through([
            "backend.test Hello client", "PIPELINING", "SIZE 10240000", "VRFY", "ETRN",
            "STARTTLS", "AUTH PLAIN LOGIN", "AUTH=PLAIN LOGIN", "XCLIENT NAME ADDR",
            "XFORWARD NAME ADDR", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN",
            "X-WEIRD-EXTENSION foo", "XEXCH50", "SMTPUTF8", "REQUIRETLS", "CHUNKING"])
        self.assertEqual(r.raw, (
            b"250-backend.test Hello client\r\n"
            b"250-STARTTLS\r\n"
            b"250-PIPELINING\r\n"
            b"250-SIZE 10240000\r\n"
            b"250-VRFY\r\n"
            b"250-ETRN\r\n"
            b"250-ENHANCEDSTATUSCODES\r\n"
            b"250-8BITMIME\r\n"
            b"250-DSN\r\n"
            b"250-SMTPUTF8\r\n"
            b"250 CHUNKING\r\n"))

    def test_removed_last_line_fixes_final_separator(self):
        r = self.ehlo_through(["backend.test", "PIPELINING", "AUTH PLAIN LOGIN"])
        self.assertEqual(r.raw, b"250-backend.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n")

    def test_all_but_domain_removed(self):
        r = self.ehlo_through(["backend.test", "XCLIENT ADDR", "STARTTLS", "AUTH LOGIN"])
        self.assertEqual(r.raw, b"250-backend.test\r\n250 STARTTLS\r\n")

    def test_single_line_reply(self):
        r = self.ehlo_through(["backend.test"])
        self.assertEqual(r.raw, b"250-backend.test\r\n250 STARTTLS\r\n")

    def test_exactly_one_starttls_even_if_backend_offers_it_twice(self):
        r = self.ehlo_through(["backend.test", "STARTTLS", "starttls", "PIPELINING"])
        self.assertEqual([l.upper() for l in r.lines].count("250-STARTTLS")
                         + [l.upper() for l in r.lines].count("250 STARTTLS"), 1, r.raw)
        self.assertEqual(r.raw, b"250-backend.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n")

    def test_allowlist_passes_before_tls(self):
        allowed = ["SIZE 1000", "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN",
                   "SMTPUTF8", "CHUNKING", "BINARYMIME", "DELIVERBY 240", "ETRN", "HELP",
                   "VRFY", "EXPN", "MTRK", "NO-SOLICITING", "MT-PRIORITY MIXER", "RRVS",
                   "LIMITS RCPTMAX=100"]
        r = self.ehlo_through(["backend.test"] + allowed + ["REQUIRETLS"])
        self.assertEqual(r.lines, ["250-backend.test", "250-STARTTLS"] +
                         ["250-" + a for a in allowed[:-1]] + ["250 " + allowed[-1]])

    def test_keywords_matched_case_insensitively(self):
        r = self.ehlo_through(["backend.test", "pipelining", "auth login", "Auth=Login",
                               "xclient ADDR", "xforward NAME", "StartTLS", "8bitmime"])
        self.assertEqual(r.raw, b"250-backend.test\r\n250-STARTTLS\r\n"
                                b"250-pipelining\r\n250 8bitmime\r\n")

    def test_error_reply_untouched(self):
        err = b"550-5.7.1 first line of refusal\r\n550 5.7.1 go away\r\n"
        b, _ = self.start(backend=self.backend(actions={"EHLO": err}))
        c = self.client()
        r = c.ehlo()
        self.assertEqual(r.raw, err)

    def test_helo_reply_unchanged(self):
        b, _ = self.start()
        c = self.client()
        r = c.cmd("HELO client.test")
        self.assertEqual(r.raw, b"250 backend.test\r\n")
        self.assertIn(b"HELO client.test", b.commands_all())

    def test_smtp_sink_quirky_empty_last_line(self):
        # Postfix's smtp-sink ends its EHLO reply with "250 " (no keyword).
        b, _ = self.start(backend=self.backend(
            ehlo=["backend.test", "PIPELINING", "AUTH PLAIN", ""]))
        c = self.client()
        r = c.ehlo()
        self.assertEqual(r.code, 250, r)
        self.assertEqual(r.lines[0], "250-backend.test")
        self.assertEqual(r.lines[1], "250-STARTTLS")
        self.assertIn("PIPELINING", r.keywords())
        self.assertNotIn("AUTH", r.raw.decode().upper())
        self.assertTrue(r.lines[-1].startswith("250 "), r.raw)
        for l in r.lines[:-1]:
            self.assertTrue(l.startswith("250-"), r.raw)


class FragmentationTest(ProxyTestCase):

    def test_backend_replies_dribbled(self):
        # Greeting and EHLO reply arrive a few octets at a time.
        b, _ = self.start(backend=self.backend(
            ehlo=["backend.test", "PIPELINING", "AUTH PLAIN", "8BITMIME"],
            reply_chunk=3, reply_delay=0.003))
        c = self.client(greet=False)
        self.assertEqual(c.greeting().raw, b"220 backend.test ESMTP\r\n")
        r = c.ehlo()
        self.assertEqual(r.raw, b"250-backend.test\r\n250-STARTTLS\r\n250-PIPELINING\r\n"
                                b"250 8BITMIME\r\n")
        self.assertEqual(c.cmd("VRFY dribble").raw, b"252 2.0.0 dribble\r\n")

    def test_client_command_dribbled(self):
        b, _ = self.start()
        c = self.client()
        for ch in b"EHLO split.test\r\n":
            c.send(bytes([ch]))
            time.sleep(0.005)
        r = c.read_reply()
        self.assertEqual(r.code, 250, r)
        self.assertIn(b"EHLO split.test", b.commands_all())

    def test_large_ehlo_reply(self):
        # 90 lines, 7 KB: big for EHLO, within the proxy's reply limits
        # (100 lines, 16 KiB, 1024-octet lines: see proxy/smtp.h).
        ehlo = ["backend.test"] + ["X-EXT-%03d %s" % (i, "p" * 60) for i in range(88)] + ["PIPELINING"]
        b, _ = self.start(backend=self.backend(ehlo=ehlo))
        c = self.client()
        r = c.ehlo()
        self.assertEqual(r.raw, b"250-backend.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n")

    def test_absurd_ehlo_reply_fails_cleanly(self):
        # Over the limits: a 421 and a close, never a hang or a crash.
        ehlo = ["backend.test"] + ["X-EXT-%03d %s" % (i, "p" * 60) for i in range(500)] + ["PIPELINING"]
        b, p = self.start(backend=self.backend(ehlo=ehlo))
        c = self.client()
        r = c.ehlo()
        self.assertEqual(r.code, 421, r)
        c.expect_closed(3)
        self.assertTrue(p.alive())
        c2 = self.client()
        self.assertEqual(c2.cmd("NOOP").code, 250)


class RelayTest(ProxyTestCase):

    def test_other_verbs_relayed_verbatim(self):
        b, _ = self.start(backend=self.backend(actions={
            "VRFY": b"252 2.0.0 cannot VRFY, but will try\r\n",
            "HELP": b"214-2.0.0 multi\r\n214 2.0.0 line help\r\n",
            "FOOBAR": b"502 5.5.2 Error: FOOBAR is not a thing\r\n",
            "NOOP": b"250 2.0.0 noop from backend\r\n",
            "RSET": b"250 2.0.0 rset from backend\r\n"}))
        c = self.client()
        c.ehlo()
        self.assertEqual(c.cmd("VRFY postmaster").raw, b"252 2.0.0 cannot VRFY, but will try\r\n")
        self.assertEqual(c.cmd("HELP").raw, b"214-2.0.0 multi\r\n214 2.0.0 line help\r\n")
        self.assertEqual(c.cmd("FOOBAR baz").raw, b"502 5.5.2 Error: FOOBAR is not a thing\r\n")
        self.assertEqual(c.cmd("NOOP").raw, b"250 2.0.0 noop from backend\r\n")
        self.assertEqual(c.cmd("RSET").raw, b"250 2.0.0 rset from backend\r\n")
        cmds = b.commands_all()
        for line in (b"VRFY postmaster", b"HELP", b"FOOBAR baz", b"NOOP", b"RSET"):
            self.assertIn(line, cmds)

    def test_commands_relayed_byte_exact(self):
        b, _ = self.start()
        c = self.client()
        c.ehlo("Client.Test")
        c.cmd("MAIL FROM:<Odd.Case@Example.ORG> SIZE=1234 BODY=8BITMIME")
        c.cmd("RCPT TO:<x@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y.test")
        c.cmd("rset")
        raw = b.raw_all()
        self.assertIn(b"EHLO Client.Test\r\n"
                      b"MAIL FROM:<Odd.Case@Example.ORG> SIZE=1234 BODY=8BITMIME\r\n"
                      b"RCPT TO:<x@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y.test\r\n"
                      b"rset\r\n", raw)

    def test_backend_rejections_passed_through(self):
        b, _ = self.start(backend=self.backend(actions={
            "MAIL": b"550 5.7.1 sender rejected by backend\r\n"}))
        c = self.client()
        c.ehlo()
        r = c.cmd("MAIL FROM:<a@b.test>")
        self.assertEqual(r.raw, b"550 5.7.1 sender rejected by backend\r\n")

    def test_backend_421_mid_session_passed_then_closed(self):
        b, p = self.start(backend=self.backend(actions={
            "NOOP": ("reply_close", b"421 4.3.2 backend.test shutting down\r\n")}))
        c = self.client()
        c.ehlo()
        port = c.local_port
        r = c.cmd("NOOP")
        self.assertEqual(r.raw, b"421 4.3.2 backend.test shutting down\r\n")
        c.expect_closed(3)
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv)
        self.assertIn(kv["end"], ("backend_closed", "quit"), kv["_line"])

    def test_data_refused_keeps_command_mode(self):
        # The proxy follows the backend's reply to DATA, not the client's
        # verb: after a 554 the next line is a command, not content.
        b, p = self.start()
        c = self.client()
        c.ehlo()
        c.send(b"MAIL FROM:<a@x.test>\r\nDATA\r\n")
        self.assertEqual(c.read_reply().code, 250)
        self.assertEqual(c.read_reply().code, 554)
        self.assertEqual(c.cmd("VRFY marker").raw, b"252 2.0.0 marker\r\n")
        c.send(b"RCPT TO:<b@y.test>\r\nDATA\r\n")
        self.assertEqual([c.read_reply().code for _ in range(2)], [250, 354])
        c.send(b"VRFY inside\r\n.\r\n")
        self.assertEqual(c.read_reply().code, 250)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, b"VRFY inside\r\n")

    def test_quit_passes_backend_221_and_closes(self):
        b, p = self.start(backend=self.backend(actions={"QUIT": b"221 2.0.0 backend says bye\r\n"}))
        c = self.client()
        c.ehlo()
        r = c.cmd("QUIT")
        self.assertEqual(r.raw, b"221 2.0.0 backend says bye\r\n")
        self.assertEqual(c.expect_closed(3), b"")
        self.assertTrue(b.wait_all_closed(3), "backend leg still open after QUIT")

    def test_plaintext_delivery_with_smtplib(self):
        b, p = self.start()
        s = smtplib.SMTP(harness.HOST, p.port, timeout=10)
        self.addCleanup(s.close)
        code, _ = s.ehlo("smtplib.test")
        self.assertEqual(code, 250)
        self.assertTrue(s.has_extn("starttls"))
        self.assertFalse(s.has_extn("auth"))
        msg = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: plain\r\n"
               b"Message-Id: <plain-1@e2e.test>\r\n\r\nHello.\r\n.leading dot\r\n")
        refused = s.sendmail("a@example.test", ["b@example.test", "c@example.test"], msg)
        self.assertEqual(refused, {})
        s.quit()
        self.assertTrue(b.wait_messages(1))
        m = b.messages[0]
        self.assertEqual(m.data, msg)
        self.assertEqual(m.mail_from, b"mail FROM:<a@example.test> size=%d" % len(msg))
        self.assertEqual(m.rcpts, [b"rcpt TO:<b@example.test>", b"rcpt TO:<c@example.test>"])

    def test_two_messages_in_one_session(self):
        b, _ = self.start()
        c = self.client()
        c.ehlo()
        for i in range(2):
            replies = c.send_message("a@x.test", ["b@y.test"], b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
            self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        c.cmd("RSET")
        self.assertTrue(b.wait_messages(2))
        self.assertEqual([m.data for m in b.messages],
                         [b"Subject: 0\r\n\r\nbody 0\r\n", b"Subject: 1\r\n\r\nbody 1\r\n"])


class LogLineTest(ProxyTestCase):

    def test_session_end_line_after_quit(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        c.send_message("a@x.test", ["b@y.test"], b"Subject: log\r\n\r\n" + b"x" * 5000 + b"\r\n")
        c.cmd("QUIT")
        c.expect_closed(3)
        kv = p.wait_session_end(client_port=self._port)
        self.assertIsNotNone(kv, "no session-end line for client port %d" % self._port)
        for key in ("session", "listener", "dir", "client", "backend", "tls", "cipher",
                    "sni", "bytes_in", "bytes_out", "ms", "end"):
            self.assertIn(key, kv, kv["_line"])
        self.assertNotEqual(kv["session"], "", kv["_line"])
        self.assertEqual(kv["listener"], "mx")
        self.assertEqual(kv["dir"], "in")
        self.assertEqual(kv["client"], "127.0.0.1:%d" % self._port)
        self.assertEqual(kv["backend"], b.addr)
        self.assertEqual(kv["tls"], "none")
        self.assertEqual(kv["end"], "quit")
        self.assertGreaterEqual(int(kv["bytes_in"]), len(c.sent), kv["_line"])
        self.assertGreaterEqual(int(kv["bytes_out"]), len(c.received), kv["_line"])
        self.assertGreaterEqual(int(kv["ms"]), 0)
        # Never the body in the log.
        self.assertNotIn("x" * 100, p.log())

    def client(self, *a, **kw):
        c = super().client(*a, **kw)
        self._port = c.local_port
        return c

    def test_client_close_logged_as_client_closed(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        port = c.local_port
        c.close()
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv, "no session-end line")
        self.assertEqual(kv["end"], "client_closed", kv["_line"])
        self.assertTrue(b.wait_all_closed(3), "backend leg not closed after client left")

    def test_backend_close_logged_as_backend_closed(self):
        b, p = self.start(backend=self.backend(actions={"NOOP": "close"}))
        c = self.client()
        c.ehlo()
        port = c.local_port
        c.send(b"NOOP\r\n")
        try:
            r = c.read_reply(3)
            self.assertEqual(r.code, 421, r)
        except harness.ConnectionClosed:
            pass
        c.expect_closed(3)
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv, "no session-end line")
        self.assertEqual(kv["end"], "backend_closed", kv["_line"])


class ListenerTest(ProxyTestCase):

    def test_two_listeners_route_to_their_own_backends(self):
        b1 = self.backend(name="b1", greeting=b"220 one.test ESMTP\r\n")
        b2 = self.backend(name="b2", greeting=b"220 two.test ESMTP\r\n")
        l1 = harness.inbound_listener(b1.port, name="mx1")
        l2 = harness.inbound_listener(b2.port, name="mx2")
        p = self.proxy(harness.base_config([l1, l2]))
        c1 = Client(harness.listen_port_of(l1))
        self.addCleanup(c1.close)
        c2 = Client(harness.listen_port_of(l2))
        self.addCleanup(c2.close)
        self.assertEqual(c1.greeting().raw, b"220 one.test ESMTP\r\n")
        self.assertEqual(c2.greeting().raw, b"220 two.test ESMTP\r\n")
        ports = (c1.local_port, c2.local_port)
        c1.cmd("QUIT")
        c2.cmd("QUIT")
        kv1 = p.wait_session_end(client_port=ports[0])
        kv2 = p.wait_session_end(client_port=ports[1])
        self.assertEqual((kv1 or {}).get("listener"), "mx1", kv1)
        self.assertEqual((kv2 or {}).get("listener"), "mx2", kv2)

    def test_ipv6_listener(self):
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.bind(("::1", 0))
            port = s.getsockname()[1]
            s.close()
        except OSError:
            self.skipTest("no IPv6 loopback")
        b = self.backend()
        l = harness.inbound_listener(b.port)
        l["listen"] = "[::1]:%d" % port
        self.proxy(harness.base_config([l]))
        s = smtplib.SMTP("::1", port, timeout=10)
        self.addCleanup(s.close)
        s.ehlo("v6.test")
        self.assertTrue(s.has_extn("starttls"))
        s.sendmail("a@x.test", ["b@y.test"], b"Subject: v6\r\n\r\nover ::1\r\n")
        s.quit()
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, b"Subject: v6\r\n\r\nover ::1\r\n")


class EhloKeywordsTest(ProxyTestCase):
    """ehlo_keywords: the built-in allowlist stays the default; a listener may
    pass further keywords or discard allowlisted ones, and drops are logged
    at debug."""

    EHLO = ["backend.test", "PIPELINING", "SIZE 1000", "XEXAMPLE 7", "8BITMIME"]

    def test_default_drops_unknown_and_logs_it(self):
        b, p = self.start(backend=self.backend(ehlo=self.EHLO))
        c = self.client()
        kws = c.ehlo().keywords()
        self.assertIn("SIZE", kws)
        self.assertNotIn("XEXAMPLE", kws)
        self.assertTrue(p.wait_log(r"event=ehlo_keyword_dropped detail=XEXAMPLE"), p.log()[-2000:])

    def test_pass_and_discard(self):
        b, p = self.start(backend=self.backend(ehlo=self.EHLO),
                          ehlo_keywords={"pass": ["XEXAMPLE"], "discard": ["SIZE"]})
        c = self.client()
        r = c.ehlo()
        kws = r.keywords()
        self.assertIn("XEXAMPLE", kws)
        self.assertNotIn("SIZE", kws)
        self.assertIn("STARTTLS", kws)
        self.assertIn(b"250-XEXAMPLE 7\r\n", r.raw)


if __name__ == "__main__":
    harness.run_tests()
