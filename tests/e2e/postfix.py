"""Real Postfix instances for the end-to-end tests (test_postfix_*.py), on
top of harness.py.

  Postfix(name, ...)   one private Postfix instance in its own directory
                       under /tmp: config_directory (main.cf + master.cf
                       written here), queue_directory, data_directory, a
                       maillog_file served by postlogd, one smtpd on
                       127.0.0.1:PORT, no chroot, no DNS (native host
                       lookups, i.e. /etc/hosts), virtual Maildir mailboxes
                       (one catch-all per domain) whose files tests read.
                       Started with "postfix -c DIR start", stopped the way
                       "postfix stop" does it (SIGTERM to the master) but
                       polled every 20 ms instead of every second; leftovers
                       of the instance (any process whose MAIL_CONFIG is its
                       config directory) are killed afterwards.
  unavailable()        why Postfix cannot be used here (a skip reason), or None.
  submit()             one message by SMTP (smtplib) into an instance's smtpd.
  PostfixTestCase      ProxyTestCase that starts instances, cleans them up
                       and prints their logs when a test fails.

Why /tmp and not $TEST_TMPDIR: Postfix daemons run as user "postfix" and
must reach the queue and the mailboxes, while Bazel's output base lives
under /root (mode 0700). Why root and no sandbox: the master and its
daemons setuid to "postfix"; Bazel's sandbox user namespace refuses that.
The system's own instance (/etc/postfix, /var/spool/postfix) is never
touched: every command gets "-c DIR" and every path is inside DIR.
"""

import atexit
import grp
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

import harness

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTQUEUE = "/usr/sbin/postqueue"
DAEMON_DIR = "/usr/lib/postfix/sbin"
MASTER = os.path.join(DAEMON_DIR, "master")

META_FILES = "/etc/postfix/postfix-files"   # meta_directory's list (read only)

DIR_PREFIX = "stp-postfix-"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def unavailable():
    """None when real Postfix instances can run here, else the reason."""
    if os.geteuid() != 0:
        return "not root: Postfix must setuid to its mail_owner"
    for p in (POSTFIX, POSTCONF, POSTQUEUE, MASTER):
        if not os.access(p, os.X_OK):
            return "%s missing (Debian package postfix)" % p
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError as e:
        return "no %s user/group" % e
    return None


def _run(cmd, timeout=20, check=True):
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    out = r.stdout.decode("utf-8", "replace")
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, out))
    return r.returncode, out


# ---------------------------------------------------------------------------
# Processes of one instance


def _environ_has(pid, needle):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return needle in f.read().split(b"\0")
    except OSError:
        return False


