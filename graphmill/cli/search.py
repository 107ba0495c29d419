"""``graphmill search``: architecture (or any) search over a space, resumable, into a folder."""

from __future__ import annotations

import argparse
import os
import sys

from graphmill import api
from graphmill.cli.common import emit_json, stopped_word
from graphmill.errors import UserInputError
from graphmill.util.interrupts import INTERRUPTS, is_interrupt


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("search", help="search a space (mnasnet, accelerator, mnasnet+accelerator or a JSON file) "
                                      "with a strategy and an evaluator, or run a whole search method "
                                      "(--method autohas|nahas|evanet); Ctrl-C, then rerun: resumes")
    p.add_argument("--space", metavar="mnasnet|FILE.json",
                   help="a built-in space (mnasnet, accelerator, mnasnet+accelerator) or a space JSON file")
    p.add_argument("--method", metavar="autohas|nahas|evanet",
                   help="instead of --space: a whole search method with its own task, space and training "
                        "(AutoHAS, NAHAS, EvaNet; see the README); its settings go in --option KEY=VALUE")
    p.add_argument("--evaluator", metavar="builtin|MODULE:FUNCTION",
                   help="'builtin' (MnasNet's reward: digits accuracy x simulated latency) or a callable "
                        "evaluate(config) -> float | dict importable as MODULE:FUNCTION (default builtin)")
    p.add_argument("--strategy", help="default (the default), random, evolution, reinforce, ppo, tpe, grid")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a strategy option (repeatable), e.g. --option population=20; with --method, one of "
                        "the method's settings")
    p.add_argument("--budget", type=int, metavar="N",
                   help="evaluations (default 50; with --method, the method's own default)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for checkpoint.json, history.jsonl, best.onnx and the plots")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="evaluations at once (default 1)")
    p.add_argument("--executor", help="inprocess, local (a process pool) or ray (default: inprocess for one "
                                       "worker, local for more)")
    p.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster (default: start one locally)")
    p.add_argument("--objective", metavar="NAME[:KEY=V,...]",
                   help="mnasnet (soft, w=-0.07), mnasnet-hard (alpha 0, beta -1) or accuracy; options "
                        "target_ms, alpha, beta, e.g. mnasnet:target_ms=40 (default: mnasnet, T = MnasNet-A1's "
                        "latency on the accelerator)")
    p.add_argument("--accel", metavar="A.toml", help="the accelerator for latency (base of the accelerator space)")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds per evaluation; slower trials fail")
    p.add_argument("--seed", type=int, default=0, help="seed of the strategy (and the builtin evaluator) (default 0)")
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON on stdout (progress lines then go to stderr; without --json, to "
                        "stdout)")
    g = p.add_argument_group("built-in evaluator (proxy task)")
    g.add_argument("--steps", type=int, help="training steps per candidate (default 100)")
    g.add_argument("--proxy-width", type=float, help="channel multiplier of the trained proxy (default 0.25)")
    g.add_argument("--proxy-resolution", type=int, help="input size of the trained proxy, pixels (default 16)")
    g.add_argument("--latency", choices=["sim", "ort"], help="latency from the simulator (default) or ONNX Runtime")
    g.add_argument("--latency-width", type=float, help="channel multiplier of the timed network (default 1.0)")
    g.add_argument("--latency-resolution", type=int, help="input size of the timed network (default 224)")
    p.set_defaults(func=run)
    return p


def _proxy(args: argparse.Namespace) -> dict:
    names = {"steps": "steps", "proxy_width": "width", "proxy_resolution": "resolution", "latency": "latency",
             "latency_width": "latency_width", "latency_resolution": "latency_resolution"}
    proxy = {key: getattr(args, a) for a, key in names.items() if getattr(args, a) is not None}
    api.check_search_proxy(proxy, flags={key: _SPACE_ONLY[a] for a, key in names.items()})
    return proxy


#: options that belong to --space searches only (dest -> flag), refused beside --method
_SPACE_ONLY = {"evaluator": "--evaluator", "strategy": "--strategy", "objective": "--objective",
               "timeout": "--timeout", "steps": "--steps", "proxy_width": "--proxy-width",
               "proxy_resolution": "--proxy-resolution", "latency": "--latency", "latency_width": "--latency-width",
               "latency_resolution": "--latency-resolution"}


