"""``graphmill train-policy``: train the learned passes' graph policy with PPO across graphs; write .npz + .json."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from graphmill import api
from graphmill.cli.common import emit_json, output_file, report_file, report_interrupted
from graphmill.errors import UserInputError
from graphmill.util.files import check_output_paths, check_target
from graphmill.util.interrupts import INTERRUPTS, is_interrupt


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train-policy", help="train the learned passes' policy (GNN + attention, PPO across graphs) "
                                            "and write it as POLICY.npz with POLICY.json beside it")
    p.add_argument("-o", "--output", type=output_file,
                   required=True, metavar="POLICY.npz", help="where to write the policy")
    p.add_argument("--steps", type=int, metavar="N", help="PPO steps (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--quick", action="store_true", help="a small training set (a smoke test)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a trainer option: graphs, samples, epochs, clip, lr, entropy, penalty, hidden, layers, "
                        "time_limit, reset (repeatable)")
    p.add_argument("--checkpoint", metavar="PATH", help="save after every step; resume from it (removed when the run finishes)")
    p.add_argument("--json", type=report_file, metavar="REPORT", help="write the summary as JSON ('-': stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_target(args.output)
    if args.json and args.json != "-":
        check_target(args.json)
        if args.output.endswith(".npz") and os.path.abspath(args.json) == os.path.abspath(args.output[:-4] + ".json"):
            raise UserInputError(f"--json {args.json}: that is where the policy's metadata goes; choose another path")
    # the checkpoint is written during the run and removed at its end: it may name neither output
    meta = args.output[:-4] + ".json" if args.output.endswith(".npz") else None
    check_output_paths({}, {"-o": args.output, "the policy's metadata (beside -o)": meta, "--json": args.json,
                            "--checkpoint": args.checkpoint})
    options: dict = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserInputError(f"--option {item!r}: expected KEY=VALUE")
        try:
            options[key] = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise UserInputError(f"--option {item!r}: the value must be a number") from None

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    command = "graphmill train-policy " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    try:
        out = api.train_policy(args.output, steps=args.steps, seed=args.seed, quick=args.quick, options=options,
                               checkpoint=args.checkpoint, progress=progress, command=command)
    except INTERRUPTS as e:  # a Ctrl-C outside the steps (building the training set, writing the policy) or a
        # second one during a step: say what a rerun does (the CLI's handler then prints "interrupted", exit 130)
        if not is_interrupt(e):
            raise
        if args.checkpoint and os.path.exists(args.checkpoint):
            print(f"graphmill train-policy: {args.checkpoint} holds the last finished step; rerun the same command "
                  "to resume", file=sys.stderr)
        else:
            print("graphmill train-policy: nothing saved (no --checkpoint, or no step finished); a rerun starts "
                  "over", file=sys.stderr)
        if args.json:  # the documented report, here too (it was written only once the graphs were ready; an
            # outside check): what this process did is unknown past "no policy"
            emit_json({"output": None, "steps": None, "total_steps": args.steps, "samples": None, "seconds": None,
                       "resumed": None, "final": None, "interrupted": True,
                       "checkpoint": args.checkpoint if args.checkpoint and os.path.exists(args.checkpoint) else None},
                      args.json)
        raise
    if args.json:
        emit_json(out, args.json)
    if out["interrupted"]:  # after the step under way, checkpointed: where it stopped and how to resume, exit 130
        held = {"steps": out["steps"], "total_steps": out["total_steps"], "files": {"checkpoint": out["checkpoint"]},
                "checkpoint_step": out["steps"] if out["checkpoint"] else 0}
        return report_interrupted(held, "train-policy", nothing="no policy written, and no --checkpoint to resume from "
                                                                "(or no step finished): a rerun starts over")
    if args.json != "-":
        final = "n/a" if out["final"] is None else f"{out['final']:.3f}"
        print(f"trained {out['steps']} steps ({out['samples']} samples) in {out['seconds']:.0f} s; last step's "
              f"samples at {final} of the best baseline's step time")
        print(f"wrote {out['output']} and {out['output'][:-4]}.json")
    return 0
