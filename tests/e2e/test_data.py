"""Message content: byte-exact relaying of DATA (dot-stuffing, 8-bit, long
lines, 5 MB), SMTP verbs inside content, bare LF/CR handling against SMTP
smuggling in both bare_newline modes, BDAT with and without CHUNKING,
PIPELINING."""

import hashlib
import os
import random
import threading
import time
import unittest

import harness
from harness import CRLF, Client, ProxyTestCase, dot_stuff


def envelope(c, rcpts=1):
    c.send(b"MAIL FROM:<a@x.test>\r\n" + b"RCPT TO:<b@y.test>\r\n" * rcpts + b"DATA\r\n")
    codes = [c.read_reply().code for _ in range(rcpts + 2)]
    return codes


class DataExactTest(ProxyTestCase):

    def relay(self, content, tls=False, **start_kw):
        """Sends content (CRLF lines) stuffed; checks the backend's wire bytes
        equal the client's and the unstuffed message equals content."""
        b, p = self.start(**start_kw)
        c = self.client(timeout=30)
        c.ehlo()
        if tls:
            c.starttls()
            c.ehlo()
        self.assertEqual(envelope(c), [250, 250, 354])
        wire = dot_stuff(content) + b".\r\n"
        c.send(wire)
        r = c.read_reply(60)
        self.assertEqual(r.code, 250, r)
        self.assertTrue(b.wait_messages(1, timeout=30))
        m = b.messages[0]
        self.assertEqual(len(b.messages), 1)
        # Stuffing is preserved on the wire...
        raw = b.raw_all()
        i = raw.index(b"DATA\r\n") + 6
        self.assertEqual(hashlib.sha256(raw[i:i + len(wire)]).hexdigest(),
                         hashlib.sha256(wire).hexdigest(), "content bytes differ on the wire")
        # ...so the backend's message is exactly what the client meant.
        self.assertEqual(len(m.data), len(content if content.endswith(CRLF) else content + CRLF))
        self.assertEqual(m.data, content if content.endswith(CRLF) else content + CRLF)
        return b, p, c

    def test_dot_stuffing(self):
        content = (b"Subject: dots\r\n\r\n.\r\n..\r\n...\r\n.hidden\r\n. \r\n"
                   b"x.\r\n.\r\n\r\n.\r\nend\r\n")
        self.relay(content)

    def test_dot_stuffing_over_tls(self):
        content = b"Subject: dots tls\r\n\r\n.\r\n..\r\n.x\r\n"
        self.relay(content, tls=True)

    def test_empty_message(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        self.assertEqual(envelope(c), [250, 250, 354])
        c.send(b".\r\n")
        self.assertEqual(c.read_reply().code, 250)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, b"")

    def test_8bit_content(self):
        rnd = random.Random(8)
        high = bytes(x for x in range(256) if x not in (10, 13))
        lines = [bytes(rnd.choice(high) for _ in range(200)) for _ in range(50)]
        content = b"Subject: 8bit\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + CRLF.join(lines) + CRLF
        self.relay(content)

    def test_998_octet_lines(self):
        line = (b"0123456789" * 100)[:998]
        content = b"Subject: long\r\n\r\n" + (line + CRLF) * 20 + (b"." + line[1:] + CRLF) * 5
        self.relay(content)

    def test_content_line_longer_than_command_limit(self):
        # The 1024-octet limit is for commands; content is relayed as is.
        content = b"Subject: wide\r\n\r\n" + b"w" * 10000 + b"\r\n." + b"v" * 3000 + b"\r\n"
        self.relay(content)

    def test_nul_and_control_octets(self):
        content = b"Subject: ctl\r\n\r\na\x00b\x01c\x7f\x1b[0m\td\r\n"
        self.relay(content)

    def test_5mb_message(self):
        rnd = random.Random(5)
        alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 .-"
        table = bytes(alphabet[i % len(alphabet)] for i in range(256))
        lines = []
        size = 0
        while size < 5 * 1024 * 1024:
            n = rnd.randint(0, 200)
            l = rnd.randbytes(n).translate(table)
            if rnd.random() < 0.05:
                l = b"." + l
            lines.append(l)
            size += len(l) + 2
        content = b"Subject: big\r\n\r\n" + CRLF.join(lines) + CRLF
        t0 = time.monotonic()
        self.relay(content, tls=True)
        self.assertLess(time.monotonic() - t0, 40)

    def test_smtp_verbs_in_body_are_content(self):
        body_lines = [b"STARTTLS", b"MAIL FROM:<inner@evil.test>", b"RCPT TO:<v@evil.test>",
                      b"DATA", b"QUIT", b"RSET", b"BDAT 10 LAST", b"AUTH PLAIN AHVzZXIAcGFzcw==",
                      b"XCLIENT ADDR=192.0.2.1", b"EHLO inner.test", b". ", b" .", b".QUIT",
                      b"..", b".\t", b"NOOP", b"250 fake reply", b"354 fake"]
        content = b"Subject: verbs\r\n\r\n" + CRLF.join(body_lines) + CRLF
        b, p, c = self.relay(content)
        # The session goes on afterwards, and no inner command was executed.
        self.assertEqual(c.cmd("NOOP").code, 250)
        self.assertEqual(b.verbs(), [b"EHLO", b"MAIL", b"RCPT", b"DATA", b"NOOP"])

    def test_subsequent_commands_after_data(self):
        b, p, c = self.relay(b"Subject: one\r\n\r\none\r\n")
        replies = c.send_message("a@x.test", ["b@y.test"], b"Subject: two\r\n\r\ntwo\r\n")
        self.assertEqual([x.code for x in replies], [250, 250, 354, 250])
        self.assertTrue(b.wait_messages(2))
        self.assertEqual(b.messages[1].data, b"Subject: two\r\n\r\ntwo\r\n")

    def test_backend_data_rejection_passed(self):
        b, p = self.start(backend=self.backend(actions={".": b"554 5.7.1 content rejected\r\n"}))
        c = self.client()
        c.ehlo()
        replies = c.send_message("a@x.test", ["b@y.test"], b"Subject: no\r\n\r\nspam\r\n")
        self.assertEqual(replies[-1].raw, b"554 5.7.1 content rejected\r\n")

    def test_content_split_across_writes(self):
        # End-of-data split at every awkward boundary.
        b, p = self.start()
        c = self.client()
        c.ehlo()
        self.assertEqual(envelope(c), [250, 250, 354])
        for piece in (b"Subject: split\r", b"\n\r\nline\r\n.", b".stuffed\r\n\r", b"\n.", b"\r", b"\n"):
            c.send(piece)
            time.sleep(0.05)
        self.assertEqual(c.read_reply().code, 250)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, b"Subject: split\r\n\r\nline\r\n.stuffed\r\n\r\n")


