#!/usr/bin/env bash
# Quick local load run on SQLite: GET latest (32 connections) and upload (8 connections).
# Prints requests/s, p50 and p99. Usage: bench/quick.sh [seconds]   (needs wrk)
# BIN=/path/to/perfgate-server runs another build (e.g. the reference 0.18.1) the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin perfgate-server
  BIN=${CARGO_TARGET_DIR:-target}/release/perfgate-server
fi
WORK=$(mktemp -d)
KEY=pg_live_benchbenchbenchbenchbenchbenchbe01
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
PERFGATE_LOG_LEVEL=warn RUST_LOG=warn "$BIN" --storage-type sqlite --database-url "$WORK/perfgate.db" --port "$PORT" \
  --api-keys "admin:$KEY:bench" > "$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

# Seed 100 benchmarks x 3 versions.
python3 - "$PORT" "$KEY" <<'PY'
import json, sys, urllib.request
port, key = sys.argv[1], sys.argv[2]
receipt = json.load(open("tests/fixtures/run-bench-a-1.json"))
for v in range(3):
    for i in range(100):
        body = json.dumps({"benchmark": f"bench-{i}", "version": f"v{v}", "git_ref": None, "git_sha": None,
                           "receipt": receipt, "metadata": {}, "tags": [], "normalize": False}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/projects/bench/baselines", body,
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        urllib.request.urlopen(req).read()
PY

export KEY BENCH_DIR=$PWD/bench RECEIPT=$PWD/tests/fixtures/run-bench-a-1.json PROJECT=bench BENCHMARKS=100
run() { # name connections script
  wrk -t2 -c"$2" -d2s -s "bench/$3" "http://127.0.0.1:$PORT" >/dev/null 2>&1 || true  # warm-up
  local line
  line=$(wrk -t2 -c"$2" -d"${SECS}s" -s "bench/$3" "http://127.0.0.1:$PORT" 2>&1 | grep '^RESULT')
  eval "${line#RESULT }"
  awk -v n="$1" -v r="$requests" -v d="$duration_us" -v p50="$p50_us" -v p99="$p99_us" -v e="$errors" \
    'BEGIN { printf "%-22s %10.0f %9.2f %9.2f %7d\n", n, r/(d/1e6), p50/1000, p99/1000, e }'
}
printf "%-22s %10s %9s %9s %7s\n" scenario "req/s" "p50 ms" "p99 ms" errors
run "GET latest (c=32)" 32 latest.lua
run "POST upload (c=8)" 8 upload.lua
echo "peak RSS: $(grep VmHWM /proc/$PID/status | awk '{print $2/1024 " MB"}')"
