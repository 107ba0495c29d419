"""Device placement benchmark (issue 12's goal table): one table per device count, model x method -> simulated
step time and placement wall time, every method on the same cost model (roofline, the built-in 128x128 chip,
64 B/cycle links with 1 us latency, 16 GB each) in the same run. Training-step graphs (forward + backward: the
papers placed training steps). Beside them: a lower bound on the makespan of any placement under this cost model
(``graphmill/passes/placement/bounds.py``: the largest of the critical path with free transfers, the perfectly
spread work, and the critical path with communication at joins and forks), the learned placers' ratio to the
better of HEFT and METIS (the goal: <= 0.9 on NMT and Inception-V3 with 4 devices), and the samples they needed to
reach the best baseline and the goal. ``--big``: the hierarchical placement of a >= 10,000-op training graph
(4-layer NMT unrolled 50 steps).

Baselines are computed in every ``api.place`` run; one run per learned method gives every baseline's step time
and wall time too (the same problem, the same cost model).

    .venv/bin/python benchmarks/bench_place.py [--devices 2 4 8] [--models ...] [--budget 0] [--big]
        [--reference 800] [--start best|random]
        [--json benchmarks/data/bench_place.json]     # the results, cached; --table prints them again

``--start random`` starts the learned placers from a random placement instead of the best baseline's, so that
"samples to the best baseline" counts what Placeto counts (cached in benchmarks/data/bench_place_scratch.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

from graphmill import api
from graphmill.frontend import zoo
from graphmill.passes.placement import METHODS
from graphmill.util.files import write_json

MODELS = {
    "inception_v3": dict(batch=32),
    "nmt": dict(layers=2, batch=64),
    "transformer_seq2seq": dict(batch=32),
    "rnnlm": dict(batch=64),
    "resnet50": dict(batch=32),
}
LEARNED = ("rl", "hierarchical")
DEFAULT_JSON = os.path.join(os.path.dirname(__file__), "data", "bench_place.json")


def run_one(g, D: int, method: str, budget: int, training: bool, options: dict | None = None) -> dict:
    info: dict = {}
    t0 = time.perf_counter()
    rep = api.place(g.copy(), method=method, devices=D, budget=budget if method in LEARNED else 0,
                    training=training, info=info,
                    options=options if method in LEARNED else None)
    out = {"makespan": rep["makespan"], "baselines": rep["baselines"], "wall_s": info["wall_s"],
           "bounds": info.get("bounds"), "ops": len(rep["placement"]), "total_s": time.perf_counter() - t0}
    if "learned" in info:
        L = info["learned"]
        out["learned"] = {k: L.get(k) for k in ("samples", "steps", "best_from", "samples_to_best_baseline",
                                                  "samples_to_beat_best_baseline", "samples_to_goal", "units",
                                                  "groups", "seconds")}
    return out


def local_search_reference(g, D: int, budget: int, training: bool, seed: int = 0) -> dict:
    """Not a placer of graphmill: evidence of what is reachable under the cost model. From the best baseline,
    ``budget`` random moves of one colocation group (an op with its gradient) to a random other device, each
    kept when the simulated step time drops (the same ``schedule.simulate`` as every method)."""
    import numpy as np

    from graphmill.backends.simulator.devices import PlacementCostModel, device_set
    from graphmill.ir.naming import name_nodes
    from graphmill.passes.placement import BASELINES, build_problem, simulate, training_graph

    g = g.copy()
    name_nodes(g)
    prob = build_problem(training_graph(g) if training else g, PlacementCostModel(device_set(devices=D)))
    t0 = time.perf_counter()
    base = {m: fn(prob, seed) if m == "metis" else fn(prob) for m, fn in BASELINES.items()}
    times = {m: simulate(prob, pl, memory=False).makespan for m, pl in base.items()}
    start = min(times, key=times.get)
    pl, best = np.array(base[start]), times[start]
    groups = np.asarray(prob.groups)
    members = [np.flatnonzero(groups == k) for k in range(int(groups.max()) + 1)]
    rng = np.random.default_rng(seed)
    for _ in range(budget if D > 1 else 0):
        k = int(rng.integers(len(members)))
        old = int(pl[members[k][0]])
        pl[members[k]] = (old + int(rng.integers(1, D))) % D
        s = simulate(prob, pl)
        if s.makespan < best and s.over(prob.capacity) is None:
            best = s.makespan
        else:
            pl[members[k]] = old
    return {"makespan": best, "start": start, "evals": budget, "wall_s": time.perf_counter() - t0}


def table(results: dict) -> str:
    """Markdown tables from the results (one per device count)."""
    lines = []
    for D, rows in sorted(results["tables"].items(), key=lambda kv: int(kv[0])):
        methods = [m for m in METHODS if any(m in r["step"] for r in rows.values())]
        lines.append(f"\n**{D} devices** (training step; step time in Mcycles at 1 GHz = ms; placement wall s)\n")
        lines.append("| model | ops | lower bound | " + " | ".join(methods) +
                     " | rl, hier. / min(HEFT, METIS) | rl, hier. / best baseline | min(HEFT, METIS) / bound"
                     " | samples to reach / beat the best baseline / to the goal (rl; hier.) |")
        lines.append("|" + "---|" * (len(methods) + 7))
        for name, r in rows.items():
            cells = []
            for m in methods:
                if m in r["step"]:
                    cells.append(f"{r['step'][m] / 1e6:.2f} ({r['wall'][m]:.1f}s)")
                else:
                    cells.append("-")
            hm = min(r["step"].get("heft", math.inf), r["step"].get("metis", math.inf))
            ratio = ", ".join(f"{r['step'][m] / hm:.3f}" for m in LEARNED if m in r["step"]) or "-"
            bb = min(t for m, t in r["step"].items() if m not in LEARNED)
            # rows cached before heft-colocated existed lack it: their best baseline is not comparable
            ratio_best = (", ".join(f"{r['step'][m] / bb:.3f}" for m in LEARNED if m in r["step"]) or "-"
                          if "heft-colocated" in r["step"] else "(no heft-colocated)")
            to_best = "; ".join(f"{r.get('samples_to_best', {}).get(m)} / {r.get('samples_to_beat', {}).get(m, '-')}"
                                f" / {r.get('samples_to_goal', {}).get(m)}" for m in LEARNED if m in r["step"])
            lines.append(f"| {name} | {r['ops']} | {r['bound'] / 1e6:.2f} | " + " | ".join(cells) +
                         f" | {ratio} | {ratio_best} | {hm / r['bound']:.2f} | {to_best} |")
            if "reference" in r:
                ref = r["reference"]
                lines.append(f"| ↳ reference local search ({ref['evals']} moves from {ref['start']}) | | | "
                             + " | ".join("" for _ in methods) + f" | {ref['makespan'] / hm:.3f} | | | |")
    if results.get("big"):
        b = results["big"]
        lines.append(f"\nhierarchical, {b['model']}: {b['ops']} ops placed in {b['wall_s']:.0f} s; step time "
                     f"{b['makespan'] / 1e6:.2f} M vs best baseline {b['best_baseline'] / 1e6:.2f} M "
                     f"({b['makespan'] / b['best_baseline']:.3f}); lower bound {b['bound'] / 1e6:.2f} M")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--devices", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--methods", nargs="*", default=list(LEARNED),
                    help="learned methods to run (every baseline is computed in each run)")
    ap.add_argument("--budget", type=int, default=0, help="learned placers' budget (0: their default, 800)")
    ap.add_argument("--inference", action="store_true", help="forward graphs instead of training steps")
    ap.add_argument("--big", action="store_true", help="also place the >=10k-op NMT training graph (hierarchical)")
    ap.add_argument("--json", default=DEFAULT_JSON, help="where the results are cached")
    ap.add_argument("--reference", type=int, default=0, metavar="N",
                    help="also run N moves of a plain local search (not a placer: evidence of what the cost model "
                         "allows; its ratio to min(HEFT, METIS) is printed under the row)")
    ap.add_argument("--start", choices=("best", "random"), default="best",
                    help="the learned placers' start: the best baseline's placement (default) or a random one "
                         "(from scratch: samples to reach the best baseline as Placeto counts them)")
    ap.add_argument("--update", action="store_true",
                    help="add the rows to the cached results (same budget, start and training) instead of starting "
                         "them afresh")
    ap.add_argument("--table", action="store_true", help="print the tables of the cached results; run nothing")
    args = ap.parse_args()
    if args.table:
        with open(args.json) as f:
            print(table(json.load(f)))
        return
    training = not args.inference
    results: dict = {"budget": args.budget or 800, "training": training, "start": args.start, "tables": {}}
    if args.update and os.path.exists(args.json):
        with open(args.json) as f:
            cached = json.load(f)
        if {k: cached.get(k) for k in ("budget", "training", "start")} != {k: results[k] for k in
                                                                           ("budget", "training", "start")}:
            raise SystemExit(f"{args.json}: cached with another budget, start or training step; not updated")
        results = cached
    graphs = {m: zoo.build(m, **MODELS[m]) for m in args.models}
    for D in args.devices:
        rows: dict = results["tables"].setdefault(str(D), {})
        for name, g in graphs.items():
            r: dict = {"step": {}, "wall": {}, "samples_to_best": {}, "samples_to_beat": {}, "samples_to_goal": {}}
            for m in args.methods or ["heft"]:  # no learned method: one run gives every baseline
                one = run_one(g, D, m, args.budget, training, {"start": args.start})
                for b, t in one["baselines"].items():
                    r["step"].setdefault(b, t)
                    r["wall"].setdefault(b, one["wall_s"][b])
                r["step"][m] = one["makespan"]
                r["wall"][m] = one["wall_s"].get(m, one["total_s"])
                if "learned" in one:
                    r["samples_to_best"][m] = one["learned"]["samples_to_best_baseline"]
                    r["samples_to_beat"][m] = one["learned"]["samples_to_beat_best_baseline"]
                    r["samples_to_goal"][m] = one["learned"]["samples_to_goal"]
                    r.setdefault("learned", {})[m] = one["learned"]
                r["bound"], r["bounds"], r["ops"] = one["bounds"]["bound"], one["bounds"], one["ops"]
            hm = min(r["step"].get("heft", math.inf), r["step"].get("metis", math.inf))
            if args.reference:
                r["reference"] = local_search_reference(g, D, args.reference, training)
                print(f"{D} devices, {name}: reference local search {r['reference']['makespan']:,.0f} "
                      f"({r['reference']['makespan'] / hm:.3f} of min(HEFT, METIS))", flush=True)
            learned = [r["step"][m] for m in LEARNED if m in r["step"]]
            print(f"{D} devices, {name} ({r['ops']} ops): bound {r['bound']:,.0f} ({', '.join(f'{k} {v:,.0f}' for k, v in r['bounds'].items() if k != 'bound')}); "
                  + ", ".join(f"{m} {t:,.0f} ({r['wall'][m]:.1f}s)" for m, t in r["step"].items())
                  + (f"; learned / min(HEFT, METIS) {min(learned) / hm:.3f}" if learned else "")
                  + f"; samples to best baseline {r['samples_to_best']}, to beat it {r['samples_to_beat']}, "
                  f"to the goal {r['samples_to_goal']}",
                  flush=True)
            rows[name] = r
            write_json(args.json, results)
    if args.big:
        g = zoo.build("nmt", layers=4, src_len=50, tgt_len=50, batch=64)
        one = run_one(g, 4, "hierarchical", args.budget, True)
        results["big"] = {"model": "nmt layers=4 src_len=tgt_len=50 batch=64, training step, 4 devices",
                          "ops": one["ops"], "wall_s": one["total_s"], "makespan": one["makespan"],
                          "best_baseline": min(one["baselines"].values()), "bound": one["bounds"]["bound"],
                          "learned": one.get("learned")}
        print(f"hierarchical, 4-layer NMT unrolled 50 steps, training step: {one['ops']} ops placed in "
              f"{one['total_s']:.0f} s", flush=True)
        write_json(args.json, results)
    print(table(results))


if __name__ == "__main__":
    main()
