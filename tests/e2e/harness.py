"""End-to-end harness: the real smtp-tls-proxy daemon on 127.0.0.1 between
scripted peers and real tools.

Pieces (all bounded in time; every socket operation has a timeout):
  pki()               a throw-away CA and an ECDSA P-256 server certificate for
                      "mx.test" (SAN DNS:mx.test, DNS:localhost, IP:127.0.0.1),
                      made once per test process with the openssl CLI.
  write_config(d)     a Python dict as libconfig text.
  Proxy / start_proxy the daemon with a generated config; stderr goes to a
                      file so tests can assert on log lines ("end=quit").
  ScriptedBackend     a threaded SMTP server that records every byte it
                      receives and every message it accepts, and can be told
                      to misbehave (close, hang, custom replies).
  SmtpSink            Postfix's smtp-sink dumping each message to a directory.
  Client              a raw line-level SMTP client with optional STARTTLS.
  ProxyTestCase       unittest base: isolated backend + proxy per test, logs
                      printed when a test fails.
"""

import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

CRLF = b"\r\n"
HOST = "127.0.0.1"

# ---------------------------------------------------------------------------
# Paths


def tmp_root():
    """A writable scratch directory: $TEST_TMPDIR under Bazel."""
    d = os.environ.get("TEST_TMPDIR")
    if not d:
        d = os.path.join(tempfile.gettempdir(), "smtp-tls-proxy-e2e-%d" % os.getpid())
    os.makedirs(d, exist_ok=True)
    return d


_tmp_counter = [0]
_tmp_lock = threading.Lock()


def new_tmpdir(prefix):
    with _tmp_lock:
        _tmp_counter[0] += 1
        n = _tmp_counter[0]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", prefix)[-80:]
    d = os.path.join(tmp_root(), "%s.%d" % (safe, n))
    os.makedirs(d, exist_ok=True)
    return d


def proxy_binary():
    """The daemon from runfiles, or $SMTP_TLS_PROXY_BIN for manual runs."""
    env = os.environ.get("SMTP_TLS_PROXY_BIN")
    if env:
        return env
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        p = os.path.join(srcdir, "smtp_tls_proxy/proxy/smtp-tls-proxy")
        if os.path.exists(p):
            return p
    raise RuntimeError("smtp-tls-proxy binary not found: run under bazel test "
                       "or set SMTP_TLS_PROXY_BIN")


# ---------------------------------------------------------------------------
# Certificates


class Pki:
    def __init__(self, d):
        self.dir = d
        self.ca = os.path.join(d, "ca.pem")
        self.ca_key = os.path.join(d, "ca.key")
        self.cert = os.path.join(d, "server.pem")
        self.key = os.path.join(d, "server.key")

    def client_context(self, min_version=None, max_version=None, verify=True):
        """A client context that trusts only the test CA and checks the name."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            ctx.load_verify_locations(self.ca)
            ctx.check_hostname = True
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if min_version is not None:
            ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
        return ctx


def server_context(p):
    """A server context with p's certificate (for scripted TLS destinations)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(p.cert, p.key)
    return ctx


def _run(cmd, cwd=None, timeout=30):
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                   r.stderr.decode("utf-8", "replace")))
    return r


def make_pki(d, cn="mx.test"):
    """Generates a CA and a server certificate for cn into directory d."""
    os.makedirs(d, exist_ok=True)
    p = Pki(d)
    _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
          "ec_paramgen_curve:P-256", "-nodes", "-keyout", p.ca_key, "-out", p.ca,
          "-subj", "/CN=smtp-tls-proxy e2e test CA", "-days", "3",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    csr = os.path.join(d, "server.csr")
    _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
          "ec_paramgen_curve:P-256", "-nodes", "-keyout", p.key, "-out", csr,
          "-subj", "/CN=" + cn])
    ext = os.path.join(d, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n"
                "basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n" % cn)
    _run(["openssl", "x509", "-req", "-in", csr, "-CA", p.ca, "-CAkey", p.ca_key,
          "-CAcreateserial", "-out", p.cert, "-days", "3", "-sha256",
          "-extfile", ext])
    return p


_pki = [None]
_pki_lock = threading.Lock()


def pki():
    """The per-process test PKI, generated on first use."""
    with _pki_lock:
        if _pki[0] is None:
            _pki[0] = make_pki(os.path.join(tmp_root(), "pki"))
        return _pki[0]


# ---------------------------------------------------------------------------
# Ports


def free_port():
    """A port that was free a moment ago (the proxy's listener must be given
    a number; the scripted backend binds port 0 itself)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def is_listening(port):
    """True if some socket is in LISTEN state on port (from /proc/net/tcp*), so
    readiness is checked without opening a session on the proxy."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) < 4:
                        continue
                    local, state = parts[1], parts[3]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            continue
    return False


