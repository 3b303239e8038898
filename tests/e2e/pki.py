"""Certificates for the e2e tests: a throw-away CA and an ECDSA P-256
server certificate made with the openssl CLI, the per-process test PKI, and
the ssl contexts built on it. harness re-exports every name here."""

import os
import ssl
import subprocess
import threading

from e2e_base import tmp_root

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
