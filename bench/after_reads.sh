#!/usr/bin/env bash
# Upload latency after a read-heavy stretch: seeds 100 benchmarks x 30 versions over HTTP, runs
# GET latest and list (32 connections, SECS each), then uploads (8 connections, 12 s), and prints
# each phase's RESULT line (bench/report.lua). The server logs to a file in the run's directory,
# as bench/run.sh's do; LOG=/dev/null sends its log there instead.
#
#   bench/after_reads.sh BIN [SECS]      e.g. bench/after_reads.sh target/release/perfgate-server 13
#
# Needs wrk, curl and python3. Everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n 2,9p "$0"; exit 2; }
BIN=$1 SECS=${2:-13}
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
. bench/seeded_server.sh
start_seeded "$BIN" "${LOG:-}"
trap stop_seeded EXIT
port=$PORT
for ph in latest list; do
  wrk -t2 -c32 -d"${SECS}s" --timeout 5s -s "bench/$ph.lua" "http://127.0.0.1:$port" | grep RESULT | sed "s/^/$ph /"
done
RUN_TAG="a$RANDOM$RANDOM" wrk -t2 -c8 -d12s --timeout 5s -s bench/upload.lua "http://127.0.0.1:$port" \
  | grep RESULT | sed "s/^/upload /"
