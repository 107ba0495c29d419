"""``graphmill partition``: cut a model into GPipe pipeline stages, simulate the schedule, optionally train it."""

from __future__ import annotations

import argparse
import re

from graphmill import api
from graphmill.cli.common import (add_output_args, check_output_path, check_outputs_against_weights, emit_json,
                                  model_output_file, parse_dims, report_file, save_output, stderr)
from graphmill.errors import UserInputError
from graphmill.util.files import check_output_paths, check_target
from graphmill.util.plots import check_png_path

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "ki": 1024, "kib": 1024, "mi": 1024 ** 2, "mib": 1024 ** 2, "gi": 1024 ** 3, "gib": 1024 ** 3,
          "ti": 1024 ** 4, "tib": 1024 ** 4}


def parse_size(text: str) -> float:
    """``16GB`` / ``512MiB`` / ``1e9`` -> bytes."""
    m = _SIZE.match(text or "")
    if not m:
        raise UserInputError(f"--memory-cap {text!r}: expected a size such as 16GB, 512MiB or 1e9 (bytes)")
    value = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    if not value > 0:
        raise UserInputError(f"--memory-cap {text!r}: must be > 0")
    return value


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("partition", help="cut a model into GPipe pipeline stages; simulate GPipe/1F1B; --run trains "
                                         "it on K local processes (torch.distributed.pipelining)")
    p.add_argument("model", help="an ONNX model file")
    p.add_argument("--stages", type=int, required=True, metavar="K", help="pipeline stages (devices)")
    p.add_argument("--microbatches", type=int, default=1, metavar="M", help="micro-batches per mini-batch (default 1)")
    p.add_argument("--schedule", default="gpipe", help="gpipe (default) or 1f1b")
    p.add_argument("--method", default="optimal",
                   help="optimal (default: dynamic program), balanced-time, balanced-params, equal-layers")
    p.add_argument("--objective", default="time", help="what optimal minimizes: time (default) or memory")
    dev = p.add_mutually_exclusive_group()
    dev.add_argument("--accel", metavar="A.toml", help="accelerator config; its system.chips are the devices")
    dev.add_argument("--devices-file", metavar="D.toml",
                     help="identical devices (memory_gb each) and their [link], in the device-placement format "
                          "(README); heterogeneous speeds are refused")
    p.add_argument("--memory-cap", metavar="SIZE",
                   help="memory per device, e.g. 16GB (default: the smallest memory_gb among the devices file's "
                        "first K devices; none for an accelerator that declares no memory)")
    p.add_argument("--batch", type=int, default=0, metavar="B",
                   help="mini-batch size (default, or 0: the model's, or M for a symbolic batch)")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="size of a symbolic dimension other than the batch (--batch sizes that), e.g. a sequence "
                        "length: --dim S=128 (the partitioned model is saved at it)")
    p.add_argument("--no-remat", action="store_true", help="keep every micro-batch's activations (no re-materialization)")
    p.add_argument("--optimizer", default="adam",
                   help="optimizer state the memory model counts: adam, momentum, sgd (default adam)")
    p.add_argument("--cost", default="roofline", help="cost model: roofline (default) or simulator (cycle-level)")
    p.add_argument("-o", "--output", type=model_output_file, required=True, metavar="OUT.onnx",
                   help="the model with node meta 'stage' (and trained weights with --run)")
    p.add_argument("--json", type=report_file, metavar="REPORT", help="write the JSON report to REPORT ('-': stdout)")
    p.add_argument("--plot", metavar="gantt.png", help="write the simulated schedule as a Gantt PNG")
    p.add_argument("--run", action="store_true", help="train for real on K local processes and compare with one")
    p.add_argument("--steps", type=int, default=2, metavar="N", help="training steps with --run (default 2)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate with --run (default 0.01)")
    add_output_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    cap = parse_size(args.memory_cap) if args.memory_cap is not None else 0.0
    for path in (args.output, args.json, args.plot):  # every output checked before any work
        if path and path != "-":
            check_target(path)
    check_output_path(args.output, [args.model], args.force)  # --force lets -o replace the input
    check_output_paths({"MODEL": args.model}, {"--json": args.json, "--plot": args.plot})  # never a report or a plot
    check_output_paths({"--accel": args.accel, "--devices-file": args.devices_file},
                       {"-o": args.output, "--json": args.json, "--plot": args.plot})
    check_png_path(args.plot)  # before the model is read (api.partition checks it too)
    if args.run and args.steps < 1:
        raise UserInputError(f"--steps {args.steps}: must be a whole number >= 1")
    graph = api.load(args.model)
    check_outputs_against_weights(graph, args, {"--json": args.json, "--plot": args.plot},
                                  {"--accel": args.accel, "--devices-file": args.devices_file})
    report = api.partition(graph, stages=args.stages, microbatches=args.microbatches, schedule=args.schedule,
                           method=args.method, objective=args.objective, accel=args.accel,
                           devices_file=args.devices_file, memory_cap=cap, batch=args.batch,
                           remat=not args.no_remat, optimizer=args.optimizer, cost=args.cost, plot=args.plot, run=args.run,
                           steps=args.steps, lr=args.lr, progress=stderr, dims=parse_dims(args.dim))
    save_output(graph, args)
    if args.json:
        emit_json(report, args.json)
    if args.json != "-":
        print(table(report))
        for path in (args.output, args.plot, args.json):
            if path and path != "-":
                print(f"wrote {path}")
    warning = divergence_warning(report.get("run"), args.lr)
    if warning:
        stderr(warning)
    return 0


