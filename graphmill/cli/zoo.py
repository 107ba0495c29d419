"""``graphmill zoo``: write a reference architecture (seeded random weights) as ONNX."""

from __future__ import annotations

import argparse

from graphmill import api
from graphmill.cli.common import emit_json, model_output_file
from graphmill.errors import UserInputError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("zoo", help="write a reference architecture as ONNX (random weights)")
    p.add_argument("name", nargs="?", help="model name (see --list; '-' and '_' alike)")
    p.add_argument("-o", "--output", type=model_output_file, help="where to write the model")
    p.add_argument("--list", action="store_true", help="list the models")
    p.add_argument("--width", metavar="W", help="channel (or head) multiplier, > 0 (default 1)")
    p.add_argument("--depth", metavar="D", help="repeats multiplier, > 0: blocks per stage become ceil(D * n)")
    p.add_argument("--resolution", metavar="R", help="input size: a multiplier below 16, else pixels (default 1)")
    p.add_argument("--experts", metavar="E", help="MoE models: experts per MoE layer")
    p.add_argument("--k", metavar="K", help="MoE models: experts per token (1 <= K <= E)")
    p.add_argument("--capacity-factor", metavar="CF", help="MoE models: expert capacity factor, > 0")
    p.add_argument("--json", action="store_true", help="print JSON: with --list {models: {name: description}}, "
                   "else {name, output, nodes, params, macs, input_shape, model: the builder's settings}")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    models = api.zoo_models()
    if args.list:
        if args.name:  # it was ignored without a word (an outside check)
            raise UserInputError(f"--list lists every model and takes no name ({args.name!r} given); "
                                 f"graphmill zoo {args.name} -o OUT.onnx builds one")
        if args.json:
            emit_json({"models": models})
            return 0
        width = max(len(n) for n in models)
        for name, description in models.items():
            print(f"{name:<{width}}  {description}".rstrip())
        return 0
    if not args.name:
        raise UserInputError(f"graphmill zoo needs a model name; known: {', '.join(models)}")
    name = api.zoo_resolve(args.name)
    mult = api.zoo_options(width=args.width, depth=args.depth, resolution=args.resolution)  # before -o, as before
    mult.update(api.zoo_moe_options(experts=args.experts, k=args.k, capacity_factor=args.capacity_factor))
    if not args.output:
        raise UserInputError("graphmill zoo NAME needs -o OUT.onnx")
    graph = api.zoo_build(name, **mult)
    written = api.save(graph, args.output)  # graphmill-domain ops (CoAtNet's attention, MoE) lowered: more nodes
    if args.json:
        counts = api.inspect(graph)
        emit_json({"name": name, "output": args.output, "nodes": written, "params": counts["params"],
                   "macs": counts["macs"], "input_shape": list(graph.inputs[0].type.shape),
                   "model": graph.meta.get("model", {})})
        return 0
    print(f"wrote {args.output} ({name}, {written} nodes)")
    return 0
