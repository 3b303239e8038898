"""Inbound TLS at the socket, with openssl s_client: certificates chosen by
SNI (tls.certificate as a list), ALPN offers refused with alert 120
(no_application_protocol), session resumption across instances sharing
tls.ticket_keys; and -t naming FILE:LINE of a key that does not match its
certificate."""

import os
import re
import shutil
import subprocess
import unittest

import harness
from harness import ProxyTestCase


def need_openssl():
    if not shutil.which("openssl"):
        raise unittest.SkipTest("openssl not installed")


def leaf(pki, d, name, sans, keyalg=("ec", "ec_paramgen_curve:P-256")):
    """A certificate for subjectAltName sans from pki's CA, into d; returns
    (cert, key)."""
    key, csr, cert, ext = (os.path.join(d, name + s) for s in (".key", ".csr", ".pem", ".ext"))
    harness._run(["openssl", "req", "-new", "-newkey", keyalg[0], "-pkeyopt", keyalg[1], "-nodes",
                  "-keyout", key, "-out", csr, "-subj", "/CN=" + name])
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                % ",".join("DNS:" + s for s in sans))
    harness._run(["openssl", "x509", "-req", "-in", csr, "-CA", pki.ca, "-CAkey", pki.ca_key,
                  "-CAcreateserial", "-out", cert, "-days", "3", "-sha256", "-extfile", ext])
    return cert, key


def s_client(port, *args, starttls=True, stdin=b"QUIT\r\n"):
    """openssl s_client against 127.0.0.1:port; (exit code, all output)."""
    cmd = ["openssl", "s_client", "-connect", "%s:%d" % (harness.HOST, port)]
    if starttls:
        cmd += ["-starttls", "smtp"]
    r = subprocess.run(cmd + list(args), input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=20)
    return r.returncode, r.stdout.decode("utf-8", "replace")


class SniTest(ProxyTestCase):

    def setUp(self):
        super().setUp()
        need_openssl()
        d = harness.new_tmpdir(self.id())
        self.a = leaf(self.pki, d, "a", ["a.e2e.test"])
        self.wild = leaf(self.pki, d, "wild", ["*.w.e2e.test"])
        self.b = leaf(self.pki, d, "b", ["b.e2e.test"])

    def served(self, port, sni, starttls=True):
        args = ["-CAfile", self.pki.ca, "-verify_return_error"]
        if sni:
            args += ["-servername", sni, "-verify_hostname", sni]
        rc, out = s_client(port, *args, starttls=starttls)
        self.assertEqual(rc, 0, out)
        m = re.search(r"^subject=.*?CN\s*=\s*(\S+)", out, re.M)
        self.assertIsNotNone(m, out)
        return m.group(1)

    def test_certificate_by_sni(self):
        certs = [self.pki.cert, self.a[0], self.wild[0], self.b[0]]
        keys = [self.pki.key, self.a[1], self.wild[1], self.b[1]]
        for mode in ("starttls", "implicit"):
            b, p = self.start(tls_mode=mode, tls_overrides={"certificate": certs, "key": keys})
            st = mode == "starttls"
            self.assertEqual(self.served(p.port, "a.e2e.test", st), "a")
            self.assertEqual(self.served(p.port, "b.e2e.test", st), "b")
            self.assertEqual(self.served(p.port, "x.w.e2e.test", st), "wild")
            self.assertEqual(self.served(p.port, "mx.test", st), "mx.test")
            # No SNI, or a name nobody has: the first (all are ECDSA).
            self.assertEqual(self.served(p.port, None, st), "mx.test")
            rc, out = s_client(p.port, "-servername", "y.x.w.e2e.test", starttls=st)
            self.assertIn("CN = mx.test", out)
            p.stop()


class AlpnTest(ProxyTestCase):

    def setUp(self):
        super().setUp()
        need_openssl()

    def test_alpn_refused_with_alert_120(self):
        for mode in ("starttls", "implicit"):
            b, p = self.start(tls_mode=mode)
            st = mode == "starttls"
            for protos in ("http/1.1", "h2,http/1.1", "smtp"):
                rc, out = s_client(p.port, "-alpn", protos, starttls=st)
                self.assertNotEqual(rc, 0, out)
                self.assertRegex(out, r"alert (number 120|no application protocol)", out)
            # No ALPN: served.
            rc, out = s_client(p.port, "-CAfile", self.pki.ca, "-verify_return_error",
                               "-servername", "mx.test", starttls=st)
            self.assertEqual(rc, 0, out)
            self.assertNotIn("alert", out)
            p.stop()


