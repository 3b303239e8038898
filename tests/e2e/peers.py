"""The scripted peers of the e2e tests: ScriptedBackend (a threaded SMTP
server that records every byte it receives and every message it accepts, and
can be told to misbehave), its per-connection state, the messages it
records, and Postfix's smtp-sink as a real backend. harness re-exports the
public names (and DEFAULT_EHLO, dot_stuff, unstuff_strict)."""

import os
import pwd
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from e2e_base import CRLF, HOST, free_port, is_listening, tmp_root, wait_until

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
