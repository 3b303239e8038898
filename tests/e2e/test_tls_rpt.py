"""TLS-RPT reports (RFC 8460) from the service of proxy/service, end to end,
driven through tests/e2e/tlsrpt_cli.c: attempts are recorded through
tlsrpt_record() into a real tls_rpt.directory, then the reports of that day
are sent now. The _smtp._tls TXT records come from a DNSSEC-signed zone
(dnszone.py, nsd, validated by the service's libunbound resolver):

  example.net       rua=https://reports.example.net:PORT/tlsrpt, served by
                    Python's http.server over ssl with the test CA, which
                    keeps every POST;
  mail.example.net  rua=mailto:tlsrpt@mail.example.net, handed over SMTP to
                    a scripted server standing for tls_rpt.submit;
  both.example.net  both kinds, the https one failing on its first POST.

Each report is taken apart as its receiver would: the POST's Content-Type,
the mail's headers and MIME structure (RFC 8460 §5.3, file name §5.1), the
gzip container, and the JSON against the structure of §4.4 with the counts
recorded. A second run sends nothing again; after a failure only the
destination that failed gets the report again.
"""

import calendar
import datetime
import email
import email.policy
import gzip
import http.server
import ipaddress
import json
import os
import random
import re
import subprocess
import threading
import time
import unittest

import dnszone
import harness

_rng = random.SystemRandom()
CONTACT = "tlsrpt-reporter@example.org"
ORG = 'Example "Reporting" Inc'
DAY = "2026-11-30"
DAY_START = calendar.timegm((2026, 11, 30, 0, 0, 0))

RESULT_TYPES = {
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
    "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
    "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
}
POLICY_TYPES = {"tlsa", "sts", "no-policy-found"}


def cli_binary():
    env = os.environ.get("TLSRPT_CLI")
    if env:
        return env
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        p = os.path.join(srcdir, "smtp_tls_proxy/tests/e2e/tlsrpt_cli")
        if os.path.exists(p):
            return p
    raise RuntimeError("tlsrpt_cli not found: run under bazel test or set TLSRPT_CLI")


def zone_ip():
    return "127.53.%d.%d" % (_rng.randint(1, 250), _rng.randint(1, 250))


def line(t, ptype, domain, result, sip="192.0.2.1", mx="-", rip="-"):
    return "tlsrpt1 %d %s %s %s %s %s %s\n" % (DAY_START + t, ptype, domain, result, sip, mx,
                                               rip)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        srv = self.server
        with srv.lock:
            srv.posts.append((self.path, dict(self.headers.items()), body))
            status = srv.statuses.pop(0) if srv.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class ReportServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ctx):
        super().__init__((harness.HOST, 0), Handler)
        self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.lock = threading.Lock()
        self.posts = []
        self.statuses = []
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()
        self.thread.join(10)


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys %r" % keys)
    return dict(pairs)


