"""DANE (RFC 7672) cross-checked against the reference: Postfix's own smtp
client with smtp_tls_security_level = dane decides first, then the proxy
(outbound, destination = "mx.example.net:PORT", dane = true, enforce = true)
must decide the same for the same DNS and the same server.

One environment per test class, inside a private network and mount
namespace (validating_resolver.py: "unshare --net --mount", so root):

  nsd on 127.53.0.1:53      example.net, DNSSEC-signed (dnszone.py), one TLSA
                            RRset per case at _PORT._tcp.mx.example.net;
                            mx.example.net A 127.0.0.1
  unbound on 127.0.0.1:53   validating recursor (val-permissive-mode: no),
                            stub zone example.net -> nsd, the zone's DS as
                            its trust anchor. The namespace's
                            /etc/resolv.conf names it (with "options
                            trust-ad"), so Postfix, which does not validate
                            but believes the AD bit (smtp_dns_support_level
                            = dnssec), gets what a validating resolver
                            decided. Checked with dig before anything relies
                            on it.
  destinations 127.0.0.1:PORT  scripted SMTP servers, one per case, all with
                            one certificate for mx.example.net from a CA of
                            their own; the chain sent includes the CA

Cases (port, TLSA RRset -> what RFC 7672 asks, and Postfix 3.7 does):
  dane_ee        2501  3 1 1 leaf key           delivered, "Verified"
  dane_ta        2502  2 0 1 the CA certificate delivered, "Verified"
  mismatch       2503  3 1 1 some other key     deferred 4.7.5 "Server
                                                certificate not verified"
  unusable       2504  0 0 1 CA, 1 1 1 leaf key delivered, "Untrusted": PKIX
                                                usages are unusable in SMTP
                                                (RFC 7672 §3.1.3), TLS is
                                                still mandatory (§2.2)
  bogus          2505  3 1 1 leaf key, its      deferred 4.7.5 "TLSA lookup
                       RRSIG broken             error" (SERVFAIL)
  no_tlsa        2506  none (NXDOMAIN, signed)  delivered, "Untrusted": DANE
                                                does not apply ("may")
  unusable_plain 2507  1 1 1 leaf key; no       deferred 4.7.4 "TLS is
                       STARTTLS offered         required, but was not offered"

test_postfix_<case>: Postfix (one private instance in the namespace,
transport_maps "smtp:[mx.example.net]:PORT" per case: no MX lookup, the host
is the TLSA base domain) decides as expected, read from its maillog:
"Verified|Trusted|Untrusted TLS connection established to
mx.example.net[127.0.0.1]:PORT" and "status=sent|deferred (...)"; the
warnings it logs are exactly the expected ones (Case.warnings).
test_proxy_<case>: the same expectation for Postfix, and the proxy's verdict
equals Postfix's: delivered over TLS with security=tls-verified auth=dane,
delivered over TLS with security=tls-unverified auth=none, or refused with
421 4.7.5 / 4.4.3 (or Postfix's own code) and nothing reaching the
destination. The proxy resolves straight at nsd and validates with the
zone's trust anchor itself (resolver.dnssec = "validate"): the two sides
share the zone, not the validator.

Postfix runs once per test process, in the first test that needs it; its
verdicts are kept for the others. Only Postfix:
  bazel test //tests/e2e:test_postfix_dane --test_filter=PostfixDaneTest.test_postfix_
Skips only when not root or when unshare is refused; missing tools are
errors (bazel/deps.sh installs them).
"""

import collections
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest

import dnszone
import harness
import outbound_harness as oh
import postfix
import validating_resolver as vr

ZONE_IP = "127.53.0.1"
DEST_IP = "127.0.0.1"
MX = "mx." + dnszone.ORIGIN
SENDER = "alice@legacy.test"
EHLO = ["mx.example.net", "PIPELINING", "SIZE 52428800", "STARTTLS", "ENHANCEDSTATUSCODES",
        "8BITMIME"]
GREETING = b"220 mx.example.net ESMTP dane destination\r\n"

VERIFIED, ENCRYPTED, DEFERRED = "verified", "encrypted", "deferred"

Case = collections.namedtuple("Case", "name port tlsa broken expect warnings starttls",
                              defaults=(True,))

