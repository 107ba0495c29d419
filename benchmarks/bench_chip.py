"""Chip macro placement (issue 17): method -> proxy cost (and its components), legality, wall time, mean +- std
over seeds, on Ariane133-NG45 (Circuit Training's clustered netlist from the TILOS MacroPlacement flow) and
Circuit Training's tiny test netlists (tests/data/chip).

Starts: ``flow`` (the given .plc: the flow's legalized placement for Ariane) and ``vacuous`` (every movable node
at the canvas centre). Anchor: the flow's legalized placement, proxy 0.6859 with weights 1 / 0.5 / 0.5 (its
header's components, computed by Circuit Training's evaluator, are reproduced by graphmill's cost: see
tests/passes/chip). Goal: SA and RL <= 0.6859 within 15 minutes on 2 cores; the vacuous start within 5% of the
flow start. Every placement is re-scored from its written .plc and checked for legality independently of the
placer's own bookkeeping.

Also measured: the cost's speed (full evaluation of Ariane133, incremental update after moving one macro).

    .venv/bin/python benchmarks/bench_chip.py --speed-only
    nice -n 10 .venv/bin/python benchmarks/bench_chip.py --budget-s 900 --seeds 0,1,2 --jobs 2 --results r.json
    .venv/bin/python benchmarks/bench_chip.py --netlists tiny --budget-s 10      # the tiny netlists only
    .venv/bin/python benchmarks/bench_chip.py --results r.json --table-only      # print a finished run's table

Runs are appended to --results as they finish (resume: finished runs are skipped).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data", "chip")
NETLISTS = {
    "ariane133": ("ariane133_ng45/netlist.pb.txt.gz", "ariane133_ng45/legalized.plc"),
    "sample_clustered": ("sample_clustered/netlist.pb.txt", "sample_clustered/initial.plc"),
    "toy_macro_stdcell": ("toy_macro_stdcell/netlist.pb.txt", "toy_macro_stdcell/initial.plc"),
    "simple_with_coords": ("simple_with_coords/netlist.pb.txt", "simple_with_coords/initial.plc"),
}
ANCHOR = 0.6859


def vacuous_plc(netlist: str, plc: str, dest: str) -> str:
    """A .plc with plc's header and every movable (not fixed) macro and cell at the canvas centre."""
    from graphmill import api
    from graphmill.frontend.chip.plc import placement_text
    from graphmill.ir.ops.chip import CANVAS_KEY

    graph, template = api.chip_load(netlist, plc)
    c = graph.meta[CANVAS_KEY]
    for n in graph:
        if n.op_type in ("HardMacro", "SoftMacro", "StdCell") and not int(n.attr("fixed", 0)):
            n.set_attr("x", c.width / 2)
            n.set_attr("y", c.height / 2)
    with open(dest, "w") as f:
        f.write(placement_text(graph, template))
    return dest


def one_run(job: dict) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from graphmill import api

    net = os.path.join(DATA, NETLISTS[job["netlist"]][0])
    plc = os.path.join(DATA, NETLISTS[job["netlist"]][1])
    with tempfile.TemporaryDirectory() as tmp:
        if job["start"] == "vacuous":
            plc = vacuous_plc(net, plc, os.path.join(tmp, "vacuous.plc"))
        out = os.path.join(tmp, "out.plc")
        t0 = time.perf_counter()
        info: dict = {}
        rep = api.chip_place(net, plc, method=job["method"], output=out, budget_s=job["budget_s"], seed=job["seed"],
                             info=info)
        wall = time.perf_counter() - t0
        again = api.chip_cost(net, out)  # re-read from the written file, legality checked again
    stats = {k: v for k, v in info.items() if k in ("episodes", "iterations", "best_episode", "descent")}
    return dict(job, **{k: again[k] for k in ("proxy", "wirelength", "density", "congestion", "legal")},
                reported_proxy=rep["proxy"], wall_s=wall, load=os.getloadavg()[0], **stats)


