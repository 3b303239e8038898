"""The drain after SIGTERM: /healthz answers 503 "draining" (so a load
balancer stops sending) while live sessions finish; a second SIGTERM or a
SIGINT ends them at once with 421 4.3.2."""

import signal
import time

import harness
from harness import ProxyTestCase
from ops_harness import http_get


class DrainTest(ProxyTestCase):

    def start_draining(self, shutdown_timeout=20):
        self.mport = harness.free_port()
        b, p = self.start(top={"shutdown_timeout": shutdown_timeout,
                               "metrics_listen": "127.0.0.1:%d" % self.mport},
                          timeouts={"idle": 60})
        self.assertTrue(harness.wait_until(lambda: harness.is_listening(self.mport), 3))
        self.assertEqual(http_get(self.mport, "/healthz"), (200, "ok\n"))
        c = self.client()
        self.assertEqual(c.ehlo().code, 250)
        p.signal(signal.SIGTERM)
        self.assertTrue(p.wait_log(r"event=stopping signal=TERM", 3))
        return b, p, c

    def test_healthz_503_while_draining(self):
        b, p, c = self.start_draining()
        self.assertEqual(http_get(self.mport, "/healthz"), (503, "draining\n"))
        # /metrics still answers: the drain itself is worth watching.
        self.assertEqual(http_get(self.mport, "/metrics")[0], 200)
        # The live session is served to its end, then the proxy exits.
        self.assertEqual(c.cmd("NOOP").code, 250)
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.assertEqual(p.wait(5), 0)

    def test_second_sigterm_ends_sessions_now(self):
        b, p, c = self.start_draining()
        time.sleep(0.2)
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        r = c.read_reply(5)
        self.assertReply(r, 421, "4.3.2")
        self.assertLess(time.monotonic() - t0, 2.0, "421 not at once on the second SIGTERM")
        c.expect_closed(2)
        self.assertEqual(p.wait(3), 0)
        self.assertIn("event=stopping_now", p.log())

    def test_sigint_during_drain_ends_sessions_now(self):
        b, p, c = self.start_draining()
        time.sleep(0.2)
        t0 = time.monotonic()
        p.signal(signal.SIGINT)
        self.assertReply(c.read_reply(5), 421, "4.3.2")
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(p.wait(3), 0)


if __name__ == "__main__":
    harness.run_tests()
