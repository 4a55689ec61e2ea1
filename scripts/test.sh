#!/usr/bin/env bash
# Every check and test, as CI runs them. Installs what it needs: the wasm32-wasip2
# target, and (through the examples' build.sh) the pinned Python and JavaScript
# guest toolchains.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

rustup -q component add rustfmt clippy
rustup -q target add wasm32-wasip2

cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo fmt --manifest-path bench/floor/Cargo.toml -- --check
cargo clippy --locked --all-targets -- -D warnings
# bench/floor builds on its own, beside the workspace's outputs.
floor_target=${CARGO_TARGET_DIR:-$repo/target}/floor
cargo clippy --quiet --locked --manifest-path bench/floor/Cargo.toml --target-dir "$floor_target" \
  --all-targets -- -D warnings
# The guest SDK as guests compile it, and the Rust examples and fixtures.
cargo clippy --quiet --locked --manifest-path guest-sdk/Cargo.toml --target wasm32-wasip2 -- -D warnings
export AIS_WASM_GUEST_TARGET_DIR=${AIS_WASM_GUEST_TARGET_DIR:-$repo/target/guests}
for manifest in examples/*/Cargo.toml host/tests/components/*/Cargo.toml; do
  (cd "$(dirname "$manifest")" && CARGO_TARGET_DIR=$AIS_WASM_GUEST_TARGET_DIR \
    cargo clippy --quiet --locked --release --target wasm32-wasip2 -- -D warnings)
done
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --locked --no-deps --workspace
# The container image's build steps, outside Docker (no engine runs here): the
# binary they lay out must run.
image=$(mktemp -d)
trap 'rm -rf "$image"' EXIT
binary=$(AIS_WASM_BUILD_PROFILE=dev scripts/build-image.sh "$image")
"$binary" --version
"$binary" spec --name image-check --format json \
  --component "$(examples/hello/build.sh | tail -n 1)" >/dev/null
echo "image build steps: ok"

# Short bounded fuzzing of the parsers of untrusted input (fuzz/README.md); about
# two minutes, the build included. AIS_WASM_FUZZ_SECONDS=0 skips it.
fuzz_seconds=${AIS_WASM_FUZZ_SECONDS:-20}
if [[ $fuzz_seconds != 0 ]]; then
  fuzz/run.sh "$fuzz_seconds"
fi

# A short soak (the long one: `ais-wasm bench soak --component ECHO.wasm`, 100,000
# objects): every transport, mixed sizes, every byte verified, flat memory and files.
cargo build --quiet --locked -p ais-wasm
target_dir=${CARGO_TARGET_DIR:-$repo/target}
echo_wasm=$(examples/echo/build.sh | tail -n 1)
# Twice: instances kept, then a new one for every object (the server inherits the
# setting), whose slots' kept pages must not add up.
for mode in pooled fresh; do
  ETL_WASM_INSTANCE_MODE=$mode "$target_dir/debug/ais-wasm" bench soak --component "$echo_wasm" \
    --objects 8000 --warmup-objects 2000 --sizes 1KiB,64KiB,256KiB --concurrency 32
done

# The training run of the image's profile-guided build (scripts/build-pgo.sh), with
# the dev build and short cells: its commands must still run, every reply verified.
AIS_WASM_PGO_CELL=50ms scripts/build-pgo.sh --train "$target_dir/debug/ais-wasm"
echo "build-pgo training: ok"

# The benchmark's floor (bench/floor) still speaks what the load generator sends:
# both event loops (io_uring where the kernel allows it), every byte verified (a
# failed or wrong reply fails the run).
cargo build --quiet --locked --manifest-path bench/floor/Cargo.toml --target-dir "$floor_target"
loops=epoll
[[ $(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0) == 0 ]] && loops+=" uring"
for loop in $loops; do
  "$target_dir/debug/ais-wasm" bench serve --server-cmd "$floor_target/debug/ws-floor $loop {port}" \
    --transports ws,hpush-body --sizes 1KiB,1MiB,16MiB --concurrency 1,8 --duration 300ms --warmup 0ms >/dev/null
done
echo "bench/floor: ok"

# Last, so its summary closes the output.
cargo test --locked --workspace

