"""The TLS-RPT report JSON against the structure of RFC 8460 §4.4.

Runs `tlsrpt_report_test --sample` (proxy/policy/tlsrpt_report.c writing a
report with an STS and a no-policy-found policy, several failure rows and an
organization name that needs escaping), parses its output with `json`
(strictly: UTF-8, no NaN, no duplicate keys) and checks every field the RFC
lists: required ones present with their JSON types, enumerations from §4.3
and §4.4, RFC 3339 date-times spanning one UTC day (§4.1), IP addresses
that parse, and counts that add up. It also checks the sample's values, so a
writer that drops or garbles a field fails here.
"""
import datetime
import ipaddress
import json
import os
import re
import subprocess
import unittest

RESULT_TYPES = {
    # §4.3.1 negotiation failures
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
    "certificate-not-trusted", "validation-failure",
    # §4.3.2.1 DANE, §4.3.2.2 MTA-STS
    "tlsa-invalid", "dnssec-invalid", "dane-required",
    "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
}
POLICY_TYPES = {"tlsa", "sts", "no-policy-found"}
TOP = {"organization-name", "date-range", "contact-info", "report-id", "policies"}
POLICY_KEYS = {"policy-type", "policy-string", "policy-domain", "mx-host"}
DETAIL_KEYS = {"result-type", "sending-mta-ip", "receiving-mx-hostname", "receiving-mx-helo",
               "receiving-ip", "failed-session-count", "additional-information",
               "failure-reason-code"}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def binary():
    base = os.environ.get("TEST_SRCDIR", ".")
    ws = os.environ.get("TEST_WORKSPACE", "smtp_tls_proxy")
    return os.path.join(base, ws, "tests", "unit", "policy", "tlsrpt_report_test")


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys: %r" % keys)
    return dict(pairs)


def reject_constant(name):
    raise ValueError("not JSON: %s" % name)


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)


class ReportSchema(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        out = subprocess.run([binary(), "--sample"], stdout=subprocess.PIPE, check=True,
                             timeout=60).stdout
        cls.raw = out
        cls.report = json.loads(out.decode("utf-8"), object_pairs_hook=no_duplicates,
                                parse_constant=reject_constant)

    def is_count(self, v, what):
        self.assertIsInstance(v, int, what)
        self.assertNotIsInstance(v, bool, what)
        self.assertGreaterEqual(v, 0, what)

    def test_top_level(self):
        r = self.report
        self.assertIsInstance(r, dict)
        self.assertEqual(set(r), TOP)
        for k in ("organization-name", "contact-info", "report-id"):
            self.assertIsInstance(r[k], str, k)
            self.assertTrue(r[k], k)
        # The name went through escaping: quotes, backslash, tab, UTF-8, and
        # an invalid byte that became U+FFFD.
        self.assertEqual(r["organization-name"], 'Example "Mail" Inc\\\t\u00e9\ufffd')
        self.assertEqual(r["contact-info"], "postmaster@example.org")
        self.assertIsInstance(r["policies"], list)
        self.assertEqual(len(r["policies"]), 2)

    def test_date_range_is_one_utc_day(self):
        dr = self.report["date-range"]
        self.assertEqual(set(dr), {"start-datetime", "end-datetime"})
        for k in dr:
            self.assertRegex(dr[k], RFC3339, k)
        start, end = parse_time(dr["start-datetime"]), parse_time(dr["end-datetime"])
        self.assertEqual((start.hour, start.minute, start.second), (0, 0, 0))
        self.assertEqual((end - start).total_seconds(), 86399)
        self.assertEqual(start.date(), datetime.date(2025, 12, 1))

    def test_policies(self):
        for p in self.report["policies"]:
            self.assertEqual(set(p), {"policy", "summary", "failure-details"})
            pol = p["policy"]
            self.assertTrue(set(pol) <= POLICY_KEYS, pol)
            self.assertIn(pol["policy-type"], POLICY_TYPES)
            self.assertIsInstance(pol["policy-domain"], str)
            for k in ("policy-string", "mx-host"):
                if k in pol:
                    self.assertIsInstance(pol[k], list, k)
                    self.assertTrue(all(isinstance(s, str) for s in pol[k]), k)
            s = p["summary"]
            self.assertEqual(set(s), {"total-successful-session-count",
                                      "total-failure-session-count"})
            for k, v in s.items():
                self.is_count(v, k)
            self.assertIsInstance(p["failure-details"], list)
            failed = 0
            for d in p["failure-details"]:
                self.assertTrue(set(d) <= DETAIL_KEYS, d)
                self.assertIn(d["result-type"], RESULT_TYPES)
                self.is_count(d["failed-session-count"], "failed-session-count")
                self.assertGreater(d["failed-session-count"], 0)
                for k in ("sending-mta-ip", "receiving-ip"):
                    if k in d:
                        ipaddress.ip_address(d[k])
                if "receiving-mx-hostname" in d:
                    self.assertRegex(d["receiving-mx-hostname"], r"^[a-z0-9.-]+$")
                failed += d["failed-session-count"]
            self.assertLessEqual(failed, s["total-failure-session-count"])

    def test_sample_values(self):
        sts, none = self.report["policies"]
        self.assertEqual(sts["policy"], {
            "policy-type": "sts",
            "policy-string": ["version: STSv1", "mode: enforce", "mx: mx.example.net",
                              "max_age: 604800"],
            "policy-domain": "example.net",
            "mx-host": ["mx.example.net", "*.backup.example.net"],
        })
        self.assertEqual(sts["summary"], {"total-successful-session-count": 2,
                                          "total-failure-session-count": 2})
        self.assertEqual(sts["failure-details"], [
            {"result-type": "sts-webpki-invalid", "sending-mta-ip": "192.0.2.1",
             "receiving-mx-hostname": "mx.example.net", "receiving-ip": "198.51.100.25",
             "failed-session-count": 1},
            {"result-type": "certificate-host-mismatch", "sending-mta-ip": "2001:db8::25",
             "failed-session-count": 1},
        ])
        self.assertEqual(none["policy"], {"policy-type": "no-policy-found",
                                          "policy-domain": "plain.example"})
        self.assertEqual(none["summary"]["total-failure-session-count"], 1)
        self.assertEqual(none["failure-details"][0]["result-type"], "starttls-not-supported")

    def test_plain_ascii_output(self):
        # Control characters never appear raw (RFC 8259 §7).
        self.assertFalse(any(b < 0x20 for b in self.raw), self.raw)


if __name__ == "__main__":
    unittest.main()
