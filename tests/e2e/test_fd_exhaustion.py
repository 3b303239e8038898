"""Out of file descriptors: under a low RLIMIT_NOFILE an implicit-TLS
listener that cannot accept backs off instead of spinning (CPU stays low,
a few rate-limited log lines), and serves again once descriptors are free.
A sanity check with generous bounds, not a benchmark."""

import os
import resource
import socket
import time

import harness
from harness import ProxyTestCase

NOFILE = 64


class LimitedProxy(harness.Proxy):
    """The daemon with RLIMIT_NOFILE lowered before exec."""

    def start(self):
        real = harness.subprocess.Popen

        def popen(*a, **kw):
            kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                           (NOFILE, NOFILE))
            return real(*a, **kw)

        harness.subprocess.Popen = popen
        try:
            return super().start()
        finally:
            harness.subprocess.Popen = real


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def accept_lines(log):
    return [l for l in log.splitlines()
            if "accept_failed" in l or "accept_paused" in l or "connection_dropped" in l]


class FdExhaustionTest(ProxyTestCase):

    def test_backs_off_and_recovers(self):
        b = self.backend()
        l = harness.inbound_listener(b.port, tls_mode="implicit",
                                     timeouts={"handshake": 60, "idle": 60})
        p = LimitedProxy(harness.base_config([l]), name=self.id())
        self._proxies.append(p)
        self.addCleanup(p.stop)
        p.start()
        port = harness.listen_port_of(l)

        # Silent TCP clients: each accepted one holds a descriptor while the
        # proxy waits for its TLS ClientHello.
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(NOFILE + 40):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect((harness.HOST, port))
            except OSError:
                s.close()
                break
            socks.append(s)
        fds = lambda: len(os.listdir("/proc/%d/fd" % p.proc.pid))
        self.assertTrue(harness.wait_until(lambda: fds() >= NOFILE - 1, 5),
                        "the proxy never ran out of descriptors (%d open)" % fds())

        time.sleep(0.5)
        t0, c0 = time.monotonic(), cpu_seconds(p.proc.pid)
        n0 = len(accept_lines(p.log()))
        time.sleep(3)
        used = cpu_seconds(p.proc.pid) - c0
        wall = time.monotonic() - t0
        lines = len(accept_lines(p.log())) - n0
        self.assertLess(used, 0.5 * wall, "proxy busy at the fd limit: %.2f s CPU in %.1f s"
                        % (used, wall))
        # One line per second per listener and event (per worker), at most.
        self.assertLess(lines, 40, "%d accept lines in %.1f s" % (lines, wall))
        self.assertTrue(p.alive())
        self.assertIn("event=accept_paused", p.log())

        for s in socks:
            s.close()
        socks.clear()
        # Served again once the sessions of the closed clients are gone.
        def served():
            try:
                c = harness.Client(port, timeout=3)
            except OSError:
                return False
            try:
                c.wrap()
                return c.greeting().code == 220
            except (OSError, harness.ConnectionClosed):
                return False
            finally:
                c.close()
        self.assertTrue(harness.wait_until(served, 10, 0.2), "not served after the clients left")
        self.assertTrue(p.wait_log(r"event=accept_resumed", 3))
        # And it is idle again.
        time.sleep(0.3)
        c0 = cpu_seconds(p.proc.pid)
        time.sleep(1.5)
        self.assertLess(cpu_seconds(p.proc.pid) - c0, 0.5, "still busy after recovery")


if __name__ == "__main__":
    harness.run_tests()
