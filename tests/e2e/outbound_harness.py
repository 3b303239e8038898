"""Helpers for the outbound end-to-end tests (test_outbound*.py), on top of
harness.py:

  certs()              extra certificates from the harness test CA: one for
                       "other.test" only (name mismatch) and a self-signed
                       one for localhost (untrusted chain).
  tls_server_context() a server SSLContext that records the SNI it is sent.
  outbound_listener(), outbound_config()   libconfig dicts.
  http_get(), parse_metrics()              the metrics endpoint.
  Netns                a throw-away network namespace with iptables rules,
                       sockets made inside it from Python (setns(2) in a
                       helper thread, through ctypes) and the daemon run in
                       it with "ip netns exec".
  BoundBackend         a ScriptedBackend listening on any address/family.
"""

import ctypes
import ctypes.util
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import harness

# ---------------------------------------------------------------------------
# Certificates


class CertKey:
    def __init__(self, cert, key):
        self.cert = cert
        self.key = key


_certs = {}
_certs_lock = threading.Lock()


def _issue(d, name, cn, san, self_signed=False):
    """A P-256 certificate for cn with subjectAltName san, signed by the
    harness CA (or by itself)."""
    p = harness.pki()
    key = os.path.join(d, name + ".key")
    cert = os.path.join(d, name + ".pem")
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n" % san)
    if self_signed:
        harness._run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                      "-subj", "/CN=" + cn, "-days", "3", "-addext", "subjectAltName=" + san])
        return CertKey(cert, key)
    csr = os.path.join(d, name + ".csr")
    harness._run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
                  "-subj", "/CN=" + cn])
    harness._run(["openssl", "x509", "-req", "-in", csr, "-CA", p.ca, "-CAkey", p.ca_key,
                  "-CAcreateserial", "-out", cert, "-days", "3", "-sha256", "-extfile", ext])
    return CertKey(cert, key)


def _issue_expired(d, name, san):
    """A CA-signed certificate for san whose validity ended in 2020 ("openssl
    ca" is the only CLI way to set both dates)."""
    p = harness.pki()
    key = os.path.join(d, name + ".key")
    cert = os.path.join(d, name + ".pem")
    csr = os.path.join(d, name + ".csr")
    db = os.path.join(d, name + ".db")
    os.makedirs(db, exist_ok=True)
    open(os.path.join(db, "index.txt"), "w").close()
    with open(os.path.join(db, "serial"), "w") as f:
        f.write("1000\n")
    conf = os.path.join(d, name + ".cnf")
    with open(conf, "w") as f:
        f.write("[ca]\ndefault_ca = test\n[test]\ndatabase = %s/index.txt\n"
                "new_certs_dir = %s\nserial = %s/serial\ndefault_md = sha256\n"
                "policy = anything\nunique_subject = no\nx509_extensions = ext\n"
                "[anything]\ncommonName = supplied\n"
                "[ext]\nsubjectAltName = %s\nbasicConstraints = CA:FALSE\n"
                "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
                % (db, db, db, san))
    harness._run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
                  "-subj", "/CN=localhost"])
    harness._run(["openssl", "ca", "-batch", "-notext", "-config", conf, "-cert", p.ca,
                  "-keyfile", p.ca_key, "-in", csr, "-out", cert,
                  "-startdate", "20200101000000Z", "-enddate", "20200201000000Z"])
    return CertKey(cert, key)


def certs():
    """{"trusted": harness cert (mx.test, localhost, 127.0.0.1),
        "other": CA-signed for other.test only,
        "selfsigned": self-signed for localhost and 127.0.0.1,
        "netns": CA-signed for the addresses 127.0.0.2 and fd00::2 only,
        "expired": CA-signed for localhost and 127.0.0.1, expired in 2020}."""
    with _certs_lock:
        if not _certs:
            p = harness.pki()
            d = os.path.join(harness.tmp_root(), "pki-outbound")
            os.makedirs(d, exist_ok=True)
            _certs["trusted"] = CertKey(p.cert, p.key)
            _certs["other"] = _issue(d, "other", "other.test", "DNS:other.test")
            _certs["selfsigned"] = _issue(d, "selfsigned", "localhost",
                                          "DNS:localhost,IP:127.0.0.1", self_signed=True)
            _certs["netns"] = _issue(d, "netns", "127.0.0.2", "IP:127.0.0.2,IP:fd00::2")
            _certs["expired"] = _issue_expired(d, "expired", "DNS:localhost,IP:127.0.0.1")
        return dict(_certs)


