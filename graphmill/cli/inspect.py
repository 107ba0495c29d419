"""``graphmill inspect``: node count, op histogram, interface, parameters and MACs of a model."""

from __future__ import annotations

import argparse
import sys

from graphmill import api
from graphmill.cli.common import emit_json, fmt_count, parse_dims
from graphmill.util.text import one_line


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("inspect", help="node count, op histogram, inputs/outputs, parameters and MACs of a model")
    p.add_argument("model", help="an ONNX model file")
    p.add_argument("--json", action="store_true",
                   help="print JSON (keys: nodes, ops, params, bn_statistics, macs, flops, inputs, outputs, opsets, "
                        "symbols, problems, ...)")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="size of a symbolic dimension for the cost figures (default 1 each, e.g. per sample)")
    p.set_defaults(func=run)
    return p


def print_summary(report: dict, out=None) -> None:
    p = lambda s="": print(s, file=out or sys.stdout)  # noqa: E731 -- sys.stdout when called, not when imported
    opsets = ", ".join(f"{d}:{v}" for d, v in report["opsets"].items())
    p(f"model:   {one_line(report.get('file', report['name']))}  (graph {report['name']!r}, opsets {opsets})")
    p(f"nodes:   {report['nodes']:,}")
    params = fmt_count(report["params"])
    if report.get("bn_statistics"):
        params += (f"  ({fmt_count(report['params'] - report['bn_statistics'])} without BatchNorm's running "
                   "statistics, as torch counts)")
    if report.get("unknown_params"):
        params += f"  + {report['unknown_params']} tensor(s) of unknown size"
    p(f"params:  {params}")
    macs = fmt_count(report["macs"])
    if report.get("symbols"):
        macs += "  with " + ", ".join(f"{k}={v}" for k, v in report["symbols"].items())
    if report.get("cost_unknown_nodes"):
        macs += f"  ({report['cost_unknown_nodes']} node(s) with unknown shapes not counted)"
    p(f"MACs:    {macs}")
    if report.get("ops_without_cost"):
        p("         no cost model for: " + ", ".join(f"{one_line(k)} x{v}"
                                                     for k, v in report["ops_without_cost"].items()))
    if report.get("defaulted"):
        p(f"note:    symbolic dimension(s) {', '.join(report['defaulted'])} counted at size 1 (--dim NAME=SIZE sets "
          "them)")
    for problem in report.get("problems", [])[:10]:
        p(f"warning: {one_line(problem)}")
    if len(report.get("problems", [])) > 10:
        p(f"warning: ... and {len(report['problems']) - 10} more problem(s) (see --json)")
    p("inputs:")
    for i in report["inputs"]:
        p(f"  {one_line(i['name']):<32} {one_line(i['text'])}")
    p("outputs:")
    for o in report["outputs"]:
        p(f"  {one_line(o['name']):<32} {one_line(o['text'])}")
    p("ops:")
    for op, n in report["ops"].items():
        p(f"  {one_line(op):<32} {n:>6}")


def run(args: argparse.Namespace) -> int:
    report = api.inspect_file(args.model, dims=parse_dims(args.dim))
    if args.json:
        emit_json(report)
    else:
        print_summary(report)
    return 0
