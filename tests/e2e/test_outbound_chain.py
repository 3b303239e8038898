"""A real chain through both directions of one daemon:

  swaks (legacy client, plaintext) -> outbound "relay" (policy verify)
      -> inbound "mx" (STARTTLS, certificate for localhost) -> smtp-sink

The middle hop is the proxy talking to itself over TLS, so the message
arrives in smtp-sink's dump directory only if the outbound side upgraded and
verified the inbound side's certificate; the two session lines tell which
security each hop had."""

import shutil
import subprocess
import unittest
import uuid

import harness
import outbound_harness as oh
from harness import ProxyTestCase, SmtpSink


def need(tool):
    if not shutil.which(tool):
        raise unittest.SkipTest("%s not installed" % tool)


class ChainTest(ProxyTestCase):

    def setUp(self):
        super().setUp()
        need("swaks")
        if not SmtpSink.available():
            raise unittest.SkipTest("smtp-sink not installed")
        self.sink = SmtpSink()
        try:
            self.sink.start()
        except RuntimeError as e:
            raise unittest.SkipTest(str(e))
        self.addCleanup(self.sink.stop)
        self.extra_logs = [self.sink.log_path]

    def chain(self, policy="verify", inbound_tls=None, **out_kw):
        """One daemon: inbound "mx" in front of smtp-sink and outbound
        "relay" whose destination is "localhost:<mx port>"."""
        mx = harness.inbound_listener(self.sink.port, name="mx")
        if inbound_tls:
            mx["tls"] = inbound_tls
        relay = oh.outbound_listener("localhost:%d" % harness.listen_port_of(mx), policy,
                                     tls={"ca_file": self.pki.ca}, **out_kw)
        p = self.proxy(oh.outbound_config([relay], inbound=[mx]))
        return p, harness.listen_port_of(relay), harness.listen_port_of(mx)

    def swaks(self, port, tag, *extra):
        cmd = ["swaks", "--server", "127.0.0.1:%d" % port, "--ehlo", "legacy.test",
               "--from", "legacy@corp.test", "--to", "rcpt@sink.test",
               "--header", "Message-Id: <%s@e2e.test>" % tag,
               "--header", "Subject: chain %s" % tag,
               "--body", "chain body %s\n.leading dot\nend" % tag, "--timeout", "15"]
        r = subprocess.run(cmd + list(extra), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=40)
        return r.returncode, r.stdout.decode("utf-8", "replace")

    def lines(self, p, n=2):
        ok = harness.wait_until(lambda: len(p.session_ends()) >= n, 5)
        ends = p.session_ends()
        self.assertTrue(ok, "expected %d session lines:\n%s" % (n, p.log()[-3000:]))
        out = [e for e in ends if e.get("dir") == "out"]
        inn = [e for e in ends if e.get("dir") == "in"]
        self.assertEqual(len(out), 1, ends)
        self.assertEqual(len(inn), 1, ends)
        return out[0], inn[0]

    def test_swaks_through_verified_chain(self):
        tag = uuid.uuid4().hex
        p, relay_port, mx_port = self.chain()
        rc, out = self.swaks(relay_port, tag)
        self.assertEqual(rc, 0, out)
        # swaks saw neither STARTTLS nor a TLS session: it is the legacy side.
        self.assertNotIn("STARTTLS", out)
        self.assertIn("<-  220", out)
        msgs = self.sink.wait_message_containing(tag)
        self.assertTrue(msgs, "message not in smtp-sink's dump directory")
        self.assertIn(b"chain body " + tag.encode(), msgs[0])
        self.assertIn(b"\n.leading dot\n", msgs[0])
        self.assertIn(b"X-Mail-Args: <legacy@corp.test>", msgs[0])
        out_kv, in_kv = self.lines(p)
        self.assertEqual(out_kv["security"], "tls-verified", out_kv["_line"])
        self.assertEqual(out_kv["verified"], "yes", out_kv["_line"])
        self.assertEqual(out_kv["policy"], "verify", out_kv["_line"])
        self.assertEqual(out_kv["destination"], "localhost:%d" % mx_port, out_kv["_line"])
        self.assertEqual(out_kv["end"], "quit", out_kv["_line"])
        self.assertRegex(in_kv["tls"], r"^TLSv1\.[23]$", in_kv["_line"])
        self.assertEqual(in_kv["tls"], out_kv["tls"])
        self.assertEqual(in_kv["cipher"], out_kv["cipher"])
        # The outbound side sent SNI "localhost" to the inbound side.
        self.assertEqual(in_kv["sni"], "localhost", in_kv["_line"])
        self.assertEqual(in_kv["end"], "quit", in_kv["_line"])

    def test_helo_client_through_chain(self):
        tag = uuid.uuid4().hex
        p, relay_port, _ = self.chain()
        rc, out = self.swaks(relay_port, tag, "--protocol", "SMTP")
        self.assertEqual(rc, 0, out)
        self.assertIn("-> HELO legacy.test", out)
        self.assertRegex(out, r"<-  250 [^\n]*\n")
        self.assertNotRegex(out, r"<-  250-", "HELO got a multi-line reply:\n" + out)
        self.assertTrue(self.sink.wait_message_containing(tag))
        out_kv, in_kv = self.lines(p)
        self.assertEqual(out_kv["security"], "tls-verified", out_kv["_line"])

    def test_pipelining_client_through_chain(self):
        tag = uuid.uuid4().hex
        p, relay_port, _ = self.chain(policy="opportunistic")
        rc, out = self.swaks(relay_port, tag, "--pipeline")
        self.assertEqual(rc, 0, out)
        self.assertTrue(self.sink.wait_message_containing(tag))
        out_kv, in_kv = self.lines(p)
        self.assertEqual(out_kv["security"], "tls-verified", out_kv["_line"])
        self.assertRegex(in_kv["tls"], r"^TLSv1\.[23]$", in_kv["_line"])

    def test_verify_refuses_wrong_name_nothing_delivered(self):
        other = oh.certs()["other"]
        tag = uuid.uuid4().hex
        p, relay_port, _ = self.chain(inbound_tls={"certificate": other.cert,
                                                   "key": other.key})
        rc, out = self.swaks(relay_port, tag)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("421 4.7.5", out)
        self.assertRegex(out, r"certificate did not verify")
        out_kv, _ = self.lines(p)
        self.assertEqual(out_kv["end"], "policy_refusal", out_kv["_line"])
        self.assertEqual(self.sink.messages(), [])


if __name__ == "__main__":
    harness.run_tests()
