"""The shortcuts that keep the default schedule fast compute what the slow paths computed.

References: the slow paths themselves (whole-data hashing, onnx's shape inference on the model with
its weights inline, ONNX Runtime evaluating a one-node model).
"""

from __future__ import annotations

import numpy as np

from graphmill.frontend import onnx_shape_inference
from graphmill.frontend.onnx_export import to_proto
from graphmill.ir import Tensor, TensorType
from graphmill.ir.builder import GraphBuilder
from graphmill.passes import run_passes


def test_cse_tells_apart_weights_whose_samples_agree():
    base = np.random.default_rng(0).standard_normal((64, 65)).astype(np.float32)
    other = base.copy()
    other[3, 7] += 1.0  # not one of the evenly spaced elements the sample reads
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [65, 64])
    ys = [b.MatMul(x, b.const(w)) for w in (base, other, base.copy())]
    for i, y in enumerate(ys):
        b.output(y, f"y{i}")
    g = b.build()
    res = run_passes(g, "cse, dce", verify_each=True)
    assert res.stats()["cse"]["initializers_merged"] == 1  # the two copies of base, not other
    weights = [n.inputs[1] for n in g.nodes]
    assert weights[0] is weights[2] and weights[1] is not weights[0]
    assert np.array_equal(weights[1].const.numpy(), other)


def test_tensor_digest_is_the_data_hash_and_kept():
    t = Tensor(np.arange(6, dtype=np.int64).reshape(2, 3))
    d = t.data_digest()
    assert d == Tensor(np.arange(6, dtype=np.int64)).data_digest()  # the bytes, not the shape
    assert d != Tensor(np.arange(6, dtype=np.int32)).data_digest()
    assert t.data_digest() is d  # kept: the same string object, not hashed again


def _model_for_inference():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 3, 16, 16])
    w = b.const(np.ones((8, 3, 3, 3), np.float32))  # 216 elements
    big = b.const(np.ones((8 * 14 * 14, 10), np.float32))
    y = b.Conv(x, w)
    y = b.Reshape(y, b.const(np.array([-1, 8 * 14 * 14], np.int64)))
    y = b.MatMul(y, big)
    y = b.Resize(y, None, b.const(np.array([1.0, 2.0], np.float32)), mode="nearest")
    b.output(y, "y")
    return b.build(infer=False)


def test_shape_inference_without_weight_data_infers_the_same(monkeypatch):
    want = _model_for_inference()
    monkeypatch.setattr(onnx_shape_inference, "WEIGHT_DATA_LIMIT", 1 << 40)  # every weight inline
    onnx_shape_inference.infer_shapes(want)
    monkeypatch.setattr(onnx_shape_inference, "WEIGHT_DATA_LIMIT", 100)  # w and big go without data
    got = _model_for_inference()
    onnx_shape_inference.infer_shapes(got)
    assert [v.type for n in got.nodes for v in n.outputs] == [v.type for n in want.nodes for v in n.outputs]
    assert got.nodes[-1].outputs[0].type == TensorType(want.nodes[-1].outputs[0].type.dtype, ("N", 20))


def test_stripped_export_declares_big_float_weights_as_typed_inputs():
    g = _model_for_inference()
    m = to_proto(g, strip_weights_over=100)
    inits = {t.name for t in m.graph.initializer}
    inputs = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in m.graph.input}
    big = [v for v in g.initializers.values() if v.const.size > 100]
    assert len(big) == 2
    for v in big:
        assert v.name not in inits and inputs[v.name] == list(v.const.shape)
    assert len(inits) == len(g.initializers) - 2  # the int64 shape and the float scales stay inline
    assert len(to_proto(g).graph.initializer) == len(g.initializers)


def _numpy_and_ort(opset, op_type, args, **attrs):
    from graphmill.backends.onnxruntime import OrtNodeEvaluator
    from graphmill.passes.cleanup.fold_constants import evaluate_numpy

    b = GraphBuilder(opset=opset)
    node_out = b.op(op_type, *[b.const(a) if a is not None else None for a in args], **attrs)
    b.output(node_out, "y")
    g = b.build(infer=False)
    node = g.nodes[-1]
    return evaluate_numpy(node, list(args), opset), OrtNodeEvaluator().evaluate(node, list(args), g)


DATA = np.random.default_rng(1).standard_normal((2, 1, 3)).astype(np.float32)
NUMPY_CASES = [  # (opset, op, inputs, attributes): every element type, attribute and input forms
    (9, "Unsqueeze", [DATA], {"axes": [0, 4]}),
    (11, "Unsqueeze", [DATA.astype(np.float16)], {"axes": [-1]}),
    (13, "Unsqueeze", [DATA, np.array([1], np.int64)], {}),
    (9, "Squeeze", [DATA], {"axes": [1]}),
    (17, "Squeeze", [DATA > 0, np.array([-2], np.int64)], {}),
    (9, "Reshape", [DATA, np.array([3, 0, -1], np.int64)], {}),
    (17, "Reshape", [DATA.astype(np.uint8), np.array([-1], np.int64)], {}),
    (9, "Gather", [DATA, np.array([1, 0], np.int64)], {"axis": 0}),
    (13, "Gather", [DATA, np.array([[-1], [0]], np.int32)], {"axis": -1}),
    (9, "Concat", [DATA, DATA], {"axis": 1}),
    (17, "Concat", [DATA.astype(np.float16), DATA.astype(np.float16)], {"axis": -1}),
    (9, "Identity", [DATA.astype(np.int8)], {}),
    (9, "Shape", [DATA], {}),
    (17, "Shape", [DATA], {"start": -2}),
    (9, "Size", [DATA.astype(np.float64)], {}),
]


