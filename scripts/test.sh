#!/usr/bin/env bash
# Install everything the tests need (a virtualenv in .venv, Debian's Chromium
# for the browser tests when run as root) and run the whole suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NBFLOW_VENV:-.venv}
PY=${PYTHON:-python3}

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  else
    echo "chromium is missing and cannot be installed here: browser tests will fail" >&2
  fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[test]"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null

# Lint and types first: seconds, and the house style says both are clean.
"$VENV/bin/ruff" check nbflow tests benchmarks
"$VENV/bin/mypy"

exec timeout 2700 "$VENV/bin/python" -m pytest --durations=25 "$@"
