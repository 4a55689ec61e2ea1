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
#   fresh     `ais-wasm serve --instance-mode fresh`: a new instance for every object
#             (only when asked for with --servers)
#   floor     bench/floor's `ws-floor epoll`: the least any server can spend on the
#             echo, no transform (only when asked for; echo over ws and hpush-body
#             only, so --transports must name no other)
#
#   bench/serve.sh [--quick] [--runs N] [--recheck N] [--record | --record-as NAME]
#                  [--transform echo|md5] [--servers LIST] [ARGS for bench serve]
#
# The options above may stand anywhere among the ARGS. --servers picks servers by name,
# comma-separated (default: ais-wasm,python,native).
# What a fresh instance per object costs (goal e) is measured on a small matrix:
#   bench/serve.sh --servers ais-wasm,fresh --transports hpush-body,ws \
#     --sizes 1KiB,64KiB,1MiB --concurrency 1,8 --duration 2s --warmup 300ms
# and what the machine leaves for goal b, beside the floor:
#   bench/serve.sh --servers ais-wasm,python,native,floor --transports hpush-body,ws \
#     --sizes 64KiB --duration 2s --warmup 300ms
#
# Throughput on a shared machine varies by ±20% between identical runs, so the servers
# run interleaved, N rounds of ais-wasm, python, native (--runs, default 3), and every
# figure is the median over the runs of each cell that had no errors. From the medians
# (bench/serve_report.py): a table per server, ratio tables and a PASS/MISS line per
# goal of issue #5 that the runs can judge. Results go to target/bench-serve/<time>/
# (each run's JSON, table and server log as <server>-<round>.*, the rechecks' under
# recheck/<goal>/, the medians in ratios.md); --record also writes
# bench/results/<date>-serve[-quick]-<transform>.md, --record-as bench/results/<date>-NAME.md
# (for a partial matrix, which must not replace the full one).
#
# A cell of the matrix runs once per round, minutes away from the same cell on the
# other servers, and a slow minute can put a cell below goal a's 0.8x native or goal
# b's 5x Python. So after the rounds, each cell whose median misses is measured again on
# its own, N times each (--recheck, default 3; 0 for none; about 20 s a cell and server
# with --duration 2s), ais-wasm alternated with the server the goal compares it to:
# native for goal a, python for goal b (and the floor, when it is among the servers),
# python and native for md5's goal c. Each goal says how many are still below.
#
# The default matrix, 8 transports x sizes 1KiB..16MiB x concurrency 1,8,32 x 3.5 s
# (3 s measured after 0.5 s of warm-up), should take 6-9 min per server run. With
# --duration 2s --warmup 300ms, as recorded, timed runs took 4-7 min each, 35-60 min
# for 3 runs of 3 servers. --quick is every size at concurrency 8, 1 s cells, about
# 1 min per server run (10 min in all); ARGS such as --sizes or --duration replace
# its settings. Memory goal d needs concurrency 32.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

command=("$@")
quick=0 record=0 name= transform=echo runs=3 rechecks=3 asked=
# This script's options may stand anywhere; the rest go to bench serve.
passed=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --record-as | --transform | --runs | --recheck | --servers)
      [[ $# -ge 2 ]] || { echo "$1 needs a value" >&2; exit 2; } ;;
  esac
  case "$1" in
    --quick) quick=1 ;;
    --record) record=1 ;;
    --record-as) record=1 name=$2; shift ;;
    --transform) transform=$2; shift ;;
    --runs) runs=$2; shift ;;
    --recheck) rechecks=$2; shift ;;
    --servers) asked=$2; shift ;;
    *) passed+=("$1") ;;
  esac
  shift
done
case "$transform" in echo | md5) ;; *) echo "--transform: echo or md5" >&2; exit 2 ;; esac
IFS=, read -r -a asked <<<"${asked:-ais-wasm,python,native}"
for server in "${asked[@]}"; do
  case "$server" in
    ais-wasm | python | native | fresh) ;;
    floor)
      [[ $transform == echo ]] || { echo "--servers floor: the floor serves echo only" >&2; exit 2; }
      # The floor answers two transports, so they must be asked for by name (clap
      # appends the lists of a repeated --transports).
      transports=
      for ((i = 0; i < ${#passed[@]}; i++)); do
        case "${passed[i]}" in
          --transports) transports+=${passed[i + 1]:-}, ;;
          --transports=*) transports+=${passed[i]#--transports=}, ;;
        esac
      done
      IFS=, read -r -a transports <<<"$transports"
      # None named is refused too (as `none`).
      for transport in "${transports[@]:-none}"; do
        case "$transport" in
          ws | hpush-body) ;;
          *)
            echo "--servers floor: the floor answers ws and hpush-body only: add --transports ws,hpush-body (or one of them)" >&2
            exit 2
            ;;
        esac
      done
      ;;
    *) echo "--servers: a comma-separated list of ais-wasm, python, native, fresh, floor" >&2; exit 2 ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "--runs: a positive number" >&2; exit 2; }
