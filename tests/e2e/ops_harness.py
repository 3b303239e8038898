"""Helpers for the operations tests (reload, drain, binding): plain HTTP
GETs of the metrics endpoint, refused connections, and a foreign holder of
an address."""

import socket
import urllib.error
import urllib.request

import harness


def http_get(port, path):
    """(status, body) of GET path on 127.0.0.1:port; error statuses too."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def refused(port):
    """True if a connection to 127.0.0.1:port is refused by the kernel."""
    try:
        s = socket.create_connection((harness.HOST, port), timeout=2)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


def reuseport_holder(test):
    """A listening socket on an ephemeral port with SO_REUSEPORT, as another
    instance of the proxy would hold it; closed by test's cleanups. Returns
    its port."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((harness.HOST, 0))
    holder.listen(1)
    test.addCleanup(holder.close)
    return holder.getsockname()[1]
