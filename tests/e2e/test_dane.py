"""DANE (RFC 7672) for a fixed destination: `destination = "mx.example.net:PORT"`
with `dane = true`, the proxy's resolver pointed at a DNSSEC-signed
example.net (dnszone.py, nsd on a 127.53.x.y address of its own per test)
whose mx A record is 127.0.0.1, where a ScriptedBackend speaks STARTTLS with
a certificate for mx.example.net from the harness CA. The TLSA records at
_PORT._tcp.mx are computed here from that certificate and the CA (hashlib
over the DER the openssl CLI gives):

  - DANE-EE (3 1 1, the server's SPKI) delivers: security=tls-verified
    auth=dane, outbound_auth_total{auth="dane",result="ok"};
  - DANE-TA (2 0 1, the CA, which the server sends in its chain) delivers
    verified;
  - a TLSA record that matches nothing is refused "421 4.7.5 DANE
    authentication ...": nothing of the mail reaches the destination (no
    MAIL, no RCPT), end=policy_refusal, result="fail";
  - a destination that does not offer STARTTLS is refused with DANE's own
    4.7.5 text;
  - a broken RRSIG over the TLSA RRset: "421 4.4.3", temporary, naming the
    TLSA name and DNSSEC; the destination is never dialled;
  - only unusable records (1 1 1: PKIX-EE): delivered encrypted, not
    authenticated (auth=none), plaintext refused; a configured
    policy = "verify" stays (auth=policy);
  - an explicit `policies` rule for mx.example.net wins over DANE (no TLSA
    lookup, auth=none); so do insecure address records (a trust anchor for
    another zone) and an IP literal destination;
  - enforce = false with a mismatch: delivered, event=auth_refusal_logged,
    result="logged"; with a bogus TLSA RRset the same, under `policy`;
  - "mx.example.net.:PORT" (a trailing dot) authenticates by DANE-TA too.
"""

import hashlib
import os
import random
import subprocess
import time
import unittest

import dnszone
import harness
import outbound_harness as oh
from harness import ProxyTestCase

EHLO = ["mx.example.net", "PIPELINING", "ENHANCEDSTATUSCODES", "STARTTLS"]
BODY = b"Subject: dane\r\n\r\nauthenticated body\r\n"
HOST = "mx.example.net"

_certs = {}
_rng = random.SystemRandom()


def zone_ip():
    """A random 127.53.x.y address: the PID alone does not tell concurrent
    runs apart (every sandbox has its own PID namespace, but they share the
    loopback addresses)."""
    return "127.53.%d.%d" % (_rng.randint(1, 250), _rng.randint(1, 250))


def _der(args):
    return subprocess.run(["openssl"] + args, check=True, stdout=subprocess.PIPE,
                          timeout=30).stdout


def certs():
    """{"mx": leaf for mx.example.net, "chain": leaf + CA in one file,
    "spki": the leaf's SubjectPublicKeyInfo (DER), "ca_der": the CA (DER)}."""
    if not _certs:
        d = harness.new_tmpdir("dane-pki")
        mx = oh._issue(d, "mx-example", HOST, "DNS:" + HOST)
        chain = os.path.join(d, "mx-chain.pem")
        with open(chain, "wb") as f:
            for path in (mx.cert, harness.pki().ca):
                with open(path, "rb") as src:
                    f.write(src.read())
        pub = _der(["x509", "-in", mx.cert, "-pubkey", "-noout"])
        spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                              check=True, stdout=subprocess.PIPE, timeout=30).stdout
        _certs.update(mx=mx, chain=oh.CertKey(chain, mx.key), spki=spki,
                      ca_der=_der(["x509", "-in", harness.pki().ca, "-outform", "DER"]))
    return _certs


def sha256(b):
    return hashlib.sha256(b).hexdigest()


