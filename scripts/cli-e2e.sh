#!/usr/bin/env bash
# End-to-end check with the published perfgate CLI (0.18.1) against a fresh server on SQLite.
# Usage: scripts/cli-e2e.sh [path/to/perfgate]
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
# The CLI parses the file and sends its own serialization: serde_json without `float_roundtrip`
# can move a float by one ulp (seen: 1.1547005383792515 -> ...17), so floats compare within 1e-12.
python3 - run1.json dl.json <<'PY'
import json, math, sys
def same(a, b, at):
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), at
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0), f"{at}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{at}: keys differ"
        for k in a:
            same(a[k], b[k], f"{at}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{at}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{at}[{i}]")
    else:
        assert a == b, f"{at}: {a!r} != {b!r}"
same(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), "receipt")
PY
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
# Decision ledger: real receipts from `perfgate decision evaluate` (the recipe of the CLI's own
# structured-decision test: a baseline, a check, then a controlled compare receipt so that the
# tradeoff is deterministic), uploaded and read back with every `perfgate decision` command that
# talks to a server, and `perfgate ledger doctor`. DECISION_FIXTURES_DIR=dir copies the receipts
# there (that is how tests/fixtures got theirs).
mkdir decisions && cd decisions
cat > perfgate.toml <<'TOML'
[defaults]
repeat = 1
warmup = 0
threshold = 10.0
warn_factor = 0.50
noise_threshold = 1.0
noise_policy = "warn"
baseline_dir = "baselines"
out_dir = "artifacts/perfgate"

[[bench]]
name = "parser"
command = ["true"]

[[scenario]]
name = "checkout"
weight = 1.0
bench = "parser"

[[tradeoff]]
name = "wall-for-rss"
if_failed = "max_rss_kb"
downgrade_to = "warn"

[[tradeoff.require]]
metric = "wall_ms"
min_improvement_ratio = 1.10
TOML
local_perfgate() { env -u PERFGATE_SERVER_URL -u PERFGATE_API_KEY -u PERFGATE_PROJECT "$PERFGATE" "$@"; }
local_perfgate check --config perfgate.toml --all
local_perfgate baseline promote --config perfgate.toml --all
local_perfgate check --config perfgate.toml --all --require-baseline || true  # exit code = verdict
controlled_compare() {  # wall_ms current (baseline 100), max_rss_kb 12x: a failed memory budget
  python3 - "$1" <<'PY'
import json, sys
wall = float(sys.argv[1])
json.dump({
    "schema": "perfgate.compare.v1",
    "tool": {"name": "perfgate", "version": "0.18.1"},
    "bench": {"name": "parser", "command": ["true"], "repeat": 1, "warmup": 0},
    "baseline_ref": {"path": "baselines/parser.json", "run_id": "parser-baseline"},
    "current_ref": {"path": "artifacts/perfgate/parser/run.json", "run_id": "parser-current"},
    "budgets": {},
    "deltas": {
        "wall_ms": {"baseline": 100.0, "current": wall, "ratio": wall / 100.0,
                    "pct": (wall - 100.0) / 100.0, "regression": max(0.0, (wall - 100.0) / 100.0),
                    "status": "pass"},
        "max_rss_kb": {"baseline": 100.0, "current": 1200.0, "ratio": 12.0, "pct": 11.0,
                       "regression": 11.0, "status": "fail"},
    },
    "verdict": {"status": "fail", "counts": {"pass": 1, "warn": 0, "fail": 1, "skip": 0},
                "reasons": ["max_rss_kb_fail"]},
}, open("artifacts/perfgate/parser/compare.json", "w"), indent=2)
PY
}
# Wall time 20 % faster: the tradeoff is accepted (the failed memory budget becomes a warning).
controlled_compare 80
printf '\n$ perfgate decision evaluate --config perfgate.toml\n'
local_perfgate decision evaluate --config perfgate.toml || true  # exit code = verdict
# Wall time unchanged: the tradeoff is rejected (fail).
mkdir -p rejected
controlled_compare 100
printf '\n$ perfgate decision evaluate --config perfgate.toml --tradeoff-out rejected/tradeoff.json …\n'
local_perfgate decision evaluate --config perfgate.toml --scenario-out rejected/scenario.json \
  --tradeoff-out rejected/tradeoff.json --decision-out rejected/decision.md \
  --index-out rejected/decision.index.json || true
