#!/usr/bin/env bash
# End-to-end benchmark (issue #5): the same transform behind three servers, driven by
# `ais-wasm bench serve` (an emulated AIStore target on loopback, every transport,
# every byte verified):
#
#   ais-wasm  `ais-wasm serve --component` with the example component
#   python    AIStore's Python runtime (FastAPIServer, uvicorn, 4 workers:
#             bench/python-runtime.sh)
#   native    `ais-wasm serve --native`: the same transform compiled into the host,
#             behind the same server code (when this build has it)
#
# then ratios from this one run. Results go to target/bench-serve/<time>/ (JSON,
# tables, server logs); --record also writes bench/results/<date>-serve[-quick].md.
#
#   bench/serve.sh [--quick] [--record] [--transform echo|md5] [ARGS for bench serve]
#
# --quick: every transport and size at concurrency 8, 1 s per cell (a smoke run of a
# few minutes); the default matrix is sizes 1KiB..16MiB x concurrency 1,8,32, 3 s.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

quick=0 record=0 transform=echo
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --record) record=1 ;;
    --transform) transform=$2; shift ;;
    *) break ;;
  esac
  shift
done
case "$transform" in echo | md5) ;; *) echo "--transform: echo or md5" >&2; exit 2 ;; esac

cargo build --release --quiet -p ais-wasm
bin="$repo/target/release/ais-wasm"
declare -A wasm
wasm[echo]=$(examples/echo/build.sh | tail -n 1)
wasm[md5]=$(examples/md5/build.sh | tail -n 1)
bench/python-runtime.sh install

matrix=()
if [[ $quick == 1 ]]; then
  matrix=(--sizes 1KiB,64KiB,1MiB,16MiB --concurrency 8 --duration 1s --warmup 300ms)
fi

out="$repo/target/bench-serve/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
machine="$(nproc) CPUs, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
revision=$(git rev-parse --short HEAD)
dirty=$(git diff --name-only HEAD -- host wit guest-sdk Cargo.lock | tr '\n' ' ')
[[ -n "$dirty" ]] && revision+=" plus uncommitted changes to $dirty"

servers=(ais-wasm python)
if "$bin" serve --help | grep -q -- '--native'; then
  servers+=(native)
else
  echo "this ais-wasm has no serve --native: skipping the native baseline" >&2
fi

failed=()
for server in "${servers[@]}"; do
  case "$server" in
    ais-wasm) cmd=(--component "${wasm[$transform]}") ;;
    python) cmd=(--server-cmd "$repo/bench/python-runtime.sh $transform {port}") ;;
    native) cmd=(--server-cmd "$bin serve --native $transform") ;;
  esac
  echo "== $server" >&2
  # A run with errors still reports; the ratios say which servers failed.
  if ! RUST_LOG=warn "$bin" bench serve "${cmd[@]}" --label "$server" --verify "$transform" \
    --json "$out/$server.json" --server-log "$out/$server.log" "${matrix[@]}" "$@" \
    | tee "$out/$server.md"; then
    failed+=("$server")
  fi
  echo
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$out" "${servers[@]}" >"$out/ratios.md" <<'EOF'
"""Ratio tables from the JSON of each server, measured in this run."""
import json
import sys

out, servers = sys.argv[1], sys.argv[2:]
runs = {}
for server in servers:
    try:
        with open(f"{out}/{server}.json") as f:
            runs[server] = {
                (c["transport"], c["size_bytes"], c["concurrency"]): c
                for c in json.load(f)["cells"]
            }
    except FileNotFoundError:
        pass
base = "ais-wasm"
others = [s for s in runs if s != base]
if base not in runs:
    sys.exit("no ais-wasm results")
keys = list(runs[base])
concurrencies = sorted({k[2] for k in keys})
conc = 8 if 8 in concurrencies else concurrencies[-1]
sizes = sorted({k[1] for k in keys})


def label(size):
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{name}"
    return f"{size}B"


def cell(server, key):
    c = runs.get(server, {}).get(key)
    return c if c and c["errors"] == 0 and c["objects"] > 0 else None


def fmt(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def ratio(a, b):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def table(title, metric, rows, digits):
    head = ["transport", "size"] + list(runs) + [f"{base}/{o}" for o in others]
    print(f"\n{title}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for key in rows:
        values = {s: (cell(s, key) or {}).get(metric) for s in runs}
        line = [key[0], label(key[1])] + [fmt(values[s], digits) for s in runs]
        line += [ratio(values[base], values[o]) for o in others]
        print("| " + " | ".join(line) + " |")


transports = list(dict.fromkeys(k[0] for k in keys))
table(
    f"objects/s at concurrency {conc} (higher is better; `-`: errors or no data)",
    "objects_per_s",
    [(t, s, conc) for t in transports for s in sizes if (t, s, conc) in runs[base]],
    1,
)
size = 65536 if 65536 in sizes else sizes[0]
table(
    f"MiB per server CPU second at {label(size)}, concurrency {conc} (higher is better)",
    "mib_per_server_cpu_s",
    [(t, size, conc) for t in transports if (t, size, conc) in runs[base]],
    1,
)
print("\nPeak server RSS over all cells (MiB, summed over the process tree):\n")
for server in runs:
    peak = max((c.get("server_peak_rss_bytes") or 0) for c in runs[server].values())
    print(f"- {server}: {peak / 1048576:.0f}")
EOF
cat "$out/ratios.md"

if [[ $record == 1 ]]; then
  mode=$([[ $quick == 1 ]] && echo "-quick" || true)
  results="bench/results/$(date +%Y-%m-%d)-serve$mode.md"
  {
    echo "# End-to-end benchmark ($transform), $(date +%Y-%m-%d)"
    echo
    echo "Command: \`bench/serve.sh$([[ $quick == 1 ]] && echo " --quick") --record --transform $transform${*:+ $*}\`"
    echo "(release build of $revision)."
    echo
    echo "Machine: $machine. Load average $load_start before, $load_end after (a shared VM:"
    echo "other builds may have been running; the server and the load generator share the"
    echo "same cores, so the generator's CPU, \`gen CPU\`, is load the server did not get)."
    echo
    echo "Python runtime: aistore[etl] $(sed -n 's/^aistore==//p' target/python-runtime-venv/.aistore-etl-* 2>/dev/null | head -n1),"
    echo "$(grep -E '^(fastapi|uvicorn|uvloop|httptools|websockets)==' target/python-runtime-venv/.aistore-etl-* 2>/dev/null | tr '\n' ' ')"
    echo "(CPython $(target/python-runtime-venv/bin/python -c 'import platform; print(platform.python_version())'), 4 uvicorn workers); ais-wasm NUM_WORKERS default (2 x CPUs)."
    echo
    echo "## Ratios (same run)"
    cat "$out/ratios.md"
    for server in "${servers[@]}"; do
      echo
      echo "## $server"
      echo
      sed '1,/^$/d' "$out/$server.md"
    done
  } >"$results"
  echo "wrote $results" >&2
fi
echo "results in $out" >&2
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "errors in: ${failed[*]} (see the tables and $out/*.log)" >&2
  exit 1
fi
