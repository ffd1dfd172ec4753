#!/usr/bin/env bash
# Retention's cost to clients: upload latency while DELETE /api/v1/admin/cleanup purges N old
# verdicts (default 1,000,000), against the same load with nothing to purge.
#
# Usage: bench/retention.sh [N]   (SECS=10 per measurement; CARGO_TARGET_DIR respected; needs wrk)
# Builds nothing: run `cargo build --release` first. SQLite, one server, 8 connections of uploads.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
SECS=${SECS:-10}
BIN=${CARGO_TARGET_DIR:-target}/release/perfgate-server
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk not found" >&2; exit 1; }
WORK=$(mktemp -d)
KEY=pg_live_benchbenchbenchbenchbenchbench01
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
start() {
  "$BIN" --database-url "$WORK/perfgate.db" --port "$PORT" --api-keys "admin:$KEY" \
    --log-level warn --change-point-interval-ms 0 >"$WORK/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -fs "$URL/health" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "server did not start" >&2; cat "$WORK/server.log" >&2; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }

start; stop   # the schema
echo "seeding $N verdicts 400 days old..."
python3 - "$WORK/perfgate.db" "$N" <<'PY'
import sqlite3, sys, time, uuid
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
old = int((time.time() - 400 * 86400) * 1e6)
rows = ((uuid.uuid4().hex, "bench", f"b{i % 1000}", "r", ("pass", "warn", "fail")[i % 3],
         '{"pass":1,"warn":0,"fail":0,"skip":0}', "[]", None, None, None, None, old + i)
        for i in range(n))
c.executemany("INSERT INTO verdicts VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
c.execute("""INSERT INTO verdict_counts SELECT project, benchmark, status, COUNT(*) FROM verdicts
             GROUP BY project, benchmark, status""")
c.commit()
PY
start
run() {  # -> "p50_us p99_us requests"
  local out
  out=$(PROJECT=bench KEY=$KEY BENCH_DIR=bench RECEIPT=tests/fixtures/run-bench-a-1.json RUN_TAG="$1" \
    wrk -t2 -c8 -d"${SECS}s" --timeout 5s -s bench/upload.lua "$URL" 2>&1 | grep '^RESULT')
  sed -E 's/.*requests=([0-9]+).*p50_us=([0-9]+) p99_us=([0-9]+).*/\2 \3 \1/' <<<"$out"
}
read -r idle50 idle99 idlen <<<"$(run idle)"
t0=$(date +%s.%N)
curl -fs -X DELETE -H "Authorization: Bearer $KEY" "$URL/api/v1/admin/cleanup?older_than_days=30" >"$WORK/cleanup.json" &
CPID=$!
sleep 0.5
read -r busy50 busy99 busyn <<<"$(run during)"
wait "$CPID"
t1=$(date +%s.%N)
echo
echo "uploads (8 connections, ${SECS} s each; $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)):"
printf "  idle:           p50 %6.2f ms  p99 %6.2f ms  (%d uploads)\n" "$(bc -l <<<"$idle50/1000")" "$(bc -l <<<"$idle99/1000")" "$idlen"
printf "  during cleanup: p50 %6.2f ms  p99 %6.2f ms  (%d uploads)\n" "$(bc -l <<<"$busy50/1000")" "$(bc -l <<<"$busy99/1000")" "$busyn"
printf "  p99 ratio: %.2fx (target <= 2x)\n" "$(bc -l <<<"$busy99/$idle99")"
printf "cleanup: %.1f s, %s\n" "$(bc -l <<<"$t1-$t0")" "$(cat "$WORK/cleanup.json")"