def test_numpy_folding_gives_onnxruntime_bits():
    for opset, op, args, attrs in NUMPY_CASES:
        got, want = _numpy_and_ort(opset, op, args, **attrs)
        assert got is not None, (opset, op)
        assert len(got) == len(want) == 1
        assert got[0].dtype == want[0].dtype and got[0].shape == want[0].shape, (opset, op)
        assert got[0].tobytes() == want[0].tobytes(), (opset, op)


def test_numpy_folding_leaves_undefined_cases_to_onnxruntime():
    from graphmill.passes.cleanup.fold_constants import evaluate_numpy
    from graphmill.ir import Node

    neg = Node("Unsqueeze", [], {"axes": [-1]})
    assert evaluate_numpy(neg, [DATA], 10) is None  # negative axes are defined from opset 11
    assert evaluate_numpy(neg, [DATA], 11)[0].shape == (2, 1, 3, 1)
    no_axes = Node("Squeeze", [], {})
    assert evaluate_numpy(no_axes, [DATA], 9) is None
    assert evaluate_numpy(Node("Gather", [], {"axis": 0}), [DATA, np.array([-1])], 9) is None
    assert evaluate_numpy(Node("Concat", [], {"axis": 0}), [DATA, DATA.astype(np.float64)], 17) is None


def _branch_model():
    """Identities a, b, c of x; an If whose then-branch returns a directly and whose else-branch
    returns b directly; y = c + If's result."""
    from onnx import helper

    then_g = helper.make_graph([], "then", [], [helper.make_tensor_value_info("a", 1, [2])])
    else_g = helper.make_graph([], "else", [], [helper.make_tensor_value_info("b", 1, [2])])
    g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Identity", ["x"], ["b"]),
         helper.make_node("Identity", ["x"], ["c"]),
         helper.make_node("If", ["cond"], ["r"], then_branch=then_g, else_branch=else_g),
         helper.make_node("Add", ["c", "r"], ["y"])],
        "branches",
        [helper.make_tensor_value_info("x", 1, [2]), helper.make_tensor_value_info("cond", 9, [])],
        [helper.make_tensor_value_info("y", 1, [2])])
    from graphmill.frontend.onnx_import import from_proto

    return from_proto(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def test_rewrites_keep_values_a_subgraph_returns_directly():
    g = _branch_model()
    res = run_passes(g, "simplify", verify_each=True)
    assert res.stats()["simplify"].get("identity") == 1  # c only
    assert [n.op_type for n in g.nodes] == ["Identity", "Identity", "If", "Add"]
    assert {n.outputs[0].name for n in g.nodes if n.op_type == "Identity"} == {"a", "b"}


def test_nested_outputs_recomputed_when_a_node_with_subgraphs_comes_or_goes():
    from graphmill.ir.rewrite import NestedOutputs, nested_output_ids

    g = _branch_model()
    tracker = NestedOutputs(g)
    ids = tracker.ids()
    assert ids == nested_output_ids(g) and len(ids) == 2
    tracker.touched([n for n in g.nodes if n.op_type == "Identity"])
    assert tracker.ids() is ids  # nodes without subgraphs change nothing
    tracker.touched([n for n in g.nodes if n.op_type == "If"])
    assert tracker.ids() is not ids and tracker.ids() == nested_output_ids(g)


def test_remove_initializers_keeps_those_that_are_graph_inputs():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2])
    b.output(b.Relu(x), "y")
    g = b.build()
    w = g.add_initializer(Tensor(np.ones(2, np.float32)), "w")
    d = g.add_initializer(Tensor(np.zeros(2, np.float32)), "d")
    g.add_input(d)
    g.remove_initializers([w, d])
    assert not g.initializers and w.graph is None and d.graph is g and d in g.inputs


def test_cse_many_lookalike_weights_merge_only_true_duplicates():
    """12 distinct weights share their sample (zeros but one element off the sample): past 8 the
    comparison switches to digests; each weight's copy still merges into it, nothing else does."""
    ws = []
    for i in range(12):
        w = np.zeros((64, 9), np.float32)  # 576 elements: the sample reads every 9th
        w[1, 2] = i + 1  # element 11, not read
        ws.append(w)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [9, 64])
    for i, w in enumerate(ws + [w.copy() for w in ws]):
        b.output(b.MatMul(x, b.const(w)), f"y{i}")
    g = b.build()
    res = run_passes(g, "cse, dce", verify_each=True)
    assert res.stats()["cse"]["initializers_merged"] == 12
    weights = [n.inputs[1] for n in g.nodes]
    assert all(weights[i] is weights[i + 12] for i in range(12))
    assert len({id(w) for w in weights}) == 12


def test_collector_paused_restores_the_collector_state():
    import gc

    from graphmill.ir.gc_pause import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner one leaves it to the outer one
    assert gc.isenabled()
    try:
        with collector_paused():
            raise KeyError("x")
    except KeyError:
        pass
    assert gc.isenabled()
    gc.disable()
    try:
        run_passes(_branch_model(), "simplify")
        assert not gc.isenabled()  # a caller that turned it off keeps it off
    finally:
        gc.enable()
