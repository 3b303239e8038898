"""A private network and mount namespace whose system resolver validates
DNSSEC, for peers that trust the AD bit instead of validating themselves
(Postfix with smtp_dns_support_level = dnssec; test_postfix_dane.py).

  Namespace(dir)       "unshare --net --mount" holds a network namespace
                       (only lo, up) and a mount namespace in which
                       /etc/resolv.conf is a bind mount of
                       "nameserver 127.0.0.1 / options trust-ad": glibc
                       clears the AD bit of answers unless the program asks
                       for it (Postfix sets RES_TRUSTAD itself for its
                       DNSSEC lookups) or resolv.conf says trust-ad (every
                       other program).
                       Commands run inside with "nsenter" (popen, run),
                       Python code that makes sockets in a helper thread
                       that has entered the network namespace (run_in).
  Unbound(ns, dir, zone)  unbound on 127.0.0.1:53 in the namespace: a
                       validating recursor (val-permissive-mode: no) with a
                       stub zone example.net at the zone's nsd and the zone's
                       DS as its only trust anchor; every other name is
                       refused at once, so nothing waits for root servers the
                       namespace cannot reach.
  dig(ns, ...)         "dig +dnssec" inside: rcode, header flags, answers.
  unavailable()        why this cannot run here (a skip reason), or None.

Everything started here is a child of the test, stopped by stop() (SIGTERM,
then SIGKILL). The holder's stdin is a pipe from the test: when it closes
(Namespace.stop(), or the test died, even by SIGKILL) the holder kills
whatever still runs in its network namespace and exits, and the namespaces
vanish with their last process. The host's network and /etc/resolv.conf are
never touched.
"""

import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time

import dnszone
import outbound_harness as oh

RESOLV_CONF = "nameserver 127.0.0.1\noptions trust-ad timeout:2 attempts:2\n"
TOOLS = ("unshare", "nsenter", "ip", "mount", "unbound", "dig")


def unavailable():
    """None, or why a namespace with a validating resolver cannot be made."""
    if os.geteuid() != 0:
        return "not root: unshare --net --mount needs CAP_SYS_ADMIN"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return "%s not installed (bazel/deps.sh: util-linux, iproute2, unbound, dnsutils)" % tool
    return dnszone.available()