def tls_server_context(ck, sni_log=None, max_version=None):
    """A server context serving ck; every SNI the client sends (None when it
    sends none) is appended to sni_log."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ck.cert, ck.key)
    if max_version is not None:
        ctx.maximum_version = max_version
    if sni_log is not None:
        def on_sni(sslobj, name, c):
            sni_log.append(name)
            return None
        ctx.sni_callback = on_sni
    return ctx


# ---------------------------------------------------------------------------
# Configuration

OUT_TIMEOUTS = {"connect": 5, "handshake": 5, "idle": 10}


def outbound_listener(destination, policy="opportunistic", name="relay", listen=None,
                      policies=None, tls=None, timeouts=None):
    d = {
        "name": name,
        "listen": listen or "%s:%d" % (harness.HOST, harness.free_port()),
        "destination": destination,
        "policy": policy,
        "timeouts": dict(OUT_TIMEOUTS, **(timeouts or {})),
    }
    if policies is not None:
        d["policies"] = policies
    if tls is not None:
        d["tls"] = tls
    return d


def outbound_config(outbound, inbound=None, **top):
    cfg = harness.base_config(inbound or [], **top)
    if not inbound:
        del cfg["inbound"]
    cfg["outbound"] = outbound
    return cfg


# ---------------------------------------------------------------------------
# Metrics


def http_get(port, path, host=harness.HOST, timeout=5.0):
    """(status, body) of a plain HTTP/1.0 GET."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path.encode(), host.encode()))
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > 4 << 20:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return (int(m.group(1)) if m else -1), body.decode("utf-8", "replace")


_SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?\s+(\S+)')


def parse_metrics(text):
    """[(name, {label: value}, float)] from Prometheus text."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError("malformed metrics line %r" % line)
        labels = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def metric(samples, name, **labels):
    """The sum of name's samples whose labels include labels (0 if none)."""
    return sum(v for n, l, v in samples
               if n == name and all(l.get(k) == x for k, x in labels.items()))


# ---------------------------------------------------------------------------
# Network namespaces

CLONE_NEWNET = 0x40000000
_libc = [None]


def _setns_net(path):
    if _libc[0] is None:
        _libc[0] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc[0].setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns(%s): %s" % (path, os.strerror(e)))
    finally:
        os.close(fd)


class NetnsUnavailable(Exception):
    """Namespaces or NAT cannot be used here: a reason to skip, not a failure."""


def _sh(cmd, timeout=15):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace").strip()


