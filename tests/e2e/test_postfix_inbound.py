"""Inbound with real Postfix on both sides: an "internet" Postfix relays
(relayhost) through the proxy's inbound listener, over STARTTLS or implicit
TLS, to a "legacy" Postfix without TLS, which delivers into a Maildir.

Checked: the message arrives with its body byte for byte and the headers
its author wrote unchanged; the sender's maillog names the TLS version and
cipher, and they are the ones the proxy logged for the session; under
smtp_tls_security_level = verify the sender authenticated the proxy's
certificate by name (and, as a control, refuses when the name does not
match, so the positive cases are not vacuous).

How "verify" finds a name that the certificate (SAN mx.test, localhost,
127.0.0.1) carries, without DNS and without editing /etc/hosts; all three
work with Postfix 3.7:
  - relayhost = [127.0.0.1]:PORT and match=hostname: the "host name" is
    the literal address, and Postfix (OpenSSL's X509_check_host/ip)
    matches it against the IP SAN;
  - relayhost = [localhost]:PORT: with smtp_host_lookup = native the name
    resolves through /etc/hosts to 127.0.0.1, and match=hostname checks
    "localhost" against the DNS SANs;
  - relayhost = [127.0.0.1]:PORT plus an smtp_tls_policy_maps entry
    "[127.0.0.1]:PORT verify match=mx.test": the policy table names the
    certificate name to expect. The same entry with match=other.test is
    the control that Postfix really checks (it defers, nothing is relayed).
"""

import re

import harness
import postfix
from postfix import PostfixTestCase

SENDER = "alice@sender.test"
RCPT = "bob@legacy.test"

TLS_LINE = (r"(Anonymous|Untrusted|Trusted|Verified) TLS connection established to "
            r"%s\[127\.0\.0\.1\]:%d: (TLSv1\.[0-3]) with cipher (\S+)")


