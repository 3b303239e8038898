"""The no-loss soak of tests/e2e/test_soak.py for a given time: both
directions through one daemon (inbound STARTTLS -> plaintext backend,
outbound plaintext -> STARTTLS destination), N client threads, faults on
every side drawn from a seeded RNG (client resets and stalls mid-DATA,
server closes mid-DATA, dies after the end of data before or after its 250,
answers 451/554, reads slowly). Prints progress once a minute and the
figures at the end; exits 1 if a message was lost, duplicated, altered or
completed from a partial upload, or if the daemon does not return to its
resting descriptors/RSS afterwards.

    bazel run //tests/bench:soak_long -- --minutes 30 [--threads 8] [--seed N]
"""

import argparse
import os
import random
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import benchlib  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--idle", type=int, default=4, help="the listeners' idle timeout (s)")
    ap.add_argument("--proxy", help="the smtp-tls-proxy binary")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    os.environ["SMTP_TLS_PROXY_BIN"] = benchlib.proxy_binary(args.proxy)
    work = tempfile.mkdtemp(prefix="smtp-tls-proxy-soak-")
    os.environ["TEST_TMPDIR"] = work
    benchlib.raise_nofile(4096)

    import adversary  # after TEST_TMPDIR: the harness writes its PKI there
    seed = args.seed or random.SystemRandom().randrange(1, 1 << 31)
    print("soak_long: seed=%d minutes=%.1f threads=%d idle=%d binary=%s work=%s"
          % (seed, args.minutes, args.threads, args.idle, os.environ["SMTP_TLS_PROXY_BIN"],
             work), flush=True)
    soak = adversary.Soak(seed, threads=args.threads, idle=args.idle, workdir_name="soak_long")
    rc = 1
    try:
        soak.start()
        pid = soak.pid
        err = adversary.healthy_session(soak.in_port, soak.backend)
        if err:
            raise benchlib.BenchError("warm-up session failed: " + err)
        time.sleep(0.5)
        fd0, rss0 = adversary.fd_count(pid), adversary.rss_kb(pid)
        print("rest: fds %d, rss %d kB" % (fd0, rss0), flush=True)
        last = [time.monotonic()]
        t0 = time.monotonic()

        def progress(s):
            if time.monotonic() - last[0] < 60:
                return
            last[0] = time.monotonic()
            f = s.account()
            print("  %5.1f min: %d messages, %d accepted, lost %d, duplicates %d, "
                  "ambiguous %d; proxy fds %d, rss %d kB, alive %s"
                  % ((time.monotonic() - t0) / 60, f["messages"], f["accepted"], len(f["lost"]),
                     len(f["duplicates"]), len(f["ambiguous"]), adversary.fd_count(pid),
                     adversary.rss_kb(pid), s.proxy.alive()), flush=True)
        with adversary.RssSampler(pid, 0.5) as sampler:
            soak.run(seconds=args.minutes * 60, progress=progress)
        f = soak.account()

        def rested():
            return (adversary.fd_count(pid) <= fd0 + 2 and
                    adversary.rss_kb(pid) <= rss0 + 16 * 1024 and
                    soak.metric("smtp_tls_proxy_connections_active") == 0)
        ok_rest = bool(adversary.settle(rested, 20, 0.2))
        conns = sum(f["connections"].values()) + 1
        adversary.settle(lambda: len(soak.proxy.session_ends()) >= conns, 10, 0.5)
        ends = soak.proxy.session_ends()
        by_end = {}
        for kv in ends:
            by_end[kv.get("end")] = by_end.get(kv.get("end"), 0) + 1
        print(soak.summary(f))
        print("proxy: fds %d -> %d, rss %d kB -> peak %d kB -> %d kB, connections_active %r, "
              "alive %s" % (fd0, adversary.fd_count(pid), rss0, sampler.peak,
                            adversary.rss_kb(pid),
                            soak.metric("smtp_tls_proxy_connections_active"),
                            soak.proxy.alive()))
        print("session-end lines: %d for %d connections, by end: %s"
              % (len(ends), conns, dict(sorted(by_end.items(), key=lambda x: str(x[0])))))
        print("throughput: %.1f messages/s accepted" % (f["accepted"] / max(soak.elapsed, 1e-9)))
        if f["ambiguous"]:
            print("ambiguous: %s" % sorted(f["ambiguous"])[:100])
        bad = {k: f[k][:20] for k in ("lost", "duplicates", "corrupt", "phantom") if f[k]}
        if soak.errors:
            bad["harness errors"] = soak.errors[:5]
        if not ok_rest:
            bad["rest"] = "descriptors/RSS/connections did not return to rest"
        if len(ends) != conns:
            bad["session ends"] = "%d lines for %d connections" % (len(ends), conns)
        if not soak.proxy.alive():
            bad["proxy"] = "died"
        if bad:
            print("FAILED: %r" % bad)
        else:
            print("OK: lost=0 duplicates=0")
            rc = 0
    except benchlib.BenchError as e:
        print("FAILED: %s" % e)
    finally:
        soak.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("work directory kept: %s" % work)
    return rc


if __name__ == "__main__":
    sys.exit(main())
