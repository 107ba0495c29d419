"""Learned passes benchmark (issue 14's goal): held-out graphs, the shipped policy against the baselines.

Held-out graphs: none is in the policy's training set (``graphmill.search.learned.training_set``: ResNet-18 and
MobileNetV2, forward and training step, random MLP/CNN DAGs), nor a width/depth variant of one: Inception-V3
(forward and training step), the Transformer encoder-decoder, the LSTM NMT, the RNN LM, and a DenseNet-style
graph written here (concatenation-heavy, a generator the training set never used). All on ``--devices``
identical chips (the placement default: 128x128 bf16 at 1 GHz, 16 GB, 64 B/cycle links, 1 us), roofline costs.

Per graph, on the same environment (``passes.learned.env``):

* **best baseline**: the best of 6 placements (single, round-robin, expert, HEFT, HEFT over colocation groups,
  METIS) x 2 fusions (none, greedy) x 3 schedules (graph order, critical path, memory-minimizing), 36 simulations;
* **zero-shot**: iterative refinement (``passes.learned.infer.refine``) from the hint (the best baseline, which
  the policy reads as features): ``--rounds`` rounds, each one forward pass on the current state giving the
  greedy decisions, the policy's k most probable device changes (k = 1, 2, 4, 8, 16, 32: ``infer.top_moves``),
  its k most wanted chain units moved whole (k = 1, 2, 4, 8, 16: ``infer.top_unit_moves``) and ``--samples``
  draws, each distinct one simulated once, the next round refining the best state so far;
  **untrained**: the same zero-shot use of the policy before training (``search.learned.fresh_policy(0)``: its
  device logits are the hint's and the one-step move estimates', a heuristic), which says what training adds;
  **one pass**: the greedy decisions of a single forward pass on the hint's state, simulated as they are (no
  state kept: this shows what the policy proposes on its own, and can be worse than the hint);
* **fine-tuned**: PPO from the shipped policy for ``--finetune`` samples, refining the best state so far
  (``search.learned.fine_tune``);
* **per-graph RL**, two of them, each given ``--rl-factor`` x the fine-tuning samples: (a) the same algorithm
  from a fresh policy (``fine_tune(None, ...)``: what transfer adds, everything else equal); (b) the placement
  issue's ``rl`` placer (``place --method rl``, ``passes.placement.rl``: chain units, copy logit, warm start
  from the best placement baseline), the project's per-graph RL method, trained on this graph alone; it decides
  devices only, scheduled in the graph's order without fusion as ``place`` does, and its step time is
  divided by the same best baseline (of the 36 combinations); skip it with ``--no-rl-placer``;
* **placement alone** (the ``graphmill place`` environment: graph order, no fusion, relative to the best of the
  6 placement baselines): ``fine_tune`` of the shipped policy deciding devices only for ``--finetune`` samples
  (every simulation counted, starting from the best placement baseline) against the ``rl`` placer's;
* **joint vs sequential**: ``learned-optimize`` against ``learned-place`` -> ``learned-fuse`` ->
  ``learned-schedule`` (each keeping what the previous wrote), each with the zero-shot rounds and samples (so the
  sequential passes have 3x the rounds; the joint pass refines from 3 starts, the best combination under each
  schedule baseline; ``joint_3x``: the joint pass with 3x the rounds);
* samples to beat the best baseline (< 1x) and to beat it by 1% (< 0.99x) for fine-tuning vs per-graph RL
  (both start from the hint's state, so both "reach" it at 0 samples), and (a)'s best after as many samples as
  fine-tuning had (its best-so-far curve: transfer at equal samples).

``--plot PATH.png`` draws, per graph, the best-so-far step time against samples of fine-tuning and of per-graph
RL (a) (both curves are kept in the ``--json`` rows, so a rerun that reads them back plots without simulating),
with the ``rl`` placer's result at its budget and the best baseline at 1. A ``--json`` file measured with other
settings (devices, DRAM bandwidth, samples, rounds, fine-tuning budget, RL factor, policy) is refused.

    nice -n 10 .venv/bin/python benchmarks/bench_learned.py [--devices 4] [--graphs ...] [--json out.json] \
        [--plot out.png]
    nice -n 10 .venv/bin/python benchmarks/bench_learned.py --speed     # the environment's episodes per second
    nice -n 10 .venv/bin/python benchmarks/bench_learned.py --neighbourhood [GRAPH ...]  # single changes from the hint
    nice -n 10 .venv/bin/python benchmarks/bench_learned.py --finetune-validation  # fused validation states
    nice -n 10 .venv/bin/python benchmarks/bench_learned.py --in-distribution  # trained vs untrained, random DAGs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings

import numpy as np

from graphmill.backends.simulator.devices import PlacementCostModel, device_set
from graphmill.frontend import zoo
from graphmill.ir.builder import GraphBuilder
from graphmill.passes.learned.env import Decisions
from graphmill.passes.learned.infer import propose
from graphmill.passes.learned.policy import obs_tensors
from graphmill.passes.learned.passes import apply_decisions, combine, run_learned
from graphmill.passes.learned.policy import load_policy
from graphmill.passes.placement import place_graph, training_graph
from graphmill.search.learned import fine_tune, fresh_policy, make_task, random_graph
from graphmill.util.files import write_json
from graphmill.util.plots import check_png_path, pyplot, save_figure


def densenet_like(blocks: int = 3, layers: int = 6, growth: int = 32, batch: int = 8):
    """A DenseNet-style graph (Huang et al. 2017): each layer BN-ReLU-Conv3x3 on the concatenation of all earlier
    outputs of its block; transitions Conv1x1 + AveragePool."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("densenet_like")
    x = b.input("x", "float32", [batch, 3, 64, 64])
    c = 2 * growth
    h = b.Conv(x, (rng.standard_normal((c, 3, 3, 3)) * 0.1).astype(np.float32), pads=[1, 1, 1, 1])
    for k in range(blocks):
        feats = [h]
        for _ in range(layers):
            cin = c + growth * (len(feats) - 1)
            cat = feats[0] if len(feats) == 1 else b.Concat(*feats, axis=1)
            ones = np.ones(cin, np.float32)
            y = b.Relu(b.BatchNormalization(cat, ones, ones * 0, ones * 0, ones))
            y = b.Conv(y, (rng.standard_normal((growth, cin, 3, 3)) * 0.05).astype(np.float32), pads=[1, 1, 1, 1])
            feats.append(y)
        cin = c + growth * layers
        h = b.Conv(b.Concat(*feats, axis=1), (rng.standard_normal((c, cin, 1, 1)) * 0.05).astype(np.float32))
        if k < blocks - 1:
            h = b.AveragePool(h, kernel_shape=[2, 2], strides=[2, 2])
    b.output(h)
    return b.build()