def instance_pids(config_dir):
    """Pids of every process that runs with MAIL_CONFIG=config_dir: the
    master and its daemons ("postfix -c DIR" puts it in their environment;
    import_environment keeps it)."""
    needle = ("MAIL_CONFIG=" + config_dir).encode()
    out = []
    for n in os.listdir("/proc"):
        if n.isdigit() and int(n) != os.getpid() and _environ_has(int(n), needle):
            out.append(int(n))
    return out


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_all(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


# Instances started and not yet stopped, for the exit/SIGTERM safety net.
_live = set()
_live_lock = threading.Lock()


def stop_live():
    """Stops and removes every instance of this process still running."""
    with _live_lock:
        live = list(_live)
    for pf in live:
        pf.stop()
        pf.remove()


atexit.register(stop_live)


def _on_sigterm(signum, frame):
    # Bazel's test timeout sends SIGTERM (then SIGKILL): stop the instances
    # first, then die of the signal as before.
    stop_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_sigterm_handler():
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


# None: no instance started yet in this process; True: the first one's
# "postfix start" (with its integrity check) made the same queue tree as
# Postfix._queue_tree_spec(), so later ones may skip the check.
_fast_start = [None]


def remove_stale():
    """Stops and deletes instances left by killed test runs (directories
    /tmp/stp-postfix-*-PID-* whose PID is gone)."""
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for n in names:
        m = re.match(r"^%s.*-(\d+)-[^-]+$" % re.escape(DIR_PREFIX), n)
        if not m or os.path.exists("/proc/" + m.group(1)):
            continue
        d = os.path.join(root, n)
        etc = os.path.join(d, "etc")
        pids = instance_pids(etc)
        _kill_all(pids, signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# master.cf

# Every service a complete Postfix needs (master.cf.proto of 3.7), without
# chroot; the smtpd line(s) are added per instance.
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _param_text(v):
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return str(v)


class Postfix:
    """One private Postfix instance (see the module doc).

    name       short label: myhostname is NAME.test, the directory
               /tmp/stp-postfix-NAME-PID-XXXX.
    domains    domains delivered into Maildirs here (virtual_mailbox_domains),
               each with one catch-all mailbox.
    main       extra or overriding main.cf parameters {name: value}.
    smtpd_opts "-o name=value" overrides for the smtpd service only.
    tls        True: smtpd offers STARTTLS with the harness certificate
               (mx.test, localhost, 127.0.0.1) and the smtp client trusts
               the harness CA (smtp_tls_CAfile); both log TLS at level 1.
    """

    def __init__(self, name, domains=(), main=None, smtpd_opts=None, tls=False,
                 port=None):
        self.name = name
        self.domains = list(domains)
        self.port = port or harness.free_port()
        self.dir = tempfile.mkdtemp(prefix="%s%s-%d-" % (DIR_PREFIX, name, os.getpid()),
                                    dir=tempfile.gettempdir())
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.mail = os.path.join(self.dir, "mail")
        self.maillog = os.path.join(self.dir, "maillog")
        self.master_pid = None
        self.started = False
        self._saved_log = None
        self.main = {}
        self.smtpd_opts = dict(smtpd_opts or {})
        self.tls = tls
        self._layout()
        self.main = self._base_main()
        self.main.update(main or {})
        self.write()

    # files

    def _layout(self):
        for d in (self.etc, self.queue, self.data, self.mail):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.etc, 0o755)
        os.chmod(self.queue, 0o755)      # root-owned; post-install fills it
        pf = pwd.getpwnam("postfix")
        os.chown(self.data, pf.pw_uid, pf.pw_gid)
        os.chmod(self.data, 0o700)
        nobody = pwd.getpwnam("nobody")
        self.mail_uid, self.mail_gid = nobody.pw_uid, nobody.pw_gid
        os.chown(self.mail, self.mail_uid, self.mail_gid)
        os.chmod(self.mail, 0o755)
        with open(self.maillog, "ab"):
            pass
        p = harness.pki()
        self.ca = os.path.join(self.etc, "ca.pem")
        self.cert = os.path.join(self.etc, "server.pem")
        self.key = os.path.join(self.etc, "server.key")
        # Copies inside the instance: the originals live under /root.
        shutil.copyfile(p.ca, self.ca)
        shutil.copyfile(p.cert, self.cert)
        shutil.copyfile(p.key, self.key)
        os.chmod(self.ca, 0o644)
        os.chmod(self.cert, 0o644)
        os.chmod(self.key, 0o600)
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            for dom in self.domains:
                # A trailing slash makes it a Maildir.
                f.write("@%s %s/\n" % (dom, dom))

    def _base_main(self):
        return {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.dir,
            "myhostname": "%s.test" % self.name,
            "mydomain": "test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "local_transport": "error:no local delivery in this test instance",
            "biff": False,
            "append_dot_mydomain": False,
            "smtputf8_enable": False,
            # No DNS anywhere: /etc/hosts (nsswitch "files") via getaddrinfo.
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "smtpd_peername_lookup": False,
            "virtual_mailbox_domains": self.domains,
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": "texthash:%s/vmailbox" % self.etc,
            "virtual_uid_maps": "static:%d" % self.mail_uid,
            "virtual_gid_maps": "static:%d" % self.mail_gid,
            "relayhost": "",
            # Fast retries, short timeouts, no sleeping on errors.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "delay_warning_time": "0h",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
            "smtp_connect_timeout": "5s",
            "smtp_helo_timeout": "10s",
            "smtpd_error_sleep_time": "0s",
            "in_flow_delay": "0s",
            "smtpd_banner": "$myhostname ESMTP",
            "smtp_tls_loglevel": 1,
            "smtpd_tls_loglevel": 1,
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "may" if self.tls else "none",
            "smtpd_tls_chain_files": "%s, %s" % (self.key, self.cert) if self.tls else "",
            "smtp_tls_CAfile": self.ca,
            "smtp_tls_session_cache_database": "",
            "smtpd_tls_session_cache_database": "",
            "smtp_connection_cache_on_demand": False,
        }

    def master_cf(self):
        smtpd = "%s:%d inet  n       -       n       -       -       smtpd\n" % (
            harness.HOST, self.port)
        for k, v in self.smtpd_opts.items():
            smtpd += "  -o %s=%s\n" % (k, _param_text(v).replace(" ", ""))
        return smtpd + _SERVICES

    def write(self):
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            for k, v in self.main.items():
                f.write("%s = %s\n" % (k, _param_text(v)))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(self.master_cf())
        self._age_files()

    def _age_files(self):
        """Postfix's dict_load_file() refuses a file modified within the last
        second and retries every 300 ms until it is older (it guards against
        reading a file while an editor writes it): that alone made every
        postfix/postconf command take ~2 s. Every file written here gets an
        mtime a minute in the past."""
        old = time.time() - 60
        for n in os.listdir(self.etc):
            os.utime(os.path.join(self.etc, n), (old, old))

    def write_file(self, name, text):
        """A file in the config directory (a lookup table, say); its path."""
        path = os.path.join(self.etc, name)
        with open(path, "w") as f:
            f.write(text)
        self._age_files()
        return path

    def set(self, **params):
        """Changes main.cf parameters (written; reload() to apply)."""
        self.main.update(params)
        self.write()

    # lifecycle

    def _queue_tree_spec(self):
        """[(path, uid, gid or -1, mode)] of the queue and data directories
        as postfix-files (meta_directory) lists them for post-install."""
        ids = {"$mail_owner": pwd.getpwnam("postfix").pw_uid, "root": 0}
        gids = {"$setgid_group": grp.getgrnam("postdrop").gr_gid, "-": -1}
        tops = {"$queue_directory": self.queue, "$data_directory": self.data}
        out = []
        with open(META_FILES) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) < 5 or parts[1] != "d":
                    continue
                top, _, rest = parts[0].partition("/")
                if top not in tops or parts[2] not in ids:
                    continue
                out.append((os.path.join(tops[top], rest) if rest else tops[top],
                            ids[parts[2]], gids.get(parts[3], -1), int(parts[4], 8)))
        return out

    def _tree_matches_spec(self):
        for path, uid, gid, mode in self._queue_tree_spec():
            try:
                st = os.stat(path)
            except OSError:
                return False
            if st.st_uid != uid or (gid != -1 and st.st_gid != gid) or \
                    (st.st_mode & 0o7777) != mode:
                return False
        return True

    def start(self, full_check=None):
        """postfix -c ETC start, then waits (bounded) until smtpd's port
        listens and the master's pid is known.

        The first instance of a process gets Postfix's whole integrity check
        (post-install create-missing makes the queue tree, postsuper, the
        permission warnings: ~0.5 s idle, 1-1.5 s on a loaded 2-core machine,
        mostly postconf runs). If the tree it made is exactly the one
        postfix-files describes, later instances make that tree themselves
        and start with $queue_directory/quick-start (the marker "postfix
        quick-stop" leaves), which skips the check: ~0.1 s.
        full_check=True forces the check."""
        self.started = True
        with _live_lock:
            _live.add(self)
        t0 = time.monotonic()
        fast = not full_check and _fast_start[0] is True
        if fast:
            for path, uid, gid, mode in self._queue_tree_spec():
                os.makedirs(path, exist_ok=True)
                os.chown(path, uid, gid)
                os.chmod(path, mode)
            with open(os.path.join(self.queue, "quick-start"), "w"):
                pass
        rc, out = _run([POSTFIX, "-c", self.etc, "start"], timeout=START_TIMEOUT, check=False)
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
            return harness.is_listening(self.port)
        if not harness.wait_until(ready, START_TIMEOUT - (time.monotonic() - t0)):
            raise RuntimeError("postfix %s: not listening on %d within %.0f s\n%s"
                               % (self.name, self.port, START_TIMEOUT, self.log()[-3000:]))
        self.start_seconds = time.monotonic() - t0
        if not fast and _fast_start[0] is None:
            _fast_start[0] = self._tree_matches_spec()
        return self

    def start_retrying(self, attempts=3):
        """start(); when the port free_port() picked was taken in between
        (master: "bind ... Address already in use"), again on a new port."""
        for i in range(attempts):
            try:
                return self.start()
            except RuntimeError:
                if i == attempts - 1 or "Address already in use" not in self.log():
                    raise
                self.stop()
                self.master_pid = None
                self._saved_log = None
                with open(self.maillog, "wb"):
                    pass
                self.port = harness.free_port()
                self.write()

    def reload(self):
        """postfix -c ETC reload: the master re-reads main.cf/master.cf and
        restarts its daemons; waits until the master has logged it."""
        before = self.log().count("reload -- version")
        _run([POSTFIX, "-c", self.etc, "reload"])
        if not harness.wait_until(lambda: self.log().count("reload -- version") > before,
                                  5.0, 0.02):
            raise RuntimeError("postfix %s: reload not logged" % self.name)

    def stop(self):
        """What "postfix stop" does (SIGTERM to the master, whose handler
        terminates its process group), polled at 20 ms instead of 1 s; then
        "postfix abort"'s and "stop with force"'s fallbacks; then anything
        left with this config directory is killed. Never raises."""
        with _live_lock:
            _live.discard(self)
        if not self.started:
            return
        self.started = False
        try:
            pids = instance_pids(self.etc)
            if self.master_pid is not None and self.master_pid not in pids and \
                    _alive(self.master_pid):
                pids.append(self.master_pid)
            if self.master_pid is not None:
                _kill_all([self.master_pid], signal.SIGTERM)
            else:
                _run([POSTFIX, "-c", self.etc, "abort"], timeout=10, check=False)
            if not harness.wait_until(lambda: not any(_alive(p) for p in pids),
                                      STOP_TIMEOUT, 0.02):
                if self.master_pid is not None:
                    try:
                        os.killpg(self.master_pid, signal.SIGKILL)
                    except OSError:
                        pass
                _kill_all(pids, signal.SIGKILL)
            left = [p for p in instance_pids(self.etc) if _alive(p)]
            if left:
                _kill_all(left, signal.SIGKILL)
                harness.wait_until(lambda: not any(_alive(p) for p in left), 2.0, 0.02)
        except Exception as e:  # cleanup must go on
            sys.stderr.write("postfix %s: stop: %r\n" % (self.name, e))

    def remove(self):
        """Deletes the instance directory (after stop()); the maillog is kept
        in memory for the failure report."""
        self._saved_log = self.log()
        shutil.rmtree(self.dir, ignore_errors=True)

    def processes(self):
        return [p for p in instance_pids(self.etc) if _alive(p)]

    # observation

    def log(self):
        if self._saved_log is not None:
            return self._saved_log
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, regex, timeout=10.0):
        """The first match of regex in the maillog (polled), or None."""
        rx = re.compile(regex)
        return harness.wait_until(lambda: rx.search(self.log()), timeout, 0.05)

    def maildir(self, domain):
        return os.path.join(self.mail, domain)

    def messages(self, domain):
        """Raw bytes of every message delivered to domain's catch-all, oldest first."""
        out = []
        d = self.maildir(domain)
        for sub in ("new", "cur"):
            try:
                names = os.listdir(os.path.join(d, sub))
            except OSError:
                continue
            for n in names:
                p = os.path.join(d, sub, n)
                try:
                    with open(p, "rb") as f:
                        out.append((os.stat(p).st_mtime, n, f.read()))
                except OSError:
                    pass
        return [m for _, _, m in sorted(out)]

    def wait_messages(self, domain, count=1, timeout=15.0):
        """Polls domain's Maildir until it holds count messages; returns them
        (possibly fewer when the time is up)."""
        harness.wait_until(lambda: len(self.messages(domain)) >= count, timeout, 0.05)
        return self.messages(domain)

    def queue_json(self):
        """postqueue -c ETC -j: one dict per queued message."""
        _, out = _run([POSTQUEUE, "-c", self.etc, "-j"], check=False)
        items = []
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("{"):
                items.append(json.loads(line))
        return items

    def queue_text(self):
        """postqueue -c ETC -p as text."""
        return _run([POSTQUEUE, "-c", self.etc, "-p"], check=False)[1]

    def wait_queued(self, timeout=15.0, pred=None):
        """Polls until the queue holds a message (that satisfies pred)."""
        def find():
            for m in self.queue_json():
                if pred is None or pred(m):
                    return m
            return None
        return harness.wait_until(find, timeout, 0.1)

    def wait_queue_empty(self, timeout=15.0):
        return harness.wait_until(lambda: not self.queue_json(), timeout, 0.1)

    def flush(self):
        """postqueue -c ETC -f: retry every queued message now."""
        _run([POSTQUEUE, "-c", self.etc, "-f"])


