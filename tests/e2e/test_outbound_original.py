"""destination = "original": transparent interception with iptables REDIRECT
and SO_ORIGINAL_DST (IPv4) / IP6T_SO_ORIGINAL_DST (IPv6).

Everything happens in a throw-away network namespace (root, iproute2 and the
iptables nat table needed; otherwise the tests are skipped with the reason):

  client 127.0.0.3 --connect--> 127.0.0.2:2525      (the "real" destination)
      nat OUTPUT: -s 127.0.0.3 -d 127.0.0.2 --dport 2525 -j REDIRECT --to-ports 10025
  proxy on 127.0.0.1:10025 reads the original destination and dials
      127.0.0.2:2525 itself (from 127.0.0.1, which the rule does not match)

and the same with fd00::3 -> fd00::2 and the proxy on [::1]:10025. The
client and the scripted destination are sockets made inside the namespace
from this process (setns(2) on a helper thread); the daemon runs there with
"ip netns exec". The namespace is deleted after the tests, also on failure.

Connecting straight to an "original" listener, without a REDIRECT, must get
"421 4.3.0" (the original destination would be the proxy itself)."""

import atexit
import signal
import socket
import subprocess
import sys
import time
import unittest

import harness
import outbound_harness as oh
from harness import ProxyTestCase

PLAIN_EHLO = ["dest.test", "PIPELINING", "SIZE 52428800", "ENHANCEDSTATUSCODES", "8BITMIME"]
TLS_EHLO = PLAIN_EHLO + ["STARTTLS"]
GREETING = b"220 dest.test ESMTP original\r\n"
BODY = b"Subject: intercepted\r\n\r\nintercepted body\r\n"

DEST4, CLIENT4 = "127.0.0.2", "127.0.0.3"
DEST6, CLIENT6 = "fd00::2", "fd00::3"
DEST_PORT, PROXY_PORT = 2525, 10025


def _skip(reason):
    sys.stderr.write("SKIP: %s\n" % reason)
    raise unittest.SkipTest(reason)


class DirectConnectionTest(ProxyTestCase):
    """No namespace needed: a client that reaches an "original" listener
    without being redirected."""

    def test_direct_connection_gets_421_430(self):
        l = oh.outbound_listener("original")
        p = self.proxy(oh.outbound_config([l]))
        c = harness.Client(harness.listen_port_of(l))
        self.addCleanup(c.close)
        r = c.read_reply(5)
        self.assertEqual(r.code, 421, r)
        self.assertEqual(r.enhanced, "4.3.0", r)
        self.assertIn("No original destination", r.lines[0])
        c.expect_closed(5)
        kv = p.wait_session_end(c.local_port)
        self.assertIsNotNone(kv, p.log()[-2000:])
        self.assertEqual(kv["end"], "no_destination", kv["_line"])
        self.assertTrue(p.wait_log(r"event=no_destination", 2))


