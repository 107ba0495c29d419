"""Issue 15 goal (c): NAHAS joint network x accelerator search against the two two-step baselines, on digits.

Task: scikit-learn's digits (1,797 8x8 images, 10 classes) upsampled bilinearly to each network's resolution;
every candidate network (``graphmill.search.methods.nahas``, option ``nn=digits``: the MnasNet-style MBConv
space of ``DIGITS_SPEC``, 3 stages, resolution 8/12/16) is trained alone for ``--steps`` Adam steps (batch 64,
training seed 0 for every search seed: one task) on the seeded 4/5 and scored on the held-out fifth (359 images).
Latency and energy: the same architecture at 8x the resolution (64-128 px), batch 1, simulated on the
candidate accelerator (``accelerator_space()``: 8-128 rows and cols, os/ws/is, 32-512 KB buffers, 4-64 DRAM
words/cycle; 500 MHz, 1-byte words); area from ``nahas.AreaModel`` (45 nm).

"Equal latency and area" is enforced by the constraints, the same for the three methods: every design counted
has area <= A (``--area-mm2``, default 4 mm^2) and simulated latency <= T (``--latency-ms``; default the reference
network's latency on the fixed edge accelerator, 16x16 output-stationary with 256/256/128 KB buffers: 2.57 ms;
the README's runs use 1.0 ms, which the edge accelerator meets only with small networks); each method's result is
its feasible design of highest reward (the same MnasNet-style reward for all: accuracy x hard latency term x
(E/E_ref)^-0.01), and the same total number of evaluations (``--budget``) is spent by each:

* ``joint``: regularized evolution (P=10, S=3) over the joint space (every mode redraws proposals over the area
  budget before evaluating them);
* ``nn-then-accel``: half the budget searching the network on the fixed edge accelerator, half the accelerator
  for that network;
* ``accel-then-nn``: half searching the accelerator for the reference network, half the network on it.

Reported: accuracy, latency, area and energy of each method's pick, mean +- std over the seeds (search seeds);
how often joint beats both; a PNG (accuracy vs latency of every trained design, coloured by area, each seed's
pick starred).

    nice -n 10 .venv/bin/python benchmarks/bench_nahas.py --seeds 0,1,2 --budget 30 --json nahas.json
    nice -n 10 .venv/bin/python benchmarks/bench_nahas.py --seeds 0,1,2 --budget 30 --latency-ms 1.0 --json t1.json
    .venv/bin/python benchmarks/bench_nahas.py --merge nahas.json      # the table again, from the JSON

Runs live in ``--work`` (default /tmp/bench_nahas): rerunning resumes and never re-evaluates a finished trial.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from graphmill.search.methods import nahas  # noqa: E402
from graphmill.util.files import write_json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
#: benchmark method -> the options that select it (joint: the nested accelerator search; joint-sampled: the
#: single controller over the product space)
METHODS = {"joint": {"mode": "joint", "accel_search": "nested"},
           "joint-sampled": {"mode": "joint", "accel_search": "sampled"},
           "nn-then-accel": {"mode": "nn-then-accel"}, "accel-then-nn": {"mode": "accel-then-nn"}}


def read_history(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", type=int, default=30,
                    help="trainings (network evaluations) per method and seed (default 30)")
    ap.add_argument("--steps", type=int, default=100, help="Adam steps per candidate (default 100)")
    ap.add_argument("--strategy", default="evolution")
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="latency target T in ms (default 0: the reference network on the edge accelerator)")
    ap.add_argument("--area-mm2", type=float, default=4.0, help="area budget A (default 4 mm^2)")
    ap.add_argument("--accel-sims", type=int, default=nahas.OPTIONS["accel_sims"],
                    help="K: simulations per training, for every method (default %(default)s)")
    ap.add_argument("--accel-warm", type=int, default=nahas.OPTIONS["accel_warm"],
                    help="nested joint: accelerators of the best networks so far tried first (default %(default)s; "
                         "0: each inner search from scratch)")
    ap.add_argument("--modes", default=",".join(METHODS),
                    help=f"methods to run (default all: {', '.join(METHODS)})")
    ap.add_argument("--work", default=os.path.join("/tmp", "bench_nahas"))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--png", default=os.path.join(HERE, "data", "nahas_goal_c.png"))
    ap.add_argument("--merge", nargs="+", metavar="RUN.json", help="only print the table of runs written by --json")
    args = ap.parse_args()
    if args.merge:
        rows: dict[str, list] = {}
        meta = {}
        for p in args.merge:
            with open(p, encoding="utf-8") as f:
                d = json.load(f)
            meta = d
            for mode, picks in d["picks"].items():
                rows.setdefault(mode, []).extend(picks)
        table(rows, meta["constraints"], meta["budget"], meta["steps"], meta.get("accel_sims"))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    modes = args.modes.split(",")
    for m in modes:
        if m not in METHODS:
            ap.error(f"--modes: unknown method {m!r}; use {', '.join(METHODS)}")
    options = {"steps": str(args.steps), "strategy": args.strategy, "latency_ms": str(args.latency_ms),
               "area_mm2": str(args.area_mm2), "accel_sims": str(args.accel_sims), "accel_warm": str(args.accel_warm)}
    warm = "" if args.accel_warm == nahas.OPTIONS["accel_warm"] else f"_W{args.accel_warm}"
    picks: dict[str, list] = {m: [] for m in modes}
    trials: dict[str, list] = {m: [] for m in modes}
    constraints = None
    t0 = time.time()
    for seed in seeds:
        for mode in modes:
            out = os.path.join(args.work, f"T{args.latency_ms:g}_A{args.area_mm2:g}_{args.strategy}_b{args.budget}"
                               f"_s{args.steps}_K{args.accel_sims}{warm}", f"seed{seed}", mode)
            s = nahas.run(out, budget=args.budget, seed=seed, workers=1, executor=None, ray_address=None, accel=None,
                          options={**options, **METHODS[mode]},
                          progress=lambda line, s=seed: print(f"[seed {s}] {line}", file=sys.stderr, flush=True))
            if s["interrupted"]:
                print("interrupted: rerun the same command to resume", file=sys.stderr)
                return 130
            constraints = s["constraints"]
            b = s["best"]
            picks[mode].append({"seed": seed, **{k: b[k] for k in ("accuracy", "latency_ms", "area_mm2", "energy_uj",
                                                                    "feasible", "nn", "config", "accel")},
                                "trainings": s["trainings"], "simulations": s["simulations"], "trials": s["trials"],
                                "seconds": s["seconds"]})
            trials[mode] += read_history(os.path.join(out, "history.jsonl"))
            print(f"[seed {seed}] {mode}: acc {b['accuracy']:.4f} lat {b['latency_ms']:.4g} ms area "
                  f"{b['area_mm2']:.3g} mm^2 E {b['energy_uj']:.4g} uJ feasible {b['feasible']} "
                  f"trainings {s['trainings']} simulations {s['simulations']} "
                  f"({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    table(picks, constraints, args.budget, args.steps, args.accel_sims)
    winners = {m: [next(t for t in trials[m] if t["nn"] == p["nn"] and t["config"] == p["config"]) for p in picks[m]]
               for m in modes}
    nahas.plot(args.png, trials, constraints["latency_ms"], constraints["area_mm2"], winners=winners,
               title=f"NAHAS on digits: {len(seeds)} seeds x {args.budget} trainings, "
                     f"{args.budget * args.accel_sims} simulations per method")
    print(f"wrote {args.png}", file=sys.stderr)
    if args.json:
        write_json(args.json, {"task": nahas.TASK, "seeds": seeds, "budget": args.budget, "steps": args.steps,
                               "accel_sims": args.accel_sims, "accel_warm": args.accel_warm,
                               "strategy": args.strategy, "constraints": constraints, "picks": picks}, indent=1)
    return 0


def table(picks: dict, constraints: dict, budget: int, steps: int, accel_sims: int | None = None) -> None:
    def ms(vals, fmt="{:.4f}"):
        a = np.asarray(vals, dtype=float)
        return f"{fmt.format(a.mean())} +- {fmt.format(a.std(ddof=1) if len(a) > 1 else 0.0)}"

    per = f"{budget} trainings" + (f" and {budget * accel_sims} simulations" if accel_sims else " (evaluations)")
    print(f"NAHAS goal (c): digits, {per} per method, {steps} training steps per candidate; "
          f"constraints area <= {constraints['area_mm2']:g} mm^2, latency <= {constraints['latency_ms']:.4g} ms")
    print(f"{'method':<15} {'seeds':>5} {'accuracy':>20} {'latency ms':>18} {'area mm^2':>16} {'energy uJ':>20} "
          f"{'feasible':>8} {'trainings':>10} {'simulations':>12}")

    def counts(ps, key):
        vals = sorted({p.get(key) for p in ps}, key=str)
        return "/".join("?" if v is None else str(v) for v in vals)

    for mode, ps in picks.items():
        print(f"{mode:<15} {len(ps):>5} {ms([p['accuracy'] for p in ps]):>20} "
              f"{ms([p['latency_ms'] for p in ps], '{:.3f}'):>18} {ms([p['area_mm2'] for p in ps], '{:.2f}'):>16} "
              f"{ms([p['energy_uj'] for p in ps], '{:.0f}'):>20} {sum(p['feasible'] for p in ps):>5}/{len(ps)} "
              f"{counts(ps, 'trainings'):>10} {counts(ps, 'simulations'):>12}")
    print("per-seed accuracy: " + "; ".join(f"{m} " + ", ".join(f"{p['accuracy']:.4f}" for p in ps)
                                           for m, ps in picks.items()))
    others = [m for m in picks if m in ("nn-then-accel", "accel-then-nn")]
    # a method that found no design within the constraints has no result to compare: its best infeasible one
    # (shown above, "feasible" < all) neither wins nor is beaten (an outside check counted such a pick as a win)
    for joint in (m for m in picks if m.startswith("joint") and others):
        wins = sum(picks[joint][i]["feasible"] and all(not picks[m][i]["feasible"] or
                                                       picks[joint][i]["accuracy"] > picks[m][i]["accuracy"]
                                                       for m in others)
                   for i in range(len(picks[joint])))
        print(f"{joint} more accurate than {' and '.join(others)} in {wins}/{len(picks[joint])} seeds "
              "(a pick outside the constraints counts as none)")
        for m in others:  # the ratio of mean accuracies, over the seeds where both picks meet the constraints
            both = [i for i in range(len(picks[joint])) if picks[joint][i]["feasible"] and picks[m][i]["feasible"]]
            if both:
                ratio = np.mean([picks[joint][i]["accuracy"] for i in both]) / np.mean([picks[m][i]["accuracy"]
                                                                                       for i in both])
                print(f"{joint} / {m} accuracy: {ratio:.4f} over {len(both)} seed(s)")


if __name__ == "__main__":
    raise SystemExit(main())
