"""MTA-STS per recipient for `destination = "original"` with `mta_sts = true`.

The namespace, REDIRECT, signed zone (nsd on 127.0.0.53) and destination of
test_dane_original (client 127.0.0.3 -> 127.0.0.2:2525, redirected to the
proxy), plus the recipient domains' MTA-STS policies: each domain has an
_mta-sts TXT record and an mta-sts.<domain> A record naming 127.0.0.54,
where a Python HTTPS server (test CA, one certificate for every
mta-sts.<domain>) listens on port 443 inside the namespace, answers by Host
and counts its requests. The destination's certificate is CA-signed for
mxs.example.net. The proxy's tls ca_file and mta_sts ca_file are the test CA.

  s  MX mxs   enforce, mx: mxs.example.net          -> delivered, auth=mta-sts
  w  MX mxs   enforce, mx: *.example.net            -> delivered, auth=mta-sts
  x  MX mxs   enforce, mx: mail.elsewhere.test      -> 450 4.7.5 (not an MX host)
  y  MX mxy   enforce, mx: mxy.example.net          -> 450 4.7.5 (the certificate
              (mxy A 127.0.0.2: the same host)          is for mxs, not mxy)
  t  MX mxs   testing, mx: mail.elsewhere.test      -> delivered, result=logged
  h  MX mxs   enforce, mx: mail.elsewhere.test, its policy host never
              answers: at the decision's 10 s bound, no policy -> delivered
  n  nothing                                        -> no policy, delivered
  f  MX mxs   its policy host answers 404 (nothing cached) -> delivered
  i  MX mxs   its policy host answers 200, not a policy    -> delivered
  c  MX mxs   its policy host's certificate is not for it  -> delivered

Also: a warm second session costs no HTTPS request; a destination without
STARTTLS refuses only the enforcing domain; after a restart the cache file's
policy applies while the policy host answers 500, and a domain with nothing
cached and a failing fetch is delivered as without MTA-STS (RFC 8461 §5);
with tls_rpt = true each domain leaves one day-file line of policy type sts
(success, certificate-host-mismatch, validation-failure when the MX is not in
the policy, sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid)
and the policy's lines as policy-string.
"""

import http.server
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import unittest

import dnszone
import harness
import outbound_harness as oh
import test_dane_original as dane
from harness import ProxyTestCase

POLICY_IP = "127.0.0.54"
BODY = b"Subject: mta-sts per recipient\r\n\r\nbody\r\n"
DOMAINS = {
    "s": ("mxs", "enforce", "mxs.example.net"),
    "w": ("mxs", "enforce", "*.example.net"),
    "x": ("mxs", "enforce", "mail.elsewhere.test"),
    "y": ("mxy", "enforce", "mxy.example.net"),
    "t": ("mxs", "testing", "mail.elsewhere.test"),
    "h": ("mxs", "enforce", "mail.elsewhere.test"),  # its policy host never answers
}
# Announced, MX mxs, no policy to be had: the policy host answers 404 (f),
# answers 200 with what is not a policy (i), or holds no certificate for
# mta-sts.c.example.net (c).
FETCH_FAILS = ("f", "i", "c")
NOT_A_POLICY = b"version: STSv9\r\nmode: enforce\r\nmx: mxs.example.net\r\nmax_age: 86400\r\n"


def policy(mode, mx):
    return ("version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: 86400\r\n" % (mode, mx)).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        srv = self.server
        host = (self.headers.get("Host") or "").lower()
        with srv.lock:
            srv.requests.append((host, self.path))
            status = srv.status
        label = host[len("mta-sts."):].split(".")[0] if host.startswith("mta-sts.") else ""
        if label == "h":
            srv.release.wait(30)
            return
        if label in DOMAINS and self.path == "/.well-known/mta-sts.txt" and status == 200:
            body = policy(DOMAINS[label][1], DOMAINS[label][2])
        elif label in ("i", "c") and status == 200:
            body = NOT_A_POLICY if label == "i" else policy("enforce", "mxs.example.net")
        else:
            status, body = (status if status != 200 else 404), b"no\r\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class PolicyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ctx):
        super().__init__((POLICY_IP, 443), Handler)
        self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.lock = threading.Lock()
        self.requests = []
        self.status = 200
        self.release = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def stop(self):
        self.release.set()
        self.shutdown()
        self.server_close()
        self.thread.join(10)


