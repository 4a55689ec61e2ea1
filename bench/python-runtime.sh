#!/usr/bin/env bash
# AIStore's Python ETL runtime, for comparison benchmarks: the FastAPIServer of the
# `aistore[etl]` package from PyPI (pinned below, installed into a venv under
# target/ on first use), run as AIStore's docs run it: uvicorn, 4 workers, WebSocket
# messages up to 16 GiB, no pings.
#
#   bench/python-runtime.sh TRANSFORM PORT     TRANSFORM: echo, md5 or upper
#   bench/python-runtime.sh install            only install
#
# Needs AIS_TARGET_URL in the environment (the server refuses to start without it).
# NUM_WORKERS overrides the worker count. Made for
#   ais-wasm bench serve --server-cmd "bench/python-runtime.sh echo {port}"
set -euo pipefail
AISTORE_VERSION=2.0.0
usage="usage: $0 echo|md5|upper PORT, or $0 install"
transform=${1:?$usage}
case "$transform" in echo | md5 | upper | install) ;; *)
  echo "$usage" >&2
  exit 2
  ;;
esac
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/target/python-runtime-venv"
stamp="$venv/.aistore-etl-$AISTORE_VERSION"
if [[ ! -f "$stamp" ]]; then
  python=$(command -v python3.11 || command -v python3)
  echo "installing aistore[etl]==$AISTORE_VERSION into $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet "aistore[etl]==$AISTORE_VERSION" >&2
  "$venv/bin/pip" freeze >"$stamp"
fi
[[ $transform == install ]] && exit 0
port=${2:?$usage}
: "${AIS_TARGET_URL:?AIS_TARGET_URL must be set (the FastAPIServer requires it)}"
export BENCH_TRANSFORM=$transform PYTHONUNBUFFERED=1
exec "$venv/bin/uvicorn" bench_etl:fastapi_app \
  --app-dir "$repo/bench/python" \
  --host 127.0.0.1 --port "$port" \
  --workers "${NUM_WORKERS:-4}" \
  --no-access-log --log-level warning \
  --ws-max-size 17179869184 --ws-ping-interval 0 --ws-ping-timeout 86400
