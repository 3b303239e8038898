"""bench_session_cpu: the proxy's CPU time per complete SMTP session.

For each worker count and variant a fresh smtp-sink and a fresh proxy
(log_level = "warn", an ECDSA P-256 certificate made at run time) are
started. After a warm-up, N complete sessions are run by P client processes
(N/P each, one after the other):

    connect, greeting, EHLO, STARTTLS, TLS handshake (full, no resumption),
    EHLO, MAIL, RCPT, DATA with a 10 KB message, QUIT

("plaintext" leaves out STARTTLS and the handshake). The proxy's utime +
stime from /proc/PID/stat (all threads) before and after the run give

    proxy CPU per session = (cpu_after - cpu_before) / N

printed in ms, with sessions/s and the client side's wall time. The clients
share the machine with the proxy, so sessions/s is a figure for this
machine and client, not the proxy's capacity; the CPU time per session is
the number to compare across builds.

Prints figures only; fails only if the proxy misbehaves.
"""

import multiprocessing
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

VARIANTS = ("starttls", "plaintext", "tls1.2")
WARMUP = 20
MAX_ERRORS = 10


def ctx_for(variant):
    if variant == "plaintext":
        return None
    return B.client_context("1.2" if variant == "tls1.2" else "1.3")


def client_worker(port, variant, count, size, nodelay, deadline, q):
    """Runs count sessions; puts (done, errors, [messages]) on q."""
    ok, errors, msgs = 0, 0, []
    try:
        ctx = ctx_for(variant)
        msg = B.make_message(size)
        for _ in range(count):
            if time.monotonic() > deadline:
                msgs.append("deadline reached after %d sessions" % ok)
                errors += count - ok - errors
                break
            try:
                B.full_session(port, ctx, msg, nodelay=nodelay)
                ok += 1
            except (B.BenchError, OSError) as e:
                errors += 1
                if len(msgs) < 5:
                    msgs.append("%s: %s" % (type(e).__name__, e))
                if errors >= MAX_ERRORS:
                    msgs.append("giving up after %d errors" % errors)
                    break
    except Exception:  # report, never hang the parent
        msgs.append(traceback.format_exc())
    q.put((ok, errors, msgs))


def run(args, binary, work, cert, key, workers, variant):
    sink = B.SmtpSink(work, max_sessions=4 * args.concurrency + 64)
    proxy = None
    try:
        proxy = B.Proxy(binary, work, sink.port, cert, key, workers=workers,
                        max_sessions=args.concurrency)
        msg = B.make_message(args.message_size)
        for _ in range(WARMUP):
            B.full_session(proxy.port, ctx_for(variant), msg, nodelay=args.nodelay)
        proxy.check_alive("during the warm-up")

        mp = multiprocessing.get_context("fork")
        q = mp.Queue()
        shares = [args.sessions // args.concurrency + (1 if i < args.sessions % args.concurrency
                                                       else 0)
                  for i in range(args.concurrency)]
        deadline = time.monotonic() + args.timeout
        t_children0 = os.times()
        (u0, s0), sink0 = proxy.cpu_split(), sink.cpu()
        t0 = time.monotonic()
        procs = [mp.Process(target=client_worker,
                            args=(proxy.port, variant, n, args.message_size, args.nodelay,
                                  deadline, q))
                 for n in shares]
        for p in procs:
            p.start()
        results = []
        for _ in procs:
            try:
                results.append(q.get(timeout=max(1.0, deadline - time.monotonic() + 30)))
            except Exception:
                break
        wall = time.monotonic() - t0
        (u1, s1), sink1 = proxy.cpu_split(), sink.cpu()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        t_children1 = os.times()
        proxy.check_alive("during the run")
        if len(results) < len(procs):
            raise B.BenchError("%d client process(es) did not report within the time limit"
                               % (len(procs) - len(results)))
        ok = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        msgs = [m for r in results for m in r[2]]
        if errors:
            print("# %s workers=%d: %d session(s) failed; first errors:" % (variant, workers,
                                                                          errors))
            for m in msgs[:5]:
                print("#   " + m.strip().replace("\n", "\n#   "))
        client_cpu = ((t_children1.children_user - t_children0.children_user) +
                      (t_children1.children_system - t_children0.children_system))
        return {
            "variant": variant, "workers": workers, "ok": ok, "errors": errors, "wall": wall,
            "proxy_cpu": (u1 - u0) + (s1 - s0), "proxy_user": u1 - u0, "proxy_sys": s1 - s0,
            "sink_cpu": sink1 - sink0, "client_cpu": client_cpu,
        }
    finally:
        if proxy is not None:
            rc = proxy.stop()
            if rc not in (0, None):
                print("# WARNING: proxy exited with %d on SIGTERM" % rc)
            proxy.report_log("%s workers=%d" % (variant, workers))
        sink.stop()


