"""A DNSSEC-signed test zone, made at test time and served by nsd.

    z = dnszone.Zone(harness.new_tmpdir("zone"), "127.0.53.7")
    z.add("mx", "TLSA", "3 1 1 " + sha256_hex)   # extra records, before start()
    z.break_signature("mx", "A")                  # a "bogus" variant
    z.start()                                     # keygen, sign, nsd on IP:53
    ... resolver = { servers = [ z.server ]; trust_anchor = z.trust_anchor; }
    z.stop()

The zone is example.net (a real-looking name: unbound and libunbound answer
.test negatively, RFC 6761), with an MX, A and AAAA records for the MX host,
a TLSA record set at _25._tcp.mx.example.net, an _mta-sts TXT and an
_smtp._tls TXT. It is signed with ldns-keygen / ldns-signzone (Debian
ldnsutils: an ECDSA P-256 KSK and ZSK, NSEC), and its DS record, written to
trust_anchor, is the only trust anchor the proxy's resolver needs: the
resolver forwards to nsd (servers = [ "IP:53" ]), asks for DNSKEY
example.net there and validates everything below it. nsd runs in the
foreground as a child of the test, on its own 127.x.y.z address, and is
stopped (SIGTERM, then SIGKILL) by stop().

netns (an outbound_harness.Netns) runs nsd inside that network namespace
("ip netns exec") and asks it from there, for tests whose proxy runs there
too (test_dane_original): the namespace has a loopback of its own.

break_signature(name, type) flips bits in the RRSIG over that RRset after
signing, so that a validating resolver finds the answer bogus while one
without validation still gets the record.
"""

import base64
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import time

ORIGIN = "example.net"

# nsd binds its UDP socket with SO_REUSEADDR, so a second nsd on the same
# address and port starts without an error and the two share the queries:
# a test would then validate another test's zone (Bazel runs tests side by
# side, and sandboxes share loopback but not PIDs, so addresses made from a
# PID or chosen at random can meet). Each address:port is claimed with a
# lock file under /tmp (shared by the sandboxes) for as long as its nsd runs.
LOCK_DIR = "/tmp/smtp-tls-proxy-dnszone"


def available():
    """None, or why the zone cannot be made on this machine."""
    for tool in ("ldns-keygen", "ldns-signzone", "nsd"):
        if shutil.which(tool) is None:
            return "%s not installed (bazel/deps.sh: ldnsutils, nsd)" % tool
    return None


def _run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                   r.stderr.decode(errors="replace")))
    return r.stdout.decode().strip()


def query(server, name, qtype=1, timeout=1.0):
    """One UDP query (RD clear) to server "ip:port"; the rcode, or None when
    nothing answered."""
    ip, port = server.rsplit(":", 1)
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    pkt = struct.pack(">HHHHHH", 0x5353, 0, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, (ip, int(port)))
        data, _ = s.recvfrom(4096)
    except OSError:
        return None
    finally:
        s.close()
    return data[3] & 0x0F if len(data) >= 12 and data[:2] == b"\x53\x53" else None


