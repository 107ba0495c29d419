"""The lowering mechanism: graphmill-domain ops -> standard ONNX (passes/lowering).

References: ONNX Runtime, which knows no graphmill-domain op, runs the lowered graph and must give
what numpy computes by hand (a*x + y); the saved file passes onnx's checker with no graphmill domain.
The op used here (``graphmill::LoweringTestAxpy``) exists only in this test.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.errors import UserInputError
from graphmill.ir.builder import GraphBuilder
from graphmill.passes import registered_passes, run_passes
from graphmill.passes.lowering import has_ops_to_lower, lower_graph, lowering_for, register_lowering


def _axpy(node, b):
    """a*x + y with a scalar attribute a."""
    a = np.asarray(node.attr("alpha", 1.0), dtype=np.float32)
    return [b.op("Add", b.op("Mul", node.inputs[0], a), node.inputs[1])]


register_lowering("graphmill", "LoweringTestAxpy", _axpy, min_opset=13)


def _graph(opset: int = 17, op: str = "LoweringTestAxpy"):
    b = GraphBuilder("axpy", opset=opset, opsets={"graphmill": 1})
    x = b.input("x", "float32", [2, 3])
    y = b.input("y", "float32", [2, 3])
    z = b.op(op, x, y, domain="graphmill", alpha=2.5)
    b.output(b.Relu(z), name="out")
    b.output(z, name="z")  # a graphmill op's output that is a graph output keeps its name
    return b.build(infer=False, verify=False)


def test_ort_runs_graphmill_op_through_its_lowering():
    g = _graph()
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    y = np.ones((2, 3), np.float32)
    got = ortb.run(g, {"x": x, "y": y})
    np.testing.assert_allclose(got["z"], 2.5 * x + y)  # hand computation
    np.testing.assert_allclose(got["out"], np.maximum(2.5 * x + y, 0))
    assert any(n.domain == "graphmill" for n in g.nodes), "the caller's graph must keep its graphmill op"


def test_save_writes_standard_onnx_and_lower_false_keeps_the_op(tmp_path):
    g = _graph()
    graphmill.save(g, tmp_path / "m.onnx")
    m = onnx.load(tmp_path / "m.onnx")
    onnx.checker.check_model(m, full_check=True)
    assert {n.domain for n in m.graph.node} == {""}
    assert "graphmill" not in {o.domain for o in m.opset_import}
    assert [o.name for o in m.graph.output] == ["out", "z"]
    assert {n.op_type for n in m.graph.node} == {"Mul", "Add", "Relu"}
    graphmill.save(g, tmp_path / "raw.onnx", lower=False)
    raw = onnx.load(tmp_path / "raw.onnx")
    assert any(n.domain == "graphmill" and n.op_type == "LoweringTestAxpy" for n in raw.graph.node)


def test_pass_lowers_in_place_and_marks_the_new_nodes():
    assert "lower-graphmill" in registered_passes()
    g = _graph()
    assert has_ops_to_lower(g)
    res = run_passes(g, ["lower-graphmill"])
    assert not has_ops_to_lower(g)
    lowered = [n for n in g.nodes if n.meta.get("lowered_from") == "graphmill::LoweringTestAxpy"]
    assert [n.op_type for n in lowered] == ["Mul", "Add"]
    assert "graphmill" not in g.opset_imports
    assert res is not None


def test_old_opset_is_refused_not_upgraded():
    g = _graph(opset=11)
    with pytest.raises(UserInputError, match="opset >= 13"):
        lower_graph(g)
    assert any(n.domain == "graphmill" for n in g.nodes)  # unchanged


def test_op_without_lowering_is_left_or_refused_when_strict():
    assert lowering_for("graphmill", "LoweringTestNoSuchOp") is None
    g = _graph(op="LoweringTestNoSuchOp")
    report = lower_graph(g)
    assert report.left == {"LoweringTestNoSuchOp": 1} and not report.lowered
    with pytest.raises(UserInputError, match="no lowering"):
        lower_graph(g, strict=True)


def _interrupted_halfway(node, b):
    """Emits a node, then is interrupted (Ctrl-C, or a search's timeout alarm, which is no Exception)."""
    b.op("Mul", node.inputs[0], np.asarray(2.0, dtype=np.float32))
    raise KeyboardInterrupt


register_lowering("graphmill", "LoweringTestInterrupted", _interrupted_halfway, min_opset=13)


def test_a_lowering_interrupted_halfway_leaves_the_graph_as_it_was():
    """The builder's nodes were rolled back only for an ``Exception``: a Ctrl-C or a search's timeout alarm
    mid-lowering left them in the graph (a review). Reference: the graph's printed form before the call."""
    from graphmill.passes.lowering.lower import lower_node

    g = _graph(op="LoweringTestInterrupted")
    before = str(g)
    with pytest.raises(KeyboardInterrupt):
        lower_node(g, next(n for n in g.nodes if n.op_type == "LoweringTestInterrupted"))
    assert str(g) == before
