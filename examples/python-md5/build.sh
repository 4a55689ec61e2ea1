#!/usr/bin/env bash
# Builds this example (world buffered-transform) to a component and prints the path
# of the .wasm as the last line. Installs componentize-py on first use.
exec "$(dirname "${BASH_SOURCE[0]}")/../build-python.sh" "$(dirname "${BASH_SOURCE[0]}")" buffered-transform
