#!/usr/bin/env bash
# A throwaway certificate authority for TLS end to end (README "TLS"), with openssl:
# never for production, where the CAs belong to the operator's PKI.
#
#   deploy/gen-certs.sh OUT_DIR [--name NAME]... [--kiosk KIOSK_ID]...
#
# Writes into OUT_DIR (keys readable by their owner only):
#   ca.crt ca.key            the CA of the listeners' and Redis' server certificates and
#                            of the kiosks' client certificates (KOFU_TLS_CLIENT_CA_FILE,
#                            KOFU_REDIS_CA_FILE, and what kiosks trust)
#   server.crt server.key    kiosk and admin listeners, Redis and Sentinels: localhost,
#                            127.0.0.1 and every --name (a DNS name or an IP address)
#   cluster-ca.crt           the cluster CA (KOFU_CLUSTER_CA_FILE), a CA of its own so
#                            that no kiosk or server certificate can ever join a cluster
#   node.crt node.key        a node's certificate for the internal link: DNS name
#                            kofu-internal, server and client authentication
#   kiosk-<ID>.crt/.key      a kiosk's client certificate, subject CN = the kiosk id
# Existing CA files are kept, so running it again adds certificates from the same CAs.
set -euo pipefail

if [ $# -lt 1 ]; then
  sed -n '2,20p' "$0" >&2
  exit 2
fi
out="$1"; shift
names=(localhost 127.0.0.1)
kiosks=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name) names+=("$2"); shift 2 ;;
    --kiosk) kiosks+=("$2"); shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
command -v openssl >/dev/null || { echo "openssl is not installed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
umask 077
days=825

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name file-stem
  [ -s "$out/$2.crt" ] && [ -s "$out/$2.key" ] && return
  key "$out/$2.key"
  openssl req -x509 -new -key "$out/$2.key" -sha256 -days "$days" -subj "/CN=$1" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/$2.crt" 2>/dev/null
}

leaf() { # ca-stem file-stem cn san eku
  key "$out/$2.key"
  local ext; ext="$(mktemp)"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$5"
    [ -n "$4" ] && echo "subjectAltName=$4"
  } > "$ext"
  openssl req -new -key "$out/$2.key" -subj "/CN=$3" 2>/dev/null |
    openssl x509 -req -CA "$out/$1.crt" -CAkey "$out/$1.key" -CAcreateserial \
      -sha256 -days "$days" -extfile "$ext" -out "$out/$2.crt" 2>/dev/null
  rm -f "$ext"
}

san=""
for n in "${names[@]}"; do
  if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san="${san%,}"

ca "kofu throwaway ca" ca
ca "kofu throwaway cluster ca" cluster-ca
leaf ca server "kofu server" "$san" serverAuth
leaf cluster-ca node "kofu node" "DNS:kofu-internal" "serverAuth,clientAuth"
for k in "${kiosks[@]}"; do
  leaf ca "kiosk-$k" "$k" "" clientAuth
done
rm -f "$out"/*.srl
# Certificates are public; only keys stay private.
chmod 644 "$out"/*.crt
echo "certificates in $out (CA: ca.crt, cluster CA: cluster-ca.crt)"
