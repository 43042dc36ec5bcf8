#!/usr/bin/env bash
# Open-model latency at a fixed session rate (issue 13's "p99 at half the maximum rate"):
#   bench/halfrate.sh MODE RATE     MODE: embedded | redis1 | redis3, RATE: sessions/s
# Starts its own nodes (and, for redis*, its own redis-server and cluster certificates) on
# loopback, replays a synthesized trace (a tenth of people's think times, no misbehaviour)
# at RATE with `kofu-load replay`, prints the report and removes everything it made.
# Release binaries from BIN (default: target/release). Take RATE as half of what
# `kofu-load bench` measured for the mode in the same session.
set -euo pipefail
MODE=$1; RATE=$2
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
K=$BIN/kofu; L=$BIN/kofu-load
D=$(mktemp -d /tmp/kofu-halfrate.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
cd "$D"
source "$HERE/trace.sh"
make_trace 20000 2000000
SPEED=$(speed_for "$RATE")
common=(--fixture-seed 1 --fixture-residents 20000 --fixture-kiosks 200 --drain-timeout-ms 1000
  --log-level warn --kiosk-rate 0 --kiosk-max-sessions 0)
targets=""
admins=""
start() { # name, extra args
  local api adm; api=$(port); adm=$(port)
  "$K" serve --listen "127.0.0.1:$api" --admin-listen "127.0.0.1:$adm" "${common[@]}" "${@:2}" > "$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$adm/readyz" > /dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$adm/readyz" > /dev/null || { echo "$1 never became ready" >&2; exit 1; }
  targets="$targets${targets:+,}http://127.0.0.1:$api"
  admins="$admins $adm"
}
case $MODE in
  embedded) start embedded ;;
  redis1|redis3)
    rp=$(port)
    redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no > redis.log 2>&1 &
    pids+=($!)
    url=redis://127.0.0.1:$rp
    for _ in $(seq 1 100); do redis-cli -p "$rp" ping > /dev/null 2>&1 && break; sleep 0.1; done
    "$K" registry load --redis "$url" --fixture-seed 1 --fixture-residents 20000 --shard-count 1024 > /dev/null
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
      -subj /CN=kofu-halfrate-ca -days 1 2> /dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout node.key -out node.csr \
      -subj /CN=kofu-internal 2> /dev/null
    printf "subjectAltName=DNS:kofu-internal\nextendedKeyUsage=serverAuth,clientAuth\n" > ext
    openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem -days 1 \
      -extfile ext 2> /dev/null
    n=1; [ "$MODE" = redis3 ] && n=3
    for i in $(seq 1 $n); do
      KOFU_CLUSTER_SECRET=kofu-halfrate-cluster-secret-0123456789 start "node-$i" --redis-url "$url" \
        --node-id "node-$i" --internal-listen "127.0.0.1:$(port)" --shard-count 1024 \
        --cluster-ca-file ca.pem --cluster-cert-file node.pem --cluster-key-file node.key
    done
    # Until every shard has an owner and the handoffs of the joins are over.
    sleep 3 ;;
  *) echo "mode: embedded, redis1 or redis3" >&2; exit 2 ;;
esac
echo "$MODE at $RATE sessions/s: $N sessions, replay speed $SPEED, targets $targets"
"$L" replay --fixtures fx.jsonl --target "$targets" --speed "$SPEED" --quiet trace.msgpack
# The nodes' own view: kiosk requests by the time from reading the request to writing
# the answer (kofu_http_request_duration_seconds, every node's kiosk listener; a
# forwarded request is timed once, by the node the kiosk called), without the
# generator's lateness and the kernel's queues. Buckets are coarse; 5 ms is one.
for a in $admins; do curl -sf "http://127.0.0.1:$a/metrics"; done | python3 -c '
import sys, collections
b = collections.Counter()
for line in sys.stdin:
    if line.startswith("kofu_http_request_duration_seconds_bucket{"):
        le = line.split("le=\"")[1].split("\"")[0]
        b[float("inf") if le == "+Inf" else float(le)] += float(line.split()[-1])
les = sorted(b); n = b[float("inf")] or 1
def q(p):
    lo, prev = 0.0, 0.0
    for le in les:
        if b[le] >= p * n:
            if le == float("inf"): return lo
            return lo + (le - lo) * (p * n - prev) / max(b[le] - prev, 1)
        lo, prev = le, b[le]
    return lo
print("  the nodes answered %d kiosk requests: %.1f %% within 1 ms, %.1f %% within 5 ms; p50 %.2f ms, p99 %.2f ms (interpolated in buckets)"
      % (n, 100 * b[0.001] / n, 100 * b[0.005] / n, 1e3 * q(0.5), 1e3 * q(0.99)))'
