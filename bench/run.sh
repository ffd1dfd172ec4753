#!/usr/bin/env bash
# Performance benchmark: this server against the reference perfgate-server 0.18.1 and the
# framework ceiling, one command, one run. Everything on 127.0.0.1, bounded in time.
#
#   bench/run.sh              scenarios 1-6 on SQLite: ours, then the reference (same seed, same
#                             load), then GET latest on ours and on the ceiling, alternated three
#                             times (the ratio of their medians); table and ratios
#   bench/run.sh --scale      ours at 10,000 and at 1,000,000 baselines: scenarios 1, 2 and 5
#   bench/run.sh --postgres   ours on a throwaway PostgreSQL: scenarios 1, 3 and 6 with one
#                             replica, then two replicas with the load split between them; the
#                             PostgreSQL statements per (cached) GET latest; GET latest on
#                             SQLite in the same run, for the ratio PostgreSQL / SQLite
#   bench/run.sh --gate       ours: POST a gate of 100 runs, each judged against 60 history
#                             runs, at 10,000 and at 1,000,000 stored baselines (SQLite)
#
# Options: --secs N (measured seconds per scenario, default 10), --warmup N (default 3).
# Databases and logs go to a fresh directory under $TMPDIR (the 1,000,000-baseline SQLite file
# of --scale takes about 2.5 GB; TMPDIR=/dev/shm keeps it in RAM when the disk is short).
# Environment: PERFGATE_REF_ROOT (cache of the reference install, default bench/.cache/
# perfgate-server-0.18.1; installed with `cargo install` the first time), CARGO_TARGET_DIR.
# Needs: cargo, wrk (Debian package `wrk`), python3, curl; --postgres also initdb/pg_ctl.
#
# Load: wrk, keep-alive, 2 threads; 32 connections for reads and the mixed scenario, 8 for
# writes. Both servers run with their default log level (info) and format (JSON lines), logging
# to a file, and SQLite in its durable setting (ours: WAL + synchronous=FULL).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=default
SECS=10
WARM=3
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) MODE=scale ;;
    --postgres) MODE=postgres ;;
    --gate) MODE=gate ;;
    --secs) SECS=$2; shift ;;
    --warmup) WARM=$2; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

for tool in wrk python3 curl cargo; do
  command -v "$tool" >/dev/null || { echo "$tool not found (wrk: apt-get install wrk)" >&2; exit 1; }
done

REF_ROOT=${PERFGATE_REF_ROOT:-$ROOT/bench/.cache/perfgate-server-0.18.1}
REF=$REF_ROOT/bin/perfgate-server
if [ "$MODE" = default ] && [ ! -x "$REF" ]; then
  echo "installing the reference perfgate-server 0.18.1 into $REF_ROOT (first run only) ..." >&2
  # A build directory of its own: with CARGO_TARGET_DIR set, `cargo install` would build its
  # `perfgate-server` binary over ours.
  cargo install perfgate-server --version 0.18.1 --root "$REF_ROOT" --target-dir "$REF_ROOT/build"
  rm -rf "$REF_ROOT/build"
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
echo "building (release) ..." >&2
cargo build --release --quiet --bin perfgate-server
# Apart: building an example with it turns on the dev-dependencies' features in the crates they
# share, which changes the hashes in every symbol and so the exact part of the code layout
# (README, "Code layout"): the server would not be the binary `cargo build --release` makes.
cargo build --release --quiet --example ceiling
OURS=$TARGET/release/perfgate-server
CEILING=$TARGET/release/examples/ceiling

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  [ -n "${PG_STOP:-}" ] && eval "$PG_STOP" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

KEY=pg_live_benchbenchbenchbenchbenchbenchbe01
RECEIPT=$ROOT/tests/fixtures/run-bench-a-1.json
export KEY RECEIPT BENCH_DIR=$ROOT/bench PROJECT=bench BENCHMARKS=100 PROJECTS=0

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

wait_health() { # port pid
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "server exited during start-up" >&2; return 1; }
    sleep 0.1
  done
  echo "server did not become healthy" >&2
  return 1
}

