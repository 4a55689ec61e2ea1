#!/usr/bin/env bash
# Builds this example (world buffered-transform) to a component and prints the path of the .wasm
# as the last line. Installs the C tool chain and wit-bindgen on first use.
exec "$(dirname "${BASH_SOURCE[0]}")/../build-c.sh" "$(dirname "${BASH_SOURCE[0]}")" buffered-transform
