"""TLS-RPT for a fleet sharing mta_sts.redis (proxy/service/tlsrpt_redis):
two instances of tests/e2e/tlsrpt_cli.c, each with a tls_rpt.directory of
its own, count their results in one real redis-server (started here on
127.0.0.1, no persistence), and exactly one report per domain and day
leaves, whichever instance is told to send first, with the counts of both.
The zone, the https: receiver and the report checks are test_tls_rpt's.

  - both record, both send: one POST, the sum of both; a second round of
    both sends nothing (the sent mark in Redis, then the local one);
  - a lock held by another instance: skipped (locked=1), nothing sent,
    sent once the lock is gone;
  - Redis down, or silent: each instance reports its own counts;
  - the hash keeps at most TLSRPT_DETAILS_MAX detail fields, every key
    expires;
  - the daemon with mta_sts.redis and tls_rpt: an outbound session's
    result in the day file and in the fleet's hash.
"""

import os
import re
import shutil
import socket
import subprocess
import time
import unittest

import dnszone
import harness
import outbound_harness as oh
import test_tls_rpt
import test_tls_rpt_sessions as trs
from test_tls_rpt import DAY, line


def base():
    # Not a module-level name: the loader would run test_tls_rpt's cases too.
    return test_tls_rpt.TlsRptTest


def resp(addr, *args, timeout=5):
    """One Redis command (RESP); a bulk string, integer or status as bytes,
    None for a nil, a list of bytes for an array of bulk strings."""
    ip, port = addr.rsplit(":", 1)
    s = socket.create_connection((ip, int(port)), timeout=timeout)
    try:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a), a) for a in (x if isinstance(x, bytes) else x.encode()
                                                      for x in args)))
        f = s.makefile("rb")

        def one():
            head = f.readline()
            if head.startswith(b"$"):
                n = int(head[1:])
                return None if n < 0 else f.read(n + 2)[:-2]
            if head.startswith(b"*"):
                return [one() for _ in range(int(head[1:]))]
            if head.startswith(b"-"):
                raise RuntimeError(head.decode())
            return head[1:].rstrip(b"\r\n")
        return one()
    finally:
        s.close()


def start_redis():
    """A redis-server on 127.0.0.1:<free port>, no persistence: (process, "ip:port")."""
    port = harness.free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", harness.new_tmpdir("redis"), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    addr = "127.0.0.1:%d" % port
    deadline = time.monotonic() + 30
    while True:
        try:
            if resp(addr, "PING", timeout=1) == b"PONG":
                return proc, addr
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_redis(proc)
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)


