#!/usr/bin/env python3
# Memory of a long-running embedded node: starts a release `kofu serve`, drives complete
# kiosk sessions at it in rounds with `kofu demo --target` (create, auth, one job, fetch,
# printed, close, every document verified), and reads the node's RSS after each round.
# A node must run for months: its memory follows the sessions open, not those served,
# so the RSS after 1 M sessions stays within 10 % of the RSS after 100 k. A benchmark,
# not a test (about 20 minutes):
#   cargo build --release -p kofu-node && python3 bench/soak.py [ROUNDS] [PER_ROUND]
#
# After each round the node idles past the tombstone TTL (60 s), then a short probe
# round touches every shard (expired tombstones go at a shard's next use), and only
# then is RSS read: what is measured is what stays, not what is still in flight.
import os, subprocess, sys, time
from benchlib import rss_kib, wait_ready

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
PER_ROUND = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
BIN = os.environ.get("KOFU_BIN", "target/release/kofu")
IDLE_S = float(os.environ.get("KOFU_SOAK_IDLE_S", "65"))
PROBE = 2_000
API, ADMIN = 18180, 19190
POP = ["--fixture-seed", "1", "--fixture-residents", "2000", "--fixture-kiosks", "50"]

node = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{API}",
                         "--admin-listen", f"127.0.0.1:{ADMIN}", *POP,
                         # a few kiosks, every session as fast as they can: no per-kiosk limits
                         "--kiosk-rate", "0", "--kiosk-max-sessions", "0"],
                        stderr=subprocess.DEVNULL)


def drive(n):
    out = subprocess.run([BIN, "demo", "--target", f"127.0.0.1:{API}", "--sessions", str(n),
                          "--seed", "1", "--residents", "2000", "--kiosks", "50",
                          "--out", "/dev/null"],
                         capture_output=True, text=True)
    if out.returncode != 0 or "(0 failed)" not in out.stdout:
        sys.exit(f"demo round failed:\n{out.stdout}\n{out.stderr}")
    rate = next((l.split()[1] for l in out.stdout.splitlines() if "throughput" in l), "?")
    return rate


try:
    wait_ready(ADMIN)
    start = rss_kib(node.pid)
    print(f"start: RSS {start / 1024:.1f} MiB", flush=True)
    served, after = 0, []
    for r in range(ROUNDS):
        rate = drive(PER_ROUND)
        busy = rss_kib(node.pid)
        time.sleep(IDLE_S)
        drive(PROBE)
        served += PER_ROUND + PROBE
        after.append(rss_kib(node.pid))
        print(f"round {r + 1}: {served} sessions served ({rate} sessions/s); "
              f"RSS {busy / 1024:.1f} MiB right after, {after[-1] / 1024:.1f} MiB settled",
              flush=True)
    first, last = after[0], after[-1]
    print(f"settled RSS after {PER_ROUND + PROBE} sessions: {first / 1024:.1f} MiB; "
          f"after {served}: {last / 1024:.1f} MiB ({(last - first) * 100 / first:+.1f} %); "
          f"{(last - first) * 1024 / max(served - PER_ROUND - PROBE, 1):.1f} bytes per session "
          f"served after the first round")
finally:
    node.terminate()
    node.wait(timeout=60)
