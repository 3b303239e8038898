"""What the proxy says to the backend on its own, and what it will not
relay: XCLIENT after the EHLO reply with a forward-confirmed NAME, HELO for
HELO-only backends, the Received: line (received_header), 3xx replies that
would make the two sides frame the session differently, and the error
limit."""

import re
import socket
import time
import unittest

import harness
from harness import CRLF, ProxyTestCase

XCLIENT_EHLO = harness.DEFAULT_EHLO + ["XCLIENT NAME ADDR PORT PROTO HELO"]


def expected_name(ip="127.0.0.1"):
    """What the machine's resolver gives for ip, forward-confirmed, as the
    proxy must put it in NAME=."""
    try:
        name = socket.gethostbyaddr(ip)[0]
        addrs = {a[4][0] for a in socket.getaddrinfo(name, None, socket.AF_INET)}
    except OSError:
        return "[UNAVAILABLE]"
    return name if ip in addrs else "[UNAVAILABLE]"


class PostfixLikeBackend:
    """Actions that answer like Postfix >= 3.9 with
    smtpd_forbid_unauth_pipelining = yes: a command that arrived before the
    reply to the one in front of it gets 554."""

    def __init__(self):
        self.pipelined = []

    def ehlo(self, conn, line):
        # Everything received so far; a pipelined XCLIENT is already here.
        raw = bytes(conn.raw)
        self.pipelined.append(b"XCLIENT" in raw[raw.rfind(b"EHLO"):])
        return None  # the default EHLO reply

    def xclient(self, conn, line):
        if self.pipelined and self.pipelined[-1]:
            return b"554 5.5.0 Error: SMTP protocol synchronization"
        return None


class XclientTest(ProxyTestCase):

    def test_xclient_after_ehlo_reply_with_name(self):
        pf = PostfixLikeBackend()
        b, p = self.start(backend_client_info="xclient", backend=self.backend(
            ehlo=XCLIENT_EHLO, actions={"EHLO": pf.ehlo, "XCLIENT": pf.xclient}))
        c = self.client()
        cport = c.local_port
        r = c.ehlo()
        self.assertReply(r, 250)
        self.assertEqual(c.cmd("VRFY marker").raw, b"252 2.0.0 marker\r\n")
        self.assertEqual(pf.pipelined[:1], [False], b.raw_all()[:300])
        cmds = b.conns[0].commands
        self.assertTrue(cmds[0].startswith(b"EHLO "), cmds)
        self.assertTrue(cmds[1].startswith(b"XCLIENT "), cmds)
        self.assertEqual(cmds[1], b"XCLIENT ADDR=127.0.0.1 PORT=%d NAME=%s"
                         % (cport, expected_name().encode()))
        self.assertIsNone(p.wait_log(r"event=xclient_", 0.3))

    def test_xclient_refused_is_logged(self):
        b, p = self.start(backend_client_info="xclient", backend=self.backend(
            ehlo=XCLIENT_EHLO, actions={"XCLIENT": b"550 5.7.0 not authorized"}))
        c = self.client(greet=False)
        r = c.read_reply(5)
        self.assertReply(r, 421, "4.3.0")
        c.expect_closed(3)
        m = p.wait_log(r"event=xclient_refused backend=\S+ reply=\"550 5\.7\.0 not authorized\"")
        self.assertTrue(m, p.log()[-2000:])
        end = harness.wait_until(p.session_ends, 3)
        self.assertEqual(end[0]["end"], "xclient_refused")

    def test_xclient_not_offered_goes_on_without(self):
        b, p = self.start(backend_client_info="xclient")
        c = self.client(greet=False)
        self.assertEqual(c.greeting().raw, b"220 backend.test ESMTP\r\n")
        self.assertReply(c.ehlo(), 250)
        self.assertEqual(c.cmd("VRFY marker").raw, b"252 2.0.0 marker\r\n")
        self.assertNotIn(b"XCLIENT", b.raw_all())
        self.assertTrue(p.wait_log(r"event=xclient_not_offered backend=127\.0\.0\.1:%d reply=\"250-"
                                   % b.port), p.log()[-2000:])
        self.assertEqual(len(re.findall(r"event=xclient_not_offered", p.log())), 1)


