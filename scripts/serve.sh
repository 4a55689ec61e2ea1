#!/usr/bin/env bash
# Build an example transform and the host, then run `ais-wasm serve` with it on
# 0.0.0.0:8000 (the port AIStore targets call). Usage: scripts/serve.sh [EXAMPLE]
# (default: echo; any directory under examples/ with a build.sh). Extra arguments
# and ETL_WASM_* / AIS_* variables go to `ais-wasm serve`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
example=${1:-echo}
shift || true
[ -x "examples/$example/build.sh" ] || { echo "no example named $example under examples/" >&2; exit 2; }
wasm=$("examples/$example/build.sh" | tail -n 1)
# Not quiet: the first release build takes minutes (link-time optimised, Cargo.toml).
cargo build --release --locked -p ais-wasm
exec "${CARGO_TARGET_DIR:-$repo/target}/release/ais-wasm" serve --component "$wasm" "$@"