# start NAME PORT CMD... : runs a server in the background; sets PID.
start() {
  local name=$1 port=$2; shift 2
  "$@" > "$WORK/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  wait_health "$port" "$PID"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

rss_mb() { awk -v f="$2" '$1 == f":" { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

load_note() { awk '{ printf "%s", $1 }' /proc/loadavg; }

# wrk_run URL CONNS THREADS SCRIPT SECS -> the RESULT line's fields
wrk_run() {
  local out
  out=$(timeout $(( $5 + 30 )) wrk -t"$3" -c"$2" -d"${5}s" --timeout 5s -s "bench/$4" "$1" 2>&1) || true
  local line
  line=$(grep '^RESULT' <<<"$out" || true)
  if [ -z "$line" ]; then
    echo "wrk failed: $out" >&2
    echo "requests=0 duration_us=1 p50_us=0 p99_us=0 errors=1"
  else
    echo "${line#RESULT }"
  fi
}

RESULTS=$WORK/results
: > "$RESULTS"
ROW_FMT="%-26s %-10s %9s %8s %8s %7s %9s %5s\n"
# cpu: how busy the whole machine was (all cores, load generator included) while measuring.
print_header() { printf "$ROW_FMT" scenario server "req/s" "p50 ms" "p99 ms" errors "peak RSS" cpu; }

# scenario LABEL SERVER PID URLS CONNS SCRIPT : warm-up, reset the peak RSS, measure. URLS may
# hold several base URLs separated by spaces: the connections and threads are split between
# them (one wrk per URL, started together) and the results summed.
scenario() {
  local label=$1 server=$2 pids=$3 urls=$4 conns=$5 script=$6
  local -a u=($urls)
  local n=${#u[@]} threads=$(( 2 / ${#u[@]} )) c=$(( conns / ${#u[@]} ))
  [ "$threads" -lt 1 ] && threads=1
  [ "$threads" -gt "$c" ] && threads=$c
  # RUN_TAG keeps upload versions and verdict run ids unique across runs and wrk processes.
  local -a w=()
  local tag="w$RANDOM$RANDOM" i=0
  for url in "${u[@]}"; do
    RUN_TAG="$tag-$i" wrk_run "$url" "$c" "$threads" "$script" "$WARM" >/dev/null &
    w+=($!)
    i=$((i + 1))
  done
  wait "${w[@]}" || true
  for p in $pids; do echo 5 > "/proc/$p/clear_refs" 2>/dev/null || true; done
  tag="m$RANDOM$RANDOM"
  i=0
  w=()
  local cpu0
  cpu0=$(cpu_ticks)
  for url in "${u[@]}"; do
    RUN_TAG="$tag-$i" wrk_run "$url" "$c" "$threads" "$script" "$SECS" > "$WORK/wrk.$i" &
    w+=($!)
    i=$((i + 1))
  done
  wait "${w[@]}" || true
  local cpu
  cpu=$(cpu_busy "$cpu0" "$(cpu_ticks)")
  local rss=0
  for p in $pids; do
    local r
    r=$(rss_mb "$p" VmHWM)
    rss=$(awk -v a="$rss" -v b="$r" 'BEGIN { print (b > a) ? b : a }')
  done
  local req=0 dur=0 p50=0 p99=0 err=0
  for (( i = 0; i < n; i++ )); do
    local requests duration_us p50_us p99_us errors
    eval "$(cat "$WORK/wrk.$i")"
    req=$(( req + requests )); err=$(( err + errors ))
    awk -v d="$duration_us" 'BEGIN { exit !(d > 0) }' && dur=$duration_us
    [ "$p50_us" -gt "$p50" ] && p50=$p50_us
    [ "$p99_us" -gt "$p99" ] && p99=$p99_us
  done
  local rps
  rps=$(awk -v r="$req" -v d="$dur" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
  printf "%s|%s|%s|%s|%s|%s|%s\n" "$label" "$server" "$rps" "$p50" "$p99" "$err" "$rss" >> "$RESULTS"
  awk -v l="$label" -v s="$server" -v r="$rps" -v a="$p50" -v b="$p99" -v e="$err" -v m="$rss" -v c="$cpu" -v f="$ROW_FMT" \
    'BEGIN { printf f, l, s, r, sprintf("%.2f", a / 1000), sprintf("%.2f", b / 1000), e, m " MB", c "%" }'
}

# "busy idle" jiffies of all CPUs (idle includes iowait), from /proc/stat.
cpu_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }
# cpu_busy "B0 I0" "B1 I1" -> percent of the machine's CPU time that was busy in between
cpu_busy() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); db = y[1] - x[1]; di = y[2] - x[2];
    printf "%.0f", (db + di > 0) ? 100 * db / (db + di) : 0 }'
}

