#!/usr/bin/env bash
# Fuzz every target for a short, bounded time, as scripts/test.sh (and so CI) does:
#
#   fuzz/run.sh [SECONDS]      # SECONDS per target, default 20
#
# Longer runs and what to do with a crash: fuzz/README.md.
set -euo pipefail
seconds=${1:-20}
cd "$(dirname "${BASH_SOURCE[0]}")"

# cargo-fuzz hands cargo and rustc -Z flags (coverage instrumentation): nightly
# features, which stable Rust (the only toolchain here) allows with this variable.
export RUSTC_BOOTSTRAP=1
if [[ "$(cargo fuzz --version 2>/dev/null)" != cargo-fuzz\ 0.13.2* ]]; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

# No sanitizer: the code under test is safe Rust, so AddressSanitizer would only
# slow it down; libFuzzer still catches panics, failed assertions, overflows (debug
# assertions are on), hangs and runaway memory.
cargo fuzz build --sanitizer none
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  echo "fuzz: $target for ${seconds}s"
  # Only libFuzzer's summary and any failure are shown, not its progress lines.
  set +e
  cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
    -dict=fuzz.dict -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>&1 |
    grep -E '^(Done|stat::number_of_executed_units)|panicked|ERROR|SUMMARY|Test unit|Base64'
  status=${PIPESTATUS[0]}
  set -e
  if [[ $status -ne 0 ]]; then
    echo "fuzz: $target failed (exit $status); the input is under fuzz/artifacts/$target" >&2
    exit 1
  fi
done
