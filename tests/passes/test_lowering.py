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


# -- a plugin's fused graphmill op through optimize; what save and the type check refuse (an outside check) -------

def _fuse_axpy_pass():
    """A user's rewrite pass: Add(Mul(x, 2.5), y) -> graphmill::LoweringTestAxpy (registered once per process)."""
    from graphmill.ir.rewrite import Const, Op, Rule, Var
    from graphmill.passes import register_pass
    from graphmill.passes.rewrite_pass import RewritePass

    if "test-fuse-axpy" in registered_passes():
        return
    rule = Rule("test-axpy", Op("Add", Op("Mul", Var("x"), Const("a")), Var("y")),
                check=lambda m: None if m.const("a").size == 1 and float(m.const("a")) == 2.5 else "a is not 2.5",
                replace=lambda m, r: r.op("LoweringTestAxpy", m["x"], m["y"], domain="graphmill", alpha=2.5))

    @register_pass
    class FuseAxpy(RewritePass):
        """Fuse a*x + y into the test's graphmill op."""
        name = "test-fuse-axpy"
        rules = (rule,)


def test_a_fused_graphmill_op_with_a_lowering_passes_optimizes_end_checks(tmp_path):
    """Reference: ONNX Runtime on the unfused graph. The end-of-schedule type check ran onnx's inference on the
    graph as it was, and refused it: "No opset import for domain graphmill" (nothing written); it checks what
    every write and run sees, the lowered copy."""
    _fuse_axpy_pass()
    b = GraphBuilder("g", opset=17)
    x = b.input("x", "float32", [2, 3])
    y = b.input("y", "float32", [2, 3])
    b.output(b.Relu(b.Add(b.Mul(x, np.float32(2.5)), y)), "out")
    g = b.build()
    report = graphmill.optimize(g, "test-fuse-axpy", verify_each=True, compare=True)
    assert [(n.domain, n.op_type) for n in g.nodes] == [("graphmill", "LoweringTestAxpy"), ("", "Relu")]
    assert report.comparison["ok"]


def test_save_refuses_a_graphmill_op_without_lowering(tmp_path):
    g = _graph(op="LoweringTestNoSuchOp")
    with pytest.raises(UserInputError, match=r"LoweringTestNoSuchOp .* of domain graphmill has no lowering to "
                                             r"standard ONNX .*lower=False"):
        graphmill.save(g, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()  # it wrote a file onnx's checker refuses
    graphmill.save(g, tmp_path / "raw.onnx", lower=False)  # asked for: a file only graphmill reads


def test_an_op_onnx_does_not_define_fails_the_type_check():
    """A rule emitting Absolutely(x) in the standard domain was written, exit 0: onnx's strict inference passes an
    op it has no schema for by. Reference: onnx.defs has no such op."""
    from graphmill.frontend.onnx_shape_inference import OnnxShapeInferencer

    b = GraphBuilder("g", opset=17)
    x = b.input("x", "float32", [2])
    b.output(b.op("Absolutely", x), "y")
    g = b.build(infer=False, verify=False)
    assert not onnx.defs.has("Absolutely")
    assert OnnxShapeInferencer().type_error(g) == "Absolutely node 'Absolutely_0': ONNX defines no op 'Absolutely'"


def test_a_rule_with_an_unknown_exactness_is_refused_naming_it():
    from graphmill.ir.rewrite import Op, Rule, Var

    with pytest.raises(ValueError, match="rule 'typo': exactness 'exakt' is not one of 'exact', "):
        Rule("typo", Op("Relu", Var("x")), replace=lambda m, r: m["x"], exactness="exakt")
