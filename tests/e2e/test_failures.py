"""Failures and limits: backend unreachable or dying, client vanishing
mid-DATA, idle and handshake timeouts, max_connections, over-long lines,
bare CR/LF in commands. The proxy must never invent a 250 for a message."""

import socket
import ssl
import time
import unittest

import harness
from harness import CRLF, Client, ConnectionClosed, ProxyTestCase


def read_reply_or_close(c, timeout):
    """The next reply, or None if the connection closed (or reset) first."""
    try:
        return c.read_reply(timeout)
    except (ConnectionClosed, ConnectionResetError, ssl.SSLError):
        return None


def send_ignoring_close(c, data):
    try:
        c.send(data)
        return True
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        return False


class BackendFailureTest(ProxyTestCase):

    def test_backend_down_421_441(self):
        dead = harness.free_port()
        _, p = self.start(backend_port=dead)
        t0 = time.monotonic()
        c = self.client(greet=False)
        port = c.local_port
        r = c.read_reply(5)
        elapsed = time.monotonic() - t0
        self.assertReply(r, 421, "4.4.1")
        self.assertLess(elapsed, 2.0, "421 took %.2f s" % elapsed)
        c.expect_closed(2)
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv)
        self.assertEqual(kv["end"], "backend_unreachable", kv["_line"])
        self.assertEqual(kv["backend"], "127.0.0.1:%d" % dead, kv["_line"])

    def test_backend_closes_before_greeting(self):
        b, p = self.start(backend=self.backend(actions={"CONNECT": "close"}))
        c = self.client(greet=False)
        r = read_reply_or_close(c, 5)
        if r is not None:
            self.assertEqual(r.code, 421, r)
        c.expect_closed(3)

    def test_backend_silent_greeting_times_out(self):
        b, p = self.start(backend=self.backend(actions={"CONNECT": "hang"}),
                          timeouts={"connect": 2, "idle": 2})
        c = self.client(greet=False)
        t0 = time.monotonic()
        r = read_reply_or_close(c, 8)
        self.assertLess(time.monotonic() - t0, 6, "proxy waited forever for the greeting")
        if r is not None:
            self.assertEqual(r.code, 421, r)
        c.expect_closed(3)

    def test_backend_dies_on_mail(self):
        b, p = self.start(backend=self.backend(actions={"MAIL": "close"}))
        c = self.client()
        c.ehlo()
        port = c.local_port
        c.send(b"MAIL FROM:<a@x.test>\r\n")
        r = read_reply_or_close(c, 5)
        if r is not None:
            self.assertReply(r, 421, "4.4.2")
        c.expect_closed(3)
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv)
        self.assertEqual(kv["end"], "backend_closed", kv["_line"])

    def test_backend_dies_mid_data_no_fake_250(self):
        b, p = self.start(backend=self.backend(data_close_after=1000))
        c = self.client()
        c.ehlo()
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        self.assertEqual([c.read_reply().code for _ in range(3)], [250, 250, 354])
        body = b"Subject: dies\r\n\r\n" + (b"y" * 70 + b"\r\n") * 200
        send_ignoring_close(c, body)
        time.sleep(0.3)
        send_ignoring_close(c, b".\r\n")
        r = read_reply_or_close(c, 5)
        if r is not None:
            self.assertNotEqual(r.code // 100, 2, "proxy invented %r" % (r,))
            self.assertReply(r, 421, "4.4.2")
        self.assertEqual(b.messages, [])

    def test_backend_hangs_after_end_of_data_no_fake_250(self):
        b, p = self.start(backend=self.backend(actions={".": "hang"}), timeouts={"idle": 2})
        c = self.client()
        c.ehlo()
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        self.assertEqual([c.read_reply().code for _ in range(3)], [250, 250, 354])
        c.send(b"Subject: hang\r\n\r\nbody\r\n.\r\n")
        t0 = time.monotonic()
        r = read_reply_or_close(c, 8)
        self.assertLess(time.monotonic() - t0, 6, "no timeout while the backend hung")
        if r is not None:
            self.assertNotEqual(r.code // 100, 2, "proxy invented %r" % (r,))
            self.assertEqual(r.code, 421, r)


class ClientVanishesTest(ProxyTestCase):

    def vanish_mid_data(self, tail, tls=False, rst=False):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        if tls:
            c.starttls()
            c.ehlo()
        port = c.local_port
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        self.assertEqual([c.read_reply().code for _ in range(3)], [250, 250, 354])
        c.send(b"Subject: vanish\r\n\r\n" + b"z" * 3000 + tail)
        self.assertTrue(b.wait_raw(b"z" * 3000, 5), "content never reached the backend")
        if rst:
            c.abort()
        else:
            c.close()
        self.assertTrue(b.wait_all_closed(5), "backend leg still open after the client left")
        raw = b.raw_all()
        after = raw[raw.index(b"DATA\r\n") + 6:]
        self.assertNotIn(b"\r\n.\r\n", after, "proxy completed a message the client abandoned")
        self.assertEqual(b.messages, [])
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv)
        self.assertEqual(kv["end"], "client_closed", kv["_line"])

    def test_fin_mid_data(self):
        self.vanish_mid_data(b"\r\n")

    def test_rst_mid_data(self):
        self.vanish_mid_data(b"\r\n", rst=True)

    def test_fin_after_partial_terminator(self):
        self.vanish_mid_data(b"\r\n.")

    def test_fin_after_terminator_without_lf(self):
        self.vanish_mid_data(b"\r\n.\r")

    def test_fin_mid_data_tls(self):
        self.vanish_mid_data(b"\r\n", tls=True)


class TimeoutTest(ProxyTestCase):

    def test_idle_silent_client_421(self):
        b, p = self.start(timeouts={"idle": 2})
        c = self.client()
        c.ehlo()
        port = c.local_port
        t0 = time.monotonic()
        r = c.read_reply(8)
        elapsed = time.monotonic() - t0
        self.assertReply(r, 421, "4.4.2")
        self.assertGreater(elapsed, 1.5, "timed out early (%.2f s)" % elapsed)
        self.assertLess(elapsed, 3.5, "timed out late (%.2f s)" % elapsed)
        c.expect_closed(2)
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv)
        self.assertEqual(kv["end"], "timeout", kv["_line"])

    def test_idle_inside_tls_421(self):
        b, p = self.start(timeouts={"idle": 2})
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        t0 = time.monotonic()
        r = c.read_reply(6)
        self.assertReply(r, 421, "4.4.2")
        self.assertLess(time.monotonic() - t0, 3.5)
        c.expect_closed(2)

    def test_idle_right_after_greeting(self):
        b, p = self.start(timeouts={"idle": 2})
        c = self.client()
        t0 = time.monotonic()
        r = c.read_reply(8)
        self.assertReply(r, 421, "4.4.2")
        self.assertLess(time.monotonic() - t0, 3.5)

    def test_dribbling_client_421(self):
        b, p = self.start(timeouts={"idle": 2})
        c = self.client()
        t0 = time.monotonic()
        got = None
        for i in range(16):
            if not send_ignoring_close(c, b"NOOP NOOP NOOP NOOP"[i:i + 1]):
                break
            try:
                got = c.read_reply(0.5)
                break
            except socket.timeout:
                continue
            except ConnectionClosed:
                break
        elapsed = time.monotonic() - t0
        self.assertIsNotNone(got, "no 421 for a client dribbling one byte each 0.5 s "
                                  "(%.1f s)" % elapsed)
        self.assertReply(got, 421, "4.4.2")
        self.assertLess(elapsed, 4.0)
        self.assertNeverForwarded(b, b"NOOP", settle=0)

    def test_active_client_not_timed_out(self):
        b, p = self.start(timeouts={"idle": 2})
        c = self.client()
        c.ehlo()
        for _ in range(5):
            time.sleep(1.0)
            self.assertEqual(c.cmd("NOOP").code, 250)

    def test_idle_mid_data_421_and_no_message(self):
        b, p = self.start(timeouts={"idle": 2})
        c = self.client()
        c.ehlo()
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        self.assertEqual([c.read_reply().code for _ in range(3)], [250, 250, 354])
        c.send(b"Subject: stalled\r\n\r\npartial\r\n")
        r = c.read_reply(6)
        self.assertReply(r, 421, "4.4.2")
        c.expect_closed(2)
        self.assertTrue(b.wait_all_closed(3))
        self.assertEqual(b.messages, [])

    def test_handshake_timeout(self):
        b, p = self.start(timeouts={"handshake": 2})
        c = self.client()
        c.ehlo()
        port = c.local_port
        self.assertEqual(c.cmd("STARTTLS").code, 220)
        t0 = time.monotonic()
        c.expect_closed(6)
        self.assertLess(time.monotonic() - t0, 4.0)
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv)
        self.assertIn(kv["end"], ("tls_timeout",), kv["_line"])


