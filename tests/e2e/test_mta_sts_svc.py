"""The MTA-STS policy service (proxy/service) end to end, through
tests/e2e/mta_sts_cli.c: it loads a configuration (its resolver and
mta_sts blocks), asks for the policy of example.net, and prints each
answer. The _mta-sts TXT record comes from the DNSSEC-signed zone on nsd
(dnszone.py), validated by the proxy's resolver; the policy from Python's
HTTPS server (OpenSSL, a test CA) on port 443 of a 127.x address of its
own, which the zone's mta-sts A record names: the service connects where
the DNS says, as in production. The server counts its requests, so each
case asserts how many fetches really happened."""

import http.server
import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time
import unittest

import dnszone
import harness

POLICY1 = b"version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 86400\n"
POLICY2 = b"version: STSv1\nmode: testing\nmx: mx2.example.net\nmax_age: 86400\n"
TXT1 = '"v=STSv1; id=20240101T000000;"'
TXT2 = '"v=STSv1; id=20240202T000000;"'
_rng = random.SystemRandom()


def cli_binary():
    env = os.environ.get("MTA_STS_CLI")
    if env:
        return env
    p = os.path.join(os.environ.get("TEST_SRCDIR", ""), "smtp_tls_proxy/tests/e2e/mta_sts_cli")
    if os.path.exists(p):
        return p
    raise RuntimeError("mta_sts_cli not found: run under bazel test or set MTA_STS_CLI")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.requests.append(self.path)
            status, body = srv.status, srv.body
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class PolicyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ip, port, ctx):
        super().__init__((ip, port), Handler)
        self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.lock = threading.Lock()
        self.requests = []
        self.status, self.body = 200, POLICY1
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def serve(self, status, body):
        with self.lock:
            self.status, self.body = status, body
            self.requests = []

    def count(self):
        with self.lock:
            return len(self.requests)

    def stop(self):
        self.shutdown()
        self.server_close()
        self.thread.join(10)


def bind_443():
    """A 127.x.y.z address whose port 443 is free, and the port: 443 where
    binding it works (root, as in CI), else a free port handed to the
    driver with --port."""
    for _ in range(20):
        ip = "127.54.%d.%d" % (_rng.randint(1, 250), _rng.randint(1, 250))
        s = socket.socket()
        try:
            s.bind((ip, 443))
            s.close()
            return ip, 443
        except PermissionError:
            s.close()
            return ip, 0
        except OSError:
            s.close()
    raise RuntimeError("no free 127.54.x.y:443")


LINE = re.compile(r'(?:loop=\d+ )?round=(\d+) req=(\d+) sync=(\d) result=(\S+) fetch_failed=(\d) why="([^"]*)"'
                  r'(?: id=(\S+) mode=(\S+) mx=(\S*))?$')


