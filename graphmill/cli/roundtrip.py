"""``graphmill roundtrip``: import a model into the IR and export it again, losslessly."""

from __future__ import annotations

import argparse
import os

from graphmill import api
from graphmill.cli.common import (add_output_args, check_output_path, check_outputs_against_weights, emit_json,
                                  model_output_file, save_output)


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("roundtrip", help="import a model into the IR and export it again (lossless)")
    p.add_argument("model", help="an ONNX model file")
    p.add_argument("-o", "--output", type=model_output_file, required=True, help="where to write the exported model")
    add_output_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_output_path(args.output, [args.model], args.force)
    graph = api.load(args.model)
    check_outputs_against_weights(graph, args, {})
    save_output(graph, args)
    info = {"input": args.model, "output": args.output, "nodes": len(list(graph.all_nodes())),
            "bytes": os.path.getsize(args.output)}
    if args.json:
        emit_json(info)
    else:
        print(f"wrote {args.output} ({info['nodes']} nodes, {info['bytes']:,} bytes)")
    return 0
