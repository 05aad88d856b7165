#!/usr/bin/env bash
# Builds this Python strategy into a WebAssembly component of gigaspot:plugin@0.3.0.
#
#   examples/python-strategy/build.sh [OUT.wasm]
#
# Default output: target/guests/wasm32-wasip2/release/python_strategy.wasm (beside the
# Rust guests, where the tests look). Needs python3 with venv and pip (PyPI): the first
# run makes a venv under target/py-plugin/ with the pinned componentize-py
# (requirements.txt); it also writes the generated bindings (for an editor or a type
# checker) to target/py-plugin/bindings/strategy/. A run whose sources, WIT and pinned
# tool are unchanged since the last build does nothing.
#
# `--stub-wasi`: componentize-py's Python runtime imports wasi:sockets (through wasi-libc),
# which the market refuses at load; stubbing every WASI import leaves the component with
# none at all (print, time and os calls trap; `random` is seeded at build time).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
wit="$root/wit/since_v0.3.0"
world="strategy"
out="${1:-$root/target/guests/wasm32-wasip2/release/python_strategy.wasm}"
venv="$root/target/py-plugin/venv"

stamp_of() {
    cat "$0" "$here/requirements.txt" "$here"/*.py "$wit"/*.wit | sha256sum | cut -d' ' -f1
}
stamp="$out.sources-sha256"
mkdir -p "$(dirname "$out")" "$root/target/py-plugin"
# One build at a time (test processes may ask together); the second finds it done.
exec 9>"$root/target/py-plugin/build.lock"
flock 9
if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(stamp_of)" ]; then
    exit 0
fi

if [ "$(cat "$venv/installed-requirements.txt" 2>/dev/null)" != "$(cat "$here/requirements.txt")" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/installed-requirements.txt"
fi
rm -rf "$root/target/py-plugin/bindings/$world"
"$venv/bin/componentize-py" -d "$wit" -w "$world" bindings "$root/target/py-plugin/bindings/$world" >/dev/null
"$venv/bin/componentize-py" -d "$wit" -w "$world" componentize app -p "$here" \
    --stub-wasi -o "$out.partial" >/dev/null
mv "$out.partial" "$out"
stamp_of >"$stamp"
