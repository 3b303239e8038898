"""Lifecycle defects found by trying the proxy as an attacker or a careless
client would (issue "Adversarial robustness"): each case failed before its
fix.

- a client that half-closes right after ".<CRLF>QUIT<CRLF>" still gets the
  backend's 250 (otherwise it retries and the mail arrives twice);
- inside DATA/BDAT the client is timed by data rate (min_data_rate): a
  dribbler is cut, a steady sender of a large chunk is not, and the cut does
  not blame the backend;
- STARTTLS accepted while earlier replies are still being written: TLS
  starts only after the 220 (and everything before it) reached the client;
- an outbound session whose client leaves during a slow name lookup is not
  freed under the lookup (use-after-free; the proxy must stay up).
"""

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import unittest

import harness
from harness import CRLF, Client, ConnectionClosed, ProxyTestCase


class HalfCloseTest(ProxyTestCase):

    def test_half_close_after_dot_and_quit_gets_250_and_221(self):
        def slow_dot(conn, data):
            time.sleep(0.5)  # the 250 comes after the client's FIN
            return None
        b, p = self.start(backend=self.backend(actions={".": slow_dot}))
        c = self.client()
        c.ehlo()
        self.assertReply(c.cmd(b"MAIL FROM:<a@x.test>"), 250)
        self.assertReply(c.cmd(b"RCPT TO:<b@y.test>"), 250)
        self.assertReply(c.cmd(b"DATA"), 354)
        c.send(b"Subject: half close\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        r = c.read_reply(5)
        self.assertReply(r, 250, msg="the message's 250 must reach a half-closed client")
        self.assertReply(c.read_reply(5), 221)
        c.expect_closed(3)
        b.wait_messages(1)
        self.assertEqual(len(b.messages), 1)
        kv = p.wait_session_end()
        self.assertEqual(kv["end"], "quit", kv["_line"])

    def test_half_close_mid_data_never_ends_the_message(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        self.assertReply(c.cmd(b"MAIL FROM:<a@x.test>"), 250)
        self.assertReply(c.cmd(b"RCPT TO:<b@y.test>"), 250)
        self.assertReply(c.cmd(b"DATA"), 354)
        c.send(b"Subject: cut\r\n\r\npartial")
        c.sock.shutdown(socket.SHUT_WR)
        c.expect_closed(3)
        time.sleep(0.3)
        self.assertEqual(b.messages, [], "a half-closed DATA must never be completed")
        kv = p.wait_session_end()
        self.assertEqual(kv["end"], "client_closed", kv["_line"])


class DataRateTest(ProxyTestCase):

    def _into_data(self, c):
        c.ehlo()
        self.assertReply(c.cmd(b"MAIL FROM:<a@x.test>"), 250)
        self.assertReply(c.cmd(b"RCPT TO:<b@y.test>"), 250)

    def test_dribbler_is_cut(self):
        b, p = self.start(timeouts={"idle": 2})
        c = self.client()
        self._into_data(c)
        self.assertReply(c.cmd(b"DATA"), 354)
        t0 = time.monotonic()
        reply = None
        c.sock.settimeout(0.4)
        while time.monotonic() - t0 < 10 and reply is None:
            try:
                c.sock.sendall(b"x")
            except OSError:
                break
            try:
                reply = c.read_reply(0.4)
            except (socket.timeout, TimeoutError, ConnectionClosed, OSError):
                reply = None
        elapsed = time.monotonic() - t0
        self.assertIsNotNone(reply, "a client sending a byte every 0.4 s was never cut")
        self.assertReply(reply, 421, "4.4.2")
        self.assertLess(elapsed, 6.0)
        kv = p.wait_session_end()
        self.assertEqual(kv["end"], "timeout", kv["_line"])
        self.assertIsNone(p.wait_log(r"event=server_timeout", timeout=0.2),
                          "a slow client must not be blamed on the backend")
        self.assertEqual(b.messages, [])

    def test_steady_large_bdat_chunk_is_not_cut(self):
        b, p = self.start(timeouts={"idle": 1})
        c = self.client()
        self._into_data(c)
        size = 120000
        body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
        c.send(b"BDAT %d LAST\r\n" % size)
        # 3 s of sending at 40 kB/s: far above 500 B/s, far beyond idle.
        step = 4000
        for i in range(0, size, step):
            c.send(body[i:i + step])
            time.sleep(0.1)
        self.assertReply(c.read_reply(5), 250)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, body)
        self.assertReply(c.cmd(b"QUIT"), 221)

    def test_steady_data_at_rate_is_not_cut(self):
        b, p = self.start(timeouts={"idle": 1})
        c = self.client()
        self._into_data(c)
        self.assertReply(c.cmd(b"DATA"), 354)
        for i in range(25):
            c.send(b"line %d of a message sent steadily, 10 per second\r\n" % i)
            time.sleep(0.1)
        c.send(b".\r\n")
        self.assertReply(c.read_reply(5), 250)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(len(b.messages), 1)


class StartTlsOrderTest(ProxyTestCase):

    def test_tls_starts_after_owed_replies_are_written(self):
        # Large HELP replies pipelined in front of STARTTLS to a client that
        # reads nothing for a while: about 5 MB, more than the kernel's send
        # buffer takes, so the proxy still holds replies when it accepts
        # STARTTLS; the 220 must follow them in plaintext before TLS begins.
        big = "214-" + "h" * 200
        help_reply = CRLF.join([big.encode()] * 60) + b"\r\n214 end\r\n"
        # idle = 60: reading megabytes of replies in Python on a busy
        # machine takes a while, and the session is idle meanwhile.
        b, p = self.start(backend=self.backend(actions={"HELP": help_reply}),
                          timeouts={"idle": 60, "handshake": 30})
        c = Client(p.port, connect=False)
        c.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sock.settimeout(5)
        c.sock.connect((harness.HOST, p.port))
        self.assertReply(c.read_reply(5), 220)
        c.ehlo()
        n = 200
        c.send(b"HELP\r\n" * n + b"STARTTLS\r\n")
        time.sleep(1.5)  # let the proxy's output back up
        for _ in range(n):
            self.assertReply(c.read_reply(5), 214)
        self.assertReply(c.read_reply(5), 220, "2.0.0")
        c.wrap(harness.pki().client_context())
        r = c.ehlo()
        self.assertEqual(r.code, 250)
        self.assertReply(c.cmd(b"QUIT"), 221)


class LenientSenderTest(ProxyTestCase):

    def test_smtplib_lf_message_keeps_its_dots(self):
        # smtplib.sendmail(from, to, bytes) sends the bytes' LF line ends as
        # they are and dot-stuffs after every LF. Through the proxy the
        # backend must store what the sender meant, as Postfix would.
        import smtplib
        b, p = self.start()
        msg = (b"Subject: dots\n\n.starts with a dot\n..two dots\nplain\n.\n"
               b"after a lone dot\n")
        with smtplib.SMTP(harness.HOST, p.port, timeout=5) as s:
            s.sendmail("a@x.test", ["b@y.test"], msg)
        self.assertTrue(b.wait_messages(1))
        got = b.messages[0].data
        # smtplib ends data that does not end in CRLF with one more CRLF: an
        # empty last line, as a Postfix with "normalize" stores it too.
        self.assertEqual(got, msg.replace(b"\n", b"\r\n") + b"\r\n")


def _can_unshare():
    return os.geteuid() == 0 and shutil.which("unshare") is not None


class _SilentDns:
    """A UDP socket on 127.0.0.x:53 that reads queries and never answers."""

    def __init__(self, host):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 53))
        self.sock.settimeout(0.2)
        self.queries = 0
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.sock.recvfrom(4096)
                self.queries += 1
            except socket.timeout:
                pass
            except OSError:
                return

    def stop(self):
        self._stop.set()
        self.t.join(2)
        self.sock.close()