@unittest.skipIf(dnszone.available(), dnszone.available() or "")
class MtaStsOriginalTest(ProxyTestCase):
    ns = None
    v6 = False
    v6_reason = ""
    # The namespace and its pieces are test_dane_original's.
    setUpClass = classmethod(dane.DaneOriginalTest.setUpClass.__func__)
    tearDownClass = classmethod(dane.DaneOriginalTest.tearDownClass.__func__)
    connect = dane.DaneOriginalTest.connect
    destination = dane.DaneOriginalTest.destination
    metric = dane.DaneOriginalTest.metric
    rcpts_seen = dane.DaneOriginalTest.rcpts_seen

    def zone(self):
        z = dnszone.Zone(harness.new_tmpdir("zone"), dane.NS_IP, netns=self.ns)
        for host in ("mxs", "mxy"):
            z.add(host, "A", dane.DEST)
        for label, host in [(l, v[0]) for l, v in DOMAINS.items()] + [(l, "mxs")
                                                                       for l in FETCH_FAILS]:
            z.add(label, "MX", "10 %s.%s." % (host, dnszone.ORIGIN))
            z.add("_mta-sts." + label, "TXT", '"v=STSv1; id=20240101T000000;"')
            z.add("mta-sts." + label, "A", POLICY_IP)
        try:
            z.start()
        except (OSError, RuntimeError) as e:
            self.skipTest("cannot start nsd: %s" % e)
        self.addCleanup(z.stop)
        return z

    def policy_server(self):
        names = ",".join("DNS:mta-sts.%s.%s" % (l, dnszone.ORIGIN)
                         for l in list(DOMAINS) + list(FETCH_FAILS) if l != "c")
        ck = oh._issue(harness.new_tmpdir("pki"), "mta-sts", "mta-sts.s.example.net", names)
        ctx = oh.tls_server_context(ck)
        srv = self.ns.run_in(lambda: PolicyServer(ctx))
        self.addCleanup(srv.stop)
        return srv

    def mx_cert(self):
        return oh._issue(harness.new_tmpdir("pki"), "mxs", "mxs.example.net",
                         "DNS:mxs.example.net,IP:127.0.0.2")

    def start_proxy(self, z, dane_too=False, cache=None, tls_rpt=None):
        self.mport = harness.free_port()
        l = oh.outbound_listener("original", name="relay",
                                 listen="127.0.0.1:%d" % dane.PROXY_PORT,
                                 tls={"ca_file": harness.pki().ca},
                                 timeouts={"connect": 15, "handshake": 10, "idle": 30})
        l["mta_sts"] = True
        l["dane"] = dane_too
        resolver = {"servers": [z.server], "dnssec": "validate", "trust_anchor": z.trust_anchor}
        sts = {"ca_file": harness.pki().ca}
        if cache:
            sts["cache"] = cache
        top = {}
        if tls_rpt is not None:  # a directory: results recorded there
            l["tls_rpt"] = True
            top["tls_rpt"] = {"directory": tls_rpt, "contact": "tlsrpt@corp.test"}
        cfg = oh.outbound_config([l], resolver=resolver, mta_sts=sts,
                                 metrics_listen="127.0.0.1:%d" % self.mport, log_level="debug",
                                 **top)
        p = oh.NetnsProxy(self.ns, cfg, name=self.id())
        self._proxies.append(p)
        self.addCleanup(p.stop)
        p.start()
        return p

    def session_ends(self, p, n):
        ends = harness.wait_until(lambda: [e for e in p.session_ends()
                                           if e.get("dir") == "out"][n - 1:], 10)
        self.assertTrue(ends, p.log()[-3000:])
        return ends[0]

    # -- tests --------------------------------------------------------------

    def test_enforce_testing_and_a_warm_second_session(self):
        z = self.zone()
        srv = self.policy_server()
        d = self.destination(cert=self.mx_cert())
        p = self.start_proxy(z, dane_too=True)  # no TLSA anywhere: DANE does not apply
        c = self.connect()
        rcpts = ["u@s.example.net", "u@w.example.net", "u@x.example.net", "u@Y.example.net",
                 "u@t.example.net"]
        r = c.send_message("legacy@corp.test", rcpts, BODY, pipelining=True)
        self.assertEqual([x.code for x in r], [250, 250, 250, 450, 450, 250, 354, 250], r)
        self.assertEqual((r[3].enhanced, r[4].enhanced), ("4.7.5", "4.7.5"), r)
        self.assertIn("MTA-STS", r[3].lines[0])
        self.assertIn("does not list the destination as an MX host", r[3].lines[0])
        self.assertIn("does not match its MX host name", r[4].lines[0])
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(d.messages[0].data, BODY)
        self.assertEqual(self.rcpts_seen(d), [b"RCPT TO:<u@s.example.net>",
                                              b"RCPT TO:<u@w.example.net>",
                                              b"RCPT TO:<u@t.example.net>"])
        kv = self.session_ends(p, 1)
        self.assertEqual(kv["auth"], "mta-sts", kv["_line"])
        self.assertTrue(p.wait_log(r"event=rcpt_refused .*domain=x\.example\.net auth=mta-sts "
                                   r'result=refused why="MTA-STS: the destination is not an MX',
                                   5), p.log()[-3000:])
        self.assertTrue(p.wait_log(r"event=rcpt_refused .*domain=y\.example\.net auth=mta-sts "
                                   r'result=refused why="MTA-STS: certificate name does not', 5))
        self.assertTrue(p.wait_log(r"event=rcpt_refused .*domain=t\.example\.net auth=mta-sts "
                                   r'result=logged why="MTA-STS: the destination is not an MX', 5))
        self.assertTrue(p.wait_log(r"event=rcpt_auth domain=s\.example\.net auth=mta-sts", 5))
        self.assertTrue(p.wait_log(r"event=rcpt_auth domain=w\.example\.net auth=mta-sts", 5))
        self.assertFalse(p.wait_log(r"event=rcpt_refused .*domain=[sw]\.example\.net", 0.2))
        self.assertEqual(self.metric(auth="mta-sts", result="ok"), 2)
        self.assertEqual(self.metric(auth="mta-sts", result="fail"), 2)
        self.assertEqual(self.metric(auth="mta-sts", result="logged"), 1)
        self.assertEqual(self.metric(auth="dane", result="ok"), 0)
        fetched = srv.count()
        self.assertEqual(sorted(h for h, _ in srv.requests),
                         ["mta-sts.%s.example.net" % l for l in "stwxy"])

        # A second session: the policies come from the warm cache.
        c2 = self.connect()
        r = c2.send_message("legacy@corp.test", ["v@s.example.net", "v@x.example.net"], BODY)
        self.assertEqual([x.code for x in r], [250, 250, 450, 354, 250], r)
        self.assertEqual(c2.cmd("QUIT").code, 221)
        self.assertTrue(d.wait_messages(2))
        kv = self.session_ends(p, 2)
        self.assertEqual(kv["auth"], "mta-sts", kv["_line"])
        self.assertEqual(srv.count(), fetched, srv.requests)
        self.assertEqual(self.metric(auth="mta-sts", result="ok"), 3)
        self.assertEqual(self.metric(auth="mta-sts", result="fail"), 3)

    def day_lines(self, rpt, day, domain):
        path = os.path.join(rpt, day, domain)
        self.assertTrue(harness.wait_until(lambda: os.path.exists(path), 5), path)
        with open(path) as f:
            return f.read().splitlines()

    def test_tls_rpt_sts_results(self):
        # tls_rpt = true: a domain an MTA-STS policy decided is policy type
        # sts, its result the policy's check of this session (RFC 8460
        # §4.3); a failed fetch with nothing cached is sts-policy-fetch-error.
        z = self.zone()
        srv = self.policy_server()
        d = self.destination(cert=self.mx_cert())
        rpt = harness.new_tmpdir("tls-rpt-dir")
        p = self.start_proxy(z, tls_rpt=rpt)
        c = self.connect()
        t0 = int(time.time())
        r = c.send_message("legacy@corp.test", ["u@s.example.net", "u@y.example.net",
                                                "u@x.example.net", "u@t.example.net",
                                                "u@f.example.net", "u@n.example.net",
                                                "v@S.example.net", "u@i.example.net",
                                                "u@c.example.net"], BODY, pipelining=True)
        self.assertEqual([x.code for x in r],
                         [250, 250, 450, 450, 250, 250, 250, 250, 250, 250, 354, 250], r)
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.assertTrue(d.wait_messages(1))
        self.session_ends(p, 1)
        self.assertIn(("mta-sts.f.example.net", "/.well-known/mta-sts.txt"), srv.requests)
        self.assertIn(("mta-sts.i.example.net", "/.well-known/mta-sts.txt"), srv.requests)
        # c's fetch ends at the certificate, before any request.
        self.assertNotIn("mta-sts.c.example.net", [h for h, _ in srv.requests])
        day = time.strftime("%Y-%m-%d", time.gmtime(t0))
        if day != time.strftime("%Y-%m-%d", time.gmtime(time.time())):
            self.skipTest("midnight")
        ip = r"127\.\d+\.\d+\.\d+"
        want = {
            "s": "sts s.example.net success %s mxs.example.net 127.0.0.2",
            "y": "sts y.example.net certificate-host-mismatch %s mxy.example.net 127.0.0.2",
            "x": "sts x.example.net validation-failure %s mxs.example.net 127.0.0.2",
            "t": "sts t.example.net validation-failure %s mxs.example.net 127.0.0.2",
            "f": "sts f.example.net sts-policy-fetch-error %s mxs.example.net 127.0.0.2",
            "i": "sts i.example.net sts-policy-invalid %s mxs.example.net 127.0.0.2",
            "c": "sts c.example.net sts-webpki-invalid %s mxs.example.net 127.0.0.2",
            "n": "no-policy-found n.example.net success %s - 127.0.0.2",
        }
        for label, line in want.items():
            lines = self.day_lines(rpt, day, label + ".example.net")
            self.assertEqual(len(lines), 1, lines)  # s twice: one session, one line
            rx = re.escape(line).replace(re.escape("%s"), ip)
            self.assertRegex(lines[0], r"^tlsrpt1 \d+ %s$" % rx)
        # §4.4 policy-string: the policy's lines; mx-host: its mx patterns.
        with open(os.path.join(rpt, day, ".policy", "s.example.net.sts")) as f:
            self.assertEqual(f.read().splitlines(),
                             ["s version: STSv1", "s mode: enforce", "s mx: mxs.example.net",
                              "s max_age: 86400", "m mxs.example.net"])
        with open(os.path.join(rpt, day, ".policy", "t.example.net.sts")) as f:
            self.assertEqual(f.read().splitlines()[1:3],
                             ["s mode: testing", "s mx: mail.elsewhere.test"])
        self.assertFalse(os.path.exists(os.path.join(rpt, day, ".policy", "f.example.net.sts")))

    def test_no_starttls_refuses_the_enforcing_domain_only(self):
        z = self.zone()
        self.policy_server()
        d = self.destination(tls=False)
        rpt = harness.new_tmpdir("tls-rpt-dir")
        p = self.start_proxy(z, tls_rpt=rpt)
        c = self.connect()
        day = time.strftime("%Y-%m-%d", time.gmtime(time.time()))
        r = c.send_message("legacy@corp.test", ["u@s.example.net", "u@n.example.net",
                                                "u@t.example.net"], BODY)
        self.assertEqual([x.code for x in r], [250, 450, 250, 250, 354, 250], r)
        self.assertEqual(r[1].enhanced, "4.7.5", r[1])
        self.assertIn("STARTTLS was not used", r[1].lines[0])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(self.rcpts_seen(d), [b"RCPT TO:<u@n.example.net>",
                                              b"RCPT TO:<u@t.example.net>"])
        c.cmd("QUIT")
        kv = self.session_ends(p, 1)
        self.assertEqual(kv["auth"], "none", kv["_line"])
        self.assertTrue(p.wait_log(r"event=rcpt_refused .*domain=s\.example\.net auth=mta-sts "
                                   r'result=refused why="MTA-STS requires TLS', 5))
        self.assertTrue(p.wait_log(r"event=rcpt_refused .*domain=t\.example\.net auth=mta-sts "
                                   r"result=logged", 5))
        if day != time.strftime("%Y-%m-%d", time.gmtime(time.time())):
            self.skipTest("midnight")
        for label in "st":  # enforce and testing alike
            lines = self.day_lines(rpt, day, label + ".example.net")
            self.assertEqual(len(lines), 1, lines)
            self.assertRegex(lines[0], r"^tlsrpt1 \d+ sts %s\.example\.net starttls-not-supported "
                             r"\S+ mxs\.example\.net 127\.0\.0\.2$" % label)
        lines = self.day_lines(rpt, day, "n.example.net")
        self.assertRegex(lines[0], r" no-policy-found n\.example\.net starttls-not-supported ")

    def test_cached_policy_survives_restart_and_a_failing_host(self):
        cache = os.path.join(harness.new_tmpdir("cache"), "mta-sts.cache")
        z = self.zone()
        srv = self.policy_server()
        d = self.destination(cert=self.mx_cert())
        p = self.start_proxy(z, cache=cache)
        c = self.connect()
        r = c.send_message("legacy@corp.test", ["u@s.example.net"], BODY)
        self.assertEqual([x.code for x in r], [250, 250, 354, 250], r)
        c.cmd("QUIT")
        self.session_ends(p, 1)
        self.assertEqual(p.stop(), 0)
        self.assertTrue(os.path.exists(cache))
        self.assertEqual(srv.count(), 1)

        # The policy host now fails: s keeps its cached policy (its TXT id
        # is unchanged, so nothing is fetched), x has none and its fetch
        # fails, so x goes as without MTA-STS (it would be refused).
        srv.status = 500
        p = self.start_proxy(z, cache=cache)
        c = self.connect()
        r = c.send_message("legacy@corp.test", ["v@s.example.net", "v@x.example.net"], BODY)
        self.assertEqual([x.code for x in r], [250, 250, 250, 354, 250], r)
        c.cmd("QUIT")
        self.assertTrue(d.wait_messages(2))
        kv = self.session_ends(p, 1)
        self.assertEqual(kv["auth"], "mta-sts", kv["_line"])
        self.assertEqual(self.metric(auth="mta-sts", result="ok"), 1)
        self.assertEqual(self.metric(auth="mta-sts", result="fail"), 0)
        self.assertEqual([h for h, _ in srv.requests],
                         ["mta-sts.s.example.net", "mta-sts.x.example.net"])
        self.assertTrue(p.wait_log(r"event=rcpt_sts domain=x\.example\.net result=tempfail", 5))

    def test_policy_host_that_hangs_is_no_policy_at_the_deadline(self):
        # RFC 8461 §3.3: a policy that cannot be fetched, nothing cached:
        # deliver as without MTA-STS. The decision's bound ends the wait.
        z = self.zone()
        srv = self.policy_server()
        d = self.destination(cert=self.mx_cert())
        p = self.start_proxy(z)
        c = self.connect()
        self.assertEqual(c.cmd("MAIL FROM:<legacy@corp.test>").code, 250)
        t0 = time.monotonic()
        r = c.cmd("RCPT TO:<u@h.example.net>", timeout=30)
        took = time.monotonic() - t0
        sys.stderr.write("hanging policy host: %r after %.1f s\n" % (r.lines[0], took))
        self.assertEqual(r.code, 250, r)
        self.assertGreater(took, 9)
        self.assertLess(took, 15)
        self.assertEqual([h for h, _ in srv.requests], ["mta-sts.h.example.net"])
        # The session goes on, and an enforcing domain is still refused.
        r = c.cmd("RCPT TO:<u@x.example.net>", timeout=30)
        self.assertEqual((r.code, r.enhanced), (450, "4.7.5"), r)
        self.assertEqual(c.cmd("QUIT").code, 221)
        kv = self.session_ends(p, 1)
        self.assertEqual(kv["end"], "quit", kv["_line"])
        self.assertEqual(self.rcpts_seen(d), [b"RCPT TO:<u@h.example.net>"])
        self.assertTrue(p.wait_log(r"event=rcpt_sts domain=h\.example\.net result=timeout", 5))
        self.assertFalse(p.wait_log(r"event=rcpt_refused .*domain=h\.example\.net", 0.2))

    def test_client_reset_while_the_policy_is_awaited(self):
        # The request is cancelled with the session: it ends at once and is
        # freed (a request still counted would keep it open).
        z = self.zone()
        srv = self.policy_server()
        self.destination(cert=self.mx_cert())
        p = self.start_proxy(z)
        c = self.connect()
        self.assertEqual(c.cmd("MAIL FROM:<legacy@corp.test>").code, 250)
        c.send(b"RCPT TO:<u@h.example.net>\r\n")
        self.assertTrue(harness.wait_until(lambda: srv.count() == 1, 5), srv.requests)
        t0 = time.monotonic()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()
        kv = self.session_ends(p, 1)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(kv["end"], "client_closed", kv["_line"])
        self.assertFalse(p.wait_log(r"event=rcpt_(refused|auth)", 0.2))
        # The daemon is fine: another session is served.
        c = self.connect()
        self.assertEqual(c.cmd("QUIT").code, 221)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    harness.run_tests()