get() { awk -F'|' -v l="$1" -v s="$2" -v c="$3" '$1 == l && $2 == s { print $c }' "$RESULTS"; }
median3() { printf "%s\n%s\n%s\n" "$1" "$2" "$3" | sort -n | sed -n 2p; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { if (v !~ /^[0-9.]+$/) { print "n/a"; exit } ok = (op == "ge") ? (v + 0 >= t + 0) : (v + 0 <= t + 0); print ok ? "met" : "MISSED" }'; }

machine() {
  echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr); load before run: $(load_note)"
}

SCEN1="1 GET latest"
SCEN2="2 GET list (limit=50)"
SCEN3="3 POST upload"
SCEN4="4 POST verdict"
SCEN5="5 GET trend (window=30)"
SCEN6="6 mixed 70/20/10"

run_default() {
  machine
  echo "seed: 100 benchmarks x 30 versions (3,000 baselines) in one project, uploaded over HTTP; ${SECS}s per scenario after ${WARM}s warm-up"
  echo
  print_header
  local port idle_ours idle_ref
  for server in ours reference; do
    port=$(free_port)
    if [ "$server" = ours ]; then
      start ours "$port" "$OURS" --storage-type sqlite --database-url "$WORK/ours.db" --bind 127.0.0.1 \
        --port "$port" --api-keys "admin:$KEY:bench"
    else
      start reference "$port" "$REF" --storage-type sqlite --database-url "$WORK/ref.db" --bind 127.0.0.1 \
        --port "$port" --api-keys "admin:$KEY:bench"
    fi
    local pid=$PID url="http://127.0.0.1:$port"
    sleep 1
    local idle
    idle=$(rss_mb "$pid" VmRSS)
    python3 bench/seed_http.py "$port" "$KEY" bench 100 30 "$RECEIPT"
    echo "idle|$server|$idle" >> "$RESULTS"
    if [ "$server" = ours ]; then
      curl -fs -D "$WORK/latest.headers" -o "$WORK/latest.body" -H "Authorization: Bearer $KEY" \
        "$url/api/v1/projects/bench/baselines/bench-0/latest"
    fi
    scenario "$SCEN1" "$server" "$pid" "$url" 32 latest.lua
    scenario "$SCEN2" "$server" "$pid" "$url" 32 list.lua
    scenario "$SCEN3" "$server" "$pid" "$url" 8 upload.lua
    scenario "$SCEN4" "$server" "$pid" "$url" 8 verdict.lua
    scenario "$SCEN5" "$server" "$pid" "$url" 32 trend.lua
    scenario "$SCEN6" "$server" "$pid" "$url" 32 mixed.lua
    stop "$pid"
  done
  # GET latest against the framework ceiling, paired: ours (again, on the same database) and the
  # ceiling alternate three times, and the ratio is the medians' (one run of each, minutes apart,
  # measured the machine's load as much as either server).
  port=$(free_port)
  local etag cport cpid opid
  etag=$(awk 'tolower($1) == "etag:" { sub(/\r$/, "", $2); print $2 }' "$WORK/latest.headers")
  "$CEILING" "$port" "$WORK/latest.body" "$etag" > "$WORK/ceiling.log" 2>&1 &
  cpid=$!
  PIDS+=("$cpid")
  cport=$port
  # The ceiling has no /health: wait for its route instead.
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$cport/api/v1/projects/bench/baselines/bench-0/latest" >/dev/null 2>&1 && break; sleep 0.1; done
  port=$(free_port)
  start ours "$port" "$OURS" --storage-type sqlite --database-url "$WORK/ours.db" --bind 127.0.0.1 \
    --port "$port" --api-keys "admin:$KEY:bench"
  opid=$PID
  local round
  for round in 1 2 3; do
    scenario "$SCEN1" "ours-p$round" "$opid" "http://127.0.0.1:$port" 32 latest.lua
    scenario "$SCEN1" "ceiling-p$round" "$cpid" "http://127.0.0.1:$cport" 32 latest.lua
  done
  stop "$opid"
  stop "$cpid"

  echo
  echo "targets (ratios from this run):"
  local o r c
  o=$(get "$SCEN1" ours 3); r=$(get "$SCEN1" reference 3)
  printf "  %-44s %8sx  (>= 4)     %s\n" "GET latest req/s ours / reference" "$(ratio "$o" "$r")" "$(verdict "$(ratio "$o" "$r")" 4 ge)"
  o=$(median3 "$(get "$SCEN1" ours-p1 3)" "$(get "$SCEN1" ours-p2 3)" "$(get "$SCEN1" ours-p3 3)")
  c=$(median3 "$(get "$SCEN1" ceiling-p1 3)" "$(get "$SCEN1" ceiling-p2 3)" "$(get "$SCEN1" ceiling-p3 3)")
  printf "  %-44s %8sx  (>= 0.85)  %s\n" "GET latest req/s ours / ceiling (paired)" "$(ratio "$o" "$c")" "$(verdict "$(ratio "$o" "$c")" 0.85 ge)"
  o=$(get "$SCEN2" ours 3); r=$(get "$SCEN2" reference 3)
  printf "  %-44s %8sx  (>= 20)    %s\n" "list page req/s ours / reference" "$(ratio "$o" "$r")" "$(verdict "$(ratio "$o" "$r")" 20 ge)"
  o=$(get "$SCEN3" ours 3); r=$(get "$SCEN3" reference 3)
  printf "  %-44s %8sx  (>= 4)     %s\n" "upload req/s ours / reference" "$(ratio "$o" "$r")" "$(verdict "$(ratio "$o" "$r")" 4 ge)"
  o=$(get "$SCEN4" ours 3); r=$(get "$SCEN4" reference 3)
  printf "  %-44s %8sx  (>= 4)     %s\n" "verdict req/s ours / reference" "$(ratio "$o" "$r")" "$(verdict "$(ratio "$o" "$r")" 4 ge)"
  o=$(get "$SCEN6" ours 5); r=$(get "$SCEN6" reference 5)
  printf "  %-44s %8sx  (<= 0.5)   %s\n" "mixed p99 ours / reference" "$(ratio "$o" "$r")" "$(verdict "$(ratio "$o" "$r")" 0.5 le)"
  local s
  for s in "$SCEN1" "$SCEN2" "$SCEN3" "$SCEN4" "$SCEN5" "$SCEN6"; do
    o=$(get "$s" ours 5); r=$(get "$s" reference 5)
    printf "  %-44s %8s   (<= %s)  %s\n" "p99 ms ours, $s" "$(awk -v a="$o" 'BEGIN { printf "%.2f", a / 1000 }')" \
      "$(awk -v a="$r" 'BEGIN { printf "%.2f", a / 1000 }')" "$(verdict "$o" "$r" le)"
  done
  local errs
  errs=$(awk -F'|' '$2 ~ /^ours/ && NF == 7 { e += $6 } END { print e + 0 }' "$RESULTS")
  printf "  %-44s %8s   (0)        %s\n" "errors, ours, all scenarios" "$errs" "$(verdict "$errs" 0 le)"
  o=$(awk -F'|' '$1 == "idle" && $2 == "ours" { print $3 }' "$RESULTS")
  r=$(awk -F'|' '$1 == "idle" && $2 == "reference" { print $3 }' "$RESULTS")
  printf "  %-44s %8s   (<= %s MB) %s\n" "idle RSS MB ours (reference)" "$o" "$r" "$(verdict "$o" "$r" le)"
  o=$(awk -F'|' '$2 ~ /^ours/ && NF == 7 && $7 > m { m = $7 } END { print m + 0 }' "$RESULTS")
  printf "  %-44s %8s   (<= 64)    %s\n" "peak RSS MB under load, ours" "$o" "$(verdict "$o" 64 le)"
}