class Netns:
    """A named network namespace with loopback up. Use as a context manager
    or call delete(); deleting also drops its iptables rules."""

    def __init__(self, prefix="stpo"):
        # Unique and short (names end up in /run/netns).
        self.name = "%s-%d-%d" % (prefix, os.getpid(), int(time.monotonic() * 1000) % 1000000)
        self.path = "/run/netns/" + self.name
        self.created = False

    def create(self):
        if os.geteuid() != 0:
            raise NetnsUnavailable("not root (euid %d)" % os.geteuid())
        for tool in ("ip", "iptables"):
            if not any(os.access(os.path.join(d, tool), os.X_OK)
                       for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                       .split(":") + ["/usr/sbin", "/sbin"]):
                raise NetnsUnavailable("%s not installed" % tool)
        rc, out = _sh(["ip", "netns", "add", self.name])
        if rc != 0:
            raise NetnsUnavailable("ip netns add refused: " + out)
        self.created = True
        if not os.path.exists(self.path):
            self.path = "/var/run/netns/" + self.name
        rc, out = self.exec(["ip", "link", "set", "lo", "up"])
        if rc != 0:
            self.delete()
            raise NetnsUnavailable("cannot bring lo up in the namespace: " + out)
        return self

    def exec(self, cmd, timeout=15):
        return _sh(["ip", "netns", "exec", self.name] + list(cmd), timeout)

    def must(self, cmd):
        rc, out = self.exec(cmd)
        if rc != 0:
            raise RuntimeError("%s: %s" % (" ".join(cmd), out))
        return out

    def try_rule(self, tool, args):
        """Adds an iptables/ip6tables rule; NetnsUnavailable when the kernel
        or the tool refuses (no nat table, no nft)."""
        rc, out = self.exec([tool] + list(args))
        if rc != 0:
            raise NetnsUnavailable("%s %s refused: %s" % (tool, " ".join(args), out))

    def run_in(self, fn, *args, timeout=15):
        """Runs fn(*args) in a helper thread that has entered the namespace
        (setns(2) on that thread only), so the sockets fn makes live there.
        Returns fn's result or raises its exception."""
        box = {}

        def body():
            try:
                _setns_net(self.path)
                box["v"] = fn(*args)
            except BaseException as e:  # handed to the caller
                box["e"] = e
        t = threading.Thread(target=body, name="in-netns", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise RuntimeError("helper thread in netns %s did not finish" % self.name)
        if "e" in box:
            raise box["e"]
        return box.get("v")

    @staticmethod
    def remove_stale(prefix="stpo"):
        """Deletes namespaces this helper made in runs that were killed
        (named PREFIX-PID-..., PID no longer alive)."""
        rc, out = _sh(["ip", "netns", "list"])
        if rc != 0:
            return
        for line in out.splitlines():
            m = re.match(r"^(%s-(\d+)-\d+)\b" % re.escape(prefix), line)
            if m and not os.path.exists("/proc/" + m.group(2)):
                _sh(["ip", "netns", "del", m.group(1)])

    def delete(self):
        if self.created:
            # Processes still inside keep it alive; the name goes regardless.
            _sh(["ip", "netns", "del", self.name])
            self.created = False

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.delete()


def is_listening_in(pid, port):
    """Like harness.is_listening, but in the network namespace of pid."""
    for name in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) >= 4 and parts[3] == "0A" and \
                            int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except (OSError, StopIteration):
            continue
    return False


class NetnsProxy(harness.Proxy):
    """The daemon started inside a namespace with "ip netns exec" (which
    execs, so the pid and signals are the daemon's own)."""

    def __init__(self, ns, config, name="proxy"):
        self.ns = ns
        super().__init__(config, name=name)

    def start(self):
        cmd = ["ip", "netns", "exec", self.ns.name, harness.proxy_binary(), "-c",
               self.config_path]
        self._err = open(self.log_path, "ab")
        self._out = open(self.out_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, close_fds=True)
        ports = self.listen_ports()
        pid = self.proc.pid

        def ready():
            # Only once "ip" has exec'd the daemon is /proc/PID/net the
            # namespace's.
            try:
                exe = os.path.basename(os.readlink("/proc/%d/exe" % pid))
            except OSError:
                return False
            return exe == os.path.basename(harness.proxy_binary()) and \
                all(is_listening_in(pid, p) for p in ports)
        harness.wait_until(lambda: self.proc.poll() is not None or ready(), self.START_TIMEOUT)
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            raise RuntimeError("proxy exited with %d during start-up:\n%s" %
                               (self.proc.returncode, self.log()[-4000:]))
        if not ready():
            self.kill()
            raise RuntimeError("proxy did not listen on %s within %.0f s:\n%s" %
                               (ports, self.START_TIMEOUT, self.log()[-4000:]))
        return self


class BoundBackend(harness.ScriptedBackend):
    """A ScriptedBackend listening on (host, port) of any family; construct
    it inside Netns.run_in() to have it listen in the namespace."""

    def __init__(self, host, port, family=socket.AF_INET, **kw):
        super().__init__(**kw)
        self.lsock.close()
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
        s.settimeout(0.2)
        self.lsock = s
        self.host = host
        self.port = s.getsockname()[1]

    @property
    def addr(self):
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)