def wait_until(pred, timeout, interval=0.02):
    """Polls pred() until it is true or timeout seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Configuration


def _cfg_value(v, indent):
    pad = "  " * indent
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, dict):
        inner = "".join("%s  %s = %s;\n" % (pad, k, _cfg_value(x, indent + 1))
                        for k, x in v.items())
        return "{\n" + inner + pad + "}"
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, dict) for x in v) and v:
            return "(\n" + ",\n".join(pad + "  " + _cfg_value(x, indent + 1)
                                      for x in v) + "\n" + pad + ")"
        return "[ " + ", ".join(_cfg_value(x, indent) for x in v) + " ]"
    raise TypeError("cannot write %r as libconfig" % (v,))


class Raw:
    """Verbatim libconfig text for a value (to write deliberately bad configs)."""

    def __init__(self, text):
        self.text = text


def write_config(cfg):
    """A dict as libconfig text: dicts are groups, lists of dicts are lists
    "( {...}, ... )", other lists are arrays "[ ... ]"."""
    return "".join("%s = %s;\n" % (k, _cfg_value(v, 0)) for k, v in cfg.items())


def inbound_listener(backend_port, listen_port=None, name="mx", **overrides):
    """One inbound listener entry with short test timeouts."""
    d = {
        "name": name,
        "listen": "%s:%d" % (HOST, listen_port or free_port()),
        "backend": "%s:%d" % (HOST, backend_port),
        "tls_mode": "starttls",
        "require_tls": False,
        "bare_newline": "normalize",
        "max_connections": 10000,
        "timeouts": {"connect": 5, "handshake": 5, "idle": 10},
    }
    timeouts = overrides.pop("timeouts", None)
    if timeouts:
        d["timeouts"] = dict(d["timeouts"], **timeouts)
    d.update(overrides)
    return d


def base_config(listeners, pki_=None, **top):
    p = pki_ or pki()
    cfg = {
        "log_level": "debug",
        "shutdown_timeout": 2,
        "tls": {"certificate": p.cert, "key": p.key},
        "inbound": listeners,
    }
    cfg.update(top)
    return cfg


def listen_port_of(listener):
    return int(listener["listen"].rsplit(":", 1)[1])


# ---------------------------------------------------------------------------
# Log lines

_KV = re.compile(r'([A-Za-z_][A-Za-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_kv(line):
    out = {}
    for k, v in _KV.findall(line):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r'\\(.)', r'\1', v[1:-1])
        out[k] = v
    return out


# ---------------------------------------------------------------------------
# The daemon


class Proxy:
    """The real daemon as a child process, stderr captured to a file."""

    START_TIMEOUT = 10.0

    def __init__(self, config, name="proxy", args=None):
        self.dir = new_tmpdir(name)
        self.config = config
        self.config_path = os.path.join(self.dir, "proxy.conf")
        self.log_path = os.path.join(self.dir, "proxy.stderr")
        self.out_path = os.path.join(self.dir, "proxy.stdout")
        self.args = list(args or [])
        self.wrapper = []  # a command the binary runs under, e.g. unshare
        self.proc = None
        self.returncode = None
        self.write()

    def write(self, config=None):
        if config is not None:
            self.config = config
        text = self.config if isinstance(self.config, str) else write_config(self.config)
        with open(self.config_path, "w") as f:
            f.write(text)

    def write_text(self, text):
        """Overwrites the config file (e.g. with garbage) but keeps self.config."""
        with open(self.config_path, "w") as f:
            f.write(text)

    def listen_ports(self):
        if isinstance(self.config, str):
            return []
        ports = []
        for key in ("inbound", "outbound"):
            for l in self.config.get(key, []):
                ports.append(listen_port_of(l))
        return ports

    @property
    def port(self):
        return self.listen_ports()[0]

    def start(self):
        cmd = self.wrapper + [proxy_binary(), "-c", self.config_path] + self.args
        self._err = open(self.log_path, "ab")
        self._out = open(self.out_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, close_fds=True)
        ports = self.listen_ports()
        ok = wait_until(lambda: self.proc.poll() is not None or
                        all(is_listening(p) for p in ports), self.START_TIMEOUT)
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            raise RuntimeError("proxy exited with %d during start-up:\n%s" %
                               (self.proc.returncode, self.log()[-4000:]))
        if not all(is_listening(p) for p in ports):
            self.kill()
            raise RuntimeError("proxy did not listen on %s within %.0f s:\n%s" %
                               (ports, self.START_TIMEOUT, self.log()[-4000:]))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code or None if still running."""
        if self.proc is None:
            return self.returncode
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=None):
        """SIGTERM, then waits (shutdown_timeout + 5 s by default); SIGKILL if
        it is still running. Returns the exit code (negative for a signal)."""
        if self.proc is None:
            return self.returncode
        if timeout is None:
            st = 2
            if isinstance(self.config, dict):
                st = int(self.config.get("shutdown_timeout", 30))
            timeout = st + 5
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
            rc = self.returncode
            self.stuck = True
        self._close_files()
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            self.returncode = self.proc.returncode
        self._close_files()

    def _close_files(self):
        for f in (getattr(self, "_err", None), getattr(self, "_out", None)):
            if f is not None and not f.closed:
                f.close()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def session_ends(self):
        """Parsed session-end lines: those with both session= and end=."""
        out = []
        for line in self.log().splitlines():
            if "session=" in line and " end=" in line:
                kv = parse_kv(line)
                kv["_line"] = line
                out.append(kv)
        return out

    def wait_session_end(self, client_port=None, timeout=5.0):
        """The session-end line for the session from client_port (or the first
        one); None if none appears in time."""
        def find():
            for kv in self.session_ends():
                if client_port is None or kv.get("client", "").endswith(":%d" % client_port):
                    return kv
            return None
        return wait_until(find, timeout, 0.05)

    def wait_log(self, regex, timeout=5.0):
        rx = re.compile(regex)
        return wait_until(lambda: rx.search(self.log()), timeout, 0.05)


