"""``graphmill train``: train a zoo model or an ONNX file on the shipped task (scikit-learn's digits) with the
torch backend: plain fixed-size training, progressive learning (EfficientNetV2) or memory-optimized
contrastive training (BASIC). Resumable; one progress line per epoch and stage."""

from __future__ import annotations

import argparse
import os

from graphmill import api
from graphmill.cli.common import emit_json, report_file, report_interrupted, stderr
from graphmill.errors import UserInputError
from graphmill.util.files import check_output_paths


def _pair(text: str) -> tuple[float, float]:
    """``START:END`` or one number (both ends)."""
    parts = text.split(":")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected START:END or a number") from None
    if len(vals) not in (1, 2):
        raise argparse.ArgumentTypeError(f"{text!r}: expected START:END or a number")
    return (vals[0], vals[-1])


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model on digits: fixed-size, --progressive (EfficientNetV2) or "
                                     "--contrastive (BASIC micro-batches); writes the trained ONNX model")
    p.add_argument("model", help="a zoo name (built with 10 classes at --max-size) or an .onnx file [N,C,S,S] -> 10")
    g = p.add_argument_group("progressive learning")
    g.add_argument("--progressive", action="store_true", help="image size and regularization rise together in "
                                                              "stages (EfficientNetV2 Algorithm 1)")
    g.add_argument("--stages", type=int, help="number of stages M (default 4)")
    g.add_argument("--min-size", type=int, help="first stage's image size (default 16)")
    g.add_argument("--max-size", type=int, help="final image size: the model's (zoo models are built at it; "
                                                 "default 32)")
    g.add_argument("--dropout", type=_pair, help="dropout rate START:END (default 0.1:0.3; fixed-size: END; not "
                                                  "with --contrastive)")
    g.add_argument("--magnitude", type=_pair,
                   help="RandAugment magnitude START:END, 0..30 (default 5:15; fixed-size and contrastive: END)")
    g.add_argument("--mixup", type=_pair, help="mixup alpha START:END (default 0:0.2; not with --contrastive)")
    c = p.add_argument_group("contrastive training")
    c.add_argument("--contrastive", action="store_true", help="two-view contrastive loss (symmetric InfoNCE)")
    c.add_argument("--micro-batch", type=int, help="micro-batch b; must divide --batch (default: none, the whole "
                                                   "batch in one pass with autograd; b = the batch still runs the two "
                                                   "passes)")
    c.add_argument("--temperature", type=float, help="InfoNCE temperature (default 0.1)")
    c.add_argument("--embed-dim", type=int, help="zoo models' embedding size (default 64)")
    p.add_argument("--batch", type=int, default=64, help="batch size B (default 64)")
    n = p.add_mutually_exclusive_group()
    n.add_argument("--steps", type=int, help="optimizer steps in all")
    n.add_argument("--epochs", type=int, help="epochs of ceil(1438 / batch) steps, batches drawn with replacement "
                   "(default 10)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the batches (default 0)")
    p.add_argument("--width", type=float, help="zoo width multiplier")
    p.add_argument("--depth", type=float, help="zoo depth multiplier")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--out", default="train-out", help="folder for model.onnx, history.json, report.json and "
                                                      "checkpoint.pt (default train-out)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (same options)")
    p.add_argument("--json", type=report_file, nargs="?", const="-", metavar="REPORT",
                   help="write the report as JSON to REPORT (or stdout without a file)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps <= 0:
        raise UserInputError(f"--steps {args.steps}: must be an integer >= 1")
    # an input model inside --out, or --json naming one of OUT's files, was overwritten (the trained model lost)
    outputs = {f"--out's {n}": os.path.join(args.out, n)
               for n in ("model.onnx", "history.json", "report.json", "checkpoint.pt")}
    check_output_paths({"MODEL": args.model if os.path.isfile(args.model) else None},
                       {**outputs, "--json": args.json}, made=args.out)
    report = api.train(args.model, out=args.out, progressive=args.progressive, contrastive=args.contrastive,
                       stages=args.stages, min_size=args.min_size, max_size=args.max_size, dropout=args.dropout,
                       magnitude=args.magnitude, mixup=args.mixup, batch=args.batch, micro_batch=args.micro_batch,
                       temperature=args.temperature, embed_dim=args.embed_dim, steps=args.steps, epochs=args.epochs,
                       lr=args.lr, seed=args.seed, width=args.width, depth=args.depth, resume=args.resume,
                       threads=args.threads, progress=stderr)
    if report["interrupted"]:  # the report says so (steps done, the checkpoint's step), as supernet's does
        if args.json:
            emit_json(report, args.json)
        return report_interrupted(report, "train", resume_flag="--resume",
                                  nothing="no progress line was reached, nothing to resume")
    if args.json:
        emit_json({k: v for k, v in report.items()}, args.json)
    if args.json != "-":
        metric = report["metric"]
        print(f"{report['mode']} training of {report['model']}: {metric} {report[metric]:.4f} after "
              f"{report['steps']} steps ({report['train_seconds']:.1f} s of training); task: {report['task']}")
        files = report["files"]
        kept = [files["checkpoint"]] if files.get("checkpoint") and os.path.exists(files["checkpoint"]) else []
        print(f"wrote {', '.join([files['model'], files['history'], files['report'], *kept])}")
    return 0