class Fixture(unittest.TestCase):
    """The zone, the policy host and the driver, shared by a class's tests."""
    redis = None  # "ip:port" of the mta_sts.redis key, or None

    @classmethod
    def setUpClass(cls):
        cls.dir = harness.new_tmpdir("mta-sts-svc")
        cls.pki = harness.make_pki(os.path.join(cls.dir, "pki"), cn="mta-sts.example.net")
        ip, port = bind_443()
        cls.srv = PolicyServer(ip, port, harness.server_context(cls.pki))
        cls.port = cls.srv.server_address[1]
        cls.zone = None
        cls.start_zone(TXT1)

    @classmethod
    def start_zone(cls, txt, broken=False):
        if cls.zone is not None:
            cls.zone.stop()
        last = None
        for _ in range(5):
            ip = "127.53.%d.%d" % (_rng.randint(1, 250), _rng.randint(1, 250))
            z = dnszone.Zone(harness.new_tmpdir("zone"), ip, port=10053,
                             a=cls.srv.server_address[0])
            z.records = [r for r in z.records if r[0] != "_mta-sts"]
            if txt is not None:
                z.records.append(("_mta-sts", "TXT", txt))
            if broken:
                z.break_signature("_mta-sts", "TXT")
            try:
                cls.zone = z.start(timeout=30)
                return
            except RuntimeError as e:  # an address taken by a concurrent run
                last = e
        raise last

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        if cls.zone is not None:
            cls.zone.stop()

    def setUp(self):
        self.srv.serve(200, POLICY1)
        self.cache = os.path.join(harness.new_tmpdir("cache"), "mta-sts.cache")
        if self.zone_txt() != TXT1 or self.zone.broken:
            self.start_zone(TXT1)

    def zone_txt(self):
        txt = [r[2] for r in self.zone.records if r[0] == "_mta-sts"]
        return txt[0] if txt else None

    def config(self, cache=True):
        redis = 'redis = "%s";' % self.redis if self.redis else ""
        path = os.path.join(harness.new_tmpdir("conf"), "proxy.conf")
        with open(path, "w") as f:
            f.write('outbound = ( { name = "out"; listen = "127.0.0.1:1"; '
                    'destination = "127.0.0.1:2"; mta_sts = true; } );\n'
                    'resolver = { servers = [ "%s" ]; trust_anchor = "%s"; };\n'
                    'mta_sts = { ca_file = "%s"; %s %s };\n'
                    % (self.zone.server, self.zone.trust_anchor, self.pki.ca,
                       'cache = "%s";' % self.cache if cache else "", redis))
        return path

    def run_cli(self, count=1, rounds=1, cache=True, cancel=0, sweep=False, clock_offset=0,
                loops=1):
        args = [cli_binary(), "--config", self.config(cache), "--domain", "example.net",
                "--count", str(count), "--rounds", str(rounds), "--cancel", str(cancel),
                "--clock-offset", str(clock_offset), "--loops", str(loops)]
        args += ["--sweep"] if sweep else []
        if self.port != 443:
            args += ["--port", str(self.port)]
        r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        out, err = r.stdout.decode(), r.stderr.decode()
        self.assertEqual(r.returncode, 0, "stdout %s\nstderr %s" % (out, err))
        answers = []
        for line in out.splitlines():
            m = LINE.match(line)
            if m:
                answers.append({"round": int(m.group(1)), "sync": m.group(3) == "1",
                                "result": m.group(4), "fetch_failed": m.group(5) == "1",
                                "why": m.group(6), "id": m.group(7), "mx": m.group(9)})
        m = re.search(r"txt_queries=(\d+) fetches=(\d+) refreshes=(\d+)", out)
        self.assertIsNotNone(m, out)
        self.refreshes = int(m.group(3))
        self.assertEqual(len(answers), loops * max(0, count * rounds - cancel), out + err)
        return answers, int(m.group(1)), int(m.group(2)), err


