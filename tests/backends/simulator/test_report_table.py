"""The simulator's text table (``SimReport.table``). Reference: the layer's own fields, as ``--json`` writes them."""

from __future__ import annotations

from graphmill.backends.simulator.config import load_accel
from graphmill.backends.simulator.report import LayerResult, SimReport


def test_a_long_shape_keeps_its_repeat_count():
    """Four nested Loops of 1000 printed ``M1 N64 K64 x100000000000``, the 24-character column cutting a digit
    of the repeat count the JSON holds (an outside check)."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    layer = LayerResult("mm", "MatMul", "M1 N64 K64 x1000000000000", "gemm", 1, 0, 1, 1.0, 0, 0,
                        repeat=10**12)
    table = SimReport(load_accel(os.path.join(root, "examples", "accelerators", "edge.toml")), [layer]).table()
    assert "M1 N64 K64 x1000000000000" in table


def test_a_small_models_latency_is_not_printed_as_zero():
    """246 cycles at 500 MHz printed "= 0.000 ms" (an outside check); the JSON's latency_ms is 0.000492."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    layer = LayerResult("mm", "MatMul", "M1 N64 K64", "gemm", 246, 0, 246, 1.0, 0, 0)
    report = SimReport(load_accel(os.path.join(root, "examples", "accelerators", "edge.toml")), [layer])
    assert report.to_dict()["latency_ms"] == 246 / 500e3
    assert "= 0.000492 ms at 500 MHz" in report.table()


def test_a_model_with_nothing_to_compute_says_so():
    """A model of shape ops alone (a Reshape) simulated to "total: 0 cycles" without a word, which read as a failure
    (an outside check's fuzzer). Reference: the model built here, whose one op moves no data on the accelerator."""
    import os

    import numpy as np

    import graphmill
    from graphmill.ir.builder import GraphBuilder

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    b = GraphBuilder("shape_only")
    b.output(b.Reshape(b.input("x", "float32", [2, 3]), np.array([3, 2], np.int64)), "y")
    report = graphmill.simulate(b.build(), load_accel(os.path.join(root, "examples", "accelerators", "edge.toml")))
    assert report.to_dict()["total_cycles"] == 0 and not report.layers
    assert report.notes[-1].startswith("nothing to compute: every op is free on the accelerator")
    assert "note: nothing to compute" in report.table()
    layer = LayerResult("mm", "MatMul", "M1 N64 K64", "gemm", 246, 0, 246, 1.0, 0, 0)  # a model with a layer: no note
    assert not any("nothing to compute" in n for n in SimReport(report.accel, [layer]).notes)
