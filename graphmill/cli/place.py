"""``graphmill place``: put every op of a model on one of several devices; simulate the step; report and save."""

from __future__ import annotations

import argparse
import math
import os
import sys

from graphmill import api
from graphmill.cli.common import (add_output_args, check_output_path, check_outputs_against_weights, emit_json,
                                  model_output_file, parse_dims, report_file, save_output)
from graphmill.util.errors import naming_file
from graphmill.util.files import check_output_paths, check_target
from graphmill.util.interrupts import INTERRUPTS, is_interrupt
from graphmill.util.plots import check_png_path

METHODS = "single, round-robin, expert, heft, heft-colocated, metis, rl, hierarchical, learned"


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("place", help="place ops on devices (heuristics, METIS, an RL placer, the hierarchical "
                                     "grouper-placer) so that the simulated step finishes soonest")
    p.add_argument("model", help="an ONNX model file")
    dev = p.add_mutually_exclusive_group(required=True)
    dev.add_argument("--devices", type=int, metavar="N", help="N identical chips (of --accel, or the built-in one)")
    dev.add_argument("--devices-file", metavar="D.toml", help="heterogeneous devices and links (README)")
    p.add_argument("--accel", metavar="A.toml", help="accelerator config of the chips (default: built-in)")
    p.add_argument("--method", default="heft", help=f"{METHODS} (default heft)")
    p.add_argument("--budget", type=int, metavar="N",
                   help="placements rl/hierarchical may simulate (default 800); learned: fine-tuning samples "
                        "after its zero-shot ones (default 0: none); the heuristics take none")
    p.add_argument("--memory", type=float, metavar="GB", help="memory of every device (default: the file's, or 16)")
    p.add_argument("--cost", default="roofline", help="op costs: roofline (default), simulator (cycle-level) or ort (measured: ONNX "
                        "Runtime's per-op profiler on this machine)")
    p.add_argument("--training", action="store_true",
                   help="place the training step (forward + backward ops; README states the backward cost rule)")
    p.add_argument("--seed", type=int, default=0, help="seed of the learned placers and METIS (default 0)")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="size of a symbolic dimension, e.g. the batch of a zoo model: --dim N=32 (the placed model "
                        "is saved with it)")
    p.add_argument("--checkpoint", metavar="PATH", help="rl/hierarchical: save after every step; learned with "
                                                        "--budget: after every fine-tuning iteration; a rerun resumes "
                                                        "from it (other methods take none)")
    p.add_argument("--policy", metavar="POLICY.npz", help="learned: a policy file (default: the shipped one)")
    p.add_argument("-o", "--output", type=model_output_file,
                   required=True, metavar="OUT.onnx", help="the model with node meta 'device'")
    p.add_argument("--json", type=report_file, metavar="REPORT", help="write the JSON report to REPORT ('-': stdout)")
    p.add_argument("--plot", metavar="gantt.png", help="write the simulated schedule as a Gantt PNG")
    p.add_argument("--run", action="store_true",
                   help="execution check: one process per device (torch.distributed, gloo) against one ORT session")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_output_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    seen: dict[str, str] = {}
    for flag, path in (("-o", args.output), ("--json", args.json), ("--plot", args.plot)):  # before any work
        if path and path != "-":
            check_target(path)
            if flag == "-o":  # --force lets -o replace the input, never a report or a plot
                check_output_path(path, [args.model], args.force)
            other = seen.setdefault(os.path.realpath(path), flag)
            if other != flag:  # the later write would replace the earlier one (--plot is written first)
                from graphmill.errors import UserInputError

                raise UserInputError(f"{flag} {path}: the same file as {other}; give each output its own path")
    check_output_paths({"MODEL": args.model}, {"--json": args.json, "--plot": args.plot,
                                               "--checkpoint": args.checkpoint})  # it said to remove the model
    # the other files the command reads (the model is checked above, with --force), and the checkpoint it writes
    policy_meta = args.policy[:-4] + ".json" if args.policy and args.policy.endswith(".npz") else None
    check_output_paths({"--accel": args.accel, "--devices-file": args.devices_file, "--policy": args.policy,
                        "--policy's metadata": policy_meta},
                       {"-o": args.output, "--json": args.json, "--plot": args.plot, "--checkpoint": args.checkpoint})
    check_png_path(args.plot)  # before the model is read (api.place checks it too)

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    if args.devices is not None and args.devices < 1:
        from graphmill.errors import UserInputError

        raise UserInputError(f"--devices {args.devices}: must be an integer >= 1")
    if args.policy and args.method != "learned":
        from graphmill.errors import UserInputError

        raise UserInputError(f"--policy {args.policy}: only --method learned reads a policy")
    api.check_place_checkpoint(args.method, args.budget, args.checkpoint)  # before the model is read
    graph = api.load(args.model)
    check_outputs_against_weights(graph, args, {"--json": args.json, "--plot": args.plot,
                                                "--checkpoint": args.checkpoint},
                                  {"--accel": args.accel, "--devices-file": args.devices_file, "--policy": args.policy,
                                   "--policy's metadata": policy_meta})
    info: dict = {}
    report = None
    try:
        with naming_file(args.model):  # "graph 'g' has symbolic dimension(s)" named no file (an outside check)
            report = api.place(graph, method=args.method, devices=args.devices, devices_file=args.devices_file,
                               accel=args.accel, memory_gb=args.memory, cost=args.cost, budget=args.budget,
                               seed=args.seed, training=args.training, progress=progress,
                               checkpoint=args.checkpoint, plot=args.plot, info=info,
                               options={"policy": args.policy} if args.policy else None, dims=parse_dims(args.dim))
        # inside the try: a Ctrl-C during the execution check or the writes said only "interrupted" (an outside check)
        run_result = api.check_placement(graph) if args.run else None
        if run_result is not None:  # in the report, as partition --run's: with --json - it was said nowhere
            report["run"] = run_result
        save_output(graph, args)
        if args.json:
            emit_json(report, args.json)
    except INTERRUPTS as e:  # say what a rerun does (the CLI's handler then prints "interrupted", exit 130)
        if not is_interrupt(e):
            raise
        if report is not None:
            resume = (f"it resumes from {args.checkpoint}, whose search is done" if args.checkpoint
                      and os.path.exists(args.checkpoint) else "it places the model again")
            print("graphmill place: stopped after the search, before all of its outputs were written; run the same "
                  f"command again ({resume})", file=sys.stderr)
        elif args.checkpoint and os.path.exists(args.checkpoint):
            print(f"graphmill place: nothing written but {args.checkpoint}; run the same command again to resume "
                  "from it", file=sys.stderr)
        elif args.checkpoint:  # stopped before the search's first checkpoint (an outside check: it said nothing)
            print(f"graphmill place: nothing written; stopped before the first save to {args.checkpoint}, so a rerun "
                  "starts over", file=sys.stderr)
        elif args.method in ("rl", "hierarchical", "learned"):
            print("graphmill place: nothing written; a rerun starts over (--checkpoint PATH saves the search as it "
                  "goes, for the same command to resume)", file=sys.stderr)
        raise
    if args.json != "-":
        print(table(report, info))
        if run_result is not None:
            processes, runs = len(run_result["devices"]), run_result["runs"]
            print(f"execution check: {processes} process{'es' * (processes != 1)}, {runs} run{'s' * (runs != 1)}, "
                  f"outputs {'equal' if run_result['outputs_equal'] else 'DIFFER'} (max |diff| "
                  f"{run_result['max_abs_diff']:.2e}; tolerance {run_result['tolerance']}) vs one ONNX Runtime session; "
                  "measured step "
                  f"{run_result['step_time_s'] * 1e3:.1f} ms (one session {run_result['reference_step_time_s'] * 1e3:.1f} ms)")
        for path in (args.output, args.plot, args.json):
            if path and path != "-":
                print(f"wrote {path}")
    if run_result is not None and not run_result["outputs_equal"]:
        return 1
    return 0