run_scale() {
  machine
  echo "ours only, SQLite; seeded straight into the database (bench/seed_baselines.py): 100 benchmarks x 100 versions per project"
  echo "10000 and 1000000: the scenarios as defined (a random benchmark among the 100 of one project);"
  echo "1M spread: the same requests spread over all 100 projects (10,000 benchmarks; not a target)"
  echo
  print_header
  local n
  for n in 1 100; do
    local db=$WORK/scale-$n.db label=$(( n * 10000 ))
    "$OURS" keys list --database-url "$db" >/dev/null   # creates the schema
    echo "seeding $label baselines ..." >&2
    python3 bench/seed_baselines.py "$db" "$n" "$RECEIPT" >&2
    local port
    port=$(free_port)
    start "scale-$n" "$port" "$OURS" --storage-type sqlite --database-url "$db" --bind 127.0.0.1 --port "$port" \
      --api-keys "admin:$KEY"
    local pid=$PID url="http://127.0.0.1:$port"
    # The same 100 benchmarks at both sizes: project p000 (PROJECTS=1 names it).
    PROJECT=p PROJECTS=1
    export PROJECT PROJECTS
    scenario "$SCEN1" "$label" "$pid" "$url" 32 latest.lua
    scenario "$SCEN2" "$label" "$pid" "$url" 32 list.lua
    scenario "$SCEN5" "$label" "$pid" "$url" 32 trend.lua
    if [ "$n" -gt 1 ]; then
      PROJECTS=$n
      scenario "$SCEN1" "1M spread" "$pid" "$url" 32 latest.lua
      scenario "$SCEN2" "1M spread" "$pid" "$url" 32 list.lua
      scenario "$SCEN5" "1M spread" "$pid" "$url" 32 trend.lua
    fi
    stop "$pid"
    rm -f "$db" "$db-wal" "$db-shm"
  done
  echo
  echo "targets: p50 at 1,000,000 within 1.5x of p50 at 10,000"
  local s a b
  for s in "$SCEN1" "$SCEN2" "$SCEN5"; do
    a=$(get "$s" 10000 4); b=$(get "$s" 1000000 4)
    printf "  %-30s p50 %6.2f ms -> %6.2f ms  %5sx  %s\n" "$s" "$(awk -v x="$a" 'BEGIN { print x / 1000 }')" \
      "$(awk -v x="$b" 'BEGIN { print x / 1000 }')" "$(ratio "$b" "$a")" "$(verdict "$(ratio "$b" "$a")" 1.5 le)"
  done
  echo "1M spread over 100 projects, for reference (p50 ratio to 10,000):"
  for s in "$SCEN1" "$SCEN2" "$SCEN5"; do
    a=$(get "$s" 10000 4); b=$(get "$s" "1M spread" 4)
    printf "  %-30s p50 %6.2f ms -> %6.2f ms  %5sx\n" "$s" "$(awk -v x="$a" 'BEGIN { print x / 1000 }')" \
      "$(awk -v x="$b" 'BEGIN { print x / 1000 }')" "$(ratio "$b" "$a")"
  done
}

