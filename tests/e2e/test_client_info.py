"""Client identity: PROXY protocol v1/v2 from a load balancer in front
(proxy_protocol = true) and towards the backend (backend_client_info =
proxy-v1 | proxy-v2 | xclient)."""

import socket
import struct
import time
import unittest

import harness
from harness import CRLF, Client, ProxyTestCase

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, dst, sport, dport):
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return V2_SIG + b"\x21\x11" + struct.pack("!H", len(addrs)) + addrs


def parse_v2(raw):
    """(command, family, src, dst, sport, dport, total length) of a v2 header at raw[0]."""
    if not raw.startswith(V2_SIG):
        raise AssertionError("no PROXY v2 signature: %r" % raw[:40])
    ver_cmd, fam = raw[12], raw[13]
    (length,) = struct.unpack("!H", raw[14:16])
    body = raw[16:16 + length]
    if fam == 0x11:
        src, dst = socket.inet_ntoa(body[0:4]), socket.inet_ntoa(body[4:8])
        sport, dport = struct.unpack("!HH", body[8:12])
    else:
        src = dst = None
        sport = dport = None
    return ver_cmd, fam, src, dst, sport, dport, 16 + length


class InboundProxyProtocolTest(ProxyTestCase):

    def session_after_header(self, header, expect_client):
        b, p = self.start(proxy_protocol=True)
        c = self.client(greet=False)
        c.send(header)
        self.assertEqual(c.greeting().code, 220)
        self.assertEqual(c.ehlo().code, 250)
        c.cmd("QUIT")
        c.expect_closed(3)
        self.assertNotIn(b"PROXY", b.raw_all())
        self.assertNotIn(V2_SIG, b.raw_all())
        ends = harness.wait_until(p.session_ends, 3)
        self.assertTrue(ends)
        self.assertEqual(ends[0]["client"], expect_client, ends[0]["_line"])
        self.assertEqual(ends[0]["end"], "quit", ends[0]["_line"])

    def test_v1_header(self):
        self.session_after_header(b"PROXY TCP4 192.0.2.7 127.0.0.1 40512 25\r\n", "192.0.2.7:40512")

    def test_v2_header(self):
        self.session_after_header(v2_header("192.0.2.8", "127.0.0.1", 40000, 25), "192.0.2.8:40000")

    def test_missing_header_closed(self):
        b, p = self.start(proxy_protocol=True)
        c = self.client(greet=False)
        c.send(b"EHLO no-header.test\r\n")
        extra = c.expect_closed(5)
        self.assertNotIn(b"250", extra)
        self.assertNeverForwarded(b, b"EHLO")

    def test_v2_header_with_tlvs_up_to_the_maximum(self):
        # A load balancer's TLVs (ALPN, authority, a large custom one) are
        # skipped; the largest header the protocol allows still parses.
        addrs = socket.inet_aton("192.0.2.9") + socket.inet_aton("198.51.100.2") + \
            struct.pack("!HH", 40001, 25)
        big = 65535 - len(addrs) - 3 - 5
        tlvs = b"\x01\x00\x02h2" + b"\xee" + struct.pack("!H", big) + b"t" * big
        header = V2_SIG + b"\x21\x11" + struct.pack("!H", len(addrs) + len(tlvs)) + addrs + tlvs
        self.assertEqual(len(header), 16 + 65535)
        self.session_after_header(header, "192.0.2.9:40001")

    def test_v2_header_with_broken_tlv_refused(self):
        addrs = socket.inet_aton("192.0.2.9") + socket.inet_aton("198.51.100.2") + \
            struct.pack("!HH", 40001, 25)
        tlvs = b"\x01\x00\x09h2"  # its length runs past the header
        header = V2_SIG + b"\x21\x11" + struct.pack("!H", len(addrs) + len(tlvs)) + addrs + tlvs
        b, p = self.start(proxy_protocol=True)
        c = self.client(greet=False)
        c.send(header)
        c.expect_closed(5)
        kv = p.wait_session_end()
        self.assertEqual(kv["end"], "proxy_header_invalid", kv["_line"])

    def test_proxy_header_only_from_listed_networks(self):
        header = v2_header("192.0.2.9", "198.51.100.2", 40001, 25)
        b, p = self.start(proxy_protocol=True, proxy_protocol_from=["10.0.0.0/8"])
        c = self.client(greet=False)
        c.send(header)
        c.expect_closed(5)
        kv = p.wait_session_end()
        self.assertEqual(kv["end"], "proxy_header_untrusted", kv["_line"])
        self.assertNeverForwarded(b, b"EHLO")
        # From a listed network the header is taken.
        b2, p2 = self.start(proxy_protocol=True, proxy_protocol_from=["127.0.0.0/8", "::1"])
        c = self.client(greet=False)
        c.send(header)
        self.assertEqual(c.greeting().code, 220)
        c.cmd("QUIT")
        kv = p2.wait_session_end()
        self.assertEqual(kv["client"], "192.0.2.9:40001", kv["_line"])

    def test_proxied_client_forwarded_as_v1_to_backend(self):
        b, p = self.start(proxy_protocol=True, backend_client_info="proxy-v1",
                          backend=self.backend(proxy_header=True))
        c = self.client(greet=False)
        c.send(b"PROXY TCP4 192.0.2.7 198.51.100.1 40512 25\r\n")
        self.assertEqual(c.greeting().code, 220)
        self.assertEqual(c.ehlo().code, 250)
        raw = b.raw_all()
        first = raw.split(CRLF, 1)[0]
        self.assertTrue(first.startswith(b"PROXY TCP4 192.0.2.7 "), raw[:120])
        self.assertIn(b" 40512 ", first + b" ")


