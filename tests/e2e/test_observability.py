"""Metrics (Prometheus text on metrics_listen, /healthz) and the JSON log
format, as named in DESIGN.md "Log and metrics"."""

import json
import re
import time
import unittest
import urllib.error
import urllib.request

import harness
from harness import ProxyTestCase

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] from Prometheus text format."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError("malformed metrics line %r" % line)
        out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def value(samples, name, **labels):
    """The sample of name whose labels include labels (None if absent)."""
    hits = [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]
    if len(hits) > 1:
        raise AssertionError("%d samples of %s%r" % (len(hits), name, labels))
    return hits[0] if hits else None


class MetricsTest(ProxyTestCase):

    def setUp(self):
        super().setUp()
        self.mport = harness.free_port()

    def get(self, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.mport, path), timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()

    def metrics(self):
        return parse_metrics(self.get("/metrics")[2])

    def test_counters_after_sessions(self):
        b, p = self.start(top={"metrics_listen": "127.0.0.1:%d" % self.mport})
        self.assertTrue(harness.wait_until(lambda: harness.is_listening(self.mport), 3))
        status, ctype, body = self.get("/healthz")
        self.assertEqual(status, 200)
        status, ctype, _ = self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/plain"), ctype)

        # One plaintext session, one STARTTLS session with a message, one
        # failed handshake.
        c = self.client()
        c.ehlo()
        c.cmd("QUIT")
        c.expect_closed(3)
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        c.send_message("a@x.test", ["b@y.test"], b"Subject: m\r\n\r\n" + b"q" * 10000 + b"\r\n")
        c.cmd("QUIT")
        c.expect_closed(3)
        sent_tls = len(c.sent)
        c = self.client()
        c.ehlo()
        c.cmd("STARTTLS")
        c.send(b"\x16\x03\x01\x00\x05garbage-not-a-hello")
        c.expect_closed(5)
        self.assertTrue(harness.wait_until(lambda: len(p.session_ends()) >= 3, 3))

        s = self.metrics()
        self.assertEqual(value(s, "smtp_tls_proxy_connections_total", listener="mx", direction="in"), 3)
        self.assertEqual(value(s, "smtp_tls_proxy_connections_active", listener="mx"), 0)
        self.assertEqual(value(s, "smtp_tls_proxy_starttls_total", listener="mx", result="ok"), 1)
        self.assertEqual(value(s, "smtp_tls_proxy_tls_handshakes_total", listener="mx",
                               version="TLSv1.3"), 1)
        fails = [v for n, l, v in s if n == "smtp_tls_proxy_tls_failures_total"
                 and l.get("listener") == "mx"]
        self.assertEqual(sum(fails), 1, [x for x in s if "failures" in x[0]])
        bytes_in = value(s, "smtp_tls_proxy_bytes_total", listener="mx", direction="in")
        self.assertIsNotNone(bytes_in)
        self.assertGreaterEqual(bytes_in, sent_tls)
        self.assertIsNotNone(value(s, "smtp_tls_proxy_bytes_total", listener="mx", direction="out"))

    def test_active_gauge_counts_open_sessions(self):
        b, p = self.start(top={"metrics_listen": "127.0.0.1:%d" % self.mport})
        self.assertTrue(harness.wait_until(lambda: harness.is_listening(self.mport), 3))
        cs = [self.client() for _ in range(3)]
        for c in cs:
            c.ehlo()
        self.assertEqual(value(self.metrics(), "smtp_tls_proxy_connections_active", listener="mx"), 3)
        for c in cs:
            c.close()
        self.assertTrue(harness.wait_until(
            lambda: value(self.metrics(), "smtp_tls_proxy_connections_active", listener="mx") == 0, 3))

    def test_unknown_path_404(self):
        b, p = self.start(top={"metrics_listen": "127.0.0.1:%d" % self.mport})
        self.assertTrue(harness.wait_until(lambda: harness.is_listening(self.mport), 3))
        with self.assertRaises(urllib.error.HTTPError) as cm:
            self.get("/nope")
        self.assertEqual(cm.exception.code, 404)


class JsonLogTest(ProxyTestCase):

    def test_every_line_is_json_and_session_end_has_fields(self):
        b, p = self.start(top={"log_format": "json"})
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        port = c.local_port
        c.cmd("QUIT")
        c.expect_closed(3)
        ends = []

        def find():
            ends[:] = []
            for line in p.log().splitlines():
                obj = json.loads(line)  # every line must parse
                if obj.get("session") and obj.get("end"):
                    ends.append(obj)
            return ends
        self.assertTrue(harness.wait_until(find, 3))
        e = ends[0]
        self.assertEqual(e["listener"], "mx")
        self.assertEqual(e["dir"], "in")
        self.assertEqual(e["client"], "127.0.0.1:%d" % port)
        self.assertEqual(e["backend"], b.addr)
        self.assertEqual(e["tls"], "TLSv1.3")
        self.assertEqual(e["sni"], "mx.test")
        self.assertEqual(e["end"], "quit")
        for k in ("cipher", "bytes_in", "bytes_out", "ms", "ts", "level"):
            self.assertIn(k, e)


if __name__ == "__main__":
    harness.run_tests()
