"""Outbound with real Postfix on both sides: a legacy Postfix without TLS
sends through the proxy's outbound listener (relayhost = [127.0.0.1]:PORT,
destination = "localhost:DESTPORT") to a destination Postfix that offers
STARTTLS with the harness certificate (SAN mx.test, localhost, 127.0.0.1;
"localhost" resolves through /etc/hosts, so "verify" checks a real name).

Checked, under each policy: the message arrives intact; the destination's
maillog shows a TLS session from the proxy with the version and cipher the
proxy logged. With STARTTLS withdrawn at the destination (smtpd_tls_
security_level = none, postfix reload), "required" and "verify" make the
legacy Postfix defer on the proxy's 421 4.7.5 (its log has the text, its
queue the message, the destination nothing); when TLS comes back (reload,
postqueue -f) the message leaves exactly once. "opportunistic" delivers in
plaintext instead.
"""

import re
import time

import harness
import outbound_harness
import postfix
from postfix import PostfixTestCase

SENDER = "erin@legacy.test"
RCPT = "frank@dest.test"

DEST_TLS = r"TLS connection established from \S+\[127\.0\.0\.1\]: (TLSv1\.[0-3]) with cipher (\S+)"


class PostfixOutboundTest(PostfixTestCase):

    def chain(self, policy, trust_test_ca=True):
        """legacy Postfix -> proxy (outbound, policy) -> destination Postfix.
        trust_test_ca: the listener's tls.ca_file is the harness CA (else the
        default, the system's CAs, which do not know it)."""
        dest = self.postfix("dest", domains=["dest.test"], tls=True)
        listener = outbound_harness.outbound_listener(
            "localhost:%d" % dest.port, policy=policy,
            tls={"ca_file": self.pki.ca} if trust_test_ca else None)
        self.proxy_ = self.proxy(outbound_harness.outbound_config([listener]))
        legacy = self.postfix("legacy", main={
            "relayhost": "[127.0.0.1]:%d" % harness.listen_port_of(listener),
        })
        return legacy, self.proxy_, dest

    def send(self, legacy, marker):
        headers, body, whole = postfix.make_message("outbound " + marker, SENDER, RCPT, marker)
        postfix.submit(legacy.port, SENDER, [RCPT], whole)
        return headers, body

    def assertDelivered(self, dest, headers, body, count=1):
        msgs = dest.wait_messages("dest.test", count, timeout=15)
        self.assertEqual(len(msgs), count, "destination mailbox: %d messages" % len(msgs))
        got_headers, got_body = postfix.split_delivered(msgs[-1])
        self.assertEqual(got_body, body)
        self.assertHeadersIntact(headers, got_headers)
        return got_headers

    def session(self, proxy, end="quit"):
        kv = harness.wait_until(
            lambda: next((k for k in proxy.session_ends() if k.get("end") == end), None), 5)
        self.assertIsNotNone(kv, "no end=%s session line: %r" % (end, proxy.session_ends()))
        return kv

    def deliver_over_tls(self, policy, security, trust_test_ca=True):
        legacy, proxy, dest = self.chain(policy, trust_test_ca)
        headers, body = self.send(legacy, "tls-" + policy)
        got = self.assertDelivered(dest, headers, body)
        m = dest.wait_log(DEST_TLS, 5)
        self.assertTrue(m, "destination logged no TLS session")
        kv = self.session(proxy)
        self.assertEqual(kv["policy"], policy, kv["_line"])
        self.assertEqual(kv["security"], security, kv["_line"])
        self.assertEqual(kv["tls"], m.group(1), kv["_line"])
        self.assertEqual(kv["cipher"], m.group(2), kv["_line"])
        if security == "tls-verified":
            self.assertEqual(kv["verified"], "yes", kv["_line"])
        else:
            self.assertNotIn(kv["verified"], ("yes", "-", ""), kv["_line"])
        # The destination's Received header: ESMTPS (TLS), from the proxy.
        self.assertTrue(any("with ESMTPS id" in l for l in got), got)
        self.assertTrue(legacy.wait_log(r"to=<%s>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, "
                                        r".*status=sent" % re.escape(RCPT), 5))
        return legacy, proxy, dest

    # The session line reports what was achieved, whatever the policy
    # demanded: a chain the listener's ca_file trusts is "tls-verified".

    def test_opportunistic_tls(self):
        self.deliver_over_tls("opportunistic", "tls-verified")

    def test_required_tls(self):
        self.deliver_over_tls("required", "tls-verified")

    def test_required_tls_untrusted_chain(self):
        """required does not authenticate: with the system's CAs (which do
        not know the test CA) the mail still goes, encrypted."""
        self.deliver_over_tls("required", "tls-unverified", trust_test_ca=False)

    def test_verify_tls(self):
        self.deliver_over_tls("verify", "tls-verified")

    # STARTTLS withdrawn, then back

    def withdraw_tls(self, dest):
        dest.set(smtpd_tls_security_level="none")
        dest.reload()

    def restore_tls(self, dest):
        dest.set(smtpd_tls_security_level="may")
        dest.reload()

    def defer_until_tls_returns(self, policy):
        legacy, proxy, dest = self.chain(policy)
        self.withdraw_tls(dest)
        headers, body = self.send(legacy, "withdrawn-" + policy)
        m = legacy.wait_log(r"to=<%s>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*"
                            r"status=deferred \((.*421 4\.7\.5 .*)\)" % re.escape(RCPT), 10)
        self.assertTrue(m, "legacy Postfix did not defer with 421 4.7.5")
        queued = legacy.wait_queued(5)
        self.assertTrue(queued, "message not in the legacy queue")
        self.assertIn(RCPT, legacy.queue_text())
        self.assertIn("421 4.7.5", legacy.queue_text())
        kv = self.session(proxy, end="policy_refusal")
        self.assertEqual(kv["policy"], policy, kv["_line"])
        self.assertEqual(kv["security"], "plaintext", kv["_line"])
        # Nothing of the message went to the destination.
        self.assertEqual(dest.messages("dest.test"), [])
        self.assertIsNone(dest.wait_log(r"[0-9A-F]+: client=", 0.1))

        self.restore_tls(dest)
        legacy.flush()
        got = self.assertDelivered(dest, headers, body)
        self.assertTrue(any("with ESMTPS id" in l for l in got), got)
        self.assertTrue(legacy.wait_queue_empty(10), legacy.queue_text())
        # Exactly once: no second copy shows up, and the legacy Postfix
        # logged one status=sent.
        time.sleep(1.0)
        self.assertEqual(len(dest.messages("dest.test")), 1)
        sent = re.findall(r"to=<%s>, .*status=sent" % re.escape(RCPT), legacy.log())
        self.assertEqual(len(sent), 1, sent)
        ends = [k for k in proxy.session_ends() if k.get("end") == "quit"]
        self.assertTrue(ends and ends[-1]["security"] in ("tls-unverified", "tls-verified"),
                        [k["_line"] for k in proxy.session_ends()])

    def test_required_defers_without_starttls(self):
        self.defer_until_tls_returns("required")

    def test_verify_defers_without_starttls(self):
        self.defer_until_tls_returns("verify")

    def test_opportunistic_without_starttls_plaintext(self):
        legacy, proxy, dest = self.chain("opportunistic")
        self.withdraw_tls(dest)
        headers, body = self.send(legacy, "withdrawn-opportunistic")
        got = self.assertDelivered(dest, headers, body)
        self.assertTrue(any("with ESMTP id" in l for l in got), got)
        kv = self.session(proxy)
        self.assertEqual(kv["security"], "plaintext", kv["_line"])
        self.assertIsNone(dest.wait_log(DEST_TLS, 0.1))


if __name__ == "__main__":
    harness.run_tests()
