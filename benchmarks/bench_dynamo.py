"""Raw dynamo exports: graphmill's default schedule against onnxscript's optimizer, node counts and numerics.

Each model of ``dynamo_models.py`` is exported with ``torch.onnx.export(..., dynamo=True, optimize=False)``
(the exporter's graph before onnxscript's own clean-up) and optimized by

  onnxscript   ``onnxscript.optimizer.optimize(model)`` (what ``optimize=True`` runs)
  +rewriter    that, then ``onnxscript.rewriter.rewrite(model)`` (its default rules)
  graphmill    ``graphmill.load``; ``graphmill.optimize(g)`` (the default schedule); ``graphmill.save``

Columns: node counts (top-level graph), BatchNormalization nodes left, the ratio graphmill / onnxscript
(<= 1.00 is the goal) and graphmill's largest |difference| from the original model's outputs on a seeded
random input, both run by ONNX Runtime (the reference).

    python benchmarks/bench_dynamo.py [NAME ...]
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dynamo_models  # noqa: E402


def _run(path: str, x: np.ndarray) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def _bn(model: onnx.ModelProto) -> int:
    return sum(n.op_type == "BatchNormalization" for n in model.graph.node)


def measure(name: str, folder: str) -> dict:
    """Node counts of the raw export, onnxscript's results and graphmill's, and graphmill's output difference."""
    import onnxscript.optimizer
    import onnxscript.rewriter

    import graphmill

    raw = os.path.join(folder, f"{name}.onnx")
    dynamo_models.export_raw(name, raw)
    ox = onnxscript.optimizer.optimize(onnx.load(raw))
    oxr = onnxscript.rewriter.rewrite(onnxscript.optimizer.optimize(onnx.load(raw)))
    g = graphmill.load(raw)
    graphmill.optimize(g)
    out = os.path.join(folder, f"{name}.graphmill.onnx")
    graphmill.save(g, out)
    gm = onnx.load(out)
    x = np.random.default_rng(0).standard_normal(dynamo_models.build(name)[1][0].shape).astype(np.float32)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(_run(raw, x), _run(out, x)))
    return {"model": name, "raw": len(onnx.load(raw).graph.node), "onnxscript": len(ox.graph.node),
            "rewriter": len(oxr.graph.node), "graphmill": len(gm.graph.node), "bn_raw": _bn(onnx.load(raw)),
            "bn_onnxscript": _bn(ox), "bn_graphmill": _bn(gm), "max_abs_diff": diff}


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help=f"models to export and compare (default: all of {', '.join(dynamo_models.MODELS)})")
    names = ap.parse_args(argv).names or list(dynamo_models.MODELS)
    unknown = [n for n in names if n not in dynamo_models.MODELS]
    if unknown:
        ap.error(f"unknown model {unknown[0]!r}; choose from {', '.join(dynamo_models.MODELS)}")
    print(f"{'model':<14}{'raw':>6}{'onnxscript':>12}{'+rewriter':>11}{'graphmill':>11}{'ratio':>8}"
          f"{'BN raw/ox/gm':>15}{'max|diff|':>11}")
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            r = measure(name, folder)
            bn = f"{r['bn_raw']}/{r['bn_onnxscript']}/{r['bn_graphmill']}"
            print(f"{r['model']:<14}{r['raw']:>6}{r['onnxscript']:>12}{r['rewriter']:>11}{r['graphmill']:>11}"
                  f"{r['graphmill'] / r['onnxscript']:>8.2f}{bn:>15}{r['max_abs_diff']:>11.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
