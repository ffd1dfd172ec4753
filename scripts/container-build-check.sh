#!/usr/bin/env bash
# Runs, outside Docker, the steps the Dockerfile performs, and checks the result behaves like the
# container: a release build with --locked, the binary copied out of the build tree and started
# as a non-root user in an empty working directory it owns, configured only by PERFGATE_*
# environment variables (no flags, no config file, nothing inherited from this shell), then
# /health, one authenticated and one unauthenticated request, and a clean exit on SIGTERM.
#
# Usage: scripts/container-build-check.sh        (respects CARGO_TARGET_DIR)
# As root, runs the server as the system user perfgate-ci (created with useradd when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "container-build-check: FAIL: $*" >&2; exit 1; }

RUN_USER=perfgate-ci
WORK=
STAGE=     # the Dockerfile's build context, copied
RUN_PID=   # the process we started (runuser when root, else the server itself)
SRV_PID=   # the server process
cleanup() {
  local rc=$?
  set +e
  for pid in $SRV_PID $RUN_PID; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null
    fi
  done
  [ -n "$RUN_PID" ] && wait "$RUN_PID" 2>/dev/null
  if [ "$rc" -ne 0 ] && [ -n "$WORK" ] && [ -s "$WORK/server.log" ]; then
    echo "---- server log (last 40 lines) ----" >&2
    tail -n 40 "$WORK/server.log" >&2
    echo "------------------------------------" >&2
  fi
  [ -n "$WORK" ] && rm -rf "$WORK"
  [ -n "$STAGE" ] && rm -rf "$STAGE"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "container-build-check: FAIL: line $LINENO: \`$BASH_COMMAND\` failed" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

command -v curl >/dev/null || fail "curl is required"
command -v python3 >/dev/null || fail "python3 is required"

# 1. The Dockerfile's build step, on what the Dockerfile copies into its build stage and nothing
#    else (a source folder it forgets fails here as it would in `docker build`).
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
STAGE=$(mktemp -d -t perfgate-container-stage.XXXXXX)
copies=$(awk '/^FROM /{stage++} stage == 1 && /^COPY / && !/--from/ {print}' Dockerfile)
[ -n "$copies" ] || fail "no COPY lines in the Dockerfile's build stage"
while read -r _ args; do
  # The plain form only (sources, then one destination): flags, the JSON form and globs would
  # need Docker's own rules, so they fail here rather than being copied differently.
  case "$args" in
    --* | \[* | *[*?]*) fail "unsupported COPY form in the Dockerfile's build stage: COPY $args" ;;
  esac
  read -ra words <<<"$args"
  dest=${words[-1]}
  mkdir -p "$STAGE/$dest"
  for src in "${words[@]:0:${#words[@]}-1}"; do
    [ -e "$src" ] || fail "the Dockerfile copies $src, which does not exist"
    if [ -d "$src" ]; then cp -R "$src/." "$STAGE/$dest/"; else cp "$src" "$STAGE/$dest/"; fi
  done
done <<<"$copies"
echo "==> cargo build --release --locked --bin perfgate-server (in the Dockerfile's build context: $(echo "$copies" | sed 's/^COPY //' | paste -sd';'))"
(cd "$STAGE" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --locked --bin perfgate-server) \
  || fail "release build of the Dockerfile's build context failed"
BUILT=$(realpath "$TARGET_DIR/release/perfgate-server")
[ -x "$BUILT" ] || fail "no binary at $BUILT"
# The code layout build.rs applies to release builds (README, "Code layout").
if [ "${PERFGATE_LINK_ORDER:-}" = 0 ]; then
  echo "code layout: not checked (PERFGATE_LINK_ORDER=0 turned it off)"
else
  command -v readelf >/dev/null && command -v nm >/dev/null \
    || fail "readelf and nm (binutils) are required to check the code layout"
  python3 scripts/link_order.py --check "$BUILT" || fail "the release build did not get its code layout"
fi
rm -rf "$STAGE"

# 2. The runtime image: binary in a root-owned bin dir, an empty working dir owned by the user.
WORK=$(mktemp -d -t perfgate-container-check.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/bin" "$WORK/data"
install -m 755 "$BUILT" "$WORK/bin/perfgate-server"
if [ "$(id -u)" -eq 0 ]; then
  if ! id -u "$RUN_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$RUN_USER" \
      || fail "could not create system user $RUN_USER"
  fi
  chown "$RUN_USER:" "$WORK/data"
  AS_USER=(runuser -u "$RUN_USER" --)
  USER_NAME=$RUN_USER
else
  AS_USER=()
  USER_NAME=$(id -un)
fi
chmod 700 "$WORK/data"

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
KEY=pg_live_$(python3 -c 'import secrets,string;a=string.ascii_letters+string.digits;print("".join(secrets.choice(a) for _ in range(40)))')
BASE=http://127.0.0.1:$PORT

# 3. Start it like the container's ENTRYPOINT: no arguments, environment only.
echo "==> starting perfgate-server as $USER_NAME on 127.0.0.1:$PORT (environment only)"
(
  cd "$WORK/data"
  exec "${AS_USER[@]}" env -i \
    PATH=/usr/local/bin:/usr/bin:/bin HOME="$WORK/data" \
    PERFGATE_BIND="127.0.0.1:$PORT" \
    PERFGATE_DATABASE_URL="$WORK/data/perfgate.db" \
    PERFGATE_API_KEYS="admin:$KEY" \
    PERFGATE_LOG_LEVEL=warn \
    "$WORK/bin/perfgate-server"
) >"$WORK/server.log" 2>&1 &
RUN_PID=$!
if [ ${#AS_USER[@]} -gt 0 ]; then
  # runuser forks: the server is its child, and runuser exits with the server's status.
  for _ in $(seq 50); do
    SRV_PID=$(pgrep -P "$RUN_PID" -x perfgate-server || true)
    [ -n "$SRV_PID" ] && break
    kill -0 "$RUN_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$SRV_PID" ]; then
    kill -0 "$RUN_PID" 2>/dev/null && fail "server process did not appear under runuser (pid $RUN_PID)"
    fail "server exited during start-up"
  fi
else
  SRV_PID=$RUN_PID
fi
SRV_UID=$(ps -o uid= -p "$SRV_PID" | tr -d ' ' || true)
[ -n "$SRV_UID" ] || fail "server exited during start-up"
[ "$SRV_UID" -ne 0 ] || fail "server runs as root"
[ "$SRV_UID" = "$(id -u "$USER_NAME")" ] || fail "server runs as uid $SRV_UID, expected $USER_NAME"

# 4. /health until 200, bounded.
echo "==> waiting for GET /health"
deadline=$((SECONDS + 30))
code=000
while :; do
  kill -0 "$SRV_PID" 2>/dev/null || fail "server exited during start-up"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/health" || true)
  [ "$code" = 200 ] && break
  [ "$SECONDS" -lt "$deadline" ] || fail "GET /health did not answer 200 within 30 s (last: $code)"
  sleep 0.2
done

# 5. Authentication comes from PERFGATE_API_KEYS.
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" || true; }
code=$(status -H "Authorization: Bearer $KEY" "$BASE/api/v1/projects/p/baselines")
[ "$code" = 200 ] || fail "authenticated GET /api/v1/projects/p/baselines answered $code, expected 200"
code=$(status "$BASE/api/v1/projects/p/baselines")
[ "$code" = 401 ] || fail "unauthenticated GET /api/v1/projects/p/baselines answered $code, expected 401"
[ -f "$WORK/data/perfgate.db" ] || fail "no SQLite file at PERFGATE_DATABASE_URL ($WORK/data/perfgate.db)"
DB_OWNER=$(stat -c %U "$WORK/data/perfgate.db")
[ "$DB_OWNER" = "$USER_NAME" ] || fail "database file owned by $DB_OWNER, expected $USER_NAME"
if grep -q 'bootstrap admin key' "$WORK/server.log"; then
  fail "server created a bootstrap key: PERFGATE_API_KEYS was not applied"
fi

# 6. SIGTERM: the server must drain and exit 0 within 30 s.
echo "==> SIGTERM"
start=$SECONDS
kill -TERM "$SRV_PID" || fail "could not send SIGTERM to the server (pid $SRV_PID): it had already exited"
deadline=$((SECONDS + 30))
while kill -0 "$SRV_PID" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || fail "server still running 30 s after SIGTERM"
  sleep 0.1
done
rc=0
wait "$RUN_PID" || rc=$?
pid_done=$RUN_PID
RUN_PID=
SRV_PID=
[ "$rc" -eq 0 ] || fail "server (pid $pid_done) exited with status $rc after SIGTERM, expected 0"

echo "container-build-check: OK (release --locked build, ran as $USER_NAME from env only, /health 200, auth 200/unauth 401, SIGTERM exit 0 in $((SECONDS - start))s)"
