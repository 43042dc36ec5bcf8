#!/usr/bin/env bash
# Instructions per session of an embedded node, counted by valgrind (callgrind's Ir,
# user space only): the A/B measure that the noise of a shared machine cannot move,
# where CPU-time benches need many alternating rounds to see a 5 % change.
#   bench/instructions.sh [RATE]        RATE: sessions/s of the replay (default 15)
# Starts a node under callgrind on loopback (fixtures: 2,000 residents, 200 kiosks),
# replays a synthesized trace of ~2,000 residence sessions with `kofu-load replay` at
# RATE, counting from the first session to the last, and prints Ir per session.
# Two runs of one build agree within 0.1 %. Valgrind hides the SHA extensions from
# the program, so SHA-256 runs in software there (about 0.8 M of ~2.1 M Ir per
# session in the PDF digests): compare builds by the difference, not by shares.
# Needs valgrind; release binaries from BIN (default: target/release). With KEEP=FILE
# the callgrind profile is kept for `callgrind_annotate`.
set -euo pipefail
RATE=${1:-15}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
K=$BIN/kofu; L=$BIN/kofu-load
command -v valgrind > /dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 2; }
D=$(mktemp -d /tmp/kofu-instructions.XXXX)
node=
cleanup() { [ -n "$node" ] && kill "$node" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
cd "$D"
source "$HERE/trace.sh"
make_trace 2000 200000
SPEED=$(speed_for "$RATE")
api=$(port); adm=$(port)
valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" "$K" serve \
  --listen "127.0.0.1:$api" --admin-listen "127.0.0.1:$adm" --fixture-seed 1 \
  --fixture-residents 2000 --fixture-kiosks 200 --log-level warn --kiosk-rate 0 \
  --kiosk-max-sessions 0 > node.log 2>&1 &
node=$!
for _ in $(seq 1 1200); do curl -sf "http://127.0.0.1:$adm/readyz" > /dev/null && break; sleep 0.5; done
curl -sf "http://127.0.0.1:$adm/readyz" > /dev/null || { echo "the node never became ready" >&2; exit 1; }
# Start-up (fixtures, keys) is not counted: zero the counters, replay, dump.
callgrind_control -z "$node" > /dev/null
"$L" replay --fixtures fx.jsonl --target "http://127.0.0.1:$api" --speed "$SPEED" --quiet \
  trace.msgpack > replay.txt 2>&1 || true
callgrind_control -d "$node" > /dev/null
grep -E "completed|misdelivered|errors" replay.txt
dump=$(ls "$D"/cg.out.* 2> /dev/null | tail -1)
[ -n "$dump" ] || { echo "callgrind wrote no dump" >&2; exit 1; }
ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
done_n=$(grep -oE "[0-9]+ completed" replay.txt | grep -oE "[0-9]+")
[ -n "${KEEP:-}" ] && cp "$dump" "$KEEP"
python3 -c "print(f'{$done_n} sessions, {$ir:,} instructions: {$ir / max($done_n, 1):,.0f} per session')"
