"""Shared pieces of the benchmarks: the real daemon with a generated config in
front of Postfix's smtp-sink, a throw-away ECDSA P-256 certificate, a small
blocking SMTP client, and readers for the proxy's RSS and CPU time from /proc.

Nothing here asserts on timing: the benchmarks print figures and only fail
when the proxy misbehaves (an unexpected reply, a crash, a hang), which is
reported with the proxy's log.
"""

import argparse
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
SMTP_SINK = "/usr/sbin/smtp-sink"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(Exception):
    """The system under test misbehaved; the message says how."""


# ---------------------------------------------------------------------------
# Paths and limits


def proxy_binary(explicit=None):
    """--proxy, else $SMTP_TLS_PROXY_BIN, else the runfiles copy (bazel run),
    else bazel-bin/ of the workspace (run as a script from the repo root)."""
    cands = [explicit, os.environ.get("SMTP_TLS_PROXY_BIN")]
    for root in (os.environ.get("RUNFILES_DIR"), os.environ.get("TEST_SRCDIR"),
                 os.path.abspath(sys.argv[0]) + ".runfiles"):
        if root:
            cands.append(os.path.join(root, "smtp_tls_proxy/proxy/smtp-tls-proxy"))
    cands.append("proxy/smtp-tls-proxy")  # cwd of `bazel run` is the runfiles tree
    here = os.path.dirname(os.path.abspath(__file__))
    ws = os.environ.get("BUILD_WORKSPACE_DIRECTORY") or os.path.dirname(os.path.dirname(here))
    cands.append(os.path.join(ws, "bazel-bin/proxy/smtp-tls-proxy"))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
    raise BenchError("smtp-tls-proxy binary not found: use bazel run, or "
                     "`bazel build //proxy:smtp-tls-proxy` and run from the repo "
                     "root, or pass --proxy / set SMTP_TLS_PROXY_BIN")


def raise_nofile(needed):
    """Raises this process's RLIMIT_NOFILE (inherited by the proxy and
    smtp-sink we start) to at least `needed`, up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, needed)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        raise BenchError("RLIMIT_NOFILE hard limit %d is below the %d descriptors needed; "
                         "raise it (ulimit -Hn, prlimit) or lower -n" % (hard, needed))
    return want


class Workdir:
    """A scratch directory removed at exit unless --keep."""

    def __init__(self, keep=False):
        self.path = tempfile.mkdtemp(prefix="smtp-tls-proxy-bench-")
        os.chmod(self.path, 0o755)
        self.keep = keep

    def close(self):
        if self.keep:
            print("# scratch directory kept: %s" % self.path)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


# ---------------------------------------------------------------------------
# Certificate


def _run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise BenchError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                 r.stderr.decode("utf-8", "replace")))


def make_cert(d, cn="mx.test"):
    """A self-signed ECDSA P-256 certificate and key for cn; (cert, key)."""
    cert, key = os.path.join(d, "server.pem"), os.path.join(d, "server.key")
    _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
          "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=" + cn, "-days", "2",
          "-addext", "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1" % cn,
          "-addext", "keyUsage=critical,digitalSignature",
          "-addext", "extendedKeyUsage=serverAuth"])
    return cert, key


def client_context(version="1.3"):
    """A client context pinned to one TLS version. Verification is off: its
    cost is the client's, and the client shares the machine with the proxy."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
    ctx.minimum_version = v
    ctx.maximum_version = v
    return ctx


# ---------------------------------------------------------------------------
# Processes


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def is_listening(port):
    """True if a socket listens on port, from /proc/net/tcp: readiness is
    checked without opening a session."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_until(pred, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def proc_cpu_split(pid):
    """(utime, stime) of every thread of pid, in seconds. The kernel reports
    clock ticks (1/SC_CLK_TCK s, usually 10 ms): runs must be long enough
    for that to vanish."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK


def proc_cpu_seconds(pid):
    """utime + stime of every thread of pid, in seconds."""
    return sum(proc_cpu_split(pid))


