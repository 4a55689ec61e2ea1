#!/usr/bin/env bash
# Shared by every Python example's build.sh: builds the app in directory $1 against
# world $2 of wit/etl.wit with componentize-py and prints the .wasm path as the last
# line. The app is module $3 (default: app, i.e. $1/app.py); everything in $1 and
# examples/python (the aistore_etl helper) is on its import path.
#
# componentize-py is installed, pinned, into a venv under target/ on first use.
# A build is skipped when nothing it depends on changed (sources, WIT, pin), so a
# second run takes milliseconds. Output goes to target/python-guests/, never into
# the source tree.
set -euo pipefail
app_dir=$(cd "$1" && pwd)
world=$2
module=${3:-app}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
helper_dir=$repo/examples/python

componentize_py_version=0.25.1
venv=${AIS_WASM_PYTHON_VENV:-$repo/target/python-guest-venv}
out_dir=${AIS_WASM_PYTHON_OUT_DIR:-$repo/target/python-guests}
mkdir -p "$out_dir"

# One build or install at a time (tests and users may run several build.sh at once).
exec 9>"$out_dir/.lock"
flock 9

tool=$venv/bin/componentize-py
if [[ "$("$tool" --version 2>/dev/null)" != "componentize-py $componentize_py_version" ]]; then
  echo "installing componentize-py==$componentize_py_version into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "componentize-py==$componentize_py_version" >&2
fi

name=$(basename "$app_dir")
wasm=$out_dir/$name.wasm
# Everything the component is made of; a change to any of it rebuilds.
key=$(
  {
    echo "componentize-py $componentize_py_version world=$world module=$module"
    find "$app_dir" "$helper_dir" "$repo/wit/etl.wit" -type f -not -path '*/__pycache__/*' \
      -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
)
if [[ -f "$wasm" && "$(cat "$wasm.key" 2>/dev/null)" == "$key" ]]; then
  echo "$wasm"
  exit 0
fi

echo "componentize-py: $name (world $world)" >&2
rm -f "$wasm.key"
# componentize-py writes __pycache__ next to the sources it imports: give it copies.
stage=$out_dir/$name.src
rm -rf "$stage"
mkdir -p "$stage"
cp -R "$app_dir" "$stage/app"
cp -R "$helper_dir" "$stage/helper"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
# VIRTUAL_ENV makes componentize-py search only this venv's site-packages.
VIRTUAL_ENV=$venv "$tool" -d "$repo/wit" -w "$world" \
  componentize -p "$stage/app" -p "$stage/helper" "$module" -o "$wasm.tmp" >&2
mv "$wasm.tmp" "$wasm"
echo "$key" >"$wasm.key"
echo "$wasm"
