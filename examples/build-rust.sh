#!/usr/bin/env bash
# Shared by every Rust example's build.sh (and the test fixtures): builds the crate in
# directory $1 to a WASI 0.2 component and prints the .wasm path as the last line.
# All Rust guests share one target directory, so common crates compile once.
set -euo pipefail
crate_dir=$(cd "$1" && pwd)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)" >&2
  rustup target add wasm32-wasip2 >&2
fi

export CARGO_TARGET_DIR="${AIS_WASM_GUEST_TARGET_DIR:-$repo/target/guests}"
# Flags meant for the host build must not leak into the guest build.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET
# From inside the crate, so its .cargo/config.toml (target features) applies.
(cd "$crate_dir" && cargo build --quiet --locked --release --target wasm32-wasip2 >&2)

name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$crate_dir/Cargo.toml" | head -n 1)
echo "$CARGO_TARGET_DIR/wasm32-wasip2/release/${name//-/_}.wasm"
