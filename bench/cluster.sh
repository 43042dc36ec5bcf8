#!/usr/bin/env bash
# Benchmark of a 3-node cluster on this machine (release build, loopback): throughput
# with requests spread over the nodes, then latency of local (owner) versus forwarded
# (other node) requests at moderate load, and the Redis round trips per session.
#
#   bench/cluster.sh [sessions] [concurrency]
#
# It starts its own cluster with deploy/local/up.sh in a scratch directory on ports
# 18xxx/6391 and stops it at the end. Not a test: it prints figures.
set -euo pipefail

sessions="${1:-30000}"
concurrency="${2:-96}"
BENCH_BASE_PORT=18080 BENCH_REDIS_PORT=6391
source "$(dirname "$0")/local-cluster.sh"
scripts() {  # fenced store changes so far, summed over the nodes
  for p in 19081 19082 19083; do
    curl -fsS "http://127.0.0.1:$p/metrics" | awk '/^kofu_store_op_duration_seconds_count/ {s += $2} END {print s+0}'
  done | awk '{s += $1} END {print s}'
}
redis_calls() {  # commands Redis has processed so far
  redis_cli info stats | awk -F: '/^total_commands_processed/ {print $2+0}'
}

echo "== background: Redis commands per second of an idle 3-node cluster (leases, heartbeats, lease scans)"
r0=$(redis_calls); sleep 5; r1=$(redis_calls)
idle_rate=$(( (r1 - r0) / 5 ))
echo "   $idle_rate commands/s"

echo "== throughput: $sessions sessions, $concurrency in flight, requests spread over 3 nodes"
s0=$(scripts); r0=$(redis_calls); t0=$(date +%s.%N)
demo --sessions "$sessions" --concurrency "$concurrency" --route spread
t1=$(date +%s.%N); s1=$(scripts); r1=$(redis_calls)
python3 - "$sessions" "$s0" "$s1" "$r0" "$r1" "$t0" "$t1" "$idle_rate" <<'PY'
import sys
n, s0, s1, r0, r1, t0, t1, idle = map(float, sys.argv[1:])
secs = t1 - t0
print(f"   fenced store scripts per session: {(s1 - s0) / n:.2f}")
print(f"   Redis commands per session: {(r1 - r0) / n:.2f} in all, "
      f"{(r1 - r0 - idle * secs) / n:.2f} without the background")
PY

for route in owner other; do
  echo "== latency at moderate load (16 in flight), every request to the $route node"
  demo --sessions 6000 --concurrency 16 --route "$route"
done