def proc_status(pid):
    """/proc/PID/status memory lines in KB: VmRSS, RssAnon, RssFile, VmHWM..."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            v = v.split()
            if len(v) == 2 and v[1] == "kB":
                out[k] = int(v[0])
            elif k == "Threads":
                out[k] = int(v[0])
    return out


def stable_rss(pid, timeout=5.0, interval=0.1):
    """Reads /proc/PID/status until VmRSS stops changing (three equal reads)
    or timeout passes; returns the last status dict."""
    deadline = time.monotonic() + timeout
    last, same = None, 0
    while True:
        st = proc_status(pid)
        same = same + 1 if last is not None and st["VmRSS"] == last else 0
        last = st["VmRSS"]
        if same >= 2 or time.monotonic() >= deadline:
            return st
        time.sleep(interval)


class SmtpSink:
    """Postfix's smtp-sink discarding every message, able to hold
    max_sessions sessions at once (-m) and to keep idle ones (-t)."""

    def __init__(self, work, max_sessions=1000, idle_timeout=600):
        self.port = free_port()
        self.log_path = os.path.join(work, "smtp-sink.%d.log" % self.port)
        cmd = [SMTP_SINK]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root otherwise
        # The last argument is the listen backlog; -m bounds simultaneous
        # sessions (default 256: excess connections would wait unserved in
        # the kernel's queue and look like a hung backend).
        cmd += ["-m", str(max_sessions + 64), "-t", str(idle_timeout),
                "%s:%d" % (HOST, self.port), str(min(max_sessions + 64, 4096))]
        if not os.access(SMTP_SINK, os.X_OK):
            raise BenchError("%s not found (Postfix's smtp-sink is the backend)" % SMTP_SINK)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log)
        if not wait_until(lambda: self.proc.poll() is not None or is_listening(self.port), 10):
            self.stop()
            raise BenchError("smtp-sink did not listen within 10 s")
        if self.proc.poll() is not None:
            raise BenchError("smtp-sink exited: %s" % open(self.log_path).read())

    def cpu(self):
        return proc_cpu_seconds(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def _cfg(v, ind=0):
    pad = "  " * ind
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(v, dict):
        return "{\n" + "".join("%s  %s = %s;\n" % (pad, k, _cfg(x, ind + 1))
                               for k, x in v.items()) + pad + "}"
    if isinstance(v, list):
        return "(\n" + ",\n".join(pad + "  " + _cfg(x, ind + 1) for x in v) + "\n" + pad + ")"
    raise TypeError(repr(v))


class Proxy:
    """The daemon: one inbound STARTTLS listener on 127.0.0.1 in front of
    backend_port, log_level "warn", stderr to a file.

    outbound = policy ("none", "opportunistic", "required", "verify") makes
    it one outbound listener instead, with the fixed destination
    127.0.0.1:backend_port: plaintext from the client, STARTTLS to the
    destination as the policy says. It presents no client certificate (cert
    and key are unused); ca_file, if given, is its tls.ca_file, else the
    daemon's default CA bundle is (loaded at start even without "verify")."""

    def __init__(self, binary, work, backend_port, cert, key, workers=1, max_sessions=1000,
                 idle_timeout=600, log_level="warn", prefix=(), outbound=None, ca_file=None,
                 metrics=False, tls_extra=None):
        self.port = free_port()
        self.config = {
            "workers": workers,
            "log_level": log_level,
            "shutdown_timeout": 2,
        }
        # The counters are kept either way; metrics only adds the HTTP listener.
        self.metrics_port = free_port() if metrics else None
        if metrics:
            self.config["metrics_listen"] = "%s:%d" % (HOST, self.metrics_port)
        if outbound is None:
            self.config["tls"] = {"certificate": cert, "key": key}
            # tls_extra: more keys of the tls block (e.g. ticket_keys).
            self.config["tls"].update(tls_extra or {})
            self.config["inbound"] = [{
                "name": "bench",
                "listen": "%s:%d" % (HOST, self.port),
                "backend": "%s:%d" % (HOST, backend_port),
                "tls_mode": "starttls",
                "max_connections": max(10000, 2 * max_sessions),
                "timeouts": {"connect": 10, "handshake": 30, "idle": idle_timeout},
            }]
        else:
            if ca_file is not None:
                self.config["tls"] = {"ca_file": ca_file}
            self.config["outbound"] = [{
                "name": "bench-out",
                "listen": "%s:%d" % (HOST, self.port),
                "destination": "%s:%d" % (HOST, backend_port),
                "policy": outbound,
                "max_connections": max(10000, 2 * max_sessions),
                "timeouts": {"connect": 10, "handshake": 30, "idle": idle_timeout},
            }]
        tag = "%sw%d.%d" % ("out." if outbound is not None else "", workers, self.port)
        self.config_path = os.path.join(work, "proxy.%s.conf" % tag)
        self.log_path = os.path.join(work, "proxy.%s.stderr" % tag)
        with open(self.config_path, "w") as f:
            f.write("".join("%s = %s;\n" % (k, _cfg(v)) for k, v in self.config.items()))
        self._log = open(self.log_path, "ab")
        # prefix: e.g. a heap profiler (valgrind --tool=massif ...); pid and
        # /proc figures are then the profiler's.
        self.proc = subprocess.Popen(list(prefix) + [binary, "-c", self.config_path],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log)
        self.pid = self.proc.pid
        ok = wait_until(lambda: self.proc.poll() is not None or is_listening(self.port),
                        60 if prefix else 10)
        if self.proc.poll() is not None or not ok:
            self.stop()
            raise BenchError("proxy did not start (exit %s):\n%s" % (self.proc.returncode,
                                                                     self.log()[-4000:]))

    def check_alive(self, what):
        rc = self.proc.poll()
        if rc is not None:
            how = ("killed by signal %d" % -rc) if rc < 0 else ("exit code %d" % rc)
            raise BenchError("proxy died (%s) %s; log tail:\n%s" % (how, what,
                                                                   self.log()[-4000:]))

    def cpu(self):
        return proc_cpu_seconds(self.pid)

    def metrics(self, timeout=10.0):
        """The /metrics samples (needs metrics=True): {'name{labels}': value},
        names without the smtp_tls_proxy_ prefix."""
        with socket.create_connection((HOST, self.metrics_port), timeout=timeout) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n" % HOST.encode())
            data = b""
            while len(data) < 4 << 20:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
        if not head.startswith("HTTP/1.") or head.split()[1] != "200":
            raise BenchError("GET /metrics: %r" % head[:200])
        out = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k.replace("smtp_tls_proxy_", "", 1)] = float(v)
        return out

    def cpu_split(self):
        return proc_cpu_split(self.pid)

    def status(self):
        return proc_status(self.pid)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        """SIGTERM; SIGKILL after shutdown_timeout + 5 s. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=7)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                print("# WARNING: proxy ignored SIGTERM for 7 s and was killed")
        self._log.close()
        return self.proc.returncode

    def report_log(self, label):
        """Prints the proxy's warnings (log_level warn: anything is news)."""
        lines = [l for l in self.log().splitlines() if l.strip()]
        if lines:
            print("# proxy log (%s): %d line(s) at level warn or above; first ones:" %
                  (label, len(lines)))
            for l in lines[:8]:
                print("#   " + l[:300])