def stop_redis(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@unittest.skipIf(dnszone.available(), dnszone.available() or "")
@unittest.skipIf(shutil.which("redis-server") is None, "redis-server not installed (bazel/deps.sh)")
class TlsRptFleetTest(unittest.TestCase):
    check_report = test_tls_rpt.TlsRptTest.check_report
    run_cli = test_tls_rpt.TlsRptTest.run_cli

    @classmethod
    def setUpClass(cls):
        base().setUpClass.__func__(cls)
        try:
            cls.redis_proc, cls.redis = start_redis()
        except Exception:
            base().tearDownClass.__func__(cls)
            raise

    @classmethod
    def tearDownClass(cls):
        stop_redis(cls.redis_proc)
        base().tearDownClass.__func__(cls)

    def setUp(self):
        self.dirs = [harness.new_tmpdir("fleet-a"), harness.new_tmpdir("fleet-b")]
        with self.https.lock:
            self.https.posts.clear()
            self.https.statuses.clear()
        resp(self.redis, "FLUSHALL")

    def record(self, i, text, redis=None):
        rc, out, err = self.run_cli("record", self.dirs[i], "--redis", redis or self.redis,
                                    stdin=text.encode())
        self.assertEqual(rc, 0, out + err)
        return out, err

    def send(self, i, redis=None):
        rc, out, err = self.run_cli(
            "send", "--dir", self.dirs[i], "--day", DAY, "--contact", test_tls_rpt.CONTACT,
            "--org", test_tls_rpt.ORG, "--ca", self.pki.ca, "--dns", self.zone.server,
            "--trust-anchor", self.zone.trust_anchor, "--timeout-ms", "20000",
            "--redis", redis or self.redis)
        m = re.search(r"domains=(\d+) sent=(\d+) already=(\d+) none=(\d+) failed=(\d+) "
                      r"locked=(\d+)", out)
        self.assertIsNotNone(m, "stdout %r stderr %r" % (out, err))
        keys = ("domains", "sent", "already", "none", "failed", "locked")
        return rc, dict(zip(keys, map(int, m.groups()))), err

    def posts(self):
        with self.https.lock:
            return list(self.https.posts)

    def record_both(self):
        a = [line(10 + i, "sts", "example.net", "success", mx="mx.example.net",
                  rip="203.0.113.5") for i in range(2)]
        a += [line(100, "sts", "example.net", "certificate-expired", mx="mx.example.net",
                   rip="203.0.113.5")]
        b = [line(20, "sts", "example.net", "success", mx="mx.example.net", rip="203.0.113.5")]
        b += [line(110 + i, "sts", "example.net", "certificate-expired", mx="mx.example.net",
                   rip="203.0.113.5") for i in range(2)]
        b += [line(200, "sts", "example.net", "starttls-not-supported", sip="2001:db8::1",
                   mx="mx2.example.net", rip="2001:db8::25")]
        out, _ = self.record(0, "".join(a))
        self.assertIn("redis_dropped=0\nrecorded=3 refused=0", out)
        out, _ = self.record(1, "".join(b))
        self.assertIn("redis_dropped=0\nrecorded=4 refused=0", out)

    SUM = {"sts": (3, 4, [("certificate-expired", 3), ("starttls-not-supported", 1)])}

    def test_one_report_with_both_counts(self):
        self.record_both()
        key = "tlsrpt:c:%s:example.net:sts" % DAY
        self.assertEqual(resp(self.redis, "HGET", key, "f"), b"4")
        ttl = int(resp(self.redis, "TTL", key))
        self.assertTrue(0 < ttl <= 5 * 86400, ttl)

        rc, res, err = self.send(1)
        self.assertEqual(rc, 0, err)
        self.assertEqual(res, {"domains": 1, "sent": 1, "already": 0, "none": 0, "failed": 0,
                               "locked": 0}, err)
        rc, res, err = self.send(0)
        self.assertEqual(rc, 0, err)
        self.assertEqual((res["sent"], res["already"]), (0, 1), err)
        self.assertIn("result=already by=fleet", err)
        time.sleep(0.5)
        posts = self.posts()
        self.assertEqual(len(posts), 1)
        _, pols = self.check_report(posts[0][2], "example.net")
        self.assertEqual(pols, self.SUM)
        # Marked sent (with an expiry) and the lock let go.
        self.assertGreater(int(resp(self.redis, "TTL", "tlsrpt:sent:%s:example.net" % DAY)), 0)
        self.assertIsNone(resp(self.redis, "GET", "tlsrpt:lock:%s:example.net" % DAY))

        # A second round of both: nothing more leaves.
        for i in (0, 1):
            rc, res, err = self.send(i)
            self.assertEqual(rc, 0, err)
            self.assertEqual((res["sent"], res["already"]), (0, 1), err)
        time.sleep(0.5)
        self.assertEqual(len(self.posts()), 1)

    def test_locked_by_another_is_skipped(self):
        self.record_both()
        lock = "tlsrpt:lock:%s:example.net" % DAY
        resp(self.redis, "SET", lock, "someone-else", "EX", "60")
        rc, res, err = self.send(0)
        self.assertEqual(res["locked"], 1, err)
        self.assertEqual(res["sent"], 0, err)
        self.assertIn("result=locked", err)
        time.sleep(0.5)
        self.assertEqual(self.posts(), [])
        # The holder went away without sending: once its lock expires, sent.
        resp(self.redis, "DEL", lock)
        rc, res, err = self.send(0)
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["sent"], 1, err)
        posts = self.posts()
        self.assertEqual(len(posts), 1)
        self.assertEqual(self.check_report(posts[0][2], "example.net")[1], self.SUM)

    def test_redis_down_each_sends_its_own(self):
        dead = "127.0.0.1:%d" % harness.free_port()
        out, err = self.record(0, line(10, "sts", "example.net", "success"), redis=dead)
        self.assertIn("redis_dropped=1\nrecorded=1 refused=0", out)
        self.assertIn("event=tlsrpt_redis_failed", err)
        self.record(1, line(20, "sts", "example.net", "certificate-expired", rip="203.0.113.5") +
                    line(30, "sts", "example.net", "certificate-expired", rip="203.0.113.5"),
                    redis=dead)
        for i in (0, 1):
            rc, res, err = self.send(i, redis=dead)
            self.assertEqual(rc, 0, err)
            self.assertEqual(res["sent"], 1, err)
            self.assertIn("Redis down: this instance's own counts", err)
        posts = self.posts()
        self.assertEqual(len(posts), 2)
        got = sorted(self.check_report(p[2], "example.net")[1]["sts"][:2] for p in posts)
        self.assertEqual(got, [(0, 2), (1, 0)])
        # Each instance's own sent marker: a second round sends nothing.
        for i in (0, 1):
            rc, res, err = self.send(i, redis=dead)
            self.assertEqual(res["already"], 1, err)
        self.assertEqual(len(self.posts()), 2)
        self.assertEqual(resp(self.redis, "KEYS", "tlsrpt:*"), [])

    def test_redis_silent_is_down_within_bounds(self):
        # A Redis that takes the connection and never answers: each command
        # waits at most 1 s, then this instance's own counts.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        self.addCleanup(silent.close)
        addr = "127.0.0.1:%d" % silent.getsockname()[1]
        t = time.monotonic()
        out, err = self.record(0, line(10, "sts", "example.net", "success"), redis=addr)
        self.assertIn("redis_dropped=1\nrecorded=1 refused=0", out)
        rc, res, err = self.send(0, redis=addr)
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["sent"], 1, err)
        self.assertIn("Redis down: this instance's own counts", err)
        self.assertLess(time.monotonic() - t, 20)
        posts = self.posts()
        self.assertEqual(len(posts), 1)
        self.assertEqual(self.check_report(posts[0][2], "example.net")[1]["sts"][:2], (1, 0))

    def test_detail_fields_bounded(self):
        lines = [line(10 + i, "sts", "bounded.example.net", "certificate-expired",
                      rip="198.51.%d.%d" % (i // 200, i % 200 + 1)) for i in range(130)]
        out, _ = self.record(0, "".join(lines))
        self.assertIn("redis_dropped=0\nrecorded=130", out)
        key = "tlsrpt:c:%s:bounded.example.net:sts" % DAY
        self.assertEqual(int(resp(self.redis, "HLEN", key)), 102)  # f, x and 100 details
        self.assertEqual(resp(self.redis, "HGET", key, "f"), b"130")
        self.assertEqual(resp(self.redis, "HGET", key, "x"), b"30")
        self.assertEqual(resp(self.redis, "HGET", key,
                              "d certificate-expired 192.0.2.1 - 198.51.0.1"), b"1")


@unittest.skipIf(dnszone.available(), dnszone.available() or "")
@unittest.skipIf(shutil.which("redis-server") is None, "redis-server not installed (bazel/deps.sh)")
class TlsRptFleetDaemonTest(harness.ProxyTestCase):
    """The daemon with tls_rpt and mta_sts.redis: an outbound session's
    result reaches the fleet's counts in Redis (and still the day file).
    The destination and zone are test_tls_rpt_sessions'."""
    destination = trs.TlsRptSessionsTest.destination
    zone = trs.TlsRptSessionsTest.zone
    listener = trs.TlsRptSessionsTest.listener
    session = trs.TlsRptSessionsTest.session
    read_lines = trs.TlsRptSessionsTest.read_lines

    def test_session_counted_in_redis(self):
        proc, addr = start_redis()
        self.addCleanup(stop_redis, proc)
        d = self.destination(actions={"STARTTLS": "454 4.7.0 TLS not available"})
        z = self.zone([], broken=[])
        rpt = harness.new_tmpdir("tls-rpt-dir")
        resolver = {"servers": [z.server], "dnssec": "validate",
                    "trust_anchor": z.trust_anchor}
        t0 = int(time.time())
        p = self.proxy(oh.outbound_config(
            [self.listener("f0", d, dane=False)], resolver=resolver, mta_sts={"redis": addr},
            tls_rpt={"directory": rpt, "contact": "tlsrpt@example.org"}))
        self.assertEqual(self.session(p, p.listen_ports()[0], True)["security"], "plaintext")
        day = trs.day_text(t0)
        if day != trs.day_text(time.time()):
            self.skipTest("midnight")
        lines = self.read_lines(os.path.join(rpt, day, trs.HOST), 1)
        self.assertEqual(len(lines), 1, lines)
        key = "tlsrpt:c:%s:%s:no-policy-found" % (day, trs.HOST)
        self.assertTrue(harness.wait_until(lambda: resp(addr, "HGET", key, "f") == b"1", 15),
                        resp(addr, "HGETALL", key))
        fields = resp(addr, "HGETALL", key)
        names = [f.decode() for f in fields[0::2]]
        _, _, _, _, sip, mx, rip = trs.LINE.match(lines[0]).groups()
        self.assertIn("d starttls-not-supported %s %s %s" % (sip, mx, rip), names)
        self.assertNotIn("s", names)
        self.assertGreater(int(resp(addr, "TTL", key)), 0)


if __name__ == "__main__":
    unittest.main()
