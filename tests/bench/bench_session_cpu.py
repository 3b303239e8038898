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

The out-* variants measure an outbound listener instead: the clients speak
plaintext SMTP (greeting, EHLO, MAIL, RCPT, DATA, QUIT) to the measured
proxy, whose fixed destination is, for "out-starttls", a second proxy
process (an inbound STARTTLS listener with the same certificate in front of
smtp-sink), so that the measured proxy is the TLS client: STARTTLS, full
TLS 1.3 handshake, EHLO again, then relaying. "out-plaintext" (policy none)
points it at smtp-sink directly. Only the measured proxy's CPU time is in
ms/session; the destination proxy's is printed beside it for information.
A twin of the measured proxy at log_level info first runs a few sessions
whose session lines must say security=tls-unverified tls=TLSv1.3 (plaintext
and tls=none for out-plaintext), and the measured proxy's own counters
(/metrics) must show one TLS 1.3 handshake per out-starttls session.

Prints figures only; fails only if the proxy misbehaves.
"""

import multiprocessing
import os
import re
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

VARIANTS = ("starttls", "plaintext", "tls1.2", "out-starttls", "out-plaintext")
OUT_POLICIES = ("opportunistic", "required")
DEFAULT_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"  # the daemon's default tls.ca_file
WARMUP = 20
SAMPLE = 8  # sessions whose log lines are checked (out-* variants)
MAX_ERRORS = 10


def is_outbound(variant):
    return variant.startswith("out-")


def ctx_for(variant):
    """The client's TLS context; None = plaintext (out-* clients always are)."""
    if variant == "plaintext" or is_outbound(variant):
        return None
    return B.client_context("1.2" if variant == "tls1.2" else "1.3")


def out_policy(args, variant):
    return args.out_policy if variant == "out-starttls" else "none"


def out_ca_file(cert):
    """None (the daemon's default CA bundle, as deployed) when readable;
    otherwise the daemon would refuse to start, so the test certificate."""
    return None if os.access(DEFAULT_CA_FILE, os.R_OK) else cert


def expected_fields(args, variant):
    """What each outbound session line must say."""
    if variant == "out-starttls":
        return {"policy": args.out_policy, "security": "tls-unverified", "tls": "TLSv1.3",
                "end": "quit"}
    return {"policy": "none", "security": "plaintext", "tls": "none", "end": "quit"}


def log_fields(line):
    """key=value pairs of a text log line (values possibly "quoted")."""
    return {k: v for k, v in re.findall(r'(?:^| )([a-z_]+)=("[^"]*"|\S*)', line)}


def check_sample(args, binary, work, dest_port, cert, key, workers, variant, ca_file):
    """A twin of the measured outbound proxy (same config, log_level info)
    runs SAMPLE sessions; every session line must match expected_fields().
    The measured proxy stays at "warn", like the inbound variants."""
    twin = B.Proxy(binary, work, dest_port, cert, key, workers=workers, log_level="info",
                   outbound=out_policy(args, variant), ca_file=ca_file)
    try:
        msg = B.make_message(args.message_size)
        for _ in range(SAMPLE):
            B.full_session(twin.port, None, msg, nodelay=args.nodelay)
        twin.check_alive("during the log sample")
    finally:
        twin.stop()
    lines = [l for l in twin.log().splitlines() if " session=" in l and " dir=out " in l]
    want = expected_fields(args, variant)
    bad = [l for l in lines if any(log_fields(l).get(k) != v for k, v in want.items())]
    if len(lines) != SAMPLE or bad:
        raise B.BenchError("%s: expected %d session lines with %s; got %d, %d not matching:\n%s"
                           % (variant, SAMPLE, " ".join("%s=%s" % kv for kv in want.items()),
                              len(lines), len(bad), "\n".join((bad or lines)[:4])))
    print("# %s: %d sampled session lines (log_level info twin) all say %s; e.g.\n#   %s"
          % (variant, SAMPLE, " ".join("%s=%s" % kv for kv in want.items()),
             re.sub(r"^\S+ ", "", lines[0])[:300]))