GROWTH_WARNED = 100.0  # a loss this many times its first value: the run diverged, though still finite


def divergence_warning(run: dict | None, lr: float) -> str | None:
    """A line for a --run whose loss grew GROWTH_WARNED-fold: it stayed finite (check_finite refuses inf and
    NaN), so the run "succeeded" with weights of no use (ResNet-18 at the default lr: 524 -> 1.5e27, exit 0,
    without a word; a new user's report)."""
    losses = (run or {}).get("losses") or []
    if len(losses) < 2 or not losses[0] > 0 or not losses[-1] > GROWTH_WARNED * losses[0]:
        return None
    return (f"warning: the loss grew from {losses[0]:.4g} to {losses[-1]:.4g} in {len(losses)} steps: training "
            f"diverged at --lr {lr:g}, and the weights written are of no use; give a smaller --lr")


def table(r: dict) -> str:
    u = r["units"]
    k, m = len(r["stages"]), r["microbatches"]
    lines = [f"{k} stage{'s' * (k != 1)}, {m} micro-batch{'es' * (m != 1)} of {r['microbatch_size']} "
             f"({r['method']}, {r['schedule']}); times per micro-batch in {u}",
             f"{'stage':>5} {'nodes':>6} {'forward':>14} {'backward':>14} {'transfer':>12} {'send bytes':>12} "
             f"{'memory':>14}"]
    for s in r["stages"]:
        lines.append(f"{s['index']:>5} {len(s['nodes']):>6} {s['forward']:>14,.0f} {s['backward']:>14,.0f} "
                     f"{s['transfer']:>12,.0f} {s['send_bytes']:>12,} {s['memory']:>14,}")
    lines.append(f"bottleneck {r['bottleneck']:,.0f} {u}; step {r['step_time']:,.0f} {u}; bubble "
                 f"{r['bubble_fraction']:.1%}; speedup vs one device {r['speedup_vs_one_device']:.2f}x")
    run = r.get("run")
    if run:
        lines.append(f"run: {run['stages']} process{'es' if run['stages'] > 1 else ''}, {run['steps']} step"
                     f"{'s' if run['steps'] > 1 else ''}, losses {run['losses']}; max relative "
                     f"difference from one process: loss {run['max_loss_rel_diff']:.2e}, gradients "
                     f"{run['max_grad_rel_diff']:.2e}; step {run['step_time_s'] * 1e3:.1f} ms "
                     f"(one process {run['reference_step_time_s'] * 1e3:.1f} ms)")
    return "\n".join(lines)