# tlsa: a function of the Keys (hex digests) giving the RRset's RDATA.
# warnings: what Postfix must say about the case as "warning:" lines (every
# one of them at least once); no other warning may appear in its maillog.
# starttls: whether the destination offers STARTTLS.
CASES = [
    Case("dane_ee", 2501, lambda k: ["3 1 1 " + k.leaf_spki], False, VERIFIED, ()),
    Case("dane_ta", 2502, lambda k: ["2 0 1 " + k.ca_cert], False, VERIFIED, ()),
    Case("mismatch", 2503, lambda k: ["3 1 1 " + k.other_spki], False, DEFERRED, ()),
    Case("unusable", 2504, lambda k: ["0 0 1 " + k.ca_cert, "1 1 1 " + k.leaf_spki], False,
         ENCRYPTED, (r"_2504\._tcp\.mx\.example\.net unsupported TLSA certificate usage: 0 0 1 ",
                     r"_2504\._tcp\.mx\.example\.net unsupported TLSA certificate usage: 1 1 1 ")),
    Case("bogus", 2505, lambda k: ["3 1 1 " + k.leaf_spki], True, DEFERRED,
         (r"DANE TLSA lookup problem: .*name=_2505\._tcp\.mx\.example\.net type=TLSA: "
          r"Host not found, try again",
          r"TLS policy lookup for \[mx\.example\.net\]:2505/mx\.example\.net: "
          r"TLSA lookup error for mx\.example\.net:2505")),
    Case("no_tlsa", 2506, lambda k: [], False, ENCRYPTED, ()),
    # Unusable records still make TLS mandatory (RFC 7672 §2.2): no
    # fallback to plaintext when the server offers no STARTTLS.
    Case("unusable_plain", 2507, lambda k: ["1 1 1 " + k.leaf_spki], False, DEFERRED,
         (r"_2507\._tcp\.mx\.example\.net unsupported TLSA certificate usage: 1 1 1 ",),
         starttls=False),
]

POSTFIX_WAIT = 90.0  # seconds for every case's first decision (loaded machine)


def rcpt_of(case):
    return "bob@%s.dane.test" % case.name.replace("_", "-")


def tlsa_owner(case):
    return "_%d._tcp.mx" % case.port


# ---------------------------------------------------------------------------
# Certificates and their TLSA digests


def _der_sha256(cmd, stdin=None):
    r = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    if r.returncode != 0 or not r.stdout:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.decode(errors="replace")))
    return hashlib.sha256(r.stdout).hexdigest()


def spki_sha256(cert):
    pem = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"],
                         stdout=subprocess.PIPE, check=True, timeout=30).stdout
    return _der_sha256(["openssl", "pkey", "-pubin", "-outform", "DER"], pem)


def cert_sha256(cert):
    return _der_sha256(["openssl", "x509", "-in", cert, "-outform", "DER"])


class Keys:
    """The destinations' PKI (CA + leaf for mx.example.net, the chain file
    leaf + CA) and the digests the TLSA records are made of."""

    def __init__(self, d):
        self.pki = harness.make_pki(d, cn=MX)
        self.chain = os.path.join(d, "chain.pem")
        with open(self.chain, "w") as out:
            for p in (self.pki.cert, self.pki.ca):
                with open(p) as f:
                    out.write(f.read())
        self.leaf_spki = spki_sha256(self.pki.cert)
        self.ca_cert = cert_sha256(self.pki.ca)
        # Another server's key (the harness certificate's): a stale record.
        self.other_spki = spki_sha256(harness.pki().cert)
        assert self.other_spki != self.leaf_spki

    def server_context(self):
        return oh.tls_server_context(oh.CertKey(self.chain, self.pki.key))


# ---------------------------------------------------------------------------
# The environment


