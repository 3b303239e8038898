"""Outbound opportunistic delivery takes any encryption over plaintext (RFC
7435): a destination that speaks only TLS 1.0, or TLS 1.2 with CBC suites
only, is delivered to over TLS on the first connection; `required` keeps the
strict list (TLS 1.2+, forward-secret AEAD) and refuses such a destination."""

import ssl

import harness
import outbound_harness as oh
from test_outbound import GREETING, TLS_EHLO, OutboundCase


class LenientTest(OutboundCase):

    def old_destination(self, version=None, ciphers=None):
        ctx = oh.tls_server_context(oh.certs()["trusted"])
        # OpenSSL 3 refuses TLS 1.0 and SHA-1 signatures above level 0.
        ctx.set_ciphers((ciphers or "DEFAULT") + ":@SECLEVEL=0")
        if version is not None:
            ctx.minimum_version = version
            ctx.maximum_version = version
        return self.backend(name="destination", tls_ctx=ctx, greeting=GREETING,
                            ehlo=TLS_EHLO)

    def delivered_over(self, d, p, version):
        c = self.client()
        c.ehlo("legacy.test")
        self.assertEqual(self.deliver(c), [250, 250, 354, 250])
        conn = self.assertDeliveredOverTls(d)
        self.assertEqual(len(d.conns), 1, "no fallback reconnection expected")
        self.assertEqual(conn.tls_version, version)
        kv = self.session_line(p, c)
        self.assertTrue(kv["security"].startswith("tls-"), kv["_line"])
        self.assertNotIn("tls_fallback", p.log())
        return kv

    def test_tls10_only_destination_encrypted(self):
        d = self.old_destination(ssl.TLSVersion.TLSv1)
        p = self.start_out(d, policy="opportunistic")
        kv = self.delivered_over(d, p, "TLSv1")
        self.assertEqual(kv["tls"], "TLSv1", kv["_line"])

    def test_cbc_only_destination_encrypted(self):
        d = self.old_destination(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA")
        p = self.start_out(d, policy="opportunistic")
        kv = self.delivered_over(d, p, "TLSv1.2")
        self.assertEqual(kv["cipher"], "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", kv["_line"])

    def test_required_keeps_the_strict_list(self):
        for version, ciphers in ((ssl.TLSVersion.TLSv1, None),
                                 (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA")):
            d = self.old_destination(version, ciphers)
            p = self.start_out(d, policy="required")
            c = self.client()
            self.refused(c, d)
            p.stop()


if __name__ == "__main__":
    harness.run_tests()
