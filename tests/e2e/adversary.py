"""Helpers of the adversarial and soak tests (test_adversarial.py,
test_soak.py, tests/bench/soak_long.py), on top of harness.py:

  rss_kb(pid), fd_count(pid)   the daemon's VmRSS and open descriptors (/proc).
  RssSampler           a thread sampling VmRSS every 20 ms: the peak under attack.
  healthy_session()    one complete STARTTLS session with a unique message, to
                       show that OTHER sessions keep being served.
  client_hello()       the bytes of a real TLS ClientHello (ssl.MemoryBIO).
  TLS_ALERT_*          TLS alert records, as a peer that gives up would send.
  SoakBackend          a ScriptedBackend whose per-connection knobs (slow
                       reading, closing mid-DATA) are set by an action for the
                       transaction at hand, and that records what it
                       acknowledged.
  Soak                 the no-loss soak: both directions at once, N client
                       threads, faults on every side chosen by a seeded RNG,
                       and the accounting of what was accepted and received.
"""

import hashlib
import os
import random
import re
import socket
import ssl
import struct
import threading
import time

import harness
import outbound_harness as oh
from harness import CRLF, Client, ConnectionClosed

# ---------------------------------------------------------------------------
# The daemon from /proc


def rss_kb(pid):
    """VmRSS of pid in kB (0 if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


class RssSampler:
    """Samples VmRSS of pid every `interval` s in a thread; .peak in kB."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.peak = rss_kb(pid)
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = rss_kb(self.pid)
            self.samples += 1
            if v > self.peak:
                self.peak = v
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        if self._t.is_alive():
            self._t.join(2)


def settle(pred, timeout=10.0, interval=0.1):
    return harness.wait_until(pred, timeout, interval)


# ---------------------------------------------------------------------------
# Sessions

_seq = [0]
_seq_lock = threading.Lock()


def unique_id(prefix="healthy"):
    with _seq_lock:
        _seq[0] += 1
        return "%s.%d.%d.%d@adversary.test" % (prefix, os.getpid(), _seq[0],
                                              int(time.time() * 1000))


