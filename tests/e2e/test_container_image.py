"""config/Dockerfile, built and run for real, without any image registry.

  1. The base images come from Debian's archive: debootstrap (variant minbase)
     makes a bookworm root file system from the mirror that this machine's apt
     is configured with; it is imported as docker.io/library/debian:12 and
     tagged docker.io/library/debian:12-slim. The rootfs tarball is cached in
     $SMTP_TLS_PROXY_TEST_CACHE (default /var/cache/smtp-tls-proxy-test), so
     only the first run on a machine pays for debootstrap; the .debs that apt
     fetches inside the build are cached there too.
  2. `buildah bud --isolation=chroot` builds config/Dockerfile from the
     repository root (the build stage runs Bazel offline, apt reaches the
     Debian archive from inside).
  3. The image is checked: it runs as a non-root user, has no compiler, and
     the build context honours .dockerignore (no .git, no bazel-* symlinks).
  4. `buildah from` + `buildah run --isolation=chroot` runs the image's own
     entrypoint with a configuration and certificates mounted read-only; the
     chroot shares the host's network, so the container's proxy listens on a
     127.0.0.1 port and relays, after STARTTLS from smtplib, to a scripted
     plaintext backend on another 127.0.0.1 port.

Needs root, buildah and debootstrap (bazel/deps.sh installs them); skips
itself, saying why, when they are missing. Everything it creates in
containers-storage (containers, images) is removed at the end; the cached
tarball stays. Every step is bounded by its own timeout and by the test's
overall deadline.
"""

import email.message
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import harness

CACHE_DIR = os.environ.get("SMTP_TLS_PROXY_TEST_CACHE", "/var/cache/smtp-tls-proxy-test")
SUITE = "bookworm"
ROOTFS_TARBALL = os.path.join(CACHE_DIR, "debian-%s-minbase-rootfs.tar" % SUITE)
APT_ARCHIVES = os.path.join(CACHE_DIR, "apt-archives")
# A cached rootfs older than this is rebuilt, so the base never drifts far
# behind the archive.
ROOTFS_MAX_AGE = 30 * 86400

BASE_IMAGES = ("docker.io/library/debian:12", "docker.io/library/debian:12-slim")
LABEL = "org.smtp-tls-proxy.e2e"     # marks the base images this test made
PREFIX = "smtp-tls-proxy-e2e"         # names of its containers and images

# The whole test must fit Bazel's "long" timeout (900 s) with room to clean up.
DEADLINE = time.monotonic() + float(os.environ.get("CONTAINER_TEST_BUDGET", "820"))

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENV = dict(os.environ, PATH=SBIN_PATH + ":" + os.environ.get("PATH", ""))

COMPILER = re.compile(r"^(?:[a-z0-9_]+-linux-gnu-)?(?:cc|c\+\+|gcc|g\+\+|clang|clang\+\+|tcc|"
                      r"c89|c99|cc1|cc1plus)(?:-[0-9.]+)?$")


def log(msg):
    sys.stderr.write("[container %6.1fs] %s\n" % (time.monotonic() - START, msg))
    sys.stderr.flush()


START = time.monotonic()


def remaining(cap):
    """A step's timeout: cap seconds, but never past the overall deadline."""
    left = DEADLINE - time.monotonic()
    if left <= 5:
        raise TimeoutError("out of time budget for the container test")
    return min(cap, left)