class TicketTest(ProxyTestCase):

    def setUp(self):
        super().setUp()
        need_openssl()
        self.dir = harness.new_tmpdir(self.id())

    def keys(self, name, n):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(os.urandom(80 * n))
        return path

    def connect(self, port, version, sess_out=None, sess_in=None):
        # -ign_eof: QUIT goes to the server (whose 221 and close end
        # s_client), after the TLS 1.3 tickets have arrived.
        args = ["-" + version, "-servername", "mx.test", "-ign_eof"]
        if sess_out:
            args += ["-sess_out", sess_out]
        if sess_in:
            args += ["-sess_in", sess_in]
        rc, out = s_client(port, *args)
        self.assertEqual(rc, 0, out)
        return out

    def test_fleet_resumes_each_others_sessions(self):
        keys = self.keys("ticket.keys", 2)
        _, p1 = self.start(tls_overrides={"ticket_keys": keys})
        _, p2 = self.start(tls_overrides={"ticket_keys": keys})
        _, other = self.start(tls_overrides={"ticket_keys": self.keys("other.keys", 1)})
        for version in ("tls1_3", "tls1_2"):
            sess = os.path.join(self.dir, version + ".sess")
            out = self.connect(p1.port, version, sess_out=sess)
            self.assertIn("New, TLSv1.", out)
            out = self.connect(p2.port, version, sess_in=sess)
            self.assertIn("Reused, TLSv1.", out)
            out = self.connect(other.port, version, sess_in=sess)
            self.assertIn("New, TLSv1.", out)

    def test_default_keys_resume_on_the_same_instance(self):
        _, p = self.start()
        sess = os.path.join(self.dir, "s.sess")
        self.connect(p.port, "tls1_3", sess_out=sess)
        self.assertIn("Reused, TLSv1.3", self.connect(p.port, "tls1_3", sess_in=sess))


def run(args, timeout=10):
    r = subprocess.run([harness.proxy_binary()] + args, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


class LocatedTlsErrorsTest(unittest.TestCase):
    """-t loads certificates and keys: a problem in one names FILE:LINE of
    the setting, like every other configuration error."""

    def setUp(self):
        need_openssl()
        self.pki = harness.pki()
        self.dir = harness.new_tmpdir(self.id())
        self.other = leaf(self.pki, self.dir, "other", ["other.test"])

    def check(self, text, want):
        path = os.path.join(self.dir, "t.conf")
        with open(path, "w") as f:
            f.write(text % {"cert": self.pki.cert, "key": self.pki.key, "okey": self.other[1],
                            "ocert": self.other[0], "port": harness.free_port()})
        rc, out, err = run(["-t", "-c", path])
        self.assertEqual(rc, 1, out + err)
        self.assertEqual(err.strip(), want % {"file": path, "cert": self.pki.cert, "key": self.pki.key,
                                              "okey": self.other[1], "ocert": self.other[0]})

    LISTENER = ('inbound = ( { name = "mx"; listen = "127.0.0.1:%(port)d";\n'
                '  backend = "127.0.0.1:1"; } );\n')

    def test_key_not_matching_certificate(self):
        self.check('tls = {\n  certificate = "%(cert)s";\n  key = "%(okey)s";\n};\n' + self.LISTENER,
                   '%(file)s:3: tls.key: "%(okey)s" does not match tls.certificate "%(cert)s"')

    def test_second_pair_of_a_list(self):
        self.check('tls = {\n  certificate = [ "%(cert)s",\n    "%(ocert)s" ];\n'
                   '  key = [ "%(key)s",\n    "%(key)s" ];\n};\n' + self.LISTENER,
                   '%(file)s:5: tls.key: "%(key)s" does not match tls.certificate "%(ocert)s"')

    def test_in_a_listener_block(self):
        self.check('inbound = ( { name = "mx"; listen = "127.0.0.1:%(port)d";\n'
                   '  backend = "127.0.0.1:1";\n'
                   '  tls = { certificate = "%(cert)s";\n'
                   '          key = "%(okey)s"; }; } );\n',
                   '%(file)s:4: tls.key: "%(okey)s" does not match tls.certificate "%(cert)s"')

    def test_ticket_keys_file_of_a_wrong_size(self):
        keys = os.path.join(self.dir, "bad.keys")
        with open(keys, "wb") as f:
            f.write(b"x" * 81)
        self.check('tls = { certificate = "%(cert)s"; key = "%(key)s";\n'
                   '  ticket_keys = "' + keys + '"; };\n' + self.LISTENER,
                   '%(file)s:2: tls.ticket_keys: "' + keys + '": 81 bytes: expected 1 to 64 '
                   'records of 80 bytes, or one key of 48 bytes')

    def test_ticket_keys_file_missing(self):
        self.check('tls = { certificate = "%(cert)s"; key = "%(key)s";\n'
                   '  ticket_keys = "/nonexistent/t.keys"; };\n' + self.LISTENER,
                   '%(file)s:2: tls.ticket_keys: cannot read "/nonexistent/t.keys": '
                   'No such file or directory')


if __name__ == "__main__":
    harness.run_tests()
