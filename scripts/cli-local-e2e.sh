#!/usr/bin/env bash
# Local mode end to end with the published perfgate CLI (0.18.1): `perfgate run --local-db` and
# `perfgate check --local-db` post their receipts, without a credential, to project `default` of a
# `perfgate-server --local`; the baselines are then read back through the API, also without one.
# The server uses a free port (PERFGATE_LOCAL_DB points the CLI at it) and a data directory in a
# temporary directory (XDG_DATA_HOME), so neither port 8484 nor the user's data are touched.
# Usage: scripts/cli-local-e2e.sh [path/to/perfgate]
# Installs the CLI into bench/.cache/perfgate-cli the first time when no path is given.
set -euo pipefail
cd "$(dirname "$0")/.."
PERFGATE=${1:-}
if [ -z "$PERFGATE" ]; then
  PERFGATE=bench/.cache/perfgate-cli/bin/perfgate
  [ -x "$PERFGATE" ] || cargo install perfgate-cli --version 0.18.1 --locked --debug --root bench/.cache/perfgate-cli
fi
PERFGATE=$(realpath "$PERFGATE")
cargo build --quiet --bin perfgate-server
BIN=$(realpath "${CARGO_TARGET_DIR:-target}/debug/perfgate-server")
# No setting of the caller's (a PERFGATE_API_KEY, a PERFGATE_DATABASE_URL) may leak in.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^PERFGATE_' || true)
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
export XDG_DATA_HOME=$WORK/xdg HOME=$WORK/home
mkdir -p "$HOME" "$WORK/bench"
"$BIN" --local --port "$PORT" --log-format pretty > "$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
API=http://127.0.0.1:$PORT/api/v1
export PERFGATE_LOCAL_DB=$API
fail() { echo "FAIL: $*" >&2; echo "--- server log" >&2; cat "$WORK/server.log" >&2; exit 1; }

grep -q "ready in local mode" "$WORK/server.log" || fail "no local mode start-up line"
grep -q "Dashboard:  http://127.0.0.1:$PORT/" "$WORK/server.log" || fail "no dashboard address"
test -f "$XDG_DATA_HOME/perfgate-server/local.db" || fail "no database in the data directory"
test "$(curl -fs "$API/info" | python3 -c 'import json,sys;print(json.load(sys.stdin)["local_mode"])')" = True \
  || fail "/info does not say local_mode"

cd "$WORK/bench"
step() { printf '\n$ perfgate %s\n' "$*"; "$PERFGATE" "$@"; }
# The JSON of `path` (from stdin when "-") with sorted keys, for comparing receipts.
canon() { python3 -c 'import json,sys;d=json.load(sys.stdin if sys.argv[1]=="-" else open(sys.argv[1]));d=d.get("receipt",d) if sys.argv[2:] else d;print(json.dumps(d,sort_keys=True))' "$@"; }

step run --name bench-local --repeat 3 --out run1.json --local-db -- true 2> run1.err || { cat run1.err; fail "run --local-db"; }
cat run1.err
grep -q "Uploaded to local server: bench-local version" run1.err || fail "run did not upload"
# The baseline is visible through the API without a credential, with the receipt the CLI wrote.
curl -fs "$API/projects/default/baselines/bench-local/latest" > latest.json || fail "latest"
test "$(canon latest.json receipt)" = "$(canon run1.json)" || fail "the stored receipt differs from run1.json"
echo "latest baseline of default/bench-local is the receipt of run1.json"
step run --name bench-local --repeat 3 --out run2.json --local-db -- sleep 0.01
test "$(curl -fs "$API/projects/default/baselines?benchmark=bench-local" \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["pagination"]["total"])')" = 2 || fail "two versions"

# perfgate check --local-db: runs the configured bench, compares with its local baseline and
# uploads the run (a failed upload would only be a warning: the API says whether it arrived).
cat > perfgate.toml <<'TOML'
[defaults]
repeat = 3
warmup = 0

[[bench]]
name = "bench-check"
command = ["true"]
TOML
printf '\n$ perfgate check --config perfgate.toml --bench bench-check --baseline run1.json --local-db\n'
"$PERFGATE" check --config perfgate.toml --bench bench-check --baseline run1.json --local-db 2> check.err || true  # exit code = verdict
cat check.err
grep -q "warning: local-db upload failed" check.err && fail "check could not upload"
curl -fs "$API/projects/default/baselines/bench-check/latest" > check-latest.json || fail "check's baseline missing"
test "$(python3 -c 'import json;print(json.load(open("check-latest.json"))["benchmark"])')" = bench-check || fail "check's baseline"
echo "check --local-db uploaded default/bench-check"

# Keys and the audit log still need a key: the bootstrap key printed at start-up works, nothing else.
test "$(curl -s -o /dev/null -w '%{http_code}' "$API/keys")" = 401 || fail "keys without a key"
KEY=$(grep -o 'pg_live_[A-Za-z0-9]*' "$WORK/server.log" | head -1)
test -n "$KEY" || fail "no bootstrap key printed"
curl -fs "$API/audit?project=default" -H "Authorization: Bearer $KEY" \
  | python3 -c 'import json,sys;e=json.load(sys.stdin)["events"];assert e and all(x["actor"]=="local" for x in e), e' \
  || fail "audit log of the local uploads"
echo "local mode end to end: OK"