def held_out() -> dict:
    return {
        "inception_v3": lambda: zoo.build("inception_v3", batch=8),
        "inception_v3-train": lambda: training_graph(zoo.build("inception_v3", batch=8)),
        "transformer_seq2seq": lambda: zoo.build("transformer_seq2seq", batch=8),
        "nmt": lambda: zoo.build("nmt", batch=16),
        "rnnlm": lambda: zoo.build("rnnlm", batch=16),
        "densenet_like": densenet_like,
    }


def speed() -> None:
    """Environment episodes per CPU second (process time, so a loaded machine does not skew it) on ResNet-50
    (batch 32) and the 2-layer NMT (batch 64), 4 devices: random decisions (fusion everywhere possible, new
    groups to cost) and a baseline's (HEFT, greedy fusion, critical path)."""
    from graphmill.passes.learned import JointProblem, OptimizationEnv
    from graphmill.passes.learned.baselines import fusion_baseline, placement_baselines, schedule_baseline
    from graphmill.passes.placement import build_problem

    for name, kw in [("resnet50", dict(batch=32)), ("nmt", dict(layers=2, batch=64))]:
        cm = PlacementCostModel(device_set(devices=4))
        jp = JointProblem(build_problem(zoo.build(name, **kw), cm), cm)
        env = OptimizationEnv(jp)
        env.reset()
        rng = np.random.default_rng(0)
        n = jp.n
        heft = placement_baselines(jp)["heft"]
        for label, mk in [("random decisions", lambda: Decisions(rng.integers(0, 4, n), rng.random(n) < 0.5,
                                                                 rng.random(n))),
                          ("HEFT + greedy fusion + critical path",
                           lambda: Decisions(heft, fusion_baseline(jp, "greedy", heft),
                                             schedule_baseline(jp, "critical-path")))]:
            acts = [mk() for _ in range(30)]
            env.step(acts[0])
            t0 = time.process_time()
            for a in acts:
                env.step(a)
            print(f"{name} ({n} ops, 4 devices), {label}: {len(acts) / (time.process_time() - t0):.0f} episodes "
                  "per CPU second")


