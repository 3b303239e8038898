"""DANE per recipient for `destination = "original"` with `dane = true`.

The namespace and REDIRECT of test_outbound_original (client 127.0.0.3 ->
127.0.0.2:2525, redirected to the proxy on 127.0.0.1:10025), plus the signed
example.net of dnszone.py served by nsd inside the same namespace (on
127.0.0.53: the namespace's loopback is its own). The destination speaks
STARTTLS with the "netns" certificate (CA-signed for 127.0.0.2). The zone:

  a.example.net  MX mxa   mxa A 127.0.0.2   _2525._tcp.mxa TLSA 3 1 1 <nothing>
  b.example.net  MX mxb   mxb A 127.0.0.2   _2525._tcp.mxb TLSA 3 1 1 <its SPKI>
  c.example.net  MX mxc   mxc A 127.0.0.9   (another host: DANE does not apply)
  d.example.net  MX mxb, its RRSIG broken (bogus)
  m.example.net  MX 10 mxc, MX 20 mxb            (mxa, mxb also AAAA fd00::2)
  n.example.net  nothing (NXDOMAIN: DANE does not apply)

One transaction with a recipient in a and one in b: a gets "450 4.7.5" naming
DANE and the mismatch, b is delivered, and the destination sees exactly one
RCPT; auth=dane on the session line; outbound_auth_total counts one "fail"
and one "ok". Bogus MX: "450 4.4.3", temporary. A destination without
STARTTLS: b refused (DANE requires TLS), n delivered. enforce = false: both
delivered, the refusal logged (result=logged) and counted "logged". A name
server that stops answering (INPUT dropped): 450 4.4.3 after the decision's
10 s bound, and the session goes on. A `policies` verify rule for a domain:
the chain must be valid for a name under it. Also: the connected host as the
second of two MX hosts (m.example.net), IPv6 (fd00::3 -> fd00::2, AAAA), a
half-closed client behind pending decisions, a reset while one is pending.
"""

import atexit
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

import dnszone
import harness
import outbound_harness as oh
from harness import ProxyTestCase

DEST, CLIENT = "127.0.0.2", "127.0.0.3"
DEST6, CLIENT6 = "fd00::2", "fd00::3"
DEST_PORT, PROXY_PORT = 2525, 10025
NS_IP = "127.0.0.53"
GREETING = b"220 dest.test ESMTP original\r\n"
PLAIN_EHLO = ["dest.test", "PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"]
TLS_EHLO = PLAIN_EHLO + ["STARTTLS"]
BODY = b"Subject: per recipient\r\n\r\nper-recipient body\r\n"


def _skip(reason):
    sys.stderr.write("SKIP: %s\n" % reason)
    raise unittest.SkipTest(reason)


def spki_sha256(cert):
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"], check=True,
                         stdout=subprocess.PIPE, timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, stdout=subprocess.PIPE, timeout=30).stdout
    return hashlib.sha256(der).hexdigest()