def _run_method(args: argparse.Namespace, progress) -> int:
    for dest, flag in _SPACE_ONLY.items():
        value = getattr(args, dest)
        if value is not None:
            raise UserInputError(f"{flag} belongs to --space searches; with --method {args.method} give the "
                                     f"method's settings as --option KEY=VALUE")
    try:
        s = api.search_method(args.method, out=args.out, budget=args.budget, seed=args.seed, workers=args.workers,
                              executor=args.executor, ray_address=args.ray_address, accel=args.accel,
                              options=args.option, progress=progress)
    except INTERRUPTS as e:  # before the method's own handling (its setup): "resume from the last checkpoint"
        # was promised where none was written, and --json printed nothing (an outside check)
        if not is_interrupt(e):
            raise
        return _stopped_before_checkpoint(args, {"method": args.method})
    if args.json:
        emit_json(s)
    else:
        best = s.get("best")
        if best:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in best.items()  # NAHAS's "energy" repeats energy_uj
                              if isinstance(v, (int, float)) and not isinstance(v, bool)
                              and not (k == "energy" and best.get("energy_uj") == v))
            print(f"best: {shown}" if shown else "best: see report.json")
            if best.get("feasible") is False:  # report.json says so; the numbers above alone did not
                print("  (infeasible: no trial met the constraints; this is the highest-reward trial anyway)")
        elif s.get("interrupted"):  # stopped before a best was chosen: no trial need have failed
            print("best: none yet (interrupted before a best was chosen)")
        elif s.get("trials"):  # every trial failed: nothing else said so
            print(f"best: none: no trial succeeded (the reasons are in {s['out']})")
        kept = f"; kept {', '.join(s['kept'])}" if s.get("kept") else ""
        print(f"{s['method']} on {s['task']}: {s['trials']} trial(s); wrote {', '.join(s['files'])}{kept} in "
              f"{s['out']}")
    if s.get("interrupted"):
        stopped = stopped_word("search")
        print(f"{stopped}: run the same command again to resume from {s['checkpoint']}" if s.get("checkpoint")
              else f"{stopped} before the first checkpoint: run the same command again to start it over",
              file=sys.stderr)  # a None checkpoint was printed as "resume from None"
        return 130
    return 0


def _stopped_before_checkpoint(args: argparse.Namespace, report: dict) -> int:
    """A Ctrl-C that reached the command before the search's own handling (a method's setup, Ray's start): the
    top level's "resume from the last checkpoint" is re-raised to where one was written, else said as it is."""
    if any(os.path.exists(os.path.join(args.out, f)) for f in ("checkpoint.json", "checkpoint.pt")):
        raise KeyboardInterrupt
    if args.json:
        emit_json({**report, "out": args.out, "interrupted": True, "checkpoint": None, "trials": 0, "best": None})
    print(f"{stopped_word('search')} before the first checkpoint: run the same command again to "
          "start it over", file=sys.stderr)
    return 130


def run(args: argparse.Namespace) -> int:
    def progress(line: str) -> None:  # with --json stdout is the JSON alone: the lines go to stderr
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    if (args.space is None) == (args.method is None):
        raise UserInputError("give exactly one of --space SPACE and --method METHOD")
    if args.method is not None:
        return _run_method(args, progress)
    budget = 50 if args.budget is None else args.budget
    strategy = "default" if args.strategy is None else args.strategy  # '' is refused as unknown, not the default
    proxy = _proxy(args)
    try:
        out = api.search(args.space, args.evaluator or "builtin", strategy=strategy,
                         options=args.option, budget=budget,
                         out=args.out, workers=args.workers, executor=args.executor, ray_address=args.ray_address,
                         objective=args.objective, accel=args.accel, timeout=args.timeout, seed=args.seed,
                         proxy=proxy, progress=progress)
    except INTERRUPTS as e:  # while Ray started, before the runner's own handling: it promised a checkpoint
        # that was not there (an outside check)
        if not is_interrupt(e):
            raise
        return _stopped_before_checkpoint(args, {"space": args.space, "strategy": strategy, "failed": 0,
                                                 "new_trials": 0, "exhausted": False, "files": []})
    s = out["summary"]
    if not s["new_trials"] and not s["interrupted"]:
        # on stderr with --json (stdout is the JSON alone), on stdout after the summary otherwise; a space evaluated
        # whole said nothing at all (an outside check)
        nothing = (f"nothing evaluated: the checkpoint already holds every configuration of the space "
                   f"({s['trials']} trial(s)); no --budget adds any" if s["exhausted"] else
                   f"nothing evaluated: the checkpoint already holds {s['trials']} trial(s) for --budget {budget}; "
                   "a bigger --budget continues the run")
    else:
        nothing = None
    if args.json:
        emit_json(s)
        if nothing:
            print(nothing, file=sys.stderr)
    else:
        best = s.get("best")
        if best:
            # latency in ms: the unit the built-in evaluator's objectives read it in (mnasnet:target_ms); a user
            # evaluator's latency has whatever unit it has (it was shown as ms too: an outside check)
            ms = " ms" if args.evaluator in (None, "builtin") else ""
            shown = ", ".join(f"{k} {v:.4g}{ms if k == 'latency' else ''}" for k, v in best["metrics"].items()
                              if k in ("accuracy", "latency", "macs", "params") and isinstance(v, (int, float)))
            print(f"best: reward {best['reward']:.4f} (trial {best['number'] + 1}, number {best['number']} in "
                  f"history.jsonl){': ' + shown if shown else ''}")
        print(f"{s['trials']} trial(s), {s['failed']} failed; wrote {', '.join(s['files'])} in {s['out']}")
        if nothing:
            print(nothing)
    if out["summary"]["interrupted"]:
        ck = out["summary"]["checkpoint"]
        stopped = stopped_word("search")
        print(f"{stopped}: run the same command again to resume from {ck}" if ck and os.path.exists(ck)
              else f"{stopped} before the first result: run the same command again to start it over",
              file=sys.stderr)  # it named a checkpoint.json that was not there (an outside check)
        return 130
    return 0
