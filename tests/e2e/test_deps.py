"""bazel/deps.sh must never start, stop or restart a service: apt-get runs
under a temporary policy-rc.d that forbids every init-script action, and the
host's own policy-rc.d (if any) comes back exactly as it was, also when
apt-get fails, the script is interrupted, or an earlier run was killed.

No real apt-get runs here: the script's hooks point it at a fake apt-get that
records what it sees, a package that is never installed, and a policy-rc.d
path in the test's scratch directory."""

import os
import re
import signal
import stat
import subprocess
import unittest

import harness

FAKE_APT = r"""#!/bin/sh
# Records its arguments and, for "install", the policy-rc.d in force and what
# it answers for "postfix start", as invoke-rc.d and deb-systemd-invoke ask.
log="$FAKE_LOG"
echo "args: $*" >> "$log"
echo "frontend: ${DEBIAN_FRONTEND:-}" >> "$log"
if [ "$1" = install ]; then
    if [ -x "$DEPS_POLICY_RC_D" ]; then
        "$DEPS_POLICY_RC_D" postfix start
        echo "policy: $?" >> "$log"
        if grep -q "smtp-tls-proxy bazel/deps.sh" "$DEPS_POLICY_RC_D"; then
            echo "policy-is-ours: yes" >> "$log"
        fi
    else
        echo "policy: none" >> "$log"
    fi
    case "${FAKE_MODE:-}" in
    fail) exit 100 ;;
    term) kill -TERM "$PPID" ;;
    esac
fi
exit 0
"""

ORIGINAL = b"#!/bin/sh\n# the host's own policy\nexit 0\n"


def deps_sh():
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        p = os.path.join(srcdir, "smtp_tls_proxy/bazel/deps.sh")
        if os.path.exists(p):
            return p
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "bazel", "deps.sh")


class DepsPolicyRcDTest(unittest.TestCase):

    def setUp(self):
        if os.geteuid() != 0:
            # The script would call sudo for the (fake) apt-get.
            self.skipTest("needs root (deps.sh uses sudo otherwise)")
        self.dir = harness.new_tmpdir("deps." + self.id())
        self.policy = os.path.join(self.dir, "policy-rc.d")
        self.saved = self.policy + ".smtp-tls-proxy-saved"
        self.log = os.path.join(self.dir, "apt.log")
        self.apt = os.path.join(self.dir, "apt-get")
        with open(self.apt, "w") as f:
            f.write(FAKE_APT)
        os.chmod(self.apt, 0o755)

    def run_deps(self, mode="", packages="smtp-tls-proxy-no-such-package", timeout=30):
        env = dict(os.environ,
                   DEPS_PACKAGES=packages,
                   DEPS_APT_GET=self.apt,
                   DEPS_POLICY_RC_D=self.policy,
                   FAKE_LOG=self.log,
                   FAKE_MODE=mode)
        r = subprocess.run(["sh", deps_sh()], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        return r

    def apt_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def write_original(self, mode=0o750):
        with open(self.policy, "wb") as f:
            f.write(ORIGINAL)
        os.chmod(self.policy, mode)

    def assert_original_back(self, mode=0o750):
        with open(self.policy, "rb") as f:
            self.assertEqual(f.read(), ORIGINAL)
        self.assertEqual(stat.S_IMODE(os.lstat(self.policy).st_mode), mode)
        self.assertFalse(os.path.lexists(self.saved))
        self.assertFalse(os.path.lexists(self.policy + ".tmp"))

    def assert_held_during_install(self):
        log = self.apt_log()
        self.assertIn("args: install -y -q --no-install-recommends "
                      "smtp-tls-proxy-no-such-package", log)
        self.assertIn("policy: 101", log)
        self.assertIn("policy-is-ours: yes", log)
        self.assertIn("frontend: noninteractive", log)

    def test_without_policy_rc_d_installs_one_and_removes_it(self):
        r = self.run_deps()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_held_during_install()
        self.assertFalse(os.path.lexists(self.policy))
        self.assertFalse(os.path.lexists(self.saved))

    def test_existing_policy_rc_d_is_replaced_then_restored(self):
        self.write_original()
        r = self.run_deps()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_held_during_install()
        self.assert_original_back()

    def test_existing_symlink_is_restored_as_symlink(self):
        target = os.path.join(self.dir, "real-policy")
        with open(target, "wb") as f:
            f.write(ORIGINAL)
        os.chmod(target, 0o755)
        os.symlink(target, self.policy)
        r = self.run_deps()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_held_during_install()
        self.assertTrue(os.path.islink(self.policy))
        self.assertEqual(os.readlink(self.policy), target)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), ORIGINAL)

    def test_restored_when_apt_get_fails(self):
        self.write_original()
        r = self.run_deps(mode="fail")
        self.assertNotEqual(r.returncode, 0)
        self.assert_held_during_install()
        self.assert_original_back()

    def test_restored_when_interrupted(self):
        self.write_original()
        r = self.run_deps(mode="term")
        self.assertEqual(r.returncode, 128 + signal.SIGTERM, r.stderr)
        self.assert_held_during_install()
        self.assert_original_back()

    def test_leftover_of_a_killed_run_is_put_back(self):
        # As a run killed with SIGKILL during apt-get leaves things: ours in
        # place, the original moved aside.
        self.write_original()
        os.rename(self.policy, self.saved)
        with open(self.policy, "w") as f:
            f.write("#!/bin/sh\n# temporary, from smtp-tls-proxy bazel/deps.sh\nexit 101\n")
        os.chmod(self.policy, 0o755)
        r = self.run_deps()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_held_during_install()
        self.assert_original_back()

    def test_nothing_missing_touches_nothing(self):
        self.write_original()
        r = self.run_deps(packages="dpkg")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.apt_log(), "")
        self.assertEqual(r.stderr, b"")
        self.assert_original_back()


class DepsStaticTest(unittest.TestCase):

    def test_no_service_commands(self):
        """No line of code (comments aside) starts, stops or restarts a
        service: the host may run a production Postfix."""
        with open(deps_sh()) as f:
            code = [l.split("#", 1)[0] if not l.lstrip().startswith("printf") else ""
                    for l in f]
        bad = re.compile(r"\b(postfix\s+(stop|start|reload|abort|flush)|systemctl|"
                         r"service\s+\w|invoke-rc\.d|/etc/init\.d/|pkill|killall)\b")
        for n, line in enumerate(code, 1):
            self.assertIsNone(bad.search(line), "deps.sh:%d: %s" % (n, line.strip()))

    def test_testssl_is_listed(self):
        with open(deps_sh()) as f:
            text = f.read()
        self.assertRegex(text, r"\btestssl\.sh\b")


if __name__ == "__main__":
    unittest.main()