def validation() -> dict:
    """Zoo graphs neither trained on nor held out (docs/results/learned.md's validation graphs), at batch 8."""
    return {
        "bert_base-s64": lambda: zoo.build("bert_base", batch=8, seq=64),
        "bert_base-s64-train": lambda: training_graph(zoo.build("bert_base", batch=8, seq=64)),
        "vit_b16-train": lambda: training_graph(zoo.build("vit_b_16", batch=8)),
        "efficientnet_b0-train": lambda: training_graph(zoo.build("efficientnet_b0", batch=8)),
        "efficientnet_b0": lambda: zoo.build("efficientnet_b0", batch=8),
        "coatnet_0": lambda: zoo.build("coatnet_0", batch=8),
        "mnasnet_a1-train": lambda: training_graph(zoo.build("mnasnet_a1", batch=8)),
        "switch_transformer-train": lambda: training_graph(zoo.build("switch_transformer", batch=8)),
    }


def neighbourhood(names: list[str], devices: int, policy) -> None:
    """How far one change gets from the hint: every single device move and every single fusion added (each
    simulated), how many beat the hint and the best; and the policy's proposals (``infer.ranked_moves``: per op,
    most probable first, its one best other device): the first of them that beats the hint, by rank (1-based;
    zero-shot applies the first 1, 2, 4, ..., 32 together). Zero-shot refines from the hint, so where no single
    change improves it can only win by several changes at once."""
    import torch

    from graphmill.passes.learned.infer import moved, ranked_moves

    graphs = {**held_out(), **validation()}
    print(f"{'graph':<26} {'ops':>5} {'moves':>6} {'better':>6} {'best':>8} {'1st good proposal':>17} "
          f"{'fusions':>7} {'better':>6} {'best':>8} {'all better':>10}")
    for name in names:
        task = make_task(name, graphs[name](), PlacementCostModel(device_set(devices=devices)))
        jp, hint = task.jp, task.baseline_decisions
        base = jp.evaluate(hint).makespan
        with torch.no_grad():
            order, proposed = ranked_moves(hint, policy.heads(task.t)[0])
        dev = np.asarray(hint.device)
        gain = {(i, d): base - o.makespan for i in range(jp.n) for d in range(devices) if d != dev[i]
                for o in [jp.evaluate(moved(jp, hint, np.array([i]), np.array([d])))] if o.valid}
        first = next((r + 1 for r, i in enumerate(order) if gain.get((i, proposed[i]), 0.0) > 0), None)
        fp = jp.fuse_producer
        fusions = []
        for i in np.flatnonzero((fp >= 0) & ~np.asarray(hint.fuse, bool)):
            if dev[fp[i]] == dev[i]:
                f = np.asarray(hint.fuse, bool).copy()
                f[i] = True
                o = jp.evaluate(Decisions(dev, f, hint.priority))
                if o.valid:
                    fusions.append((base - o.makespan, i))
        good_m = [x for x in gain.values() if x > 0]
        good_f = [m for m in fusions if m[0] > 0]
        f = np.asarray(hint.fuse, bool).copy()
        f[[i for _, i in good_f]] = True
        together = jp.evaluate(Decisions(dev, f, hint.priority)).makespan / base
        if first is None:
            first_text = "-"
        else:
            op = order[first - 1]
            first_text = f"{first} ({gain[(op, proposed[op])] / base:.5f})"
        print(f"{name:<26} {jp.n:>5} {len(gain):>6} {len(good_m):>6} {max(good_m, default=0.0) / base:>8.5f} "
              f"{first_text:>17} {len(fusions):>7} {len(good_f):>6} "
              f"{max(good_f, default=(0.0, 0))[0] / base:>8.5f} {together:>10.5f}", flush=True)