# ---------------------------------------------------------------------------
# A blocking SMTP client


def make_message(size, tag="bench"):
    """About `size` bytes of headers and body in 76-column lines, CRLF
    terminated, no line starting with "." (so no dot-stuffing is needed)."""
    head = ("From: <bench@client.test>\r\nTo: <sink@mx.test>\r\n"
            "Subject: %s\r\nMessage-ID: <%s@client.test>\r\n\r\n" % (tag, tag)).encode()
    line = (b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijkl"
            b"\r\n")
    body = line * max(0, (size - len(head)) // len(line) + 1)
    return (head + body)[:max(size, len(head))].rstrip(b"\r\n") + b"\r\n"


class Smtp:
    """One SMTP session over a socket (plain, then TLS after starttls())."""

    def __init__(self, port, timeout=30.0, nodelay=False):
        self.timeout = timeout
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        """One (possibly multi-line) reply: (code, [lines])."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise BenchError("connection closed by the proxy; after %r" % (lines,))
                self.buf += data
                if len(self.buf) > 65536:
                    raise BenchError("reply line too long: %r" % self.buf[:200])
            line, _, self.buf = self.buf.partition(b"\n")
            line = line.rstrip(b"\r").decode("latin-1")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                break
        try:
            return int(lines[-1][:3]), lines
        except ValueError:
            raise BenchError("malformed reply %r" % (lines,))

    def expect(self, code, what):
        c, lines = self.reply()
        if c != code:
            raise BenchError("%s: expected %d, got %r" % (what, code, lines))
        return lines

    def cmd(self, line, code):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.expect(code, line)

    def greeting(self):
        return self.expect(220, "greeting")

    def ehlo(self, name="client.test"):
        return self.cmd("EHLO " + name, 250)

    def starttls(self, ctx):
        lines = self.ehlo()
        if not any(l[4:].upper().startswith("STARTTLS") for l in lines):
            raise BenchError("EHLO reply does not offer STARTTLS: %r" % (lines,))
        self.cmd("STARTTLS", 220)
        if self.buf:
            raise BenchError("bytes after the STARTTLS reply: %r" % self.buf)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mx.test")
        return self.sock.version()

    def send_mail(self, message):
        self.cmd("MAIL FROM:<bench@client.test>", 250)
        self.cmd("RCPT TO:<sink@mx.test>", 250)
        self.cmd("DATA", 354)
        self.sock.sendall(message)
        self.sock.sendall(b".\r\n")
        self.expect(250, "end of DATA")

    def quit(self):
        self.cmd("QUIT", 221)
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def full_session(port, ctx, message, nodelay=False):
    """connect, EHLO, [STARTTLS, handshake, EHLO,] MAIL, RCPT, DATA, QUIT.
    ctx None = plaintext. Returns the negotiated TLS version or None."""
    s = Smtp(port, nodelay=nodelay)
    try:
        s.greeting()
        version = None
        if ctx is not None:
            version = s.starttls(ctx)
        s.ehlo()
        s.send_mail(message)
        s.quit()
        return version
    finally:
        s.close()


# ---------------------------------------------------------------------------
# Command line


def common_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--proxy", help="path of smtp-tls-proxy (default: runfiles or bazel-bin)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (configs, logs)")
    return p


def header(title, binary):
    print("# %s" % title)
    print("# proxy: %s" % binary)
    try:
        v = subprocess.run([binary, "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=10).stdout.decode("utf-8", "replace").strip()
        print("# %s" % " | ".join(v.splitlines()))
    except (OSError, subprocess.SubprocessError):
        pass
    print("# host: %d CPUs, python %s, %s" % (os.cpu_count(), sys.version.split()[0],
                                             ssl.OPENSSL_VERSION))
