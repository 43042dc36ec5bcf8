# Sourced by the cluster benchmarks: a 3-node cluster of release nodes on loopback
# (deploy/local/up.sh in a scratch directory, stopped on exit), 20,000 residents and 200
# kiosks driving sessions as fast as they can (no per-kiosk admission limits), links in
# clear (kofu-load bench measures what TLS costs). The caller sets BENCH_BASE_PORT (kiosk
# API on BASE+1.., admin on BASE+1001..) and BENCH_REDIS_PORT first.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
kofu="$target/release/kofu"
export KOFU_LOCAL_DIR="$(mktemp -d)"
export KOFU_LOCAL_REDIS_PORT="$BENCH_REDIS_PORT" KOFU_LOCAL_BASE_PORT="$BENCH_BASE_PORT"
export KOFU_FIXTURE_SEED=1 KOFU_FIXTURE_RESIDENTS=20000 KOFU_FIXTURE_KIOSKS=200
export KOFU_KIOSK_RATE=0 KOFU_KIOSK_MAX_SESSIONS=0 KOFU_LOCAL_TLS=0
trap '"$root/deploy/local/down.sh" >/dev/null 2>&1 || true; rm -rf "$KOFU_LOCAL_DIR"' EXIT
"$root/deploy/local/up.sh" 3 >/dev/null
targets="" admins=""
for i in 1 2 3; do
  targets+="${targets:+,}127.0.0.1:$((BENCH_BASE_PORT + i))"
  admins+="${admins:+,}127.0.0.1:$((BENCH_BASE_PORT + 1000 + i))"
done
redis_cli() { redis-cli -p "$BENCH_REDIS_PORT" "$@"; }
demo() {
  "$kofu" demo --seed 1 --residents 20000 --kiosks 200 --kind residence \
    --target "$targets" --admin "$admins" --out /dev/null "$@"
}
