"""TLS-RPT results recorded by outbound sessions (RFC 8460 §4): the daemon
with a `tls_rpt` block and outbound listeners with `tls_rpt = true`, in
front of ScriptedBackends reached as mx.example.net (a DNSSEC-signed zone
from dnszone.py with TLSA records per port, as test_dane.py). Each session
leaves one line in <directory>/<UTC day>/mx.example.net, in the day-file
form of proxy/policy/tlsrpt.h:

    tlsrpt1 TIME TYPE DOMAIN RESULT SENDING-IP MX-HOST RECEIVING-IP

  - DANE-EE matching (3 1 1 of the server's SPKI): tlsa success, with the
    usable records as policy-string in .policy/mx.example.net.tlsa;
  - a TLSA record matching nothing (refused): tlsa tlsa-invalid;
  - a broken RRSIG over the TLSA RRset (refused before dialling): tlsa
    dnssec-invalid, with no sending address (nothing was connected);
  - dane = false and a destination without STARTTLS (delivered in
    plaintext): no-policy-found starttls-not-supported;
  - the reporter (tlsrpt_cli send, as test_tls_rpt) mails that day's report
    to the _smtp._tls.mx rua with those counts and the policy-string;
  - a listener without tls_rpt = true records nothing, nor does policy
    "none" (TLS is never tried);
  - policy = "verify" without DANE: a certificate for another name, an
    expired one and a self-signed one are no-policy-found
    certificate-host-mismatch, certificate-expired and
    certificate-not-trusted; a good one success;
  - an opportunistic fallback to plaintext is one session: STARTTLS refused
    is starttls-not-supported, a handshake cut short validation-failure.
"""

import email
import email.policy
import gzip
import json
import os
import re
import subprocess
import time
import unittest

import dnszone
import harness
import outbound_harness as oh
import test_dane as td
import test_tls_rpt as tr
from harness import ProxyTestCase

HOST = td.HOST
RUA = "tlsrpt@mx.example.net"
CONTACT = "tlsrpt@example.org"
LINE = re.compile(r"^tlsrpt1 (\d+) (tlsa|sts|no-policy-found) (\S+) (\S+) (\S+) (\S+) (\S+)$")


def day_text(t):
    return time.strftime("%Y-%m-%d", time.gmtime(t))


