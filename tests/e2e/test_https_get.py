"""The HTTPS GET client of MTA-STS policy fetches (proxy/net/https_get.c)
against another implementation: Python's http.server over its ssl module
(OpenSSL), with certificates from the openssl CLI (pki.make_pki). Driven
through tests/e2e/https_get_cli.c, one fetch per run. The scripted-server
cases (every byte cut, stalls in each phase, cancel) are in
tests/unit/net/https_get_test.c; these check that the client and a real
server agree on TLS, names and HTTP/1.1 framing, and where they must not."""

import http.server
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import unittest

import harness

POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmax_age: 86400\r\n"
NAME = "mta-sts.example.net"
PATH = "/.well-known/mta-sts.txt"


def cli_binary():
    env = os.environ.get("HTTPS_GET_CLI")
    if env:
        return env
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        p = os.path.join(srcdir, "smtp_tls_proxy/tests/e2e/https_get_cli")
        if os.path.exists(p):
            return p
    raise RuntimeError("https_get_cli not found: run under bazel test or set HTTPS_GET_CLI")


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers as the server's script says; records each request."""

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.requestline, dict(self.headers.items())))
        srv.script(self)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ctx, script, protocol="HTTP/1.1"):
        Handler.protocol_version = protocol
        super().__init__((harness.HOST, 0), Handler)
        self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.script = script
        self.requests = []
        self.release = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    @property
    def port(self):
        return self.server_address[1]

    def stop(self):
        self.release.set()
        self.shutdown()
        self.server_close()
        self.thread.join(10)


def text_plain(body, ctype="text/plain; charset=utf-8", status=200, extra=()):
    def script(h):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
    return script


class HttpsGetTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        d = harness.new_tmpdir("https-get")
        cls.pki = harness.make_pki(os.path.join(d, "good"), cn=NAME)
        # A second CA the client does not trust, with a certificate for the
        # right name.
        cls.other = harness.make_pki(os.path.join(d, "other"), cn=NAME)

    def serve(self, script, pki=None, protocol="HTTP/1.1"):
        ctx = harness.server_context(pki or self.pki)
        srv = Server(ctx, script, protocol)
        self.addCleanup(srv.stop)
        return srv

    def fetch(self, srv, host=NAME, ca=None, *extra, timeout=30):
        args = [cli_binary(), "--ca", ca or self.pki.ca, "--host", host,
                "--connect", "%s:%d" % (harness.HOST, srv.port)] + list(extra)
        t0 = time.monotonic()
        r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        elapsed = time.monotonic() - t0
        out = r.stdout
        line, _, body = out.partition(b"\n")
        m = re.match(rb'status=(.+?) http_status=(\d+) body_len=(\d+) ms=(\d+) why="(.*)"$', line)
        self.assertIsNotNone(m, "output %r stderr %r" % (out, r.stderr))
        res = {"rc": r.returncode, "status": m.group(1).decode(),
               "http_status": int(m.group(2)), "why": m.group(5).decode(),
               "elapsed": elapsed, "body": None}
        if res["status"] == "ok":
            self.assertTrue(body.startswith(b"\n"))
            res["body"] = body[1:]
            self.assertEqual(len(res["body"]), int(m.group(3)))
            self.assertEqual(r.returncode, 0)
        else:
            self.assertEqual(r.returncode, 1, r.stderr)
        return res

    def test_ok(self):
        srv = self.serve(text_plain(POLICY))
        r = self.fetch(srv)
        self.assertEqual(r["status"], "ok", r)
        self.assertEqual(r["body"], POLICY)
        self.assertEqual(len(srv.requests), 1)
        line, headers = srv.requests[0]
        self.assertEqual(line, "GET %s HTTP/1.1" % PATH)
        self.assertEqual(headers.get("Host"), NAME)
        self.assertEqual(headers.get("Connection"), "close")

    def test_chunked(self):
        def script(h):
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for piece in (POLICY[:5], POLICY[5:40], POLICY[40:]):
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                h.wfile.flush()
            h.wfile.write(b"0\r\n\r\n")
        r = self.fetch(self.serve(script))
        self.assertEqual(r["status"], "ok", r)
        self.assertEqual(r["body"], POLICY)

    def test_close_delimited(self):
        # Python's ssl module closes without a close_notify (no unwrap), so a
        # body that only the close delimits may have been cut short: refused
        # (RFC 9112 §9.8). With the alert it is complete.
        def bare(h):
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.end_headers()
            h.wfile.write(POLICY)
        r = self.fetch(self.serve(bare, protocol="HTTP/1.0"))
        self.assertEqual(r["status"], "closed", r)

        def with_alert(h):
            bare(h)
            h.wfile.flush()
            h.connection.unwrap()
        r = self.fetch(self.serve(with_alert, protocol="HTTP/1.0"))
        self.assertEqual(r["status"], "ok", r)
        self.assertEqual(r["body"], POLICY)

    def test_wrong_name(self):
        srv = self.serve(text_plain(POLICY))
        r = self.fetch(srv, host="mta-sts.example.org")
        self.assertEqual(r["status"], "certificate", r)
        self.assertEqual(srv.requests, [])

    def test_untrusted_ca(self):
        srv = self.serve(text_plain(POLICY), pki=self.other)
        r = self.fetch(srv)
        self.assertEqual(r["status"], "certificate", r)
        self.assertEqual(srv.requests, [])
        # The control: trusting that CA, the same server is fine.
        r = self.fetch(srv, NAME, self.other.ca)
        self.assertEqual(r["status"], "ok", r)

    def test_redirect_not_followed(self):
        srv = self.serve(text_plain(b"moved\n", status=301,
                                    extra=[("Location", "https://%s:%d/elsewhere" % (NAME, 1))]))
        r = self.fetch(srv)
        self.assertEqual((r["status"], r["http_status"]), ("redirect", 301), r)
        self.assertEqual(len(srv.requests), 1)

    def test_not_found(self):
        def script(h):
            h.send_error(404)
        r = self.fetch(self.serve(script))
        self.assertEqual((r["status"], r["http_status"]), ("http status", 404), r)

    def test_media_type(self):
        r = self.fetch(self.serve(text_plain(POLICY, ctype="text/html")))
        self.assertEqual(r["status"], "media type", r)

    def test_too_large(self):
        r = self.fetch(self.serve(text_plain(b"a" * (64 * 1024))))
        self.assertEqual(r["status"], "ok", r)
        self.assertEqual(len(r["body"]), 64 * 1024)
        r = self.fetch(self.serve(text_plain(b"a" * (64 * 1024 + 1))))
        self.assertEqual(r["status"], "too large", r)

    def test_stall_times_out(self):
        def script(h):
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(len(POLICY)))
            h.end_headers()
            h.wfile.write(POLICY[:10])
            h.wfile.flush()
            h.server.release.wait(20)
        r = self.fetch(self.serve(script), NAME, None, "--total-ms", "700")
        self.assertEqual(r["status"], "timeout", r)
        self.assertEqual(r["why"], "response timed out")
        self.assertLess(r["elapsed"], 10)

    def test_closed_mid_body(self):
        def script(h):
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", "100")
            h.end_headers()
            h.wfile.write(POLICY[:10])
        r = self.fetch(self.serve(script))
        self.assertEqual(r["status"], "closed", r)


if __name__ == "__main__":
    unittest.main()
