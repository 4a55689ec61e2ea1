"""bench/serve.sh's report: medians over the runs of each server, ratios and the goals
of issue #5, from the runs' JSON in OUT.

    serve_report.py report OUT RUNS TRANSFORM SERVER...   the report, in Markdown
    serve_report.py misses OUT RUNS TRANSFORM SERVER...   the cells the transform's goals
                                                          miss, one a line: goal other
                                                          transport size concurrency
"""
import glob
import json
import math
import statistics
import sys
from collections import namedtuple

mode, out, n_runs, transform = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
servers = sys.argv[5:]
base = "ais-wasm"
KiB, MiB = 1 << 10, 1 << 20
MEDIANS = ("objects_per_s", "mib_per_s", "latency_p50_ms", "latency_p99_ms",
           "server_cores", "server_kernel_pct", "mib_per_server_cpu_s", "generator_cores",
           "other_cores")
# A cell whose fastest run is this much faster than its slowest is listed run by run.
UNSTEADY = 1.25
# Goal a: ais-wasm's objects/s at least this times native's, every cell.
GOAL_A = 0.8
# Goal b: ais-wasm's MiB per server CPU second at 64 KiB at least this times Python's.
GOAL_B = 5
# Goal c: md5's objects/s at 64 KiB and 1 MiB at least Python's, and this times native's.
GOAL_C_NATIVE = 0.7
# The goals judged cell by cell against another server, which bench/serve.sh measures
# again where the medians miss (recheck/<name>/), by name: the transform each judges
# (goal b echo only: the runtime's own cost shows there, md5's is mostly the hashing),
# the other server, the metric, the factor, the sizes (None: every size), its line.
Goal = namedtuple("Goal", "transform other metric factor sizes title")
COMPARED = {
    "a": Goal("echo", "native", "objects_per_s", GOAL_A, None,
              f"a. echo, every cell: ais-wasm objects/s >= {GOAL_A}x native"),
    "b": Goal("echo", "python", "mib_per_server_cpu_s", GOAL_B, {64 * KiB},
              "b. echo, 64 KiB, every transport and concurrency: ais-wasm MiB per server "
              f"CPU second >= {GOAL_B}x python"),
    "c-python": Goal("md5", "python", "objects_per_s", 1, {64 * KiB, MiB},
                     "c. md5, 64 KiB and 1 MiB: ais-wasm objects/s >= python"),
    "c-native": Goal("md5", "native", "objects_per_s", GOAL_C_NATIVE, {64 * KiB, MiB},
                     f"c. md5, 64 KiB and 1 MiB: ais-wasm objects/s >= {GOAL_C_NATIVE}x "
                     "native"),
}
UNITS = {"objects_per_s": "objects/s", "mib_per_server_cpu_s": "MiB per server CPU second"}

# Each server's reports, one per run that finished (a server that died leaves none);
# each report's "run" is its round.
reports = {}
for server in servers:
    for run in range(1, n_runs + 1):
        try:
            with open(f"{out}/{server}-{run}.json") as f:
                reports.setdefault(server, []).append(json.load(f) | {"run": run})
        except FileNotFoundError:
            pass
if not reports:
    if mode == "report":
        print("No results.")
    sys.exit()

names = {}  # size in bytes -> label, from the cells


def aggregate(docs):
    """Per cell: medians over the runs whose cell had no errors, errors summed over all."""
    runs = {}
    for doc in docs:
        for c in doc["cells"]:
            key = (c["transport"], c["size_bytes"], c["concurrency"])
            names[c["size_bytes"]] = c["size"]
            runs.setdefault(key, []).append(c | {"run": doc["run"]})
    cells = {}
    for key, found in runs.items():
        good = [c for c in found if c["errors"] == 0 and c["objects"] > 0]
        # The good runs themselves, for the unsteady cells.
        cell = {"runs": len(good), "errors": sum(c["errors"] for c in found), "good": good}
        for metric in MEDIANS:
            values = [c[metric] for c in good if c.get(metric) is not None]
            cell[metric] = statistics.median(values) if values else None
        # Memory counts in runs with errors too: a failing server is no lighter.
        rss = [c["server_peak_rss_bytes"] for c in found if c["server_peak_rss_bytes"]]
        cell["server_peak_rss_bytes"] = max(rss) if rss else None
        cells[key] = cell
    return cells


