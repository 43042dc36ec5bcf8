#!/usr/bin/env bash
# Starts a local kofu cluster on loopback: one redis-server and N kofu nodes (default 3),
# with the registry loaded from the synthetic population. Stop it with ./down.sh.
# For local development only: the nodes serve fixture credentials (kiosk tokens, admin
# token and issuer key derive from the fixture seed, which `kofu fixtures` prints); a
# real deployment uses deploy/make-credentials.sh (README "Operations").
# TLS end to end with a throwaway CA (deploy/gen-certs.sh, in the state directory):
# HTTPS kiosk and admin listeners, mutual TLS between nodes, Redis over TLS with an ACL
# user and a generated password.
#
#   deploy/local/up.sh [N]
#
# Settings (environment): KOFU_LOCAL_DIR (state, logs, pids, certs; default
# target/kofu-local), KOFU_LOCAL_REDIS_PORT (6390), KOFU_LOCAL_BASE_PORT (8080: node i
# serves the kiosk API on BASE+1+i, admin on BASE+1001+i, internal on BASE+2001+i),
# KOFU_FIXTURE_SEED (1), KOFU_FIXTURE_RESIDENTS (1000), KOFU_FIXTURE_KIOSKS (20),
# KOFU_SHARD_COUNT (1024), KOFU_LOCAL_TLS (1; 0 runs everything in clear, the nodes with
# --insecure-plaintext: local development only).
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
tls="${KOFU_LOCAL_TLS:-1}"

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

certs="$dir/certs"
redis_args=(--port "$redis_port")
cli=(redis-cli -p "$redis_port")
url="redis://127.0.0.1:$redis_port/"
scheme=http
curl_tls=()
node_tls=(--insecure-plaintext)
if [ "$tls" = 1 ]; then
  [ -s "$certs/node.crt" ] || "$root/deploy/gen-certs.sh" "$certs" >/dev/null
  # The ACL user's password stays in the state directory, readable by this user only.
  if [ ! -s "$dir/redis-password" ]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/redis-password")
  fi
  pass="$(cat "$dir/redis-password")"
  redis_args=(--port 0 --tls-port "$redis_port" --tls-cert-file "$certs/server.crt"
    --tls-key-file "$certs/server.key" --tls-ca-cert-file "$certs/ca.crt"
    --tls-auth-clients no --user default off --user kofu on ">$pass" "~*" "&*" "+@all")
  cli=(redis-cli -p "$redis_port" --tls --cacert "$certs/ca.crt" --user kofu --pass "$pass" --no-auth-warning)
  url="rediss://kofu:$pass@127.0.0.1:$redis_port/"
  export KOFU_REDIS_CA_FILE="$certs/ca.crt"
  scheme=https
  curl_tls=(--cacert "$certs/ca.crt")
  node_tls=()
  export KOFU_TLS_CERT_FILE="$certs/server.crt" KOFU_TLS_KEY_FILE="$certs/server.key"
  export KOFU_ADMIN_TLS_CERT_FILE="$certs/server.crt" KOFU_ADMIN_TLS_KEY_FILE="$certs/server.key"
  export KOFU_CLUSTER_CA_FILE="$certs/cluster-ca.crt"
  export KOFU_CLUSTER_CERT_FILE="$certs/node.crt" KOFU_CLUSTER_KEY_FILE="$certs/node.key"
fi
# down.sh and the benches reach Redis the same way.
printf '%q ' "${cli[@]}" > "$dir/redis-cli"

# One Redis and no replica: `min-replicas-to-write` (set by the compose and k8s configs,
# which have one) would refuse every write here.
redis-server "${redis_args[@]}" --bind 127.0.0.1 --dir "$dir" \
  --appendonly yes --appendfsync always --save "" \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
# PONG only once Redis has loaded its data (it answers LOADING until then).
for _ in $(seq 1 600); do
  [ "$("${cli[@]}" ping 2>/dev/null)" = PONG ] && break
  sleep 0.05
done
echo "redis-server on 127.0.0.1:$redis_port ($([ "$tls" = 1 ] && echo "tls, acl user kofu" || echo plain))"
echo "redis $(cat "$dir/redis.pid")" > "$dir/pids"

"$kofu" registry load --redis "$url" --fixture-seed "$seed" \
  --fixture-residents "$residents" --shard-count "$shards"

for i in $(seq 0 $((nodes - 1))); do
  api=$((base + 1 + i)); admin=$((base + 1001 + i)); internal=$((base + 2001 + i))
  KOFU_REDIS_URL="$url" KOFU_CLUSTER_SECRET_FILE="$secret" KOFU_NODE_ID="node-$i" \
  KOFU_LISTEN="127.0.0.1:$api" KOFU_ADMIN_LISTEN="127.0.0.1:$admin" \
  KOFU_INTERNAL_LISTEN="127.0.0.1:$internal" KOFU_SHARD_COUNT="$shards" \
  KOFU_FIXTURE_SEED="$seed" KOFU_FIXTURE_RESIDENTS="$residents" KOFU_FIXTURE_KIOSKS="$kiosks" \
  KOFU_LOG_FORMAT=json \
    nohup "$kofu" serve "${node_tls[@]}" >"$dir/node-$i.log" 2>&1 &
  echo "node-$i $!" >> "$dir/pids"
  echo "node-$i: kiosk API $scheme://127.0.0.1:$api  admin $scheme://127.0.0.1:$admin"
done

for i in $(seq 0 $((nodes - 1))); do
  admin=$((base + 1001 + i))
  for _ in $(seq 1 200); do
    curl -fsS "${curl_tls[@]}" "$scheme://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  curl -fsS "${curl_tls[@]}" "$scheme://127.0.0.1:$admin/readyz" >/dev/null || {
    echo "node-$i did not become ready; see $dir/node-$i.log" >&2
    exit 1
  }
done
echo "cluster of $nodes node(s) ready; state and logs in $dir"
echo "fixture credentials (local development only): $kofu fixtures --seed $seed --residents $residents --kiosks $kiosks"
[ "$tls" = 1 ] && echo "clients trust $certs/ca.crt (curl --cacert, kofu demo/kofu-load --ca-file)"
true
