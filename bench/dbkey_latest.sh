#!/usr/bin/env bash
# GET latest with a configured key and with a key created through the API (kept in the
# database), on one seeded SQLite server: 2 s of warm-up, then SECS (6) s each, 32 connections.
#
#   bench/dbkey_latest.sh BIN [BIN ...]      e.g. bench/dbkey_latest.sh /tmp/old target/release/perfgate-server
#
# Prints wrk's RESULT line per build and key. Needs wrk, curl and python3; everything on
# 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n 2,8p "$0"; exit 2; }
SECS=${SECS:-6}
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
. bench/seeded_server.sh
for bin in "$@"; do
  start_seeded "$bin"
  url=http://127.0.0.1:$PORT
  dbkey=$(curl -fs -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d '{"role":"viewer","project":"bench","description":"bench"}' "$url/api/v1/keys" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  wrk -t2 -c32 -d2s -s bench/latest.lua "$url" >/dev/null 2>&1
  echo "$bin configured: $(wrk -t2 -c32 -d"${SECS}"s -s bench/latest.lua "$url" 2>&1 | grep RESULT)"
  echo "$bin database:   $(KEY=$dbkey wrk -t2 -c32 -d"${SECS}"s -s bench/latest.lua "$url" 2>&1 | grep RESULT)"
  stop_seeded
done