def start_proxy(config, name="proxy", args=None):
    return Proxy(config, name=name, args=args).start()


# ---------------------------------------------------------------------------
# A line-level SMTP client


class ConnectionClosed(Exception):
    pass


class Reply:
    def __init__(self, lines, raw):
        self.lines = lines          # text lines without CRLF
        self.raw = raw              # bytes exactly as received
        self.code = int(lines[-1][:3]) if lines and lines[-1][:3].isdigit() else -1

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enhanced(self):
        """The enhanced status code of the first line, e.g. "5.5.1", or ""."""
        m = re.match(r"^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b", self.lines[0]) if self.lines else None
        return m.group(1) if m else ""

    def keywords(self):
        """EHLO keywords (upper case first word of each line after the first)."""
        return [l[4:].split(" ")[0].upper() for l in self.lines[1:]]

    def __repr__(self):
        return "Reply(%r)" % (self.raw,)


class Client:
    """A raw SMTP client: exact bytes out, replies parsed, timeouts everywhere."""

    def __init__(self, port, host=HOST, timeout=5.0, connect=True):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.buf = b""
        self.received = b""     # every byte received (plaintext after TLS)
        self.sent = b""
        self.sock = None
        self.tls = False
        if connect:
            self.sock = socket.create_connection((host, port), timeout=timeout)

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)
        self.sent += data

    def _recv(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for data; have %r" % (self.buf,))
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionClosed("connection closed; unparsed %r" % (self.buf,))
        self.received += data
        self.buf += data

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise AssertionError("reply line over 1 MiB")
            self._recv(deadline)
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_reply(self, timeout=None):
        """One complete (possibly multi-line) reply. Raises ConnectionClosed or
        socket.timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        lines, raw = [], b""
        for _ in range(10000):
            line = self.read_line(max(0.001, deadline - time.monotonic()))
            raw += line
            text = line.rstrip(b"\r\n").decode("utf-8", "replace")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return Reply(lines, raw)
        raise AssertionError("reply with more than 10000 lines")

    def cmd(self, line, timeout=None):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + CRLF)
        return self.read_reply(timeout)

    def greeting(self):
        return self.read_reply()

    def ehlo(self, name="client.test"):
        return self.cmd("EHLO " + name)

    def starttls(self, ctx=None, server_hostname="mx.test", expect_ok=True):
        """STARTTLS and the handshake; returns the 220 reply."""
        r = self.cmd("STARTTLS")
        if expect_ok and r.code != 220:
            raise AssertionError("STARTTLS refused: %r" % (r,))
        if r.code == 220:
            self.wrap(ctx, server_hostname)
        return r

    def wrap(self, ctx=None, server_hostname="mx.test"):
        if self.buf:
            raise AssertionError("plaintext after 220 before TLS: %r" % (self.buf,))
        ctx = ctx or pki().client_context()
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.tls = True

    def send_message(self, mail_from, rcpts, content, pipelining=False):
        """MAIL/RCPT/DATA with dot-stuffing; content is bytes with CRLF line
        ends. Returns the list of replies (MAIL, RCPTs, DATA, end-of-data)."""
        replies = []
        if pipelining:
            self.send(b"".join([b"MAIL FROM:<%s>\r\n" % mail_from.encode()] +
                               [b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts] +
                               [b"DATA\r\n"]))
            for _ in range(len(rcpts) + 2):
                replies.append(self.read_reply())
        else:
            replies.append(self.cmd("MAIL FROM:<%s>" % mail_from))
            for r in rcpts:
                replies.append(self.cmd("RCPT TO:<%s>" % r))
            replies.append(self.cmd("DATA"))
        if replies[-1].code != 354:
            return replies
        self.send(dot_stuff(content) + b".\r\n")
        replies.append(self.read_reply(timeout=max(self.timeout, 30)))
        return replies

    def expect_closed(self, timeout=5.0):
        """Reads until EOF. Returns the bytes that arrived first, or raises
        AssertionError if the peer keeps the connection open."""
        deadline = time.monotonic() + timeout
        extra = self.buf
        self.buf = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("connection still open after %.1f s (got %r)"
                                     % (timeout, extra))
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return extra
            except ssl.SSLError:
                return extra
            if not data:
                return extra
            self.received += data
            extra += data

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def abort(self):
        """Closes with RST (SO_LINGER 0), as a crashed peer would."""
        if self.sock is None:
            return
        raw = self.sock
        try:
            import struct
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()


def dot_stuff(content):
    """RFC 5321 4.5.2 transparency for content with CRLF line ends; ensures a
    final CRLF. The caller appends ".\r\n"."""
    if content and not content.endswith(CRLF):
        content += CRLF
    out = re.sub(rb"(^|\r\n)\.", rb"\1..", content)
    return out


def unstuff_strict(content):
    lines = content.split(CRLF)
    return CRLF.join(l[1:] if l.startswith(b".") else l for l in lines)


# ---------------------------------------------------------------------------
# Scripted SMTP backend

DEFAULT_EHLO = ["backend.test", "PIPELINING", "SIZE 52428800", "VRFY", "ETRN",
                "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"]


class Message:
    def __init__(self, conn_index, mail_from, rcpts, data, kind, raw):
        self.conn_index = conn_index
        self.mail_from = mail_from    # bytes: the MAIL argument line
        self.rcpts = rcpts            # list of RCPT lines
        self.data = data              # content, dot-unstuffed, incl. final CRLF
        self.kind = kind              # "DATA" or "BDAT"
        self.raw = raw                # content as on the wire (stuffed)

    def __repr__(self):
        return "Message(%s, %r, %d octets)" % (self.kind, self.mail_from, len(self.data))


class BackendConn:
    def __init__(self, index, sock, peer):
        self.index = index
        self.sock = sock
        self.peer = peer
        self.raw = bytearray()
        self.commands = []       # command lines (bytes, without line end)
        self.proxy_header = None
        self.tls_version = None  # after a STARTTLS handshake
        self.tls_at = None       # len(commands) when TLS started
        self.tls_error = None
        self.plain_after_starttls = b""  # bytes that followed STARTTLS in plaintext
        self.closed = threading.Event()
        self.auth_pending = False


class ScriptedBackend:
    """A threaded SMTP server on 127.0.0.1 that records all input.

    ehlo      EHLO keyword lines (first = domain) or None.
    greeting  bytes sent on connect.
    actions   {VERB: action} where VERB is a command verb, "CONNECT" (before
              the greeting) or "." (end of data). action is "close" (close
              without replying), "hang" (never reply again), bytes/str (the
              reply, CRLF added if missing) or a callable(conn, line) that
              returns one of those or None for the default.
    lenient   also take bare LF and bare CR as line ends, in commands and for
              the end-of-data dot: the kind of backend SMTP smuggling abuses.
    data_close_after  close the connection after that many octets of DATA content.
    recv_size, read_delay  read at most recv_size octets per read and sleep
              read_delay seconds after each: a slow backend, for backpressure.
    proxy_header  expect a PROXY v1/v2 header before greeting (as Postfix's
              smtpd_upstream_proxy_protocol); kept in conn.proxy_header.
    tls_ctx   a server SSLContext: STARTTLS is then answered with 220 and a
              handshake (advertise it by listing "STARTTLS" in ehlo; it is
              left out of the EHLO reply once TLS is on). The action
              "tls_fail" for STARTTLS answers 220 and closes;
              ("tls_inject", extra) sends 220 plus extra bytes, then TLS.
    reply_chunk, reply_delay  send replies (and the greeting) in pieces of
              reply_chunk octets, reply_delay seconds apart.
    An action ("reply_close", reply) sends reply, then closes.
    """

    def __init__(self, ehlo=None, greeting=b"220 backend.test ESMTP\r\n", actions=None,
                 lenient=False, data_close_after=None, name="backend", recv_size=65536,
                 read_delay=0.0, proxy_header=False, tls_ctx=None, reply_chunk=None,
                 reply_delay=0.0):
        self.ehlo_lines = list(DEFAULT_EHLO if ehlo is None else ehlo)
        self.greeting = greeting
        self.actions = dict(actions or {})
        self.lenient = lenient
        self.data_close_after = data_close_after
        self.name = name
        self.recv_size = recv_size
        self.read_delay = read_delay
        self.proxy_header = proxy_header
        self.tls_ctx = tls_ctx
        self.reply_chunk = reply_chunk
        self.reply_delay = reply_delay
        self.conns = []
        self.messages = []
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._threads = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(1024)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.errors = []

    @property
    def addr(self):
        return "%s:%d" % (HOST, self.port)

    def start(self):
        t = threading.Thread(target=self._accept_loop, name="backend-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.cond:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.sock.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)

    # -- inspection --------------------------------------------------------

    def raw_all(self):
        with self.cond:
            return b"".join(bytes(c.raw) for c in self.conns)

    def commands_all(self):
        with self.cond:
            return [l for c in self.conns for l in c.commands]

    def verbs(self):
        return [l.split(b" ")[0].upper() for l in self.commands_all()]

    def wait_for(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred()
                if v:
                    return v
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return v
                self.cond.wait(min(remaining, 0.1))

    def wait_messages(self, n, timeout=10.0):
        return self.wait_for(lambda: len(self.messages) >= n, timeout)

    def wait_conns(self, n, timeout=5.0):
        return self.wait_for(lambda: len(self.conns) >= n, timeout)

    def wait_all_closed(self, timeout=5.0):
        return self.wait_for(lambda: all(c.closed.is_set() for c in self.conns), timeout)

    def wait_raw(self, needle, timeout=5.0):
        return self.wait_for(lambda: needle in b"".join(bytes(c.raw) for c in self.conns),
                             timeout)

    # -- server ------------------------------------------------------------

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, peer = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.cond:
                conn = BackendConn(len(self.conns), s, peer)
                self.conns.append(conn)
                self.cond.notify_all()
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name="backend-conn-%d" % conn.index)
            t.start()
            self._threads.append(t)

    def _action(self, conn, verb, line):
        a = self.actions.get(verb)
        if callable(a):
            a = a(conn, line)
        if isinstance(a, str) and a not in ("close", "hang", "tls_fail"):
            a = a.encode()
        if isinstance(a, bytes) and not a.endswith(b"\n"):
            a += CRLF
        return a

    def _serve(self, conn):
        try:
            self._session(conn)
        except (OSError, _Closed):
            pass
        except Exception as e:  # recorded, so a harness bug shows up in tests
            self.errors.append(repr(e))
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass
            with self.cond:
                conn.closed.set()
                self.cond.notify_all()

    def _session(self, conn):
        s = conn.sock
        s.settimeout(0.5)
        st = _ConnState(self, conn)
        if self.proxy_header:
            st.buf = self._read_proxy_header(conn)
        a = self._action(conn, "CONNECT", b"")
        if a == "close":
            return
        if a == "hang":
            st.hung = True
        elif isinstance(a, bytes):
            st.reply(a)
        else:
            st.reply(self.greeting)
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            s = conn.sock
            try:
                data = s.recv(self.recv_size)
            except socket.timeout:
                continue
            if not data:
                return
            if self.read_delay:
                time.sleep(self.read_delay)
            with self.cond:
                conn.raw += data
                self.cond.notify_all()
            st.feed(data)
            if st.closing:
                return
            if st.want_tls:
                s = self._start_tls(conn, st)
                if s is None:
                    return


    def _start_tls(self, conn, st):
        """Server side of STARTTLS after the 220 went out; returns the new
        socket or None if the handshake failed."""
        st.want_tls = False
        conn.plain_after_starttls = st.buf
        st.buf = b""
        st._reset()
        try:
            conn.sock.settimeout(5)
            s = self.tls_ctx.wrap_socket(conn.sock, server_side=True)
        except (OSError, ssl.SSLError) as e:
            conn.tls_error = repr(e)
            return None
        s.settimeout(0.5)
        conn.sock = s
        conn.tls_version = s.version()
        conn.tls_at = len(conn.commands)
        st.tls = True
        return s

    def _read_proxy_header(self, conn):
        """Reads a PROXY v1 line or v2 header; returns the bytes after it."""
        buf = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self._stop.is_set():
            if buf.startswith(b"PROXY ") and b"\r\n" in buf:
                i = buf.index(b"\r\n") + 2
                conn.proxy_header = buf[:i]
                return buf[i:]
            if buf.startswith(b"\r\n\r\n\x00\r\nQUIT\n") and len(buf) >= 16:
                n = 16 + int.from_bytes(buf[14:16], "big")
                if len(buf) >= n:
                    conn.proxy_header = buf[:n]
                    return buf[n:]
            if len(buf) > 600:
                break
            try:
                data = conn.sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                break
            with self.cond:
                conn.raw += data
                self.cond.notify_all()
            buf += data
        raise _Closed()


class _Closed(Exception):
    pass


class _ConnState:
    """Per-connection SMTP state of the scripted backend."""

    def __init__(self, backend, conn):
        self.b = backend
        self.conn = conn
        self.buf = b""
        self.mode = "cmd"          # cmd | data | bdat
        self.hung = False
        self.closing = False
        self.want_tls = False
        self.tls = False
        self.mail = None
        self.rcpts = []
        self.data_scan = 0
        self.data_len = 0
        self.bdat_need = 0
        self.bdat_last = False
        self.bdat_buf = b""

    def reply(self, data):
        if self.hung or self.closing:
            return
        if isinstance(data, str):
            data = data.encode()
        self.conn.sock.settimeout(5)
        n = self.b.reply_chunk
        if n:
            for i in range(0, len(data), n):
                self.conn.sock.sendall(data[i:i + n])
                time.sleep(self.b.reply_delay)
        else:
            self.conn.sock.sendall(data)
        self.conn.sock.settimeout(0.5)

    def feed(self, data):
        self.buf += data
        for _ in range(1000000):
            if self.closing:
                return
            if self.mode == "cmd":
                if not self._one_command():
                    return
            elif self.mode == "data":
                if not self._data():
                    return
            elif self.mode == "bdat":
                if not self._bdat():
                    return

    # commands

    def _next_line(self):
        if self.b.lenient:
            m = re.search(rb"\r\n|\n|\r(?=[^\n])", self.buf)
            if not m:
                return None
            line, self.buf = self.buf[:m.start()], self.buf[m.end():]
            return line
        i = self.buf.find(CRLF)
        if i < 0:
            return None
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line

    def _one_command(self):
        line = self._next_line()
        if line is None:
            return False
        with self.b.cond:
            self.conn.commands.append(line)
            self.b.cond.notify_all()
        if self.conn.auth_pending:
            self.conn.auth_pending = False
            self.reply(b"501 5.7.0 Authentication aborted\r\n" if line == b"*"
                       else b"235 2.7.0 Authentication successful\r\n")
            return True
        verb = line.split(b" ", 1)[0].upper().decode("latin-1")
        a = self.b._action(self.conn, verb, line)
        if a == "close":
            self._close()
            return False
        if a == "hang":
            self.hung = True
            return True
        if a == "tls_fail":
            self.reply(b"220 2.0.0 Ready to start TLS\r\n")
            self._close()
            return False
        if isinstance(a, tuple) and a[0] == "tls_inject":
            self.reply(b"220 2.0.0 Ready to start TLS\r\n" + a[1])
            self.want_tls = True
            return False
        if isinstance(a, tuple) and a[0] == "reply_close":
            self.reply(a[1])
            self._close()
            return False
        if isinstance(a, bytes):
            # A scripted reply replaces the default, state changes included.
            self.reply(a)
        else:
            default = self._default(verb, line)
            if default is not None:
                self.reply(default)
        if verb == "QUIT":
            self._close()
            return False
        if self.want_tls:
            return False
        return True

    def _default(self, verb, line):
        arg = line[len(verb) + 1:] if len(line) > len(verb) else b""
        if verb == "EHLO":
            self._reset()
            ls = self.b.ehlo_lines
            if self.tls:
                ls = [k for k in ls if k.upper() != "STARTTLS"]
            out = b""
            for i, k in enumerate(ls):
                sep = b" " if i == len(ls) - 1 else b"-"
                out += b"250" + sep + k.encode() + CRLF
            return out
        if verb == "HELO":
            self._reset()
            return b"250 backend.test\r\n"
        if verb == "MAIL":
            if self.mail is not None:
                return b"503 5.5.1 Error: nested MAIL command\r\n"
            self.mail = line
            return b"250 2.1.0 Ok\r\n"
        if verb == "RCPT":
            if self.mail is None:
                return b"503 5.5.1 Error: need MAIL command\r\n"
            self.rcpts.append(line)
            return b"250 2.1.5 Ok\r\n"
        if verb == "DATA":
            if not self.rcpts:
                return b"554 5.5.1 Error: no valid recipients\r\n"
            self.mode = "data"
            self.data_scan = 0
            self.data_len = 0
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == "BDAT":
            parts = line.split()
            try:
                n = int(parts[1])
            except (IndexError, ValueError):
                return b"501 5.5.4 Syntax: BDAT count [LAST]\r\n"
            self.mode = "bdat"
            self.bdat_need = n
            self.bdat_last = len(parts) > 2 and parts[2].upper() == b"LAST"
            return None  # replied when the chunk is complete
        if verb in ("RSET",):
            self._reset()
            return b"250 2.0.0 Ok\r\n"
        if verb == "NOOP":
            return b"250 2.0.0 Ok\r\n"
        if verb == "QUIT":
            return b"221 2.0.0 Bye\r\n"
        if verb == "VRFY":
            return b"252 2.0.0 " + arg + CRLF
        if verb == "HELP":
            return b"214 2.0.0 see RFC 5321\r\n"
        if verb == "STARTTLS":
            if self.b.tls_ctx is None:
                return b"454 4.7.0 backend has no TLS\r\n"
            if self.tls:
                return b"503 5.5.1 Error: TLS already active\r\n"
            self.want_tls = True
            return b"220 2.0.0 Ready to start TLS\r\n"
        if verb == "AUTH":
            if len(line.split()) >= 3:
                return b"235 2.7.0 Authentication successful\r\n"
            self.conn.auth_pending = True
            return b"334 \r\n"
        if verb == "XCLIENT":
            return b"220 backend.test ESMTP\r\n"
        if verb == "XFORWARD":
            return b"250 2.0.0 Ok\r\n"
        if verb == "ETRN":
            return b"250 2.0.0 Queuing started\r\n"
        if verb == "":
            return b"500 5.5.2 Error: bad syntax\r\n"
        return b"502 5.5.2 Error: command not recognized\r\n"

    def _reset(self):
        self.mail = None
        self.rcpts = []
        self.bdat_buf = b""

    def _close(self):
        self.closing = True
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # DATA

    _END_STRICT = re.compile(rb"(?:\A|\r\n)\.\r\n")
    _END_LENIENT = re.compile(rb"(?:\A|\r\n|\n|\r)\.(?:\r\n|\n|\r(?=[^\n]))")

    def _data(self):
        limit = self.b.data_close_after
        if limit is not None and len(self.buf) >= limit:
            self._close()
            return False
        rx = self._END_LENIENT if self.b.lenient else self._END_STRICT
        m = rx.search(self.buf, max(0, self.data_scan - 4))
        if not m:
            self.data_scan = len(self.buf)
            return False
        # Content ends with the line end that precedes the dot.
        end = m.start() + len(re.match(rb"\A(\r\n|\n|\r)?", self.buf[m.start():]).group(0))
        raw, self.buf = self.buf[:end], self.buf[m.end():]
        self.mode = "cmd"
        if self.b.lenient:
            parts = re.split(rb"(\r\n|\n|\r)", raw)
            data = b"".join(p[1:] if i % 2 == 0 and p.startswith(b".") else p
                            for i, p in enumerate(parts))
        else:
            data = unstuff_strict(raw)
        self._deliver(data, "DATA", raw)
        return True

    def _deliver(self, data, kind, raw):
        a = self.b._action(self.conn, ".", data)
        msg = Message(self.conn.index, self.mail, list(self.rcpts), data, kind, raw)
        with self.b.cond:
            self.b.messages.append(msg)
            self.b.cond.notify_all()
        self._reset()
        if a == "close":
            self._close()
        elif a == "hang":
            self.hung = True
        elif isinstance(a, bytes):
            self.reply(a)
        else:
            self.reply(b"250 2.0.0 Ok: queued as %d\r\n" % len(self.b.messages))

    # BDAT

    def _bdat(self):
        if len(self.buf) < self.bdat_need:
            return False
        chunk, self.buf = self.buf[:self.bdat_need], self.buf[self.bdat_need:]
        self.bdat_buf += chunk
        self.mode = "cmd"
        if self.bdat_last:
            data = self.bdat_buf
            self._deliver(data, "BDAT", data)
        else:
            self.reply(b"250 2.0.0 %d octets received\r\n" % len(chunk))
        return True


# ---------------------------------------------------------------------------
# Postfix smtp-sink as a real backend

SMTP_SINK = "/usr/sbin/smtp-sink"


class SmtpSink:
    """smtp-sink -d DIR/msg. 127.0.0.1:PORT: each transaction dumped to a file."""

    def __init__(self, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="smtp-sink-", dir=tmp_root())
        self.dump = os.path.join(self.dir, "dump")
        os.makedirs(self.dump)
        self.port = free_port()
        self.extra_args = list(extra_args)
        self.proc = None

    @staticmethod
    def available():
        return os.access(SMTP_SINK, os.X_OK)

    def start(self):
        cmd = [SMTP_SINK]
        if os.geteuid() == 0:
            # smtp-sink insists on -u when run as root. Staying root keeps it
            # working inside Bazel's sandbox, whose user namespace maps no
            # other user (setgid to nobody fails there).
            cmd += ["-u", pwd.getpwuid(0).pw_name]
        cmd += self.extra_args + ["-d", os.path.join(self.dump, "msg."),
                                  "%s:%d" % (HOST, self.port), "100"]
        self.log_path = os.path.join(self.dir, "smtp-sink.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log)
        if not wait_until(lambda: self.proc.poll() is not None or is_listening(self.port), 10):
            self.stop()
            raise RuntimeError("smtp-sink did not start")
        # A probe session: smtp-sink drops privileges only when the first
        # client arrives, and dies then if it cannot (e.g. in a sandbox).
        greeting = b""
        try:
            with socket.create_connection((HOST, self.port), timeout=5) as s:
                s.settimeout(5)
                greeting = s.recv(512)
                s.sendall(b"QUIT\r\n")
                s.recv(512)
        except OSError:
            pass
        if not greeting.startswith(b"220") or self.proc.poll() is not None:
            self.stop()
            with open(self.log_path, "rb") as f:
                log = f.read().decode("utf-8", "replace")
            raise RuntimeError("smtp-sink is not usable here (greeting %r): %s" % (greeting, log))
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None):
            self._log.close()

    def messages(self):
        out = []
        try:
            names = sorted(os.listdir(self.dump))
        except OSError:
            return out
        for n in names:
            try:
                with open(os.path.join(self.dump, n), "rb") as f:
                    out.append(f.read())
            except OSError:
                pass
        return out

    def wait_message_containing(self, needle, timeout=10.0):
        if isinstance(needle, str):
            needle = needle.encode()
        return wait_until(lambda: [m for m in self.messages() if needle in m], timeout, 0.05)


# ---------------------------------------------------------------------------
# unittest base


class ProxyTestCase(unittest.TestCase):
    """Each test builds its own backend and proxy with start(); everything is
    torn down by cleanups. On failure the proxy log is printed."""

    maxDiff = 4000

    def setUp(self):
        self.pki = pki()
        self._proxies = []
        self._backends = []

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            self._dump_diagnostics()
        return out

    def _dump_diagnostics(self):
        w = sys.stderr.write
        for p in getattr(self, "_proxies", []):
            w("\n----- proxy log (%s), last 6000 chars -----\n" % p.log_path)
            w(p.log()[-6000:])
            w("----- proxy config -----\n")
            try:
                with open(p.config_path) as f:
                    w(f.read())
            except OSError:
                pass
        for path in getattr(self, "extra_logs", []):
            w("----- %s -----\n" % path)
            try:
                with open(path, "rb") as f:
                    w(f.read()[-4000:].decode("utf-8", "replace"))
            except OSError as e:
                w("(%s)\n" % e)
        for b in getattr(self, "_backends", []):
            w("----- backend %s: %d conns, %d messages, errors %r -----\n"
              % (b.name, len(b.conns), len(b.messages), b.errors))
            raw = b.raw_all()
            w(repr(raw[:3000]) + ("...(%d octets)" % len(raw) if len(raw) > 3000 else "") + "\n")

    def backend(self, **kw):
        b = ScriptedBackend(**kw).start()
        self._backends.append(b)
        self.addCleanup(b.stop)
        return b

    def proxy(self, config, name=None, args=None):
        p = Proxy(config, name=name or self.id(), args=args)
        self._proxies.append(p)
        self.addCleanup(p.stop)
        p.start()
        return p

    def start(self, backend=None, backend_port=None, tls_overrides=None, top=None, **listener):
        """A scripted backend (unless backend_port is given) and a proxy with
        one inbound listener "mx" in front of it."""
        if backend_port is None:
            if backend is None:
                backend = self.backend()
            backend_port = backend.port
        l = inbound_listener(backend_port, **listener)
        cfg = base_config([l], **(top or {}))
        if tls_overrides:
            cfg["tls"].update(tls_overrides)
        self.proxy_ = self.proxy(cfg)
        self.backend_ = backend
        return backend, self.proxy_

    def client(self, port=None, timeout=5.0, greet=True):
        c = Client(port or self.proxy_.port, timeout=timeout)
        self.addCleanup(c.close)
        if greet:
            g = c.greeting()
            self.assertEqual(g.code, 220, "greeting %r" % (g,))
        return c

    def assertReply(self, reply, code, enhanced=None, text=None, msg=None):
        """reply.code == code, and the enhanced status code / full first line
        when given."""
        info = "%s; got %r" % (msg or "", reply)
        self.assertEqual(reply.code, code, info)
        if enhanced is not None:
            self.assertEqual(reply.enhanced, enhanced, info)
        if text is not None:
            self.assertEqual(reply.lines[0], text, info)

    def assertNeverForwarded(self, backend, needle, settle=0.3):
        """needle never reaches the backend (after a short settle time, to
        catch a late forward)."""
        if settle:
            time.sleep(settle)
        raw = backend.raw_all()
        self.assertNotIn(needle, raw, "backend received %r: %r" % (needle, raw[-2000:]))


def run_tests():
    unittest.main(verbosity=2)
