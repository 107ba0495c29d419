"""Device placement benchmark (issue 12's goal table): one table per device count, model x method -> simulated
step time and placement wall time, every method on the same cost model (roofline, the built-in 128x128 chip,
64 B/cycle links with 1 us latency, 16 GB each) in the same run. Training-step graphs (forward + backward, the
papers placed training steps). Also: the samples the learned placers needed to reach the best baseline, and the
hierarchical placement of a >= 10,000-op training graph (4-layer NMT unrolled 50 steps).

    .venv/bin/python benchmarks/bench_place.py [--devices 2 4 8] [--models ...] [--budget 800] [--big]
"""

from __future__ import annotations

import argparse
import time

from graphmill import api
from graphmill.frontend import zoo
from graphmill.passes.placement import METHODS

MODELS = {
    "inception_v3": dict(batch=32),
    "nmt": dict(layers=2, batch=64),
    "transformer_seq2seq": dict(batch=32),
    "rnnlm": dict(batch=64),
    "resnet50": dict(batch=32),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--budget", type=int, default=0, help="learned placers' budget (0: default 800)")
    ap.add_argument("--inference", action="store_true", help="forward graphs instead of training steps")
    ap.add_argument("--big", action="store_true", help="also place the >=10k-op NMT training graph (hierarchical)")
    args = ap.parse_args()
    graphs = {m: zoo.build(m, **MODELS[m]) for m in args.models}
    for D in args.devices:
        print(f"\n## {D} devices (training step: {not args.inference}); step time in cycles at 1 GHz, wall s")
        print(f"{'model':<20} " + " ".join(f"{m:>22}" for m in args.methods) + f" {'best learned/heft|metis':>24}"
              f" {'samples to best base':>20}")
        for name, g in graphs.items():
            cells, times, extra = [], {}, ""
            for m in args.methods:
                info: dict = {}
                t0 = time.perf_counter()
                rep = api.place(g.copy(), method=m, devices=D, budget=args.budget, training=not args.inference,
                                info=info)
                wall = time.perf_counter() - t0
                times[m] = rep["makespan"]
                cells.append(f"{rep['makespan']:>13,.0f} {wall:>7.1f}s")
                if "learned" in info:
                    extra += f" {m}:{info['learned']['samples_to_best_baseline']}"
            ref = min(times.get("heft", float("inf")), times.get("metis", float("inf")))
            learned = min([times[m] for m in ("rl", "hierarchical") if m in times] or [float("nan")])
            print(f"{name:<20} " + " ".join(f"{c:>22}" for c in cells) + f" {learned / ref:>24.3f} {extra:>20}",
                  flush=True)
    if args.big:
        g = zoo.build("nmt", layers=4, src_len=50, tgt_len=50, batch=64)
        info = {}
        t0 = time.perf_counter()
        rep = api.place(g, method="hierarchical", devices=4, training=True, budget=args.budget, info=info)
        print(f"\nhierarchical, 4-layer NMT unrolled 50 steps, training step: {len(rep['placement'])} ops placed in "
              f"{time.perf_counter() - t0:.0f} s; step time {rep['makespan']:,.0f} vs best baseline "
              f"{min(rep['baselines'].values()):,.0f} ({rep['makespan'] / min(rep['baselines'].values()):.3f})")


if __name__ == "__main__":
    main()