@unittest.skipIf(dnszone.available() is not None, dnszone.available())
class MtaStsServiceTest(Fixture):

    def test_fetched_then_cached(self):
        answers, txt, fetches, _ = self.run_cli(rounds=2, cache=False)
        first, second = answers
        self.assertEqual((first["result"], first["why"], first["mx"]),
                         ("policy", "fetched", "mx.example.net"))
        self.assertEqual(first["id"], "20240101T000000")
        # The second lookup: from memory, synchronous, no TXT query, no fetch.
        self.assertEqual((second["result"], second["why"], second["sync"]),
                         ("policy", "cached", True))
        self.assertEqual((txt, fetches, self.srv.count()), (1, 1, 1))
        self.assertEqual(self.srv.requests, ["/.well-known/mta-sts.txt"])

    def test_concurrent_lookups_share_one_fetch(self):
        # 25 lookups started before the loop runs: without coalescing each
        # would make its own TXT query and fetch.
        answers, txt, fetches, _ = self.run_cli(count=25)
        self.assertEqual({(a["result"], a["why"], a["sync"]) for a in answers},
                         {("policy", "fetched", False)})
        self.assertEqual((txt, fetches, self.srv.count()), (1, 1, 1))

    def test_loops_share_one_fetch(self):
        # Two loops (as two workers) ask at the same moment: each looks the
        # record up, one fetches, the other waits for that fetch (or, had
        # it ended already, finds the policy cached).
        for attempt in range(3):
            self.srv.serve(200, POLICY1)
            answers, txt, fetches, _ = self.run_cli(count=10, loops=2, cache=False)
            self.assertEqual({(a["result"], a["mx"]) for a in answers},
                             {("policy", "mx.example.net")})
            self.assertEqual((txt, fetches, self.srv.count()), (2, 1, 1))

    def test_cache_survives_restart(self):
        self.run_cli()
        self.assertTrue(os.path.exists(self.cache))
        self.assertEqual(self.srv.count(), 1)
        # A new process: the TXT id is checked, unchanged, so no fetch.
        answers, txt, fetches, _ = self.run_cli()
        self.assertEqual((answers[0]["result"], answers[0]["why"], answers[0]["mx"]),
                         ("policy", "cached", "mx.example.net"))
        self.assertEqual((txt, fetches, self.srv.count()), (1, 0, 1))

    def test_id_change_refetches_and_failure_keeps_policy(self):
        self.run_cli()
        self.start_zone(TXT2)
        # The new id's fetch fails: the cached policy still applies.
        self.srv.serve(404, b"gone\n")
        answers, txt, fetches, err = self.run_cli(rounds=2)
        self.assertEqual([(a["result"], a["mx"]) for a in answers],
                         [("policy", "mx.example.net")] * 2)
        self.assertEqual(answers[0]["why"], "cached, refreshing")
        self.assertEqual((fetches, self.srv.count()), (1, 1))
        self.assertIn('event=mta_sts_fetch domain=example.net id=20240202T000000 result=failed '
                      'reason="http status"', err)
        # The server is back: the new id's policy is fetched and applies.
        self.srv.serve(200, POLICY2)
        answers, txt, fetches, _ = self.run_cli(rounds=2)
        self.assertEqual((answers[0]["why"], answers[0]["mx"]),
                         ("cached, refreshing", "mx.example.net"))
        self.assertEqual((answers[1]["why"], answers[1]["mx"], answers[1]["id"]),
                         ("cached", "mx2.example.net", "20240202T000000"))
        self.assertEqual((fetches, self.srv.count()), (1, 1))

    def test_first_fetch_fails(self):
        self.srv.serve(200, b"version: STSv1\nmode: bogus\n")
        answers, txt, fetches, err = self.run_cli(cache=False)
        self.assertEqual((answers[0]["result"], answers[0]["fetch_failed"]), ("tempfail", True))
        self.assertEqual(fetches, 1)
        self.assertIn("result=failed", err)

    def test_cancelled_lookups_still_fill_the_cache(self):
        # 5 of 6 lookups are cancelled: one answer, and the fetch, shared,
        # goes on for the cache: the second round is warm, answered at once
        # (nothing left to cancel).
        answers, txt, fetches, _ = self.run_cli(count=6, rounds=2, cancel=5, cache=False)
        self.assertEqual([(a["round"], a["why"], a["sync"]) for a in answers],
                         [(1, "fetched", False)] + [(2, "cached", True)] * 6)
        self.assertEqual((txt, fetches, self.srv.count()), (1, 1, 1))

    def test_no_record(self):
        self.start_zone(None)
        answers, txt, fetches, _ = self.run_cli(rounds=2, cache=False)
        self.assertEqual([(a["result"], a["sync"]) for a in answers],
                         [("none", False), ("none", True)])
        self.assertEqual((txt, fetches, self.srv.count()), (1, 0, 0))

    def test_bogus_record_is_a_failed_lookup(self):
        # A forged TXT record (its signature broken) is not believed: no
        # fetch, and the answer says discovery failed rather than "none".
        self.start_zone(TXT1, broken=True)
        answers, txt, fetches, _ = self.run_cli(cache=False)
        self.assertEqual((answers[0]["result"], answers[0]["why"]),
                         ("tempfail", "txt lookup failed"))
        self.assertEqual((fetches, self.srv.count()), (0, 0))

    def test_proactive_refresh(self):
        self.run_cli()
        # Nothing is due yet: the sweep looks nothing up.
        _, txt, fetches, _ = self.run_cli(rounds=0, sweep=True)
        self.assertEqual((self.refreshes, txt, fetches), (0, 0, 0))
        # A day later (max_age 86400: half of it), with no delivery at all,
        # the sweep checks the record and fetches again; the new policy is
        # kept in the file.
        self.srv.serve(200, POLICY2)
        _, txt, fetches, _ = self.run_cli(rounds=0, sweep=True, clock_offset=43200 + 60)
        self.assertEqual((self.refreshes, txt, fetches, self.srv.count()), (1, 1, 1, 1))
        answers, _, fetches, _ = self.run_cli(clock_offset=43200 + 120)
        self.assertEqual((answers[0]["why"], answers[0]["mx"], fetches),
                         ("cached", "mx2.example.net", 0))

    def test_corrupt_cache_entry_skipped(self):
        self.run_cli()
        with open(self.cache) as f:
            good = f.read()
        with open(self.cache, "w") as f:
            f.write("mta-sts-cache 1\ndomain bad..example\nend\n" + good)
        answers, txt, fetches, err = self.run_cli()
        self.assertIn("%s:1: mta_sts cache entry skipped" % self.cache, err)
        self.assertEqual((answers[0]["result"], answers[0]["why"]), ("policy", "cached"))
        self.assertEqual((fetches, self.srv.count()), (0, 1))