SCEN7="7 POST gate (100 runs x 60 history)"
SCEN7B="7b the same, 4 at once"

run_gate() {
  machine
  echo "ours only, SQLite; seeded straight into the database (bench/seed_baselines.py, with the gate's run summaries):"
  echo "100 benchmarks x 100 versions per project; the gate judges the 100 benchmarks of project p000 against their"
  echo "newest 60 runs each; one CI job at a time (1 connection), then 4 at once"
  echo
  print_header
  GATE_BODY=$WORK/gate.json
  export GATE_BODY
  python3 - "$RECEIPT" "$GATE_BODY" <<'PY'
import json, sys
receipt = json.load(open(sys.argv[1]))
runs = []
for b in range(100):
    r = json.loads(json.dumps(receipt))
    r["bench"]["name"] = f"bench-{b}"
    r["run"]["id"] = f"gate-bench-{b}"
    level = 20 + 5 * b
    for i, s in enumerate(r["samples"]):
        s["wall_ms"] = level + i % 3
    r["stats"]["wall_ms"]["median"] = level + 1
    runs.append({"benchmark": f"bench-{b}", "receipt": r})
json.dump({"runs": runs, "git_ref": "refs/heads/feature", "git_sha": "bench"}, open(sys.argv[2], "w"))
PY
  local n
  for n in 1 100; do
    local db=$WORK/gate-$n.db label=$(( n * 10000 ))
    "$OURS" keys list --database-url "$db" >/dev/null   # creates the schema
    echo "seeding $label baselines ..." >&2
    python3 bench/seed_baselines.py "$db" "$n" "$RECEIPT" >&2
    local port
    port=$(free_port)
    start "gate-$n" "$port" "$OURS" --storage-type sqlite --database-url "$db" --bind 127.0.0.1 --port "$port" \
      --api-keys "admin:$KEY"
    local pid=$PID url="http://127.0.0.1:$port"
    # One gate answered in full first: the run is checked, not just timed.
    curl -sf -X POST "$url/api/v1/projects/p000/gates" -H "Authorization: Bearer $KEY" \
      -H 'Content-Type: application/json' --data-binary "@$GATE_BODY" > "$WORK/gate-answer.json"
    python3 -c 'import json,sys; g=json.load(open(sys.argv[1])); b=g["benchmarks"]; assert len(b)==100, len(b); assert all(x["history_runs"]==60 for x in b), [x["history_runs"] for x in b][:5]; print("gate answer: status", g["status"], "- 100 benchmarks, 60 history runs each", file=sys.stderr)' "$WORK/gate-answer.json"
    scenario "$SCEN7" "$label" "$pid" "$url" 1 gate.lua
    scenario "$SCEN7B" "$label" "$pid" "$url" 4 gate.lua
    stop "$pid"
    rm -f "$db" "$db-wal" "$db-shm"
  done
  echo
  local a b
  b=$(get "$SCEN7" 10000 5)
  printf "  %-44s %8s ms (<= 50)  %s\n" "gate p99 at 10,000 baselines" "$(awk -v x="$b" 'BEGIN { printf "%.2f", x / 1000 }')" \
    "$(verdict "$(awk -v x="$b" 'BEGIN { print x / 1000 }')" 50 le)"
  a=$(get "$SCEN7" 10000 5); b=$(get "$SCEN7" 1000000 5)
  printf "  %-44s %8sx  (<= 1.5)   %s\n" "gate p99 at 1,000,000 / at 10,000" "$(ratio "$b" "$a")" "$(verdict "$(ratio "$b" "$a")" 1.5 le)"
  a=$(get "$SCEN7" 10000 4); b=$(get "$SCEN7" 1000000 4)
  printf "  %-44s %8sx\n" "gate p50 at 1,000,000 / at 10,000" "$(ratio "$b" "$a")"
}

