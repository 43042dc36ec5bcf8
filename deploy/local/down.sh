#!/usr/bin/env bash
# Stops the local cluster started by up.sh: every node gets SIGTERM (it hands its shards
# to the others and exits), then Redis is shut down. The state directory stays.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${KOFU_LOCAL_DIR:-$root/target/kofu-local}"
redis_port="${KOFU_LOCAL_REDIS_PORT:-6390}"
[ -e "$dir/pids" ] || { echo "no local cluster running (no $dir/pids)"; exit 0; }

while read -r name pid; do
  [ "$name" = redis ] && continue
  kill -TERM "$pid" 2>/dev/null || continue
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name did not stop within 30 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  echo "$name stopped"
done < "$dir/pids"

if [ -s "$dir/redis-cli" ]; then
  eval "$(cat "$dir/redis-cli") shutdown nosave" >/dev/null 2>&1 || true
else
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
fi
echo "redis stopped"
rm -f "$dir/pids"
