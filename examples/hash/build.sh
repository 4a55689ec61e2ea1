#!/usr/bin/env bash
# Builds this example to a component and prints the path of the .wasm as the last line.
exec "$(dirname "${BASH_SOURCE[0]}")/../build-rust.sh" "$(dirname "${BASH_SOURCE[0]}")"
