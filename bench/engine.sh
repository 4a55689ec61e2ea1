#!/usr/bin/env bash
# Engine benchmark (issue #2): builds the release host and the echo, md5 and upper
# examples, then prints `ais-wasm bench engine`'s table. Extra arguments go to the
# command (for example --budget 3s).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
cargo build --release --quiet --locked -p ais-wasm
echo_wasm=$(examples/echo/build.sh | tail -n 1)
md5_wasm=$(examples/md5/build.sh | tail -n 1)
upper_wasm=$(examples/upper/build.sh | tail -n 1)
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
RUST_LOG=warn target/release/ais-wasm bench engine \
  --echo "$echo_wasm" --md5 "$md5_wasm" --upper "$upper_wasm" "$@"
