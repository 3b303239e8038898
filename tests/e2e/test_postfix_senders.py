"""Other real SMTP clients through the inbound listener to a real (legacy,
plaintext) Postfix: msmtp (GnuTLS) and curl's SMTP client (OpenSSL), each
over STARTTLS and over implicit TLS, each verifying the proxy's certificate
for "localhost" against the test CA. swaks and openssl s_client are in
test_tools.py.

Checked: the message lands in the legacy Postfix's Maildir with body and
headers intact (both clients dot-stuff; msmtp also turns LF into CRLF);
the client's own report of the TLS session agrees with the proxy's session
line (version, cipher, SNI).

Needs the Debian packages msmtp and curl (skipped, naming the package,
when one is missing).
"""

import os
import re
import shutil
import subprocess
import unittest

import harness
import postfix
from postfix import PostfixTestCase

SENDER = "grace@sender.test"
RCPT = "heidi@legacy.test"

# GnuTLS's description of a TLS 1.3 session, e.g.
# (TLS1.3)-(ECDHE-X25519)-(ECDSA-SECP256R1-SHA256)-(AES-256-GCM)
MSMTP_TLS = r"TLS session parameters:\s*\n\s*\((TLS1\.[23])\)-\S*-\(([A-Z0-9-]+)\)"
GNUTLS_TO_IANA = {"AES-256-GCM": "TLS_AES_256_GCM_SHA384",
                  "AES-128-GCM": "TLS_AES_128_GCM_SHA256",
                  "CHACHA20-POLY1305": "TLS_CHACHA20_POLY1305_SHA256"}


def need(tool, package):
    if not shutil.which(tool):
        raise unittest.SkipTest("%s not installed (Debian package %s)" % (tool, package))


class SendersTest(PostfixTestCase):

    def chain(self, tls_mode="starttls"):
        legacy = self.postfix("legacy", domains=["legacy.test"])
        self.start(backend_port=legacy.port, tls_mode=tls_mode)
        return self.proxy_, legacy

    def assertDelivered(self, legacy, headers, body):
        msgs = legacy.wait_messages("legacy.test", 1, timeout=15)
        self.assertEqual(len(msgs), 1, "legacy mailbox: %d messages" % len(msgs))
        got_headers, got_body = postfix.split_delivered(msgs[0])
        self.assertEqual(got_body, body)
        self.assertHeadersIntact(headers, got_headers)

    def assertSession(self, proxy, version, cipher):
        kv = proxy.wait_session_end(timeout=5)
        self.assertIsNotNone(kv, "no session line")
        self.assertIn(kv["end"], ("quit", "client_closed"), kv["_line"])
        self.assertEqual(kv["tls"], version, kv["_line"])
        self.assertEqual(kv["cipher"], cipher, kv["_line"])
        self.assertEqual(kv["sni"], "localhost", kv["_line"])

    # msmtp

    def msmtp(self, proxy, legacy, starttls):
        need("msmtp", "msmtp")
        headers, body, whole = postfix.make_message("msmtp", SENDER, RCPT, "msmtp-%s" % starttls)
        rc_path = os.path.join(legacy.dir, "msmtprc")
        log_path = os.path.join(legacy.dir, "msmtp.log")
        with open(rc_path, "w") as f:
            f.write("account default\n"
                    "host localhost\nport %d\n"
                    "domain client.test\n"
                    "tls on\ntls_starttls %s\ntls_trust_file %s\n"
                    "auth off\nfrom %s\nlogfile %s\n"
                    % (proxy.port, "on" if starttls else "off", self.pki.ca, SENDER, log_path))
        os.chmod(rc_path, 0o600)    # msmtp refuses a readable rc file
        # LF line ends, as a mail user agent hands them over.
        r = subprocess.run(["msmtp", "-d", "-C", rc_path, "-a", "default", RCPT],
                           input=whole.replace(b"\r\n", b"\n"), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out[-3000:])
        with open(log_path) as f:
            self.assertRegex(f.read(), r"tls=on .*smtpstatus=250 .*exitcode=EX_OK")
        self.assertDelivered(legacy, headers, body)
        m = re.search(MSMTP_TLS, out)
        self.assertTrue(m, out[-3000:])
        version = m.group(1).replace("TLS", "TLSv")
        self.assertSession(proxy, version, GNUTLS_TO_IANA.get(m.group(2), m.group(2)))
        if starttls:
            self.assertIn("--> STARTTLS", out)
            self.assertIn("<-- 220 2.0.0 Ready to start TLS", out)

    def test_msmtp_starttls(self):
        proxy, legacy = self.chain()
        self.msmtp(proxy, legacy, starttls=True)

    def test_msmtp_implicit_tls(self):
        proxy, legacy = self.chain(tls_mode="implicit")
        self.msmtp(proxy, legacy, starttls=False)

    # curl

    def curl(self, proxy, legacy, scheme, extra=()):
        need("curl", "curl")
        headers, body, whole = postfix.make_message("curl", SENDER, RCPT, "curl-" + scheme)
        msg = os.path.join(legacy.dir, "curl.eml")
        with open(msg, "wb") as f:
            f.write(whole)
        # The URL path is curl's EHLO name.
        r = subprocess.run(["curl", "-sS", "-v", "--max-time", "20", "--cacert", self.pki.ca,
                            "%s://localhost:%d/client.test" % (scheme, proxy.port),
                            "--mail-from", SENDER, "--mail-rcpt", RCPT,
                            "--upload-file", msg] + list(extra),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out[-3000:])
        self.assertIn("SSL certificate verify ok", out)
        self.assertRegex(out, r"< 250 2\.0\.0 Ok: queued as [0-9A-F]+")
        self.assertDelivered(legacy, headers, body)
        m = re.search(r"SSL connection using (TLSv1\.[23]) / (\S+)", out)
        self.assertTrue(m, out[-3000:])
        self.assertSession(proxy, m.group(1), m.group(2))
        return out

    def test_curl_ssl_reqd_starttls(self):
        proxy, legacy = self.chain()
        out = self.curl(proxy, legacy, "smtp", ["--ssl-reqd"])
        self.assertIn("> STARTTLS", out)

    def test_curl_smtps_implicit_tls(self):
        proxy, legacy = self.chain(tls_mode="implicit")
        out = self.curl(proxy, legacy, "smtps")
        self.assertNotIn("> STARTTLS", out)


if __name__ == "__main__":
    harness.run_tests()
