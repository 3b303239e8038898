"""Many simultaneous STARTTLS sessions, each delivering one distinct message
exactly once (checked by Message-Id set equality at the backend)."""

import threading
import time
import unittest

import harness
from harness import Client, ProxyTestCase

N = 300
DEADLINE = 50.0  # seconds for the whole run


class ConcurrencyTest(ProxyTestCase):

    def test_300_concurrent_starttls_sessions(self):
        b, p = self.start()
        ids = ["<%d.concurrency@e2e.test>" % i for i in range(N)]
        errors = []
        lock = threading.Lock()
        # All sessions are open (and past TLS) at the same time before any
        # of them sends mail.
        barrier = threading.Barrier(N, timeout=DEADLINE * 0.6)
        t_start = time.monotonic()
        ctx = self.pki.client_context()

        def one(i):
            c = None
            try:
                c = Client(p.port, timeout=20)
                if c.greeting().code != 220:
                    raise AssertionError("greeting")
                c.ehlo("c%d.test" % i)
                c.starttls(ctx)
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    pass  # still deliver; the count below says if we were concurrent
                r = c.ehlo("c%d.test" % i)
                if r.code != 250:
                    raise AssertionError("EHLO after TLS: %r" % (r,))
                body = ("Subject: c%d\r\nMessage-Id: %s\r\n\r\nbody %d\r\n" % (i, ids[i], i)).encode()
                replies = c.send_message("s%d@x.test" % i, ["r%d@y.test" % i], body)
                codes = [x.code for x in replies]
                if codes != [250, 250, 354, 250]:
                    raise AssertionError("replies %r" % (replies,))
                if c.cmd("QUIT").code != 221:
                    raise AssertionError("QUIT")
            except Exception as e:
                with lock:
                    errors.append("session %d: %r" % (i, e))
                try:
                    barrier.abort()
                except Exception:
                    pass
            finally:
                if c is not None:
                    c.close()

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.1, DEADLINE - (time.monotonic() - t_start)))
        elapsed = time.monotonic() - t_start
        alive = sum(t.is_alive() for t in threads)
        self.assertEqual(alive, 0, "%d sessions still running after %.1f s" % (alive, elapsed))
        self.assertEqual(errors, [], "%d sessions failed, first: %s" % (len(errors), errors[:5]))
        self.assertFalse(barrier.broken, "sessions were not all open at once")
        self.assertTrue(b.wait_messages(N, timeout=5))
        got = []
        for m in b.messages:
            for line in m.data.split(b"\r\n"):
                if line.startswith(b"Message-Id: "):
                    got.append(line[12:].decode())
        self.assertEqual(len(got), N, "messages delivered more than once or without id")
        self.assertEqual(set(got), set(ids))
        # One session-end line per session, all over TLS and ended by QUIT.
        ends = harness.wait_until(lambda: len(p.session_ends()) >= N and p.session_ends(), 5)
        self.assertTrue(ends)
        self.assertEqual(len(ends), N)
        self.assertEqual({(e.get("tls"), e.get("end")) for e in ends}, {("TLSv1.3", "quit")})
        self.assertEqual(len({e["session"] for e in ends}), N, "session ids not unique")
        sys_elapsed = elapsed
        print("%d sessions in %.1f s" % (N, sys_elapsed))


if __name__ == "__main__":
    harness.run_tests()
