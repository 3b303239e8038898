"""The real client's identity reaches a real Postfix backend: a sending
Postfix bound to 127.0.0.2 (smtp_bind_address) relays over STARTTLS through
the proxy (which connects to the backend from 127.0.0.1) to a legacy
Postfix that learns the client from

  - XCLIENT (backend_client_info = "xclient"; smtpd_authorized_xclient_hosts
    = 127.0.0.1, the proxy's address), or
  - a PROXY v1/v2 header (backend_client_info = "proxy-v1" | "proxy-v2";
    the smtpd service has -o smtpd_upstream_proxy_protocol=haproxy).

The legacy Postfix logs the queue file's client=NAME[127.0.0.2] and writes
[127.0.0.2] into its Received header; the proxy's own address never
appears as the client of the transaction.
"""

import re

import harness
import postfix
from postfix import PostfixTestCase

SENDER = "carol@sender.test"
RCPT = "dave@legacy.test"
REAL_CLIENT = "127.0.0.2"


class PostfixClientInfoTest(PostfixTestCase):

    def relay_from_127_0_0_2(self, client_info, legacy_main=None, smtpd_opts=None):
        legacy = self.postfix("legacy", domains=["legacy.test"], main=legacy_main,
                              smtpd_opts=smtpd_opts)
        port = harness.free_port()
        self.start(backend_port=legacy.port, listen_port=port,
                   backend_client_info=client_info)
        sender = self.postfix("sender", main={
            "relayhost": "[127.0.0.1]:%d" % port,
            "smtp_tls_security_level": "encrypt",
            "smtp_bind_address": REAL_CLIENT,
        })
        headers, body, whole = postfix.make_message("client info " + client_info, SENDER,
                                                    RCPT, "ci-" + client_info)
        postfix.submit(sender.port, SENDER, [RCPT], whole)
        # Delivered, or deferred by the sender (then fail at once, with why).
        deferred = re.compile(r"status=deferred \((.*)\)")
        harness.wait_until(lambda: legacy.messages("legacy.test") or
                           deferred.search(sender.log()), 15, 0.05)
        msgs = legacy.messages("legacy.test")
        m = deferred.search(sender.log())
        self.assertEqual(len(msgs), 1, "legacy mailbox: %d messages; sender: %s"
                         % (len(msgs), m.group(1) if m else "-"))
        got_headers, got_body = postfix.split_delivered(msgs[0])
        self.assertEqual(got_body, body)
        self.assertHeadersIntact(headers, got_headers)
        # The proxy saw the sender's bound address.
        kv = self.proxy_.wait_session_end(timeout=5)
        self.assertIsNotNone(kv)
        self.assertTrue(kv["client"].startswith(REAL_CLIENT + ":"), kv["_line"])
        self.assertEqual(kv["end"], "quit", kv["_line"])
        return sender, legacy, got_headers

    def assertRealClient(self, legacy, got_headers):
        log = legacy.log()
        m = re.search(r"postfix/smtpd\[\d+\]: ([0-9A-F]+): client=(\S+)", log)
        self.assertTrue(m, "no client= line in the legacy maillog")
        self.assertRegex(m.group(2), r"^[^\[\]]+\[%s\]" % re.escape(REAL_CLIENT), m.group(0))
        self.assertNotRegex(m.group(2), r"\[127\.0\.0\.1\]")
        received = "\n".join(l for l in got_headers[:8])
        self.assertRegex(received, r"Received: from \S+ \(\S+ \[%s\]\)" % re.escape(REAL_CLIENT))
        return m

    def test_xclient(self):
        sender, legacy, got = self.relay_from_127_0_0_2(
            "xclient", legacy_main={"smtpd_authorized_xclient_hosts": "127.0.0.1"})
        self.assertRealClient(legacy, got)
        # The TCP connection came from the proxy, XCLIENT changed the
        # client afterwards, and smtpd accepted it. (Postfix counts a
        # successful XCLIENT as "xclient=0/1" in its disconnect line: the
        # command restarts the session instead of returning.)
        log = legacy.log()
        self.assertRegex(log, r"connect from \S+\[127\.0\.0\.1\]")
        self.assertRegex(log, r"disconnect from \S+\[127\.0\.0\.2\] ")
        self.assertNotIn("insufficient authorization", log)

    def test_xclient_no_unauth_pipelining(self):
        """As above with smtpd_forbid_unauth_pipelining = yes (Postfix
        3.7.10+, the default from 3.9 on): smtpd drops a client that sends
        a command before the reply to EHLO when it did not offer
        PIPELINING yet -- so XCLIENT must wait for the EHLO reply."""
        sender, legacy, got = self.relay_from_127_0_0_2(
            "xclient", legacy_main={"smtpd_authorized_xclient_hosts": "127.0.0.1",
                                    "smtpd_forbid_unauth_pipelining": True})
        self.assertRealClient(legacy, got)
        self.assertNotIn("improper command pipelining", legacy.log())

    def test_proxy_v1(self):
        sender, legacy, got = self.relay_from_127_0_0_2(
            "proxy-v1", smtpd_opts={"smtpd_upstream_proxy_protocol": "haproxy"})
        self.assertRealClient(legacy, got)
        self.assertRegex(legacy.log(), r"connect from \S+\[%s\]" % re.escape(REAL_CLIENT))

    def test_proxy_v2(self):
        sender, legacy, got = self.relay_from_127_0_0_2(
            "proxy-v2", smtpd_opts={"smtpd_upstream_proxy_protocol": "haproxy"})
        self.assertRealClient(legacy, got)
        self.assertRegex(legacy.log(), r"connect from \S+\[%s\]" % re.escape(REAL_CLIENT))


if __name__ == "__main__":
    harness.run_tests()
