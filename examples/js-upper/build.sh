#!/usr/bin/env bash
# Builds this example (world streaming-transform) to a component and prints the path of the .wasm
# as the last line. Installs the pinned componentize-js (npm ci) on first use.
exec "$(dirname "${BASH_SOURCE[0]}")/../build-js.sh" "$(dirname "${BASH_SOURCE[0]}")" streaming-transform