class BackendClientInfoTest(ProxyTestCase):

    def test_proxy_v1_to_backend(self):
        b, p = self.start(backend_client_info="proxy-v1", backend=self.backend(proxy_header=True))
        c = self.client()
        cport = c.local_port
        self.assertEqual(c.ehlo().code, 250)
        raw = b.raw_all()
        self.assertTrue(raw.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\nEHLO " % (cport, p.port)),
                        raw[:120])

    def test_proxy_v2_to_backend(self):
        b, p = self.start(backend_client_info="proxy-v2", backend=self.backend(proxy_header=True))
        c = self.client()
        cport = c.local_port
        self.assertEqual(c.ehlo().code, 250)
        raw = b.raw_all()
        ver_cmd, fam, src, dst, sport, dport, n = parse_v2(raw)
        self.assertEqual(ver_cmd, 0x21)
        self.assertEqual(fam, 0x11)
        self.assertEqual((src, dst, sport, dport), ("127.0.0.1", "127.0.0.1", cport, p.port))
        self.assertTrue(raw[n:].startswith(b"EHLO "), raw[n:n + 40])

    def test_xclient_to_backend(self):
        ehlo = harness.DEFAULT_EHLO + ["XCLIENT NAME ADDR PORT"]
        b, p = self.start(backend_client_info="xclient", backend=self.backend(ehlo=ehlo))
        c = self.client(greet=False)
        cport = c.local_port
        g = c.greeting()
        self.assertEqual(g.code, 220)
        r = c.ehlo()
        # The client sees no trace of the XCLIENT exchange: its first reply
        # after the greeting is the EHLO reply.
        self.assertEqual(r.code, 250, r)
        self.assertEqual(r.lines[0], "250-backend.test")
        self.assertNotIn("XCLIENT", r.keywords())
        xc = [l for l in b.commands_all() if l.upper().startswith(b"XCLIENT")]
        self.assertEqual(len(xc), 1, b.commands_all())
        self.assertIn(b"ADDR=127.0.0.1", xc[0])
        self.assertIn(b"PORT=%d" % cport, xc[0])
        self.assertEqual(c.cmd("VRFY marker").raw, b"252 2.0.0 marker\r\n")

    def test_xclient_refused_by_backend(self):
        # The backend offers XCLIENT, then refuses it (one that does not
        # offer it is used without: test_backend_dialogue.py).
        b, p = self.start(backend_client_info="xclient", backend=self.backend(
            ehlo=harness.DEFAULT_EHLO + ["XCLIENT NAME ADDR PORT"],
            actions={"XCLIENT": b"550 5.7.0 not authorized"}))
        c = self.client(greet=False)
        try:
            r = c.read_reply(5)
            if r.code == 220:
                r = c.ehlo()
        except harness.ConnectionClosed:
            r = None
        if r is not None:
            self.assertEqual(r.code, 421, r)
        c.expect_closed(3)


if __name__ == "__main__":
    harness.run_tests()