class DaneEnv:
    """Namespace, signed zone, validating resolver and destinations."""

    def __init__(self):
        self.ns = self.zone = self.unbound = None
        self.dests = {}

    def start(self):
        self.keys = Keys(harness.new_tmpdir("dane-pki"))
        self.ns = vr.Namespace(harness.new_tmpdir("dane-ns")).start()
        self.zone = dnszone.Zone(harness.new_tmpdir("dane-zone"), ZONE_IP)
        for c in CASES:
            self.zone.set_tlsa(tlsa_owner(c), *c.tlsa(self.keys))
            if c.broken:
                self.zone.break_signature(tlsa_owner(c), "TLSA")
        # nsd is forked by a thread inside the network namespace, so it
        # lives there (it needs no private /etc).
        self.ns.run_in(self.zone.start)
        self.unbound = vr.Unbound(self.ns, harness.new_tmpdir("dane-unbound"), self.zone).start()
        ctx = self.keys.server_context()
        for c in CASES:
            b = self.ns.run_in(lambda c=c: oh.BoundBackend(
                DEST_IP, c.port, name="destination-" + c.name, greeting=GREETING,
                ehlo=EHLO if c.starttls else [k for k in EHLO if k != "STARTTLS"],
                tls_ctx=ctx if c.starttls else None))
            b.start()
            self.dests[c.name] = b
        return self

    def check_dns(self):
        """What the resolver says before anyone relies on it; a list of
        problems (empty when the environment is as the cases need it)."""
        bad = []
        inside = self.ns.resolv_conf_inside()
        if "nameserver 127.0.0.1" not in inside or "trust-ad" not in inside:
            bad.append("resolv.conf inside: %r" % inside)
        a = vr.dig(self.ns, self.unbound.server, MX, "A")
        if a.status != "NOERROR" or not a.secure or a.rdatas("A") != [DEST_IP]:
            bad.append("%s A: %r" % (MX, a))
        for c in CASES:
            name = "%s.%s" % (tlsa_owner(c), dnszone.ORIGIN)
            r = vr.dig(self.ns, self.unbound.server, name, "TLSA")
            want = [t.upper() for t in c.tlsa(self.keys)]
            got = [t.replace(" ", "").upper() for t in r.rdatas("TLSA")]
            if c.broken:
                raw = vr.dig(self.ns, self.unbound.server, name, "TLSA", cd=True)
                if r.status != "SERVFAIL" or not raw.rdatas("TLSA"):
                    bad.append("%s should be bogus: %r / with +cd %r" % (name, r, raw))
            elif not want:
                if r.status != "NXDOMAIN" or not r.secure:
                    bad.append("%s should be a secure NXDOMAIN: %r" % (name, r))
            elif r.status != "NOERROR" or not r.secure or \
                    sorted(got) != sorted(w.replace(" ", "") for w in want):
                bad.append("%s should be secure %r: %r" % (name, want, r))
        return bad

    def stop(self):
        for b in self.dests.values():
            b.stop()
        for part in (self.unbound, self.zone):
            if part is not None:
                part.stop()
        if self.ns is not None:
            self.ns.stop()

    def logs(self):
        out = ""
        if self.unbound is not None:
            out += "----- unbound -----\n" + self.unbound.log()[-4000:]
        if self.zone is not None:
            out += "----- nsd -----\n" + self.zone.log()[-2000:]
        return out


# ---------------------------------------------------------------------------
# Postfix and the proxy inside the namespace


class NsPostfix(postfix.Postfix):
    """A postfix.Postfix whose master runs inside the namespace (started with
    nsenter, so that its daemons have the namespace's lo and resolv.conf);
    readiness is the smtpd port listening there."""

    def __init__(self, ns, name, **kw):
        self.ns = ns
        super().__init__(name, **kw)

    def start(self, full_check=None):
        self.started = True
        with postfix._live_lock:
            postfix._live.add(self)
        t0 = time.monotonic()
        rc, out = self.ns.run([postfix.POSTFIX, "-c", self.etc, "start"],
                              timeout=postfix.START_TIMEOUT + 10)
        if rc != 0:
            raise RuntimeError("postfix -c %s start failed (%d): %s\n%s"
                               % (self.etc, rc, out, self.log()[-3000:]))
        pidfile = os.path.join(self.queue, "pid", "master.pid")

        def ready():
            if self.master_pid is None:
                try:
                    with open(pidfile) as f:
                        self.master_pid = int(f.read().split()[0])
                except (OSError, ValueError, IndexError):
                    return False
            return self.ns.is_listening(self.port)
        if not harness.wait_until(ready, postfix.START_TIMEOUT + 10, 0.05):
            raise RuntimeError("postfix %s: not listening on %d in the namespace\n%s"
                               % (self.name, self.port, self.log()[-3000:]))
        self.start_seconds = time.monotonic() - t0
        return self