def _stop_proc(proc, timeout=5.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class NamespaceUnavailable(Exception):
    """unshare was refused: a reason to skip, not a failure."""


class Namespace:
    """A network + mount namespace held by a shell that waits on its stdin."""

    START_TIMEOUT = 10.0

    def __init__(self, directory, resolv_conf=RESOLV_CONF):
        self.dir = directory
        self.resolv = os.path.join(directory, "resolv.conf")
        with open(self.resolv, "w") as f:
            f.write(resolv_conf)
        self.proc = None
        self.pid = None

    def start(self):
        # unshare execs the shell in the new namespaces (no --fork is needed
        # for net and mount), so the holder's pid is the shell's.
        # When its stdin closes (stop(), or the test died, even by SIGKILL)
        # it kills whatever still runs in its network namespace: only what
        # this test started there (nsd, unbound, Postfix, the proxy).
        script = ('ip link set lo up && mount --bind "$0" /etc/resolv.conf || exit 1\n'
                  'echo ready\n'
                  'read _\n'
                  'me=$(readlink /proc/$$/ns/net)\n'
                  'for p in /proc/[0-9]*; do\n'
                  '  pid=${p#/proc/}\n'
                  '  [ "$pid" != $$ ] && [ "$(readlink $p/ns/net 2>/dev/null)" = "$me" ] &&\n'
                  '    kill -9 "$pid" 2>/dev/null\n'
                  'done\n'
                  'exit 0\n')
        self.proc = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c",
             script, self.resolv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
        line = b""
        deadline = time.monotonic() + self.START_TIMEOUT
        while b"\n" not in line and time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 64)
                if not chunk:
                    break
                line += chunk
        if line.strip() != b"ready":
            err = b""
            if self.proc.poll() is not None:
                err = self.proc.stderr.read()
            self.stop()
            raise NamespaceUnavailable("unshare --net --mount: %s" %
                                       (err.decode(errors="replace").strip() or
                                        "no ready line within %.0f s" % self.START_TIMEOUT))
        self.pid = self.proc.pid
        return self

    def enter(self):
        """The command prefix that runs a program inside."""
        return ["nsenter", "--target", str(self.pid), "--net", "--mount", "--"]

    def popen(self, cmd, **kw):
        """subprocess.Popen of cmd inside (nsenter execs it: the pid is cmd's
        own once nsenter has entered)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.enter() + list(cmd), **kw)

    def run(self, cmd, timeout=20):
        """(exit code, stdout+stderr text) of cmd run inside."""
        r = subprocess.run(self.enter() + list(cmd), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return r.returncode, r.stdout.decode("utf-8", "replace")

    def run_in(self, fn, *args, timeout=30):
        """fn(*args) on a helper thread inside the network namespace (its
        sockets live there); fn's result, or its exception raised here."""
        box = {}

        def body():
            try:
                oh._setns_net("/proc/%d/ns/net" % self.pid)
                box["v"] = fn(*args)
            except BaseException as e:  # handed to the caller
                box["e"] = e
        t = threading.Thread(target=body, name="in-namespace", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise RuntimeError("helper thread in the namespace did not finish in %.0f s"
                               % timeout)
        if "e" in box:
            raise box["e"]
        return box.get("v")

    def is_listening(self, port):
        return self.pid is not None and oh.is_listening_in(self.pid, port)

    def resolv_conf_inside(self):
        """/etc/resolv.conf as the namespace sees it."""
        return self.run(["cat", "/etc/resolv.conf"])[1]

    def stop(self):
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        self.proc = None


class Unbound:
    """A validating recursor on IP:53 inside ns (see the module doc)."""

    def __init__(self, ns, directory, zone, ip="127.0.0.1", port=53):
        self.ns = ns
        self.dir = directory
        self.zone = zone
        self.ip = ip
        self.port = port
        self.server = "%s:%d" % (ip, port)
        self.conf = os.path.join(directory, "unbound.conf")
        self.log_path = os.path.join(directory, "unbound.log")
        self.proc = None

    def config_text(self):
        zone_ip, zone_port = self.zone.ip, self.zone.port
        return "\n".join([
            "server:",
            "  interface: %s@%d" % (self.ip, self.port),
            "  do-ip4: yes",
            "  do-ip6: no",
            "  do-udp: yes",
            "  do-tcp: yes",
            "  username: \"\"",
            "  chroot: \"\"",
            "  directory: \"%s\"" % self.dir,
            "  pidfile: \"%s/unbound.pid\"" % self.dir,
            "  use-syslog: no",
            "  logfile: \"\"",
            "  log-time-ascii: yes",
            "  verbosity: 1",
            "  val-log-level: 2",
            "  log-servfail: yes",
            "  num-threads: 1",
            "  so-reuseport: no",
            "  access-control: 127.0.0.0/8 allow",
            # The zone's server is on loopback, which unbound skips by default.
            "  do-not-query-localhost: no",
            "  module-config: \"validator iterator\"",
            "  trust-anchor-file: \"%s\"" % self.zone.trust_anchor,
            "  val-permissive-mode: no",
            "  harden-dnssec-stripped: yes",
            "  qname-minimisation: no",
            "  prefetch: no",
            # Only example.net exists here: refuse the rest at once.
            "  local-zone: \".\" refuse",
            "  local-zone: \"%s.\" transparent" % dnszone.ORIGIN,
            "remote-control:",
            "  control-enable: no",
            "stub-zone:",
            "  name: \"%s.\"" % dnszone.ORIGIN,
            "  stub-addr: %s@%d" % (zone_ip, zone_port),
            "  stub-prime: no",
            "",
        ])

    def start(self, timeout=10.0):
        with open(self.conf, "w") as f:
            f.write(self.config_text())
        rc, out = self.ns.run(["unbound-checkconf", self.conf])
        if rc != 0:
            raise RuntimeError("unbound-checkconf: %s" % out)
        self._log = open(self.log_path, "ab")
        self.proc = self.ns.popen(["unbound", "-d", "-c", self.conf], stdout=self._log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            rcode = self.ns.run_in(dnszone.query, self.server, "mx." + dnszone.ORIGIN, 1, 0.3)
            if rcode is not None:
                return self
            time.sleep(0.05)
        log = self.log()
        self.stop()
        raise RuntimeError("unbound did not answer on %s:\n%s" % (self.server, log))

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        _stop_proc(self.proc)
        self.proc = None
        self._log.close()


class DigAnswer:
    def __init__(self, text):
        self.text = text
        m = re.search(r"->>HEADER<<- opcode: \w+, status: (\w+)", text)
        self.status = m.group(1) if m else None
        m = re.search(r";; flags: ([a-z ]*);", text)
        self.flags = set(m.group(1).split()) if m else set()
        self.answers = []
        section = None
        for line in text.splitlines():
            if line.startswith(";; "):
                section = line[3:].split(" SECTION")[0] if " SECTION:" in line else None
                continue
            if section == "ANSWER" and line and not line.startswith(";"):
                self.answers.append(line.split(None, 4))

    @property
    def secure(self):
        return "ad" in self.flags

    def rdatas(self, rtype):
        return [a[4] for a in self.answers if len(a) == 5 and a[3] == rtype]

    def __repr__(self):
        return "DigAnswer(status=%s flags=%s answers=%r)" % (self.status, sorted(self.flags),
                                                              self.answers)


def dig(ns, server, name, rtype, cd=False):
    """dig +dnssec @server name rtype, run inside ns."""
    ip, port = server.rsplit(":", 1)
    cmd = ["dig", "+dnssec", "+time=3", "+tries=1", "-p", port, "@" + ip, name, rtype]
    if cd:
        cmd.insert(2, "+cd")
    _, out = ns.run(cmd, timeout=15)
    return DigAnswer(out)
