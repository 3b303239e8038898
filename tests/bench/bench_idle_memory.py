"""bench_idle_memory: the proxy's resident memory per idle session.

For each variant (plaintext, STARTTLS with TLS 1.3, STARTTLS with TLS 1.2) a
fresh smtp-sink and a fresh proxy (workers = 1, log_level = "warn", an ECDSA
P-256 certificate made at run time) are started. After a warm-up of a few
complete sessions the proxy's VmRSS is read ("rest"); then N client
connections are opened one after the other, each doing greeting, EHLO,
[STARTTLS, handshake, EHLO again], and left idle with their backend leg
open. VmRSS is read again once it is stable ("idle"), and

    per session = (idle - rest) / N     in KB

is printed, together with RssAnon (heap and stacks only, without file
pages), the descriptors the proxy holds, and VmRSS after every client has
closed (how much the allocator gives back). Kernel socket buffers are not
part of the process's RSS and are not counted.

Prints figures only; fails only if the proxy misbehaves.
"""

import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

VARIANTS = ("plaintext", "tls1.3", "tls1.2")
WARMUP = 16


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def open_idle(port, ctx, n, deadline):
    """n sessions left idle after their last EHLO; returns the Smtp objects."""
    conns = []
    for i in range(n):
        if time.monotonic() > deadline:
            raise B.BenchError("opening idle sessions took too long: %d of %d open" % (i, n))
        # TCP_NODELAY only to open sessions quickly: with Nagle on, the first
        # EHLO after a TLS 1.3 handshake waits ~40 ms for a delayed ACK
        # (BoringSSL sends its tickets only with the first reply).
        s = B.Smtp(port, nodelay=True)
        try:
            s.greeting()
            if ctx is not None:
                s.starttls(ctx)
            s.ehlo()
        except (B.BenchError, OSError) as e:
            s.close()
            raise B.BenchError("idle session %d of %d: %s" % (i + 1, n, e))
        conns.append(s)
    return conns


def run_variant(args, binary, work, cert, key, variant):
    ctx = None if variant == "plaintext" else B.client_context(variant[3:])
    sink = B.SmtpSink(work, max_sessions=args.sessions)
    proxy = None
    conns = []
    try:
        proxy = B.Proxy(binary, work, sink.port, cert, key, workers=args.workers,
                        max_sessions=args.sessions)
        msg = B.make_message(10 * 1024)
        for _ in range(WARMUP):
            B.full_session(proxy.port, ctx, msg, nodelay=True)
        # Also open and close a few idle sessions, so that whatever the first
        # idle session allocates once (e.g. timer heap growth) is in "rest".
        for s in open_idle(proxy.port, ctx, 8, time.monotonic() + 30):
            s.close()
        time.sleep(0.3)
        proxy.check_alive("during the warm-up")
        rest = B.stable_rss(proxy.pid)

        t0 = time.monotonic()
        conns = open_idle(proxy.port, ctx, args.sessions, t0 + args.timeout)
        open_s = time.monotonic() - t0
        proxy.check_alive("while opening idle sessions")
        idle = B.stable_rss(proxy.pid)
        fds = fd_count(proxy.pid)
        # Every session must still be open and quiet: an idle one that became
        # readable was closed (or written to) by the proxy while we measured.
        poller = select.poll()  # select() cannot watch descriptors above 1023
        for s in conns:
            poller.register(s.sock.fileno(), select.POLLIN)
        ready = poller.poll(0)
        if ready:
            raise B.BenchError("%d of %d idle sessions were closed or written to by the "
                               "proxy while idle" % (len(ready), len(conns)))

        for s in conns:
            s.close()
        conns = []
        wait_fds = B.wait_until(lambda: fd_count(proxy.pid) <= fds - 2 * args.sessions + 4, 15)
        after = B.stable_rss(proxy.pid)
        proxy.check_alive("after the idle sessions closed")
        if not wait_fds:
            print("# WARNING: %s: proxy still holds %d descriptors 15 s after the clients "
                  "closed" % (variant, fd_count(proxy.pid)))
        return {
            "variant": variant, "rest": rest, "idle": idle, "after": after, "fds": fds,
            "open_s": open_s,
        }
    finally:
        for s in conns:
            s.close()
        if proxy is not None:
            rc = proxy.stop()
            if rc not in (0, None):
                print("# WARNING: proxy exited with %d on SIGTERM" % rc)
            proxy.report_log(variant)
        sink.stop()


def main():
    p = B.common_args(__doc__.split("\n")[0])
    p.add_argument("-n", "--sessions", type=int, default=1000,
                   help="idle sessions to open per variant (default 1000)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated subset of %s" % ",".join(VARIANTS))
    p.add_argument("--workers", type=int, default=1, help="proxy worker threads (default 1)")
    p.add_argument("--timeout", type=float, default=300,
                   help="seconds allowed to open the sessions of one variant (default 300)")
    args = p.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            p.error("unknown variant %r" % v)

    binary = B.proxy_binary(args.proxy)
    # Client: N sockets. Proxy and smtp-sink inherit the limit: 2N and N.
    B.raise_nofile(2 * args.sessions + 256)
    work = B.Workdir(args.keep)
    try:
        cert, key = B.make_cert(work.path)
        B.header("bench_idle_memory: %d idle sessions per variant, workers=%d, ECDSA P-256 "
                 "certificate" % (args.sessions, args.workers), binary)
        results = []
        for v in variants:
            r = run_variant(args, binary, work.path, cert, key, v)
            results.append(r)
        print("%-10s %9s %9s %12s %11s %11s %13s %7s %7s" % (
            "variant", "rest_KB", "idle_KB", "KB/session", "anon_KB", "anon_KB/ses",
            "after_close_KB", "fds", "open_s"))
        for r in results:
            n = args.sessions
            per = (r["idle"]["VmRSS"] - r["rest"]["VmRSS"]) / n
            anon = (r["idle"]["RssAnon"] - r["rest"]["RssAnon"]) / n
            print("%-10s %9d %9d %12.1f %11d %11.1f %13d %7d %7.1f" % (
                r["variant"], r["rest"]["VmRSS"], r["idle"]["VmRSS"], per,
                r["idle"]["RssAnon"], anon, r["after"]["VmRSS"], r["fds"], r["open_s"]))
        for r in results:
            per = (r["idle"]["VmRSS"] - r["rest"]["VmRSS"]) / args.sessions
            print("memory per idle %s session: %.1f KB (VmRSS %d -> %d KB for %d sessions)" % (
                {"plaintext": "plaintext", "tls1.3": "TLS 1.3", "tls1.2": "TLS 1.2"}[r["variant"]],
                per, r["rest"]["VmRSS"], r["idle"]["VmRSS"], args.sessions))
    finally:
        work.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except B.BenchError as e:
        print("bench_idle_memory: FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
