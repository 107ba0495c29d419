"""``graphmill scale``: compound scaling (EfficientNet) of a model with stages."""

from __future__ import annotations

import argparse

from graphmill import api
from graphmill.cli.common import emit_json, model_output_file
from graphmill.util.errors import naming_file
from graphmill.util.files import check_output_paths


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("scale", help="compound scaling (EfficientNet): depth alpha^phi, width beta^phi, "
                                     "resolution gamma^phi")
    p.add_argument("model", help="an ONNX model file (never overwritten)")
    p.add_argument("--phi", type=float, required=True, help="compound coefficient, >= 0")
    p.add_argument("--alpha", type=float, default=1.2, help="depth base (default 1.2)")
    p.add_argument("--beta", type=float, default=1.1, help="width base (default 1.1)")
    p.add_argument("--gamma", type=float, default=1.15, help="resolution base (default 1.15)")
    p.add_argument("--divisor", type=int, default=8, help="channels are rounded to multiples of this (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of new weights (default 0)")
    p.add_argument("-o", "--output", type=model_output_file, required=True, help="where to write the scaled model")
    p.add_argument("--json", action="store_true",
                   help="print JSON (keys: depth, width, resolution, input_size_before/after, "
                        "stages: [{stage, kind, repeats_before, repeats_after, channels_before, channels_after}])")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_output_paths({"MODEL": args.model}, {"-o": args.output})  # scale has no --force: never over its input
    graph = api.load(args.model)
    # nor over the weights the model reads (api.save's own refusal offered a --force scale does not have)
    check_output_paths({f"{args.model}'s weights": f for f in api.external_data_files(graph)}, {"-o": args.output})
    with naming_file(args.model):  # which model cannot be scaled so: the messages name nodes and stages only
        report = api.scale(graph, phi=args.phi, alpha=args.alpha, beta=args.beta, gamma=args.gamma,
                           divisor=args.divisor, seed=args.seed)  # validates before anything is written
    api.save(graph, args.output)
    report.update(input=args.model, output=args.output)
    if args.json:
        emit_json(report)
        return 0
    print(f"scaled {args.model} -> {args.output}: phi={args.phi:g}  depth x{report['depth']:.4g}  "
          f"width x{report['width']:.4g}  resolution x{report['resolution']:.4g}  "
          f"({_input_sizes(report['input_size_before'], report['input_size_after'])})")
    for who in report.get("decisions_dropped", ()):
        print(f"  note: the decisions {who} made were dropped: they were made for the network before scaling")
    for row in report["stages"]:
        channels = (f"  channels {row['channels_before']} -> {row['channels_after']}"
                    if row["channels_before"] is not None else "")  # a stem or head of no single width
        print(f"  stage {row['stage']!s:<4} {row['kind']:<5} repeats {row['repeats_before']} -> "
              f"{row['repeats_after']}{channels}")
    return 0


def _input_sizes(before: dict, after: dict) -> str:
    """``x: 224x224 -> 258x258`` per image input ``x`` (a dict's repr was printed), or that there is none."""
    if not before:
        return "no image input to resize"
    return ", ".join(f"{name}: {'x'.join(map(str, size))} -> {'x'.join(map(str, after.get(name, size)))}"
                     for name, size in before.items())
