"""``graphmill chip place``: place a chip netlist's macros (Circuit Training formats) by force-directed placement,
simulated annealing or the RL placer, scored by Circuit Training's proxy cost. ``graphmill chip cost``: that score
and the legality of a placement made anywhere (another placer's .plc, a hand edit)."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys

from graphmill import api
from graphmill.cli.common import check_output_paths, emit_json, output_file, report_file, stopped_word
from graphmill.errors import UserInputError


def _weights(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WL,DEN,CONG (three numbers, e.g. 1,0.5,0.5)")
    if not all(math.isfinite(v) and v >= 0 for v in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: each weight must be a number >= 0 (WL,DEN,CONG, e.g. 1,0.5,0.5)")
    if not any(parts):  # every placement would cost 0: nothing to optimize
        raise argparse.ArgumentTypeError(f"{text!r}: at least one weight must be > 0 (WL,DEN,CONG, e.g. 1,0.5,0.5)")
    return parts  # type: ignore[return-value]


# argparse takes an argument starting with '-' for an option unless it is one negative number, so
# `--weights -1,0.5,0.5` failed with "expected one argument"; a comma list starting with a negative
# number is a value too, and reaches _weights, which refuses it in one line.
_NEGATIVE_VALUE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\.?\d[\d.eE+-]*(,[^,]*)+$")


def _show(key: str, value) -> str:
    """One progress field: seconds to 0.1, other numbers to 4 significant digits (a fixed 4 decimals printed
    'elapsed 2.4000' and, late in an anneal, 'temperature 0.0000')."""
    if isinstance(value, float):
        return f"{key} {value:.1f}" if key == "elapsed" else f"{key} {value:.4g}"
    return f"{key} {value}"


def plc_output_file(text: str) -> str:
    """``-o`` of a placement: a ``.plc`` name (``-o x.onnx`` wrote .plc text into x.onnx; a new user's report)."""
    text = output_file(text)
    if not text.lower().endswith(".plc"):
        raise argparse.ArgumentTypeError(f"{text!r}: a placement is written as .plc text; give a name ending in .plc")
    return text


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("chip", help="chip macro placement (Circuit Training netlists and .plc files)")
    chip_sub = p.add_subparsers(dest="chip_command", metavar="SUBCOMMAND")
    chip_sub.required = True
    q = chip_sub.add_parser("place", help="place the macros of NETLIST, starting from --init, and write OUT.plc")
    q.add_argument("netlist", metavar="NETLIST", help="netlist.pb.txt (or .gz), Circuit Training's format")
    q.add_argument("--init", required=True, metavar="INITIAL.plc", help="initial placement (canvas, grid, routing)")
    q.add_argument("--method", required=True, choices=api.CHIP_METHODS, help="fd, sa or rl")
    q.add_argument("-o", "--output", type=plc_output_file, required=True, metavar="OUT.plc",
                   help="the placement written (.plc text)")
    q.add_argument("--budget-s", type=float, default=60.0, metavar="N", help="seconds of search (default 60)")
    q.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    if hasattr(q, "_negative_number_matcher"):  # argparse's own attribute (Python 3.11-3.13)
        q._negative_number_matcher = _NEGATIVE_VALUE
    q.add_argument("--weights", type=_weights, default=(1.0, 0.5, 0.5), metavar="WL,DEN,CONG",
                   help="proxy cost weights (default 1,0.5,0.5)")
    q.add_argument("--json", type=report_file, metavar="REPORT", help="write the JSON report to REPORT ('-': stdout)")
    q.add_argument("--plot", metavar="canvas.png", help="draw macros, clusters and the congestion heat map")
    q.add_argument("--quiet", action="store_true", help="no progress lines")
    q.set_defaults(func=run)
    c = chip_sub.add_parser("cost", help="the proxy cost and legality of the placement PLACEMENT.plc of NETLIST")
    c.add_argument("netlist", metavar="NETLIST", help="netlist.pb.txt (or .gz), Circuit Training's format")
    c.add_argument("placement", metavar="PLACEMENT.plc", help="the placement to score (canvas, grid, routing)")
    if hasattr(c, "_negative_number_matcher"):
        c._negative_number_matcher = _NEGATIVE_VALUE
    c.add_argument("--weights", type=_weights, default=(1.0, 0.5, 0.5), metavar="WL,DEN,CONG",
                   help="proxy cost weights (default 1,0.5,0.5)")
    c.add_argument("--json", type=report_file, metavar="REPORT",
                   help="write the JSON report to REPORT ('-': stdout; keys: proxy, "
                   "wirelength, density, congestion, legal, why_illegal, weights, netlist, placement)")
    c.set_defaults(func=run_cost)
    return p


def run_cost(args: argparse.Namespace) -> int:
    if args.json not in (None, "-"):
        check_output_paths({"NETLIST": args.netlist, "PLACEMENT.plc": args.placement}, {"--json": args.json})
    report = dict(api.chip_cost(args.netlist, args.placement, weights=args.weights), weights=list(args.weights),
                  netlist=args.netlist, placement=args.placement)
    if args.json == "-":
        emit_json(report)
        return 0
    print(f"proxy {report['proxy']:.4f} (wirelength {report['wirelength']:.4f}, density {report['density']:.4f}, "
          f"congestion {report['congestion']:.4f}; weights {','.join(f'{w:g}' for w in args.weights)}), "
          + ("legal" if report["legal"] else f"NOT LEGAL: {report['why_illegal']}"))
    if args.json:
        emit_json(report, args.json)
        print(f"wrote {args.json}")
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.budget_s > 0:
        raise UserInputError(f"--budget-s {args.budget_s:g}: must be a number of seconds > 0")

    def progress(info: dict) -> None:
        if args.quiet:
            return
        head = "chip place: "
        if info.get("interrupted") is True:  # rl's last word ("interrupted True, episodes N" read as a debug print)
            head, info = head + "stopped, ", {k: v for k, v in info.items() if k != "interrupted"}
        print(head + ", ".join(_show(k, v) for k, v in info.items()), file=sys.stderr, flush=True)

    info: dict = {}
    report = api.chip_place(args.netlist, args.init, method=args.method, output=args.output, budget_s=args.budget_s,
                            seed=args.seed, weights=args.weights, json_path=args.json, plot=args.plot,
                            progress=progress, info=info)
    interrupted = None
    if info.get("interrupted"):  # exit 130 as every interrupted command: a script must not take it for finished
        ck = f"{args.output}.rl-checkpoint"
        # a Ctrl-C before the first checkpoint named one that was never written (an outside check)
        resume = (f"; run the same command again to resume from {ck}" if os.path.exists(ck)
                  else "; no checkpoint was written yet: the same command starts over")
        interrupted = f"{stopped_word('chip place')}: the best placement so far was written" + (
            resume if args.method == "rl" else "")
    # a placement that is not legal (a canvas no arrangement fits, though the area does) is written for inspection
    # but is no result: exit 1, so that a script does not take it for one (it exited 0, saying NOT LEGAL); an
    # interrupted run's line says what a rerun does instead
    illegal = None
    if not report["legal"] and not interrupted:
        why = info.get("why_illegal") or "see chip cost"
        illegal = f"graphmill chip place: the placement found is not legal ({why}); it was written for inspection only"
    code = 130 if interrupted else 1 if illegal else 0
    if args.json == "-":  # stdout is the report alone (its keys are fixed): a cut-short run is said on stderr
        emit_json(report)
        for line in (interrupted, illegal):
            if line:
                print(line, file=sys.stderr)
        return code
    print(f"{args.method}: proxy {report['proxy']:.4f} (wirelength {report['wirelength']:.4f}, density "
          f"{report['density']:.4f}, congestion {report['congestion']:.4f}), "
          f"{'legal' if report['legal'] else 'NOT LEGAL'}, {report['seconds']:.1f} s")
    for path in (args.output, args.json, args.plot):
        if path and path != "-":
            print(f"wrote {path}")
    for line in (interrupted, illegal):
        if line:
            print(line, file=sys.stderr)
    return code