[[ $rechecks =~ ^[0-9]+$ ]] || { echo "--recheck: a number, 0 for none" >&2; exit 2; }
# Named before the runs, so that an hour of them never overwrites an earlier recording;
# the title takes the same date, however late the runs end.
started=$(date +%Y-%m-%d)
if [[ $record == 1 ]]; then
  mode=$([[ $quick == 1 ]] && echo "-quick" || true)
  results="bench/results/$started-${name:-serve$mode-$transform}.md"
  if [[ -e $results ]]; then
    echo "$results exists already: record under another name with --record-as NAME" >&2
    exit 2
  fi
fi

# clap refuses a single-valued option twice and appends lists, so --quick's settings
# give way to those in ARGS.
matrix=()
if [[ $quick == 1 ]]; then
  defaults=(--sizes 1KiB,64KiB,1MiB,16MiB --concurrency 8 --duration 1s --warmup 300ms)
  for ((i = 0; i < ${#defaults[@]}; i += 2)); do
    option=${defaults[i]} given=0
    for arg in "${passed[@]}"; do [[ $arg == "$option" || $arg == "$option="* ]] && given=1; done
    [[ $given == 1 ]] || matrix+=("$option" "${defaults[i + 1]}")
  done
fi

# The image's build: release, optimised with a profile of its own serving. About 15
# minutes the first time, 10 after a change to the host crate.
bin=$(scripts/build-pgo.sh | tail -n 1)
declare -A wasm
wasm[echo]=$(examples/echo/build.sh | tail -n 1)
wasm[md5]=$(examples/md5/build.sh | tail -n 1)

out="$repo/target/bench-serve/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
machine="$(nproc) CPUs, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
# A guest's idle vCPU polls this long before it halts, and a halted one costs every
# wake-up an exit to the hypervisor: it moved these results by a fifth and more.
poll=/sys/module/haltpoll/parameters/guest_halt_poll_ns
if [[ -r $poll ]]; then
  machine+=", idle vCPUs poll $(( $(cat "$poll") / 1000 )) µs before halting"
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
revision=$(git rev-parse --short HEAD)
dirty=$(git diff --name-only HEAD -- host wit guest-sdk Cargo.lock | tr '\n' ' ')
[[ -n "$dirty" ]] && revision+=" plus uncommitted changes to $dirty"

servers=()
for server in "${asked[@]}"; do
  if [[ $server == native ]] && ! "$bin" serve --help | grep -q -- '--native'; then
    echo "this ais-wasm has no serve --native: skipping the native baseline" >&2
    continue
  fi
  servers+=("$server")
done
if [[ " ${servers[*]} " == *" python "* ]]; then
  bench/python-runtime.sh install
fi
if [[ " ${servers[*]} " == *" floor "* ]]; then
  cargo build --release --quiet --locked --manifest-path bench/floor/Cargo.toml
fi

# The server command for bench serve, in $cmd.
server_cmd() {
  case "$1" in
    ais-wasm) cmd=(--component "${wasm[$transform]}") ;;
    python) cmd=(--server-cmd "$repo/bench/python-runtime.sh $transform {port}") ;;
    native) cmd=(--server-cmd "$bin serve --native $transform") ;;
    fresh) cmd=(--server-cmd "$bin serve --component ${wasm[$transform]} --instance-mode fresh") ;;
    floor) cmd=(--server-cmd "$repo/bench/floor/target/release/ws-floor epoll {port}") ;;
  esac
}