medians = {server: aggregate(docs) for server, docs in reports.items()}


def value(server, key, metric):
    return medians.get(server, {}).get(key, {}).get(metric)


def fmt(server, key, metric, digits=1):
    """A median, with the number of runs behind it when some had errors or no data."""
    v = value(server, key, metric)
    if v is None:
        return "-"
    runs = medians[server][key]["runs"]
    return f"{v:,.{digits}f}" + (f" ({runs} runs)" if runs < n_runs else "")


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def times(r):
    """Rounded down, so that a miss never shows as the goal."""
    return "-" if r is None else f"{math.floor(r * 100) / 100:.2f}x"


def row(cells):
    print("| " + " | ".join(cells) + " |")


def header(cells):
    row(cells)
    print("|" + "|".join("---" for _ in cells) + "|")


def describe(key):
    return f"{key[0]} {names[key[1]]} c{key[2]}"


def in_goal(g, key):
    return g.sizes is None or key[1] in g.sizes


def short(g, r):
    """Whether a ratio (None: no figure) misses the goal."""
    return r is None or r < g.factor


if mode == "misses":
    for name, g in COMPARED.items():
        if g.transform != transform or g.other not in medians:
            continue
        for key in medians.get(base, {}):
            r = ratio(value(base, key, g.metric), value(g.other, key, g.metric))
            if in_goal(g, key) and short(g, r):
                print(name, g.other, key[0], names[key[1]], key[2])
    sys.exit()


first = reports.get(base, next(iter(reports.values())))[0]["settings"]
length = f"{first['objects']} objects" if first["objects"] else f"{first['duration_s']:g} s"
print(
    f"Medians over {n_runs} run{'s' if n_runs > 1 else ''} of each server, interleaved "
    f"({', '.join(servers)}, then again); each cell's median is over the runs in which "
    f"that cell had no errors, `(k runs)` when fewer. Each cell: {length} after "
    f"{first['warmup_s']:g} s of warm-up, {first['distinct']} distinct objects per size."
)
for server, docs in reports.items():
    print(f"\n### {server}\n")
    print(f"server: `{' '.join(docs[0]['server']['command'])}`"
          + (f"; {len(docs)} of {n_runs} runs reported" if len(docs) < n_runs else "") + "\n")
    header(["transport", "size", "conc", "runs", "objects/s", "MiB/s", "p50 ms", "p99 ms",
            "errors", "srv CPU", "srv sys %", "MiB/srv-CPU-s", "srv RSS MiB", "gen CPU",
            "other CPU"])
    for key, c in medians[server].items():
        def f(metric, digits):
            return "-" if c[metric] is None else f"{c[metric]:,.{digits}f}"
        rss = c["server_peak_rss_bytes"]
        row([key[0], names[key[1]], str(key[2]), str(c["runs"]), f("objects_per_s", 1),
             f("mib_per_s", 1), f("latency_p50_ms", 2), f("latency_p99_ms", 2),
             str(c["errors"]), f("server_cores", 2), f("server_kernel_pct", 0),
             f("mib_per_server_cpu_s", 1),
             "-" if rss is None else f"{rss / MiB:.0f}", f("generator_cores", 2),
             f("other_cores", 2)])


def legend():
    """bench serve's legend, from the first run's table that has it."""
    for server in reports:
        for run in range(1, n_runs + 1):
            try:
                with open(f"{out}/{server}-{run}.md") as f:
                    for line in f:
                        if line.startswith("objects/s and MiB/s:"):
                            return line.strip() + " "
            except FileNotFoundError:
                pass
    return ""


print(f"\n{legend()}Here each column is the median over the runs in which the cell had no "
      "errors, but errors (summed) and srv RSS MiB (the highest) are over all runs.")