class NsProxy(harness.Proxy):
    """The daemon inside the namespace (nsenter execs it: the pid and the
    signals are the daemon's own)."""

    def __init__(self, ns, config, name="proxy"):
        self.ns = ns
        super().__init__(config, name=name)

    def start(self):
        self._err = open(self.log_path, "ab")
        self._out = open(self.out_path, "ab")
        self.proc = self.ns.popen([harness.proxy_binary(), "-c", self.config_path],
                                  stdout=self._out, stderr=self._err, close_fds=True)
        pid, ports = self.proc.pid, self.listen_ports()

        def ready():
            try:
                exe = os.path.basename(os.readlink("/proc/%d/exe" % pid))
            except OSError:
                return False
            return exe == os.path.basename(harness.proxy_binary()) and \
                all(oh.is_listening_in(pid, p) for p in ports)
        harness.wait_until(lambda: self.proc.poll() is not None or ready(), self.START_TIMEOUT)
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            raise RuntimeError("proxy exited with %d during start-up:\n%s" %
                               (self.proc.returncode, self.log()[-4000:]))
        if not ready():
            self.kill()
            raise RuntimeError("proxy did not listen on %s within %.0f s:\n%s" %
                               (ports, self.START_TIMEOUT, self.log()[-4000:]))
        return self


# ---------------------------------------------------------------------------
# Verdicts


class Verdict:
    """What one side decided for one case: kind (VERIFIED, ENCRYPTED,
    DEFERRED, or something else that no case expects) and the evidence."""

    def __init__(self, kind, evidence, **detail):
        self.kind = kind
        self.evidence = evidence
        self.detail = detail

    def __repr__(self):
        return "%s (%s)" % (self.kind, self.evidence)


def _status_rx(qid):
    return re.compile(r"^.*postfix/smtp\[\d+\]: %s: to=<[^>]*>, relay=(\S+), .*dsn=(\S+), "
                      r"status=(sent|deferred|bounced) \((.*)\)$" % re.escape(qid), re.M)


def _tls_rx(port):
    return re.compile(r"^.*postfix/smtp\[\d+\]: (Verified|Trusted|Untrusted|Anonymous) TLS "
                      r"connection established to %s\[%s\]:%d: (.*)$"
                      % (re.escape(MX), re.escape(DEST_IP), port), re.M)


def postfix_verdict(log, case, qid):
    """The first decision Postfix logged for case's message (queue id qid),
    or None while there is none."""
    st = _status_rx(qid).search(log)
    if st is None:
        return None
    relay, dsn, status, why = st.groups()
    tls = _tls_rx(case.port).search(log)
    level = tls.group(1) if tls else None
    evidence = st.group(0).strip() + (" | " + tls.group(0).strip() if tls else "")
    if status == "deferred":
        return Verdict(DEFERRED, evidence, dsn=dsn, why=why, relay=relay)
    if status != "sent":
        return Verdict(status, evidence, dsn=dsn, why=why)
    kind = {"Verified": VERIFIED, "Trusted": "trusted", "Untrusted": ENCRYPTED,
            "Anonymous": ENCRYPTED, None: "plaintext"}[level]
    return Verdict(kind, evidence, dsn=dsn, level=level)


# ---------------------------------------------------------------------------
# The tests


def _skip(reason):
    sys.stderr.write("SKIP: %s\n" % reason)
    raise unittest.SkipTest(reason)