class OriginalDstTest(ProxyTestCase):
    """REDIRECTed clients in a network namespace."""

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
        # tearDownClass does not run when setUpClass fails, and a killed
        # run skips both: atexit and the stale-namespace sweep cover those.
        atexit.register(ns.delete)
        try:
            cls._rules(ns)
        except BaseException:
            ns.delete()
            cls.ns = None
            raise

    @classmethod
    def _rules(cls, ns):
        try:
            ns.try_rule("iptables", ["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-s", CLIENT4,
                                     "-d", DEST4, "--dport", str(DEST_PORT), "-j", "REDIRECT",
                                     "--to-ports", str(PROXY_PORT)])
        except oh.NetnsUnavailable as e:
            _skip("iptables REDIRECT: %s" % e)
        try:
            for a in (DEST6, CLIENT6):
                ns.must(["ip", "-6", "addr", "add", a + "/128", "dev", "lo", "nodad"])
            ns.try_rule("ip6tables", ["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-s", CLIENT6,
                                      "-d", DEST6, "--dport", str(DEST_PORT), "-j", "REDIRECT",
                                      "--to-ports", str(PROXY_PORT)])
            cls.v6 = True
        except (oh.NetnsUnavailable, RuntimeError) as e:
            cls.v6_reason = str(e)
            sys.stderr.write("IPv6 interception unavailable: %s\n" % e)

    @classmethod
    def tearDownClass(cls):
        if cls.ns is not None:
            cls.ns.delete()
            cls.ns = None

    # -- pieces -------------------------------------------------------------

    def destination(self, family=socket.AF_INET, tls=None, **kw):
        host = DEST4 if family == socket.AF_INET else DEST6
        ctx = oh.tls_server_context(oh.certs()[tls]) if tls else None
        kw.setdefault("ehlo", TLS_EHLO if tls else PLAIN_EHLO)
        b = self.ns.run_in(lambda: oh.BoundBackend(host, DEST_PORT, family, name="destination",
                                                   greeting=GREETING, tls_ctx=ctx, **kw))
        b.start()
        self._backends.append(b)
        self.addCleanup(b.stop)
        return b

    def start_proxy(self, **listener):
        ls = [oh.outbound_listener("original", name="relay",
                                   listen="127.0.0.1:%d" % PROXY_PORT, **listener)]
        if self.v6:
            ls.append(oh.outbound_listener("original", name="relay6",
                                           listen="[::1]:%d" % PROXY_PORT, **listener))
        p = oh.NetnsProxy(self.ns, oh.outbound_config(ls), name=self.id())
        self._proxies.append(p)
        self.addCleanup(p.stop)
        p.start()
        return p

    def connect(self, dest, port, source=None, family=socket.AF_INET):
        """A harness.Client whose socket was made and connected inside the
        namespace."""
        def mk():
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.settimeout(5)
                if source:
                    s.bind((source, 0))
                s.connect((dest, port))
                return s
            except BaseException:
                s.close()
                raise
        c = harness.Client(port, host=dest, connect=False)
        c.sock = self.ns.run_in(mk)
        self.addCleanup(c.close)
        return c

    def need_v6(self):
        if not self.v6:
            _skip("IPv6 interception: %s" % self.v6_reason)

    def intercepted_delivery(self, family, dest, client_src, log_dest):
        d = self.destination(family)
        p = self.start_proxy()
        c = self.connect(dest, DEST_PORT, client_src, family)
        g = c.greeting()
        self.assertEqual(g.raw, GREETING)
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code, 250, r)
        self.assertNotIn("STARTTLS", r.keywords())
        replies = c.send_message("legacy@corp.test", ["ext@dest.test"], BODY)
        self.assertEqual([x.code for x in replies], [250, 250, 354, 250])
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(d.messages[0].data, BODY)
        self.assertEqual(len(d.conns), 1)
        # The destination was reached by the proxy, not by the client.
        self.assertNotEqual(d.conns[0].peer[0], client_src)
        ends = harness.wait_until(lambda: [e for e in p.session_ends()
                                           if e.get("dir") == "out"], 5)
        self.assertTrue(ends, p.log()[-2000:])
        kv = ends[0]
        self.assertEqual(kv["destination"], log_dest, kv["_line"])
        self.assertIn(client_src, kv["client"], kv["_line"])
        self.assertEqual(kv["end"], "quit", kv["_line"])
        return d, p, kv

    # -- tests --------------------------------------------------------------

    def test_ipv4_redirect_reaches_original_destination(self):
        d, p, kv = self.intercepted_delivery(socket.AF_INET, DEST4, CLIENT4,
                                             "%s:%d" % (DEST4, DEST_PORT))
        self.assertEqual(kv["listener"], "relay")
        self.assertEqual(kv["security"], "plaintext", kv["_line"])
        self.assertEqual(d.conns[0].commands[0], b"EHLO legacy.test")

    def test_ipv4_redirect_verify_by_address(self):
        # The destination has no name, only its original address: verify
        # checks the certificate against that IP.
        d = self.destination(socket.AF_INET, tls="netns")
        p = self.start_proxy(policy="verify", tls={"ca_file": harness.pki().ca})
        c = self.connect(DEST4, DEST_PORT, CLIENT4)
        self.assertEqual(c.greeting().code, 220)
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        replies = c.send_message("legacy@corp.test", ["ext@dest.test"], BODY)
        self.assertEqual([x.code for x in replies], [250, 250, 354, 250])
        c.cmd("QUIT")
        self.assertTrue(d.wait_messages(1))
        self.assertIsNotNone(d.conns[0].tls_version)
        kv = p.wait_session_end(c.local_port)
        self.assertIsNotNone(kv, p.log()[-2000:])
        self.assertEqual(kv["security"], "tls-verified", kv["_line"])
        self.assertEqual(kv["destination"], "%s:%d" % (DEST4, DEST_PORT), kv["_line"])

    def test_ipv4_redirect_verify_refuses_other_address(self):
        # A certificate valid for 127.0.0.1 (and localhost) but not for the
        # original destination 127.0.0.2.
        d = self.destination(socket.AF_INET, tls="trusted")
        p = self.start_proxy(policy="verify", tls={"ca_file": harness.pki().ca})
        c = self.connect(DEST4, DEST_PORT, CLIENT4)
        self.assertEqual(c.greeting().code, 220)
        r = c.ehlo("legacy.test")
        self.assertEqual(r.code, 421, r)
        self.assertIn("certificate did not verify", r.lines[0])
        c.expect_closed(5)
        self.assertNotIn(b"MAIL", d.raw_all())
        kv = p.wait_session_end(c.local_port)
        self.assertEqual(kv["end"], "policy_refusal", kv["_line"])

    def test_ipv4_policy_rule_on_original_address(self):
        d = self.destination(socket.AF_INET)
        p = self.start_proxy(policies=[{"match": DEST4, "policy": "required"}])
        c = self.connect(DEST4, DEST_PORT, CLIENT4)
        self.assertEqual(c.greeting().code, 220)
        c.send(b"EHLO legacy.test\r\nMAIL FROM:<legacy@corp.test>\r\n")
        r = c.read_reply()
        self.assertEqual(r.code, 421, r)
        self.assertEqual(r.enhanced, "4.7.5", r)
        c.expect_closed(5)
        time.sleep(0.2)
        self.assertNotIn(b"MAIL", d.raw_all())
        kv = p.wait_session_end(c.local_port)
        self.assertEqual(kv["policy"], "required", kv["_line"])
        self.assertEqual(kv["end"], "policy_refusal", kv["_line"])

    def test_ipv4_unredirected_client_in_namespace_gets_421_430(self):
        d = self.destination(socket.AF_INET)
        p = self.start_proxy()
        c = self.connect("127.0.0.1", PROXY_PORT, CLIENT4)
        r = c.read_reply(5)
        self.assertEqual(r.code, 421, r)
        self.assertEqual(r.enhanced, "4.3.0", r)
        c.expect_closed(5)
        time.sleep(0.2)
        self.assertEqual(d.conns, [], "the proxy dialled something")
        kv = p.wait_session_end(c.local_port)
        self.assertEqual(kv["end"], "no_destination", kv["_line"])

    def test_ipv6_redirect_reaches_original_destination(self):
        self.need_v6()
        d, p, kv = self.intercepted_delivery(socket.AF_INET6, DEST6, CLIENT6,
                                             "[%s]:%d" % (DEST6, DEST_PORT))
        self.assertEqual(kv["listener"], "relay6")

    def test_ipv6_redirect_with_starttls(self):
        self.need_v6()
        d = self.destination(socket.AF_INET6, tls="netns")
        p = self.start_proxy(policy="verify", tls={"ca_file": harness.pki().ca})
        c = self.connect(DEST6, DEST_PORT, CLIENT6, socket.AF_INET6)
        self.assertEqual(c.greeting().code, 220)
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        replies = c.send_message("legacy@corp.test", ["ext@dest.test"], BODY)
        self.assertEqual([x.code for x in replies], [250, 250, 354, 250])
        c.cmd("QUIT")
        self.assertTrue(d.wait_messages(1))
        self.assertIsNotNone(d.conns[0].tls_version)
        kv = p.wait_session_end(c.local_port)
        self.assertIsNotNone(kv, p.log()[-2000:])
        self.assertEqual(kv["security"], "tls-verified", kv["_line"])
        self.assertEqual(kv["destination"], "[%s]:%d" % (DEST6, DEST_PORT), kv["_line"])

    def test_ipv6_unredirected_client_gets_421_430(self):
        self.need_v6()
        d = self.destination(socket.AF_INET6)
        self.start_proxy()
        c = self.connect("::1", PROXY_PORT, CLIENT6, socket.AF_INET6)
        r = c.read_reply(5)
        self.assertEqual(r.code, 421, r)
        self.assertEqual(r.enhanced, "4.3.0", r)
        c.expect_closed(5)
        self.assertEqual(d.conns, [])


if __name__ == "__main__":
    # Bazel ends a test that runs too long with SIGTERM: turn it into an
    # exception so tearDownClass still deletes the namespace.
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    harness.run_tests()
