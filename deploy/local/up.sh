#!/usr/bin/env bash
# Starts a local kofu cluster on loopback: one redis-server and N kofu nodes (default 3),
# with the registry loaded from the synthetic population. Stop it with ./down.sh.
# For local development only: the nodes serve fixture credentials (kiosk tokens, admin
# token and issuer key derive from the fixture seed, which `kofu fixtures` prints); a
# real deployment uses deploy/make-credentials.sh (README "Operations").
#
#   deploy/local/up.sh [N]
#
# Settings (environment): KOFU_LOCAL_DIR (state, logs, pids; default target/kofu-local),
# KOFU_LOCAL_REDIS_PORT (6390), KOFU_LOCAL_BASE_PORT (8080: node i serves the kiosk API
# on BASE+1+i, admin on BASE+1001+i, internal on BASE+2001+i), KOFU_FIXTURE_SEED (1),
# KOFU_FIXTURE_RESIDENTS (1000), KOFU_FIXTURE_KIOSKS (20), KOFU_SHARD_COUNT (1024).
set -euo pipefail

nodes="${1:-3}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${KOFU_LOCAL_DIR:-$root/target/kofu-local}"
redis_port="${KOFU_LOCAL_REDIS_PORT:-6390}"
base="${KOFU_LOCAL_BASE_PORT:-8080}"
seed="${KOFU_FIXTURE_SEED:-1}"
residents="${KOFU_FIXTURE_RESIDENTS:-1000}"
kiosks="${KOFU_FIXTURE_KIOSKS:-20}"
shards="${KOFU_SHARD_COUNT:-1024}"

if ! [[ "$nodes" =~ ^[1-9][0-9]?$ ]]; then
  echo "usage: $0 [number of nodes, 1-99]" >&2
  exit 2
fi
command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
if [ -e "$dir/pids" ]; then
  echo "a local cluster is already running (see $dir); stop it with deploy/local/down.sh" >&2
  exit 1
fi
mkdir -p "$dir"

echo "building kofu (release)..."
cargo build --release --locked -p kofu-node --manifest-path "$root/Cargo.toml" >/dev/null
kofu="${CARGO_TARGET_DIR:-$root/target}/release/kofu"

# The cluster secret stays in the state directory, readable by this user only.
secret="$dir/cluster-secret"
if [ ! -s "$secret" ]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$secret")
fi

# One Redis and no replica: `min-replicas-to-write` (set by the compose and k8s configs,
# which have one) would refuse every write here.
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" \
  --appendonly yes --appendfsync always --save "" \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
# PONG only once Redis has loaded its data (it answers LOADING until then).
for _ in $(seq 1 600); do
  [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
  sleep 0.05
done
echo "redis-server on 127.0.0.1:$redis_port"
echo "redis $(cat "$dir/redis.pid")" > "$dir/pids"

url="redis://127.0.0.1:$redis_port/"
"$kofu" registry load --redis "$url" --fixture-seed "$seed" \
  --fixture-residents "$residents" --shard-count "$shards"

for i in $(seq 0 $((nodes - 1))); do
  api=$((base + 1 + i)); admin=$((base + 1001 + i)); internal=$((base + 2001 + i))
  KOFU_REDIS_URL="$url" KOFU_CLUSTER_SECRET_FILE="$secret" KOFU_NODE_ID="node-$i" \
  KOFU_LISTEN="127.0.0.1:$api" KOFU_ADMIN_LISTEN="127.0.0.1:$admin" \
  KOFU_INTERNAL_LISTEN="127.0.0.1:$internal" KOFU_SHARD_COUNT="$shards" \
  KOFU_FIXTURE_SEED="$seed" KOFU_FIXTURE_RESIDENTS="$residents" KOFU_FIXTURE_KIOSKS="$kiosks" \
  KOFU_LOG_FORMAT=json \
    nohup "$kofu" serve >"$dir/node-$i.log" 2>&1 &
  echo "node-$i $!" >> "$dir/pids"
  echo "node-$i: kiosk API http://127.0.0.1:$api  admin http://127.0.0.1:$admin"
done

for i in $(seq 0 $((nodes - 1))); do
  admin=$((base + 1001 + i))
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null || {
    echo "node-$i did not become ready; see $dir/node-$i.log" >&2
    exit 1
  }
done
echo "cluster of $nodes node(s) ready; state and logs in $dir"
echo "fixture credentials (local development only): $kofu fixtures --seed $seed --residents $residents --kiosks $kiosks"