class Zone:
    def __init__(self, directory, ip, port=53, a="127.0.0.1", aaaa="::1", netns=None):
        self.dir = directory
        self.netns = netns
        self.ip = ip
        self.port = port
        self.server = "%s:%d" % (ip, port)
        self.records = [
            ("@", "MX", "10 mx.%s." % ORIGIN),
            ("mx", "A", a),
            ("mx", "AAAA", aaaa),
            ("_mta-sts", "TXT", '"v=STSv1; id=20240101T000000;"'),
            ("_smtp._tls", "TXT", '"v=TLSRPTv1; rua=mailto:tlsrpt@%s"' % ORIGIN),
            ("mta-sts", "A", a),
            ("v6only", "AAAA", aaaa),
            ("alias", "CNAME", "mx.%s." % ORIGIN),
        ]
        self.tlsa = [("_25._tcp.mx", "3 1 1 " + "00" * 32)]
        self.broken = []
        self.trust_anchor = os.path.join(directory, "trust-anchor.ds")
        self.proc = None
        self._lock = None

    def add(self, name, rtype, rdata):
        self.records.append((name, rtype, rdata))

    def set_tlsa(self, name, *rdatas):
        """Replaces the TLSA records of name ("_25._tcp.mx")."""
        self.tlsa = [(t, r) for t, r in self.tlsa if t != name] + [(name, r) for r in rdatas]

    def break_signature(self, name, rtype):
        self.broken.append((self._fqdn(name), rtype.upper()))

    @staticmethod
    def _fqdn(name):
        return ORIGIN + "." if name == "@" else "%s.%s." % (name, ORIGIN)

    def _zone_text(self):
        lines = [
            "$ORIGIN %s." % ORIGIN,
            "$TTL 300",
            "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300" % (ORIGIN, ORIGIN),
            "@ IN NS ns.%s." % ORIGIN,
            "ns IN A %s" % self.ip,
        ]
        lines += ["%s IN %s %s" % r for r in self.records]
        lines += ["%s IN TLSA %s" % t for t in self.tlsa]
        return "\n".join(lines) + "\n"

    def _sign(self):
        zone = os.path.join(self.dir, ORIGIN + ".zone")
        with open(zone, "w") as f:
            f.write(self._zone_text())
        ksk = _run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", ORIGIN], self.dir)
        zsk = _run(["ldns-keygen", "-a", "ECDSAP256SHA256", ORIGIN], self.dir)
        _run(["ldns-signzone", "-o", ORIGIN, "-f", zone + ".signed", zone, zsk, ksk], self.dir)
        shutil.copy(os.path.join(self.dir, ksk + ".ds"), self.trust_anchor)
        if self.broken:
            self._break(zone + ".signed")
        return zone + ".signed"

    def _break(self, path):
        out, hit = [], set()
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) > 5 and fields[3] == "RRSIG" and \
                        (fields[0].lower(), fields[4].upper()) in self.broken:
                    sig = bytearray(base64.b64decode("".join(fields[12:])))
                    sig[len(sig) // 2] ^= 0xFF
                    fields = fields[:12] + [base64.b64encode(bytes(sig)).decode()]
                    line = "\t".join(fields) + "\n"
                    hit.add((fields[0].lower(), fields[4].upper()))
                out.append(line)
        missing = set(self.broken) - hit
        if missing:
            raise RuntimeError("no RRSIG to break for %s" % sorted(missing))
        with open(path, "w") as f:
            f.writelines(out)

    def _claim(self, timeout=240.0):
        """Waits until no other zone of this machine serves ip:port."""
        if self.netns is not None:
            return  # a namespace of its own: nobody else there
        os.makedirs(LOCK_DIR, exist_ok=True)
        f = open(os.path.join(LOCK_DIR, "%s_%d.lock" % (self.ip, self.port)), "w")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock = f
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    f.close()
                    raise RuntimeError("%s stayed taken by another test's zone" % self.server)
                time.sleep(0.1)

    def _release(self):
        if self._lock is not None:
            self._lock.close()  # closing drops the flock
            self._lock = None

    def start(self, timeout=10.0):
        signed = self._sign()
        self._claim()
        conf = os.path.join(self.dir, "nsd.conf")
        with open(conf, "w") as f:
            f.write("\n".join([
                "server:",
                "  ip-address: %s@%d" % (self.ip, self.port),
                "  do-ip6: no",
                "  username: \"\"",
                "  chroot: \"\"",
                "  database: \"\"",
                "  zonelistfile: \"%s/zone.list\"" % self.dir,
                "  xfrdfile: \"%s/xfrd.state\"" % self.dir,
                "  xfrdir: \"%s\"" % self.dir,
                "  pidfile: \"%s/nsd.pid\"" % self.dir,
                "  logfile: \"%s/nsd.log\"" % self.dir,
                "  server-count: 1",
                "  verbosity: 1",
                "remote-control:",
                "  control-enable: no",
                "zone:",
                "  name: %s" % ORIGIN,
                "  zonefile: \"%s\"" % signed,
                "",
            ]))
        _run(["nsd-checkconf", conf], self.dir)
        self.log_path = os.path.join(self.dir, "nsd.stderr")
        self._log = open(self.log_path, "wb")
        wrap = ["ip", "netns", "exec", self.netns.name] if self.netns else []
        self.proc = subprocess.Popen(wrap + ["nsd", "-d", "-c", conf], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._ask("mx." + ORIGIN) == 0:
                return self
            time.sleep(0.05)
        log = self.log()
        self.stop()
        raise RuntimeError("nsd did not answer on %s:\n%s" % (self.server, log))

    def _ask(self, name):
        if self.netns is None:
            return query(self.server, name, timeout=0.2)
        return self.netns.run_in(lambda: query(self.server, name, timeout=0.2))

    def log(self):
        out = ""
        for p in (getattr(self, "log_path", None), os.path.join(self.dir, "nsd.log")):
            if p and os.path.exists(p):
                with open(p, errors="replace") as f:
                    out += f.read()
        return out

    def stop(self):
        if self.proc is None:
            self._release()
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self._log.close()
        self._release()
