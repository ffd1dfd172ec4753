#!/usr/bin/env bash
# The gate's quality through a real server: builds the server and bench/gate_quality (release),
# starts the server on a throwaway SQLite file on 127.0.0.1, and prints the table.
#   bench/gate_quality/run.sh [seed] [suites] [unchanged runs per suite] [oracle draws]
# Defaults: 20261130 20 10 2000 (about 60,000 history uploads and 300 gates; a few minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
echo "building (release) ..." >&2
cargo build --release --quiet --bin perfgate-server --example gate_quality
WORK=$(mktemp -d)
KEY=pg_live_$(head -c 4096 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 32)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TARGET/release/perfgate-server" --bind 127.0.0.1 --port "$PORT" --database-url "$WORK/quality.db" \
  --api-keys "admin:$KEY" --log-level warn > "$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
"$TARGET/release/examples/gate_quality" "http://127.0.0.1:$PORT" "$KEY" "$@"