failed=()
for ((round = 1; round <= runs; round++)); do
  for server in "${servers[@]}"; do
    server_cmd "$server"
    run="$server-$round"
    echo "== $server, run $round of $runs" >&2
    # A run with errors still reports; its cells with errors are left out of the medians.
    status=0
    RUST_LOG=warn "$bin" bench serve "${cmd[@]}" --label "$server" --verify "$transform" \
      --json "$out/$run.json" --server-log "$out/$run.log" "${matrix[@]}" "${passed[@]}" \
      | tee "$out/$run.md" || status=${PIPESTATUS[0]}
    # 2: the arguments were refused, and would be in every run.
    if [[ $status == 2 ]]; then
      echo "bench serve refused the arguments above: stopping" >&2
      exit 2
    fi
    [[ $status == 0 ]] || failed+=("$run")
    echo
  done
done

# The cells a goal misses in the medians, each measured again on its own, ais-wasm and
# the goal's other server alternated (for goal b the floor too, when it ran).
if [[ $rechecks -gt 0 && " ${servers[*]} " == *" ais-wasm "* ]]; then
  python3 "$repo/bench/serve_report.py" misses "$out" "$runs" "$transform" "${servers[@]}" \
    >"$out/misses"
  # The matrix's own options give way to the cell's.
  options=()
  skip=0
  for arg in "${matrix[@]}" "${passed[@]}"; do
    if [[ $skip == 1 ]]; then skip=0; continue; fi
    case "$arg" in
      --transports | --sizes | --concurrency) skip=1 ;;
      --transports=* | --sizes=* | --concurrency=*) ;;
      *) options+=("$arg") ;;
    esac
  done
  cell=0
  while read -r goal other transport size concurrency; do
    cell=$((cell + 1))
    pair=(ais-wasm "$other")
    if [[ $goal == b && " ${servers[*]} " == *" floor "* ]]; then pair+=(floor); fi
    mkdir -p "$out/recheck/$goal"
    for ((round = 1; round <= rechecks; round++)); do
      for server in "${pair[@]}"; do
        echo "== goal $goal, recheck of $transport $size c$concurrency: $server, $round of $rechecks" >&2
        server_cmd "$server"
        run="$goal/$server-$round-$cell"
        RUST_LOG=warn "$bin" bench serve "${cmd[@]}" --label "$server" --verify "$transform" \
          --json "$out/recheck/$run.json" --server-log "$out/recheck/$run.log" "${options[@]}" \
          --transports "$transport" --sizes "$size" --concurrency "$concurrency" \
          >"$out/recheck/$run.md" || failed+=("recheck/$run")
      done
    done
  done <"$out/misses"
fi
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

python3 "$repo/bench/serve_report.py" report "$out" "$runs" "$transform" "${servers[@]}" \
  >"$out/ratios.md"
cat "$out/ratios.md"
if ! compgen -G "$out/*.json" >/dev/null; then
  echo "no run finished with a report: nothing recorded (see $out/*.md and *.log)" >&2
  exit 1
fi

if [[ $record == 1 ]]; then
  {
    echo "# End-to-end benchmark ($transform), $started"
    echo
    echo "Command: \`bench/serve.sh${command[*]:+ ${command[*]}}\`"
    echo "(release build of $revision): $runs run$([[ $runs == 1 ]] || echo s) of each server, interleaved; every figure"
    echo "below is a median over the runs."
    echo
    echo "Machine: $machine. Load average $load_start before, $load_end after (a shared VM:"
    echo "other builds may have been running; the server and the load generator share the"
    echo "same cores, so the generator's CPU, \`gen CPU\`, is load the server did not get)."
    echo
    if [[ " ${servers[*]} " == *" python "* ]]; then
      echo "Python runtime: aistore[etl] $(sed -n 's/^aistore==//p' target/python-runtime-venv/.aistore-etl-* 2>/dev/null | head -n1),"
      echo "$(grep -E '^(fastapi|uvicorn|uvloop|httptools|websockets)==' target/python-runtime-venv/.aistore-etl-* 2>/dev/null | tr '\n' ' ')"
      echo "(CPython $(target/python-runtime-venv/bin/python -c 'import platform; print(platform.python_version())'), 4 uvicorn workers)."
    fi
    echo "ais-wasm NUM_WORKERS default (2 x CPUs)."
    echo
    echo "## Medians"
    echo
    cat "$out/ratios.md"
  } >"$results"
  echo "wrote $results" >&2
fi
echo "results in $out" >&2
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "errors in: ${failed[*]} (see the tables and $out/*.log)" >&2
  exit 1
fi
