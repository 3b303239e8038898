"""Outbound: destination certificates (verify, the unverified outcomes of
opportunistic and required), per-destination policy rules (address, CIDR,
name), and the policy metrics. The fixture is outbound_case.py."""

import harness
import outbound_harness as oh
from outbound_case import (
    OutboundCase,
    other_pki,
)


class CertificateTest(OutboundCase):
    """(c), (d): verify checks chain and name; opportunistic and required
    encrypt anyway and say the certificate was not verified."""

    def test_verify_localhost_trusted(self):
        sni = []
        d = self.destination(sni_log=sni)
        p = self.start_out(d, policy="verify", host="localhost", tls={"ca_file": self.pki.ca})
        c = self.client()
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        self.assertEqual(sni, ["localhost"])
        kv = self.session_line(p, c)
        self.assertSecurity(kv, "tls-verified", policy="verify")
        self.assertEqual(kv["destination"], "localhost:%d" % d.port)

    def test_verify_ip_destination_against_ip_san(self):
        sni = []
        d = self.destination(sni_log=sni)
        p = self.start_out(d, policy="verify", tls={"ca_file": self.pki.ca})
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        # RFC 6066 §3: no address in SNI.
        self.assertEqual(sni, [None])
        self.assertSecurity(self.session_line(p, c), "tls-verified", policy="verify")

    def assertCertRefused(self, d, p):
        c = self.client()
        r = self.refused(c, d)
        self.assertIn("certificate did not verify", r.lines[0])
        self.assertEqual(d.verbs(), [b"EHLO", b"STARTTLS"], d.commands_all())
        self.assertEqual(len(d.conns), 1)
        kv = self.session_line(p, c, quit=False)
        self.assertEqual(kv["policy"], "verify", kv["_line"])
        self.assertEqual(kv["end"], "policy_refusal", kv["_line"])
        self.assertNotEqual(kv["security"], "tls-verified", kv["_line"])
        return kv

    def test_verify_refuses_name_mismatch(self):
        d = self.destination(tls="other")
        p = self.start_out(d, policy="verify", host="localhost", tls={"ca_file": self.pki.ca})
        self.assertCertRefused(d, p)
        self.assertRegex(p.log(), r"(?i)event=tls_failed .*(host ?name|mismatch)")

    def test_verify_refuses_self_signed(self):
        d = self.destination(tls="selfsigned")
        p = self.start_out(d, policy="verify", host="localhost", tls={"ca_file": self.pki.ca})
        self.assertCertRefused(d, p)
        self.assertRegex(p.log(), r"event=tls_failed .*certificate")

    def test_verify_refuses_expired(self):
        d = self.destination(tls="expired")
        p = self.start_out(d, policy="verify", host="localhost", tls={"ca_file": self.pki.ca})
        self.assertCertRefused(d, p)
        self.assertRegex(p.log(), r"(?i)event=tls_failed .*expired")

    def test_opportunistic_expired_encrypts_unverified(self):
        kv = self.opportunistic_unverified("expired")
        self.assertRegex(kv["verified"], r"(?i)expired", kv["_line"])

    def test_verify_refuses_foreign_ca(self):
        d = self.destination(tls=other_pki())
        p = self.start_out(d, policy="verify", tls={"ca_file": self.pki.ca})
        self.assertCertRefused(d, p)

    def opportunistic_unverified(self, tls, policy="opportunistic"):
        self.sni = []
        d = self.destination(tls=tls, sni_log=self.sni)
        p = self.start_out(d, policy=policy, host="localhost", tls={"ca_file": self.pki.ca})
        c = self.client()
        self.assertEqual(c.ehlo("legacy.test").code, 250)
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        self.assertEqual(len(d.conns), 1, "a certificate problem must not cause a fallback")
        kv = self.session_line(p, c)
        self.assertSecurity(kv, "tls-unverified", policy=policy)
        self.assertNotIn("tls_fallback", p.log())
        return kv

    def test_opportunistic_name_mismatch_encrypts_unverified(self):
        kv = self.opportunistic_unverified("other")
        self.assertEqual(self.sni, ["localhost"])
        self.assertRegex(kv["verified"], r"(?i)host ?name|mismatch", kv["_line"])

    def test_opportunistic_self_signed_encrypts_unverified(self):
        self.opportunistic_unverified("selfsigned")

    def test_required_self_signed_encrypts_unverified(self):
        self.opportunistic_unverified("selfsigned", policy="required")

    def test_required_foreign_ca_delivers(self):
        d = self.destination(tls=other_pki())
        p = self.start_out(d, policy="required")
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertDeliveredOverTls(d)
        self.assertSecurity(self.session_line(p, c), "tls-unverified", policy="required")


