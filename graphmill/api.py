"""The Python API: everything the CLI does, as functions on graphs and files."""

from __future__ import annotations

import os

from graphmill.frontend import load, save
from graphmill.frontend.onnx_shape_inference import infer_shapes
from graphmill.ir import Graph
from graphmill.ir.analysis import summarize


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
    """The job ``make demo`` runs: build, save, reload, inspect, run under ONNX Runtime, round-trip."""
    import onnx

    from graphmill.backends import onnxruntime as ortb
    from graphmill.frontend import zoo
    from graphmill.frontend.onnx_io import read_model_proto
    from graphmill.testing.onnx_corpus import clear_default_presence

    path = os.path.join(out_dir, f"{model}.onnx")
    save(zoo.build(model, batch=1), path)
    graph = load(path)
    report = inspect(graph)
    report["file"] = path
    opts = ortb.OrtOptions(intra_op_threads=1)
    inputs = ortb.random_inputs(graph, seed=0)
    timing = ortb.time_graph(graph, inputs, runs=runs, warmup=2, options=opts)
    rt_path = os.path.join(out_dir, f"{model}.roundtrip.onnx")
    save(load(path), rt_path)
    a, b = read_model_proto(path), read_model_proto(rt_path)
    clear_default_presence(a)
    clear_default_presence(b)
    cmp = ortb.compare(graph, load(rt_path), inputs, rtol=0.0, atol=0.0, options=opts)
    out = next(iter(ortb.run(graph, inputs, opts).values()))
    return {
        "file": path,
        "inspect": report,
        "onnxruntime": {**timing.to_dict(), "input_shape": list(next(iter(inputs.values())).shape),
                        "output_shape": list(out.shape)},
        "roundtrip": {"file": rt_path, "nodes": len(load(rt_path)), "proto_equal": a == b,
                      "max_abs_diff": cmp.max_abs, "outputs_equal": cmp.ok},
        "onnx_version": onnx.__version__,
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