@unittest.skipUnless(_can_unshare(), "needs root and unshare(1) for a private resolv.conf")
class SlowLookupTest(ProxyTestCase):

    def test_client_leaving_during_lookup_does_not_crash(self):
        dns_host = "127.0.0.53"
        try:
            dns = _SilentDns(dns_host)
        except OSError as e:
            self.skipTest("cannot bind %s:53: %s" % (dns_host, e))
        self.addCleanup(dns.stop)
        d = harness.new_tmpdir("resolv")
        resolv = os.path.join(d, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver %s\noptions timeout:2 attempts:1\n" % dns_host)
        dest = self.backend()
        out_port = harness.free_port()
        cfg = harness.base_config([], outbound=[{
            "name": "relay", "listen": "127.0.0.1:%d" % out_port,
            "destination": "slow.example.net:%d" % dest.port,
            "policy": "none", "timeouts": {"connect": 10},
        }])
        p = harness.Proxy(cfg, name=self.id())
        self._proxies.append(p)
        self.addCleanup(p.stop)
        p.wrapper = ["unshare", "--mount", "--", "sh", "-c",
                     'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv]
        p.start()
        # Clients that leave while their destination is being looked up.
        for _ in range(12):
            s = socket.create_connection((harness.HOST, out_port), timeout=2)
            s.close()
        harness.wait_until(lambda: dns.queries >= 1, 3)
        # The lookups under way time out (2 s) and call back into sessions
        # whose clients are long gone.
        harness.wait_until(lambda: not p.alive() or len(p.session_ends()) >= 12, 10)
        time.sleep(0.5)
        self.assertTrue(p.alive(), "proxy died after clients left during lookups:\n" +
                        p.log()[-2000:])
        ends = p.session_ends()
        self.assertGreaterEqual(len(ends), 12, ends)
        for kv in ends:
            self.assertEqual(kv["end"], "client_closed", kv["_line"])


if __name__ == "__main__":
    unittest.main()
