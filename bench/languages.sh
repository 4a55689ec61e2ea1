#!/usr/bin/env bash
# Per-language benchmark (issue #4): builds the md5 and upper examples in Rust,
# Python, JavaScript and C (installing their pinned tool chains), then prints
# `ais-wasm bench components`: size, cold compile, cached start, instantiate+init,
# per-object overhead at 1 KiB and MiB/s at 1 MiB (extra arguments go to it), then
# `ais-wasm bench start`: `serve` from spawn to healthy, compiling and from the cache.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
cargo build --release --quiet --locked -p ais-wasm
components=()
for example in md5 upper python-md5 python-upper js-md5 js-upper c-md5 c-upper; do
  components+=("$("examples/$example/build.sh" | tail -n 1)")
done
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
RUST_LOG=warn target/release/ais-wasm bench components "${components[@]}" "$@"
echo
RUST_LOG=warn target/release/ais-wasm bench start "${components[@]}" --runs 3
