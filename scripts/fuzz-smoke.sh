#!/usr/bin/env bash
# cargo fuzz smoke run: each target in fuzz/ for FUZZ_SECONDS (default 30) seconds.
# Usage: scripts/fuzz-smoke.sh [target...]   (default: receipt auth_header names)
#   CARGO_FUZZ_ROOT  where cargo-fuzz is (installed there, pinned, when missing; default
#                    /work/cache/cargo-fuzz when /work/cache exists, else ~/.cache/perfgate/cargo-fuzz)
#   FUZZ_TARGET_DIR  cargo target directory of the fuzz build (default fuzz/target)
# cargo-fuzz builds with nightly flags (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. Fails on any crash, leak or failed assertion (the input is kept in
# fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION=0.13.2
if [ -z "${CARGO_FUZZ_ROOT:-}" ]; then
  # A shared cache when this machine has one, else the user's cache directory.
  if [ -d /work/cache ]; then CARGO_FUZZ_ROOT=/work/cache/cargo-fuzz; else CARGO_FUZZ_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/perfgate/cargo-fuzz; fi
fi
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/fuzz/target}
if ! "$CARGO_FUZZ_ROOT/bin/cargo-fuzz" --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$CARGO_FUZZ_ROOT"
fi
export PATH="$CARGO_FUZZ_ROOT/bin:$PATH"
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(receipt auth_header names)
# The receipt target starts from the real perfgate receipts.
mkdir -p fuzz/corpus/receipt fuzz/corpus/auth_header fuzz/corpus/names
cp tests/fixtures/run-*.json fuzz/corpus/receipt/
printf 'Bearer pg_live_abcdefghijklmnopqrstuvwxyz0123456789' >fuzz/corpus/auth_header/api-key
printf 'Token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjaSJ9.c2ln' >fuzz/corpus/auth_header/jwt
cd fuzz
for t in "${targets[@]}"; do
  echo "--- fuzz target $t (${FUZZ_SECONDS}s)"
  cargo fuzz run --target-dir "$FUZZ_TARGET_DIR" "$t" "corpus/$t" -- \
    -max_total_time="$FUZZ_SECONDS" -print_final_stats=1
done
