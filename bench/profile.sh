#!/usr/bin/env bash
# Where a mode's node CPU goes, for issue 13's budget table and flame graphs:
#   bench/profile.sh MODE [SECONDS]     MODE: embedded | redis1 | redis3
# Drives MODE with `kofu-load bench` (128 kiosks, closed loop, every document verified)
# and, once every node answers requests, records its nodes for SECONDS (default 12):
# `perf record --call-graph dwarf` for the stacks and `perf stat` for syscalls and
# context switches, divided by the requests the nodes answered in that window (their
# `kofu_http_requests_total`, forwarded calls not counted twice). Writes OUT/MODE.folded
# (inferno-collapse-perf), OUT/MODE.svg and OUT/MODE.txt (default OUT: ./profile-out).
# Needs perf and inferno (`cargo install inferno`); release binaries from BIN (default:
# target/release). The bench's own table, with CPU per session of nodes, Redis and
# generator and Redis commands per session, ends OUT/MODE.txt.
set -euo pipefail
MODE=$1; SECS=${2:-12}
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
OUT=${OUT:-$PWD/profile-out}
mkdir -p "$OUT"
case $MODE in embedded|redis1|redis3) ;; *) echo "mode: embedded, redis1 or redis3" >&2; exit 2 ;; esac
for tool in perf inferno-collapse-perf inferno-flamegraph; do
  command -v $tool > /dev/null || { echo "$tool not found" >&2; exit 2; }
done
D=$(mktemp -d /tmp/kofu-profile.XXXX)
bench_pid=
cleanup() { [ -n "$bench_pid" ] && kill "$bench_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
# The bench drives the target long enough for settling (a cluster's handoffs), the
# recording and a margin.
"$BIN/kofu-load" bench --kofu "$BIN/kofu" --idle-sessions 0 --seconds $((SECS + 25)) \
  --only "$MODE" > "$D/bench.txt" 2>&1 &
bench_pid=$!
want=1; [ "$MODE" = redis3 ] && want=3
requests() { # total kiosk requests answered by the nodes so far
  local sum=0 port n
  for port in "${admins[@]}"; do
    n=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^kofu_http_requests_total/ {s += $NF} END {print s + 0}')
    sum=$((sum + ${n%.*}))
  done
  echo "$sum"
}
pids=(); admins=()
for _ in $(seq 1 600); do
  mapfile -t pids < <(pgrep -f "^$BIN/kofu serve" || true)
  [ "${#pids[@]}" -ge "$want" ] && break
  sleep 0.1
done
[ "${#pids[@]}" -ge "$want" ] || { echo "the bench started no nodes" >&2; exit 1; }
for p in "${pids[@]}"; do
  admins+=("$(tr '\0' ' ' < "/proc/$p/cmdline" | grep -oE -- '--admin-listen 127.0.0.1:[0-9]+' | grep -oE '[0-9]+$')")
done
# Load on: requests rising on the nodes for two seconds in a row (the bench itself waits
# for a cluster's shards to settle before it drives it).
prev=$(requests); rising=0
for _ in $(seq 1 600); do
  sleep 1; now=$(requests)
  if [ "$now" -gt "$prev" ]; then rising=$((rising + 1)); else rising=0; fi
  prev=$now; [ "$rising" -ge 2 ] && break
done
[ "$rising" -ge 2 ] || { echo "the nodes never took load" >&2; exit 1; }
plist=$(IFS=,; echo "${pids[*]}")
before=$(requests)
perf record -q -F 249 --call-graph dwarf,16384 -p "$plist" -o "$D/perf.data" -- sleep "$SECS" \
  2> /dev/null &
record_pid=$!
perf stat -e raw_syscalls:sys_enter,context-switches -p "$plist" -o "$D/stat.txt" -- sleep "$SECS"
# Read when the count ends; the recording takes a while longer to write its samples.
after=$(requests)
wait "$record_pid"
wait "$bench_pid" || true; bench_pid=
perf script -i "$D/perf.data" 2> /dev/null | inferno-collapse-perf > "$OUT/$MODE.folded"
inferno-flamegraph --title "kofu $MODE: node CPU under kofu-load bench" --minwidth 1.5 \
  < "$OUT/$MODE.folded" > "$OUT/$MODE.svg"
reqs=$((after - before))
sys=$(awk '/raw_syscalls:sys_enter/ {gsub(",", "", $1); print $1}' "$D/stat.txt")
cs=$(awk '/context-switches/ {gsub(",", "", $1); print $1}' "$D/stat.txt")
{
  echo "$MODE: ${#pids[@]} node(s), $SECS s recorded, $reqs kiosk requests answered ($((reqs / SECS))/s)"
  python3 -c "r = $reqs or 1; print(f'per request: {$sys / r:.1f} syscalls, {$cs / r:.2f} context switches')"
  cat "$D/bench.txt"
} | tee "$OUT/$MODE.txt"
