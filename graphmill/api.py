"""The Python API: everything the CLI does, as functions on graphs and files."""

from __future__ import annotations

import os

from graphmill.frontend import load, save
from graphmill.frontend.onnx_shape_inference import infer_shapes
from graphmill.ir import Graph
from graphmill.ir.summary import summarize
from graphmill.optimization import OptimizeReport, ReproducerError, resolve_schedule
from graphmill.optimization import optimize as _run_optimize


def optimize(graph: Graph, schedule: "Schedule | str | None" = None, **options) -> OptimizeReport:
    """Optimize ``graph`` in place with ``schedule`` and return the report.

    ``schedule`` is a built-in name (``"default"``, ``"ort"``, ``"cleanup"``), inline DSL text
    (``"fold-constants,fixpoint{simplify,cse,dce}"``), a path to a ``.mill`` file (``"my.mill"`` or
    ``"my.mill:NAME"``), a ``Schedule`` or a list of passes; ``None`` runs the default schedule.
    ``options`` are those of the CLI (``check_numerics``, ``rtol``, ``atol``, ``seed``, ``verify_each``,
    ``time_passes``, ``print_ir_after``, ``allow``, ``dims``, ``compare``, ...): see
    ``graphmill.optimization.optimize``.
    """
    return _run_optimize(graph, schedule, **options)


def inspect(graph: Graph, *, infer: bool = True, dims: dict[str, int] | None = None) -> dict:
    """Summary of a graph: nodes, ops, params, macs, inputs, outputs (see ``GraphSummary``).

    Types are inferred first (registry, then onnx's inference for the rest) on
    the graph itself, which only gains type information. Symbolic dimensions
    are bound to ``dims`` (default 1) for the cost figures. ``problems`` lists
    what inference found wrong (inputs that break an op's contract, declared
    types that contradict inferred ones): costs of such nodes are not counted.
    """
    problems: list[str] = []
    if infer:
        report = infer_shapes(graph)
        problems = report.errors + report.conflicts
    out = summarize(graph, dims).to_dict()
    out["problems"] = problems
    return out


def inspect_file(path: str | os.PathLike, *, dims: dict[str, int] | None = None) -> dict:
    report = inspect(load(path), dims=dims)
    report["file"] = os.fspath(path)
    return report


def demo(out_dir: str, *, model: str = "resnet18", runs: int = 10) -> dict:
    """The job ``make demo`` runs on the embedded example model.

    Build it (seeded random weights), save and reload it (the round trip must be
    proto-equal), then run the default optimization schedule and compare before
    and after: nodes, parameters, MACs, ONNX Runtime latency (one thread; with
    ORT's own optimizations disabled, which measures the graph itself, and
    enabled, as users run it) and the largest output difference.
    """
    from graphmill.backends import onnxruntime as ortb
    from graphmill.frontend import zoo
    from graphmill.frontend.onnx_io import read_model_proto
    from graphmill.optimization import optimize
    from graphmill.frontend.onnx_io import clear_default_presence

    path = os.path.join(out_dir, f"{model}.onnx")
    save(zoo.build(model, batch=1), path)
    original = load(path)
    before = inspect(original)
    rt_path = os.path.join(out_dir, f"{model}.roundtrip.onnx")
    save(load(path), rt_path)
    a, b = read_model_proto(path), read_model_proto(rt_path)
    clear_default_presence(a)
    clear_default_presence(b)

    optimized = load(path)
    report = optimize(optimized, verify_each=True)
    opt_path = os.path.join(out_dir, f"{model}.optimized.onnx")
    save(optimized, opt_path)
    after = inspect(load(opt_path))

    inputs = ortb.random_inputs(original, seed=0)
    latency = {}
    for label, level in (("ort_disabled", "disabled"), ("ort_all", "all")):
        opts = ortb.OrtOptions(intra_op_threads=1, optimization=level)
        latency[label] = {
            "before_ms": ortb.time_graph(original, inputs, runs=runs, warmup=2, options=opts).median_ms,
            "after_ms": ortb.time_graph(optimized, inputs, runs=runs, warmup=2, options=opts).median_ms,
        }
    cmp = ortb.compare(original, optimized, inputs, rtol=1e-4, atol=1e-5,
                       options=ortb.OrtOptions(optimization="disabled"))
    return {
        "model": model,
        "file": path,
        "optimized_file": opt_path,
        "before": before,
        "after": after,
        "schedule": report.schedule_inline,
        "passes_changed": sorted({r["name"] for r in report.passes if r["changed"]}),
        "latency": latency,
        "input_shape": list(next(iter(inputs.values())).shape),
        "comparison": cmp.to_dict(),
        "roundtrip_proto_equal": a == b,
        "runs": runs,
    }


def simulate(graph: Graph, accel) -> "object":
    """Simulate ``graph`` on an accelerator (an ``AccelConfig``, a dict in the TOML schema, or a TOML path).

    Returns a ``graphmill.backends.simulator.SimReport`` (``.to_dict()`` for JSON, ``.table()``, ``.plot()``).
    """
    from graphmill.backends.simulator import simulate_graph

    return simulate_graph(graph, accel)


def simulate_scalesim(topology: str | os.PathLike, config: str | os.PathLike):
    """Simulate a SCALE-Sim topology CSV under a SCALE-Sim .cfg (USER bandwidth)."""
    from graphmill.backends.simulator import read_scalesim_config, read_topology, simulate_layers

    cfg = read_scalesim_config(config)
    return simulate_layers(read_topology(topology), cfg)
