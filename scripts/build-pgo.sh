#!/usr/bin/env bash
# The release binary, optimised with a profile of its own serving (PGO): built once
# instrumented, run through the benchmark's traffic for about a minute (every
# transport at 1 KiB to 1 MiB, md5, fresh instances, a compile from an empty cache),
# then built again with the branch and call counts that run recorded. Over hpush it
# takes a quarter to a third off the server's user CPU per object (bench/README.md,
# "Profile-guided optimisation"). The container image and bench/serve.sh use it.
#
# Usage: scripts/build-pgo.sh           prints the binary's path as its last line;
#                                       outputs go under CARGO_TARGET_DIR/pgo/ (the
#                                       profile is made again when the code changes)
#        scripts/build-pgo.sh --train BINARY
#                                       only the training run, with BINARY (CI runs it
#                                       with the dev build, which writes no profile)
# AIS_WASM_PGO_CELL: how long each training cell runs (default 1s).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

train() { # BINARY
  local echo_wasm md5_wasm
  echo_wasm=$("$repo/examples/echo/build.sh" | tail -n 1)
  md5_wasm=$("$repo/examples/md5/build.sh" | tail -n 1)
  # An empty compile cache puts Cranelift in the profile. The load generator is the
  # binary too: its HTTP client is the one direct put and hpull from the target use.
  cache=$(mktemp -d)
  trap 'rm -rf "$cache"' EXIT
  cell() {
    ETL_WASM_CACHE_DIR=$cache "$1" bench serve --duration "${AIS_WASM_PGO_CELL:-1s}" \
      --warmup 100ms "${@:2}" >/dev/null
  }
  cell "$1" --component "$echo_wasm" --sizes 1KiB,64KiB,1MiB --concurrency 1,8
  cell "$1" --component "$md5_wasm" --verify md5 --transports hpush-body,ws --sizes 64KiB,1MiB \
    --concurrency 8
  ETL_WASM_INSTANCE_MODE=fresh cell "$1" --component "$echo_wasm" --transports hpush-body,ws \
    --sizes 1KiB,64KiB --concurrency 8
}

if [[ ${1:-} == --train ]]; then
  train "${2:?usage: scripts/build-pgo.sh --train BINARY}"
  exit
fi

pgo=${CARGO_TARGET_DIR:-$repo/target}/pgo
host=$(rustc -vV | sed -n 's/^host: //p')
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros, which would
# otherwise be instrumented too and write profiles of the build itself.
build() { # RUSTFLAGS TARGET_DIR
  RUSTFLAGS="${RUSTFLAGS:-} $1" cargo build --quiet --locked --release \
    --manifest-path "$repo/Cargo.toml" -p ais-wasm --target "$host" --target-dir "$2"
  echo "$2/$host/release/ais-wasm"
}

echo "build-pgo: the instrumented build" >&2
instrumented=$(build "-Cprofile-generate=$pgo/raw" "$pgo/generate")
# Trained again only when the binary or this script changed since the last profile.
if [[ ! $pgo/merged.profdata -nt $instrumented || ! $pgo/merged.profdata -nt ${BASH_SOURCE[0]} ]]; then
  echo "build-pgo: training" >&2
  rustup -q component add llvm-tools
  rm -rf "$pgo/raw"
  train "$instrumented"
  "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" merge \
    -o "$pgo/merged.profdata" "$pgo/raw"
fi
echo "build-pgo: the optimised build" >&2
# Cargo rebuilds the workspace's crates when the profile changes, not its
# dependencies: theirs stays from the profile of their first build.
build "-Cprofile-use=$pgo/merged.profdata" "$pgo/use"
