#!/usr/bin/env bash
# The build steps of the container image, runnable (and tested) outside Docker:
# builds ais-wasm and lays out the runtime image's files under OUT_DIR:
#   OUT_DIR/usr/local/bin/ais-wasm   the stripped binary
#   OUT_DIR/var/cache/ais-wasm/      the compile cache (a volume in the image)
# Usage: scripts/build-image.sh OUT_DIR. The binary is scripts/build-pgo.sh's, optimised
# with a profile of its own serving; AIS_WASM_BUILD_PROFILE=dev builds a plain dev
# binary instead, faster (tests).
set -euo pipefail
out=${1:?usage: scripts/build-image.sh OUT_DIR}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ ${AIS_WASM_BUILD_PROFILE:-release} == dev ]]; then
  cargo build --quiet --locked --manifest-path "$repo/Cargo.toml" -p ais-wasm
  built=${CARGO_TARGET_DIR:-$repo/target}/debug/ais-wasm
else
  built=$("$repo/scripts/build-pgo.sh" | tail -n 1)
fi

install -d "$out/usr/local/bin" "$out/var/cache/ais-wasm"
install -m 0755 "$built" "$out/usr/local/bin/ais-wasm"
strip "$out/usr/local/bin/ais-wasm"
chmod 0700 "$out/var/cache/ais-wasm"
echo "$out/usr/local/bin/ais-wasm"
