"""The ground the e2e modules stand on (harness, pki, peers): line ends, the
loopback address, scratch directories, the daemon's binary, free ports and
polling. Kept apart so that pki.py and peers.py need not import harness,
which re-exports all of them."""

import os
import re
import socket
import tempfile
import threading
import time

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