def unsteady():
    """Cells whose runs disagree, run by run, with where the server's CPU went."""
    listed = []
    for server, cells in medians.items():
        for key, cell in cells.items():
            speeds = [c["objects_per_s"] for c in cell["good"]]
            if len(speeds) > 1 and max(speeds) >= UNSTEADY * min(speeds):
                listed.append((server, key, cell["good"]))
    if not listed:
        return
    print(f"\n### Unsteady cells\n\nCells whose fastest run made at least {UNSTEADY}x the "
          "objects/s of their slowest, run by run: CPU microseconds per object of the "
          "server (the kernel's part in brackets) and of the load generator, context "
          "switches and TCP segments per object on the whole machine (fewer segments: "
          "the kernel coalesced more writes), the cores used by the rest of the "
          "machine (other processes, hypervisor steal) and the server's CPU by thread "
          "name, in cores (`(exited)`: threads that ended). Other CPU well above 0: the "
          "cell shared the machine. Near 0, with the server's and the generator's CPU per "
          "object up together: the same work cost more on both sides, as when they wake "
          "each other more often (more switches per object) for less work each time, or "
          "the sender's writes were coalesced less (more segments per object).\n")
    header(["server", "cell", "run", "objects/s", "p50 ms", "srv µs/object", "gen µs/object",
            "switches/object", "segments/object", "other CPU", "srv CPU by thread"])
    for server, key, found in listed:
        for c in found:
            def per_object(seconds):
                return 1e6 * (seconds or 0) / c["objects"]
            server_us = per_object(c["server_cpu_s"])
            kernel = server_us * (c["server_kernel_pct"] or 0) / 100
            threads = ", ".join(f"{t['name']} {t['cpu_s'] / c['seconds']:.2f}"
                                for t in c.get("server_threads", [])[:4])
            other = c.get("other_cores")
            switches = c.get("context_switches_per_object")
            segments = c.get("tcp_segments_per_object")
            row([server, describe(key), str(c["run"]), f"{c['objects_per_s']:,.1f}",
                 f"{c['latency_p50_ms']:.2f}", f"{server_us:.1f} ({kernel:.1f})",
                 f"{per_object(c['generator_cpu_s']):.1f}",
                 "-" if switches is None else f"{switches:.2f}",
                 "-" if segments is None else f"{segments:.1f}",
                 "-" if other is None else f"{other:.2f}", threads or "-"])


unsteady()

if base not in medians:
    print(f"\nNo {base} results: no ratios or goals.")
    sys.exit()
others = [s for s in medians if s != base]
transports = list(dict.fromkeys(k[0] for k in medians[base]))
# By transport, as the earlier ratio tables were (the runs go by size).
keys = sorted(medians[base], key=lambda k: (transports.index(k[0]), k[1], k[2]))
sizes = sorted({k[1] for k in keys})
concurrencies = sorted({k[2] for k in keys})


def table(title, metric, rows):
    print(f"\n{title}\n")
    header(["transport", "size", "conc"] + list(medians) + [f"{base}/{o}" for o in others])
    for key in rows:
        r = [ratio(value(base, key, metric), value(o, key, metric)) for o in others]
        row([key[0], names[key[1]], str(key[2])] + [fmt(s, key, metric) for s in medians]
            + [times(x) for x in r])


print("\n## Ratios of the medians")
for conc in concurrencies:
    table(f"objects/s at concurrency {conc} (higher is better; `-`: errors in every run or "
          "no data)", "objects_per_s", [k for k in keys if k[2] == conc])
size = 64 * KiB if 64 * KiB in sizes else sizes[0]
table(f"MiB per server CPU second at {names[size]} (higher is better)",
      "mib_per_server_cpu_s", [k for k in keys if k[1] == size])


def cpu_per_object(server, key):
    """Server CPU microseconds per object, and the kernel's part of them."""
    mib, pct = value(server, key, "mib_per_server_cpu_s"), value(server, key, "server_kernel_pct")
    if not mib or pct is None:
        return None, None
    total = 1e6 * key[1] / (mib * MiB)
    return total, total * pct / 100


if "python" in medians:
    print(f"\nServer CPU per object at {names[size]}, in microseconds. The ceiling is the ratio "
          f"{base} would reach if its user-space time were zero: python's CPU per object over "
          f"{base}'s kernel time per object (system calls and the loopback network stack, "
          "which the same bytes cost any server).\n")
    header(["transport", "size", "conc", f"{base} user", f"{base} kernel", "python",
            f"{base}/python", "ceiling"])
    for key in [k for k in keys if k[1] == size]:
        total, kernel = cpu_per_object(base, key)
        py, _ = cpu_per_object("python", key)
        if total is None or py is None:
            continue
        row([key[0], names[key[1]], str(key[2]), f"{total - kernel:.1f}", f"{kernel:.1f}",
             f"{py:.1f}", times(py / total), times(py / kernel if kernel else None)])


