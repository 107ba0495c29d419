"""LSTM / GRU / RNN in the op registry: output shapes checked against ONNX Runtime's actual outputs and
onnx's own shape inference; MACs against a hand count of the gate matmuls."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import graphmill
from graphmill.ir.ops import infer_types, lookup

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _model(op: str, *, seq=5, batch=3, inputs=7, hidden=6, direction="forward", layout=0, symbolic=False):
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    rng = np.random.default_rng(0)
    w = helper.make_tensor("W", TensorProto.FLOAT, [dirs, g * hidden, inputs],
                           rng.standard_normal(dirs * g * hidden * inputs).astype(np.float32))
    r = helper.make_tensor("R", TensorProto.FLOAT, [dirs, g * hidden, hidden],
                           rng.standard_normal(dirs * g * hidden * hidden).astype(np.float32))
    b = helper.make_tensor("B", TensorProto.FLOAT, [dirs, 2 * g * hidden],
                           rng.standard_normal(dirs * 2 * g * hidden).astype(np.float32))
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, ["X", "W", "R", "B"], outs, name="rnn", hidden_size=hidden, direction=direction,
                            layout=layout)
    x_shape = [("S" if symbolic else seq), batch, inputs] if layout == 0 else [batch, ("S" if symbolic else seq), inputs]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], [w, r, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


CASES = [(op, d, layout) for op in GATES for d in ("forward", "reverse", "bidirectional") for layout in (0, 1)]


@pytest.mark.parametrize("op,direction,layout", CASES)
def test_shapes_equal_onnx_runtime_outputs(tmp_path, op, direction, layout):
    m = _model(op, direction=direction, layout=layout)
    path = str(tmp_path / "m.onnx")
    onnx.save(m, path)
    g = graphmill.load(path)
    report = infer_types(g)
    assert not report.errors and not report.unknown_ops, report
    node = g.nodes[0]
    if layout == 0:  # ONNX Runtime's CPU kernels refuse batch-first (layout=1) recurrent ops
        x = np.random.default_rng(1).standard_normal((5, 3, 7)).astype(np.float32)
        got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"X": x})
        assert [tuple(v.type.shape) for v in node.outputs] == [a.shape for a in got]
    # and onnx's own inference agrees (every layout)
    inferred = onnx.shape_inference.infer_shapes(m)
    want = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in inferred.graph.output}
    assert {v.name: tuple(v.type.shape) for v in node.outputs} == want


@pytest.mark.parametrize("op", sorted(GATES))
def test_macs_are_the_gate_matmuls(tmp_path, op):
    """Hand count: per direction and step, X·W is batch x gates*hidden x inputs MACs, H·R batch x gates*hidden x hidden."""
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(op, seq=5, batch=3, inputs=7, hidden=6, direction="bidirectional"), path)
    g = graphmill.load(path)
    infer_types(g)
    node = g.nodes[0]
    cost = lookup(node.domain, node.op_type).cost(node)
    gates = GATES[op]
    assert cost.known
    assert cost.macs == 2 * 5 * 3 * (gates * 6 * 7 + gates * 6 * 6)
    assert graphmill.inspect(g)["macs"] == cost.macs


def test_symbolic_sequence_length_infers_and_inspect_binds_it(tmp_path):
    path = str(tmp_path / "m.onnx")
    onnx.save(_model("LSTM", symbolic=True), path)
    g = graphmill.load(path)
    infer_types(g)
    assert tuple(g.nodes[0].outputs[0].type.shape) == ("S", 1, 3, 6)
    assert graphmill.inspect(g, dims={"S": 4})["macs"] == 4 * 3 * (4 * 6 * 7 + 4 * 6 * 6)


def test_inconsistent_weights_are_a_shape_error(tmp_path):
    m = _model("GRU", hidden=6)
    next(a for a in m.graph.node[0].attribute if a.name == "hidden_size").i = 5  # but W has 3*6 rows
    path = str(tmp_path / "m.onnx")
    onnx.save(m, path)
    g = graphmill.load(path)
    report = infer_types(g)
    assert any("3 x hidden_size 5" in e for e in report.errors), report.errors


def test_an_initial_state_at_another_batch_is_refused_as_onnxruntime_does(tmp_path):
    """tf2onnx writes an LSTM's zero states as constants at the export's batch ([1, 2, 16]): split into micro-batches
    of 1 by partition (exit 0), the model could not run, and to_torch broadcast the state to a batch-2 output for a
    batch-1 input (an outside check). Reference: ONNX Runtime refusing the batch-1 model."""
    from onnx import numpy_helper

    from graphmill import api
    from graphmill.backends.torch import to_torch
    from graphmill.util.errors import ExecutionError, UserInputError

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),  # tf2onnx's: batch first outside
             helper.make_node("LSTM", ["xt", "W", "R", "", "", "h0", "c0"], ["y", "yh"], hidden_size=4, name="lstm"),
             helper.make_node("Squeeze", ["yh", "axes"], ["h"]), helper.make_node("Relu", ["h"], ["out"])]
    inits = [numpy_helper.from_array(rng.standard_normal((1, 16, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((1, 16, 4)).astype(np.float32), "R"),
             numpy_helper.from_array(np.zeros((1, 2, 4), np.float32), "h0"),
             numpy_helper.from_array(np.zeros((1, 2, 4), np.float32), "c0"),
             numpy_helper.from_array(np.array([0], np.int64), "axes")]

    def save(batch: int) -> str:
        g = helper.make_graph(nodes, "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 5, 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], initializer=inits)
        path = str(tmp_path / f"b{batch}.onnx")
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), path)
        return path

    one, two = save(1), save(2)
    x1 = np.zeros((1, 5, 3), np.float32)
    with pytest.raises(Exception, match="initial_h"):
        ort.InferenceSession(one, providers=["CPUExecutionProvider"]).run(None, {"x": x1})
    assert ort.InferenceSession(two, providers=["CPUExecutionProvider"]).run(
        None, {"x": np.zeros((2, 5, 3), np.float32)})[0].shape == (2, 4)
    assert "LSTM node 'lstm': initial_h has shape [1, 2, 4], X and the attributes need [1, 1, 4]" in \
        api.inspect_file(one)["problems"]
    with pytest.raises(ExecutionError, match="LSTM node 'lstm' failed: an initial state of batch 2 for X of batch 1"):
        to_torch(graphmill.load(one))(__import__("torch").from_numpy(x1))
    with pytest.raises(UserInputError, match="then LSTM node 'lstm' has no shape"):
        api.partition(graphmill.load(two), stages=1, microbatches=2, batch=2)