class PostfixDaneTest(postfix.PostfixTestCase):

    env = None
    _postfix_result = None  # {case name: Verdict}, or the text of a failure

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            _skip("not root: unshare --net --mount and Postfix's setuid need it")
        why = postfix.unavailable() or vr.unavailable()
        if why:
            raise RuntimeError("cannot run: %s" % why)
        postfix.remove_stale()
        postfix.install_sigterm_handler()
        env = DaneEnv()
        try:
            env.start()
        except vr.NamespaceUnavailable as e:
            env.stop()
            _skip(str(e))
        except BaseException:
            sys.stderr.write(env.logs())
            env.stop()
            raise
        cls.env = env
        cls.dns_problems = env.check_dns()

    @classmethod
    def tearDownClass(cls):
        if cls.env is not None:
            cls.env.stop()
            cls.env = None

    def setUp(self):
        super().setUp()
        self.assertEqual(self.dns_problems, [], "the validating resolver is not as the "
                         "cases need it:\n" + self.env.logs())

    def _assert_nothing_left(self):
        """PostfixTestCase's check, except that the warnings the cases
        provoke (Case.warnings) are expected, and must have been logged."""
        for pf in self._postfixes:
            left = pf.processes()
            if left:
                postfix._kill_all(left, signal.SIGKILL)
            self.assertEqual(left, [], "postfix %s: processes left after stop" % pf.name)
            self.assertFalse(os.path.exists(pf.dir), "postfix %s: %s left" % (pf.name, pf.dir))
            log = pf.log()
            expected = [re.compile(w) for c in CASES for w in c.warnings]
            bad = postfix.trouble(
                log, lambda line: re.search(r"postfix/smtp\[\d+\]: warning: ", line) and
                any(w.search(line) for w in expected))
            self.assertEqual(bad, [], "postfix %s logged trouble" % pf.name)
            missing = [w.pattern for w in expected
                       if not re.search(r"postfix/smtp\[\d+\]: warning: .*" + w.pattern, log)]
            self.assertEqual(missing, [], "postfix %s did not warn as expected" % pf.name)

    def _dump_diagnostics(self):
        super()._dump_diagnostics()
        if self.env is not None:
            sys.stderr.write(self.env.logs())

    # -- Postfix ------------------------------------------------------------

    def start_postfix(self):
        transport = "".join("%s.dane.test smtp:[%s]:%d\n" % (c.name.replace("_", "-"), MX,
                                                             c.port) for c in CASES)
        pf = NsPostfix(self.env.ns, "danesender", main={
            "smtp_dns_support_level": "dnssec",
            "smtp_host_lookup": "dns",
            "smtp_tls_security_level": "dane",
            "smtp_tls_CAfile": "",
            "smtp_tls_loglevel": 1,
            # The default probe asks for the root's NS, which this resolver
            # refuses: probe the zone that is there instead.
            "dnssec_probe": "ns:%s" % dnszone.ORIGIN,
        })
        self._postfixes.append(pf)
        self.addCleanup(pf.remove)
        self.addCleanup(pf.stop)
        pf.set(transport_maps="texthash:" + pf.write_file("transport", transport))
        pf.start()
        return pf

    def _run_postfix(self):
        pf = self.start_postfix()
        qids = {}
        for c in CASES:
            _, _, whole = postfix.make_message("dane " + c.name, SENDER, rcpt_of(c),
                                               "dane-" + c.name)
            reply = self.env.ns.run_in(postfix.submit, pf.port, SENDER, [rcpt_of(c)], whole)
            m = re.search(r"queued as (\w+)", reply)
            self.assertTrue(m, "no queue id in %r" % reply)
            qids[c.name] = m.group(1)

        def decided():
            log = pf.log()
            got = {c.name: postfix_verdict(log, c, qids[c.name]) for c in CASES}
            return got if all(got.values()) else None
        verdicts = harness.wait_until(decided, POSTFIX_WAIT, 0.1)
        if not verdicts:
            log = pf.log()
            undecided = [c.name for c in CASES if not postfix_verdict(log, c, qids[c.name])]
            self.fail("Postfix decided nothing for %s within %.0f s" % (undecided,
                                                                       POSTFIX_WAIT))
        # Deferred messages would be retried every second: stop now, so that
        # the destinations see nothing of Postfix during the proxy's turn.
        pf.stop()
        return verdicts

    def postfix_verdicts(self):
        cls = type(self)
        if cls._postfix_result is None:
            try:
                cls._postfix_result = self._run_postfix()
            except BaseException as e:
                cls._postfix_result = "the Postfix run failed: %r" % (e,)
                raise
        if isinstance(cls._postfix_result, str):
            self.fail(cls._postfix_result + " (see the first test that ran it)")
        return cls._postfix_result

    def check_postfix(self, case):
        v = self.postfix_verdicts()[case.name]
        self.assertEqual(v.kind, case.expect, "Postfix decided %r for %s" % (v, case.name))
        if v.kind == DEFERRED:
            self.assertTrue(v.detail["dsn"].startswith("4."), v)
        return v

    # -- the proxy ----------------------------------------------------------

    def start_proxy(self, case):
        listener = oh.outbound_listener("%s:%d" % (MX, case.port), policy="opportunistic",
                                        name=case.name.replace("_", "-"),
                                        listen="127.0.0.1:%d" % (case.port + 10000))
        listener["dane"] = True
        listener["enforce"] = True
        cfg = oh.outbound_config([listener], resolver={
            "servers": [self.env.zone.server],
            "dnssec": "validate",
            "trust_anchor": self.env.zone.trust_anchor,
        })
        p = NsProxy(self.env.ns, cfg, name=self.id())
        self._proxies.append(p)
        self.addCleanup(p.stop)
        p.start()
        return p, case.port + 10000

    def connect(self, port):
        def mk():
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        c = harness.Client(port, connect=False, timeout=15)
        c.sock = self.env.ns.run_in(mk)
        self.addCleanup(c.close)
        return c

    def proxy_verdict(self, case, pv):
        dest = self.env.dests[case.name]
        before_conns, before_msgs = len(dest.conns), len(dest.messages)
        p, port = self.start_proxy(case)
        c = self.connect(port)
        _, _, whole = postfix.make_message("proxy " + case.name, SENDER, rcpt_of(case),
                                           "proxy-" + case.name)
        replies = []
        try:
            replies.append(c.greeting())
            if replies[-1].code == 220:
                replies.append(c.ehlo("legacy.test"))
            if replies[-1].code == 250:
                replies += c.send_message(SENDER, [rcpt_of(case)], whole)
        except harness.ConnectionClosed as e:
            replies.append(harness.Reply(["(closed: %s)" % e], b""))
        last = replies[-1]
        shown = " / ".join(r.lines[0] for r in replies if r.lines)
        if last.code == 250 and len(replies) >= 5:
            c.cmd("QUIT")
            kv = p.wait_session_end(c.local_port, timeout=10)
            self.assertIsNotNone(kv, p.log()[-3000:])
            self.assertTrue(dest.wait_messages(before_msgs + 1), "250 but nothing arrived")
            conn = dest.conns[before_conns]
            self.assertIsNotNone(conn.tls_version, "delivered in plaintext: %s" % kv["_line"])
            sec, auth = kv.get("security"), kv.get("auth")
            kind = {("tls-verified", "dane"): VERIFIED,
                    ("tls-unverified", "none"): ENCRYPTED}.get((sec, auth),
                                                               "security=%s auth=%s" % (sec, auth))
            return Verdict(kind, kv["_line"], replies=shown)
        if last.code == 421:
            c.expect_closed(10)
            kv = p.wait_session_end(c.local_port, timeout=10)
            time.sleep(0.2)
            self.assertEqual(len(dest.messages), before_msgs, "refused, yet delivered")
            for conn in dest.conns[before_conns:]:
                self.assertNotIn(b"MAIL", b" ".join(conn.commands), "MAIL reached it")
            # The codes the contract names for TLS policy and DNSSEC
            # failures, or the one Postfix chose.
            self.assertIn(last.enhanced, ("4.7.5", "4.4.3", pv.detail["dsn"]), last)
            return Verdict(DEFERRED, "%s | %s" % (shown, kv["_line"] if kv else "no end line"),
                           enhanced=last.enhanced)
        return Verdict("replies: " + shown, shown)

    def check_proxy(self, case):
        pv = self.check_postfix(case)
        xv = self.proxy_verdict(case, pv)
        self.assertEqual(xv.kind, pv.kind, "%s: Postfix %r, the proxy %r" % (case.name, pv, xv))


def _add_tests():
    for c in CASES:
        def t_postfix(self, c=c):
            self.check_postfix(c)

        def t_proxy(self, c=c):
            self.check_proxy(c)
        t_postfix.__doc__ = "Postfix: %s on :%d is %s" % (c.name, c.port, c.expect)
        t_proxy.__doc__ = "the proxy decides %s as Postfix does (%s)" % (c.name, c.expect)
        setattr(PostfixDaneTest, "test_postfix_" + c.name, t_postfix)
        setattr(PostfixDaneTest, "test_proxy_" + c.name, t_proxy)


_add_tests()


if __name__ == "__main__":
    # Bazel's --test_filter arrives as TESTBRIDGE_TEST_ONLY: a name pattern.
    argv = sys.argv[:1] + ["-v"] + sys.argv[1:]
    if os.environ.get("TESTBRIDGE_TEST_ONLY"):
        argv += ["-k", os.environ["TESTBRIDGE_TEST_ONLY"]]
    unittest.main(argv=argv)