# ---------------------------------------------------------------------------
# Messages


def make_message(subject, mail_from, rcpt, marker):
    """A message with headers a sender wrote (and must find intact) and a
    body with the lines transports like to touch: leading dots, a line with
    only a dot, trailing white space, an empty line, a long line, "From ".
    CRLF line ends; returns (headers as list of lines, body bytes, whole)."""
    headers = [
        "From: Sender <%s>" % mail_from,
        "To: Recipient <%s>" % rcpt,
        "Subject: %s" % subject,
        "Date: Tue, 01 Dec 2026 12:00:00 +0000",
        "Message-ID: <%s@e2e.test>" % marker,
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "X-E2E-Marker: %s" % marker,
        "X-Folded: first part",
        "\tsecond part of a folded header",
    ]
    body_lines = [
        "Hello through the proxy (%s)." % marker,
        "",
        ".a line that starts with a dot",
        ".",
        "..two dots",
        "trailing spaces   ",
        "\ttab-indented line",
        "From the middle of a message",
        "x" * 900,
        "last line",
    ]
    body = "\r\n".join(body_lines).encode() + b"\r\n"
    whole = ("\r\n".join(headers) + "\r\n\r\n").encode() + body
    return headers, body, whole


def split_delivered(raw):
    """(header lines, body) of a Maildir file (LF line ends) as CRLF text."""
    raw = raw.replace(b"\r\n", b"\n")
    head, sep, body = raw.partition(b"\n\n")
    lines = head.decode("utf-8", "replace").split("\n")
    return lines, body.replace(b"\n", b"\r\n")


