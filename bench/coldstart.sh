#!/usr/bin/env bash
# Cold start: time from exec to the first 200 on a SQLite database of 1,000,000 baselines
# (issue target: <= 1 s, no full scans at start). Seeds the database straight into SQLite
# (bench/seed_baselines.py, 100 projects x 100 benchmarks x 100 versions, ~2.5 GB) unless a
# database is given, evicts the file from the page cache (posix_fadvise DONTNEED: what a
# freshly booted machine would read from disk), starts a release build and polls every 2 ms:
# first /health 200, then the first authenticated GET latest 200. Three runs each: page cache
# evicted, then warm.
#
#   bench/coldstart.sh [DB]        (TMPDIR decides where the seeded database goes)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
echo "building (release) ..." >&2
cargo build --release --quiet --bin perfgate-server
BIN=$TARGET/release/perfgate-server
KEY=pg_live_benchbenchbenchbenchbenchbenchbe01
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DB=${1:-}
if [ -z "$DB" ]; then
  DB=$WORK/cold.db
  "$BIN" keys list --database-url "$DB" >/dev/null   # creates the schema
  echo "seeding 1,000,000 baselines into $DB ..." >&2
  python3 bench/seed_baselines.py "$DB" 100 "$ROOT/tests/fixtures/run-bench-a-1.json" >&2
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB RAM", $2/1048576}' /proc/meminfo), $(uname -sr); load: $(cut -d' ' -f1 /proc/loadavg)"
echo "database: $DB ($(du -h "$DB" | cut -f1)), $(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from baselines').fetchone()[0])" "$DB") baselines"
python3 - "$BIN" "$DB" "$KEY" "$WORK" <<'PY'
import os, socket, subprocess, sys, time, urllib.request
binary, db, key, work = sys.argv[1:5]

def evict(path):
    for p in (path, path + "-wal", path + "-shm"):
        if os.path.exists(p):
            fd = os.open(p, os.O_RDONLY)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def first_200(url, auth, t0, deadline=30):
    headers = {"Authorization": "Bearer " + key} if auth else {}
    while time.monotonic() - t0 < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except Exception:
            pass
        time.sleep(0.002)
    raise SystemExit(f"no 200 from {url} within {deadline}s")

def run(cold):
    if cold:
        evict(db)
    port = free_port()
    log = open(os.path.join(work, "server.log"), "w")
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "--storage-type", "sqlite", "--database-url", db, "--bind", "127.0.0.1",
                          "--port", str(port), "--api-keys", "admin:" + key, "--log-format", "json"],
                         stdout=log, stderr=log)
    try:
        h = first_200(f"http://127.0.0.1:{port}/health", False, t0)
        l = first_200(f"http://127.0.0.1:{port}/api/v1/projects/p042/baselines/bench-7/latest", True, t0)
    finally:
        p.terminate(); p.wait()
    return h, l

print(f"{'page cache':<12}{'run':>4}{'/health 200 ms':>16}{'GET latest 200 ms':>19}")
worst = 0
for cold in (True, False):
    for i in range(3):
        h, l = run(cold)
        worst = max(worst, l)
        print(f"{'evicted' if cold else 'warm':<12}{i + 1:>4}{h * 1000:>16.0f}{l * 1000:>19.0f}")
print(f"target: exec -> first 200 <= 1000 ms; worst GET latest {worst * 1000:.0f} ms: {'met' if worst <= 1.0 else 'MISSED'}")
PY