def main():
    p = B.common_args(__doc__.split("\n")[0])
    p.add_argument("-n", "--sessions", type=int, default=2000,
                   help="sessions per run (default 2000)")
    p.add_argument("-c", "--concurrency", type=int, default=4,
                   help="client processes (default 4)")
    p.add_argument("--workers", default="1",
                   help="comma-separated proxy worker counts, one run each (default 1)")
    p.add_argument("--variants", default="starttls,plaintext",
                   help="comma-separated subset of %s (default starttls,plaintext)" %
                   ",".join(VARIANTS))
    p.add_argument("--message-size", type=int, default=10 * 1024,
                   help="message bytes, headers included (default 10240)")
    p.add_argument("--nodelay", action="store_true",
                   help="clients set TCP_NODELAY (default: Nagle on, like most MTAs)")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds allowed for one run (default 600)")
    args = p.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            p.error("unknown variant %r" % v)
    workers = [int(w) for w in args.workers.split(",") if w]
    if args.sessions < 1 or args.concurrency < 1:
        p.error("--sessions and --concurrency must be positive")

    binary = B.proxy_binary(args.proxy)
    B.raise_nofile(4 * args.concurrency + 256)
    work = B.Workdir(args.keep)
    try:
        cert, key = B.make_cert(work.path)
        B.header("bench_session_cpu: %d sessions, %d client processes, %d-byte message, "
                 "client TCP_NODELAY %s" % (args.sessions, args.concurrency, args.message_size,
                                            "on" if args.nodelay else "off"), binary)
        results = []
        for w in workers:
            for v in variants:
                results.append(run(args, binary, work.path, cert, key, w, v))
        print("%-10s %7s %8s %6s %8s %10s %11s %10s %11s %12s %10s" % (
            "variant", "workers", "sessions", "errors", "wall_s", "sessions/s", "proxy_cpu_s",
            "user/sys_s", "ms/session", "client_cpu_s", "sink_cpu_s"))
        for r in results:
            n = max(1, r["ok"])
            print("%-10s %7d %8d %6d %8.2f %10.1f %11.2f %10s %11.3f %12.2f %10.2f" % (
                r["variant"], r["workers"], r["ok"], r["errors"], r["wall"], r["ok"] / r["wall"],
                r["proxy_cpu"], "%.2f/%.2f" % (r["proxy_user"], r["proxy_sys"]),
                1000 * r["proxy_cpu"] / n, r["client_cpu"], r["sink_cpu"]))
        for r in results:
            n = max(1, r["ok"])
            print("%s workers=%d: proxy CPU per session: %.3f ms; %.1f sessions/s; "
                  "client wall time %.2f s for %d sessions" % (
                      r["variant"], r["workers"], 1000 * r["proxy_cpu"] / n, r["ok"] / r["wall"],
                      r["wall"], r["ok"]))
        failed = sum(r["errors"] for r in results)
    finally:
        work.close()
    if failed:
        print("bench_session_cpu: %d session(s) failed (see above)" % failed, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except B.BenchError as e:
        print("bench_session_cpu: FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