def speed() -> dict:
    from graphmill import api
    from graphmill.passes.chip.cost import ProxyCost
    from graphmill.passes.chip.problem import problem_from_graph

    net, plc = (os.path.join(DATA, p) for p in NETLISTS["ariane133"])
    t0 = time.perf_counter()
    graph, _ = api.chip_load(net, plc)
    load_s = time.perf_counter() - t0
    p = problem_from_graph(graph)
    pc = ProxyCost(p)  # compiles (or loads numba's cache)
    times = []
    for _ in range(30):
        t = time.perf_counter()
        pc.evaluate()
        times.append(time.perf_counter() - t)
    rng = np.random.default_rng(0)
    hard = p.hard
    inc = []
    for _ in range(3000):
        m = int(hard[rng.integers(len(hard))])
        x, y = p.x[m], p.y[m]
        t = time.perf_counter()
        pc.move(m, x + rng.normal(0, 20), y + rng.normal(0, 20))
        pc.proxy()
        inc.append(time.perf_counter() - t)
        pc.move(m, x, y)
    return {"load_s": load_s, "full_ms_median": 1e3 * float(np.median(times)), "full_ms_min": 1e3 * min(times),
            "move_and_proxy_ms_median": 1e3 * float(np.median(inc)), "move_and_proxy_ms_p95":
                1e3 * float(np.percentile(inc, 95))}


