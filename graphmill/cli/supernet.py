"""``graphmill supernet``: train a weight-sharing supernet (BigNAS) on the shipped task, and select children.

``graphmill supernet train --out DIR [--steps N] [--seed S]`` trains the default digits supernet (rerunning
it continues from DIR/checkpoint.pt); ``graphmill supernet select DIR (--max-macs M | --max-params P |
--max-latency-ms L --accel A.toml) -o CHILD.onnx [--json REPORT] [--plot PNG]`` writes the most accurate child
under the constraint as a standard ONNX model with the inherited weights (and, with ``--plot``, the children's
accuracy / cost Pareto fronts).
"""

from __future__ import annotations

import argparse
import json
import os

from graphmill import api
from graphmill.cli.common import emit_json, model_output_file, report_file, report_interrupted, stderr
from graphmill.errors import UserInputError
from graphmill.util.files import TEXT_FILE_LIMIT, check_output_paths, parse_json, read_user_file


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("supernet", help="weight-sharing supernet (BigNAS) on digits: train it, then select "
                                        "children under a MACs/parameter/latency budget (no retraining)")
    s = p.add_subparsers(dest="supernet_command", metavar="{train,select}")
    s.required = True
    t = s.add_parser("train", help="train the supernet (sandwich rule, in-place distillation); rerun to resume")
    t.add_argument("--out", required=True, help="folder for checkpoint.pt, supernet.onnx and supernet.json")
    t.add_argument("--steps", type=int, help="optimizer steps, each training 4 children (default 1200)")
    t.add_argument("--seed", type=int, default=0, help="seed of weights, batches and sampled children (default 0)")
    t.add_argument("--json", type=report_file, nargs="?", const="-", metavar="REPORT",
                   help="write the training report as JSON to REPORT (or stdout without a file)")
    t.set_defaults(func=run_train)
    c = s.add_parser("select", help="the most accurate child under a constraint, as a standard ONNX model")
    c.add_argument("dir", metavar="DIR", help="a folder graphmill supernet train wrote")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--max-macs", type=float, metavar="M", help="at most M multiply-accumulates (batch 1)")
    g.add_argument("--max-params", type=float, metavar="P", help="at most P parameters")
    g.add_argument("--max-latency-ms", type=float, metavar="L", help="at most L ms simulated on --accel")
    c.add_argument("--accel", metavar="A.toml", help="accelerator TOML the latency is simulated on (required with "
                                                     "--max-latency-ms; otherwise the report's latency_ms is on the "
                                                     "edge accelerator of the examples)")
    c.add_argument("--config", metavar="JSON", help="extract this child instead of searching (a JSON object: "
                                                     "resolution and stage1..stageN choices; inline, or a file "
                                                     "holding it)")
    c.add_argument("-o", "--output", type=model_output_file,
                   required=True, metavar="CHILD.onnx", help="where to write the child")
    c.add_argument("--json", type=report_file, metavar="REPORT",
                   help="write {macs, params, accuracy, latency_ms, config} to REPORT (- for stdout)")
    c.add_argument("--plot", metavar="PNG", help="also write validation accuracy vs MACs / parameters / latency of "
                                                 "the supernet's children with their Pareto fronts (a few seconds)")
    c.set_defaults(func=run_select)
    return p


def run_train(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps < 1:
        raise UserInputError(f"--steps {args.steps}: must be an integer >= 1")
    if args.seed < 0:
        raise UserInputError(f"--seed {args.seed}: must be an integer >= 0")
    report = api.supernet_train(args.out, steps=args.steps, seed=args.seed, progress=stderr,
                                report=None if args.json in (None, "-") else args.json)  # checked before training
    if report["interrupted"]:  # the report says so (and where the checkpoint stands), as search's does
        if args.json:
            emit_json(report, args.json)
        return report_interrupted(report, "supernet")
    steps = f"{report['steps']} step{'s' if report['steps'] != 1 else ''}"
    already = report["resumed_at"] == report["steps"]
    if args.json == "-":
        emit_json(report)
        if already:  # stdout is the report alone
            stderr(f"supernet already trained ({steps}) in {args.out}: nothing left to train; outputs rewritten")
        return 0
    last = report["history"][-1] if report["history"] else {}
    acc = " ".join(f"{k} {last[k]:.4f}" for k in ("val_acc_largest", "val_acc_smallest") if k in last)
    done = (f"supernet already trained ({steps}), nothing left to train" if already else f"supernet trained {steps}")
    print(f"{done} ({report['train_seconds']:.1f} s of training): {acc}; task: {report['task']}")
    print(f"wrote {report['files']['supernet']}, {report['files']['report']}"
          + (" (rewritten from the checkpoint)" if already else ""))
    return 0


def run_select(args: argparse.Namespace) -> int:
    config = None
    if args.config is not None:
        text, shown = args.config, ""
        if not text.lstrip().startswith("{"):  # a file written by hand, or by an earlier select's --json
            if not os.path.exists(text):
                raise UserInputError(f"--config {text}: neither a JSON object ('{{\"resolution\": ...}}') nor a "
                                     "file that exists")
            # a file: no output may replace it (`--config c.json --json c.json` wrote the report over it)
            check_output_paths({"--config": text}, {"-o": args.output, "--json": args.json, "--plot": args.plot})
            text = read_user_file(text, TEXT_FILE_LIMIT, "a child configuration (JSON)").decode("utf-8", "replace")
            shown = f" {args.config}"
        try:
            config = parse_json(text)
        except ValueError as e:
            raise UserInputError(f"--config{shown}: not JSON ({e})") from None
    to_stdout = args.json == "-"
    report = api.supernet_select(args.dir, output=args.output, max_macs=args.max_macs, max_params=args.max_params,
                                 max_latency_ms=args.max_latency_ms, accel=args.accel, config=config,
                                 report=None if args.json in (None, "-") else args.json,
                                 progress=None if to_stdout else stderr, plot=args.plot)
    if to_stdout:
        emit_json(report)
        return 0
    print(f"child {json.dumps(report['config'])}")
    print(f"  MACs {report['macs']:,}  params {report['params']:,}  test accuracy {report['accuracy']:.4f}  "
          f"simulated latency {report['latency_ms']:.4f} ms -> {args.output}")
    return 0