@unittest.skipIf(dnszone.available(), dnszone.available() or "")
class DaneOriginalTest(ProxyTestCase):
    ns = None
    v6 = False
    v6_reason = ""

    @classmethod
    def setUpClass(cls):
        oh.Netns.remove_stale()
        ns = oh.Netns()
        try:
            ns.create()
        except oh.NetnsUnavailable as e:
            _skip("network namespace: %s" % e)
        except (OSError, subprocess.SubprocessError) as e:
            _skip("network namespace: %r" % (e,))
        cls.ns = ns
        atexit.register(ns.delete)
        try:
            ns.try_rule("iptables", ["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-s", CLIENT,
                                     "-d", DEST, "--dport", str(DEST_PORT), "-j", "REDIRECT",
                                     "--to-ports", str(PROXY_PORT)])
        except oh.NetnsUnavailable as e:
            ns.delete()
            cls.ns = None
            _skip("iptables REDIRECT: %s" % e)
        except BaseException:
            ns.delete()
            cls.ns = None
            raise
        cls.v6 = False
        try:
            for a in (DEST6, CLIENT6):
                ns.must(["ip", "-6", "addr", "add", a + "/128", "dev", "lo", "nodad"])
            ns.try_rule("ip6tables", ["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-s", CLIENT6,
                                      "-d", DEST6, "--dport", str(DEST_PORT), "-j", "REDIRECT",
                                      "--to-ports", str(PROXY_PORT)])
            cls.v6 = True
        except (oh.NetnsUnavailable, RuntimeError) as e:
            cls.v6_reason = str(e)

    @classmethod
    def tearDownClass(cls):
        if cls.ns is not None:
            cls.ns.delete()
            cls.ns = None

    # -- pieces -------------------------------------------------------------

    def zone(self):
        z = dnszone.Zone(harness.new_tmpdir("zone"), NS_IP, netns=self.ns)
        z.set_tlsa("_25._tcp.mx")
        good = spki_sha256(oh.certs()["netns"].cert)
        for name, host, addr in (("a", "mxa", DEST), ("b", "mxb", DEST), ("c", "mxc", "127.0.0.9")):
            z.add(name, "MX", "10 %s.%s." % (host, dnszone.ORIGIN))
            z.add(host, "A", addr)
        for host in ("mxa", "mxb"):
            z.add(host, "AAAA", DEST6)
        z.add("d", "MX", "10 mxb.%s." % dnszone.ORIGIN)
        # Two MX hosts; the connected address is the second's.
        z.add("m", "MX", "10 mxc.%s." % dnszone.ORIGIN)
        z.add("m", "MX", "20 mxb.%s." % dnszone.ORIGIN)
        z.set_tlsa("_%d._tcp.mxa" % DEST_PORT, "3 1 1 " + "00" * 32)
        z.set_tlsa("_%d._tcp.mxb" % DEST_PORT, "3 1 1 " + good)
        z.set_tlsa("_%d._tcp.mxc" % DEST_PORT, "3 1 1 " + "00" * 32)
        z.break_signature("d", "MX")
        try:
            z.start()
        except (OSError, RuntimeError) as e:
            self.skipTest("cannot start nsd: %s" % e)
        self.addCleanup(z.stop)
        return z

    def destination(self, tls=True, cert=None, family=socket.AF_INET):
        ctx = oh.tls_server_context(cert or oh.certs()["netns"]) if tls else None
        host = DEST if family == socket.AF_INET else DEST6
        b = self.ns.run_in(lambda: oh.BoundBackend(host, DEST_PORT, family,
                                                   name="destination", greeting=GREETING,
                                                   tls_ctx=ctx,
                                                   ehlo=TLS_EHLO if tls else PLAIN_EHLO))
        b.start()
        self._backends.append(b)
        self.addCleanup(b.stop)
        return b

    def start_proxy(self, z, enforce=True, tls_rpt=None, **extra):
        self.mport = harness.free_port()
        l = oh.outbound_listener("original", name="relay", listen="127.0.0.1:%d" % PROXY_PORT,
                                 timeouts={"connect": 15, "handshake": 10, "idle": 30}, **extra)
        l["dane"] = True
        if not enforce:
            l["enforce"] = False
        top = {}
        if tls_rpt is not None:  # a directory: results recorded there
            l["tls_rpt"] = True
            top["tls_rpt"] = {"directory": tls_rpt, "contact": "tlsrpt@corp.test"}
        resolver = {"servers": [z.server], "dnssec": "validate", "trust_anchor": z.trust_anchor}
        ls = [l]
        if self.v6:
            l6 = dict(l, name="relay6", listen="[::1]:%d" % PROXY_PORT)
            ls.append(l6)
        cfg = oh.outbound_config(ls, resolver=resolver,
                                 metrics_listen="127.0.0.1:%d" % self.mport, log_level="debug",
                                 **top)
        p = oh.NetnsProxy(self.ns, cfg, name=self.id())
        self._proxies.append(p)
        self.addCleanup(p.stop)
        p.start()
        return p

    def connect(self, family=socket.AF_INET):
        src, dst = (CLIENT, DEST) if family == socket.AF_INET else (CLIENT6, DEST6)

        def mk():
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.settimeout(5)
                s.bind((src, 0))
                s.connect((dst, DEST_PORT))
                return s
            except BaseException:
                s.close()
                raise
        c = harness.Client(DEST_PORT, host=dst, connect=False, timeout=20)
        c.sock = self.ns.run_in(mk)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting().raw, GREETING)
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        return c

    def metric(self, listener="relay", **labels):
        def get():
            return oh.http_get(self.mport, "/metrics")
        status, body = self.ns.run_in(get)
        self.assertEqual(status, 200, body[:300])
        return oh.metric(oh.parse_metrics(body), "smtp_tls_proxy_outbound_auth_total",
                         listener=listener, **labels)

    def rcpts_seen(self, d):
        return [x for conn in d.conns for x in conn.commands if x.upper().startswith(b"RCPT")]

    def session_end(self, p):
        ends = harness.wait_until(lambda: [e for e in p.session_ends()
                                           if e.get("dir") == "out"], 10)
        self.assertTrue(ends, p.log()[-3000:])
        return ends[0]

    # -- tests --------------------------------------------------------------

    def test_mismatch_refused_match_delivered(self):
        z = self.zone()
        d = self.destination()
        p = self.start_proxy(z)
        c = self.connect()
        r = c.send_message("legacy@corp.test", ["u@a.example.net", "v@B.Example.Net"], BODY,
                           pipelining=True)
        self.assertEqual([x.code for x in r], [250, 450, 250, 354, 250], r)
        self.assertEqual(r[1].enhanced, "4.7.5", r[1])
        self.assertIn("DANE", r[1].lines[0])
        self.assertIn("TLSA", r[1].lines[0])
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(d.messages[0].data, BODY)
        self.assertEqual(self.rcpts_seen(d), [b"RCPT TO:<v@B.Example.Net>"])
        self.assertIsNotNone(d.conns[0].tls_version)
        kv = self.session_end(p)
        self.assertEqual(kv["auth"], "dane", kv["_line"])
        self.assertEqual(kv["end"], "quit", kv["_line"])
        self.assertTrue(p.wait_log(r"event=rcpt_refused .*domain=a\.example\.net auth=dane "
                                   r"result=refused why=", 5), p.log()[-3000:])
        self.assertFalse(p.wait_log(r"event=rcpt_refused .*domain=b\.example\.net", 0.2))
        self.assertNotIn("dane_not_applied", p.log())
        self.assertEqual(self.metric(auth="dane", result="fail"), 1)
        self.assertEqual(self.metric(auth="dane", result="ok"), 1)

    def test_tls_rpt_one_line_per_recipient_domain(self):
        # tls_rpt = true: each recipient domain's decision is recorded once
        # in <dir>/<UTC day>/<domain> (day-file lines, tlsrpt.h): tlsa where
        # DANE decided, no-policy-found where it does not apply.
        z = self.zone()
        d = self.destination()
        rpt = harness.new_tmpdir("tls-rpt-dir")
        p = self.start_proxy(z, tls_rpt=rpt)
        c = self.connect()
        t0 = int(time.time())
        r = c.send_message("legacy@corp.test", ["u@a.example.net", "v@B.Example.Net",
                                                "w@b.example.net", "x@c.example.net",
                                                "y@n.example.net", "z@d.example.net"], BODY)
        self.assertEqual([x.code for x in r], [250, 450, 250, 250, 250, 250, 450, 354, 250], r)
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.session_end(p)
        day = time.strftime("%Y-%m-%d", time.gmtime(t0))
        if day != time.strftime("%Y-%m-%d", time.gmtime(time.time())):
            self.skipTest("midnight")
        ip = r"127\.\d+\.\d+\.\d+"
        want = {
            "a": r"tlsa a\.example\.net tlsa-invalid %s mxa\.example\.net 127\.0\.0\.2" % ip,
            "b": r"tlsa b\.example\.net success %s mxb\.example\.net 127\.0\.0\.2" % ip,
            "c": r"no-policy-found c\.example\.net success %s - 127\.0\.0\.2" % ip,
            "n": r"no-policy-found n\.example\.net success %s - 127\.0\.0\.2" % ip,
            "d": r"tlsa d\.example\.net dnssec-invalid %s - 127\.0\.0\.2" % ip,
        }
        for name, rx in want.items():
            path = "%s/%s/%s.example.net" % (rpt, day, name)
            self.assertTrue(harness.wait_until(lambda: os.path.exists(path), 5), path)
            with open(path) as f:
                lines = f.read().splitlines()
            self.assertEqual(len(lines), 1, lines)  # b twice: one session, one line
            self.assertRegex(lines[0], r"^tlsrpt1 \d+ %s$" % rx)

    def test_second_mx_host_is_the_connected_one(self):
        z = self.zone()
        d = self.destination()
        p = self.start_proxy(z)
        c = self.connect()
        r = c.send_message("legacy@corp.test", ["u@m.example.net"], BODY)
        self.assertEqual([x.code for x in r], [250, 250, 354, 250], r)
        self.assertTrue(d.wait_messages(1))
        c.cmd("QUIT")
        kv = self.session_end(p)
        self.assertEqual(kv["auth"], "dane", kv["_line"])
        self.assertTrue(p.wait_log(r"event=rcpt_auth domain=m\.example\.net auth=dane", 5))

    def test_ipv6_by_aaaa(self):
        if not self.v6:
            self.skipTest("IPv6 interception: %s" % self.v6_reason)
        z = self.zone()
        d = self.destination(family=socket.AF_INET6)
        p = self.start_proxy(z)
        c = self.connect(socket.AF_INET6)
        r = c.send_message("legacy@corp.test", ["u@a.example.net", "v@b.example.net"], BODY,
                           pipelining=True)
        self.assertEqual([x.code for x in r], [250, 450, 250, 354, 250], r)
        self.assertEqual(r[1].enhanced, "4.7.5", r[1])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(self.rcpts_seen(d), [b"RCPT TO:<v@b.example.net>"])
        c.cmd("QUIT")
        kv = self.session_end(p)
        self.assertEqual(kv["auth"], "dane", kv["_line"])
        self.assertEqual(kv["listener"], "relay6", kv["_line"])
        self.assertEqual(self.metric("relay6", auth="dane", result="ok"), 1)

    def test_other_host_and_no_dane_delivered(self):
        # c's MX host is not the connected address, n has no DNS at all.
        z = self.zone()
        d = self.destination()
        p = self.start_proxy(z)
        c = self.connect()
        r = c.send_message("legacy@corp.test", ["u@c.example.net", "v@n.example.net"], BODY)
        self.assertEqual([x.code for x in r], [250, 250, 250, 354, 250], r)
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(len(self.rcpts_seen(d)), 2)
        c.cmd("QUIT")
        kv = self.session_end(p)
        self.assertEqual(kv["auth"], "none", kv["_line"])

    def test_bogus_mx_is_temporary(self):
        z = self.zone()
        d = self.destination()
        p = self.start_proxy(z)
        c = self.connect()
        r = c.send_message("legacy@corp.test", ["u@d.example.net", "v@b.example.net"], BODY)
        self.assertEqual([x.code for x in r], [250, 450, 250, 354, 250], r)
        self.assertEqual(r[1].enhanced, "4.4.3", r[1])
        self.assertIn("DNSSEC", r[1].lines[0])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(self.rcpts_seen(d), [b"RCPT TO:<v@b.example.net>"])
        c.cmd("QUIT")
        self.assertTrue(p.wait_log(r"event=rcpt_refused .*domain=d\.example\.net auth=dane "
                                   r"result=refused", 5), p.log()[-3000:])

    def test_no_starttls_refuses_dane_domain_only(self):
        z = self.zone()
        d = self.destination(tls=False)
        p = self.start_proxy(z)
        c = self.connect()
        r = c.send_message("legacy@corp.test", ["u@b.example.net", "v@n.example.net"], BODY)
        self.assertEqual([x.code for x in r], [250, 450, 250, 354, 250], r)
        self.assertEqual(r[1].enhanced, "4.7.5", r[1])
        self.assertIn("STARTTLS", r[1].lines[0])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(self.rcpts_seen(d), [b"RCPT TO:<v@n.example.net>"])
        c.cmd("QUIT")
        kv = self.session_end(p)
        self.assertEqual(kv["security"], "plaintext", kv["_line"])

    def test_only_refused_recipients_data_gets_servers_answer(self):
        z = self.zone()
        d = self.destination()
        p = self.start_proxy(z)
        c = self.connect()
        r = c.send_message("legacy@corp.test", ["u@a.example.net"], BODY)
        self.assertEqual(r[0].code, 250, r)
        self.assertEqual(r[1].code, 450, r)
        # The destination has no recipient: its answer to DATA, not ours.
        self.assertEqual(r[2].code // 100, 5, r)
        self.assertEqual(self.rcpts_seen(d), [])
        self.assertIn(b"DATA", d.raw_all())
        c.cmd("QUIT")

    def test_verify_rule_for_recipient_domain(self):
        # A `policies` rule naming the domain comes first (no DNS): verify
        # wants the chain valid for the domain or a name below it.
        cert = oh._issue(harness.new_tmpdir("pki"), "mx-v", "mx.v.example.net",
                         "DNS:mx.v.example.net,IP:127.0.0.2")
        z = self.zone()
        d = self.destination(cert=cert)
        p = self.start_proxy(z, tls={"ca_file": harness.pki().ca},
                             policies=[{"match": "v.example.net", "policy": "verify"},
                                       {"match": "q.example.net", "policy": "verify"},
                                       {"match": "a.example.net", "policy": "opportunistic"}])
        c = self.connect()
        r = c.send_message("legacy@corp.test",
                           ["u@v.example.net", "u@q.example.net", "u@a.example.net"], BODY)
        self.assertEqual([x.code for x in r], [250, 250, 450, 250, 354, 250], r)
        self.assertEqual(r[2].enhanced, "4.7.5", r[2])
        self.assertIn("certificate for the domain", r[2].lines[0])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(self.rcpts_seen(d), [b"RCPT TO:<u@v.example.net>",
                                              b"RCPT TO:<u@a.example.net>"])
        c.cmd("QUIT")
        kv = self.session_end(p)
        self.assertEqual(kv["auth"], "policy", kv["_line"])
        self.assertTrue(p.wait_log(r"event=rcpt_refused .*domain=q\.example\.net auth=policy "
                                   r"result=refused", 5), p.log()[-3000:])
        # The rule for a.example.net wins over its mismatching TLSA records.
        self.assertFalse(p.wait_log(r"event=rcpt_refused .*domain=a\.example\.net", 0.2))

    def test_unanswered_dns_is_temporary(self):
        # The name server stops answering (dropped on INPUT: the resolver
        # gets no error, only silence): the decision is bounded, 4.4.3.
        z = self.zone()
        d = self.destination()
        p = self.start_proxy(z)
        c = self.connect()
        self.assertEqual(c.cmd("MAIL FROM:<legacy@corp.test>").code, 250)
        for proto in ("udp", "tcp"):
            self.ns.must(["iptables", "-I", "INPUT", "-p", proto, "-d", NS_IP, "--dport", "53",
                          "-j", "DROP"])
        self.addCleanup(lambda: [self.ns.exec(["iptables", "-D", "INPUT", "-p", proto, "-d",
                                               NS_IP, "--dport", "53", "-j", "DROP"])
                                 for proto in ("udp", "tcp")])
        t0 = time.monotonic()
        r = c.cmd("RCPT TO:<u@b.example.net>", timeout=30)
        took = time.monotonic() - t0
        self.assertEqual(r.code, 450, r)
        self.assertEqual(r.enhanced, "4.4.3", r)
        sys.stderr.write("unanswered DNS: %r after %.1f s\n" % (r.lines[0], took))
        self.assertIn("timed out", r.lines[0])
        self.assertGreater(took, 9)
        self.assertLess(took, 15)
        self.assertEqual(self.rcpts_seen(d), [])
        # The session goes on: other commands are answered.
        self.assertEqual(c.cmd("RSET").code, 250)
        self.assertEqual(c.cmd("QUIT").code, 221)
        # The cancelled lookups no longer count: the session ends and is freed.
        kv = self.session_end(p)
        self.assertEqual(kv["end"], "quit", kv["_line"])
        self.assertTrue(p.wait_log(r"event=rcpt_refused .*domain=b\.example\.net auth=dane "
                                   r'result=refused why="the lookups did not finish in time"', 5))

    def test_pending_decisions_and_client_half_close(self):
        # Everything pipelined, then the client's half of the connection
        # closes while the first decision is still pending: every reply
        # still comes, in order.
        z = self.zone()
        d = self.destination()
        p = self.start_proxy(z)
        c = self.connect()
        c.send(b"MAIL FROM:<legacy@corp.test>\r\nRCPT TO:<u@a.example.net>\r\n"
               b"RCPT TO:<v@b.example.net>\r\nRSET\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        codes = [c.read_reply(15).code for _ in range(5)]
        self.assertEqual(codes, [250, 450, 250, 250, 221])
        c.expect_closed(5)
        self.assertEqual(self.rcpts_seen(d), [b"RCPT TO:<v@b.example.net>"])
        kv = self.session_end(p)
        self.assertEqual(kv["end"], "quit", kv["_line"])

    def test_client_reset_while_pending(self):
        # The lookups are cancelled with the session: it ends at once, not
        # when the decision's bound would have run out.
        z = self.zone()
        self.destination()
        p = self.start_proxy(z)
        c = self.connect()
        self.assertEqual(c.cmd("MAIL FROM:<legacy@corp.test>").code, 250)
        self.ns.must(["iptables", "-I", "INPUT", "-p", "udp", "-d", NS_IP, "-j", "DROP"])
        self.addCleanup(self.ns.exec, ["iptables", "-D", "INPUT", "-p", "udp", "-d", NS_IP,
                                       "-j", "DROP"])
        c.send(b"RCPT TO:<u@b.example.net>\r\n")
        self.assertTrue(p.wait_log(r"event=rcpt_lookup domain=b\.example\.net", 5),
                        p.log()[-2000:])
        t0 = time.monotonic()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()
        kv = self.session_end(p)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(kv["end"], "client_closed", kv["_line"])
        self.assertFalse(p.wait_log(r"event=rcpt_refused", 0.2))

    def test_enforce_false_logs_and_delivers(self):
        z = self.zone()
        d = self.destination()
        p = self.start_proxy(z, enforce=False)
        c = self.connect()
        r = c.send_message("legacy@corp.test", ["u@a.example.net", "v@b.example.net"], BODY)
        self.assertEqual([x.code for x in r], [250, 250, 250, 354, 250], r)
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(len(self.rcpts_seen(d)), 2)
        c.cmd("QUIT")
        self.assertTrue(p.wait_log(r"event=rcpt_refused .*domain=a\.example\.net auth=dane "
                                   r"result=logged", 5), p.log()[-3000:])
        self.assertEqual(self.metric(auth="dane", result="logged"), 1)
        self.assertEqual(self.metric(auth="dane", result="fail"), 0)
        self.assertEqual(self.metric(auth="dane", result="ok"), 1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    harness.run_tests()