class MaxConnectionsTest(ProxyTestCase):

    def test_third_connection_421_432(self):
        b, p = self.start(max_connections=2)
        c1 = self.client()
        c2 = self.client()
        c3 = self.client(greet=False)
        r = c3.read_reply(3)
        self.assertReply(r, 421, "4.3.2")
        c3.expect_closed(3)
        # The first two still work.
        self.assertEqual(c1.ehlo().code, 250)
        self.assertEqual(c2.ehlo().code, 250)
        c1.cmd("QUIT")
        c1.expect_closed(3)
        # A slot is free again (give the proxy a moment to notice).
        ok = None
        for _ in range(20):
            c4 = self.client(greet=False)
            r = c4.read_reply(3)
            if r.code == 220:
                ok = r
                break
            c4.close()
            time.sleep(0.1)
        self.assertIsNotNone(ok, "slot not released after QUIT")
        self.assertEqual(ok.raw, b"220 backend.test ESMTP\r\n")


class LineLimitTest(ProxyTestCase):

    def _limit(self, b, c, limit):
        # NOOP's reply is short whatever its argument (a long VRFY echo would
        # exceed the reply line limit on the way back).
        ok_line = b"NOOP " + b"a" * (limit - 5 - 2)
        self.assertEqual(len(ok_line + CRLF), limit)
        r = c.cmd(ok_line)
        self.assertEqual(r.code, 250, r)
        long_line = b"NOOP " + b"b" * (limit + 1 - 5 - 2)
        r = c.cmd(long_line)
        self.assertReply(r, 500, "5.5.2")
        self.assertIn("too long", r.lines[0].lower(), r)
        self.assertEqual(c.cmd("NOOP").code, 250)
        self.assertIn(ok_line + CRLF, b.raw_all())
        self.assertNeverForwarded(b, b"bbbbbbbbbb", settle=0)

    def test_4096_octets_ok_4097_too_long(self):
        # The default: RFC 5321's 512 plus what SIZE, DSN, AUTH= and
        # SMTPUTF8 parameters add to real MAIL and RCPT lines.
        b, p = self.start()
        c = self.client()
        c.ehlo()
        self._limit(b, c, 4096)

    def test_max_command_line_configurable(self):
        b, p = self.start(max_command_line=1024)
        c = self.client()
        c.ehlo()
        self._limit(b, c, 1024)

    def test_long_mail_with_every_parameter_passes(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        addr = b"<" + b"l" * 200 + b"@" + b"d" * 250 + b".test>"
        mail = (b"MAIL FROM:" + addr + b" SIZE=10485760 BODY=8BITMIME SMTPUTF8 RET=HDRS"
                b" ENVID=" + b"e" * 100 + b" AUTH=" + addr)
        self.assertGreater(len(mail), 1024)
        self.assertEqual(c.cmd(mail).code, 250)
        self.assertIn(mail + CRLF, b.raw_all())

    def test_huge_line_one_reply_then_continue(self):
        b, p = self.start()
        c = self.client(timeout=10)
        c.ehlo()
        c.send(b"VRFY " + b"h" * 100000 + b"\r\nVRFY marker\r\n")
        r = c.read_reply()
        self.assertReply(r, 500, "5.5.2")
        r = c.read_reply()
        self.assertEqual(r.raw, b"252 2.0.0 marker\r\n", "one 500 per over-long line expected")
        self.assertNeverForwarded(b, b"hhhhhhhhhh", settle=0)

    def test_too_long_over_tls(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd(b"MAIL FROM:<" + b"m" * 5000 + b"@x.test>")
        self.assertReply(r, 500, "5.5.2")
        self.assertEqual(c.cmd("VRFY marker").raw, b"252 2.0.0 marker\r\n")
        self.assertNeverForwarded(b, b"mmmmmmmmmm", settle=0)

    def test_auth_continuation_over_12288_refused(self):
        b, p = self.start(backend=self.backend(ehlo=["backend.test", "AUTH PLAIN"]))
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        self.assertEqual(c.cmd("AUTH PLAIN").code, 334)
        r = c.cmd(b"Q" * 13000)
        # Either the proxy answers 500 5.5.2 itself, or it cancels the
        # exchange at the backend with "*" (RFC 4954) and relays the 501.
        if r.code == 501:
            self.assertIn(b"*\r\n", b.raw_all())
        else:
            self.assertReply(r, 500, "5.5.2")
        self.assertEqual(c.cmd("VRFY marker").raw, b"252 2.0.0 marker\r\n")
        self.assertNeverForwarded(b, b"QQQQQQQQQQ", settle=0)

    def test_bare_lf_in_command(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        c.send(b"VRFY a\nb\r\n")
        r = c.read_reply()
        self.assertReply(r, 500, "5.5.2")
        c.send(b"VRFY marker\r\n")
        for _ in range(2):
            r = c.read_reply()
            if r.raw == b"252 2.0.0 marker\r\n":
                break
        self.assertEqual(r.raw, b"252 2.0.0 marker\r\n")
        self.assertNeverForwarded(b, b"VRFY a")

    def test_bare_cr_in_command(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        r = c.cmd(b"VRFY c\rd")
        self.assertReply(r, 500, "5.5.2")
        self.assertEqual(c.cmd("VRFY marker").raw, b"252 2.0.0 marker\r\n")
        self.assertNeverForwarded(b, b"VRFY c")
        self.assertNotIn(b"d", b.verbs())

    def test_bare_lf_smuggled_mail_in_command(self):
        # "NOOP\nMAIL FROM:<x>" must not become two commands at the backend.
        b, p = self.start(backend=self.backend(lenient=True))
        c = self.client()
        c.ehlo()
        c.send(b"NOOP\nMAIL FROM:<smuggled@evil.test>\r\n")
        r = c.read_reply()
        self.assertReply(r, 500, "5.5.2")
        self.assertNeverForwarded(b, b"NOOP\n")
        # Replies stay in step with commands.
        c.send(b"VRFY marker\r\n")
        for _ in range(2):
            r = c.read_reply()
            if r.raw == b"252 2.0.0 marker\r\n":
                break
        self.assertEqual(r.raw, b"252 2.0.0 marker\r\n")


if __name__ == "__main__":
    harness.run_tests()