pg_sql() { (cd / && "$PSQL" -XAtq "$DBURL" -c "$1"); }

# queries_per_get URL: GET latest for a few seconds after the cache is warm (the scenario before
# warmed it); prints the PostgreSQL statements (pg_stat_statements, every backend of the database:
# pools, listener, background tasks) and committed transactions (pg_stat_database) per request.
queries_per_get() {
  pg_sql "SELECT pg_stat_statements_reset()" >/dev/null
  local x0 x1 calls requests=0 duration_us p50_us p99_us errors
  x0=$(pg_sql "SELECT pg_stat_clear_snapshot(); SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()" | tail -1)
  eval "$(wrk_run "$1" 32 2 latest.lua 3)"
  sleep 1.2 # PostgreSQL flushes backends' transaction counts at most once a second
  calls=$(pg_sql "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT ILIKE '%pg_stat%'")
  x1=$(pg_sql "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
  awk -v c="$calls" -v x=$(( x1 - x0 )) -v r="$requests" 'BEGIN { if (r > 0) printf "%.4f statements, %.4f transactions (%d statements, %d transactions, %d requests)", c / r, x / r, c, x, r; else print "n/a" }'
}

run_postgres() {
  local initdb pg_ctl
  initdb=$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort | tail -1)
  pg_ctl=$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort | tail -1)
  [ -x "$initdb" ] && [ -x "$pg_ctl" ] || { echo "initdb/pg_ctl not found" >&2; exit 1; }
  local as=() pgdir=$WORK/pg
  mkdir -p "$pgdir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$pgdir"
    chmod 755 "$WORK"
    as=(runuser -u postgres --)
  fi
  local pgport
  pgport=$(free_port)
  (cd / && "${as[@]}" "$initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null)
  # A durable cluster (fsync and synchronous_commit on, the defaults): an acknowledged write is
  # on disk.
  (cd / && "${as[@]}" "$pg_ctl" -D "$pgdir/data" -l "$pgdir/pg.log" -w -t 60 \
    -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_preload_libraries=pg_stat_statements" start >/dev/null)
  PG_STOP="cd / && ${as[*]} $pg_ctl -D $pgdir/data -m immediate stop"
  local dburl="postgres://postgres@127.0.0.1:$pgport/postgres"
  PSQL=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort | tail -1)
  DBURL=$dburl
  pg_sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
  machine
  echo "ours only, $("$pg_ctl" --version | sed 's/^pg_ctl //') (throwaway cluster, fsync on, synchronous_commit on); seed: 100 benchmarks x 30 versions over HTTP"
  echo "two replicas: two wrk processes started together, one per replica, each with half the threads and connections"
  echo
  print_header
  local p1 p2
  p1=$(free_port)
  start pg-a "$p1" "$OURS" --storage-type postgres --database-url "$dburl" --bind 127.0.0.1 --port "$p1" \
    --api-keys "admin:$KEY:bench"
  local pid1=$PID
  python3 bench/seed_http.py "$p1" "$KEY" bench 100 30 "$RECEIPT"
  local u1="http://127.0.0.1:$p1"
  scenario "$SCEN1" "1 replica" "$pid1" "$u1" 32 latest.lua
  local per_get
  per_get=$(queries_per_get "$u1")
  scenario "$SCEN3" "1 replica" "$pid1" "$u1" 8 upload.lua
  scenario "$SCEN6" "1 replica" "$pid1" "$u1" 32 mixed.lua
  p2=$(free_port)
  start pg-b "$p2" "$OURS" --storage-type postgres --database-url "$dburl" --bind 127.0.0.1 --port "$p2" \
    --api-keys "admin:$KEY:bench"
  local pid2=$PID u2="http://127.0.0.1:$p2"
  scenario "$SCEN1" "2 replicas" "$pid1 $pid2" "$u1 $u2" 32 latest.lua
  scenario "$SCEN3" "2 replicas" "$pid1 $pid2" "$u1 $u2" 8 upload.lua
  scenario "$SCEN6" "2 replicas" "$pid1 $pid2" "$u1 $u2" 32 mixed.lua
  local per_get2
  per_get2=$(queries_per_get "$u2")
  stop "$pid1"
  stop "$pid2"
  # The same GET latest load on SQLite, in the same run, for the ratio.
  local p3
  p3=$(free_port)
  start sqlite "$p3" "$OURS" --storage-type sqlite --database-url "$WORK/sqlite.db" --bind 127.0.0.1 \
    --port "$p3" --api-keys "admin:$KEY:bench"
  local pid3=$PID
  python3 bench/seed_http.py "$p3" "$KEY" bench 100 30 "$RECEIPT"
  scenario "$SCEN1" "sqlite" "$pid3" "http://127.0.0.1:$p3" 32 latest.lua
  stop "$pid3"
  echo
  echo "load after run: $(load_note)"
  printf "  %-44s %s\n" "PostgreSQL statements per cached GET latest" "$per_get"
  printf "  %-44s %s\n" "  the same, after the second replica joined" "$per_get2"
  local a b
  a=$(get "$SCEN1" "sqlite" 3); b=$(get "$SCEN1" "1 replica" 3)
  printf "  %-44s %8sx  (>= 0.8)   %s\n" "GET latest req/s, PostgreSQL / SQLite" "$(ratio "$b" "$a")" "$(verdict "$(ratio "$b" "$a")" 0.8 ge)"
  a=$(get "$SCEN1" "1 replica" 3); b=$(get "$SCEN1" "2 replicas" 3)
  printf "  %-44s %8sx  (>= 1.6)   %s\n" "GET latest req/s, two replicas / one" "$(ratio "$b" "$a")" "$(verdict "$(ratio "$b" "$a")" 1.6 ge)"
  a=$(get "$SCEN6" "1 replica" 3); b=$(get "$SCEN6" "2 replicas" 3)
  printf "  %-44s %8sx\n" "mixed req/s, two replicas / one" "$(ratio "$b" "$a")"
}

case "$MODE" in
  default) run_default ;;
  scale) run_scale ;;
  postgres) run_postgres ;;
  gate) run_gate ;;
esac