class PipeliningTest(ProxyTestCase):

    def test_pipelined_envelope_replies_in_order(self):
        b, p = self.start(backend=self.backend(actions={
            "RCPT": lambda conn, line: (b"550 5.1.1 no such user\r\n" if b"bad" in line else None)}))
        c = self.client()
        c.ehlo()
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<good@y.test>\r\nRCPT TO:<bad@y.test>\r\n"
               b"RCPT TO:<good2@y.test>\r\nDATA\r\n")
        codes = [c.read_reply().code for _ in range(5)]
        self.assertEqual(codes, [250, 250, 550, 250, 354])
        c.send(b"Subject: p\r\n\r\npipelined\r\n.\r\nNOOP\r\n")
        self.assertEqual(c.read_reply().code, 250)
        self.assertEqual(c.read_reply().code, 250)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(len(b.messages[0].rcpts), 2)

    def test_whole_transaction_in_one_write_with_quit(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        self.assertEqual([c.read_reply().code for _ in range(3)], [250, 250, 354])
        c.send(b"Subject: q\r\n\r\nbody\r\n.\r\nMAIL FROM:<c@x.test>\r\nRCPT TO:<d@y.test>\r\nRSET\r\nQUIT\r\n")
        codes = [c.read_reply().code for _ in range(5)]
        self.assertEqual(codes, [250, 250, 250, 250, 221])
        c.expect_closed(3)
        self.assertEqual(len(b.messages), 1)


class BackpressureTest(ProxyTestCase):

    def test_slow_backend_gets_every_byte(self):
        # The backend reads 16 KiB every 5 ms: the proxy must buffer within
        # its caps and stop reading the client, never drop or reorder.
        b, p = self.start(backend=self.backend(recv_size=16384, read_delay=0.005))
        rnd = random.Random(2)
        table = bytes(b"abcdefghijklmnopqrstuvwxyz .,"[i % 29] for i in range(256))
        lines = [rnd.randbytes(rnd.randint(0, 300)).translate(table) for _ in range(14000)]
        content = b"Subject: slow\r\n\r\n" + CRLF.join(lines) + CRLF
        c = self.client(timeout=30)
        c.ehlo()
        replies = c.send_message("a@x.test", ["b@y.test"], content)
        self.assertEqual([x.code for x in replies], [250, 250, 354, 250], replies)
        self.assertTrue(b.wait_messages(1, timeout=30))
        self.assertEqual(hashlib.sha256(b.messages[0].data).hexdigest(),
                         hashlib.sha256(content).hexdigest())

    def test_client_not_reading_replies(self):
        # 5000 pipelined commands while the client reads nothing for a
        # second: every reply must still come, in order.
        b, p = self.start()
        c = self.client(timeout=20)
        c.ehlo()
        n = 5000
        payload = b"".join(b"VRFY m%05d-%s\r\n" % (i, b"p" * 40) for i in range(n))
        sent = threading.Event()
        err = []

        def sender():
            try:
                c.send(payload)
            except OSError as e:
                err.append(e)
            sent.set()

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        time.sleep(1.0)
        for i in range(n):
            r = c.read_reply(20)
            self.assertEqual(r.raw, b"252 2.0.0 m%05d-%s\r\n" % (i, b"p" * 40))
        self.assertTrue(sent.wait(10))
        self.assertEqual(err, [])
        t.join(5)

    def test_thousand_pipelined_noops(self):
        b, p = self.start()
        c = self.client(timeout=20)
        c.ehlo()
        c.send(b"NOOP\r\n" * 1000 + b"VRFY last\r\n")
        codes = [c.read_reply().code for _ in range(1000)]
        self.assertEqual(codes, [250] * 1000)
        self.assertEqual(c.read_reply().raw, b"252 2.0.0 last\r\n")


SMUGGLING = [
    # (name, smuggling part inserted after "Subject: s\r\n\r\nbefore")
    ("lf_dot_crlf", b"\n.\r\n"),
    ("crlf_dot_lf", b"\r\n.\n"),
    ("lf_dot_lf", b"\n.\n"),
    ("cr_dot_cr", b"\r.\r"),
    ("cr_dot_crlf", b"\r.\r\n"),
    ("crlf_dot_cr", b"\r\n.\r"),
    ("lf_dot_cr_lf", b"\n.\r\r\n"),
]
SMUGGLED = b"MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"


class BareNewlineNormalizeTest(ProxyTestCase):
    """bare_newline = "normalize": bare LF/CR become CRLF and a dot after one
    is stuffed, so even a lenient backend sees exactly one message."""

    def test_bare_lf_rewritten_to_crlf(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        self.assertEqual(envelope(c), [250, 250, 354])
        c.send(b"Subject: lf\r\n\r\na\nb\nc\r\n.\r\n")
        self.assertEqual(c.read_reply().code, 250)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, b"Subject: lf\r\n\r\na\r\nb\r\nc\r\n")


def _make_smuggling_test(name, part):
    def test(self):
        b, p = self.start(backend=self.backend(lenient=True))
        c = self.client()
        c.ehlo()
        self.assertEqual(envelope(c), [250, 250, 354])
        # The proxy (strict CRLF.CRLF) sees one message ending after "evil";
        # a lenient backend fed the raw bytes would see two.
        c.send(b"Subject: s\r\n\r\nbefore" + part + SMUGGLED)
        r = c.read_reply()
        self.assertEqual(r.code, 250, r)
        # Exactly one reply: nothing of the smuggled transaction is answered,
        # so the next reply is the one to VRFY.
        self.assertEqual(c.cmd("VRFY marker").raw, b"252 2.0.0 marker\r\n")
        self.assertTrue(b.wait_messages(1))
        time.sleep(0.3)
        self.assertEqual(len(b.messages), 1, b.messages)
        self.assertEqual(b.verbs(), [b"EHLO", b"MAIL", b"RCPT", b"DATA", b"VRFY"],
                         "a smuggled command reached the backend as a command")
        self.assertIn(b"MAIL FROM:<smuggled@evil.test>", b.messages[0].data)
        self.assertTrue(b.messages[0].data.startswith(b"Subject: s\r\n\r\nbefore"),
                        b.messages[0].data)
        self.assertTrue(b.messages[0].data.endswith(b"\r\nevil\r\n"), b.messages[0].data)
        # On the wire: no bare CR or LF left in the content.
        raw = b.raw_all()
        content = raw[raw.index(b"DATA\r\n") + 6:]
        stripped = content.replace(CRLF, b"")
        self.assertNotIn(b"\n", stripped, "bare LF reached the backend: %r" % content)
        self.assertNotIn(b"\r", stripped, "bare CR reached the backend: %r" % content)
    test.__name__ = "test_smuggling_" + name
    return test


for _name, _part in SMUGGLING:
    setattr(BareNewlineNormalizeTest, "test_smuggling_" + _name, _make_smuggling_test(_name, _part))


class BareNewlineRejectTest(ProxyTestCase):

    def reject_case(self, content):
        b, p = self.start(bare_newline="reject", backend=self.backend(lenient=True))
        c = self.client()
        c.ehlo()
        port = c.local_port
        self.assertEqual(envelope(c), [250, 250, 354])
        c.send(content)
        r = c.read_reply()
        self.assertReply(r, 521, "5.5.2")
        c.expect_closed(3)
        self.assertTrue(b.wait_all_closed(3), "backend leg left open")
        time.sleep(0.2)
        self.assertEqual(b.messages, [], "the backend got an end-of-data for a rejected message")
        kv = p.wait_session_end(client_port=port)
        self.assertIsNotNone(kv)
        self.assertEqual(kv["end"], "bare_newline", kv["_line"])

    def test_bare_lf_rejected(self):
        self.reject_case(b"Subject: r\r\n\r\nbefore\n.\r\n" + SMUGGLED)

    def test_bare_cr_rejected(self):
        self.reject_case(b"Subject: r\r\n\r\nbefore\r.\r" + SMUGGLED)

    def test_bare_lf_alone_rejected(self):
        self.reject_case(b"Subject: r\r\n\r\nplain bare\nlf\r\n.\r\n")

    def test_clean_message_accepted(self):
        b, p = self.start(bare_newline="reject")
        c = self.client()
        c.ehlo()
        replies = c.send_message("a@x.test", ["b@y.test"], b"Subject: clean\r\n\r\n.dot\r\n")
        self.assertEqual([x.code for x in replies], [250, 250, 354, 250])
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, b"Subject: clean\r\n\r\n.dot\r\n")


