#!/usr/bin/env bash
# Shared by every C example's build.sh: builds the C sources in directory $1 (every
# *.c there) against world $2 of wit/etl.wit and prints the .wasm path as the last
# line. examples/c (aistore_etl.h) is on the include path.
#
# Tool chain, installed only when missing:
#   clang + wasm-ld + wasi-libc + the wasm32 compiler-rt builtins (Debian/Ubuntu:
#     apt-get install clang lld wasi-libc libclang-rt-dev-wasm32; or set CC_WASM, WASM_LD,
#     WASI_SYSROOT and CLANG_BUILTINS to another tool chain, e.g. wasi-sdk)
#   wit-bindgen-cli 0.61.1 (cargo install --locked), generates the C bindings
#   wasm-component-ld from the Rust tool chain (ships with rustup's toolchain; the
#     wasm32-wasip2 target uses it), links and wraps the module into a component
#     with its built-in wasip1 reactor adapter
# A build is skipped when nothing it depends on changed. Output: target/c-guests/.
set -euo pipefail
app_dir=$(cd "$1" && pwd)
world=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
helper_dir=$repo/examples/c
wit_bindgen_version=0.61.1
out_dir=${AIS_WASM_C_OUT_DIR:-$repo/target/c-guests}
mkdir -p "$out_dir"

exec 9>"$out_dir/.lock"
flock 9

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

first_command() {
  local c
  for c in "$@"; do
    if command -v "$c" >/dev/null 2>&1; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}

find_c_toolchain() {
  CC=${CC_WASM:-$(first_command clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14 || true)}
  WASM_LD=${WASM_LD:-$(first_command wasm-ld wasm-ld-19 wasm-ld-18 wasm-ld-17 wasm-ld-16 wasm-ld-15 wasm-ld-14 || true)}
  SYSROOT=${WASI_SYSROOT:-/usr}
  # Debian's wasi-libc: /usr/include/wasm32-wasi and /usr/lib/wasm32-wasi.
  LIBDIR=$SYSROOT/lib/wasm32-wasi
  BUILTINS=${CLANG_BUILTINS:-}
  if [[ -z "$BUILTINS" && -n "$CC" ]]; then
    BUILTINS=$("$CC" --target=wasm32-wasi -print-libgcc-file-name 2>/dev/null || true)
  fi
  [[ -n "$CC" && -n "$WASM_LD" && -f "$LIBDIR/libc.a" && -f "$LIBDIR/crt1-reactor.o" &&
    -f "$SYSROOT/include/wasm32-wasi/stdlib.h" && -f "$BUILTINS" ]]
}

if ! find_c_toolchain; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "need clang, wasm-ld, wasi-libc and the wasm32 builtins; install them or set CC_WASM, WASM_LD, WASI_SYSROOT, CLANG_BUILTINS" >&2
    exit 1
  fi
  echo "installing clang, lld, wasi-libc and the wasm32 builtins (apt-get)" >&2
  as_root apt-get update -qq >&2
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    clang lld wasi-libc libclang-rt-dev-wasm32 >&2; then
    # Older releases name the builtins package after the LLVM version.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 >&2
  fi
  find_c_toolchain || { echo "the C tool chain is still incomplete after apt-get" >&2; exit 1; }
fi

# Where `cargo install` puts it.
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
wit_bindgen=$(first_command wit-bindgen "$cargo_bin/wit-bindgen" || true)
if [[ -z "$wit_bindgen" || "$("$wit_bindgen" --version 2>/dev/null)" != "wit-bindgen-cli $wit_bindgen_version" ]]; then
  if [[ -x "$cargo_bin/wit-bindgen" &&
    "$("$cargo_bin/wit-bindgen" --version)" == "wit-bindgen-cli $wit_bindgen_version" ]]; then
    wit_bindgen=$cargo_bin/wit-bindgen
  else
    echo "installing wit-bindgen-cli $wit_bindgen_version (cargo install, a few minutes)" >&2
    cargo install --quiet --locked wit-bindgen-cli --version "$wit_bindgen_version" >&2
    wit_bindgen=$cargo_bin/wit-bindgen
  fi
fi

rust_host=$(rustc -vV | sed -n 's/^host: //p')
component_ld=$(rustc --print sysroot)/lib/rustlib/$rust_host/bin/wasm-component-ld
if [[ ! -x "$component_ld" ]]; then
  component_ld=$(first_command wasm-component-ld || true)
  if [[ -z "$component_ld" ]]; then
    echo "wasm-component-ld not found: use a Rust tool chain >= 1.82 (rustup) or cargo install wasm-component-ld" >&2
    exit 1
  fi
fi

name=$(basename "$app_dir")
build=$out_dir/$name
wasm=$out_dir/$name.wasm
key=$(
  {
    echo "world=$world"
    "$CC" --version | head -n 1
    "$wit_bindgen" --version
    "$component_ld" --version
    echo "$SYSROOT $BUILTINS"
    sha256sum "${BASH_SOURCE[0]}"
    find "$app_dir" "$helper_dir" "$repo/wit" -type f \( -name '*.c' -o -name '*.h' -o -name '*.wit' \) \
      -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
)
if [[ -f "$wasm" && "$(cat "$wasm.key" 2>/dev/null)" == "$key" ]]; then
  echo "$wasm"
  exit 0
fi

echo "clang: $name (world $world)" >&2
rm -rf "$build" "$wasm.key"
mkdir -p "$build/bindings"
"$wit_bindgen" c "$repo/wit" --world "$world" --out-dir "$build/bindings" >/dev/null
world_c=${world//-/_}

# -msimd128: wasmtime runs WebAssembly SIMD natively, and clang vectorises byte loops
# with it, as it cannot without.
objects=()
for src in "$app_dir"/*.c "$build/bindings/$world_c.c"; do
  obj=$build/$(basename "${src%.c}").o
  "$CC" --target=wasm32-wasi --sysroot="$SYSROOT" -O2 -msimd128 -Wall -Wextra -Werror=implicit-function-declaration \
    -I "$build/bindings" -I "$helper_dir" -I "$app_dir" -c "$src" -o "$obj" >&2
  objects+=("$obj")
done

# crt1-reactor.o: a library-style module (no main) whose _initialize runs the C
# constructors once, when the host instantiates it. The *_component_type.o object
# carries the world, which wasm-component-ld turns into the component's interface.
"$component_ld" --wasm-ld-path "$WASM_LD" --wasi-adapter reactor \
  --no-entry --export=_initialize --strip-all -o "$wasm.tmp" \
  "$LIBDIR/crt1-reactor.o" "${objects[@]}" "$build/bindings/${world_c}_component_type.o" \
  -L"$LIBDIR" -lc "$BUILTINS" >&2
mv "$wasm.tmp" "$wasm"
echo "$key" >"$wasm.key"
echo "$wasm"