def submit(port, mail_from, rcpts, content, host=harness.HOST, source=None, timeout=10):
    """Hands a message to an smtpd (smtplib, no TLS); returns the queue reply."""
    s = smtplib.SMTP(timeout=timeout, source_address=(source, 0) if source else None)
    try:
        s.connect(host, port)
        s.ehlo("submitter.test")
        s.mail(mail_from)
        for r in rcpts:
            code, msg = s.rcpt(r)
            if code != 250:
                raise AssertionError("RCPT %s: %d %r" % (r, code, msg))
        code, msg = s.data(content)
        if code != 250:
            raise AssertionError("DATA: %d %r" % (code, msg))
        s.quit()
        return msg.decode("utf-8", "replace")
    finally:
        try:
            s.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------
# unittest base


# Warnings about the machine, not the configuration: cleanup(8) compares a
# queue file's modification time with time(), and on a file system whose
# timestamps come from the kernel's coarse clock the file can look a second
# "ahead"; Postfix then resets the time stamps and goes on.
_BENIGN = re.compile(r"postfix/cleanup\[\d+\]: warning: (?:file system clock is \d+ seconds? "
                     r"ahead of local clock|resetting file time stamps - this hurts performance)$")


def trouble(log, expected=lambda line: False):
    """The warning, error, fatal and panic lines of a maillog, less the
    benign ones above and those expected(line) accepts."""
    return [line for line in
            re.findall(r"^.*postfix/\S+: (?:warning|error|fatal|panic): .*$", log, re.M)
            if not _BENIGN.search(line) and not expected(line)]