def tls_counts(proxy):
    """(TLS 1.3 handshakes, STARTTLS ok, all handshakes) from /metrics."""
    m = proxy.metrics()
    hs = sum(v for k, v in m.items() if k.startswith("tls_handshakes_total{"))
    hs13 = sum(v for k, v in m.items()
               if k.startswith("tls_handshakes_total{") and 'version="TLSv1.3"' in k)
    st = sum(v for k, v in m.items() if k.startswith("starttls_total{") and 'result="ok"' in k)
    return hs13, st, hs


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
    proxy = dest = None
    outbound = is_outbound(variant)
    try:
        if not outbound:
            proxy = B.Proxy(binary, work, sink.port, cert, key, workers=workers,
                            max_sessions=args.concurrency)
        else:
            dest_port = sink.port
            if variant == "out-starttls":
                # The destination: an inbound STARTTLS proxy in front of smtp-sink.
                dest = B.Proxy(binary, work, sink.port, cert, key, workers=workers,
                               max_sessions=args.concurrency)
                dest_port = dest.port
            ca_file = out_ca_file(cert)
            check_sample(args, binary, work, dest_port, cert, key, workers, variant, ca_file)
            proxy = B.Proxy(binary, work, dest_port, cert, key, workers=workers,
                            max_sessions=args.concurrency, outbound=out_policy(args, variant),
                            ca_file=ca_file, metrics=True)
        msg = B.make_message(args.message_size)
        for _ in range(WARMUP):
            B.full_session(proxy.port, ctx_for(variant), msg, nodelay=args.nodelay)
        proxy.check_alive("during the warm-up")
        if dest is not None:
            dest.check_alive("(destination proxy) during the warm-up")

        mp = multiprocessing.get_context("fork")
        q = mp.Queue()
        shares = [args.sessions // args.concurrency + (1 if i < args.sessions % args.concurrency
                                                       else 0)
                  for i in range(args.concurrency)]
        deadline = time.monotonic() + args.timeout
        t_children0 = os.times()
        (u0, s0), sink0 = proxy.cpu_split(), sink.cpu()
        dest0 = dest.cpu() if dest is not None else 0.0
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
        dest1 = dest.cpu() if dest is not None else 0.0
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        t_children1 = os.times()
        proxy.check_alive("during the run")
        if dest is not None:
            dest.check_alive("(destination proxy) during the run")
        if len(results) < len(procs):
            raise B.BenchError("%d client process(es) did not report within the time limit"
                               % (len(procs) - len(results)))
        ok = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        msgs = [m for r in results for m in r[2]]
        if outbound:
            # Every session of the measured proxy, warm-up included, was
            # TLS 1.3 to the destination (out-starttls) or plaintext: a
            # session that fell back (policy opportunistic) counts as an error.
            hs13, st_ok, hs = tls_counts(proxy)
            total = WARMUP + ok
            want = (total, total, total) if variant == "out-starttls" else (0, 0, 0)
            print("# %s workers=%d: measured proxy counters: %d TLS 1.3 handshakes, %d STARTTLS "
                  "ok, %d handshakes in all, for %d sessions" % (variant, workers, hs13, st_ok,
                                                                 hs, total))
            if (hs13, st_ok, hs) != want:
                msgs.insert(0, "expected %d TLS 1.3 handshakes/STARTTLS/handshakes, got %d/%d/%d"
                            % (want[0], hs13, st_ok, hs))
                errors += max(1, abs(total - hs13) if variant == "out-starttls" else hs)
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
            "dest_cpu": (dest1 - dest0) if dest is not None else None,
        }
    finally:
        for px, label in ((proxy, ""), (dest, " destination")):
            if px is not None:
                rc = px.stop()
                if rc not in (0, None):
                    print("# WARNING:%s proxy exited with %d on SIGTERM" % (label, rc))
                px.report_log("%s workers=%d%s" % (variant, workers, label))
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
    p.add_argument("--out-policy", choices=OUT_POLICIES, default="opportunistic",
                   help="policy of the measured outbound listener in out-starttls "
                   "(default opportunistic; out-plaintext uses none)")
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
        if "out-starttls" in variants:
            print("# out-starttls: measured outbound listener policy %s, tls.ca_file %s"
                  % (args.out_policy, out_ca_file(cert) or "default (%s)" % DEFAULT_CA_FILE))
        results = []
        for w in workers:
            for v in variants:
                results.append(run(args, binary, work.path, cert, key, w, v))
        out = any(is_outbound(r["variant"]) for r in results)
        print("%-13s %7s %8s %6s %8s %10s %11s %10s %11s %12s %10s%s" % (
            "variant", "workers", "sessions", "errors", "wall_s", "sessions/s", "proxy_cpu_s",
            "user/sys_s", "ms/session", "client_cpu_s", "sink_cpu_s",
            " %10s %11s" % ("dest_cpu_s", "dest_ms/ses") if out else ""))
        for r in results:
            n = max(1, r["ok"])
            dest = ""
            if out:
                dest = (" %10.2f %11.3f" % (r["dest_cpu"], 1000 * r["dest_cpu"] / n)
                        if r["dest_cpu"] is not None else " %10s %11s" % ("-", "-"))
            print("%-13s %7d %8d %6d %8.2f %10.1f %11.2f %10s %11.3f %12.2f %10.2f%s" % (
                r["variant"], r["workers"], r["ok"], r["errors"], r["wall"], r["ok"] / r["wall"],
                r["proxy_cpu"], "%.2f/%.2f" % (r["proxy_user"], r["proxy_sys"]),
                1000 * r["proxy_cpu"] / n, r["client_cpu"], r["sink_cpu"], dest))
        for r in results:
            n = max(1, r["ok"])
            extra = ""
            if r["dest_cpu"] is not None:
                extra = " (destination proxy, not included: %.3f ms)" % (1000 * r["dest_cpu"] / n)
            print("%s workers=%d: proxy CPU per %ssession: %.3f ms%s; %.1f sessions/s; "
                  "client wall time %.2f s for %d sessions" % (
                      r["variant"], r["workers"], "outbound " if is_outbound(r["variant"]) else "",
                      1000 * r["proxy_cpu"] / n, extra, r["ok"] / r["wall"], r["wall"], r["ok"]))
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
