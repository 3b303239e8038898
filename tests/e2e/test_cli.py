"""Command line: -t validation with FILE:LINE errors, -V, usage errors, exit
codes (0 ok, 1 bad configuration, 2 bad usage, 3 runtime failure)."""

import os
import signal
import socket
import subprocess
import time
import unittest

import harness
from harness import ProxyTestCase


def run(args, timeout=10):
    r = subprocess.run([harness.proxy_binary()] + args, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


class CliTest(unittest.TestCase):

    def setUp(self):
        self.pki = harness.pki()
        self.dir = harness.new_tmpdir(self.id())

    def conf(self, text, name="test.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def good_text(self, port=None):
        l = harness.inbound_listener(harness.free_port(), listen_port=port)
        return harness.write_config(harness.base_config([l]))

    def test_t_good_config(self):
        path = self.conf(self.good_text())
        rc, out, err = run(["-t", "-c", path])
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration OK", out + err)

    def test_long_options(self):
        path = self.conf(self.good_text())
        rc, out, err = run(["--test-config", "--config", path])
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration OK", out + err)

    def test_t_does_not_bind(self):
        # Validation must not need (or take) the listen port.
        s = socket.socket()
        s.bind((harness.HOST, 0))
        s.listen(1)
        self.addCleanup(s.close)
        path = self.conf(self.good_text(port=s.getsockname()[1]))
        rc, out, err = run(["-t", "-c", path])
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration OK", out + err)

    def test_version(self):
        for flag in ("-V", "--version"):
            rc, out, err = run([flag])
            self.assertEqual(rc, 0, err)
            text = out + err
            self.assertRegex(text.splitlines()[0] if text else "", r"smtp-tls-proxy.*\d")
            self.assertIn("libuv", text.lower())
            self.assertIn("boringssl", text.lower())

    def test_help(self):
        rc, out, err = run(["-h"])
        self.assertEqual(rc, 0, err)
        self.assertIn("-c", out + err)

    def test_unknown_option_exit_2(self):
        for args in (["--no-such-option"], ["-Z"], ["-c"]):
            rc, out, err = run(args)
            self.assertEqual(rc, 2, "%r: rc %d, stderr %r" % (args, rc, err))
            self.assertNotEqual(err.strip(), "", args)

    def test_missing_config_file(self):
        missing = os.path.join(self.dir, "does-not-exist.conf")
        rc, out, err = run(["-t", "-c", missing])
        self.assertEqual(rc, 1, err)
        self.assertIn("does-not-exist.conf", err)

    def bad(self, text, line, *names):
        """-t on text fails with exit 1 and a FILE:LINE: line naming names."""
        path = self.conf(text)
        rc, out, err = run(["-t", "-c", path])
        self.assertEqual(rc, 1, "rc %d for:\n%s\nstderr: %s" % (rc, text, err))
        self.assertNotIn("configuration OK", out + err)
        prefix = "%s:%d: " % (path, line)
        matching = [l for l in err.splitlines() if prefix in l]
        self.assertTrue(matching, "no %r in stderr:\n%s\nconfig:\n%s" % (prefix, err, text))
        for n in names:
            self.assertIn(n, "\n".join(matching), "error does not name %r: %s" % (n, err))
        # Running (not just -t) the same file also fails with 1.
        rc2, _, err2 = run(["-c", path], timeout=10)
        self.assertEqual(rc2, 1, err2)
        return err

    def head(self):
        return ('tls = { certificate = "%s"; key = "%s"; };\n' % (self.pki.cert, self.pki.key))

    def listener(self, extra=""):
        return ('inbound = ( { name = "mx"; listen = "127.0.0.1:%d"; backend = "127.0.0.1:%d"; %s } );\n'
                % (harness.free_port(), harness.free_port(), extra))

    def test_unknown_top_level_key(self):
        self.bad(self.head() + "log_level = \"info\";\nbogus_key = 1;\n" + self.listener(),
                 3, "bogus_key")

    def test_unknown_listener_key(self):
        self.bad(self.head() + "\n" + self.listener("colour = \"blue\";"), 3, "colour")

    def test_wrong_type(self):
        self.bad(self.head() + self.listener("max_connections = \"ten\";"), 2, "max_connections")

    def test_impossible_enum(self):
        self.bad(self.head() + self.listener("tls_mode = \"sometimes\";"), 2, "tls_mode")

    def test_bad_bare_newline(self):
        self.bad(self.head() + self.listener("bare_newline = \"ignore\";"), 2, "bare_newline")

    def test_bad_port(self):
        text = (self.head() + 'inbound = ( { name = "mx"; listen = "127.0.0.1:99999"; '
                'backend = "127.0.0.1:25"; } );\n')
        self.bad(text, 2, "listen")

    def test_missing_backend(self):
        text = self.head() + 'inbound = ( { name = "mx"; listen = "127.0.0.1:%d"; } );\n' % harness.free_port()
        self.bad(text, 2, "backend")

    def test_duplicate_listener_names(self):
        text = (self.head() + "inbound = (\n"
                '  { name = "mx"; listen = "127.0.0.1:%d"; backend = "127.0.0.1:25"; },\n'
                '  { name = "mx"; listen = "127.0.0.1:%d"; backend = "127.0.0.1:25"; }\n'
                ");\n" % (harness.free_port(), harness.free_port()))
        self.bad(text, 4, "mx")

    def test_bad_log_level(self):
        self.bad(self.head() + 'log_level = "loud";\n' + self.listener(), 2, "log_level")

    def test_negative_timeout(self):
        self.bad(self.head() + self.listener("timeouts = { idle = -5; };"), 2, "idle")

    def test_syntax_error(self):
        self.bad(self.head() + "log_level = \"info\";\nworkers = = 2;\n" + self.listener(), 3)

    def test_missing_certificate_file(self):
        missing = os.path.join(self.dir, "missing-cert.pem")
        text = ('tls = {\n  certificate = "%s";\n  key = "%s";\n};\n' % (missing, self.pki.key)
                + self.listener())
        self.bad(text, 2, "missing-cert.pem")


class RuntimeFailureTest(ProxyTestCase):

    def test_cannot_bind_exit_3(self):
        s = socket.socket()
        s.bind((harness.HOST, 0))
        s.listen(1)
        self.addCleanup(s.close)
        port = s.getsockname()[1]
        l = harness.inbound_listener(harness.free_port(), listen_port=port)
        p = harness.Proxy(harness.base_config([l]), name=self.id())  # writes the file
        proc = subprocess.Popen([harness.proxy_binary(), "-c", p.config_path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.fail("proxy kept running although it could not bind")
        self.assertEqual(proc.returncode, 3, err)
        self.assertIn("127.0.0.1:%d" % port, err.decode())

    def test_garbage_certificate_fails_at_start(self):
        d = harness.new_tmpdir("garbage-cert")
        cert = os.path.join(d, "garbage.pem")
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        l = harness.inbound_listener(harness.free_port())
        cfg = harness.base_config([l])
        cfg["tls"]["certificate"] = cert
        p = harness.Proxy(cfg, name=self.id())
        proc = subprocess.Popen([harness.proxy_binary(), "-c", p.config_path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.fail("proxy started with a garbage certificate")
        self.assertIn(proc.returncode, (1, 3), err)
        self.assertIn("garbage.pem", err.decode())

    def test_builtin_default_config(self):
        if harness.is_listening(2525):
            self.skipTest("127.0.0.1:2525 in use")
        if harness.is_listening(25):
            self.skipTest("something listens on port 25")
        proc = subprocess.Popen([harness.proxy_binary()], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        harness.wait_until(lambda: proc.poll() is not None or harness.is_listening(2525), 10)
        self.assertIsNone(proc.poll(), "default config did not start")
        c = harness.Client(2525)
        self.addCleanup(c.close)
        r = c.read_reply(5)
        self.assertReply(r, 421, "4.4.1")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 0)
        self.assertIn("self-signed", err.decode().lower())


if __name__ == "__main__":
    harness.run_tests()