def chip_with_dram_bw(words: int):
    """The placement default chip with ``words`` words per cycle of DRAM bandwidth (512 by default; at 32 fusion
    pays, its intermediates kept on chip)."""
    import copy

    from graphmill.backends.simulator.config import from_dict
    from graphmill.backends.simulator.devices import DEFAULT_PLACEMENT_ACCEL

    acc = copy.deepcopy(DEFAULT_PLACEMENT_ACCEL)
    acc["memory"]["dram_bw_words"] = words
    return from_dict(acc)


def finetune_validation(policy, json_path: str | None, budget: int = 100) -> None:
    """Fine-tuning (``--finetune`` samples, seeds 0-2) on the validation graphs (not held out) wherever their best baseline
    fuses, at 2, 4 and 8 devices, on the default chip and on one where fusion pays (DRAM 32 words/cycle): the
    states where fine-tuning's guided unit moves read a fusion group's chain of waits (docs/results/learned.md,
    "The critical chain through a fusion group"). Unfused best baselines are skipped: nothing there depends on
    groups. Prints each run's step time relative to the best baseline and their geometric mean; ``--json``
    writes them at the end."""
    rows = []
    for chip, accel in (("dram-bw-32", chip_with_dram_bw(32)), ("default", None)):
        for devices in (2, 4, 8):
            for name, build in validation().items():
                task = make_task(name, build(), PlacementCostModel(device_set(devices=devices, accel=accel)))
                if "+none+" in task.baseline:
                    continue
                for seed in (0, 1, 2):
                    ft = fine_tune(policy, task, budget=budget, seed=seed)
                    rows.append({"chip": chip, "devices": devices, "graph": name, "best_baseline": task.baseline,
                                 "seed": seed, "fine_tuned": ft["outcome"].makespan / task.reference})
                    print(f"{chip:<11} {devices} {name:<26} {task.baseline:<22} seed {seed} "
                          f"{rows[-1]['fine_tuned']:.5f}", flush=True)
    gm = math.exp(sum(math.log(r["fine_tuned"]) for r in rows) / len(rows))
    print(f"{len(rows)} runs, geometric mean {gm:.5f} of the best baseline")
    if json_path:
        write_json(json_path, {"rows": rows, "geometric_mean": gm}, indent=1)


#: random DAGs of the training set's generators at seeds it never used (it uses 100-105) and other sizes
IN_DISTRIBUTION = [(200, "mlp", 200), (201, "cnn", 150), (202, "rnn", 200), (203, "mlp", 400), (204, "cnn", 300),
                   (205, "rnn", 400), (206, "mlp", 150), (207, "cnn", 100)]


def in_distribution(policy, json_path: str | None) -> None:
    """Zero-shot of ``policy`` against the untrained one (``fresh_policy(0)``) on ``IN_DISTRIBUTION`` at 2 and 4
    devices: whether training helps on graphs like its own (the held-out table asks whether it transfers)."""
    rows = []
    untrained = fresh_policy(0)
    for devices in (2, 4):
        for seed, kind, n in IN_DISTRIBUTION:
            task = make_task(f"random-{kind}-{n}-s{seed}", random_graph(seed, kind, n),
                             PlacementCostModel(device_set(devices=devices)))
            t = propose(policy, task.jp, obs=task.obs).outcome.makespan / task.reference
            u = propose(untrained, task.jp, obs=task.obs).outcome.makespan / task.reference
            rows.append({"graph": task.name, "devices": devices, "ops": task.jp.n, "trained": t, "untrained": u})
            print(f"{devices} {task.name:<22} {task.jp.n:>5} ops: trained {t:.4f}, untrained {u:.4f}", flush=True)
    better = sum(r["trained"] < r["untrained"] for r in rows)
    worse = sum(r["trained"] > r["untrained"] for r in rows)
    print(f"trained faster on {better}, slower on {worse}, equal on {len(rows) - better - worse} of {len(rows)}")
    if json_path:
        write_json(json_path, {"rows": rows}, indent=1)


