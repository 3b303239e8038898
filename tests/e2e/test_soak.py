"""No-loss soak (issue "Adversarial robustness", point 17): both directions
through one daemon at once, with faults on every side, and an exact account
of every message.

An inbound listener (clients STARTTLS -> proxy -> plaintext scripted
backend) and an outbound listener (plaintext clients -> proxy -> a scripted
destination that speaks STARTTLS, policy required) are driven by N client
threads. Each message has a unique Message-ID, a random size (1 B .. 200 kB,
log-uniform) and lines starting with '.', and is sent up to twice (a second
attempt after a 4xx, no reply or our own reset, as an MTA would retry).
Faults, drawn per attempt from a seeded RNG (SOAK_SEED, printed):

  client: reset (RST) mid-DATA, stall mid-DATA (below and beyond the idle
          timeout)
  server: close mid-DATA, die right after the end of data (before or after
          its 250), 451 or 554 to the content, read slowly.

Asserted:
  - every attempt the client got 2xx for was acknowledged by the server
    exactly once and byte-exact (sha256 of the content): lost = 0;
  - nothing acknowledged twice (duplicates = 0), nothing completed from the
    part of a message before a client's reset (phantom = 0);
  - a message the server acknowledged whose 250 the client never saw is
    "ambiguous" (SMTP's duplicate window): counted and printed, allowed;
  - afterwards the daemon's descriptors and RSS return to their resting
    level, connections_active is 0, and there is one session-end line per
    client connection.

SOAK_MESSAGES (default 6000), SOAK_THREADS (8) and SOAK_SEED (random) may be
set in the environment (bazel test --test_env=SOAK_SEED=...).
tests/bench/soak_long.py runs the same for a given time.
"""

import os
import random
import time
import unittest

import adversary
import harness


def soak_settings():
    seed = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(1, 1 << 31))
    return (seed, int(os.environ.get("SOAK_MESSAGES", "6000")),
            int(os.environ.get("SOAK_THREADS", "8")))


def check_rest(soak, fd0, rss0, timeout=15.0, fd_margin=2, rss_margin_kb=16 * 1024):
    """Waits for the daemon to return to rest; returns (fds, rss_kb, ok, active)."""
    pid = soak.pid

    def rested():
        return (adversary.fd_count(pid) <= fd0 + fd_margin and
                adversary.rss_kb(pid) <= rss0 + rss_margin_kb and
                soak.metric("smtp_tls_proxy_connections_active") == 0)
    ok = adversary.settle(rested, timeout, 0.2)
    return (adversary.fd_count(pid), adversary.rss_kb(pid), bool(ok),
            soak.metric("smtp_tls_proxy_connections_active"))


class SoakTest(unittest.TestCase):

    def test_no_loss_under_faults_both_directions(self):
        seed, messages, threads = soak_settings()
        print("\nsoak: seed=%d messages=%d threads=%d (SOAK_SEED=%d reproduces the plan)"
              % (seed, messages, threads, seed), flush=True)
        soak = adversary.Soak(seed, threads=threads, workdir_name=self.id())
        self.addCleanup(soak.stop)
        soak.start()
        pid = soak.pid
        # Rest: after a warm-up session in each direction.
        self.assertIsNone(adversary.healthy_session(soak.in_port, soak.backend))
        time.sleep(0.5)
        fd0, rss0 = adversary.fd_count(pid), adversary.rss_kb(pid)
        with adversary.RssSampler(pid, 0.1) as sampler:
            soak.run(messages=messages, seconds=170,
                     progress=lambda s: print("  ... %d messages taken, rss %d kB, fds %d"
                                              % (s.next_msg, adversary.rss_kb(pid),
                                                 adversary.fd_count(pid)), flush=True))
        f = soak.account()
        fds, rss, rested, active = check_rest(soak, fd0, rss0)
        ends = soak.proxy.session_ends()
        conns = sum(f["connections"].values()) + 1  # + the warm-up session
        print(soak.summary(f))
        print("soak: proxy fds %d -> %d, rss %d kB -> peak %d kB -> %d kB, "
              "session-end lines %d for %d connections (by end: %s)"
              % (fd0, fds, rss0, sampler.peak, rss, len(ends), conns,
                 _count_by(ends, "end")), flush=True)
        if f["ambiguous"]:
            print("soak: ambiguous (server acknowledged, client saw no 2xx): %s"
                  % sorted(f["ambiguous"])[:50])
        self.assertEqual(soak.errors, [])
        self.assertTrue(soak.proxy.alive(), soak.proxy.log()[-3000:])
        self.assertGreater(f["accepted"], messages // 2, "too few messages got through")
        self.assertEqual(f["lost"], [], "2xx to the client, never acknowledged by the server")
        self.assertEqual(f["duplicates"], [], "acknowledged twice")
        self.assertEqual(f["corrupt"], [], "content altered on the way")
        self.assertEqual(f["phantom"], [], "completed from a client's partial content")
        self.assertEqual(f["in_flight"], 0, "attempts without an outcome")
        self.assertTrue(rested, "no return to rest: fds %d (rest %d), rss %d kB (rest %d), "
                        "connections_active %r" % (fds, fd0, rss, rss0, active))
        self.assertTrue(harness.wait_until(
            lambda: len(soak.proxy.session_ends()) >= conns, 10, 0.2))
        ends = soak.proxy.session_ends()
        self.assertEqual(len(ends), conns, "one session-end line per connection")
        self.assertLess(sampler.peak - rss0, 128 * 1024, "RSS grew by more than 128 MB")


def _count_by(ends, key):
    out = {}
    for kv in ends:
        out[kv.get(key)] = out.get(kv.get(key), 0) + 1
    return dict(sorted(out.items(), key=lambda x: str(x[0])))


if __name__ == "__main__":
    unittest.main(verbosity=2)
