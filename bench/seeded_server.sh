# Sourced by bench/ab.sh, bench/after_reads.sh and bench/upload_clients.sh: the bench key and
# receipt, and one server on an empty SQLite file in a directory of its own, seeded with 100
# benchmarks x 30 versions over HTTP (bench/seed_http.py).
KEY=pg_live_benchbenchbenchbenchbenchbenchbe01
export KEY RECEIPT=$PWD/tests/fixtures/run-bench-a-1.json BENCH_DIR=$PWD/bench PROJECT=bench BENCHMARKS=100 PROJECTS=0

# start_seeded BIN [LOG]: sets WORK (the directory), PORT and PID. The log goes to LOG, or to
# $WORK/server.log.
start_seeded() {
  WORK=$(mktemp -d)
  PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  "$1" --storage-type sqlite --database-url "$WORK/perfgate.db" --bind 127.0.0.1 --port "$PORT" \
    --api-keys "admin:$KEY:bench" > "${2:-$WORK/server.log}" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
  python3 bench/seed_http.py "$PORT" "$KEY" bench 100 30 "$RECEIPT" >/dev/null
}

# stop_seeded: stops the server and removes its directory.
stop_seeded() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
