#!/usr/bin/env bash
# Generates the credentials of a real deployment into DIR (created, readable by this
# user only), with `kofu credentials` (CSPRNG); nothing derives from a fixture seed:
#   cluster-secret        32 random bytes (hex) shared by the nodes
#   issuer.key            the issuer's Ed25519 seed (hex)
#   issuer-next.pub       empty: the next issuer key, published before it signs
#   issuer-retired.pub    empty: issuer keys retired by a rotation
#   kiosks.jsonl          one line per kiosk id given (KOFU_KIOSKS_FILE)
#   admin-tokens.jsonl    one admin token "ops" with every role (KOFU_ADMIN_TOKENS_FILE)
# and, beside it in DIR.tokens/ (never given to the nodes, which store hashes only):
#   kiosk-tokens.txt      the kiosks' bearer tokens, to configure in the kiosks
#   admin-token.txt       the admin token
# These are the only copies of the tokens: hand them out, then delete DIR.tokens.
#
#   deploy/make-credentials.sh DIR KIOSK_ID [KIOSK_ID...]
#
# KOFU_BIN: the kofu binary to use (default: target/release/kofu, built if missing).
# Compose: DIR = deploy/compose/secrets (the containers run as uid 10001: give it the
# files, `chown -R 10001 DIR`). Kubernetes: then
#   kubectl -n kofu create secret generic kofu --from-file=DIR
# (README "Operations": credentials, rotation).
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 DIR KIOSK_ID [KIOSK_ID...]" >&2
  exit 2
fi
dir="$1"; shift
root="$(cd "$(dirname "$0")/.." && pwd)"
kofu="${KOFU_BIN:-$root/target/release/kofu}"
if [ ! -x "$kofu" ]; then
  cargo build --release --locked -p kofu-node --bin kofu --manifest-path "$root/Cargo.toml" >/dev/null
fi
if [ -e "$dir/issuer.key" ] || [ -e "$dir/cluster-secret" ]; then
  echo "$dir already holds credentials; refusing to replace them" >&2
  exit 1
fi
tokens="${dir%/}.tokens"
umask 077
mkdir -p "$dir" "$tokens"

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/cluster-secret"
"$kofu" credentials issuer-key --out "$dir/issuer.key" >/dev/null 2>&1
: > "$dir/issuer-next.pub"
: > "$dir/issuer-retired.pub"
: > "$dir/kiosks.jsonl"
: > "$tokens/kiosk-tokens.txt"
for kiosk in "$@"; do
  # stdout is the file line, stderr the token once, after its label.
  "$kofu" credentials kiosk --kiosk-id "$kiosk" >> "$dir/kiosks.jsonl" 2> "$tokens/.last"
  awk '{print $NF}' "$tokens/.last" >> "$tokens/kiosk-tokens.txt"
done
"$kofu" credentials admin --name ops --role read --role registry --role drain \
  > "$dir/admin-tokens.jsonl" 2> "$tokens/.last"
awk '{print $NF}' "$tokens/.last" > "$tokens/admin-token.txt"
rm -f "$tokens/.last"
echo "credentials for $# kiosk(s) in $dir; their tokens in $tokens (hand them out, then delete it)" >&2
