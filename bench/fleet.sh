#!/usr/bin/env bash
# GET /api/v1/fleet/alerts latency with 1,000 and with 1,000,000 stored dependency events
# (seeded straight into SQLite by bench/seed_fleet.py). Usage: bench/fleet.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet --bin perfgate-server
BIN=${CARGO_TARGET_DIR:-target}/release/perfgate-server
KEY=pg_live_benchbenchbenchbenchbenchbenchbe01
export KEY BENCH_DIR=$PWD/bench
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
PID=
printf "%-10s %-40s %10s %9s %9s %7s\n" events "stored" "req/s" "p50 ms" "p99 ms" errors
for N in 1000 1000000; do
  DB=$WORK/fleet-$N.db
  PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  "$BIN" keys list --database-url "$DB" >/dev/null   # creates the schema
  STORED=$(python3 bench/seed_fleet.py "$DB" "$N")
  "$BIN" --database-url "$DB" --port "$PORT" --api-keys "admin:$KEY" --log-level warn > "$WORK/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$PORT/api/v1/fleet/alerts?limit=1" -H "Authorization: Bearer $KEY" >/dev/null
  wrk -t2 -c8 -d2s -s bench/alerts.lua "http://127.0.0.1:$PORT" >/dev/null 2>&1 || true
  line=$(wrk -t2 -c8 -d"${SECS}s" -s bench/alerts.lua "http://127.0.0.1:$PORT" 2>&1 | grep '^RESULT')
  eval "${line#RESULT }"
  awk -v n="$N" -v st="${STORED#seeded }" -v r="$requests" -v d="$duration_us" -v p50="$p50_us" -v p99="$p99_us" -v e="$errors" \
    'BEGIN { printf "%-10s %-40s %10.0f %9.2f %9.2f %7d\n", n, st, r/(d/1e6), p50/1000, p99/1000, e }'
  kill $PID; wait $PID 2>/dev/null || true
done
