"""``graphmill demo``: build the embedded example model, optimize it, and compare before and after."""

from __future__ import annotations

import argparse
import os
import tempfile

from graphmill import api
from graphmill.cli.common import emit_json
from graphmill.errors import UserInputError
from graphmill.util.files import check_out_folder


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="build the embedded example model, round-trip, optimize and run it, and print "
                                    "the report")
    p.add_argument("--model", default="resnet18", help="zoo model to use (default: resnet18)")
    p.add_argument("--out", help="folder to keep the model files in (MODEL.onnx, .roundtrip.onnx, .optimized.onnx; "
                   "default: a temporary folder, removed at the end, so none are kept)")
    p.add_argument("--runs", type=int, default=10, help="ONNX Runtime timing runs (default 10)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise UserInputError("--runs must be at least 1")
    model = api.zoo_resolve(args.model)
    if args.out:
        check_out_folder(args.out, "demo", "MODEL.onnx, MODEL.roundtrip.onnx and MODEL.optimized.onnx")
        os.makedirs(args.out, exist_ok=True)
        result = api.demo(args.out, model=model, runs=args.runs)
    else:  # nothing left behind when the user did not ask for the files
        with tempfile.TemporaryDirectory(prefix="graphmill-demo-") as tmp:
            result = api.demo(tmp, model=model, runs=args.runs)
        result["file"] = result["optimized_file"] = None  # removed with the folder: no path to report
    if args.json:
        emit_json(result)
        return 0
    b, a = result["before"], result["after"]
    print(f"== graphmill demo: {model} (seeded random weights, built from the paper's block table), "
          f"input {result['input_shape']}")
    if args.out:
        roundtrip = os.path.join(args.out, f"{model}.roundtrip.onnx")  # api.demo writes it beside the model
        print(f"   files: {result['file']}, {roundtrip}, {result['optimized_file']}")
    print(f"   round trip load -> save -> load: proto equal: {result['roundtrip_proto_equal']}")
    print(f"   schedule: {result['schedule']}\n")
    print(f"  {'':<26}{'before':>16}{'after':>16}")
    print(f"  {'nodes':<26}{b['nodes']:>16,}{a['nodes']:>16,}")
    print(f"  {'parameters':<26}{b['params']:>16,}{a['params']:>16,}")
    print(f"  {'MACs':<26}{b['macs']:>16,}{a['macs']:>16,}")
    for label, key in (("ORT ms (its opts off)", "ort_disabled"), ("ORT ms (its opts on)", "ort_all")):
        lat = result["latency"][key]
        print(f"  {label:<26}{lat['before_ms']:>16.2f}{lat['after_ms']:>16.2f}")
    c = result["comparison"]
    print(f"  {'max |output diff|':<26}{'':>16}{c['max_abs']:>16.3g}   "
          f"({'within' if c['ok'] else 'OUTSIDE'} {c['tolerance']})")
    print("\n  ops after: " + ", ".join(f"{k} x{v}" for k, v in a["ops"].items()))
    print(f"  ONNX Runtime latency: median of {result['runs']} runs, 1 thread")
    return 0 if c["ok"] else 1
