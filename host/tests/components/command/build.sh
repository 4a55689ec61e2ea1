#!/usr/bin/env bash
# Builds this test component and prints the path of the .wasm as the last line.
exec "$(dirname "${BASH_SOURCE[0]}")/../../../../examples/build-rust.sh" "$(dirname "${BASH_SOURCE[0]}")"