def healthy_session(port, backend, implicit=False, timeout=10.0, size=2000):
    """A normal client on port: (implicit TLS or) EHLO, STARTTLS, EHLO, one
    message with a unique Message-ID, QUIT. Returns None on success, else a
    string saying what went wrong (so a test can assert with a message). The
    message must reach backend byte-exact."""
    mid = unique_id()
    body = b"Message-ID: <%s>\r\nSubject: healthy\r\n\r\n" % mid.encode()
    body += (b"a healthy line of text that goes on for a while\r\n" * (size // 50 + 1))
    c = None
    try:
        c = Client(port, timeout=timeout)
        if implicit:
            c.wrap()
        g = c.greeting()
        if g.code != 220:
            return "greeting %r" % (g,)
        r = c.ehlo()
        if r.code != 250:
            return "EHLO %r" % (r,)
        if not implicit:
            if "STARTTLS" not in r.keywords():
                return "no STARTTLS in %r" % (r,)
            c.starttls()
            r = c.ehlo()
            if r.code != 250:
                return "EHLO after TLS %r" % (r,)
        codes = [x.code for x in c.send_message("a@healthy.test", ["b@healthy.test"], body)]
        if codes != [250, 250, 354, 250]:
            return "transaction replies %r" % (codes,)
        r = c.cmd("QUIT")
        if r.code != 221:
            return "QUIT %r" % (r,)
    except (OSError, ConnectionClosed, ssl.SSLError, AssertionError) as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        if c is not None:
            c.close()
    got = backend.wait_for(lambda: [m for m in backend.messages
                                    if mid.encode() in m.data[:200]], timeout)
    if not got:
        return "message %s never reached the backend" % mid
    if got[0].data != body:
        return "message %s altered on the way (%d octets, expected %d)" % (
            mid, len(got[0].data), len(body))
    return None


def client_hello(server_hostname="mx.test"):
    """The first flight of a TLS client: a complete ClientHello record."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


# A fatal handshake_failure alert (TLS 1.0 record version, as in a first flight).
TLS_ALERT_HANDSHAKE_FAILURE = bytes([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28])
# A close_notify warning alert.
TLS_ALERT_CLOSE_NOTIFY = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00])
# A handshake record header announcing 64 KiB - 1 (more than TLS allows).
TLS_HUGE_RECORD_HEADER = bytes([0x16, 0x03, 0x01, 0xff, 0xff])


def rst(sock):
    """Closes sock with RST (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def read_until_closed(sock, timeout):
    """Reads until EOF/reset or timeout; returns (bytes, closed)."""
    deadline = time.monotonic() + timeout
    got = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return got, False
        sock.settimeout(remaining)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return got, False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return got, True
        except OSError:
            return got, True
        if not d:
            return got, True
        got += d


# ---------------------------------------------------------------------------
# The soak's scripted server


class SoakBackend(harness.ScriptedBackend):
    """A ScriptedBackend whose slow-reading and close-mid-DATA knobs are per
    connection: they are read from a thread-local that the MAIL action sets
    (every connection is served by its own thread, actions included).

    plan_of(mail_line) -> (key, fault) where key identifies the attempt and
    fault is one of None, "close_mid_data", "die_before_250",
    "die_after_250", "reply_451", "reply_554", "slow_reader".
    acks[key] lists (sha256, length) of every content it answered 250 to;
    refused[key] lists those it received and did not acknowledge."""

    SLOW_RECV = 4096
    SLOW_DELAY = 0.01

    def __init__(self, plan_of, **kw):
        self._tl = threading.local()
        self.plan_of = plan_of
        self.acks = {}
        self.refused = {}
        self.faults = {}
        self.lock = threading.Lock()
        actions = {"MAIL": self._on_mail, ".": self._on_dot}
        super().__init__(actions=actions, **kw)

    # knobs read by ScriptedBackend on every read
    @property
    def recv_size(self):
        return self.SLOW_RECV if getattr(self._tl, "slow", False) else 65536

    @recv_size.setter
    def recv_size(self, v):
        pass

    @property
    def read_delay(self):
        return self.SLOW_DELAY if getattr(self._tl, "slow", False) else 0.0

    @read_delay.setter
    def read_delay(self, v):
        pass

    @property
    def data_close_after(self):
        return getattr(self._tl, "close_after", None)

    @data_close_after.setter
    def data_close_after(self, v):
        pass

    def _count(self, fault):
        with self.lock:
            self.faults[fault] = self.faults.get(fault, 0) + 1

    def _on_mail(self, conn, line):
        key, fault, arg = self.plan_of(line)
        conn.soak_key, conn.soak_fault = key, fault
        self._tl.slow = fault == "slow_reader"
        self._tl.close_after = arg if fault == "close_mid_data" else None
        if fault in ("slow_reader", "close_mid_data"):
            self._count(fault)
        return None

    def _on_dot(self, conn, data):
        key, fault = getattr(conn, "soak_key", None), getattr(conn, "soak_fault", None)
        self._tl.slow = False
        self._tl.close_after = None
        rec = (hashlib.sha256(data).hexdigest(), len(data))
        if fault in ("die_before_250", "reply_451", "reply_554"):
            self._count(fault)
            with self.lock:
                self.refused.setdefault(key, []).append(rec)
            if fault == "die_before_250":
                if key[0] % 2:
                    rst(conn.sock)   # half of them reset, the others close
                return "close"
            return (b"451 4.3.0 soak: try again later" if fault == "reply_451"
                    else b"554 5.6.0 soak: rejected")
        with self.lock:
            self.acks.setdefault(key, []).append(rec)
        if fault == "die_after_250":
            self._count(fault)
            try:
                conn.sock.settimeout(5)
                conn.sock.sendall(b"250 2.0.0 Ok: queued, and now I die\r\n")
            except OSError:
                pass
            if key[0] % 2:
                rst(conn.sock)   # the 250 may then be lost: "ambiguous"
            return "close"
        return None

    def prune(self):
        """Forgets closed connections, finished threads and messages (the
        soak keeps its own records), so a long run stays small."""
        with self.cond:
            self.conns = [c for c in self.conns if not c.closed.is_set()]
            self.messages = []
        self._threads = [t for t in self._threads if t.is_alive()]


# ---------------------------------------------------------------------------
# The soak

CLIENT_FAULTS = ("client_reset_mid_data", "client_stall", "client_stall_cut")
SERVER_FAULTS = ("close_mid_data", "die_before_250", "die_after_250", "reply_451",
                 "reply_554", "slow_reader")

# Per attempt: fault -> probability (the rest run clean).
FAULT_P = {
    "client_reset_mid_data": 0.03,
    "client_stall": 0.02,
    "client_stall_cut": 0.004,
    "close_mid_data": 0.03,
    "die_before_250": 0.02,
    "die_after_250": 0.02,
    "reply_451": 0.03,
    "reply_554": 0.02,
    "slow_reader": 0.03,
}

_TEXT = None


def _text_pool():
    global _TEXT
    if _TEXT is None:
        r = random.Random(12345)
        alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_=+/"
        _TEXT = bytes(r.choice(alphabet) for _ in range(1 << 16))
    return _TEXT


def make_body(rng, size):
    """About `size` octets of CRLF lines, some starting with '.', some a lone
    '.' or '..'; always ends with CRLF."""
    pool = _text_pool()
    out = []
    n = 0
    while n < size:
        k = rng.randint(0, 120)
        x = rng.random()
        if x < 0.05:
            line = b"."
        elif x < 0.08:
            line = b".."
        elif x < 0.2:
            off = rng.randrange(0, len(pool) - 130)
            line = b"." + pool[off:off + k]
        else:
            off = rng.randrange(0, len(pool) - 130)
            line = pool[off:off + k]
        out.append(line)
        n += len(line) + 2
    return CRLF.join(out) + CRLF


def body_size(rng):
    """1 B .. 200 kB, log-uniform (most messages are small)."""
    return max(1, min(200000, int(10 ** rng.uniform(0, 5.301))))


class Attempt:
    __slots__ = ("msgno", "attempt", "direction", "fault", "digest", "length", "outcome",
                 "code", "stall")

    def __init__(self, msgno, attempt, direction, fault):
        self.msgno = msgno
        self.attempt = attempt
        self.direction = direction
        self.fault = fault
        self.digest = None
        self.length = 0
        self.outcome = None   # "2xx", "4xx", "5xx", "none" (no reply), "reset" (we reset)
        self.code = None
        self.stall = 0.0


class _Snapshot:
    """An Attempt's fields at one moment."""

    def __init__(self, a):
        for k in Attempt.__slots__:
            setattr(self, k, getattr(a, k))


class Soak:
    """Both directions at once through one daemon: listener "in" (STARTTLS,
    in front of a plaintext SoakBackend) and "out" (plaintext, fixed
    destination = a SoakBackend speaking STARTTLS, policy required).

    run(messages=None, seconds=None) sends until either bound; every random
    choice comes from seed (per message number, so the set of messages and
    faults is the same on every run; only the interleaving differs)."""

    def __init__(self, seed, threads=8, log=print, idle=4, workdir_name="soak",
                 max_attempts=2):
        self.seed = seed
        self.threads = threads
        self.log = log
        self.idle = idle
        self.max_attempts = max_attempts
        self.lock = threading.Lock()
        self.attempts = {}        # (msgno, attempt) -> Attempt
        self.plans = {}           # "soak-<msgno>-<attempt>" -> (fault, arg)
        self.next_msg = 0
        self.connections = {"in": 0, "out": 0}
        self.errors = []
        self.workdir_name = workdir_name

    # -- set-up --------------------------------------------------------------

    def start(self):
        p = harness.pki()
        self.backend = SoakBackend(self._plan_of, name="soak-backend").start()
        ctx = oh.tls_server_context(oh.certs()["trusted"])
        self.dest = SoakBackend(self._plan_of, name="soak-destination", tls_ctx=ctx,
                                ehlo=["dest.test", "PIPELINING", "SIZE 52428800", "STARTTLS",
                                      "ENHANCEDSTATUSCODES", "8BITMIME"],
                                greeting=b"220 dest.test ESMTP\r\n").start()
        self.mport = harness.free_port()
        inl = harness.inbound_listener(self.backend.port, name="in",
                                       timeouts={"idle": self.idle, "handshake": 5,
                                                 "connect": 5})
        outl = oh.outbound_listener("127.0.0.1:%d" % self.dest.port, policy="required",
                                    name="out", timeouts={"idle": self.idle, "handshake": 5,
                                                          "connect": 5})
        cfg = harness.base_config([inl], log_level="info",
                                  metrics_listen="127.0.0.1:%d" % self.mport)
        cfg["outbound"] = [outl]
        self.proxy = harness.Proxy(cfg, name=self.workdir_name)
        self.proxy.start()
        self.in_port = harness.listen_port_of(inl)
        self.out_port = harness.listen_port_of(outl)
        self.pid = self.proxy.proc.pid
        return self

    def stop(self):
        for x in ("proxy", "backend", "dest"):
            o = getattr(self, x, None)
            if o is not None:
                try:
                    o.stop()
                except Exception as e:  # cleanup must go on
                    self.errors.append("stop %s: %r" % (x, e))

    def metric(self, name, **labels):
        st, body = oh.http_get(self.mport, "/metrics")
        if st != 200:
            return None
        return oh.metric(oh.parse_metrics(body), name, **labels)

    # -- plans ---------------------------------------------------------------

    def _rng(self, msgno, attempt, what):
        return random.Random("%d/%d/%d/%s" % (self.seed, msgno, attempt, what))

    def _fault_for(self, msgno, attempt):
        r = self._rng(msgno, attempt, "fault").random()
        acc = 0.0
        for f, pr in FAULT_P.items():
            acc += pr
            if r < acc:
                return f
        return None

    _MAIL = re.compile(rb"<soak-(\d+)-(\d+)@")

    def _plan_of(self, line):
        m = self._MAIL.search(line)
        if not m:
            return None, None, None
        key = (int(m.group(1)), int(m.group(2)))
        with self.lock:
            fault, arg = self.plans.get(key, (None, None))
        return key, fault, arg

    # -- clients -------------------------------------------------------------

    def _take(self, limit, deadline):
        with self.lock:
            if limit is not None and self.next_msg >= limit:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            n = self.next_msg
            self.next_msg += 1
            return n

    def _connect(self, direction):
        port = self.in_port if direction == "in" else self.out_port
        c = Client(port, timeout=10)
        with self.lock:
            self.connections[direction] += 1
        g = c.greeting()
        if g.code != 220:
            raise ConnectionClosed("greeting %r" % (g,))
        r = c.ehlo("soak-client.test")
        if r.code != 250:
            raise ConnectionClosed("EHLO %r" % (r,))
        if direction == "in":
            c.starttls()
            r = c.ehlo("soak-client.test")
            if r.code != 250:
                raise ConnectionClosed("EHLO after TLS %r" % (r,))
        return c

    def _one(self, c, a, content):
        """One transaction on client c for attempt a; sets a.outcome. Returns
        True if the session can go on."""
        r = c.cmd("MAIL FROM:<soak-%d-%d@soak.test>" % (a.msgno, a.attempt))
        if r.code != 250:
            a.outcome, a.code = "%dxx" % (r.code // 100), r.code
            return False
        r = c.cmd("RCPT TO:<rcpt-%d@dest.test>" % a.msgno)
        if r.code != 250:
            a.outcome, a.code = "%dxx" % (r.code // 100), r.code
            return False
        r = c.cmd("DATA")
        if r.code != 354:
            a.outcome, a.code = "%dxx" % (r.code // 100), r.code
            return False
        wire = harness.dot_stuff(content)
        rng = self._rng(a.msgno, a.attempt, "client")
        if a.fault == "client_reset_mid_data":
            cut = rng.randint(0, max(0, len(wire) - 1))
            c.send(wire[:cut])
            time.sleep(rng.uniform(0, 0.05))
            a.outcome = "reset"
            c.abort()
            return False
        if a.fault in ("client_stall", "client_stall_cut"):
            cut = rng.randint(0, len(wire))
            c.send(wire[:cut])
            a.stall = (rng.uniform(0.3, 1.5) if a.fault == "client_stall"
                       else self.idle + 1.5)
            time.sleep(a.stall)
            wire = wire[cut:]
        c.send(wire + b".\r\n")
        r = c.read_reply(timeout=30)
        a.code = r.code
        a.outcome = "%dxx" % (r.code // 100)
        return r.code == 250 or r.code in (451, 554)

    def _worker(self, wid, limit, deadline):
        c = None
        direction = None
        while True:
            n = self._take(limit, deadline)
            if n is None:
                break
            srng = self._rng(n, 0, "session")
            for attempt in range(1, self.max_attempts + 1):
                fault = self._fault_for(n, attempt)
                if c is None or srng.random() < 0.25:
                    if c is not None:
                        try:
                            c.cmd("QUIT", timeout=5)
                        except (OSError, ConnectionClosed, ssl.SSLError):
                            pass
                        c.close()
                        c = None
                    direction = "in" if srng.random() < 0.5 else "out"
                a = Attempt(n, attempt, direction, fault)
                mrng = self._rng(n, attempt, "body")
                mid = "<soak.%d.%d@soak.test>" % (self.seed, n)
                content = (b"Message-ID: %s\r\nX-Soak-Attempt: %d\r\nSubject: soak %d\r\n\r\n"
                           % (mid.encode(), attempt, n)) + make_body(mrng, body_size(mrng))
                a.digest = hashlib.sha256(content).hexdigest()
                a.length = len(content)
                arg = None
                if fault == "close_mid_data":
                    arg = mrng.randint(1, max(1, len(content) // 2 + 1))
                with self.lock:
                    self.plans[(n, attempt)] = (fault, arg)
                    self.attempts[(n, attempt)] = a
                ok = False
                try:
                    if c is None:
                        c = self._connect(direction)
                    ok = self._one(c, a, content)
                except (OSError, ConnectionClosed, ssl.SSLError) as e:
                    ok = False
                    if a.outcome is None:
                        a.outcome = "none"
                if not ok and c is not None:
                    c.close()
                    c = None
                # Retry (new attempt) only when the outcome leaves the
                # message undelivered for sure or in doubt: 4xx, no reply,
                # our own reset. 2xx and 5xx are final.
                if a.outcome in ("2xx", "5xx"):
                    break
        if c is not None:
            try:
                c.cmd("QUIT", timeout=5)
            except (OSError, ConnectionClosed, ssl.SSLError):
                pass
            c.close()

    def _safe_worker(self, wid, limit, deadline):
        try:
            self._worker(wid, limit, deadline)
        except Exception as e:  # a harness bug: reported, not hidden
            import traceback
            self.errors.append("worker %d: %s" % (wid, traceback.format_exc()))

    def run(self, messages=None, seconds=None, progress=None):
        """Sends until `messages` are taken or `seconds` pass; returns the
        elapsed seconds."""
        deadline = time.monotonic() + seconds if seconds else None
        t0 = time.monotonic()
        ts = [threading.Thread(target=self._safe_worker, args=(i, messages, deadline),
                               name="soak-client-%d" % i, daemon=True)
              for i in range(self.threads)]
        for t in ts:
            t.start()
        hard = (seconds or 600) + 120
        last = t0
        while any(t.is_alive() for t in ts) and time.monotonic() - t0 < hard:
            for t in ts:
                t.join(0.5)
            if time.monotonic() - last > 10:
                last = time.monotonic()
                self.backend.prune()
                self.dest.prune()
                if progress:
                    progress(self)
        stuck = [t.name for t in ts if t.is_alive()]
        if stuck:
            self.errors.append("client threads did not finish: %s" % stuck)
        self.elapsed = time.monotonic() - t0
        return self.elapsed

    # -- accounting ------------------------------------------------------------

    def account(self):
        """The figures, as a dict (see README)."""
        # Outcomes first, then the servers' records: a server records its
        # 250 before sending it, so every 2xx seen here has its record below
        # (this matters for the progress figures of a run still going on).
        with self.lock:
            attempts = {k: _Snapshot(a) for k, a in self.attempts.items()}
        acks, refused = {}, {}
        for b in (self.backend, self.dest):
            with b.lock:
                for k, v in b.acks.items():
                    acks.setdefault(k, []).extend(v)
                for k, v in b.refused.items():
                    refused.setdefault(k, []).extend(v)
        f = {"attempts": len(attempts), "accepted": 0, "acked": 0, "lost": [],
             "duplicates": [], "corrupt": [], "ambiguous": [], "phantom": [],
             "delivered_twice": [], "faults": {}, "outcomes": {}}
        msgs = {}
        f["in_flight"] = 0
        for key, a in attempts.items():
            if a.outcome is None:      # still being sent (progress figures only)
                f["in_flight"] += 1
                continue
            got = acks.get(key, [])
            f["outcomes"][a.outcome] = f["outcomes"].get(a.outcome, 0) + 1
            if a.fault and a.fault in CLIENT_FAULTS:
                f["faults"][a.fault] = f["faults"].get(a.fault, 0) + 1
            if got:
                f["acked"] += 1
            if len(got) >= 2:
                f["duplicates"].append(key)
            if a.outcome == "2xx":
                f["accepted"] += 1
                if not got:
                    f["lost"].append(key)
                elif any(g != (a.digest, a.length) for g in got):
                    f["corrupt"].append(key)
            elif got:
                if a.outcome == "reset" and a.fault == "client_reset_mid_data":
                    f["phantom"].append(key)   # completed from part of the content
                else:
                    f["ambiguous"].append(key)
                if any(g != (a.digest, a.length) for g in got):
                    f["corrupt"].append(key)
            m = msgs.setdefault(key[0], [0, 0])
            m[0] += 1 if a.outcome == "2xx" else 0
            m[1] += 1 if got else 0
        for n, (ok2xx, nacked) in msgs.items():
            if ok2xx >= 2:
                f["duplicates"].append((n, "two 2xx"))
            if nacked >= 2:
                f["delivered_twice"].append(n)
        for b in (self.backend, self.dest):
            with b.lock:
                for k, v in b.faults.items():
                    f["faults"][k] = f["faults"].get(k, 0) + v
        f["messages"] = len(msgs)
        f["delivered"] = sum(1 for ok2xx, nacked in msgs.values() if nacked)
        f["connections"] = dict(self.connections)
        return f

    def summary(self, f):
        return ("soak seed=%d: messages=%d attempts=%d accepted=%d received=%d lost=%d "
                "duplicates=%d corrupt=%d phantom=%d ambiguous=%d delivered_twice=%d "
                "in_flight=%d connections=%s faults=%s outcomes=%s elapsed=%.1fs"
                % (self.seed, f["messages"], f["attempts"], f["accepted"], f["acked"],
                   len(f["lost"]), len(f["duplicates"]), len(f["corrupt"]),
                   len(f["phantom"]), len(f["ambiguous"]), len(f["delivered_twice"]),
                   f["in_flight"], f["connections"], dict(sorted(f["faults"].items())),
                   dict(sorted(f["outcomes"].items())), getattr(self, "elapsed", 0)))