@unittest.skipIf(dnszone.available(), dnszone.available() or "")
class DaneTest(ProxyTestCase):

    def setUp(self):
        super().setUp()
        self.mport = harness.free_port()

    def destination(self, tls="mx", ehlo=EHLO):
        ctx = oh.tls_server_context(certs()[tls]) if tls else None
        return self.backend(name="destination", ehlo=ehlo, tls_ctx=ctx,
                            greeting=b"220 mx.example.net ESMTP\r\n")

    def zone(self, d, *tlsa, broken=()):
        for attempt in range(3):
            z = dnszone.Zone(harness.new_tmpdir("zone"), zone_ip(), port=10053)
            z.set_tlsa("_25._tcp.mx")  # the default record is for port 25
            if tlsa:
                z.set_tlsa("_%d._tcp.mx" % d.port, *tlsa)
            for name, rtype in broken:
                z.break_signature(name, rtype)
            try:
                z.start()
                break
            except (OSError, RuntimeError) as e:  # the address may be taken
                if attempt == 2:
                    self.skipTest("cannot start nsd: %s" % e)
        self.addCleanup(z.stop)
        return z

    def start_out(self, z, d, policy="opportunistic", **extra):
        l = oh.outbound_listener("%s:%d" % (HOST, d.port), policy,
                                 timeouts={"connect": 15, "handshake": 10, "idle": 20})
        l["dane"] = True
        l.update(extra)
        resolver = {"servers": [z.server], "dnssec": "validate",
                    "trust_anchor": z.trust_anchor}
        self.p = self.proxy(oh.outbound_config([l], resolver=resolver,
                                               metrics_listen="127.0.0.1:%d" % self.mport))
        return self.p

    def metric(self, **labels):
        self.assertTrue(harness.wait_until(lambda: harness.is_listening(self.mport), 5))
        status, body = oh.http_get(self.mport, "/metrics")
        self.assertEqual(status, 200, body[:300])
        return oh.metric(oh.parse_metrics(body), "smtp_tls_proxy_outbound_auth_total",
                         listener="relay", **labels)

    def deliver(self, p, d):
        c = harness.Client(p.port, timeout=15)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting().code, 220)
        self.assertEqual(c.ehlo("legacy.example.org").code, 250)
        codes = [r.code for r in c.send_message("a@example.org", ["b@example.net"], BODY)]
        self.assertEqual(codes, [250, 250, 354, 250])
        self.assertTrue(d.wait_messages(1))
        self.assertEqual(c.cmd("QUIT").code, 221)
        kv = p.wait_session_end(c.local_port, timeout=10)
        self.assertIsNotNone(kv, p.log()[-3000:])
        self.assertEqual(kv["end"], "quit", kv["_line"])
        return kv

    def refused_after_ehlo(self, p, d):
        """The client's EHLO gets the proxy's 421; nothing of a mail leaves."""
        c = harness.Client(p.port, timeout=15)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting().code, 220)
        r = c.ehlo("legacy.example.org")
        self.assertEqual(r.code, 421, r)
        c.expect_closed(10)
        kv = p.wait_session_end(c.local_port, timeout=10)
        self.assertIsNotNone(kv, p.log()[-3000:])
        verbs = d.verbs()
        self.assertNotIn(b"MAIL", verbs, d.raw_all())
        self.assertNotIn(b"RCPT", verbs, d.raw_all())
        self.assertEqual(d.messages, [])
        return r, kv

    # -- authenticated -------------------------------------------------------

    def test_dane_ee_spki_delivers_verified(self):
        d = self.destination()
        z = self.zone(d, "3 1 1 " + sha256(certs()["spki"]))
        p = self.start_out(z, d)
        kv = self.deliver(p, d)
        self.assertEqual(kv["security"], "tls-verified", kv["_line"])
        self.assertEqual(kv["auth"], "dane", kv["_line"])
        self.assertEqual(kv["policy"], "dane", kv["_line"])
        self.assertTrue(d.conns[0].tls_version, "the mail did not go over TLS")
        self.assertRegex(p.log(), r"event=tlsa name=_%d\._tcp\.mx\.example\.net dnssec=secure "
                                  r"verdict=authenticate records=1 usable=1" % d.port)
        self.assertRegex(p.log(), r"event=dane result=match-ee")
        self.assertEqual(self.metric(auth="dane", result="ok"), 1)

    def test_dane_ta_of_the_ca_in_the_chain_delivers_verified(self):
        d = self.destination(tls="chain")
        z = self.zone(d, "2 0 1 " + sha256(certs()["ca_der"]))
        p = self.start_out(z, d)
        kv = self.deliver(p, d)
        self.assertEqual(kv["security"], "tls-verified", kv["_line"])
        self.assertEqual(kv["auth"], "dane", kv["_line"])
        self.assertRegex(p.log(), r"event=dane result=match-ta")

    # -- refused -------------------------------------------------------------

    def test_mismatch_is_refused_and_nothing_is_sent(self):
        d = self.destination()
        z = self.zone(d, "3 1 1 " + "ab" * 32)
        p = self.start_out(z, d)
        r, kv = self.refused_after_ehlo(p, d)
        self.assertEqual(r.enhanced, "4.7.5", r)
        self.assertIn("DANE authentication of the destination failed", r.lines[0])
        self.assertEqual(kv["end"], "policy_refusal", kv["_line"])
        self.assertEqual(kv["auth"], "dane", kv["_line"])
        self.assertNotEqual(kv["security"], "tls-verified", kv["_line"])
        self.assertTrue(p.wait_log(r"event=tls_failed .*reason=\"certificate verify failed: "
                                   r"DANE no-match"), p.log()[-3000:])
        self.assertEqual(self.metric(auth="dane", result="fail"), 1)

    def test_stripped_starttls_is_refused(self):
        d = self.destination(ehlo=EHLO[:-1])  # no STARTTLS offered
        z = self.zone(d, "3 1 1 " + sha256(certs()["spki"]))
        p = self.start_out(z, d)
        r, kv = self.refused_after_ehlo(p, d)
        self.assertEqual(r.enhanced, "4.7.5", r)
        self.assertIn("publishes DANE TLSA records", r.lines[0])
        self.assertEqual(kv["end"], "policy_refusal", kv["_line"])
        self.assertEqual(kv["security"], "plaintext", kv["_line"])

    def test_bogus_tlsa_is_a_temporary_refusal(self):
        d = self.destination()
        name = "_%d._tcp.mx" % d.port
        z = self.zone(d, "3 1 1 " + sha256(certs()["spki"]), broken=[(name, "TLSA")])
        p = self.start_out(z, d)
        c = harness.Client(p.port, timeout=15)
        self.addCleanup(c.close)
        r = c.read_reply(15)
        self.assertEqual(r.code, 421, r)
        self.assertEqual(r.enhanced, "4.4.3", r)
        self.assertIn("_%d._tcp.mx.example.net" % d.port, r.lines[0])
        self.assertIn("DNSSEC", r.lines[0])
        c.expect_closed(10)
        kv = p.wait_session_end(c.local_port, timeout=10)
        self.assertIsNotNone(kv, p.log()[-3000:])
        self.assertEqual(kv["end"], "dnssec_bogus", kv["_line"])
        self.assertEqual(d.conns, [], "the destination was dialled")
        self.assertTrue(p.wait_log(r"event=tlsa_failed .*dns=dnssec_bogus"), p.log()[-3000:])

    # -- DANE does not authenticate ------------------------------------------

    def test_unusable_records_only_encrypt_without_auth(self):
        d = self.destination()
        z = self.zone(d, "1 1 1 " + sha256(certs()["spki"]))
        p = self.start_out(z, d)
        kv = self.deliver(p, d)
        self.assertEqual(kv["auth"], "none", kv["_line"])
        self.assertEqual(kv["policy"], "required", kv["_line"])
        self.assertEqual(kv["security"], "tls-unverified", kv["_line"])
        self.assertTrue(p.wait_log(r"event=dane_unusable destination=mx\.example\.net:%d"
                                   % d.port), p.log()[-3000:])

    def test_unusable_records_refuse_plaintext(self):
        d = self.destination(ehlo=EHLO[:-1])
        z = self.zone(d, "1 1 1 " + sha256(certs()["spki"]))
        p = self.start_out(z, d)
        r, kv = self.refused_after_ehlo(p, d)
        self.assertEqual(r.enhanced, "4.7.5", r)
        self.assertEqual(kv["policy"], "required", kv["_line"])

    def test_unusable_records_keep_a_configured_verify(self):
        # verify against the harness CA: the mx.example.net certificate
        # passes PKIX, so the session is verified by policy, not DANE.
        d = self.destination()
        z = self.zone(d, "1 1 1 " + sha256(certs()["spki"]))
        p = self.start_out(z, d, policy="verify", tls={"ca_file": harness.pki().ca})
        kv = self.deliver(p, d)
        self.assertEqual(kv["policy"], "verify", kv["_line"])
        self.assertEqual(kv["auth"], "policy", kv["_line"])
        self.assertEqual(kv["security"], "tls-verified", kv["_line"])
        self.assertEqual(self.metric(auth="policy", result="ok"), 1)

    def test_explicit_policies_rule_wins_over_dane(self):
        d = self.destination()
        z = self.zone(d, "3 1 1 " + "ab" * 32)  # would be refused under DANE
        p = self.start_out(z, d, policies=[{"match": HOST, "policy": "required"}])
        kv = self.deliver(p, d)
        self.assertEqual(kv["policy"], "required", kv["_line"])
        self.assertEqual(kv["auth"], "none", kv["_line"])
        self.assertEqual(kv["security"], "tls-unverified", kv["_line"])
        self.assertNotIn("event=tlsa ", p.log())

    def test_insecure_addresses_mean_no_dane(self):
        # A trust anchor for another zone: example.net validates to
        # insecure (RFC 7672 section 2.2.2: no TLSA lookup, `policy` applies).
        d = self.destination()
        z = self.zone(d, "3 1 1 " + "ab" * 32)
        ta = os.path.join(z.dir, "other-anchor.ds")
        with open(ta, "w") as f:
            f.write("example.org. 3600 IN DS 12345 13 2 %s\n" % ("cd" * 32))
        z.trust_anchor = ta
        p = self.start_out(z, d)
        kv = self.deliver(p, d)
        self.assertEqual(kv["auth"], "none", kv["_line"])
        self.assertEqual(kv["policy"], "opportunistic", kv["_line"])
        self.assertRegex(p.log(), r"event=resolved destination=mx\.example\.net:\d+ "
                                  r"dnssec=insecure")
        self.assertNotIn("event=tlsa", p.log())

    def test_ip_literal_destination_has_no_tlsa(self):
        d = self.destination()
        l = oh.outbound_listener("127.0.0.1:%d" % d.port, "opportunistic")
        l["dane"] = True
        p = self.proxy(oh.outbound_config([l]))
        kv = self.deliver(p, d)
        self.assertEqual(kv["auth"], "none", kv["_line"])
        self.assertNotIn("event=tlsa", p.log())

    # -- enforce = false -----------------------------------------------------

    def test_enforce_false_mismatch_delivers_and_logs(self):
        d = self.destination()
        z = self.zone(d, "3 1 1 " + "ab" * 32)
        p = self.start_out(z, d, enforce=False)
        kv = self.deliver(p, d)
        self.assertEqual(kv["policy"], "opportunistic", kv["_line"])
        self.assertEqual(kv["auth"], "dane", kv["_line"])
        self.assertEqual(kv["security"], "tls-unverified", kv["_line"])
        self.assertTrue(p.wait_log(r"event=auth_refusal_logged destination=mx\.example\.net:%d "
                                   r"auth=dane why=\"DANE no-match" % d.port), p.log()[-3000:])
        self.assertEqual(self.metric(auth="dane", result="logged"), 1)
        self.assertEqual(self.metric(auth="dane", result="fail"), 0)

    def test_enforce_false_bogus_tlsa_delivers_and_logs(self):
        d = self.destination()
        name = "_%d._tcp.mx" % d.port
        z = self.zone(d, "3 1 1 " + sha256(certs()["spki"]), broken=[(name, "TLSA")])
        p = self.start_out(z, d, enforce=False)
        kv = self.deliver(p, d)
        self.assertEqual(kv["policy"], "opportunistic", kv["_line"])
        self.assertEqual(kv["auth"], "none", kv["_line"])
        self.assertTrue(p.wait_log(r"event=auth_refusal_logged .*auth=dane why=\"TLSA records "
                                   r"failed DNSSEC validation\""), p.log()[-3000:])
        self.assertEqual(self.metric(auth="dane", result="logged"), 1)

    def test_trailing_dot_destination(self):
        # DANE-TA: the name check is where a trailing dot would bite.
        d = self.destination(tls="chain")
        z = self.zone(d, "2 0 1 " + sha256(certs()["ca_der"]))
        p = self.start_out(z, d, destination="%s.:%d" % (HOST, d.port))
        kv = self.deliver(p, d)
        self.assertEqual(kv["security"], "tls-verified", kv["_line"])
        self.assertEqual(kv["auth"], "dane", kv["_line"])


if __name__ == "__main__":
    unittest.main()