class PostfixInboundTest(PostfixTestCase):

    def chain(self, sender_main, tls_mode="starttls", proxy_port=None, **listener):
        """legacy Postfix <- proxy (inbound) <- sender Postfix; returns them."""
        legacy = self.postfix("legacy", domains=["legacy.test"])
        port = proxy_port or harness.free_port()
        self.start(backend_port=legacy.port, listen_port=port, tls_mode=tls_mode, **listener)
        main = {"relayhost": "[127.0.0.1]:%d" % port}
        main.update({k: (v % port if isinstance(v, str) and "%d" in v else v)
                     for k, v in sender_main.items()})
        sender = self.postfix("sender", main=main)
        return sender, self.proxy_, legacy

    def send(self, sender, marker):
        headers, body, whole = postfix.make_message("inbound " + marker, SENDER, RCPT, marker)
        postfix.submit(sender.port, SENDER, [RCPT], whole)
        return headers, body

    def assertDeliveredIntact(self, legacy, headers, body):
        msgs = legacy.wait_messages("legacy.test", 1, timeout=15)
        self.assertEqual(len(msgs), 1, "legacy mailbox: %d messages" % len(msgs))
        got_headers, got_body = postfix.split_delivered(msgs[0])
        self.assertEqual(got_body, body)
        self.assertHeadersIntact(headers, got_headers)
        # The legacy server saw a plaintext session (the proxy's leg).
        received = [l for l in got_headers if l.startswith("\tby legacy.test")]
        self.assertTrue(received and "with ESMTP id" in received[0], got_headers)
        return got_headers

    def assertSenderTls(self, sender, proxy, host, port, trust):
        m = sender.wait_log(TLS_LINE % (re.escape(host), port), 10)
        self.assertTrue(m, "no TLS line in the sender's maillog")
        self.assertIn(m.group(1), trust, m.group(0))
        version, cipher = m.group(2), m.group(3)
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
        self.assertTrue(sender.wait_log(r"to=<%s>, relay=%s\[127\.0\.0\.1\]:%d, .*status=sent"
                                        % (re.escape(RCPT), re.escape(host), port), 10),
                        "sender did not log status=sent via the proxy")
        kv = proxy.wait_session_end(timeout=5)
        self.assertIsNotNone(kv, "no session line from the proxy")
        self.assertEqual(kv["end"], "quit", kv["_line"])
        self.assertEqual(kv["tls"], version, kv["_line"])
        self.assertEqual(kv["cipher"], cipher, kv["_line"])
        return version, cipher

    def test_starttls_encrypt(self):
        sender, proxy, legacy = self.chain({"smtp_tls_security_level": "encrypt"})
        headers, body = self.send(sender, "encrypt")
        self.assertDeliveredIntact(legacy, headers, body)
        # smtp_tls_CAfile is set, so the chain is checked ("Trusted"), the
        # name is not (encrypt).
        self.assertSenderTls(sender, proxy, "127.0.0.1", proxy.port, ("Trusted",))

    def test_starttls_verify_hostname_ip_san(self):
        sender, proxy, legacy = self.chain({
            "smtp_tls_security_level": "verify",
            "smtp_tls_verify_cert_match": "hostname",
        })
        headers, body = self.send(sender, "verify-ip")
        self.assertDeliveredIntact(legacy, headers, body)
        self.assertSenderTls(sender, proxy, "127.0.0.1", proxy.port, ("Verified",))

    def test_starttls_verify_hostname_localhost(self):
        port = harness.free_port()
        sender, proxy, legacy = self.chain({
            "relayhost": "[localhost]:%d",
            "smtp_tls_security_level": "verify",
            "smtp_tls_verify_cert_match": "hostname",
        }, proxy_port=port)
        headers, body = self.send(sender, "verify-localhost")
        self.assertDeliveredIntact(legacy, headers, body)
        self.assertSenderTls(sender, proxy, "localhost", port, ("Verified",))

    def policy_chain(self, match):
        legacy = self.postfix("legacy", domains=["legacy.test"])
        port = harness.free_port()
        self.start(backend_port=legacy.port, listen_port=port)
        sender = self.postfix("sender", start=False, main={
            "relayhost": "[127.0.0.1]:%d" % port,
            "smtp_tls_security_level": "encrypt",
        })
        policy = sender.write_file("tls_policy", "[127.0.0.1]:%d verify match=%s\n"
                                   % (port, match))
        sender.set(smtp_tls_policy_maps="texthash:" + policy)
        sender.start()
        return sender, self.proxy_, legacy

    def test_starttls_verify_policy_map_match(self):
        sender, proxy, legacy = self.policy_chain("mx.test")
        headers, body = self.send(sender, "verify-policy")
        self.assertDeliveredIntact(legacy, headers, body)
        self.assertSenderTls(sender, proxy, "127.0.0.1", proxy.port, ("Verified",))

    def test_verify_name_mismatch_defers(self):
        """Control: a policy that expects other.test: the sender defers
        after the handshake, nothing reaches the legacy server."""
        sender, proxy, legacy = self.policy_chain("other.test")
        self.send(sender, "verify-mismatch")
        self.assertTrue(sender.wait_log(r"status=deferred .*[Ss]erver certificate not verified",
                                        10), "sender did not defer on the name")
        self.assertTrue(sender.wait_queued(5), "message not queued at the sender")
        self.assertEqual(legacy.messages("legacy.test"), [])
        self.assertIsNone(legacy.wait_log(r"client=", 0.2),
                          "a transaction reached the legacy server")

    def test_implicit_tls_wrappermode(self):
        sender, proxy, legacy = self.chain({
            "smtp_tls_security_level": "encrypt",
            "smtp_tls_wrappermode": True,
        }, tls_mode="implicit")
        headers, body = self.send(sender, "implicit")
        self.assertDeliveredIntact(legacy, headers, body)
        self.assertSenderTls(sender, proxy, "127.0.0.1", proxy.port, ("Trusted",))


if __name__ == "__main__":
    harness.run_tests()