def run(cmd, cap=120, check=True, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    r = subprocess.run(cmd, env=ENV, timeout=remaining(cap), stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace") if isinstance(r.stderr, bytes) else ""
        out = r.stdout.decode("utf-8", "replace") if isinstance(r.stdout, bytes) else ""
        raise RuntimeError("%s failed (%d):\n%s\n%s" % (" ".join(cmd), r.returncode,
                                                        out[-3000:], err[-3000:]))
    return r


def out(cmd, cap=120):
    return run(cmd, cap).stdout.decode().strip()


def which(name):
    return shutil.which(name, path=ENV["PATH"])


# ---------------------------------------------------------------------------
# Where things are


def repo_root():
    """The source tree: config/Dockerfile is a data dependency whose runfiles
    link points into it (the test is tagged no-sandbox)."""
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        p = os.path.join(srcdir, "smtp_tls_proxy/config/Dockerfile")
        if os.path.exists(p):
            return os.path.dirname(os.path.dirname(os.path.realpath(p)))
    here = os.path.dirname(os.path.realpath(__file__))
    return os.path.dirname(os.path.dirname(here))


def _apt_source_entries():
    """(uri, suite, components) of every enabled deb entry in apt's sources."""
    entries = []
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in files:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.split("#", 1)[0].strip()
            line = re.sub(r"\[[^\]]*\]", " ", line)
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb":
                entries.append((parts[1], parts[2], parts[3:]))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            key = None
            for line in stanza.splitlines():
                if line.startswith("#"):
                    continue
                if line[:1] in (" ", "\t") and key:
                    fields[key] += " " + line.strip()
                    continue
                if ":" in line:
                    key, v = line.split(":", 1)
                    key = key.strip().lower()
                    fields[key] = v.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    entries.append((uri, suite, fields.get("components", "").split()))
    return entries


def debian_sources():
    """The Debian archive as this machine's apt is configured: the mirror
    serving bookworm main, and the sources.list lines for the image (bookworm,
    -updates, -security from the same configuration)."""
    entries = [(u, s, c) for u, s, c in _apt_source_entries()
               if re.match(r"^%s(-updates|-security)?$" % SUITE, s) and "main" in c
               and u.startswith(("http://", "https://"))]
    mirror = next((u for u, s, c in entries if s == SUITE), None)
    if mirror is None:
        raise RuntimeError("no Debian mirror for '%s main' in /etc/apt/sources.list*" % SUITE)
    lines = "".join("deb %s %s main\n" % (u, s) for u, s, c in entries)
    return mirror, lines


# ---------------------------------------------------------------------------
# Base images from debootstrap


def ensure_rootfs_tarball():
    """The cached minbase rootfs tarball, made with debootstrap when missing or
    stale. A lock keeps two runs from building it at once; the tarball appears
    atomically, so an interrupted run leaves nothing half-made."""
    os.makedirs(CACHE_DIR, exist_ok=True)
    with open(os.path.join(CACHE_DIR, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            age = time.time() - os.stat(ROOTFS_TARBALL).st_mtime
            if age < ROOTFS_MAX_AGE:
                log("cached rootfs %s (%.1f days old)" % (ROOTFS_TARBALL, age / 86400))
                return ROOTFS_TARBALL
            log("cached rootfs is %.0f days old: rebuilding" % (age / 86400))
        except FileNotFoundError:
            pass
        mirror, _ = debian_sources()
        work = tempfile.mkdtemp(prefix="debootstrap.", dir=CACHE_DIR)
        try:
            rootfs = os.path.join(work, "rootfs")
            log("debootstrap --variant=minbase %s from %s" % (SUITE, mirror))
            t0 = time.monotonic()
            with open(os.path.join(work, "debootstrap.log"), "wb") as lf:
                r = subprocess.run(["debootstrap", "--variant=minbase", SUITE, rootfs, mirror],
                                   env=ENV, stdin=subprocess.DEVNULL, stdout=lf,
                                   stderr=subprocess.STDOUT, timeout=remaining(480))
            if r.returncode != 0:
                with open(os.path.join(work, "debootstrap.log"), "rb") as lf:
                    tail = lf.read()[-4000:].decode("utf-8", "replace")
                raise RuntimeError("debootstrap failed (%d):\n%s" % (r.returncode, tail))
            log("debootstrap took %.0f s" % (time.monotonic() - t0))
            # What apt downloaded and its lists do not belong in a base image.
            for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin",
                            "var/lib/apt/lists/*_*", "var/log/*.log", "debootstrap"):
                for p in glob.glob(os.path.join(rootfs, pattern)):
                    if os.path.isdir(p) and not os.path.islink(p):
                        shutil.rmtree(p)
                    else:
                        os.unlink(p)
            tmp = ROOTFS_TARBALL + ".tmp"
            run(["tar", "-C", rootfs, "--numeric-owner", "--xattrs", "-cf", tmp, "."], cap=120)
            os.rename(tmp, ROOTFS_TARBALL)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return ROOTFS_TARBALL


def image_exists(name):
    return run(["buildah", "inspect", "--type", "image", name], check=False).returncode == 0


def image_labels(name):
    r = run(["buildah", "inspect", "--type", "image", name], check=False)
    if r.returncode != 0:
        return None
    d = json.loads(r.stdout)
    return (d.get("OCIv1", {}).get("config", {}) or {}).get("Labels") or {}


def inspect_image(name):
    return json.loads(out(["buildah", "inspect", "--type", "image", name]))


class Resources:
    """What this run created in containers-storage, removed by cleanup()."""

    def __init__(self):
        self.containers = []
        self.images = []

    def container(self, image, name):
        cid = out(["buildah", "from", "--pull-never", "--name", name, image])
        self.containers.append(cid)
        return cid

    def cleanup(self):
        for c in reversed(self.containers):
            subprocess.run(["buildah", "umount", c], env=ENV, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
            r = subprocess.run(["buildah", "rm", c], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=60)
            if r.returncode != 0:
                log("buildah rm %s: %s" % (c, r.stderr.decode().strip()))
        for i in reversed(self.images):
            r = subprocess.run(["buildah", "rmi", i], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=120)
            if r.returncode != 0:
                log("buildah rmi %s: %s" % (i, r.stderr.decode().strip()))
        self.containers = []
        self.images = []


def remove_leftovers():
    """Containers of an earlier run of this test that was killed before its
    cleanup (they carry this test's name prefix)."""
    r = run(["buildah", "containers", "--json"], check=False)
    try:
        rows = json.loads(r.stdout or b"[]") or []
    except ValueError:
        rows = []
    for row in rows:
        name = row.get("containername", "")
        if name.startswith(PREFIX + "-"):
            log("removing leftover container %s" % name)
            run(["buildah", "rm", row.get("id", name)], check=False)
    r = run(["buildah", "images", "--json"], check=False)
    try:
        rows = json.loads(r.stdout or b"[]") or []
    except ValueError:
        rows = []
    for row in rows:
        for n in row.get("names") or []:
            if n.startswith("localhost/%s" % PREFIX):
                log("removing leftover image %s" % n)
                run(["buildah", "rmi", n], check=False)


def import_base_images(res, tarball):
    """docker.io/library/debian:12 and :12-slim from the rootfs tarball. An
    image of that name that this test did not make is used as it is and left
    alone; one that an interrupted earlier run made is replaced."""
    _, sources = debian_sources()
    wanted = []
    for name in BASE_IMAGES:
        labels = image_labels(name)
        if labels is not None and LABEL not in labels:
            log("using the existing %s (not made by this test)" % name)
            continue
        if labels is not None:
            run(["buildah", "rmi", "-f", name], check=False)
        wanted.append(name)
    if not wanted:
        return
    ctr = res.container("scratch", "%s-base-%d" % (PREFIX, os.getpid()))
    mnt = out(["buildah", "mount", ctr])
    run(["tar", "-C", mnt, "--numeric-owner", "--xattrs", "-xf", tarball], cap=120)
    # The image's apt uses the same archive as this machine's.
    with open(os.path.join(mnt, "etc/apt/sources.list"), "w") as f:
        f.write(sources)
    run(["buildah", "umount", ctr])
    run(["buildah", "config", "--cmd", "/bin/bash", "--label", LABEL + "=base",
         "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
         ctr])
    run(["buildah", "commit", "--quiet", "--rm", ctr, wanted[0]], cap=180)
    res.containers.remove(ctr)
    res.images.append(wanted[0])
    for name in wanted[1:]:
        run(["buildah", "tag", wanted[0], name])
        res.images.append(name)
    log("imported %s" % " and ".join(wanted))


# ---------------------------------------------------------------------------
# Helpers on a running container


def listening_inode(port):
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            next(f)
            for line in f:
                p = line.split()
                if p[3] == "0A" and int(p[1].rsplit(":", 1)[1], 16) == port:
                    return p[9]
    return None


def pid_of_listener(port):
    """The process holding the listening socket of port."""
    inode = listening_inode(port)
    if inode is None:
        return None
    target = "socket:[%s]" % inode
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                try:
                    if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == target:
                        return int(pid)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def proc_ids(pid):
    """(real, effective, saved, fs) UIDs and GIDs of pid."""
    uids = gids = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                uids = [int(x) for x in line.split()[1:]]
            elif line.startswith("Gid:"):
                gids = [int(x) for x in line.split()[1:]]
    return uids, gids


def find_compilers(root):
    found = []
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin"):
        p = os.path.join(root, d)
        if os.path.isdir(p) and not os.path.islink(p):
            for n in os.listdir(p):
                if COMPILER.match(n) or n in ("bazel", "ld", "as"):
                    found.append(os.path.join("/", d, n))
    for d in ("usr/lib/gcc", "usr/libexec/gcc", "usr/lib/llvm-14", "usr/lib/llvm-15"):
        for dirpath, _, files in os.walk(os.path.join(root, d)):
            for n in files:
                if n in ("cc1", "cc1plus", "clang"):
                    found.append(os.path.join("/", os.path.relpath(dirpath, root), n))
    return found


# ---------------------------------------------------------------------------


class ContainerImageTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (buildah with chroot isolation, debootstrap)")
        missing = [t for t in ("buildah", "debootstrap") if which(t) is None]
        if missing:
            raise unittest.SkipTest("%s not installed (bazel/deps.sh installs them)"
                                    % " and ".join(missing))
        cls.root = repo_root()
        cls.dockerfile = os.path.join(cls.root, "config", "Dockerfile")
        if not os.path.isfile(cls.dockerfile):
            raise RuntimeError("config/Dockerfile not found under %s" % cls.root)
        # One run at a time on a machine: the leftovers of a killed run are
        # removed below, and a second run at the same moment would take the
        # first one's containers for leftovers.
        os.makedirs(CACHE_DIR, exist_ok=True)
        cls.run_lock = open(os.path.join(CACHE_DIR, ".run.lock"), "w")
        cls.addClassCleanup(cls.run_lock.close)
        fcntl.flock(cls.run_lock, fcntl.LOCK_EX)
        cls.res = Resources()
        cls.addClassCleanup(cls.res.cleanup)
        cls.tag = "localhost/%s:%d" % (PREFIX, os.getpid())
        remove_leftovers()

        t0 = time.monotonic()
        tarball = ensure_rootfs_tarball()
        import_base_images(cls.res, tarball)
        cls.base_seconds = time.monotonic() - t0

        os.makedirs(os.path.join(APT_ARCHIVES, "partial"), exist_ok=True)
        t0 = time.monotonic()
        log("buildah bud -f config/Dockerfile %s" % cls.root)
        cls.build_log = os.path.join(harness.tmp_root(), "buildah-bud.log")
        with open(cls.build_log, "wb") as lf:
            r = subprocess.run(
                ["buildah", "bud", "--isolation=chroot", "--pull-never", "--layers=false",
                 "--volume", "%s:/var/cache/apt/archives" % APT_ARCHIVES,
                 "-f", cls.dockerfile, "-t", cls.tag, cls.root],
                env=ENV, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                timeout=remaining(720))
        # The image is ours to remove even if the build half-failed.
        if image_exists(cls.tag):
            cls.res.images.append(cls.tag)
        if r.returncode != 0:
            with open(cls.build_log, "rb") as lf:
                tail = lf.read()[-6000:].decode("utf-8", "replace")
            raise RuntimeError("buildah bud failed (%d):\n%s" % (r.returncode, tail))
        cls.build_seconds = time.monotonic() - t0
        log("image built in %.0f s (base images %.0f s)" % (cls.build_seconds, cls.base_seconds))
        cls.image = inspect_image(cls.tag)

    # -- the image ---------------------------------------------------------

    def test_image_runs_as_non_root_user(self):
        cfg = self.image["OCIv1"]["config"]
        user = cfg.get("User", "")
        self.assertTrue(user, "the image sets no USER: it would run as root")
        name = user.split(":")[0]
        self.assertNotIn(name, ("root", "0"), "the image runs as %r" % user)
        # The name resolves inside the image to a non-zero UID.
        ctr = self.res.container(self.tag, "%s-user-%d" % (PREFIX, os.getpid()))
        mnt = out(["buildah", "mount", ctr])
        uid = None
        with open(os.path.join(mnt, "etc/passwd")) as f:
            for line in f:
                p = line.split(":")
                if p[0] == name or p[2] == name:
                    uid = int(p[2])
        self.assertIsNotNone(uid, "USER %r is not in the image's /etc/passwd" % user)
        self.assertNotEqual(uid, 0)
        self.assertEqual(cfg.get("Entrypoint")[0], "/usr/local/sbin/smtp-tls-proxy")
        self.assertTrue(os.access(os.path.join(mnt, "usr/local/sbin/smtp-tls-proxy"), os.X_OK))

    def test_runtime_image_has_no_compiler(self):
        ctr = self.res.container(self.tag, "%s-fs-%d" % (PREFIX, os.getpid()))
        mnt = out(["buildah", "mount", ctr])
        self.assertTrue(os.path.isfile(os.path.join(mnt, "usr/local/sbin/smtp-tls-proxy")))
        found = find_compilers(mnt)
        self.assertEqual(found, [], "the runtime image contains build tools: %s" % found)
        self.assertFalse(os.path.exists(os.path.join(mnt, "src")),
                         "the build stage's /src leaked into the runtime image")
        self.assertEqual(glob.glob(os.path.join(mnt, "usr/include/uv*")), [],
                         "development headers in the runtime image")

    def test_build_context_ignores_git_and_bazel_outputs(self):
        # Same context directory as the real build (so the same .dockerignore),
        # a Containerfile that copies it all to /ctx for inspection.
        d = harness.new_tmpdir("context-probe")
        probe = os.path.join(d, "Containerfile")
        with open(probe, "w") as f:
            f.write("FROM docker.io/library/debian:12\nCOPY . /ctx\n")
        tag = "localhost/%s-context:%d" % (PREFIX, os.getpid())
        run(["buildah", "bud", "--isolation=chroot", "--pull-never", "--layers=false",
             "-f", probe, "-t", tag, self.root], cap=180)
        self.res.images.append(tag)
        ctr = self.res.container(tag, "%s-ctx-%d" % (PREFIX, os.getpid()))
        mnt = out(["buildah", "mount", ctr])
        ctx = os.path.join(mnt, "ctx")
        present = sorted(os.listdir(ctx))
        in_tree = sorted(n for n in os.listdir(self.root)
                         if n == ".git" or n.startswith("bazel-"))
        log("source tree has %s; the build context has %s" % (in_tree, present))
        self.assertNotIn(".git", present)
        self.assertEqual([n for n in present if n.startswith("bazel-")], [])
        for needed in ("WORKSPACE", ".bazelrc", "proxy", "third_party", "bazel", "config"):
            self.assertIn(needed, present, "the build context lost %s" % needed)

    # -- running it --------------------------------------------------------

    def test_relays_mail_after_starttls(self):
        pki = harness.pki()
        conf = harness.new_tmpdir("container-etc")
        os.makedirs(os.path.join(conf, "tls"))
        shutil.copy(pki.cert, os.path.join(conf, "tls", "tls.crt"))
        shutil.copy(pki.key, os.path.join(conf, "tls", "tls.key"))
        backend = harness.ScriptedBackend(name="plain-backend").start()
        self.addCleanup(backend.stop)
        port = harness.free_port()
        metrics = harness.free_port()
        cfg = {
            "log_level": "info",
            "shutdown_timeout": 2,
            "metrics_listen": "127.0.0.1:%d" % metrics,
            "tls": {"certificate": "/etc/smtp-tls-proxy/tls/tls.crt",
                    "key": "/etc/smtp-tls-proxy/tls/tls.key"},
            "inbound": [harness.inbound_listener(backend.port, listen_port=port)],
        }
        with open(os.path.join(conf, "smtp-tls-proxy.conf"), "w") as f:
            f.write(harness.write_config(cfg))
        # The files are the user's, readable by the container's user.
        for dirpath, dirs, files in os.walk(conf):
            os.chmod(dirpath, 0o755)
            for n in files:
                os.chmod(os.path.join(dirpath, n), 0o644)

        ocfg = self.image["OCIv1"]["config"]
        argv = list(ocfg.get("Entrypoint") or []) + list(ocfg.get("Cmd") or [])
        self.assertIn("/etc/smtp-tls-proxy/smtp-tls-proxy.conf", argv)
        ctr = self.res.container(self.tag, "%s-run-%d" % (PREFIX, os.getpid()))
        logpath = os.path.join(harness.tmp_root(), "container-proxy.log")
        lf = open(logpath, "wb")
        self.addCleanup(lf.close)
        proc = subprocess.Popen(
            ["buildah", "run", "--isolation=chroot",
             "--volume", "%s:/etc/smtp-tls-proxy:ro" % conf, ctr, "--"] + argv,
            env=ENV, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT)

        def container_log():
            with open(logpath, "rb") as f:
                return f.read()[-6000:].decode("utf-8", "replace")

        def stop():
            if proc.poll() is None:
                pid = pid_of_listener(port)
                if pid:
                    os.kill(pid, signal.SIGTERM)
                else:
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self.addCleanup(stop)

        ok = harness.wait_until(lambda: proc.poll() is not None or
                                (harness.is_listening(port) and harness.is_listening(metrics)),
                                remaining(60), 0.1)
        self.assertIsNone(proc.poll(), "the container exited (%s):\n%s"
                          % (proc.returncode, container_log()))
        self.assertTrue(ok, "the container's proxy did not listen on 127.0.0.1:%d:\n%s"
                        % (port, container_log()))

        # The process inside is not root.
        pid = pid_of_listener(port)
        self.assertIsNotNone(pid, "no process holds the listener of port %d" % port)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().split(b"\0")
        self.assertTrue(cmd[0].endswith(b"smtp-tls-proxy"), cmd)
        uids, gids = proc_ids(pid)
        self.assertNotIn(0, uids, "the proxy in the container runs with UIDs %s" % uids)
        self.assertNotIn(0, gids, "the proxy in the container runs with GIDs %s" % gids)

        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % metrics,
                                    timeout=10) as r:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.read().strip(), b"ok")

        msg = email.message.EmailMessage()
        msg["From"] = "sender@client.test"
        msg["To"] = "rcpt@backend.test"
        msg["Subject"] = "through the container"
        msg.set_content("Hello from smtplib, relayed by the containerised proxy.\n")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=15) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("starttls"), s.esmtp_features)
            s.starttls(context=ctx)
            self.assertIn(s.sock.version(), ("TLSv1.2", "TLSv1.3"))
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            refused = s.send_message(msg)
            self.assertEqual(refused, {})

        self.assertTrue(backend.wait_messages(1, timeout=15),
                        "the backend got no message: %r" % backend.raw_all()[-2000:])
        m = backend.messages[0]
        self.assertIn(b"sender@client.test", m.mail_from)
        self.assertIn(b"rcpt@backend.test", b"".join(m.rcpts))
        self.assertIn(b"relayed by the containerised proxy", m.data)
        # The backend leg is plaintext: it saw the client's second EHLO, never STARTTLS.
        verbs = backend.verbs()
        self.assertNotIn(b"STARTTLS", verbs)
        self.assertGreaterEqual(verbs.count(b"EHLO"), 2, verbs)

        ended = harness.wait_until(lambda: re.search(r"session=\S+ .*end=quit",
                                                     container_log()), 10, 0.1)
        self.assertTrue(ended, "no session-end line in the container's log:\n%s"
                        % container_log())
        self.assertRegex(container_log(), r"tls=TLSv1\.[23]")

        # SIGTERM stops it cleanly (exit 0).
        os.kill(pid, signal.SIGTERM)
        try:
            rc = proc.wait(timeout=remaining(30))
        except subprocess.TimeoutExpired:
            self.fail("the container did not stop within 30 s of SIGTERM:\n%s" % container_log())
        self.assertEqual(rc, 0, container_log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
