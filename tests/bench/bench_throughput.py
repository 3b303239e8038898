"""bench_throughput: one large message through one session.

A fresh smtp-sink and proxy (workers = 1, log_level = "warn", ECDSA P-256
certificate made at run time) per variant. One session sends a message of
--size MB (default 50) in DATA; the time from the first body byte to the
250 reply after the final "." gives MB/s, and the proxy's utime + stime over
the same interval gives its CPU cost per MB. The proxy's peak RSS (VmHWM)
shows that backpressure bounds its buffering. "direct" runs the same
client straight against smtp-sink: the ceiling that client and sink allow
on this machine.

Prints figures only; fails only if the proxy misbehaves.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

VARIANTS = ("direct", "plaintext", "starttls")


def send_big(port, ctx, size, chunk, nodelay):
    """One session; returns (seconds for DATA body + final reply, tls version)."""
    s = B.Smtp(port, timeout=120, nodelay=nodelay)
    try:
        s.greeting()
        version = s.starttls(ctx) if ctx is not None else None
        s.ehlo()
        s.cmd("MAIL FROM:<bench@client.test>", 250)
        s.cmd("RCPT TO:<sink@mx.test>", 250)
        s.cmd("DATA", 354)
        head = b"Subject: throughput\r\n\r\n"
        s.sock.sendall(head)
        sent = len(head)
        t0 = time.monotonic()
        while sent < size:
            s.sock.sendall(chunk)
            sent += len(chunk)
        s.sock.sendall(b".\r\n")
        s.expect(250, "end of DATA")
        dt = time.monotonic() - t0
        s.quit()
        return dt, version
    finally:
        s.close()


def main():
    p = B.common_args(__doc__.split("\n")[0])
    p.add_argument("--size", type=float, default=50, help="message size in MB (default 50)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated subset of %s" % ",".join(VARIANTS))
    p.add_argument("--tls-version", default="1.3", choices=("1.2", "1.3"))
    p.add_argument("--repeat", type=int, default=5, help="sessions per variant (default 5)")
    args = p.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            p.error("unknown variant %r" % v)
    # Whole 80-byte lines in 80 KB chunks, so "." always starts a line; the
    # size is rounded up to whole chunks.
    chunk = (b"x" * 78 + b"\r\n") * 1000
    size = -(-int(args.size * 1e6) // len(chunk)) * len(chunk)

    binary = B.proxy_binary(args.proxy)
    work = B.Workdir(args.keep)
    try:
        cert, key = B.make_cert(work.path)
        B.header("bench_throughput: one session, %.0f MB message, %d run(s) per variant, "
                 "workers=1" % (size / 1e6, args.repeat), binary)
        print("%-10s %4s %8s %8s %12s %14s %10s %10s" % (
            "variant", "run", "secs", "MB/s", "proxy_cpu_s", "proxy_ms/MB", "rest_KB",
            "peak_KB"))
        summary = []
        for v in variants:
            sink = B.SmtpSink(work.path, max_sessions=4)
            proxy = None
            try:
                port = sink.port
                if v != "direct":
                    proxy = B.Proxy(binary, work.path, sink.port, cert, key, workers=1)
                    port = proxy.port
                ctx = B.client_context(args.tls_version) if v == "starttls" else None
                # Warm-up: a small message through the same path.
                B.full_session(port, ctx, B.make_message(10 * 1024))
                rest = proxy.status()["VmRSS"] if proxy else 0
                tot_t = tot_c = 0.0
                for i in range(args.repeat):
                    c0 = proxy.cpu() if proxy else 0.0
                    dt, _ = send_big(port, ctx, size, chunk, nodelay=False)
                    c1 = proxy.cpu() if proxy else 0.0
                    tot_t += dt
                    tot_c += c1 - c0
                    if proxy:
                        proxy.check_alive("during the transfer")
                        peak = proxy.status()["VmHWM"]
                        print("%-10s %4d %8.2f %8.1f %12.2f %14.2f %10d %10d" % (
                            v, i + 1, dt, size / 1e6 / dt, c1 - c0, 1000 * (c1 - c0) / (size / 1e6),
                            rest, peak))
                    else:
                        print("%-10s %4d %8.2f %8.1f %12s %14s %10s %10s" % (
                            v, i + 1, dt, size / 1e6 / dt, "-", "-", "-", "-"))
                mb = args.repeat * size / 1e6
                summary.append("%s: %.1f MB/s%s over %d x %.0f MB" % (
                    v, mb / tot_t,
                    ", proxy CPU %.2f ms/MB (%.0f%% of one core)" % (1000 * tot_c / mb,
                                                                    100 * tot_c / tot_t)
                    if proxy else " (client straight to smtp-sink)", args.repeat, size / 1e6))
            finally:
                if proxy is not None:
                    rc = proxy.stop()
                    if rc not in (0, None):
                        print("# WARNING: proxy exited with %d on SIGTERM" % rc)
                    proxy.report_log(v)
                sink.stop()
        for line in summary:
            print(line)
    finally:
        work.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except B.BenchError as e:
        print("bench_throughput: FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
