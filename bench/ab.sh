#!/usr/bin/env bash
# A/B of two builds on SQLite, alternated so that a shared machine's drift hits both alike.
#
#   bench/ab.sh OLD_BIN NEW_BIN [rounds] [phases]      e.g. bench/ab.sh /tmp/old target/release/perfgate-server 5 "upload verdict"
#
# Each round starts each build on an empty database, seeds 100 benchmarks x 30 versions over HTTP
# (bench/seed_http.py), then runs each phase (latest, list, upload, verdict, trend, mixed: the
# scripts of bench/run.sh, 32 connections for reads and the mix, 8 for writes) for 3 s of
# warm-up and SECS (10) s measured. Per run it prints requests, p99 and the server's CPU time
# per request (utime + stime from /proc, which a busy neighbour disturbs less than requests/s);
# at the end the median of each per build and phase. Needs wrk and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,11p "$0"; exit 2; }
OLD=$1 NEW=$2 ROUNDS=${3:-5} PHASES=${4:-upload}
SECS=${SECS:-10}
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
. bench/seeded_server.sh
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

one_run() {
  local label=$1 bin=$2
  start_seeded "$bin"
  local port=$PORT pid=$PID
  local ph c out c0 c1 requests p99
  for ph in $PHASES; do
    c=32; case $ph in upload|verdict) c=8 ;; esac
    RUN_TAG="w$RANDOM$RANDOM" wrk -t2 -c$c -d3s --timeout 5s -s "bench/$ph.lua" "http://127.0.0.1:$port" >/dev/null 2>&1
    c0=$(cpu_ticks "$pid")
    out=$(RUN_TAG="m$RANDOM$RANDOM" wrk -t2 -c$c -d"${SECS}s" --timeout 5s -s "bench/$ph.lua" "http://127.0.0.1:$port" 2>&1 | grep RESULT)
    c1=$(cpu_ticks "$pid")
    requests=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$out")
    p99=$(sed 's/.*p99_us=\([0-9]*\).*/\1/' <<<"$out")
    local cpu_us=$(awk -v t=$(( (c1 - c0) * TICK_US )) -v n="$requests" 'BEGIN { printf "%.2f", t / (n > 0 ? n : 1) }')
    printf "%-4s %-8s requests %7d  p99 %6.2f ms  cpu %7.2f us/request\n" "$label" "$ph" "$requests" \
      "$(awk -v x="$p99" 'BEGIN { print x / 1000 }')" "$cpu_us"
    echo "$label $ph $requests $p99 $cpu_us" >> "$RESULTS"
  done
  stop_seeded
}

for r in $(seq "$ROUNDS"); do
  echo "round $r"
  one_run old "$OLD"
  one_run new "$NEW"
done
echo
echo "medians over $ROUNDS rounds:"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
phases = list(dict.fromkeys(r[1] for r in rows))
for ph in phases:
    for label in ("old", "new"):
        sel = [r for r in rows if r[0] == label and r[1] == ph]
        med = lambda i: statistics.median(float(r[i]) for r in sel)
        print(f"  {label:4} {ph:8} requests {med(2):8.0f}  p99 {med(3) / 1000:6.2f} ms  cpu {med(4):7.2f} us/request")
PY
