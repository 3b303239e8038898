"""user/group: started as root, the proxy binds, reads its certificates and
then gives up root for good (real, effective and saved ids, supplementary
groups); it still serves STARTTLS and reloads (with files the user can
read). Without them, root is warned about. Unknown names are config errors
with FILE:LINE. The root cases need real root outside Bazel's sandbox
(setgroups is refused in its user namespace) and skip themselves otherwise."""

import atexit
import glob
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile

import harness
from harness import ProxyTestCase

# Everything the proxy reads after dropping root must be reachable by the
# unprivileged user, which $TEST_TMPDIR (under root's home) is not.
_SHARED = tempfile.mkdtemp(prefix="smtp-tls-proxy-privs-", dir="/tmp")
os.chmod(_SHARED, 0o755)
atexit.register(shutil.rmtree, _SHARED, True)
os.environ["TEST_TMPDIR"] = _SHARED


def open_up(d):
    """World-readable files and traversable directories under d."""
    os.chmod(d, 0o755)
    for root, dirs, files in os.walk(d):
        for x in dirs:
            os.chmod(os.path.join(root, x), 0o755)
        for x in files:
            os.chmod(os.path.join(root, x), 0o644)


def unprivileged():
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        return None
    try:
        group = grp.getgrnam("nogroup")
    except KeyError:
        group = grp.getgrgid(pw.pw_gid)
    return pw, group


def can_setgroups():
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "allow"
    except OSError:
        return True


def ids(pid):
    """{'Uid': [...4], 'Gid': [...4], 'Groups': [...]} for every thread of pid."""
    out = []
    for status in glob.glob("/proc/%d/task/*/status" % pid):
        d = {}
        with open(status) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Uid", "Gid", "Groups"):
                    d[k] = [int(x) for x in v.split()]
        out.append(d)
    return out


class PrivilegesTest(ProxyTestCase):

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root")
        if not can_setgroups():
            self.skipTest("setgroups denied (user namespace): run with no-sandbox")
        who = unprivileged()
        if who is None:
            self.skipTest("no user nobody")
        self.pw, self.gr = who
        open_up(os.path.dirname(self.pki.cert))

    def test_drops_root_serves_and_reloads(self):
        b = self.backend()
        l = harness.inbound_listener(b.port)
        cfg = harness.base_config([l], user="nobody", group=self.gr.gr_name)
        p = self.proxy(cfg)
        open_up(p.dir)
        self.assertTrue(p.wait_log(r"event=privileges_dropped user=nobody", 3), p.log())
        uid, gid = self.pw.pw_uid, self.gr.gr_gid
        threads = ids(p.proc.pid)
        self.assertGreater(len(threads), 1, "expected worker threads")
        for t in threads:
            self.assertEqual(t["Uid"], [uid] * 4, t)
            self.assertEqual(t["Gid"], [gid] * 4, t)
            self.assertEqual(t["Groups"], [gid], t)

        c = self.client(port=harness.listen_port_of(l))
        self.assertEqual(c.ehlo().code, 250)
        c.starttls()
        self.assertEqual(c.ehlo().code, 250)
        replies = c.send_message("a@x.test", ["b@y.test"], b"Subject: nobody\r\n\r\nhi\r\n")
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        c.cmd("QUIT")
        old = c.sock.getpeercert(binary_form=True)
        c.close()

        # A reload with a new certificate the user can read.
        other_dir = harness.new_tmpdir("pki-nobody")
        other = harness.make_pki(os.path.join(other_dir, "pki"), cn="mx.test")
        open_up(other_dir)
        cfg2 = dict(cfg, tls={"certificate": other.cert, "key": other.key})
        n = len(p.log())
        p.write(cfg2)
        open_up(p.dir)
        p.signal(signal.SIGHUP)
        self.assertTrue(harness.wait_until(lambda: "event=reloaded" in p.log()[n:], 5),
                        p.log()[n:])
        c2 = self.client(port=harness.listen_port_of(l))
        c2.ehlo()
        c2.starttls(other.client_context())
        self.assertNotEqual(c2.sock.getpeercert(binary_form=True), old)
        c2.close()

        # A new address on a privileged port cannot be bound any more: the
        # reload is refused and the log says why.
        low = next(x for x in range(1000, 600, -1) if not harness.is_listening(x))
        l2 = harness.inbound_listener(b.port, name="low", listen_port=low)
        n = len(p.log())
        p.write(dict(cfg2, inbound=[l, l2]))
        p.signal(signal.SIGHUP)
        self.assertTrue(harness.wait_until(lambda: "event=reload_failed" in p.log()[n:], 5))
        tail = p.log()[n:]
        self.assertIn("127.0.0.1:%d" % low, tail)
        self.assertIn("privileges were dropped", tail)
        self.assertIn("needs a restart", tail)
        self.assertTrue(p.alive())

    def test_root_without_user_warns(self):
        b, p = self.start()
        self.assertTrue(p.wait_log(r"event=running_as_root", 3), p.log())
        line = re.search(r".*event=running_as_root.*", p.log()).group(0)
        self.assertIn("user", line)
        self.assertIn("group", line)


class IdentityConfigTest(ProxyTestCase):

    def check(self, extra):
        l = harness.inbound_listener(harness.free_port())
        cfg = harness.base_config([l])
        text = harness.write_config(cfg) + extra
        p = harness.Proxy(text, name=self.id())
        r = subprocess.run([harness.proxy_binary(), "-t", "-c", p.config_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        return r.returncode, r.stderr.decode(), text.count("\n")

    def test_unknown_user_is_config_error(self):
        rc, err, lines = self.check('user = "no-such-user-smtp-tls";\n')
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"proxy\.conf:%d: user: unknown user \"no-such-user-smtp-tls\""
                         % lines)

    def test_unknown_group_is_config_error(self):
        rc, err, lines = self.check('user = "nobody";\ngroup = "no-such-group-smtp-tls";\n')
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"proxy\.conf:%d: group: unknown group" % lines)

    def test_group_without_user_is_config_error(self):
        rc, err, lines = self.check('group = "nogroup";\n')
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"proxy\.conf:%d: group: .*without user" % lines)

    def test_known_user_ok(self):
        rc, err, _ = self.check('user = "nobody";\n')
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    harness.run_tests()