class BdatTest(ProxyTestCase):

    def test_bdat_counted_passthrough(self):
        b, p = self.start()
        c = self.client()
        r = c.ehlo()
        self.assertIn("CHUNKING", r.keywords())
        self.assertEqual(c.cmd("MAIL FROM:<a@x.test>").code, 250)
        self.assertEqual(c.cmd("RCPT TO:<b@y.test>").code, 250)
        chunk1 = b"Subject: bdat\r\n\r\nline\r\n.\r\nMAIL FROM:<x@evil.test>\r\n"
        chunk2 = b"QUIT\r\n\r\n.\r\nbare\nlf and \x00 nul"
        c.send(b"BDAT %d\r\n" % len(chunk1) + chunk1)
        self.assertEqual(c.read_reply().code, 250)
        c.send(b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
        self.assertEqual(c.read_reply().code, 250)
        self.assertEqual(c.cmd("NOOP").code, 250)
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].kind, "BDAT")
        self.assertEqual(b.messages[0].data, chunk1 + chunk2)
        self.assertEqual(b.verbs(), [b"EHLO", b"MAIL", b"RCPT", b"BDAT", b"BDAT", b"NOOP"])

    def test_bdat_pipelined_and_zero_last(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        chunk = b"x" * 70000 + b"\r\n"
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT %d\r\n" % len(chunk) +
               chunk + b"BDAT 0 LAST\r\n")
        self.assertEqual([c.read_reply(10).code for _ in range(4)], [250, 250, 250, 250])
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, chunk)

    def test_bdat_over_tls(self):
        b, p = self.start()
        c = self.client()
        c.ehlo()
        c.starttls()
        c.ehlo()
        chunk = bytes(range(256)) * 40
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT %d LAST\r\n" % len(chunk) + chunk)
        self.assertEqual([c.read_reply(10).code for _ in range(3)], [250, 250, 250])
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, chunk)

    def test_bdat_binary_not_subject_to_bare_newline_reject(self):
        b, p = self.start(bare_newline="reject")
        c = self.client()
        c.ehlo()
        chunk = b"Subject: bin\r\n\r\nbare\nlf and bare\rcr\n.\n"
        c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT %d LAST\r\n" % len(chunk) + chunk)
        self.assertEqual([c.read_reply().code for _ in range(3)], [250, 250, 250])
        self.assertTrue(b.wait_messages(1))
        self.assertEqual(b.messages[0].data, chunk)

    def test_bdat_without_chunking_503_and_chunk_discarded(self):
        ehlo = [k for k in harness.DEFAULT_EHLO if k != "CHUNKING"]
        b, p = self.start(backend=self.backend(ehlo=ehlo))
        c = self.client()
        r = c.ehlo()
        self.assertNotIn("CHUNKING", r.keywords())
        self.assertEqual(c.cmd("MAIL FROM:<a@x.test>").code, 250)
        self.assertEqual(c.cmd("RCPT TO:<b@y.test>").code, 250)
        chunk = b"VRFY smuggled\r\nRSET\r\nQUIT\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        r = c.read_reply()
        self.assertReply(r, 503, "5.5.1")
        # The chunk was not taken as commands: exactly one reply came for it
        # and the session (and transaction) is still open.
        r = c.cmd("NOOP")
        self.assertEqual(r.raw, b"250 2.0.0 Ok\r\n")
        self.assertNeverForwarded(b, b"smuggled")
        self.assertNotIn(b"BDAT", b.raw_all())
        self.assertNotIn(b"QUIT", b.verbs())
        self.assertNotIn(b"RSET", b.verbs())
        self.assertEqual(b.messages, [])


if __name__ == "__main__":
    harness.run_tests()
