#!/usr/bin/env bash
# Builds this test component (world full) and prints the path of the .wasm as the last
# line. Installs the C tool chain and wit-bindgen on first use.
exec "$(dirname "${BASH_SOURCE[0]}")/../../../../examples/build-c.sh" "$(dirname "${BASH_SOURCE[0]}")" full