def learned_line(method: str, learned: dict, baselines: set[str]) -> str:
    """What the learned or RL placer's own samples did. Both keep the best baseline's placement when no sample
    beats it, so "best from single; samples to reach the best baseline: not reached" read as a contradiction."""
    if not learned["samples"]:  # one device: nothing sampled ("its sample 0 was the first"; an outside check)
        return f"{method}: no placement sampled; the best baseline's ({learned['best_from']}) is kept"
    n, steps = learned["samples"], learned["steps"]
    # zero-shot simulates without a training step ("6 placements in 0 steps"; a new user's reading)
    head = f"{method}: {n} placement{'s' if n != 1 else ''} " + (
        f"in {steps} step{'s' if steps != 1 else ''}" if steps else "(zero-shot, no training step)")
    if learned["best_from"] in baselines:
        head += f"; none beat the best baseline ({learned['best_from']}), whose placement is kept"
    else:
        head += f", best from {learned['best_from']}"
    reach = learned["samples_to_best_baseline"]
    # its own samples, not the placement reported: "no sample matched the best baseline" beside a result equal to
    # that baseline read as a contradiction too (an outside check)
    return head + ("; none of its own samples was as fast as the best baseline" if reach is None
                   else f"; its sample {reach} was the first as fast as the best baseline or faster")


def table(r: dict, info: dict) -> str:
    u = r["units"]
    counts = [0] * len(r["devices"])
    for d in r["placement"].values():
        counts[d] += 1
    lines = [f"{len(r['placement'])} ops on {len(r['devices'])} devices ({r['method']}); times in {u}",
             f"{'device':>12} {'ops':>6} {'peak memory':>14} {'capacity':>14}"]
    for d, name in enumerate(r["devices"]):
        cap = r["memory"]["capacity"][d]
        lines.append(f"{name:>12} {counts[d]:>6} {r['memory']['peak'][d]:>14,.0f} "
                     f"{cap if cap is None else format(cap, ',.0f'):>14}")
    lines.append(f"{'method':>12} {'step time':>16} {'vs ' + r['method']:>10} {'wall s':>8}")
    rows = dict(r["baselines"])
    rows.setdefault(r["method"], r["makespan"])
    over = set(info.get("over_memory", ()))
    for m, t in rows.items():
        wall = info.get("wall_s", {}).get(m)
        # a graph of data movement only simulates in 0 time (one Concat): the ratio is 1 between equals, not 1/0
        ratio = t / r["makespan"] if r["makespan"] else (1.0 if t == 0 else math.inf)
        lines.append(f"{m:>12} {t:>16,.0f} {ratio:>10.3f} {'' if wall is None else format(wall, '.2f'):>8}"
                     + ("  over memory: not achievable" if m in over else ""))
    learned = info.get("learned")
    if learned:
        lines.append(learned_line(r["method"], learned, set(r["baselines"])))
    faster = {m: t for m, t in rows.items() if m not in over and t < r["makespan"]}
    if faster:  # the written placement is the method's own, as asked; say when a baseline beat it
        best = min(faster, key=faster.get)
        lines.append(f"note: {best} takes {1 - faster[best] / r['makespan']:.1%} less step time than {r['method']} "
                     f"here (--method {best}; rl, hierarchical and learned start from the best baseline)")
    return "\n".join(lines)
