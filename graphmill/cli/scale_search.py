"""``graphmill scale-search``: grid search of compound-scaling coefficients, resumable."""

from __future__ import annotations

import argparse
import os
import sys

from graphmill import api
from graphmill.cli.common import emit_json, stderr, stopped_word
from graphmill.util.errors import at_least, at_most, naming_file
from graphmill.util.files import check_output_paths


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("scale-search", help="search compound-scaling coefficients alpha, beta, gamma (grid, "
                                            "alpha*beta^2*gamma^2 ~ 2) by short training runs and a cost")
    p.add_argument("model", nargs="?", help="base model (default: a small ResNet-18 for 16x16 digits)")
    p.add_argument("--out", default="scale-search",
                   help="folder for results.json, the plot and the checkpoint (default scale-search)")
    p.add_argument("--checkpoint", help="checkpoint file (default OUT/checkpoint.json); a rerun resumes from it")
    p.add_argument("--cost", choices=["macs", "sim"], default="macs",
                   help="cost: MACs or simulated cycles (default macs)")
    p.add_argument("--accel", help="accelerator TOML for --cost sim")
    p.add_argument("--max-cost", type=float, help="cost budget (candidates above it rank last)")
    p.add_argument("--phi", type=float, default=1.0, help="compound coefficient for the search (default 1)")
    p.add_argument("--step", type=float, default=0.1, help="grid step (default 0.1)")
    p.add_argument("--max-value", type=float, default=2.0, help="largest alpha/beta/gamma (default 2)")
    p.add_argument("--tolerance", type=float, default=0.1, help="|alpha*beta^2*gamma^2 - 2| allowed (default 0.1)")
    p.add_argument("--steps", type=int, default=30, help="training steps per candidate (default 30)")
    p.add_argument("--limit", type=int, help="evaluate at most this many candidates")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the scaled models' new weights, the data split and the training (default 0)")
    p.add_argument("--stub", action="store_true", help="use the stub evaluator (NOT an accuracy; for trying the tool)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    # the checkpoint over an input, or over one of OUT's files, was written over (and a resume then failed)
    outputs = {f"--out's {n}": os.path.join(args.out, n) for n in ("results.json", "accuracy_vs_cost.png")}
    check_output_paths({"MODEL": args.model, "--accel": args.accel}, {**outputs, "--checkpoint": args.checkpoint},
                       made=args.out)
    base = api.load(args.model) if args.model else None
    with naming_file(args.model):  # the base's refusals name its file (none without a model)
        out = api.scale_search(base, out=args.out, checkpoint=args.checkpoint, cost=args.cost, accel=args.accel,
                               max_cost=args.max_cost, phi=args.phi, step=args.step, max_value=args.max_value,
                               tolerance=args.tolerance, steps=args.steps, limit=args.limit, seed=args.seed,
                               stub=args.stub)
    result = out["result"]
    if args.json:
        emit_json(result.to_dict())
    else:
        b = result.best
        if b:
            # the stub's stand-in was printed as an accuracy (an outside check): it is named for what it is
            score = "stub score (not an accuracy)" if b.get("stub") else "accuracy"
            print(f"best: alpha={b['alpha']:g} beta={b['beta']:g} gamma={b['gamma']:g}  "
                  f"{score} {b['accuracy']:.3f}  {out['cost']} {b['cost']:.4g}")
        print(f"{len(result.candidates)} candidate(s); wrote {', '.join(out['written']) or 'nothing'}")
    if result.interrupted:
        resume = "run the same command again to resume from the checkpoint" if out["checkpoint"] in out["written"] \
            else "no candidate was finished, nothing to resume"
        print(f"{stopped_word('scale-search')}: {resume}", file=sys.stderr)
        return 130
    failed = [r for r in result.candidates if r.get("status") != "ok"]
    if result.candidates and len(failed) == len(result.candidates):
        stderr(f"graphmill scale-search: error: every candidate failed ({len(failed)}); the first: "
               f"{failed[0].get('error', '?').splitlines()[0] if failed[0].get('error') else '?'}")
        return 1
    if result.best is None and len(failed) < len(result.candidates):
        cheapest = min((r for r in result.candidates if r.get("status") == "ok"), key=lambda r: r["cost"])
        stderr(f"graphmill scale-search: error: no candidate within --max-cost {at_most(args.max_cost)}; the cheapest, "
               f"alpha={cheapest['alpha']:g} beta={cheapest['beta']:g} gamma={cheapest['gamma']:g}, costs "
               f"{at_least(cheapest['cost'])} {out['cost']} (results.json lists them all)")
        return 1
    return 0