A=artifacts/perfgate
python3 - <<'PY'
import json
a = json.load(open("artifacts/perfgate/tradeoff.json"))
r = json.load(open("rejected/tradeoff.json"))
assert a["schema"] == "perfgate.tradeoff.v1" and a["scenario"] == "checkout", a
assert [x["name"] for x in a["rules"] if x["accepted"]] == ["wall-for-rss"], a["rules"]
assert not any(x["accepted"] for x in r["rules"]), r["rules"]
PY
if [ -n "${DECISION_FIXTURES_DIR:-}" ]; then
  cp "$A/tradeoff.json" "$DECISION_FIXTURES_DIR/tradeoff-accepted.json"
  cp "$A/scenario.json" "$DECISION_FIXTURES_DIR/scenario-checkout.json"
  cp "$A/decision.index.json" "$DECISION_FIXTURES_DIR/decision-index.json"
  cp rejected/tradeoff.json "$DECISION_FIXTURES_DIR/tradeoff-rejected.json"
fi

printf '\n$ perfgate ledger doctor (empty ledger)\n'
"$PERFGATE" ledger doctor | tee doctor0.txt
grep -q "History: reachable (0 decision record(s) visible)" doctor0.txt
step decision upload --file "$A/tradeoff.json" --scenario-receipt "$A/scenario.json" \
  --index "$A/decision.index.json" --git-ref refs/heads/main --git-sha 0123abc
step decision upload --file rejected/tradeoff.json --scenario-receipt rejected/scenario.json
step decision latest
step decision history
printf '\n$ perfgate decision history --accepted --rule wall-for-rss --scenario checkout\n'
"$PERFGATE" decision history --accepted --rule wall-for-rss --scenario checkout | tee accepted.txt
grep -q "(1 of 1)" accepted.txt
printf '\n$ perfgate decision history --status fail --verdict fail --review-required false\n'
"$PERFGATE" decision history --status fail --verdict fail --review-required false | tee failed.txt
grep -q "(1 of 1)" failed.txt
step decision debt
step decision debt --days 0
step decision export --out decisions.jsonl
test "$(wc -l < decisions.jsonl)" = 2
step decision export --format json --days 0 --out decisions.json
python3 - <<'PY'
import json
d = json.load(open("decisions.json"))
assert d["exported"] == 2, d
newest, oldest = d["decisions"]
assert newest["accepted_rules"] == [] and newest["status"] == "fail", newest
assert oldest["accepted_rules"] == ["wall-for-rss"] and oldest["git_sha"] == "0123abc", oldest
assert oldest["tradeoff_receipt"] == json.load(open("artifacts/perfgate/tradeoff.json"))
assert oldest["scenario_receipt"] == json.load(open("artifacts/perfgate/scenario.json"))
assert oldest["artifact_index"] == json.load(open("artifacts/perfgate/decision.index.json"))
print("exported decisions match the uploaded receipts")
PY
printf '\n$ perfgate ledger doctor\n'
"$PERFGATE" ledger doctor | tee doctor.txt
grep -q "History: reachable (2 decision record(s) visible)" doctor.txt
grep -q "Prune dry-run: available (2 record(s) matched; dry-run deleted 0)" doctor.txt
printf '\n$ perfgate decision prune --older-than 0d --dry-run\n'
"$PERFGATE" decision prune --older-than 0d --dry-run | tee prune-dry.txt
grep -q "2 record(s) older than" prune-dry.txt
if "$PERFGATE" decision prune --older-than 0d 2>/dev/null; then
  echo "prune without --force must refuse" >&2; exit 1
fi
step decision prune --older-than 30d --force
test "$(curl -fs "$PERFGATE_SERVER_URL/projects/e2e/decisions" -H "Authorization: Bearer $KEY" \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["pagination"]["total"])')" = 2
printf '\n$ perfgate decision prune --older-than 0d --force\n'
"$PERFGATE" decision prune --older-than 0d --force | tee prune.txt
grep -q "Pruned 2 decision record(s)" prune.txt
printf '\n$ perfgate decision history (after the prune)\n'
"$PERFGATE" decision history | tee after.txt
grep -q "No decisions found" after.txt
test "$(curl -fs "$PERFGATE_SERVER_URL/audit?resource_type=decision" -H "Authorization: Bearer $KEY" \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["pagination"]["total"])')" = 4
echo "decision ledger: uploads and prunes audited"
cd ..

echo
echo "CLI end-to-end: OK"
