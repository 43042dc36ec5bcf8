#!/usr/bin/env bash
# Redis memory per session served, with the audit retention on: a 3-node cluster (release,
# loopback, deploy/local/up.sh in a scratch directory) serves N complete sessions (one
# print each); Redis's `used_memory` is read before, right after, and after the retention
# has passed and a short probe round has touched the shards again (streams are trimmed at
# their shard's next print, and only what an export handed over). A session that ended leaves only its print's audit entry
# (about 235 bytes) for the retention period and nothing after it; an open session about
# 1 KB (README "Capacity"). Streams are trimmed approximately (`MINID ~`: whole stream
# nodes of 100 entries), so with the default 1024 shards a short run leaves every
# stream below one node and nothing visibly trimmed: the bench uses 64 shards
# (KOFU_SHARD_COUNT). Not a test: it prints figures (a few minutes).
#
#   bench/redis-memory.sh [sessions] [retention seconds, >= 60]
set -euo pipefail

sessions="${1:-100000}"
retention="${2:-60}"
export KOFU_AUDIT_RETENTION="${retention}s" KOFU_SHARD_COUNT="${KOFU_SHARD_COUNT:-64}"
BENCH_BASE_PORT=28080 BENCH_REDIS_PORT=6392
source "$(dirname "$0")/local-cluster.sh"
serve() { demo --concurrency 64 --route spread --sessions "$1" | grep -E "throughput" | tr -s ' '; }
used() { redis_cli info memory | awk -F: '/^used_memory:/ {print $2+0}'; }
streams() {  # audit entries in all streams
  redis_cli --scan --pattern 'kofu:*:audit' \
    | while read -r k; do redis_cli xlen "$k"; done | awk '{s += $1} END {print s+0}'
}
keys() { redis_cli dbsize; }

sleep 3
m0=$(used); k0=$(keys)
echo "== before: used_memory $m0 B, $k0 keys (registry, leases, membership)"
echo "== serving $sessions sessions (one print each, every document verified)"
serve "$sessions"
sleep 3
m1=$(used); k1=$(keys); a1=$(streams)
echo "== right after: used_memory $m1 B, $k1 keys, $a1 audit entries"
echo "   $(( (m1 - m0) / sessions )) B per session served; $(( (m1 - m0) / (a1 > 0 ? a1 : 1) )) B per audit entry held"
echo "   (entries older than the retention are trimmed as the run goes, a stream node at a time)"
echo "== exporting the audit (an export written to --out marks what it handed over; only"
echo "   exported prints are trimmed by the retention, README \"Audit export\")"
"$kofu" audit export --redis "redis://127.0.0.1:$BENCH_REDIS_PORT/" \
  --since 2000-01-01T00:00:00Z --out "$KOFU_LOCAL_DIR/audit.jsonl"
wait_s=$(( retention + 5 ))
echo "== waiting ${wait_s} s for the retention to pass, then 2000 probe sessions"
sleep "$wait_s"
serve 2000
sleep 3
m2=$(used); k2=$(keys); a2=$(streams)
echo "== after the retention: used_memory $m2 B, $k2 keys, $a2 audit entries"
echo "   $(( (m2 - m0) / (sessions + 2000) )) B per session served once its print is past the retention"
