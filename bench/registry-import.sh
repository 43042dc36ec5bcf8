#!/usr/bin/env bash
# Benchmark of `kofu registry import` (issue 11: 1 M records in under a minute, memory
# reported): generates a registry file of N residents (`kofu fixtures --registry`),
# imports it into a private redis-server (no persistence), imports it again (nothing
# changes: only reads), then a third time after changing every 100th record. Prints
# wall time and peak RSS of each import (/usr/bin/time) and Redis's used_memory.
#
#   bench/registry-import.sh [residents] [redis port]
#
# Release build (`cargo build --release -p kofu-node`). Not a test: it prints figures.
# Through Sentinel the importer also sends one `WAIT 1` per batch of 1,000 records.
set -euo pipefail

residents="${1:-1000000}"
port="${2:-6397}"
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
kofu="$target/release/kofu"
dir="$(mktemp -d)"
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT

redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize yes --logfile "$dir/redis.log" --dir "$dir" >/dev/null
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
url="redis://127.0.0.1:$port/"

file="$dir/registry.jsonl"
start=$(date +%s.%N)
"$kofu" fixtures --seed 1 --residents "$residents" --registry >"$file"
end=$(date +%s.%N)
printf 'file: %s records, %s MiB, generated in %.1f s\n' \
  "$(wc -l <"$file")" "$(( $(stat -c %s "$file") / 1048576 ))" "$(echo "$end - $start" | bc)"

run() {
  local what="$1"
  /usr/bin/time -f "%e %M %U %S" -o "$dir/time" "$kofu" registry import --redis "$url" "$file" >"$dir/out"
  read -r wall rss user sys <"$dir/time"
  local used
  used=$(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
  printf '%-24s %6.1f s wall, %6.1f s cpu  importer peak RSS %5d MiB  redis used_memory %5d MiB  load %s\n' \
    "$what" "$wall" "$(echo "$user + $sys" | bc)" "$((rss / 1024))" "$((used / 1048576))" "$(cut -d' ' -f1 /proc/loadavg)"
  cut -c1-120 "$dir/out"
}

run "first import"
run "same file again"
# Every 100th resident moves (a new address: 1 % of the records change).
awk 'NR % 100 == 0 { sub(/"address":"/, "\"address\":\"転居 ") } { print }' "$file" >"$file.new"
mv "$file.new" "$file"
run "1 % of records changed"