class PolicyRulesTest(OutboundCase):
    """(g) policies = ( { match; policy; } ) overrides the listener's policy."""

    def test_address_rule_requires(self):
        d = self.destination(tls=None)
        p = self.start_out(d, policies=[{"match": "127.0.0.1", "policy": "required"}])
        c = self.client()
        self.refused(c, d)
        kv = self.session_line(p, c, quit=False)
        self.assertEqual(kv["policy"], "required", kv["_line"])

    def test_cidr_rule_requires(self):
        d = self.destination(tls=None)
        self.start_out(d, policies=[{"match": "127.0.0.0/8", "policy": "required"}])
        self.refused(self.client(), d)

    def test_name_rule_requires(self):
        d = self.destination(tls=None)
        p = self.start_out(d, host="localhost",
                           policies=[{"match": "localhost", "policy": "required"}])
        c = self.client()
        self.refused(c, d)
        kv = self.session_line(p, c, quit=False)
        self.assertEqual(kv["policy"], "required", kv["_line"])
        self.assertEqual(kv["destination"], "localhost:%d" % d.port, kv["_line"])

    def test_address_rule_applies_to_named_destination(self):
        # The name resolves to 127.0.0.1; rules may name either.
        d = self.destination(tls=None)
        self.start_out(d, host="localhost",
                       policies=[{"match": "127.0.0.1", "policy": "required"}])
        self.refused(self.client(), d)

    def test_non_matching_rules_keep_default(self):
        d = self.destination(tls=None)
        p = self.start_out(d, host="localhost",
                           policies=[{"match": "mx.example.net", "policy": "required"},
                                     {"match": ".example.org", "policy": "verify"},
                                     {"match": "192.0.2.0/24", "policy": "required"}])
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        kv = self.session_line(p, c)
        self.assertSecurity(kv, "plaintext", policy="opportunistic")

    def test_name_rule_ignored_for_address_destination(self):
        # Destination given as an address: there is no name to match.
        d = self.destination(tls=None)
        p = self.start_out(d, policies=[{"match": "localhost", "policy": "required"}])
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertSecurity(self.session_line(p, c), "plaintext", policy="opportunistic")

    def test_rule_relaxes_to_none(self):
        d = self.destination()
        p = self.start_out(d, policy="required", host="localhost",
                           policies=[{"match": "localhost", "policy": "none"}])
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertNotIn(b"STARTTLS", d.verbs())
        self.assertSecurity(self.session_line(p, c), "plaintext", policy="none")

    def test_rule_selects_verify(self):
        d = self.destination(tls="other")
        p = self.start_out(d, host="localhost", tls={"ca_file": self.pki.ca},
                           policies=[{"match": "localhost", "policy": "verify"}])
        c = self.client()
        r = self.refused(c, d)
        self.assertIn("certificate did not verify", r.lines[0])
        kv = self.session_line(p, c, quit=False)
        self.assertEqual(kv["policy"], "verify", kv["_line"])


class MetricsTest(OutboundCase):

    def setUp(self):
        super().setUp()
        self.mport = harness.free_port()

    def metrics(self):
        ok = harness.wait_until(lambda: harness.is_listening(self.mport), 5)
        self.assertTrue(ok, "metrics listener not up")
        status, body = oh.http_get(self.mport, "/metrics")
        self.assertEqual(status, 200, body[:500])
        return oh.parse_metrics(body)

    def test_policy_refusals_counted(self):
        plain = self.destination(tls=None)
        bad_cert = self.destination(tls="other")
        relay = oh.outbound_listener("127.0.0.1:%d" % plain.port, "required")
        strict = oh.outbound_listener("localhost:%d" % bad_cert.port, "verify", name="strict",
                                      tls={"ca_file": self.pki.ca})
        self.proxy_ = p = self.proxy(oh.outbound_config(
            [relay, strict], metrics_listen="127.0.0.1:%d" % self.mport))
        name = "smtp_tls_proxy_policy_refusals_total"
        for _ in range(2):
            c = harness.Client(harness.listen_port_of(relay))
            self.addCleanup(c.close)
            c.greeting()
            self.refused(c, plain)
        c = harness.Client(harness.listen_port_of(strict))
        self.addCleanup(c.close)
        c.greeting()
        self.refused(c, bad_cert)
        self.assertTrue(harness.wait_until(lambda: len(p.session_ends()) >= 3, 5))
        s = self.metrics()
        self.assertEqual(oh.metric(s, name, listener="relay", policy="required"), 2, s)
        self.assertEqual(oh.metric(s, name, listener="strict", policy="verify"), 1, s)
        self.assertEqual(oh.metric(s, name, listener="relay", policy="verify"), 0)

    def test_successful_session_counts_no_refusal(self):
        d = self.destination()
        self.start_out(d)
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        self.session_line(self.proxy_, c)
        s = self.metrics()
        self.assertEqual(oh.metric(s, "smtp_tls_proxy_policy_refusals_total"), 0)
        self.assertGreaterEqual(oh.metric(s, "smtp_tls_proxy_starttls_total",
                                          listener="relay", result="ok"), 1, s)


if __name__ == "__main__":
    harness.run_tests()