def table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["netlist"], r["start"], r["method"], r["budget_s"]), []).append(r)
    out = ["| netlist | start | method | budget s | seeds | proxy | wirelength | density | congestion | legal | wall s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]

    def ms(vals):
        a = np.array(vals, dtype=float)
        return f"{a.mean():.4f} ± {a.std():.4f}"

    for (net, start, method, budget), rs in sorted(groups.items()):
        out.append(f"| {net} | {start} | {method} | {budget:g} | {len(rs)} | {ms([r['proxy'] for r in rs])} | "
                   f"{ms([r['wirelength'] for r in rs])} | {ms([r['density'] for r in rs])} | "
                   f"{ms([r['congestion'] for r in rs])} | {sum(r['legal'] for r in rs)}/{len(rs)} | "
                   f"{np.mean([r['wall_s'] for r in rs]):.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--netlists", default="ariane133,tiny", help="comma list; 'tiny' = the three tiny netlists")
    ap.add_argument("--methods", default="fd,sa,rl", help="comma list of placers (graphmill chip place --method)")
    ap.add_argument("--starts", default="flow,vacuous", help="initial placements: the flow's (the given .plc) and/or "
                    "vacuous (every movable node at the canvas centre)")
    ap.add_argument("--seeds", default="0,1,2", help="comma list of seeds per (netlist, start, method)")
    ap.add_argument("--budget-s", type=float, default=900.0, help="seconds per run on Ariane133")
    ap.add_argument("--tiny-budget-s", type=float, default=10.0, help="budget on the tiny netlists")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    ap.add_argument("--results", default="", help="JSON list of finished runs (appended; resumed)")
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--pretrain", metavar="OUT.npz", help="pre-train the RL policy on the tiny netlists and 9 "
                    "generated ones for --budget-s seconds and save it (the shipped graphmill/passes/chip/data/"
                    "rl_policy.npz was made on 2026-12-02 with OMP_NUM_THREADS=1 nice -n 10 python "
                    "benchmarks/bench_chip.py --pretrain OUT.npz --budget-s 300 --seeds 0: 300 s, 37,920 episodes, "
                    "learning rate 3e-4, 2 shared cores at load ~7)")
    args = ap.parse_args()
    if args.pretrain:
        from graphmill import api
        from graphmill.passes.chip import rl
        from graphmill.passes.chip.generate import generate_netlist
        from graphmill.passes.chip.problem import problem_from_graph

        probs = []
        for name in ("sample_clustered", "toy_macro_stdcell", "simple_with_coords"):
            g, _ = api.chip_load(*(os.path.join(DATA, f) for f in NETLISTS[name]))
            probs.append(problem_from_graph(g))
        for s in range(9):
            probs.append(problem_from_graph(generate_netlist(hard=4 + 4 * (s % 5), soft=8 + 8 * (s % 4), ports=8,
                                                             seed=100 + s, grid=6 + 2 * (s % 4))))
        info = rl.pretrain(probs, args.pretrain, budget_s=args.budget_s, seed=int(args.seeds.split(",")[0]),
                           checkpoint=args.pretrain + ".ckpt", progress=lambda d: print(d, flush=True))
        print(info)
        return
    if not args.table_only:
        s = speed()
        print(f"cost speed (Ariane133): load {s['load_s']:.1f} s; full evaluation {s['full_ms_median']:.1f} ms median "
              f"({s['full_ms_min']:.1f} ms best); move one macro + proxy {s['move_and_proxy_ms_median'] * 1e3:.0f} us median "
              f"({s['move_and_proxy_ms_p95'] * 1e3:.0f} us p95)", flush=True)
        if args.speed_only:
            return
    names = []
    for n in args.netlists.split(","):
        names += ["sample_clustered", "toy_macro_stdcell", "simple_with_coords"] if n == "tiny" else [n]
    done: list[dict] = []
    if args.results and os.path.exists(args.results):
        done = json.load(open(args.results))
    key = lambda r: (r["netlist"], r["start"], r["method"], r["seed"], r["budget_s"])  # noqa: E731
    have = {key(r) for r in done}
    jobs = []
    if not args.table_only:
        for net in names:
            budget = args.budget_s if net == "ariane133" else args.tiny_budget_s
            # seed-major: with --jobs 2, a seed's runs of two methods run side by side, under the same load
            for start in args.starts.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    for method in args.methods.split(","):
                        job = {"netlist": net, "start": start, "method": method, "seed": seed, "budget_s": budget}
                        if key(job) not in have:
                            jobs.append(job)
    if jobs:
        print(f"{len(jobs)} runs, {args.jobs} at a time", flush=True)
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as ex:
            for r in ex.map(one_run, jobs):
                done.append(r)
                print(f"  {r['netlist']} {r['start']} {r['method']} seed {r['seed']}: proxy {r['proxy']:.4f} "
                      f"(wl {r['wirelength']:.4f}, den {r['density']:.4f}, cong {r['congestion']:.4f}) "
                      f"legal {r['legal']} {r['wall_s']:.0f} s", flush=True)
                if args.results:
                    with open(args.results + ".tmp", "w") as f:
                        json.dump(done, f, indent=1)
                    os.replace(args.results + ".tmp", args.results)
    print(f"\nanchor: the flow's legalized Ariane133 placement, proxy {ANCHOR} (1 / 0.5 / 0.5)")
    print(table(done))
    for net in names:  # graphmill's RL placer against its peer on the same netlist and start: simulated annealing
        for start in args.starts.split(","):
            for budget in sorted({r["budget_s"] for r in done if r["netlist"] == net and r["start"] == start}):
                same = [r for r in done if (r["netlist"], r["start"], r["budget_s"]) == (net, start, budget)]
                rl_p = [r["proxy"] for r in same if r["method"] == "rl"]
                sa_p = [r["proxy"] for r in same if r["method"] == "sa"]
                if rl_p and sa_p:
                    print(f"{net} from {start}, {budget:g} s: rl / sa proxy = {np.mean(rl_p) / np.mean(sa_p):.3f} "
                          "(lower is better)")
        for method in args.methods.split(","):
            f = [r["proxy"] for r in done if r["netlist"] == net and r["method"] == method and r["start"] == "flow"]
            v = [r["proxy"] for r in done if r["netlist"] == net and r["method"] == method and r["start"] == "vacuous"]
            if f and v:
                print(f"{net} {method}: vacuous / flow start = {np.mean(v) / np.mean(f):.3f}"
                      + (f"; flow start <= anchor {ANCHOR}: {np.mean(f) <= ANCHOR}" if net == "ariane133" else ""))


if __name__ == "__main__":
    sys.exit(main())
