#!/usr/bin/env bash
# Runs this plugin's own tests (test_*.py, unittest) natively with the build's venv and
# the generated bindings; builds first (a no-op when nothing changed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/build.sh"
venv="${GIGASPOT_PY_VENV:-$here/target/venv}"
cd "$here"
PYTHONPATH="$here/target/bindings:$here" PYTHONDONTWRITEBYTECODE=1 \
    "$venv/bin/python" -m unittest discover -q -s "$here" -p 'test_*.py'