def plot_curves(rows: list[dict], path: str, ft_budget: int, rl_budget: int) -> None:
    """One panel per graph: best-so-far step time (relative to the best baseline) against samples, log x."""
    plt = pyplot()
    have = [r for r in rows if "ft_curve" in r]
    if not have:
        print(f"--plot {path}: no row has the curves (rows from a run before they were recorded); nothing drawn")
        return
    cols = min(3, len(have))
    nrows = (len(have) + cols - 1) // cols
    size = (max(4.2 * cols, 5.0), 3.2 * nrows + (0.8 if cols == 1 else 0.0))  # room for the legend under one panel
    fig, axes = plt.subplots(nrows, cols, figsize=size, squeeze=False)
    for ax, r in zip(axes.flat, have):
        ax.plot(range(1, len(r["rl_curve"]) + 1), r["rl_curve"], color="tab:gray",
                label=f"per-graph RL (a), fresh policy ({rl_budget})")
        ax.plot(range(1, len(r["ft_curve"]) + 1), r["ft_curve"], color="tab:blue", lw=2,
                label=f"fine-tuned from the shipped policy ({ft_budget})")
        if "rl_placer" in r:
            ax.plot([rl_budget], [r["rl_placer"]], "v", color="tab:red", label=f"rl placer ({rl_budget})")
        ax.axhline(1.0, color="black", lw=0.8, ls="--", label="best of 36 baselines")
        ax.set_xscale("log")
        ax.set_title(f"{r['graph']} ({r['ops']} ops)", fontsize=10)
        ax.set_xlabel("samples (simulations)")
        ax.set_ylabel("best step time / best baseline")
    for ax in list(axes.flat)[len(have):]:
        ax.axis("off")
    # the legend's 4 entries in 1, 2 or 4 rows under 3, 2 or 1 panels (in one row it was cut off at both edges)
    ncol = {1: 1, 2: 2}.get(cols, 4)
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="lower center", ncol=ncol, fontsize=8)
    fig.tight_layout(rect=(0, {1: 0.34, 2: 0.2}.get(cols, 0.06) / (1 if cols >= 3 else nrows), 1, 1))
    save_figure(fig, path)
    print(f"wrote {path}")