class HeloOnlyBackendTest(ProxyTestCase):

    def test_helo_only_backend_gets_tls(self):
        b, p = self.start(backend=self.backend(
            actions={"EHLO": b"502 5.5.2 Error: command not recognized"}))
        c = self.client()
        r = c.ehlo("client.test")
        self.assertEqual(r.lines, ["250-backend.test", "250 STARTTLS"], r)
        c.starttls()
        r = c.ehlo("client.test")
        self.assertEqual(r.lines, ["250 backend.test"], r)
        replies = c.send_message("a@client.test", ["b@backend.test"], b"Subject: t\r\n\r\nhi\r\n")
        self.assertEqual([x.code for x in replies], [250, 250, 354, 250])
        self.assertEqual(b.verbs().count(b"HELO"), 2, b.commands_all())
        self.assertIn(b"HELO client.test", b.commands_all())
        self.assertTrue(b.wait_messages(1))
        c.cmd("QUIT")


class ReceivedHeaderTest(ProxyTestCase):

    RX = (rb"Received: from client\.test \((?P<name>[^ ]+) \[127\.0\.0\.1\]\)\r\n"
          rb"\tby (?P<by>\S+) \(smtp-tls-proxy\) with ESMTPS id (?P<id>\S+)\r\n"
          rb"\t\(version=(?P<v>TLSv1\.[23]) cipher=(?P<c>\S+)\);\r\n"
          rb"\t(?P<date>\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000)\r\n")

    def check_header(self, data, p):
        m = re.match(self.RX, data)
        self.assertTrue(m, data[:400])
        name = expected_name()
        self.assertEqual(m.group("name").decode(), "unknown" if name.startswith("[") else name)
        self.assertEqual(m.group("by").decode(), socket.gethostname())
        end = harness.wait_until(p.session_ends, 5)
        self.assertEqual(m.group("id").decode(), end[0]["session"])
        self.assertEqual(m.group("v").decode(), end[0]["tls"])
        self.assertEqual(m.group("c").decode(), end[0]["cipher"])
        t = time.mktime(time.strptime(m.group("date").decode(), "%a, %d %b %Y %H:%M:%S +0000"))
        self.assertLess(abs(t - time.timezone - time.time()), 120)
        for line in data[:m.end()].split(CRLF)[:-1]:
            self.assertLess(len(line), 78, line)
        return data[m.end():]

    def test_data_after_starttls(self):
        b, p = self.start(received_header=True)
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        content = b"Subject: t\r\n\r\nhello\r\n"
        replies = c.send_message("a@client.test", ["b@backend.test"], content)
        self.assertEqual(replies[-1].code, 250, replies)
        c.cmd("QUIT")
        c.expect_closed(3)
        self.assertTrue(b.wait_messages(1))
        msg = b.messages[0]
        self.assertEqual(self.check_header(msg.data, p), content)

    def test_bdat_after_starttls(self):
        b, p = self.start(received_header=True)
        c = self.client()
        c.ehlo()
        c.starttls()
        self.assertIn("CHUNKING", c.ehlo().keywords())
        self.assertReply(c.cmd("MAIL FROM:<a@client.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<b@backend.test>"), 250)
        c.send(b"BDAT 6\r\nhello\n")
        self.assertReply(c.read_reply(), 250)
        self.assertReply(c.cmd("BDAT 0 LAST"), 250)
        c.cmd("QUIT")
        c.expect_closed(3)
        self.assertTrue(b.wait_messages(1))
        msg = b.messages[0]
        self.assertEqual(self.check_header(msg.data, p), b"hello\n")

    def test_plaintext_has_none(self):
        b, p = self.start(received_header=True)
        c = self.client()
        c.ehlo()
        content = b"Subject: t\r\n\r\nhello\r\n"
        replies = c.send_message("a@client.test", ["b@backend.test"], content)
        self.assertEqual(replies[-1].code, 250, replies)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, content)


class FramingTest(ProxyTestCase):

    def test_3xx_to_unknown_verb_closes(self):
        b, p = self.start(backend=self.backend(actions={"XEXCH50": b"354 Send binary data"}))
        c = self.client()
        c.ehlo()
        r = c.cmd("XEXCH50 2 2")
        self.assertReply(r, 421, "4.5.0")
        c.expect_closed(3)
        end = harness.wait_until(p.session_ends, 3)
        self.assertEqual(end[0]["end"], "protocol_error", end[0]["_line"])

    def test_error_limit(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        for i in range(19):
            self.assertReply(c.cmd("TURN"), 502)
        c.send(b"TURN\r\n")
        self.assertReply(c.read_reply(), 502)
        self.assertReply(c.read_reply(), 421, "4.7.0")
        c.expect_closed(3)


if __name__ == "__main__":
    harness.run_tests()
