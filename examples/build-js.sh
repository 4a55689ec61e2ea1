#!/usr/bin/env bash
# Shared by every JavaScript example's build.sh: builds the ES module $1/transform.js
# (or $3) against world $2 of wit/etl.wit with componentize-js and prints the .wasm
# path as the last line. The module may import ../js/aistore-etl.js (the helper) and
# other files by relative path, as long as they are inside this repository.
#
# The build tools are pinned in examples/js/package.json + package-lock.json and
# installed with `npm ci` into target/js-guest-npm on first use (and again only when
# the lock file changes). A build is skipped when nothing it depends on changed, so
# a second run takes milliseconds. Output goes to target/js-guests/.
set -euo pipefail
app_dir=$(cd "$1" && pwd)
world=$2
source_file=${3:-transform.js}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pins=$repo/examples/js

tools=${AIS_WASM_JS_TOOLS_DIR:-$repo/target/js-guest-npm}
out_dir=${AIS_WASM_JS_OUT_DIR:-$repo/target/js-guests}
mkdir -p "$tools" "$out_dir"

# One build or install at a time (tests and users may run several build.sh at once).
exec 9>"$out_dir/.lock"
flock 9

cli=$tools/node_modules/@bytecodealliance/componentize-js/src/cli.js
stamp=$tools/.installed
pinned=$(cat "$pins/package.json" "$pins/package-lock.json" | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$pinned" || ! -f "$cli" ]]; then
  echo "installing the pinned JavaScript build tools (npm ci) into $tools" >&2
  rm -f "$stamp"
  cp "$pins/package.json" "$pins/package-lock.json" "$tools/"
  # `npm ci` refuses a lock file that lacks entries for other platforms' optional
  # packages (a lock written where the registry does not serve them); then
  # `npm install --no-save` installs the same locked versions and skips those.
  (cd "$tools" && { npm ci --include=dev --no-audit --no-fund --loglevel=silent ||
    npm install --no-save --include=dev --no-audit --no-fund --loglevel=error; }) >&2
  version=$(node -p "require('$tools/node_modules/@bytecodealliance/componentize-js/package.json').version")
  if [[ "$version" != 0.23.0 ]]; then
    echo "componentize-js $version installed, expected 0.23.0 (see examples/js/package.json)" >&2
    exit 1
  fi
  echo "$pinned" >"$stamp"
fi

name=$(basename "$app_dir")
wasm=$out_dir/$name.wasm
# Everything the component is made of; a change to any of it rebuilds.
key=$(
  {
    echo "world=$world source=$source_file"
    find "$app_dir" "$pins" "$repo/wit" -type f \
      \( -name '*.js' -o -name '*.mjs' -o -name '*.wit' -o -name 'package-lock.json' \) \
      -not -path '*/node_modules/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
)
if [[ -f "$wasm" && "$(cat "$wasm.key" 2>/dev/null)" == "$key" ]]; then
  echo "$wasm"
  exit 0
fi

echo "componentize-js: $name (world $world)" >&2
rm -f "$wasm.key"
# -d http fetch-event: no wasi:http import (the host does not offer it, and a
# transform has no business opening connections).
# componentize-js lets the module import files only under the directory it runs in
# (mapped to / while it snapshots the module): run it from the repository, so that
# examples/js/aistore-etl.js is importable from any example.
cd "$repo"
node "$cli" "$app_dir/$source_file" --wit "$repo/wit" --world-name "$world" \
  -d http fetch-event -o "$wasm.tmp" >&2
mv "$wasm.tmp" "$wasm"
echo "$key" >"$wasm.key"
echo "$wasm"
