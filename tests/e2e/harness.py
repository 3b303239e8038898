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

The pieces live in modules of their own (e2e_base: paths, ports, polling;
pki: certificates; peers: ScriptedBackend, SmtpSink); this module re-exports
them, so `import harness` and `from harness import X` reach every name.
"""

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest

# Re-exported: tests use them as harness.<name>.
from e2e_base import (  # noqa: F401
    CRLF,
    HOST,
    free_port,
    is_listening,
    new_tmpdir,
    proxy_binary,
    tmp_root,
    wait_until,
)
from peers import (  # noqa: F401
    DEFAULT_EHLO,
    SMTP_SINK,
    BackendConn,
    Message,
    ScriptedBackend,
    SmtpSink,
    dot_stuff,
    unstuff_strict,
)
from pki import Pki, _run, make_pki, pki, server_context  # noqa: F401


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
