"""bench_resumption: the proxy's CPU per resumed TLS session vs a full handshake.

A fresh smtp-sink and proxy (workers = 1, log_level = "warn", an ECDSA
P-256 certificate made at run time; with --ticket-keys a tls.ticket_keys
file of one random 80-byte key, else BoringSSL's own in-memory keys) per
TLS version. Each session is

    connect, greeting, EHLO, STARTTLS, TLS handshake, EHLO, [MAIL, RCPT,
    DATA with a --size KB message (0: none),] QUIT

run N times one after the other by one client, twice: "full" with a new
client session every time (a full handshake: ECDHE + the server's ECDSA
signature), then "resumed", where each session offers the ticket the
previous one received (TLS 1.3: PSK with (EC)DHE, RFC 8446 §2.2; TLS 1.2:
an abbreviated handshake, RFC 5077). Every resumed session must report
session_reused, or the benchmark fails. The proxy's utime + stime from
/proc/PID/stat before and after each run give

    proxy CPU per session (us), and resumed / full

The client shares the machine with the proxy, so sessions/s is a figure
for this machine and client; the CPU per session is the one to compare.

Prints figures only; fails only if the proxy misbehaves (or a ticket is
not accepted).
"""

import os
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

WARMUP = 20


def one_session(port, ctx, session, message):
    """One session offering session (None: full handshake); returns the
    client's new ssl.SSLSession and whether this one was resumed."""
    s = B.Smtp(port, nodelay=True)
    try:
        s.greeting()
        lines = s.ehlo()
        if not any(l[4:].upper().startswith("STARTTLS") for l in lines):
            raise B.BenchError("EHLO reply does not offer STARTTLS: %r" % (lines,))
        s.cmd("STARTTLS", 220)
        if s.buf:
            raise B.BenchError("bytes after the STARTTLS reply: %r" % s.buf)
        s.sock = ctx.wrap_socket(s.sock, server_hostname="mx.test", session=session)
        # The EHLO reply is read after the TLS 1.3 NewSessionTickets, so
        # the session below carries a ticket.
        s.ehlo()
        if message:
            s.send_mail(message)
        reused = s.sock.session_reused
        new = s.sock.session
        s.quit()
        return new, reused
    finally:
        s.close()


def run(port, ctx, n, message, resume, deadline):
    """n sessions; returns (seconds, resumed count)."""
    session, resumed = None, 0
    t0 = time.monotonic()
    for i in range(n):
        if time.monotonic() > deadline:
            raise B.BenchError("deadline reached after %d sessions" % i)
        new, reused = one_session(port, ctx, session if resume else None, message)
        resumed += 1 if reused else 0
        if resume:
            if session is not None and not reused:
                raise B.BenchError("session %d offered a ticket and was not resumed" % (i + 1))
            session = new
    return time.monotonic() - t0, resumed


def main():
    p = B.common_args(__doc__.split("\n")[0])
    p.add_argument("-n", "--sessions", type=int, default=1000,
                   help="sessions per run (default 1000)")
    p.add_argument("--size", type=float, default=0,
                   help="message KB per session (default 0: no message, the handshake alone)")
    p.add_argument("--tls-versions", default="1.3,1.2", help="comma-separated (default 1.3,1.2)")
    p.add_argument("--ticket-keys", action="store_true",
                   help="configure tls.ticket_keys (a generated key file)")
    p.add_argument("--timeout", type=float, default=600, help="seconds for everything")
    args = p.parse_args()
    versions = [v for v in args.tls_versions.split(",") if v]
    for v in versions:
        if v not in ("1.2", "1.3"):
            p.error("unknown TLS version %r" % v)

    binary = B.proxy_binary(args.proxy)
    work = B.Workdir(args.keep)
    deadline = time.monotonic() + args.timeout
    message = B.make_message(int(args.size * 1024)) if args.size > 0 else None
    try:
        cert, key = B.make_cert(work.path)
        keys = None
        if args.ticket_keys:
            keys = os.path.join(work.path, "tickets.key")
            with open(keys, "wb") as f:
                f.write(os.urandom(80))
        B.header("bench_resumption: %d sessions per run, message %s, workers=1, ticket keys: %s"
                 % (args.sessions, "%.0f KB" % args.size if message else "none",
                    "tls.ticket_keys" if keys else "BoringSSL's own"), binary)
        print("%-8s %-8s %8s %10s %12s %14s" % ("tls", "run", "resumed", "sessions/s",
                                               "proxy_cpu_s", "proxy_us/ses"))
        summary = []
        for v in versions:
            sink = B.SmtpSink(work.path, max_sessions=16)
            proxy = None
            try:
                proxy = B.Proxy(binary, work.path, sink.port, cert, key, workers=1,
                                tls_extra={"ticket_keys": keys} if keys else None)
                ctx = B.client_context(v)
                run(proxy.port, ctx, WARMUP, message, True, deadline)
                per = {}
                for kind in ("full", "resumed"):
                    c0 = proxy.cpu()
                    secs, resumed = run(proxy.port, ctx, args.sessions, message,
                                        kind == "resumed", deadline)
                    cpu = proxy.cpu() - c0
                    proxy.check_alive("during the %s run" % kind)
                    per[kind] = 1e6 * cpu / args.sessions
                    print("%-8s %-8s %8d %10.1f %12.2f %14.0f" % (
                        "TLSv" + v, kind, resumed, args.sessions / secs, cpu, per[kind]))
                    sys.stdout.flush()
                summary.append((v, per["full"], per["resumed"]))
            except B.BenchError:
                if proxy is not None:
                    proxy.report_log("proxy (TLS %s)" % v)
                raise
            finally:
                if proxy is not None:
                    proxy.stop()
                sink.stop()
        for v, full, res in summary:
            print("TLS %s: proxy CPU per resumed session %.0f us vs full handshake %.0f us "
                  "(resumed/full = %.2f)" % (v, res, full, res / full))
        return 0
    except B.BenchError as e:
        print("bench_resumption: FAILED: %s" % e, file=sys.stderr)
        return 1
    finally:
        work.close()


if __name__ == "__main__":
    sys.exit(main())
