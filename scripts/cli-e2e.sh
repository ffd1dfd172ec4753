#!/usr/bin/env bash
# End-to-end check with the published perfgate CLI (0.18.1) against a fresh server on SQLite.
# Usage: scripts/cli-e2e.sh [path/to/perfgate]
# Installs the CLI into bench/.cache/perfgate-cli the first time when no path is given.
set -euo pipefail
cd "$(dirname "$0")/.."
PERFGATE=${1:-}
if [ -z "$PERFGATE" ]; then
  PERFGATE=bench/.cache/perfgate-cli/bin/perfgate
  [ -x "$PERFGATE" ] || cargo install perfgate-cli --version 0.18.1 --locked --root bench/.cache/perfgate-cli
fi
PERFGATE=$(realpath "$PERFGATE")
cargo build --quiet --bin perfgate-server
BIN=$(realpath "${CARGO_TARGET_DIR:-target}/debug/perfgate-server")
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
KEY=pg_live_clie2eclie2eclie2eclie2eclie2e01
"$BIN" --database-url "$WORK/perfgate.db" --port "$PORT" --api-keys "admin:$KEY" --log-format pretty > "$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

export PERFGATE_SERVER_URL=http://127.0.0.1:$PORT/api/v1 PERFGATE_API_KEY=$KEY PERFGATE_PROJECT=e2e
cd "$WORK"
step() { printf '\n$ perfgate %s\n' "$*"; "$PERFGATE" "$@"; }

step run --name bench-a --repeat 3 --out run1.json -- true
step run --name bench-a --repeat 3 --out run2.json -- sleep 0.01
step baseline upload --file run1.json --benchmark bench-a --version v1
step baseline upload --file run2.json --benchmark bench-a
step baseline list
step baseline history --benchmark bench-a
step baseline download --benchmark bench-a --version v1 --output dl.json
cmp <(python3 -c 'import json,sys;print(json.dumps(json.load(open("run1.json")),sort_keys=True))') \
    <(python3 -c 'import json,sys;print(json.dumps(json.load(open("dl.json")),sort_keys=True))')
echo "downloaded receipt matches the upload"
step compare --baseline @server:bench-a --current run2.json --out cmp.json || true
test -s cmp.json
step promote --current run2.json --to-server --benchmark bench-a --version promoted-1 --normalize
mkdir -p baselines
cp run1.json baselines/render-md.json
python3 - <<'PY'
import json
for i, name in enumerate(["bench-b", "bench-c"]):
    r = json.load(open("run1.json"))
    r["bench"]["name"] = name
    json.dump(r, open(f"baselines/{name}.json", "w"))
PY
step baseline migrate --dir baselines
step baseline list --prefix bench-
step baseline delete --benchmark bench-a --version v1 --force
step baseline list

# Verdicts: compare posts one (best effort), submit-verdict posts another.
step compare --baseline @server:bench-a --current run2.json --out cmp2.json || true
step baseline submit-verdict --compare cmp2.json --git-ref refs/heads/main --git-sha 0123abc
step baseline verdicts --benchmark bench-a
test "$(curl -fs "$PERFGATE_SERVER_URL/projects/e2e/verdicts?benchmark=bench-a" -H "Authorization: Bearer $KEY" \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["pagination"]["total"])')" -ge 2
step baseline flaky --min-score 0.0

# perfgate check with [baseline_server]: compares locally and posts its verdict to the server.
cat > perfgate.toml <<TOML
[defaults]
repeat = 3
warmup = 0

[baseline_server]
url = "$PERFGATE_SERVER_URL"
api_key = "$KEY"
project = "check-project"
fallback_to_local = false

[[bench]]
name = "bench-a"
command = ["true"]
TOML
printf '\n$ perfgate check --config perfgate.toml --bench bench-a --baseline run1.json\n'
env -u PERFGATE_PROJECT -u PERFGATE_API_KEY -u PERFGATE_SERVER_URL \
  "$PERFGATE" check --config perfgate.toml --bench bench-a --baseline run1.json || true  # exit code = verdict
test "$(curl -fs "$PERFGATE_SERVER_URL/projects/check-project/verdicts" -H "Authorization: Bearer $KEY" \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["pagination"]["total"])')" = 1
echo "check posted its verdict"

# Fleet: the same dependency upgrade in two projects.
cat > old.lock <<'LOCK'
version = 3

[[package]]
name = "serde"
version = "1.0.0"
LOCK
sed 's/1.0.0/1.0.1/' old.lock > new.lock
step fleet record-event --project e2e --benchmark bench-a --compare cmp2.json --baseline-lock old.lock --current-lock new.lock --metric binary_bytes
step fleet record-event --project e2e-other --benchmark bench-a --compare cmp2.json --baseline-lock old.lock --current-lock new.lock --metric binary_bytes
step fleet alerts --min-affected 1
step fleet impact --dependency serde
echo
echo "CLI end-to-end: OK"