@unittest.skipIf(dnszone.available(), dnszone.available() or "")
class TlsRptTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        d = harness.new_tmpdir("tls-rpt")
        cls.pki = harness.make_pki(os.path.join(d, "pki"), cn="reports.example.net")
        cls.https = ReportServer(harness.server_context(cls.pki))
        uri = "https://reports.example.net:%d/tlsrpt" % cls.https.server_address[1]
        cls.smtp = harness.ScriptedBackend(name="submit").start()
        for attempt in range(3):
            z = dnszone.Zone(harness.new_tmpdir("zone"), zone_ip(), port=10053)
            z.records = [r for r in z.records if r[0] != "_smtp._tls"]
            z.add("_smtp._tls", "TXT", '"v=TLSRPTv1; rua=%s"' % uri)
            z.add("_smtp._tls.mail", "TXT", '"v=TLSRPTv1; rua=mailto:tlsrpt@mail.example.net"')
            z.add("_smtp._tls.both", "TXT",
                  '"v=TLSRPTv1; rua=mailto:both-rpt@example.net,%s?d=both"' % uri)
            z.add("reports", "A", "127.0.0.1")
            try:
                z.start()
                break
            except (OSError, RuntimeError):  # the address may be taken
                if attempt == 2:
                    raise
        cls.zone = z

    @classmethod
    def tearDownClass(cls):
        cls.zone.stop()
        cls.https.stop()
        cls.smtp.stop()

    def setUp(self):
        self.dir = harness.new_tmpdir("tls-rpt-store")
        with self.https.lock:
            self.https.posts.clear()
            self.https.statuses.clear()
        self.mails0 = len(self.smtp.messages)

    def run_cli(self, *args, stdin=None):
        r = subprocess.run([cli_binary()] + list(args), input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def record(self, text):
        rc, out, err = self.run_cli("record", self.dir, stdin=text.encode())
        self.assertEqual(rc, 0, out + err)
        return out

    def send(self):
        rc, out, err = self.run_cli(
            "send", "--dir", self.dir, "--day", DAY, "--contact", CONTACT, "--org", ORG,
            "--submit", self.smtp.addr, "--ca", self.pki.ca, "--dns", self.zone.server,
            "--trust-anchor", self.zone.trust_anchor, "--timeout-ms", "20000")
        m = re.search(r"domains=(\d+) sent=(\d+) already=(\d+) none=(\d+) failed=(\d+)", out)
        self.assertIsNotNone(m, "stdout %r stderr %r" % (out, err))
        keys = ("domains", "sent", "already", "none", "failed")
        return rc, dict(zip(keys, map(int, m.groups()))), err

    # --- the report as a receiver reads it --------------------------------

    def check_report(self, gz, domain):
        self.assertEqual(gz[:2], b"\x1f\x8b", "not gzip")
        raw = gzip.decompress(gz)
        rep = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates,
                         parse_constant=lambda c: self.fail("constant %s" % c))
        self.assertEqual(set(rep), {"organization-name", "date-range", "contact-info",
                                    "report-id", "policies"})
        self.assertEqual(rep["organization-name"], ORG)
        self.assertEqual(rep["contact-info"], CONTACT)
        self.assertIsInstance(rep["report-id"], str)
        self.assertIn(domain, rep["report-id"])
        dr = rep["date-range"]
        self.assertEqual(set(dr), {"start-datetime", "end-datetime"})
        start = datetime.datetime.strptime(dr["start-datetime"], "%Y-%m-%dT%H:%M:%SZ")
        end = datetime.datetime.strptime(dr["end-datetime"], "%Y-%m-%dT%H:%M:%SZ")
        self.assertEqual(calendar.timegm(start.timetuple()), DAY_START)
        self.assertEqual((end - start).total_seconds(), 86399)
        out = {}
        for p in rep["policies"]:
            self.assertLessEqual(set(p), {"policy", "summary", "failure-details"})
            pol = p["policy"]
            self.assertLessEqual(set(pol), {"policy-type", "policy-string", "policy-domain",
                                            "mx-host"})
            for k in ("policy-string", "mx-host"):
                if k in pol:
                    self.assertTrue(all(isinstance(x, str) for x in pol[k]))
            self.assertIn(pol["policy-type"], POLICY_TYPES)
            self.assertEqual(pol["policy-domain"], domain)
            s = p["summary"]
            self.assertEqual(set(s), {"total-successful-session-count",
                                      "total-failure-session-count"})
            rows = p.get("failure-details", [])
            for f in rows:
                self.assertIn(f["result-type"], RESULT_TYPES)
                self.assertIsInstance(f["failed-session-count"], int)
                for k in ("sending-mta-ip", "receiving-ip"):
                    if k in f:
                        ipaddress.ip_address(f[k])
            self.assertEqual(sum(f["failed-session-count"] for f in rows),
                             s["total-failure-session-count"])
            out[pol["policy-type"]] = (s["total-successful-session-count"],
                                       s["total-failure-session-count"],
                                       sorted((f["result-type"], f["failed-session-count"])
                                              for f in rows))
        return rep, out

    def check_mail(self, msg, domain, rcpt):
        self.assertEqual(msg.mail_from, b"MAIL FROM:<%s>" % CONTACT.encode())
        self.assertEqual(msg.rcpts, [b"RCPT TO:<%s>" % rcpt.encode()])
        m = email.message_from_bytes(msg.data, policy=email.policy.default)
        report_id = re.fullmatch(r"Report Domain: (\S+) Submitter: (\S+) Report-ID: <(.+)>",
                                 str(m["Subject"]))
        self.assertIsNotNone(report_id, m["Subject"])
        self.assertEqual(report_id.group(1), domain)
        self.assertEqual(report_id.group(2), "example.org")
        self.assertEqual(str(m["TLS-Report-Domain"]), domain)
        self.assertEqual(str(m["TLS-Report-Submitter"]), "example.org")
        self.assertEqual(str(m["From"]), CONTACT)
        self.assertEqual(str(m["To"]), rcpt)
        self.assertIsNotNone(m["Date"].datetime)
        self.assertIsNotNone(m["Message-ID"])
        self.assertEqual(m.get_content_type(), "multipart/report")
        self.assertEqual(m.get_param("report-type"), "tlsrpt")
        parts = list(m.iter_parts())
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "application/tlsrpt+gzip"])
        att = parts[1]
        self.assertEqual(att["Content-Transfer-Encoding"], "base64")
        self.assertEqual(att.get_content_disposition(), "attachment")
        self.assertEqual(att.get_filename(), "example.org!%s!%d!%d.json.gz"
                         % (domain, DAY_START, DAY_START + 86399))
        rep, pols = self.check_report(att.get_content(), domain)
        self.assertEqual(rep["report-id"], report_id.group(3))
        return pols

    # --- cases ------------------------------------------------------------

    def test_reports_by_https_and_mail_once(self):
        lines = ["policy s version: STSv1\n", "policy s mode: enforce\n",
                 "policy s mx: mx.example.net\n", "policy s max_age: 86400\n",
                 "policy m mx.example.net\n", "policy m *.mx.example.net\n"]
        lines += [line(10 + i, "sts", "example.net", "success", mx="mx.example.net",
                       rip="203.0.113.5") for i in range(3)]
        lines += [line(100 + i, "sts", "example.net", "certificate-expired",
                       mx="mx.example.net", rip="203.0.113.5") for i in range(2)]
        lines += [line(200, "sts", "example.net", "starttls-not-supported", sip="2001:db8::1",
                       mx="mx2.example.net", rip="2001:db8::25")]
        lines += [line(300 + i, "no-policy-found", "mail.example.net", "success")
                  for i in range(4)]
        lines += [line(400, "no-policy-found", "mail.example.net", "validation-failure")]
        lines += [line(500, "tlsa", "mail.example.net", "dane-required", mx="mx.mail.example.net")]
        self.assertIn("recorded=12 refused=0", self.record("".join(lines)))
        # A torn last line, as a crash would leave it: skipped, nothing else lost.
        with open(os.path.join(self.dir, DAY, "example.net"), "ab") as f:
            f.write(line(600, "sts", "example.net", "success").encode()[:30])

        rc, res, err = self.send()
        self.assertEqual(rc, 0, err)
        self.assertEqual(res, {"domains": 2, "sent": 2, "already": 0, "none": 0, "failed": 0},
                         err)

        # https: one POST of the gzip'd report (RFC 8460 §5.4).
        self.assertEqual(len(self.https.posts), 1)
        path, headers, body = self.https.posts[0]
        self.assertEqual(path, "/tlsrpt")
        self.assertEqual(headers["Content-Type"], "application/tlsrpt+gzip")
        self.assertEqual(headers["Host"], "reports.example.net:%d" % self.https.server_address[1])
        rep, pols = self.check_report(body, "example.net")
        self.assertEqual(pols, {"sts": (3, 3, [("certificate-expired", 2),
                                               ("starttls-not-supported", 1)])})
        # The policy as the sessions gave it (§4.4 policy-string, mx-host).
        pol = rep["policies"][0]["policy"]
        self.assertEqual(pol["policy-string"], ["version: STSv1", "mode: enforce",
                                                "mx: mx.example.net", "max_age: 86400"])
        self.assertEqual(pol["mx-host"], ["mx.example.net", "*.mx.example.net"])

        # mailto: one mail through the submit server (§5.3).
        self.assertTrue(harness.wait_until(lambda: len(self.smtp.messages) > self.mails0, 10))
        mails = self.smtp.messages[self.mails0:]
        self.assertEqual(len(mails), 1)
        pols = self.check_mail(mails[0], "mail.example.net", "tlsrpt@mail.example.net")
        self.assertEqual(pols, {"no-policy-found": (4, 1, [("validation-failure", 1)]),
                                "tlsa": (0, 1, [("dane-required", 1)])})
        self.assertIn("tls_rpt=report domain=example.net", err)

        # Marked sent, crash-safe: a second run (a restart) sends nothing.
        rc, res, err = self.send()
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["already"], 2, err)
        self.assertEqual(res["sent"], 0)
        time.sleep(0.5)
        self.assertEqual(len(self.https.posts), 1)
        self.assertEqual(len(self.smtp.messages), self.mails0 + 1)

    def test_retry_sends_only_to_what_failed(self):
        self.record(line(10, "sts", "both.example.net", "success") +
                    line(20, "sts", "both.example.net", "certificate-host-mismatch",
                         mx="mx.both.example.net", rip="198.51.100.7"))
        self.https.statuses.append(503)
        rc, res, err = self.send()
        self.assertEqual(rc, 1)
        self.assertEqual(res["failed"], 1, err)
        self.assertRegex(err, r"rua=https://reports.example.net:\d+/tlsrpt\?d=both "
                              r"result=failed why=\"http status: status 503\"")
        self.assertTrue(harness.wait_until(lambda: len(self.smtp.messages) > self.mails0, 10))
        self.assertEqual(len(self.https.posts), 1)

        rc, res, err = self.send()
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["sent"], 1, err)
        self.assertEqual(len(self.https.posts), 2)
        path, headers, body = self.https.posts[1]
        self.assertEqual(path, "/tlsrpt?d=both")
        _, pols = self.check_report(body, "both.example.net")
        self.assertEqual(pols, {"sts": (1, 1, [("certificate-host-mismatch", 1)])})
        time.sleep(0.5)
        # The mail went once, in the first run.
        self.assertEqual(len(self.smtp.messages), self.mails0 + 1)
        self.check_mail(self.smtp.messages[self.mails0], "both.example.net",
                        "both-rpt@example.net")

    def test_domain_without_record(self):
        self.record(line(10, "sts", "norecord.example.net", "success"))
        rc, res, err = self.send()
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["none"], 1, err)
        self.assertIn("result=none", err)
        rc, res, err = self.send()
        self.assertEqual(res["already"], 1, err)
        self.assertEqual(self.https.posts, [])