def goal(name):
    """PASS when base's metric is at least the factor x the other server's in every cell of
    the goal, else the misses; then the misses measured again, if they were."""
    g = COMPARED[name]
    if g.transform != transform:
        print(f"- {g.title}: not judged ({g.transform} runs only)")
        return
    rows = [k for k in keys if in_goal(g, k)]
    if not rows:
        sizes = " or ".join(f"{s // MiB}MiB" if s % MiB == 0 else f"{s // KiB}KiB"
                            for s in sorted(g.sizes))
        print(f"- {g.title}: not measured (needs {sizes} in --sizes)")
        return
    if g.other not in medians:
        print(f"- {g.title}: not judged (no {g.other} results)")
        return
    judged = [(k, ratio(value(base, k, g.metric), value(g.other, k, g.metric))) for k in rows]
    misses = [(k, r) for k, r in judged if short(g, r)]
    if not misses:
        k, r = min(judged, key=lambda j: j[1])
        print(f"- {g.title}: PASS, {len(rows)} cells, lowest {times(r)} ({describe(k)}: "
              f"{fmt(base, k, g.metric)} vs {fmt(g.other, k, g.metric)})")
        return
    print(f"- {g.title}: MISS in {len(misses)} of {len(rows)} cells:\n")
    header(["cell", "ratio", base, g.other])
    for k, r in misses:
        row([describe(k), times(r), fmt(base, k, g.metric), fmt(g.other, k, g.metric)])
    print()
    rechecked(name)


def rechecked(name):
    """A goal's misses measured again, each cell on its own, ais-wasm and the goal's other
    server alternated (recheck/<name>/<server>-<round>-<cell>.json), with the floor's
    figure where it ran too."""
    g = COMPARED[name]
    other, metric = g.other, g.metric
    docs = {}
    for path in sorted(glob.glob(f"{out}/recheck/{name}/*.json")):
        server, run, _ = path.rsplit("/", 1)[1].removesuffix(".json").rsplit("-", 2)
        with open(path) as f:
            docs.setdefault(server, []).append(json.load(f) | {"run": int(run)})
    if base not in docs or other not in docs:
        return
    again = {server: aggregate(found) for server, found in docs.items()}
    rounds = max(doc["run"] for doc in docs[base])
    cells = sorted(again[base], key=lambda k: (transports.index(k[0]), k[1], k[2]))
    floor = "floor" in again
    judged = []
    for key in cells:
        a = again[base][key][metric]
        b = again[other].get(key, {}).get(metric)
        judged.append((key, a, b, ratio(a, b)))
    below = [j for j in judged if short(g, j[3])]
    print(f"Measured again after the rounds, each cell on its own, {base} and {other}"
          f"{' (and the floor)' if floor else ''} alternated, {rounds} times each (medians "
          f"of {UNITS[metric]}): {len(below)} of {len(judged)} still below {g.factor}x.\n")
    header(["cell", "ratio in the rounds", base, other, "ratio again"]
           + (["floor", "floor's ratio"] if floor else []))
    for key, a, b, r in judged:
        line = [describe(key), times(ratio(value(base, key, metric), value(other, key, metric))),
                "-" if a is None else f"{a:,.1f}", "-" if b is None else f"{b:,.1f}", times(r)]
        if floor:
            f = again["floor"].get(key, {}).get(metric)
            line += ["-" if f is None else f"{f:,.1f}", times(ratio(f, b))]
        row(line)
    print()


print("\n## Goals (issue #5), from the medians\n")
goal("a")
goal("b")
floor_cells = [k for k in keys if k[1] == 64 * KiB and value("floor", k, "mib_per_server_cpu_s")]
if transform == "echo" and floor_cells and "python" in medians:
    print("\nWhat the machine leaves for goal b: the floor (bench/floor: one thread, no "
          "transform, the kernel's work and little else) against python in the same "
          "cells, what a server that did nothing else would make there:\n")
    header(["cell", "floor/python", f"{base}/python", f"{base}/floor"])
    for k in floor_cells:
        mib = {s: value(s, k, "mib_per_server_cpu_s") for s in (base, "python", "floor")}
        row([describe(k), times(ratio(mib["floor"], mib["python"])),
             times(ratio(mib[base], mib["python"])), times(ratio(mib[base], mib["floor"]))])
    print()
