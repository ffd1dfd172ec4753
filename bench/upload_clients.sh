#!/usr/bin/env bash
# Uploads at several client counts: for each, a fresh server on an empty SQLite file, 100 x 30
# baselines seeded over HTTP, 3 s of warm-up and 8 s measured; prints the RESULT line and the
# uploads per group commit over the measured seconds (`perfgate_group_commit_writes`).
#
#   bench/upload_clients.sh BIN ["8 16 32"]
#
# Needs wrk, curl and python3. Everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n 2,8p "$0"; exit 2; }
BIN=$1 CLIENTS=${2:-8 16 32}
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
. bench/seeded_server.sh
commits() { # port -> "uploads commits"
  curl -fs "http://127.0.0.1:$1/metrics" | awk '
    /^perfgate_group_commit_writes_sum\{kind="upload"\}/ { s = $2 }
    /^perfgate_group_commit_writes_count\{kind="upload"\}/ { c = $2 }
    END { print s + 0, c + 0 }'
}
for c in $CLIENTS; do
  start_seeded "$BIN"
  port=$PORT
  RUN_TAG="w$RANDOM$RANDOM" wrk -t2 -c"$c" -d3s --timeout 5s -s bench/upload.lua "http://127.0.0.1:$port" >/dev/null 2>&1
  read -r s0 n0 < <(commits "$port")
  out=$(RUN_TAG="m$RANDOM$RANDOM" wrk -t2 -c"$c" -d8s --timeout 5s -s bench/upload.lua "http://127.0.0.1:$port" | grep RESULT)
  read -r s1 n1 < <(commits "$port")
  echo "clients $c: $out uploads_per_commit=$(awk -v s=$((s1 - s0)) -v n=$((n1 - n0)) 'BEGIN { printf "%.1f", n ? s / n : 0 }')"
  stop_seeded
done