class TlsRptConfigTest(unittest.TestCase):
    """The tls_rpt block as the daemon reads it (DESIGN.md): -t, and a start."""

    def conf(self, d, directory, extra=""):
        path = os.path.join(d, "p.conf")
        with open(path, "w") as f:
            f.write('outbound = ( { name = "relay"; listen = "127.0.0.1:%d";\n'
                    '  destination = "192.0.2.25:25"; tls_rpt = true; } );\n'
                    'resolver = { servers = [ "127.0.0.1:53" ]; dnssec = "off"; };\n'
                    'tls_rpt = { contact = "%s";\n'
                    '  directory = "%s"; %s};\n' % (harness.free_port(), CONTACT, directory,
                                                     extra))
        return path

    def test_directory_checked_and_made(self):
        d = harness.new_tmpdir("tls-rpt-conf")
        blocker = os.path.join(d, "file")
        with open(blocker, "w"):
            pass
        r = subprocess.run([harness.proxy_binary(), "-t", "-c", self.conf(d, blocker + "/sub")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr.decode(), r"p\.conf:5: tls_rpt\.directory: .*cannot be used "
                                            r"for the day's results: Not a directory")
        r = subprocess.run([harness.proxy_binary(), "-t", "-c",
                            self.conf(d, "rpt", 'submit = "127.0.0.1:2525"; ')],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.isdir(os.path.join(d, "rpt")))  # relative to the file

    def test_daemon_starts_reporter_and_stops(self):
        d = harness.new_tmpdir("tls-rpt-run")
        log = open(os.path.join(d, "log"), "wb")
        p = subprocess.Popen([harness.proxy_binary(), "-c", self.conf(d, "rpt")],
                             stdout=log, stderr=subprocess.STDOUT)
        try:
            def logged():
                with open(os.path.join(d, "log"), "rb") as f:
                    return b"event=started" in f.read()
            self.assertTrue(harness.wait_until(logged, 20))
            p.send_signal(15)
            self.assertEqual(p.wait(30), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
        with open(os.path.join(d, "log")) as f:
            text = f.read()
        self.assertRegex(text, r"tls_rpt=reporter dir=%s delay_s=\d+ " % re.escape(
            os.path.join(d, "rpt")))
        self.assertIn("event=stopped", text)


if __name__ == "__main__":
    unittest.main()
