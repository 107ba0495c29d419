"""graphmill train's two training methods against their baselines, on the shipped task.

(a) Progressive learning (EfficientNetV2, Tan & Le 2021) vs plain fixed-size training: training wall time
    to reach equal held-out accuracy on scikit-learn's digits (upsampled to the stage's size), mean +- std
    over seeds. EfficientNetV2 reports up to 11x faster training (ImageNet, TPUs, with a bigger model and
    300 -> 380 px images); the ratio measured here is printed as it is.
(b) Memory-optimized contrastive training (BASIC, Pham et al. 2021) at B = 4,096 with micro-batches of
    b = 64 vs the full batch in one autograd pass: each in its own child process, peak RSS read from
    outside (the child's own VmHWM in /proc, graphmill.util.processes), the gradients written by both compared here, and both against
    the full-batch step in float64 (a fourth child): is a difference micro-batching's or float32 rounding's?

    nice -n 10 .venv/bin/python benchmarks/bench_training.py            # both parts, a few minutes each
    nice -n 10 .venv/bin/python benchmarks/bench_training.py --part a --seeds 3 --json out.json
    # where compute weighs more: 64 px final, progressive given more (cheap) epochs; baseline unchanged
    nice -n 10 .venv/bin/python benchmarks/bench_training.py --part a --seeds 1 --width 0.5 --max-size 64 \
        --progressive-epochs 12
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

MODEL = "efficientnetv2_s"
MODEL_OPTS = {"width": 0.125, "depth": 0.2}


def _build(num_classes: int, size: int, seed: int):
    import graphmill

    name = MODEL if MODEL in graphmill.api.zoo_models() else "efficientnet_b0"
    return graphmill.api.zoo_build(name, resolution=size, num_classes=num_classes, seed=seed, **MODEL_OPTS), name


# -- (a) progressive vs fixed-size --------------------------------------------------------------------------------


def first_reach(history: list[dict], target: float) -> float | None:
    """Training CPU seconds at the first evaluation whose accuracy is at least ``target`` (None: never)."""
    return next((r["cpu_seconds"] for r in history if r["accuracy"] >= target), None)


def part_a(args) -> dict:
    import torch

    from graphmill.backends.torch.training import TASK, TrainConfig, run_training

    torch.set_num_threads(args.threads)
    runs = {"fixed": [], "progressive": []}
    for seed in range(args.seeds):
        for mode in ("fixed", "progressive"):
            graph, name = _build(10, args.max_size, seed)
            epochs = args.progressive_epochs if mode == "progressive" and args.progressive_epochs else args.epochs
            cfg = TrainConfig(mode=mode, epochs=epochs, batch=args.batch, stages=args.stages,
                              min_size=args.min_size, seed=seed, lr=args.lr)
            t0 = time.perf_counter()
            run = run_training(graph, cfg)
            wall = time.perf_counter() - t0
            hist = run.loop.history
            runs[mode].append({"seed": seed, "final_accuracy": hist[-1]["accuracy"],
                               "train_seconds": run.loop.cpu_seconds, "train_wall_seconds": run.loop.train_seconds,
                               "wall_seconds": wall, "history": hist})
            print(f"  seed {seed} {mode:11s} accuracy {hist[-1]['accuracy']:.4f}  training {run.loop.cpu_seconds:6.1f}s "
                  f"CPU ({run.loop.train_seconds:.1f}s wall; run {wall:.1f}s wall)", file=sys.stderr)
    # equal accuracy: the lower of the two methods' mean final accuracies, less a margin (both reach it)
    mean_final = {m: statistics.mean(r["final_accuracy"] for r in rs) for m, rs in runs.items()}
    target = args.target if args.target is not None else min(mean_final.values()) - args.margin
    out = {"task": TASK, "model": f"{name} {MODEL_OPTS}", "epochs": args.epochs,
           "progressive_epochs": args.progressive_epochs or args.epochs, "batch": args.batch,
           "sizes": f"{args.min_size} -> {args.max_size} in {args.stages} stages (fixed: {args.max_size})",
           "target_accuracy": target, "seeds": args.seeds, "methods": {}}
    for mode, rs in runs.items():
        reach = [first_reach(r["history"], target) for r in rs]
        ok = [t for t in reach if t is not None]
        out["methods"][mode] = {
            "final_accuracy": _ms([r["final_accuracy"] for r in rs]),
            "train_seconds": _ms([r["train_seconds"] for r in rs]),
            "seconds_to_target": _ms(ok) if ok else None, "reached": f"{len(ok)}/{len(rs)}",
            "per_seed": [{k: v for k, v in r.items() if k != "history"} | {"seconds_to_target": t}
                         for r, t in zip(rs, reach)]}
    f, p = out["methods"]["fixed"], out["methods"]["progressive"]
    pairs = [(a["seconds_to_target"], b["seconds_to_target"]) for a, b in zip(f["per_seed"], p["per_seed"])
             if a["seconds_to_target"] and b["seconds_to_target"]]
    out["speedup_to_target"] = _ms([a / b for a, b in pairs]) if pairs else None
    out["speedup_total_time"] = _ms([a["train_seconds"] / b["train_seconds"] for a, b in
                                     zip(f["per_seed"], p["per_seed"])])
    return out


def _ms(xs: list[float]) -> dict:
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


# -- (b) contrastive memory ---------------------------------------------------------------------------------------


def child(mode: str, batch: int, micro: int, size: int, grads_path: str) -> None:
    """One contrastive step (or none: ``mode`` 'baseline' builds everything and stops) in this process."""
    import numpy as np
    import torch

    from graphmill.backends.torch import to_torch
    from graphmill.backends.torch.training import contrastive_backward, digits_data, rand_augment

    torch.set_num_threads(1)
    graph, _ = _build(64, size, 0)
    module = to_torch(graph)
    xtr = digits_data(size, 3, 0)[0]
    torch.manual_seed(0)
    x = xtr[torch.randint(0, len(xtr), (batch,), generator=torch.Generator().manual_seed(0))]
    xa, xb = rand_augment(x, 10), rand_augment(x, 10)
    if mode == "baseline":
        return
    if mode == "full64":  # the float64 reference both float32 gradients are measured against
        module.double()
        xa, xb = xa.double(), xb.double()
    t0 = time.perf_counter()
    loss = contrastive_backward(module, module, xa, xb, micro_batch=micro if mode == "micro" else None)
    seconds = time.perf_counter() - t0
    np.savez(grads_path, loss=loss, seconds=seconds,
             **{n: p.grad.numpy() for n, p in module.named_parameters() if p.grad is not None})


def run_child(mode: str, batch: int, micro: int, size: int, grads_path: str) -> float:
    """Peak RSS (MiB) of a child process running ``child``, read from outside: its own VmHWM in /proc
    (graphmill.util.processes; os.wait4's ru_maxrss would carry this process's high-water mark into the child)."""
    from graphmill.util.processes import peak_rss_mib

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    argv = [__file__, "--child", mode, str(batch), str(micro), str(size), grads_path, str(MODEL_OPTS["width"]),
            str(MODEL_OPTS["depth"])]
    code = f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path({__file__!r}, run_name='__main__')"
    try:
        return peak_rss_mib(code, env=env)[0]
    except RuntimeError as e:
        raise SystemExit(f"child {mode} failed: {e}") from None


def part_b(args) -> dict:
    import numpy as np

    with tempfile.TemporaryDirectory() as d:
        peaks, grads = {}, {}
        for mode in ("baseline", "micro", "full", "full64"):
            path = os.path.join(d, f"{mode}.npz")
            peaks[mode] = run_child(mode, args.big_batch, args.micro_batch, args.size, path)
            if mode != "baseline":
                grads[mode] = dict(np.load(path))
            print(f"  {mode:8s} peak RSS {peaks[mode]:8.1f} MiB", file=sys.stderr)
    g_micro, g_full = grads["micro"], grads["full"]
    names = [k for k in g_full if k not in ("loss", "seconds")]

    def worst(a: dict, ref: dict) -> tuple[float, float]:
        """Per parameter tensor: the largest element difference over the largest gradient element, and the norm
        of the difference over the gradient's norm; the worst tensor of each."""
        d = {k: a[k].astype(np.float64) - ref[k].astype(np.float64) for k in names}
        return (max(float(np.abs(d[k]).max() / max(np.abs(ref[k]).max(), 1e-30)) for k in names),
                max(float(np.linalg.norm(d[k]) / max(np.linalg.norm(ref[k]), 1e-30)) for k in names))

    rel, rel_norm = worst(g_micro, g_full)
    # float32 summation order: both float32 gradients against the float64 full-batch one
    vs64 = {m: dict(zip(("max_element", "norm"), worst(grads[m], grads["full64"]))) for m in ("micro", "full")}
    return {"batch": args.big_batch, "micro_batch": args.micro_batch, "image_size": args.size,
            "model": f"{_build(64, args.size, 0)[1]} {MODEL_OPTS} (one tower, two RandAugment views)",
            "peak_rss_mib": peaks, "above_baseline_mib": {m: peaks[m] - peaks["baseline"] for m in ("micro", "full", "full64")},
            "memory_ratio_full_over_micro": (peaks["full"] - peaks["baseline"]) / max(peaks["micro"] - peaks["baseline"], 1e-9),
            "loss": {m: float(g["loss"]) for m, g in grads.items()},
            "step_seconds": {m: float(g["seconds"]) for m, g in grads.items()},
            "max_relative_gradient_difference": rel, "max_relative_gradient_norm_difference": rel_norm,
            "relative_difference_vs_float64_full_batch": vs64,
            "parameters_compared": len(names)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, batch, micro, size, path, width, depth = sys.argv[2:9]
        MODEL_OPTS.update(width=float(width), depth=float(depth))
        child(mode, int(batch), int(micro), int(size), path)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["a", "b", "both"], default="both")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--progressive-epochs", type=int, help="progressive training's epochs (default --epochs): "
                    "Algorithm 1 lets the cheap small stages run longer; the fixed-size baseline keeps --epochs")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--stages", type=int, default=4)
    ap.add_argument("--min-size", type=int, default=16)
    ap.add_argument("--max-size", type=int, default=32)
    ap.add_argument("--target", type=float, help="accuracy to reach (default: the lower mean final accuracy - margin)")
    ap.add_argument("--margin", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=float, default=MODEL_OPTS["width"], help="zoo width multiplier (default 0.125)")
    ap.add_argument("--depth", type=float, default=MODEL_OPTS["depth"], help="zoo depth multiplier (default 0.2)")
    ap.add_argument("--big-batch", type=int, default=4096)
    ap.add_argument("--micro-batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32, help="image size for part b")
    ap.add_argument("--json", help="write the results as JSON")
    args = ap.parse_args()
    MODEL_OPTS.update(width=args.width, depth=args.depth)
    res = {}
    if args.part in ("a", "both"):
        print("(a) progressive vs fixed-size training", file=sys.stderr)
        a = res["progressive"] = part_a(args)
        print(f"\n(a) {a['task']}\n    model {a['model']}, {a['epochs']} epochs (progressive {a['progressive_epochs']}) of batch {a['batch']}, sizes {a['sizes']}")
        print(f"    target accuracy {a['target_accuracy']:.4f}; mean +- std over {a['seeds']} seeds; seconds are the "
              "training process's CPU time (one thread), evaluation excluded")
        print(f"    {'method':12s} {'final accuracy':>18s} {'training CPU s':>16s} {'s to target':>16s} reached")
        for m, r in a["methods"].items():
            st = r["seconds_to_target"]
            print(f"    {m:12s} {r['final_accuracy']['mean']:9.4f} +- {r['final_accuracy']['std']:.4f} "
                  f"{r['train_seconds']['mean']:8.1f} +- {r['train_seconds']['std']:5.1f} "
                  + (f"{st['mean']:8.1f} +- {st['std']:5.1f}" if st else f"{'-':>16s}") + f"  {r['reached']}")
        sp = a["speedup_to_target"]
        print("    speedup to target (fixed / progressive): "
              + (f"{sp['mean']:.2f}x +- {sp['std']:.2f} (n={sp['n']})" if sp else "not measurable (target not reached)")
              + f"; total training time ratio {a['speedup_total_time']['mean']:.2f}x; EfficientNetV2 reports up to 11x")
    if args.part in ("b", "both"):
        print("(b) contrastive training memory", file=sys.stderr)
        b = res["contrastive"] = part_b(args)
        print(f"\n(b) B = {b['batch']}, b = {b['micro_batch']}, {b['image_size']}x{b['image_size']} digits, {b['model']}")
        for m in ("baseline", "micro", "full", "full64"):
            extra = "" if m == "baseline" else (f"  (+{b['above_baseline_mib'][m]:.0f} MiB over baseline, "
                                                f"step {b['step_seconds'][m]:.1f}s)")
            print(f"    {m:9s} peak RSS {b['peak_rss_mib'][m]:8.1f} MiB{extra}")
        print(f"    full-batch / micro-batched memory above baseline: {b['memory_ratio_full_over_micro']:.1f}x; "
              f"gradients over {b['parameters_compared']} parameter tensors, worst tensor: max |difference| / "
              f"max |gradient| {b['max_relative_gradient_difference']:.2e}, ||difference|| / ||gradient|| "
              f"{b['max_relative_gradient_norm_difference']:.2e} (float32); losses {b['loss']['micro']:.6f} / "
              f"{b['loss']['full']:.6f}")
        v = b["relative_difference_vs_float64_full_batch"]
        print("    against the float64 full-batch gradient (max |difference| / max |gradient|, ||difference|| / "
              f"||gradient||): micro-batched float32 {v['micro']['max_element']:.2e} / {v['micro']['norm']:.2e}, "
              f"full-batch float32 {v['full']['max_element']:.2e} / {v['full']['norm']:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2, default=str)


if __name__ == "__main__":
    main()