def resp(addr, *args, timeout=5):
    """One Redis command over a plain socket (RESP); the reply's bulk
    string, integer or status as bytes, or None for a nil."""
    ip, port = addr.rsplit(":", 1)
    s = socket.create_connection((ip, int(port)), timeout=timeout)
    try:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a), a) for a in (x if isinstance(x, bytes) else x.encode()
                                                      for x in args)))
        f = s.makefile("rb")
        line = f.readline()
        if line.startswith(b"$"):
            n = int(line[1:])
            return None if n < 0 else f.read(n + 2)[:-2]
        return line[1:].rstrip(b"\r\n")
    finally:
        s.close()


@unittest.skipIf(dnszone.available() is not None, dnszone.available())
@unittest.skipIf(shutil.which("redis-server") is None, "redis-server not installed (bazel/deps.sh)")
class RedisTest(Fixture):
    """mta_sts.redis: proxies of a fleet share policies through a real
    redis-server, started here on 127.0.0.1 (no persistence)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        port = harness.free_port()
        cls.redis_dir = harness.new_tmpdir("redis")
        cls.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", cls.redis_dir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        cls.redis_addr = "127.0.0.1:%d" % port
        deadline = time.monotonic() + 30
        while True:
            try:
                if resp(cls.redis_addr, "PING", timeout=1) == b"PONG":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or cls.redis_proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        cls.redis_proc.terminate()
        try:
            cls.redis_proc.wait(10)
        except subprocess.TimeoutExpired:
            cls.redis_proc.kill()
            cls.redis_proc.wait(10)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.redis = self.redis_addr
        resp(self.redis_addr, "FLUSHALL")

    def test_fleet_shares_a_policy(self):
        answers, _, fetches, _ = self.run_cli(cache=False)
        self.assertEqual((answers[0]["why"], fetches, self.srv.count()), ("fetched", 1, 1))
        value = resp(self.redis_addr, "GET", "mta-sts:example.net")
        self.assertTrue(value.startswith(b"mta-sts-cache 1\ndomain example.net\n"), value)
        ttl = int(resp(self.redis_addr, "TTL", "mta-sts:example.net"))
        self.assertTrue(86000 < ttl <= 86400, ttl)
        # Another proxy (a new process, nothing cached): from Redis, no fetch.
        answers, _, fetches, err = self.run_cli(cache=False)
        self.assertEqual((answers[0]["result"], answers[0]["why"], answers[0]["mx"]),
                         ("policy", "shared", "mx.example.net"))
        self.assertEqual((fetches, self.srv.count()), (0, 1))
        self.assertIn("event=mta_sts_shared domain=example.net", err)

    def test_bad_or_stale_values_are_fetched_anew(self):
        for value in (b"mta-sts-cache 1\ndomain example.net\nid x\n",  # cut short
                      b"\xff" * 100):
            resp(self.redis_addr, "SET", "mta-sts:example.net", value)
            self.srv.serve(200, POLICY1)
            answers, _, fetches, _ = self.run_cli(cache=False)
            self.assertEqual((answers[0]["why"], fetches, self.srv.count()), ("fetched", 1, 1))
        # A value for another TXT id is not taken either.
        self.run_cli(cache=False)
        self.start_zone(TXT2)
        self.srv.serve(200, POLICY2)
        answers, _, fetches, _ = self.run_cli(cache=False)
        self.assertEqual((answers[0]["why"], answers[0]["mx"], fetches),
                         ("fetched", "mx2.example.net", 1))
        self.assertIn(b"id 20240202T000000\n", resp(self.redis_addr, "GET", "mta-sts:example.net"))

    def test_redis_down_or_silent(self):
        # Nothing listens: the policy is fetched over HTTPS at once.
        self.redis = "127.0.0.1:%d" % harness.free_port()
        answers, _, fetches, err = self.run_cli(cache=False)
        self.assertEqual((answers[0]["why"], fetches), ("fetched", 1))
        self.assertIn("event=mta_sts_redis_failed", err)
        # One that accepts and never answers: given up after 1 s.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        self.addCleanup(silent.close)
        self.redis = "127.0.0.1:%d" % silent.getsockname()[1]
        self.srv.serve(200, POLICY1)
        t0 = time.monotonic()
        answers, _, fetches, err = self.run_cli(cache=False)
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)
        self.assertEqual((answers[0]["why"], fetches, self.srv.count()), ("fetched", 1, 1))
        self.assertIn('error="timeout"', err)

if __name__ == "__main__":
    unittest.main()
