#!/usr/bin/env bash
# Start-up (issue #5, goal f): builds the release host and every Rust example, then
# prints `ais-wasm bench start` for them: from spawning `ais-wasm serve --component`
# to the first 200 from GET /health, once with an empty compile cache and --runs times
# (default 5) from the cache, and PASS when every start from the cache took at most 1 s.
#
#   bench/start.sh [--record] [ARGS for bench start]
#
# --record also writes bench/results/<date>-start.md.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

record=0
if [[ ${1:-} == --record ]]; then
  record=1
  shift
fi

cargo build --release --quiet --locked -p ais-wasm
components=()
for example in echo md5 upper hash hello; do
  components+=("$("examples/$example/build.sh" | tail -n 1)")
done
machine="$(nproc) CPUs, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), \
kernel $(uname -r)"
json=$(mktemp)
trap 'rm -f "$json"' EXIT
table=$(RUST_LOG=warn target/release/ais-wasm bench start "${components[@]}" --json "$json" "$@")
verdict=$(python3 - "$json" <<'EOF'
import json
import sys

starts = json.load(open(sys.argv[1]))
slowest = max(starts, key=lambda s: max(s["cached_ms"]))
ms = max(slowest["cached_ms"])
print(f"- f. start-up from the compile cache, Rust examples: healthy within 1 s: "
      f"{'PASS' if ms <= 1000 else 'MISS'}, slowest {ms:.0f} ms ({slowest['component']})")
EOF
)
report="$table

## Goal (issue #5)

$verdict"
echo "$report"

if [[ $record == 1 ]]; then
  results="bench/results/$(date +%Y-%m-%d)-start.md"
  {
    echo "# Start-up, $(date +%Y-%m-%d)"
    echo
    echo "Command: \`bench/start.sh --record${*:+ $*}\` (release build of $(git rev-parse --short HEAD))."
    echo
    echo "Machine: $machine, load average $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "$report"
  } >"$results"
  echo "wrote $results" >&2
fi