def samples_to(curve: list[float], target: float) -> int | None:
    for k, t in enumerate(curve):
        if t <= target:
            return k + 1
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--devices", type=int, default=4, help="identical chips (default 4)")
    ap.add_argument("--graphs", nargs="+", default=list(held_out()), help=f"held-out graphs (default all: "
                    f"{', '.join(held_out())})")
    ap.add_argument("--samples", type=int, default=0,
                    help="zero-shot policy draws per round besides the greedy and top-k decisions")
    ap.add_argument("--rounds", type=int, default=4, help="zero-shot refinement rounds (one forward pass each)")
    ap.add_argument("--finetune", type=int, default=100, help="fine-tuning samples (default 100)")
    ap.add_argument("--rl-factor", type=int, default=10, help="per-graph RL gets this many times the fine-tuning "
                    "samples (default 10)")
    ap.add_argument("--no-rl-placer", action="store_true", help="skip the placement issue's rl placer columns")
    ap.add_argument("--dram-bw", type=int, default=None,
                    help="the default chip's DRAM bandwidth in words per cycle (default 512; fusion pays only when "
                         "the vector unit's 128 lanes outrun it, e.g. 32)")
    ap.add_argument("--policy", default=None, help="policy file (default: the shipped one)")
    ap.add_argument("--train-steps", type=int, default=0,
                    help="first train a policy (seed 0, search.learned.train, the default training set) on this "
                         "benchmark's chip for N PPO steps, write it to --policy, and use it")
    ap.add_argument("--speed", action="store_true", help="only measure the environment's episodes per second")
    ap.add_argument("--neighbourhood", nargs="*", default=None, metavar="GRAPH",
                    help="only count the single device moves and fusions that beat the hint (default: the held-out "
                         "graphs; also: " + ", ".join(validation()) + ")")
    ap.add_argument("--finetune-validation", action="store_true",
                    help="only fine-tune (--finetune samples) on the validation graphs whose best baseline fuses "
                         "(2/4/8 devices, 2 chips, seeds 0-2; --devices and --dram-bw do not apply)")
    ap.add_argument("--in-distribution", action="store_true",
                    help="only zero-shot, trained against untrained, on random DAGs of the training set's generators "
                         "at unseen seeds (2 and 4 devices)")
    ap.add_argument("--json", default=None, help="rows written after each graph; a rerun skips graphs already there")
    ap.add_argument("--plot", default=None, metavar="PATH.png",
                    help="best-so-far step time against samples, fine-tuned vs per-graph RL, one panel per graph")
    args = ap.parse_args()
    check_png_path(args.plot)
    warnings.simplefilter("ignore")
    if args.speed:
        speed()
        return
    accel = None
    if args.dram_bw:
        accel = chip_with_dram_bw(args.dram_bw)
    if args.train_steps:
        if not args.policy:
            ap.error("--train-steps needs --policy PATH.npz (where the trained policy goes)")
        from graphmill.search.learned import train, training_set

        tasks = [make_task(n, tg, PlacementCostModel(device_set(devices=D, accel=accel)))
                 for n, tg, D in training_set()]
        train(tasks, seed=0, options={"steps": args.train_steps, "time_limit": 3600.0}, output=args.policy,
              progress=lambda line: print(line, flush=True),
              meta={"command": "benchmarks/bench_learned.py --train-steps " + str(args.train_steps)
                    + (f" --dram-bw {args.dram_bw}" if args.dram_bw else "")})
    pol, meta = load_policy(args.policy)
    if args.neighbourhood is not None:
        neighbourhood(args.neighbourhood or list(held_out()), args.devices, pol)
        return
    if args.finetune_validation:
        finetune_validation(pol, args.json, args.finetune)
        return
    if args.in_distribution:
        in_distribution(pol, args.json)
        return
    print(f"policy: {meta.get('command')} ({meta.get('train_seconds')} s, seed {meta.get('seed')}; training set: "
          f"{', '.join(t['name'] for t in meta.get('training_set', []))})")
    rows: list[dict] = []
    # what the rows depend on beside the graph: a file of other settings is refused, not read back as if measured
    # with these (a 4-device file's rows printed under "2 devices" with another policy named: a new user's check)
    settings = {"devices": args.devices, "dram_bw_words": args.dram_bw or 512, "samples": args.samples,
                "rounds": args.rounds, "finetune": args.finetune, "rl_factor": args.rl_factor, "policy": meta}
    if args.json and os.path.exists(args.json):
        with open(args.json) as f:
            stored = json.load(f)
        # files written before the settings were recorded hold the defaults of the four added to them
        theirs = {**{"samples": 0, "rounds": 4, "finetune": 100, "rl_factor": 10}, **stored.get("settings", {}),
                  "devices": stored["devices"], "dram_bw_words": stored["dram_bw_words"], "policy": stored["policy"]}
        differ = [k for k in settings if theirs.get(k) != settings[k]]
        if differ:
            policy = f": its policy {theirs['policy'].get('command')}" if "policy" in differ else ""
            raise SystemExit(f"bench_learned.py: {args.json} holds rows measured with other settings "
                             f"({', '.join(differ)}{policy}); give another --json or the same settings")
        rows = [r for r in stored["rows"] if r["graph"] in args.graphs]
    done = {r["graph"] for r in rows}
    hdr = (f"{'graph':<20} {'ops':>5} {'best baseline':>28} {'zero-shot':>9} {'untrained':>9} {'1 pass':>7} "
           f"{'fine-tuned':>10} "
           f"{'per-graph RL':>12} "
           f"{'joint':>7} {'sequential':>10} {'joint 3x':>8} {'zs s':>6}")
    print(f"\n## {args.devices} devices; step times relative to the best baseline (lower is better)\n{hdr}")
    for r in rows:
        print(f"{r['graph']:<20} {r['ops']:>5} {r['best_baseline']:>18} {r['best_baseline_time']:>9.3g} "
              f"{r['zero_shot']:>9.4f} {r.get('zero_shot_untrained', float('nan')):>9.4f} {r['one_pass']:>7.4f} "
              f"{r['fine_tuned']:>10.4f} "
              f"{r['per_graph_rl']:>12.4f} {r['joint']:>7.4f} "
              f"{r['sequential']:>10.4f} {r.get('joint_3x', float('nan')):>8.4f} {r['zero_shot_seconds']:>6.1f}  "
              f"(from {args.json})")
    for name in args.graphs:
        if name in done:
            continue
        g = held_out()[name]()
        cm = PlacementCostModel(device_set(devices=args.devices, accel=accel))
        task = make_task(name, g, cm)
        B = task.reference
        # zero-shot: refinement rounds of one forward pass each; and one pass alone, unguarded
        t0 = time.perf_counter()
        zs = propose(pol, task.jp, samples=args.samples, obs=task.obs, rounds=args.rounds)
        zs_s = time.perf_counter() - t0
        one = task.jp.evaluate(pol.act(obs_tensors(task.obs), greedy=True).decisions)
        # the same zero-shot use of the policy before training (its seed-0 initialization): what training adds
        zs0 = propose(fresh_policy(0), task.jp, samples=args.samples, obs=task.obs, rounds=args.rounds)
        ft = fine_tune(pol, task, budget=args.finetune, seed=0)
        rl = fine_tune(None, task, budget=args.finetune * args.rl_factor, seed=0)
        # joint vs sequential on copies of the graph
        gj, gs = g.copy(), g.copy()
        _, _, oj, _ = run_learned(gj, cm, "learned-optimize", samples=args.samples, policy=pol, rounds=args.rounds)
        sims = 0
        for p in ("learned-place", "learned-fuse", "learned-schedule"):
            jp, dec, os_, st = run_learned(gs, cm, p, samples=args.samples, policy=pol, rounds=args.rounds)
            apply_decisions(gs, jp, dec, os_, p)
            sims += len(st["candidates"])
        # the joint pass given as many rounds as the three passes (3x; they end once one improves nothing)
        _, _, oj3, st3 = run_learned(g.copy(), cm, "learned-optimize", samples=args.samples, policy=pol,
                                     rounds=3 * args.rounds)
        row = {"graph": name, "ops": task.jp.n, "best_baseline": task.baseline, "best_baseline_time": B,
               "zero_shot": zs.outcome.makespan / B, "zero_shot_seconds": zs_s, "zero_shot_from": zs.source,
               "zero_shot_untrained": zs0.outcome.makespan / B,
               "one_pass": one.makespan / B if one.valid else float("inf"),
               "fine_tuned": ft["outcome"].makespan / B, "per_graph_rl": rl["outcome"].makespan / B,
               # (a)'s best after as many samples as fine-tuning had: transfer at equal samples
               "per_graph_rl_at_ft_budget": rl["curve"][min(args.finetune, len(rl["curve"])) - 1] / B,
               "joint": oj.makespan / B, "sequential": os_.makespan / B, "joint_3x": oj3.makespan / B,
               "joint_3x_sims": len(st3["candidates"]), "sequential_sims": sims,
               "ft_samples_to_beat": ft["samples_to_beat"], "rl_samples_to_beat": rl["samples_to_beat"],
               "ft_samples_to_beat_1pct": samples_to(ft["curve"], 0.99 * B),
               "rl_samples_to_beat_1pct": samples_to(rl["curve"], 0.99 * B),
               # best-so-far after each sample, relative to the best baseline (for --plot)
               "ft_curve": [round(t / B, 6) for t in ft["curve"]], "rl_curve": [round(t / B, 6) for t in rl["curve"]]}
        if not args.no_rl_placer:
            gp = g.copy()
            t0 = time.perf_counter()
            placed = place_graph(gp, cm, method="rl", budget=args.finetune * args.rl_factor, seed=0)
            rl_s = time.perf_counter() - t0
            base_t = min(placed.report["baselines"].values())
            best_pl = min((c for c in placed.candidates.values() if c.valid and c.method != "rl"),
                          key=lambda c: c.schedule.makespan)
            # placement alone: the shipped policy fine-tuned on devices only (graph order, no fusion), from
            # the best placement baseline; every simulation within the budget
            ptask = make_task(name, g.copy(), cm, hint=np.asarray(best_pl.placement))
            keep = Decisions.default(ptask.jp.n, np.asarray(best_pl.placement))
            t0 = time.perf_counter()
            lft = fine_tune(pol, ptask, budget=args.finetune, seed=0, reference=base_t,
                            transform=lambda d, keep=keep, jp=ptask.jp: combine(d, keep, {"place"}, jp))
            row.update(rl_placer=placed.report["makespan"] / B, rl_placer_seconds=rl_s,
                       place_best_baseline=base_t, place_best_baseline_name=best_pl.method,
                       place_rl=placed.report["makespan"] / base_t,
                       place_rl_samples_to_beat=placed.info["learned"]["samples_to_beat_best_baseline"],
                       place_learned_ft=lft["outcome"].makespan / base_t,
                       place_learned_ft_seconds=time.perf_counter() - t0,
                       place_learned_samples_to_beat=lft["samples_to_beat"])
        rows.append(row)
        if args.json:
            write_json(args.json, {"devices": args.devices, "dram_bw_words": args.dram_bw or 512, "rows": rows,
                                   "policy": meta, "settings": settings}, indent=1)
        print(f"{name:<20} {task.jp.n:>5} {task.baseline:>18} {B:>9.3g} {row['zero_shot']:>9.4f} "
              f"{row['zero_shot_untrained']:>9.4f} {row['one_pass']:>7.4f} {row['fine_tuned']:>10.4f} {row['per_graph_rl']:>12.4f} "
              f"{row['joint']:>7.4f} {row['sequential']:>10.4f} {row['joint_3x']:>8.4f} "
              f"{zs_s:>6.1f}", flush=True)
    print("\nsamples to beat (<1x) / beat by 1% (<0.99x) the best baseline: fine-tuned vs per-graph RL (both start "
          "from the hint; every simulation counted; None: never within the budget); and per-graph RL (a)'s best "
          f"after {args.finetune} samples, as many as fine-tuning had")
    for r in rows:
        print(f"{r['graph']:<20} beat {r['ft_samples_to_beat']} vs {r['rl_samples_to_beat']}; beat 1% "
              f"{r['ft_samples_to_beat_1pct']} vs {r['rl_samples_to_beat_1pct']}; (a) after {args.finetune}: "
              f"{r.get('per_graph_rl_at_ft_budget', float('nan')):.4f} (fine-tuned {r['fine_tuned']:.4f})")
    if all("place_rl" in r for r in rows):
        print("\nper-graph RL = the rl placer (place --method rl), relative to the best of the 36 baselines; and "
              "placement only (graph order, no fusion; relative to the best placement baseline): learned "
              f"fine-tuned ({args.finetune} samples) vs the rl placer ({args.finetune * args.rl_factor} samples)")
        for r in rows:
            print(f"{r['graph']:<20} rl placer {r['rl_placer']:.4f} ({r['rl_placer_seconds']:.0f} s) | placement "
                  f"only: learned {r['place_learned_ft']:.4f} (beat at {r['place_learned_samples_to_beat']}) rl "
                  f"{r['place_rl']:.4f} (beat at {r['place_rl_samples_to_beat']}) vs {r['place_best_baseline_name']}")
    if args.plot:
        plot_curves(rows, args.plot, args.finetune, args.finetune * args.rl_factor)
    n = len(rows)
    beats = sum(r["zero_shot"] < 1 for r in rows)
    beats0 = sum(r.get("zero_shot_untrained", math.inf) < 1 for r in rows)
    trained_better = sum(r["zero_shot"] < r.get("zero_shot_untrained", math.inf) for r in rows)
    untrained_better = sum(r["zero_shot"] > r.get("zero_shot_untrained", -math.inf) for r in rows)
    worst = max(r["zero_shot"] for r in rows)
    worst1 = max(r["one_pass"] for r in rows)
    big = [r for r in rows if r["ops"] >= 500]
    ft_wins = sum(r["fine_tuned"] < r["per_graph_rl"] for r in big)
    ft_wins_rl = sum(r["fine_tuned"] < r["rl_placer"] for r in big if "rl_placer" in r)
    place_wins = sum(r["place_learned_ft"] < r["place_rl"] for r in big if "place_rl" in r)
    joint_wins = sum(r["joint"] < r["sequential"] for r in rows)
    joint3_wins = sum(r["joint_3x"] < r["sequential"] for r in rows)
    joint_ties = sum(r["joint"] == r["sequential"] for r in rows)
    print(f"\ngoal: zero-shot beats the best baseline on {beats}/{n} (majority needed), worst {worst:.3f} (<= 1.05 "
          f"needed; one pass alone worst {worst1:.3f}; the untrained policy beats it on {beats0}/{n}, the trained one "
          f"is faster than it on {trained_better}, slower on {untrained_better}); fine-tuned beats per-graph RL on "
          f"{ft_wins}/{len(big)} graphs of >= 500 ops (all needed), the rl placer on {ft_wins_rl}/{len(big)} "
          f"(placement only: {place_wins}/{len(big)}); joint "
          f"beats sequential on {joint_wins}/{n} (ties {joint_ties}; with as many rounds as the three passes: "
          f"{joint3_wins}/{n})")


if __name__ == "__main__":
    main()