goal("c-python")
goal("c-native")
name = ("d. peak server RSS at 64 KiB, concurrency 32, highest of the transports and runs: "
        "ais-wasm <= python/5")
peaks = {
    s: [value(s, (t, 64 * KiB, 32), "server_peak_rss_bytes") for t in transports]
    for s in (base, "python")
}
if 64 * KiB not in sizes:
    print(f"- {name}: not measured (needs 64KiB in --sizes)")
elif 32 not in concurrencies:
    print(f"- {name}: not measured (needs --concurrency 32)")
elif "python" not in medians:
    print(f"- {name}: not judged (no python results)")
elif None in peaks[base] + peaks["python"]:
    print(f"- {name}: not judged (no memory figures)")
else:
    a, p = max(peaks[base]) / MiB, max(peaks["python"]) / MiB
    print(f"- {name}: {'PASS' if a * 5 <= p else 'MISS'}, {a:.0f} MiB vs {p:.0f} MiB "
          f"({p / a:.1f}x less)")

name = "e. fresh instance per object, 1 KiB and 64 KiB: extra server CPU per object <= 50 µs"
small = [k for k in keys if k[1] in (KiB, 64 * KiB)]
if "fresh" not in medians:
    print(f"- {name}: not measured (needs fresh in --servers)")
elif not small:
    print(f"- {name}: not measured (needs 1KiB or 64KiB in --sizes)")
else:
    extra = {}
    for k in keys:
        (pooled, _), (fresh, _) = cpu_per_object(base, k), cpu_per_object("fresh", k)
        if pooled is not None and fresh is not None:
            extra[k] = (pooled, fresh, fresh - pooled)
    misses = [k for k in small if k not in extra or extra[k][2] > 50]
    worst = max((extra[k][2] for k in small if k in extra), default=None)
    verdict = "MISS" if misses else "PASS"
    print(f"- {name}: {verdict}" + ("" if worst is None else f", at most {worst:.1f} µs")
          + (f", over in {len(misses)} of {len(small)} cells" if misses else "") + "\n")
    print("Server CPU microseconds per object with an instance kept between objects "
          f"({base}) and a new one for each (fresh), every cell; at concurrency 1 also what "
          "each object took longer (1/objects per second):\n")
    header(["cell", base, "fresh", "extra CPU", "extra time at c1"])
    for k, (pooled, fresh, more) in extra.items():
        slower = "-"
        if k[2] == 1:
            a, f = value(base, k, "objects_per_s"), value("fresh", k, "objects_per_s")
            slower = f"{1e6 / f - 1e6 / a:.1f}" if a and f else "-"
        row([describe(k), f"{pooled:.1f}", f"{fresh:.1f}", f"{more:.1f}", slower])
    print()

wanted = [("hpush-body", KiB, 7), ("ws", KiB, 7), ("hpush-body", 64 * KiB, 3),
          ("ws", 64 * KiB, 3), ("hpush-direct-put", KiB, 25), ("ws-direct-put", KiB, 25),
          ("hpull-target", KiB, 25)]
wanted = [((t, s, 8), want) for t, s, want in wanted if (t, s, 8) in medians[base]]
if transform == "echo" and "python" in medians and wanted:
    print("\nFor information (not goals here), echo at concurrency 8, ais-wasm/python "
          "objects/s and what the issue wants:\n")
    header(["cell", "ratio", base, "python", "wanted"])
    for k, want in wanted:
        r = ratio(value(base, k, "objects_per_s"), value("python", k, "objects_per_s"))
        row([describe(k), times(r), fmt(base, k, "objects_per_s"),
             fmt("python", k, "objects_per_s"), f"{want}x"])

print("\nPeak server RSS over all cells and runs (MiB, summed over the process tree):\n")
for server, docs in reports.items():
    peak = max((c["server_peak_rss_bytes"] or 0) for doc in docs for c in doc["cells"])
    print(f"- {server}: {peak / MiB:.0f}")