class PostfixTestCase(harness.ProxyTestCase):
    """ProxyTestCase plus postfix(): instances stopped and deleted by
    cleanups (also on failure), their maillogs printed when a test fails."""

    @classmethod
    def setUpClass(cls):
        why = unavailable()
        if why:
            raise harness.unittest.SkipTest(why)
        remove_stale()
        install_sigterm_handler()

    def setUp(self):
        super().setUp()
        self._postfixes = []
        # Registered first, so it runs after every other cleanup.
        self.addCleanup(self._assert_nothing_left)

    def _assert_nothing_left(self):
        for pf in self._postfixes:
            left = pf.processes()
            if left:
                _kill_all(left, signal.SIGKILL)
            self.assertEqual(left, [], "postfix %s: processes left after stop" % pf.name)
            self.assertFalse(os.path.exists(pf.dir), "postfix %s: %s left" % (pf.name, pf.dir))
            # A generated configuration Postfix only half understands shows
            # up as warnings (unknown parameter, bad permissions, ...).
            bad = trouble(pf.log())
            self.assertEqual(bad, [], "postfix %s logged trouble" % pf.name)

    def postfix(self, name, start=True, **kw):
        pf = Postfix(name, **kw)
        self._postfixes.append(pf)
        self.addCleanup(pf.remove)
        self.addCleanup(pf.stop)
        if start:
            pf.start_retrying()
        return pf

    def run(self, result=None):
        out = super().run(result)
        if os.environ.get("POSTFIX_E2E_LOGS") and result is not None:
            # Every test's logs, passed or not (for development).
            self._dump_diagnostics()
        return out

    def _dump_diagnostics(self):
        super()._dump_diagnostics()
        w = sys.stderr.write
        for pf in getattr(self, "_postfixes", []):
            w("\n----- postfix %s (%s) maillog, last 6000 chars -----\n" % (pf.name, pf.dir))
            w(pf.log()[-6000:])

    def assertHeadersIntact(self, sent_headers, got_lines):
        """Every header line the sender wrote appears, in order and
        unchanged, in the delivered header block (others may be added)."""
        i = 0
        for line in got_lines:
            if i < len(sent_headers) and line == sent_headers[i]:
                i += 1
        self.assertEqual(i, len(sent_headers),
                         "sender's headers not intact: missing %r\nin %r"
                         % (sent_headers[i:i + 1], got_lines))
