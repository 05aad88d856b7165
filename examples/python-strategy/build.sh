#!/usr/bin/env bash
# Builds this Python plugin into a WebAssembly component of gigaspot:plugin@0.3.0.
#
#   ./build.sh [OUT.wasm]          default OUT: target/$NAME.wasm (plugin.env)
#
# Needs python3 with venv and pip (PyPI). The first run makes a venv (target/venv, or
# $GIGASPOT_PY_VENV to share one between projects) with the pinned componentize-py
# (requirements.txt) and writes the generated bindings (for the tests, an editor or a type
# checker) to target/bindings/. A run whose sources, contract and pinned tool are
# unchanged since the last build of OUT does nothing.
#
# `--stub-wasi`: componentize-py's Python runtime imports wasi:sockets (through wasi-libc),
# which the market refuses at load; stubbing every WASI import leaves the component with
# none at all (print, time and os calls trap; `random` is seeded at build time).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=/dev/null
source "$here/plugin.env"
out="${1:-$here/target/$NAME.wasm}"
venv="${GIGASPOT_PY_VENV:-$here/target/venv}"
bindings="$here/target/bindings"

stamp_of() {
    cat "$here/build.sh" "$here/plugin.env" "$here/requirements.txt" "$here"/*.py \
        "$here"/wit/*.wit | sha256sum | cut -d' ' -f1
}
stamp="$out.sources-sha256"
mkdir -p "$(dirname "$out")" "$here/target" "$(dirname "$venv")"
# One build at a time (test processes may ask together); the second finds it done.
exec 9>"$venv.lock"
flock 9
if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(stamp_of)" ]; then
    exit 0
fi
if [ "$(cat "$venv/installed-requirements.txt" 2>/dev/null)" != "$(cat "$here/requirements.txt")" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/installed-requirements.txt"
fi
rm -rf "$bindings"
"$venv/bin/componentize-py" -d "$here/wit" -w "$WORLD" bindings "$bindings" >/dev/null
"$venv/bin/componentize-py" -d "$here/wit" -w "$WORLD" componentize app -p "$here" \
    --stub-wasi -o "$out.partial" >/dev/null
mv "$out.partial" "$out"
stamp_of >"$stamp"