@unittest.skipIf(dnszone.available(), dnszone.available() or "")
class TlsRptSessionsTest(ProxyTestCase):

    def destination(self, starttls=True, cert=None, actions=None):
        ehlo = td.EHLO if starttls else td.EHLO[:-1]
        return self.backend(name="destination", ehlo=ehlo, actions=actions,
                            tls_ctx=oh.tls_server_context(cert or td.certs()["mx"]),
                            greeting=b"220 mx.example.net ESMTP\r\n")

    def zone(self, tlsa, broken):
        for attempt in range(3):
            z = dnszone.Zone(harness.new_tmpdir("zone"), td.zone_ip(), port=10053)
            z.set_tlsa("_25._tcp.mx")
            z.add("_smtp._tls.mx", "TXT", '"v=TLSRPTv1; rua=mailto:%s"' % RUA)
            for port, rdata in tlsa:
                z.set_tlsa("_%d._tcp.mx" % port, rdata)
            for port in broken:
                z.break_signature("_%d._tcp.mx" % port, "TLSA")
            try:
                z.start()
                break
            except (OSError, RuntimeError) as e:
                if attempt == 2:
                    self.skipTest("cannot start nsd: %s" % e)
        self.addCleanup(z.stop)
        return z

    def listener(self, name, d, dane=True, rpt=True, policy="opportunistic", tls=None):
        l = oh.outbound_listener("%s:%d" % (HOST, d.port), policy, name=name, tls=tls,
                                 timeouts={"connect": 15, "handshake": 10, "idle": 20})
        l["dane"] = dane
        if rpt:
            l["tls_rpt"] = True
        return l

    def session(self, p, port, delivered):
        c = harness.Client(port, timeout=15)
        self.addCleanup(c.close)
        r = c.read_reply(15)
        if r.code == 220:
            r = c.ehlo("legacy.example.org")
        if delivered:
            self.assertEqual(r.code, 250, r)
            codes = [x.code for x in c.send_message("a@example.org", ["b@example.net"],
                                                     b"Subject: rpt\r\n\r\nbody\r\n")]
            self.assertEqual(codes, [250, 250, 354, 250])
            self.assertEqual(c.cmd("QUIT").code, 221)
        else:
            self.assertEqual(r.code, 421, r)
            c.expect_closed(10)
        kv = p.wait_session_end(c.local_port, timeout=15)
        self.assertIsNotNone(kv, p.log()[-3000:])
        return kv

    def read_lines(self, path, n):
        def enough():
            try:
                with open(path) as f:
                    return len(f.read().splitlines()) >= n
            except OSError:
                return False
        harness.wait_until(enough, 15)
        with open(path) as f:
            return f.read().splitlines()

    def test_results_of_sessions_in_the_day_file(self):
        d_ok, d_bad, d_bogus = self.destination(), self.destination(), self.destination()
        d_plain, d_off, d_none = (self.destination(starttls=False), self.destination(),
                                  self.destination())
        spki = "3 1 1 " + td.sha256(td.certs()["spki"])
        z = self.zone([(d_ok.port, spki), (d_bad.port, "3 1 1 " + "ab" * 32),
                       (d_bogus.port, spki), (d_off.port, spki)], broken=[d_bogus.port])
        rpt = harness.new_tmpdir("tls-rpt-dir")
        ls = [self.listener("ok", d_ok), self.listener("bad", d_bad),
              self.listener("bogus", d_bogus), self.listener("plain", d_plain, dane=False),
              self.listener("off", d_off, rpt=False),
              self.listener("none", d_none, dane=False, policy="none")]
        resolver = {"servers": [z.server], "dnssec": "validate",
                    "trust_anchor": z.trust_anchor}
        t0 = int(time.time())
        p = self.proxy(oh.outbound_config(ls, resolver=resolver, tls_rpt={
            "directory": rpt, "contact": CONTACT, "organization": "Example Inc"}))
        ports = p.listen_ports()

        # First the listener without tls_rpt and the one with policy none
        # (TLS never tried): a line of theirs would come before the others.
        self.assertEqual(self.session(p, ports[4], True)["auth"], "dane")
        self.assertEqual(self.session(p, ports[5], True)["security"], "plaintext")
        self.assertEqual(self.session(p, ports[0], True)["auth"], "dane")
        self.assertEqual(self.session(p, ports[1], False)["end"], "policy_refusal")
        self.assertEqual(self.session(p, ports[2], False)["end"], "dnssec_bogus")
        self.assertEqual(self.session(p, ports[3], True)["security"], "plaintext")
        t1 = int(time.time())

        day = day_text(t0) if day_text(t0) == day_text(t1) else self.skipTest("midnight")
        path = os.path.join(rpt, day, HOST)
        lines = self.read_lines(path, 4)
        got = []
        for line in lines:
            m = LINE.match(line)
            self.assertIsNotNone(m, line)
            self.assertTrue(t0 <= int(m.group(1)) <= t1 + 1, line)
            self.assertEqual(m.group(3), HOST, line)
            got.append(m.groups()[1:2] + m.groups()[3:])
        # One line per recorded session, in the order they ended; none for "off".
        self.assertEqual(got, [
            ("tlsa", "success", "127.0.0.1", HOST, "127.0.0.1"),
            ("tlsa", "tlsa-invalid", "127.0.0.1", HOST, "127.0.0.1"),
            ("tlsa", "dnssec-invalid", "-", HOST, "127.0.0.1"),
            ("no-policy-found", "starttls-not-supported", "127.0.0.1", HOST, "127.0.0.1"),
        ], "\n".join(lines))
        # The TLSA record the attempts were made under, as policy-string:
        # one text per (domain, type, day), the last session's (the two
        # ports here stand for one policy domain whose records changed).
        with open(os.path.join(rpt, day, ".policy", HOST + ".tlsa")) as f:
            policy = f.read()
        self.assertEqual(policy.splitlines(), ["s 3 1 1 " + "ab" * 32], policy)
        self.assertTrue(p.wait_log(r"event=tls_rpt domain=mx\.example\.net type=tlsa "
                                   r"result=tlsa-invalid rc=0"), p.log()[-3000:])
        # The reporter's delivery of that day (tlsrpt_cli send, as
        # test_tls_rpt drives it) to the _smtp._tls.mx rua: the counts.
        pols = self.report(rpt, day, z)
        self.assertEqual(pols["tlsa"], (1, 2, [("dnssec-invalid", 1), ("tlsa-invalid", 1)],
                                        ["3 1 1 " + "ab" * 32]), pols)
        self.assertEqual(pols["no-policy-found"], (0, 1, [("starttls-not-supported", 1)], None),
                         pols)

    def report(self, rpt, day, z):
        """Sends day's reports now to a scripted submit server; the one
        mail's report by policy type: (successes, failures, [(result type,
        count)], policy-string)."""
        submit = self.backend(name="submit")
        r = subprocess.run([tr.cli_binary(), "send", "--dir", rpt, "--day", day, "--contact",
                            CONTACT, "--submit", submit.addr, "--dns", z.server,
                            "--trust-anchor", z.trust_anchor, "--timeout-ms", "20000"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        self.assertIn("domains=1 sent=1", out, r.stderr.decode())
        self.assertTrue(harness.wait_until(lambda: len(submit.messages) == 1, 10))
        msg = submit.messages[0]
        self.assertEqual(msg.rcpts, [b"RCPT TO:<%s>" % RUA.encode()])
        m = email.message_from_bytes(msg.data, policy=email.policy.default)
        self.assertEqual(str(m["TLS-Report-Domain"]), HOST)
        att = [x for x in m.iter_parts() if x.get_content_type() == "application/tlsrpt+gzip"]
        self.assertEqual(len(att), 1)
        rep = json.loads(gzip.decompress(att[0].get_content()).decode())
        pols = {}
        for x in rep["policies"]:
            self.assertEqual(x["policy"]["policy-domain"], HOST)
            rows = sorted((f["result-type"], f["failed-session-count"])
                          for f in x.get("failure-details", []))
            pols[x["policy"]["policy-type"]] = (
                x["summary"]["total-successful-session-count"],
                x["summary"]["total-failure-session-count"], rows,
                x["policy"].get("policy-string"))
        return pols

    def test_certificate_failures_under_verify(self):
        # policy = "verify" without DANE: the certificate fails the
        # handshake, no-policy-found with the class of the PKIX failure.
        d = harness.new_tmpdir("rpt-certs")
        certs = [oh._issue(d, "other", "other.example.net", "DNS:other.example.net"),
                 oh._issue_expired(d, "expired", "DNS:" + HOST),
                 oh._issue(d, "self", HOST, "DNS:" + HOST, self_signed=True),
                 td.certs()["mx"]]
        ds = [self.destination(cert=c) for c in certs]
        z = self.zone([], broken=[])
        rpt = harness.new_tmpdir("tls-rpt-dir")
        ls = [self.listener("v%d" % i, x, dane=False, policy="verify",
                            tls={"ca_file": harness.pki().ca}) for i, x in enumerate(ds)]
        resolver = {"servers": [z.server], "dnssec": "validate",
                    "trust_anchor": z.trust_anchor}
        t0 = int(time.time())
        p = self.proxy(oh.outbound_config(ls, resolver=resolver, tls_rpt={
            "directory": rpt, "contact": "tlsrpt@example.org"}))
        ports = p.listen_ports()
        for port in ports[:3]:
            self.assertEqual(self.session(p, port, False)["end"], "policy_refusal")
        self.assertEqual(self.session(p, ports[3], True)["security"], "tls-verified")
        day = day_text(t0) if day_text(t0) == day_text(time.time()) else self.skipTest("midnight")
        lines = self.read_lines(os.path.join(rpt, day, HOST), 4)
        got = [LINE.match(x).group(2, 4) if LINE.match(x) else x for x in lines]
        self.assertEqual(got, [("no-policy-found", "certificate-host-mismatch"),
                               ("no-policy-found", "certificate-expired"),
                               ("no-policy-found", "certificate-not-trusted"),
                               ("no-policy-found", "success")], "\n".join(lines))
        self.assertFalse(os.path.exists(os.path.join(rpt, day, ".policy")))

    def test_opportunistic_fallback_is_one_session(self):
        # STARTTLS refused (454), and a 220 followed by a closed connection:
        # each falls back to plaintext on a second connection and delivers;
        # one line each, the failure that caused the fallback.
        ds = [self.destination(actions={"STARTTLS": "454 4.7.0 TLS not available"}),
              self.destination(actions={"STARTTLS": "tls_fail"})]
        z = self.zone([], broken=[])
        rpt = harness.new_tmpdir("tls-rpt-dir")
        ls = [self.listener("f%d" % i, x, dane=False) for i, x in enumerate(ds)]
        resolver = {"servers": [z.server], "dnssec": "validate",
                    "trust_anchor": z.trust_anchor}
        t0 = int(time.time())
        p = self.proxy(oh.outbound_config(ls, resolver=resolver, tls_rpt={
            "directory": rpt, "contact": "tlsrpt@example.org"}))
        for port, d in zip(p.listen_ports(), ds):
            self.assertEqual(self.session(p, port, True)["security"], "plaintext")
            self.assertEqual(len(d.conns), 2, d.raw_all())
        day = day_text(t0) if day_text(t0) == day_text(time.time()) else self.skipTest("midnight")
        lines = self.read_lines(os.path.join(rpt, day, HOST), 2)
        got = [LINE.match(x).group(2, 4) if LINE.match(x) else x for x in lines]
        self.assertEqual(got, [("no-policy-found", "starttls-not-supported"),
                               ("no-policy-found", "validation-failure")], "\n".join(lines))


if __name__ == "__main__":
    unittest.main()
