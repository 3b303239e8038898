"""Signals: SIGTERM/SIGINT drain with shutdown_timeout then 421 4.3.2;
SIGHUP reloads configuration and certificates for new connections only and
keeps the old configuration when the new one is invalid."""

import os
import signal
import socket
import ssl
import time
import unittest

import harness
from harness import CRLF, Client, ConnectionClosed, ProxyTestCase


class ShutdownTest(ProxyTestCase):

    def test_sigterm_idle_exits_0_promptly(self):
        b, p = self.start()
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        rc = p.wait(5)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, 1.5)

    def test_sigint_exits_0(self):
        b, p = self.start()
        p.signal(signal.SIGINT)
        self.assertEqual(p.wait(5), 0)

    def test_live_session_finishes_after_sigterm(self):
        b, p = self.start(top={"shutdown_timeout": 5})
        c = self.client()
        c.ehlo()
        p.signal(signal.SIGTERM)
        # Stops accepting promptly.
        self.assertTrue(harness.wait_until(lambda: not harness.is_listening(p.port), 2),
                        "still listening after SIGTERM")
        try:
            probe = socket.create_connection((harness.HOST, p.port), timeout=2)
        except OSError:
            probe = None  # refused: expected
        if probe is not None:
            # Accepted by a lingering socket: it must be closed, not served.
            try:
                probe.settimeout(2)
                data = probe.recv(100)
            except OSError as e:
                data = b"" if not isinstance(e, socket.timeout) else b"(silence)"
            finally:
                probe.close()
            self.assertEqual(data, b"", "new connection served after SIGTERM")
        # The live session still delivers.
        replies = c.send_message("a@x.test", ["b@y.test"], b"Subject: drain\r\n\r\nduring shutdown\r\n")
        self.assertEqual([x.code for x in replies], [250, 250, 354, 250], replies)
        self.assertEqual(c.cmd("QUIT").code, 221)
        t0 = time.monotonic()
        rc = p.wait(4)
        self.assertEqual(rc, 0, "did not exit after its last session ended")
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertTrue(b.wait_messages(1))

    def test_lingering_session_gets_421_432(self):
        b, p = self.start(top={"shutdown_timeout": 2}, timeouts={"idle": 30})
        c = self.client()
        c.ehlo()
        port = c.local_port
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        r = c.read_reply(6)
        elapsed = time.monotonic() - t0
        self.assertReply(r, 421, "4.3.2")
        self.assertGreater(elapsed, 1.5, "421 before shutdown_timeout (%.2f s)" % elapsed)
        self.assertLess(elapsed, 4.0, "421 long after shutdown_timeout (%.2f s)" % elapsed)
        c.expect_closed(2)
        self.assertEqual(p.wait(4), 0)
        kv = p.wait_session_end(client_port=port, timeout=1)
        self.assertIsNotNone(kv)
        self.assertEqual(kv["end"], "shutdown", kv["_line"])

    def test_lingering_tls_session_gets_421_432_over_tls(self):
        b, p = self.start(top={"shutdown_timeout": 1}, timeouts={"idle": 30})
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        p.signal(signal.SIGTERM)
        r = c.read_reply(5)
        self.assertReply(r, 421, "4.3.2")
        c.expect_closed(2)
        self.assertEqual(p.wait(4), 0)

    def test_shutdown_mid_data_never_completes_message(self):
        b, p = self.start(top={"shutdown_timeout": 1}, timeouts={"idle": 30})
        c = self.client()
        c.ehlo()
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        self.assertEqual([c.read_reply().code for _ in range(3)], [250, 250, 354])
        c.send(b"Subject: cut\r\n\r\nhalf a message\r\n")
        self.assertTrue(b.wait_raw(b"half a message"))
        p.signal(signal.SIGTERM)
        r = c.read_reply(5)
        self.assertReply(r, 421, "4.3.2")
        self.assertEqual(p.wait(4), 0)
        self.assertTrue(b.wait_all_closed(3))
        self.assertEqual(b.messages, [])
        raw = b.raw_all()
        self.assertNotIn(b"\r\n.\r\n", raw[raw.index(b"DATA\r\n") + 6:])


class ReloadTest(ProxyTestCase):

    def test_sighup_new_backend_for_new_connections_only(self):
        b1 = self.backend(name="b1", greeting=b"220 one.test ESMTP\r\n")
        b2 = self.backend(name="b2", greeting=b"220 two.test ESMTP\r\n")
        l = harness.inbound_listener(b1.port)
        cfg = harness.base_config([l])
        p = self.proxy(cfg)
        c1 = Client(p.port)
        self.addCleanup(c1.close)
        self.assertEqual(c1.greeting().raw, b"220 one.test ESMTP\r\n")
        l2 = dict(l, backend=b2.addr)
        p.write(harness.base_config([l2]))
        p.signal(signal.SIGHUP)
        greeting = None
        for _ in range(30):
            c = Client(p.port)
            self.addCleanup(c.close)
            greeting = c.greeting().raw
            c.close()
            if greeting == b"220 two.test ESMTP\r\n":
                break
            time.sleep(0.1)
        self.assertEqual(greeting, b"220 two.test ESMTP\r\n", "reload not applied")
        # The live session still talks to the old backend.
        self.assertEqual(c1.cmd("VRFY still-here").code, 252)
        self.assertIn(b"VRFY still-here", b1.commands_all())
        self.assertNotIn(b"VRFY still-here", b2.commands_all())
        self.assertTrue(p.alive())

    def test_sighup_invalid_config_keeps_old(self):
        b, p = self.start()
        p.write_text("inbound = ( { name = \"mx\"; listen = 42; } );\nthis is not libconfig\n")
        p.signal(signal.SIGHUP)
        self.assertTrue(p.wait_log(r"proxy\.conf:\d+", 5),
                        "the invalid config was not reported with FILE:LINE")
        time.sleep(0.3)
        self.assertTrue(p.alive(), "proxy died on an invalid reload")
        c = self.client()
        self.assertEqual(c.ehlo().code, 250)
        self.assertIn(b"EHLO client.test", b.commands_all())

    def test_sighup_reloads_certificate(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        c.starttls()
        old = c.sock.getpeercert(binary_form=True)
        c.close()
        other = harness.make_pki(os.path.join(harness.new_tmpdir("pki2"), "pki"), cn="mx.test")
        cfg = dict(p.config)
        cfg["tls"] = {"certificate": other.cert, "key": other.key}
        p.write(cfg)
        p.signal(signal.SIGHUP)
        new = None
        for _ in range(30):
            c2 = self.client()
            c2.ehlo()
            try:
                c2.starttls(other.client_context())
                new = c2.sock.getpeercert(binary_form=True)
                c2.close()
                break
            except ssl.SSLError:
                c2.close()
                time.sleep(0.1)
        self.assertIsNotNone(new, "new certificate not served after SIGHUP")
        self.assertNotEqual(new, old)


if __name__ == "__main__":
    harness.run_tests()
