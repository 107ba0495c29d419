"""shape-inference, fold-constants, cse, dce: numerical equivalence and refusals.

Reference: ONNX Runtime running the graph before the pass (``graphmill.backends.onnxruntime.compare``
on seeded random inputs). These passes are exact: rtol=0, atol=0. Node counts follow from each
test's own construction.
"""

from __future__ import annotations

import numpy as np
import pytest

from graphmill import infer_shapes
from graphmill.backends.onnxruntime import compare
from graphmill.ir import Tensor, TensorType
from graphmill.ir.builder import GraphBuilder
from graphmill.passes import Pass, PassResult, register_pass, run_passes


def _run(g, schedule):
    ref = g.copy()
    res = run_passes(g, schedule, verify_each=True)
    return ref, res


def _ops(g):
    return [n.op_type for n in g.nodes]


def test_shape_inference_fills_types_and_keeps_symbols():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 3])
    y = b.Relu(b.Add(x, np.ones(3, np.float32)))
    b.output(y, "y")
    g = b.build(infer=False)
    assert y.type is None
    _, res = _run(g, "shape-inference")
    assert res.changed
    assert y.type.shape == ("N", 3) and y.type.dtype == x.type.dtype
    assert not run_passes(g, "shape-inference").changed  # nothing left to infer


@pytest.fixture(scope="module")
def static_quantized_cnn(tmp_path_factory):
    """A small CNN quantized by ONNX Runtime's own tool (QDQ format: int8 weights, each behind a
    DequantizeLinear), and its float original's random input."""
    torch = pytest.importorskip("torch")
    quantization = pytest.importorskip("onnxruntime.quantization")
    import warnings

    folder = tmp_path_factory.mktemp("qdq")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, 4)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3, 12, 12),), str(folder / "f.onnx"), dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"])
    from tests.support.quantization import quantize_static

    quantize_static(str(folder / "f.onnx"), str(folder / "q.onnx"), "x", (1, 3, 12, 12),
                    quant_format=quantization.QuantFormat.QDQ, activation_type=quantization.QuantType.QUInt8,
                    weight_type=quantization.QuantType.QInt8)
    return folder / "q.onnx"


@pytest.mark.parametrize("keep", [True, False])
def test_fold_constants_keeps_a_quantized_models_weights_quantized(static_quantized_cnn, tmp_path, keep):
    """fold-constants turned every weight DequantizeLinear into a float32 initializer: the file grew 3.8x and
    ONNX Runtime, re-quantizing the float weights with parameters of its own, moved a fifth of the outputs by a
    quantization step (an outside check). Reference: ONNX Runtime's quantizer (the model) and ONNX Runtime with
    its default optimizations on (the outputs, exactly equal)."""
    import onnxruntime as ort

    import graphmill

    g = graphmill.load(str(static_quantized_cnn))
    quantized = {n for n, v in g.initializers.items() if v.type.dtype.name == "INT8" and len(v.type.shape) > 1}
    assert len(quantized) == 3
    dequantize = sum(n.op_type == "DequantizeLinear" for n in g)
    res = run_passes(g, "fold-constants, dce" if keep else "fold-constants(keep_quantized=false), dce")
    assert any("quantized constant(s) folded to float" in n for n in res.records[0].notes) is not keep
    after = {n for n, v in g.initializers.items() if v.type.dtype.name == "INT8" and len(v.type.shape) > 1}
    if not keep:  # the option folds them, as before
        assert not after and sum(n.op_type == "DequantizeLinear" for n in g) < dequantize
        return
    assert after == quantized and sum(n.op_type == "DequantizeLinear" for n in g) == dequantize
    graphmill.optimize(g)
    graphmill.save(g, tmp_path / "o.onnx")
    sessions = [ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                for path in (static_quantized_cnn, tmp_path / "o.onnx")]
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = {"x": rng.standard_normal((1, 3, 12, 12)).astype(np.float32)}
        want, got = (s.run(None, x)[0] for s in sessions)
        np.testing.assert_array_equal(got, want)


def test_fold_constants_numpy_and_ort_paths():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 3])
    w = b.Sqrt(b.Add(np.full((3,), 3.0, np.float32), np.ones(3, np.float32)))  # ORT path
    shape = b.Concat(b.Shape(b.const(np.zeros((2, 3), np.float32))), np.array([1], np.int64), axis=0)  # numpy path
    y = b.Reshape(b.Mul(x, w), shape)
    b.output(y, "y")
    g = b.build()
    ref, res = _run(g, "fold-constants, dce")
    assert _ops(g) == ["Mul", "Reshape"]  # Add, Sqrt, Shape, Concat folded
    assert res.records[0].stats["folded"] == 4
    assert compare(ref, g, rtol=0, atol=0).ok


def test_fold_constants_folds_readers_of_constant_nodes_in_the_same_run():
    """A Constant node becomes an initializer and its readers fold in the same run. Before, the readers read
    the new initializer, which the run did not know as constant: ``-p fold-constants`` left ``Mul(Constant,
    Constant)`` computed (a second run folded it)."""
    from onnx import helper, numpy_helper

    from graphmill.frontend import from_proto

    def const(name, v):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(v), name))

    nodes = [const("s0", np.array([1, 2, 3], np.float32)), const("k", np.float32(2.0)),
             helper.make_node("Mul", ["s0", "k"], ["w"]), helper.make_node("Add", ["x", "w"], ["y"])]
    g = from_proto(helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", 1, [2, 3])], [helper.make_tensor_value_info("y", 1, [2, 3])]),
        opset_imports=[helper.make_opsetid("", 17)]))
    ref, res = _run(g, "fold-constants")
    assert _ops(g) == ["Add"] and res.records[0].stats == {"folded": 1, "constants_to_initializers": 2}
    assert compare(ref, g, rtol=0, atol=0).ok


def test_fold_constants_refusals():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 3])
    # 256 Mi elements: over the default limit (128 Mi), refused from the estimate, never materialized
    big = b.ConstantOfShape(np.array([1 << 14, 1 << 14], np.int64))
    rnd = b.RandomNormalLike(b.const(np.zeros((2, 3), np.float32)))  # non-deterministic
    custom = b.op("Foo", b.const(np.ones(3, np.float32)), domain="custom.x")  # unknown domain
    b.output(b.ReduceSum(big, keepdims=0), "s")
    b.output(b.Add(x, rnd), "r")
    b.output(custom, "c")
    g = b.build(infer=False)
    _, res = _run(g, "fold-constants")
    assert set(_ops(g)) == {"ConstantOfShape", "ReduceSum", "RandomNormalLike", "Add", "Foo"}
    notes = " ".join(res.records[0].notes)
    assert "size_limit" in notes and "non-deterministic" in notes and "non-ONNX domain" in notes


@pytest.mark.parametrize("opset", [8, 9])
def test_fold_constants_neither_writes_an_integer_constant_before_opset_9_nor_adds_nodes(tmp_path, opset):
    """An outside check on old-opset models: a folded int64 graph output (Shape of a weight) became a Constant, which
    holds only floats before opset 9, and optimize refused the valid opset-8 model as ill-typed; a TopK whose values
    and indices are both graph outputs folded into two Constant nodes (1 node became 2). Reference: ONNX Runtime
    running the model before and after, and onnx's checker on the written file."""
    import onnx
    import onnxruntime as ort

    import graphmill

    h = onnx.helper
    c = onnx.numpy_helper.from_array(np.array([[3.0, 1.0, 2.0, 5.0]] * 3, np.float32), "c")
    nodes = [h.make_node("Shape", ["c"], ["shape"]), h.make_node("TopK", ["c"], ["values", "indices"], axis=1, k=2),
             h.make_node("Add", ["x", "x"], ["y"])]
    outputs = [h.make_tensor_value_info(n, t, None) for n, t in (("shape", 7), ("values", 1), ("indices", 7),
                                                                  ("y", 1))]
    model = h.make_model(h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, [2])], outputs, [c]),
                         opset_imports=[h.make_opsetid("", opset)], ir_version=4)
    path, out = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(model, path)
    g = graphmill.load(path)
    graphmill.optimize(g)
    graphmill.save(g, out)
    assert len(g.nodes) <= len(nodes)
    onnx.checker.check_model(onnx.load(out), full_check=True)
    x = {"x": np.array([1, 2], np.float32)}
    want, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, x) for p in (path, out))
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_fold_constants_size_limit_option():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [4, 4])
    b.output(b.Add(x, b.ConstantOfShape(np.array([4, 4], np.int64))), "y")
    g = b.build()
    _run(g, "fold-constants(size_limit=8)")
    assert _ops(g) == ["ConstantOfShape", "Add"]  # 16 elements > 8
    ref, _ = _run(g, "fold-constants(size_limit=16), dce")
    assert _ops(g) == ["Add"]
    assert compare(ref, g, rtol=0, atol=0).ok


@pytest.mark.parametrize("op", ["Transpose", "Reshape", "Cast", "Split"])
def test_fold_constants_over_size_limit_when_not_growing(rng, op):
    """A fold whose output is no bigger than the constant inputs it replaces (read by nothing else) does
    not grow the model: it folds over size_limit (here 8 elements; the weight has 24)."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 4])
    w = b.const(rng.standard_normal((6, 4)).astype(np.float32), "w")
    if op == "Transpose":
        wt = b.Transpose(w, perm=[1, 0])
    elif op == "Reshape":
        wt = b.Reshape(b.Transpose(w, perm=[1, 0]), np.array([4, 6], np.int64))
    elif op == "Cast":
        wt = b.Cast(b.Cast(b.Transpose(w, perm=[1, 0]), to=11), to=1)  # float -> double -> float: exact
    else:
        wt = b.Concat(*b.Split(b.Transpose(w, perm=[1, 0]), np.array([2, 4], np.int64), axis=1, outputs=2), axis=1)
    b.output(b.MatMul(x, wt), "y")
    g = b.build()
    n_const = len(g.nodes) - 1
    ref, res = _run(g, "fold-constants(size_limit=8), dce")
    assert _ops(g) == ["MatMul"]  # every node but the MatMul was constant
    assert res.records[0].stats["folded"] == n_const
    assert compare(ref, g, rtol=0, atol=0).ok


def test_fold_constants_over_size_limit_refusals(rng):
    """Over size_limit, folds that grow the model stay: a weight that another node also reads (it would
    be stored twice), growing ops (ConstantOfShape, Expand, Tile, Range)."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 4])
    w = b.const(rng.standard_normal((4, 4)).astype(np.float32), "w")  # 16 elements
    b.output(b.MatMul(x, b.Transpose(w, perm=[1, 0])), "y")
    b.output(b.MatMul(x, w), "y2")  # w stays: the transposed copy would be stored besides it
    b.output(b.Add(x, b.Expand(np.ones((1, 4), np.float32), np.array([2, 4], np.int64))), "e")  # 4 -> 8 elements
    b.output(b.Add(x, b.Tile(np.ones((1, 4), np.float32), np.array([2, 1], np.int64))), "t")  # 4 -> 8
    b.output(b.Add(x, b.ConstantOfShape(np.array([2, 4], np.int64))), "c")  # 2 -> 8
    b.output(b.Range(np.array(0, np.int64), np.array(9, np.int64), np.array(1, np.int64)), "r")  # 3 -> 9
    g = b.build()
    before = _ops(g)
    ref, _ = _run(g, "fold-constants(size_limit=7), dce")
    assert _ops(g) == before
    assert compare(ref, g, rtol=0, atol=0).ok


@pytest.mark.parametrize("build", [
    lambda b: b.Add(np.ones((300, 1), np.float32), np.ones((1, 300), np.float32)),  # broadcast: 600 -> 90,000
    lambda b: b.MatMul(np.ones((300, 1), np.float32), np.ones((1, 300), np.float32)),  # outer product
    lambda b: b.Gather(np.ones((30, 300), np.float32), np.zeros(3000, np.int64)),  # 9,000 + 3,000 -> 900,000
    lambda b: b.Einsum(np.ones(300, np.float32), np.ones(300, np.float32), equation="i,j->ij"),  # outer product
    lambda b: b.Einsum(np.ones((2, 300), np.float32), np.ones((2, 300), np.float32), equation="...i,...j->...ij"),
    lambda b: b.Resize(np.ones((1, 1, 30, 30), np.float32), np.zeros(0, np.float32),
                       np.array([1, 1, 10, 10], np.float32), mode="nearest"),  # 900 -> 90,000
])
def test_fold_constants_refuses_a_growing_fold_before_evaluating_it(monkeypatch, build):
    """size_limit was checked after evaluation for all but four ops: two small constants ([30000, 1] + [1, 30000])
    took 3.7 GB before the 900-million-element result was refused (an outside check), an Einsum outer product
    908 MB and a Resize 501 MB (a review). The folded values' types are cleared, as an exporter that declares
    symbolic dims leaves them, so the estimate comes from the op. Reference: the output size written above; both
    evaluations (numpy's, and the context's node evaluator) fail the test if they are reached."""
    from graphmill.passes import PassContext
    from graphmill.passes.cleanup import fold_constants

    def never(*args, **kwargs):
        raise AssertionError("evaluated a node whose output is over size_limit")

    class NeverEvaluator:
        evaluate = staticmethod(never)

    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1])
    b.output(b.Add(x, build(b)), "y")
    g = b.build()
    for n in g.nodes:
        for v in n.outputs:
            if v is not None and v not in g.outputs:
                v.type = None
    monkeypatch.setattr(fold_constants, "evaluate_numpy", never)
    res = run_passes(g, "fold-constants(size_limit=1000)", verify_each=True,
                     ctx=PassContext(node_evaluator=NeverEvaluator()))
    assert any("output over size_limit (1000 elements)" in n for n in res.records[0].notes)


def test_fold_constants_limits_each_output_not_their_sum(rng):
    """A Split of a 1200-element weight that another node also reads, into two halves of 600, under size_limit
    1000: each output is within the limit. The estimate made before evaluation summed the outputs and refused it
    (a review; folded before the estimate existed)."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 600])
    w = b.const(rng.standard_normal(1200).astype(np.float32), "w")
    lo, hi = b.Split(w, np.array([600, 600], np.int64), outputs=2)
    b.output(b.Add(b.Add(x, lo), hi), "y")
    b.output(b.Add(x, b.Slice(w, np.array([0], np.int64), np.array([600], np.int64))), "z")  # w is shared
    g = b.build()
    infer_shapes(g)  # the halves' static types, which the estimate reads
    ref, _ = _run(g, "fold-constants(size_limit=1000)")
    assert "Split" not in _ops(g)
    assert compare(ref, g, rtol=0, atol=0).ok


def test_fold_constants_keeps_graph_output_names_and_overridable_initializers():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [3])
    b.output(b.Neg(b.const(np.arange(3, dtype=np.float32))), "folded_out")
    # an initializer that is also a graph input is only a default: not constant
    d = b.const(np.ones(3, np.float32), "d")
    b.graph.add_input(d)
    b.output(b.Add(x, b.Neg(d)), "y")
    g = b.build()
    ref, _ = _run(g, "fold-constants, dce")
    assert [v.name for v in g.outputs] == ["folded_out", "y"]
    assert _ops(g) == ["Constant", "Neg", "Add"]
    assert compare(ref, g, {"x": np.ones(3, np.float32), "d": np.full(3, 5, np.float32)}, rtol=0, atol=0).ok


def test_cse_merges_duplicates_and_constants():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 3])
    a1 = b.Relu(x)
    a2 = b.Relu(x)
    s1 = b.Add(a1, b.const(np.ones(3, np.float32)))
    s2 = b.Add(b.const(np.ones(3, np.float32)), a2)  # commutative, duplicate constant
    b.output(b.Mul(s1, s2), "y")
    g = b.build()
    ref, res = _run(g, "cse, dce")
    assert _ops(g) == ["Relu", "Add", "Mul"]  # 5 built, one Relu and one Add merged
    assert len(g.initializers) == 1
    assert compare(ref, g, rtol=0, atol=0).ok


def test_cse_refusals():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 3])
    r1 = b.RandomUniformLike(x)
    r2 = b.RandomUniformLike(x)  # two draws are not one
    b.output(b.Sub(r1, r2), "d")
    b.output(b.Relu(x), "o1")
    b.output(b.Relu(x), "o2")  # duplicate, but both are graph outputs with their own names
    s1, s2 = b.Sub(x, b.Neg(x)), b.Sub(b.Neg(x), x)  # Sub is not commutative (the Negs do merge)
    b.output(b.Add(s1, s2), "o3")
    g = b.build()
    before = _ops(g)
    _run(g, "cse")
    assert len(g.nodes) == len(before) - 1 and _ops(g).count("Neg") == 1 and _ops(g).count("Relu") == 2


def test_dce_removes_dead_and_keeps_outputs():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2])
    b.Relu(b.Neg(x))  # dead chain
    b.op("Effect", x, domain="custom.side")  # custom domain: may have side effects, kept
    b.output(b.Abs(x), "y")
    g = b.build(infer=False)
    ref, _ = _run(g, "dce")
    assert _ops(g) == ["Effect", "Abs"]


def test_fold_constants_input_initializers_option():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [3])
    d = b.const(np.arange(3, dtype=np.float32), "d")
    b.graph.add_input(d)  # IR < 4 style: an initializer listed as an input
    b.output(b.Add(x, b.Neg(d)), "y")
    g = b.build()
    ref, _ = _run(g, "fold-constants(input_initializers=constant), dce")
    assert _ops(g) == ["Add"]  # Neg folded: the default value of d is taken as fixed
    assert compare(ref, g, rtol=0, atol=0).ok  # with d at its default (random_inputs skips initializers)


@pytest.mark.parametrize("ir_version, folded", [(3, True), (7, False)])
def test_fold_constants_auto_follows_onnxruntime(ir_version, folded):
    """Reference: ONNX Runtime lists no overridable initializers below IR version 4, and does from 4 on."""
    import onnxruntime as ort

    from graphmill.frontend import to_proto
    from graphmill.ir import ModelInfo

    b = GraphBuilder(opset=9)
    x = b.input("x", "float32", [3])
    d = b.const(np.arange(3, dtype=np.float32), "d")
    b.graph.add_input(d)
    b.output(b.Add(x, b.Neg(d)), "y")
    g = b.build()
    g.model = ModelInfo(ir_version=ir_version)
    sess = ort.InferenceSession(to_proto(g).SerializeToString())
    assert (len(sess.get_overridable_initializers()) == 0) == folded
    _run(g, "fold-constants, dce")
    assert ("Neg" not in _ops(g)) == folded


@pytest.mark.parametrize("ir_version, schedule, pruned", [(3, "dce", True), (7, "dce", False),
                                                          (3, "dce{input_initializers=overridable}", False)])
def test_dce_drops_unused_input_initializers_where_they_are_weights(ir_version, schedule, pruned):
    """Below IR 4 every initializer had to be an input, and ONNX Runtime warns about each unused one
    ("Removing initializer ... not used by any node"); from IR 4 an initializer-input is an overridable
    default, part of the interface. Reference: ONNX Runtime's session inputs and outputs."""
    from graphmill.frontend import to_proto
    from graphmill.ir import ModelInfo

    b = GraphBuilder(opset=9)
    x = b.input("x", "float32", [3])
    for name in ("unused", "used"):
        b.graph.add_input(b.const(np.arange(3, dtype=np.float32) + len(name), name))
    b.output(b.Add(x, b.graph.initializers["used"]), "y")
    g = b.build()
    g.model = ModelInfo(ir_version=ir_version)
    ref, _ = _run(g, schedule)
    names = [v.name for v in g.inputs]
    assert names == (["x", "used"] if pruned else ["x", "unused", "used"])
    assert ("unused" in g.initializers) != pruned and "used" in g.initializers
    assert compare(ref, g, rtol=0, atol=0).ok  # the kept weight still holds its value
    proto = to_proto(g)
    assert [i.name for i in proto.graph.input] == names


def test_remove_inputs_refuses_a_used_input_or_a_non_input():
    from graphmill.ir import IRError

    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [3])
    w = b.const(np.ones(3, np.float32), "w")
    b.output(b.Add(x, w), "y")
    g = b.build()
    with pytest.raises(IRError, match="still has 1 use"):
        g.remove_inputs([x])
    with pytest.raises(IRError, match="is not an input of graph"):
        g.remove_inputs([w])


def _ir_model(ir_version):
    from graphmill.ir import ModelInfo

    b = GraphBuilder(opset=9)
    x = b.input("x", "float32", [3])
    b.graph.add_input(b.const(np.arange(3, dtype=np.float32), "unused"))
    b.output(b.Relu(x), "y")
    g = b.build()
    g.model = ModelInfo(ir_version=ir_version)
    return g


def test_verify_each_lets_only_weights_go():
    """An unused initializer-input may go below IR 4 or when dce is told they are weights; a fed input
    may never go or change, at any IR version."""
    from graphmill.passes import PassFailure

    _run(_ir_model(7), "dce{input_initializers=constant}")  # verify_each on: no false alarm
    with pytest.raises(PassFailure, match="inputs changed"):
        _run(_ir_model(3), "test-drop-fed-input")
    with pytest.raises(PassFailure, match="inputs changed"):
        _run(_ir_model(7), "test-drop-initializer-input")
    _run(_ir_model(3), "test-drop-initializer-input")


@register_pass
class DropFedInput(Pass):
    """Breaks the interface: the graph input x goes (its reader then reads a constant)."""

    name = "test-drop-fed-input"

    def run(self, graph, ctx):
        x = graph.inputs[0]
        x.replace_all_uses_with(graph.add_initializer(Tensor(np.zeros(3, np.float32)), "zeros"))
        graph.remove_inputs([x])
        return PassResult(True)


@register_pass
class DropInitializerInput(Pass):
    """Drops the unused initializer-input whatever the IR version."""

    name = "test-drop-initializer-input"

    def run(self, graph, ctx):
        graph.remove_inputs([v for v in graph.inputs if v.is_initializer])
        return PassResult(True)


@pytest.mark.parametrize("value", [None, np.array([2.5], np.float32), np.array([7], np.int64)])
def test_constant_of_shape_folds_like_onnxruntime(value):
    """Reference: ONNX Runtime evaluating the same ConstantOfShape (fold-constants computes it with numpy)."""
    from graphmill.ir import Tensor

    b = GraphBuilder(opset=9)
    x = b.input("x", "float32" if value is None or value.dtype == np.float32 else "int64", [2, 3])
    kw = {} if value is None else {"value": Tensor(value)}
    c = b.op("ConstantOfShape", np.array([2, 3], np.int64), **kw)
    b.output(b.Add(x, c), "y")
    g = b.build()
    ref, _ = _run(g, "fold-constants, dce")
    assert _ops(g) == ["Add"]
    assert compare(ref, g, rtol=0, atol=0).ok


def test_one_dce_sweep_removes_work_read_only_by_a_dead_node_inside_a_live_branch():
    """A Conv whose only reader is an unused Exp inside a live If's branch outlived one dce run (the outer graph
    was swept before its branches; an outside check). Reference: the model's own data flow (onnx's checker accepts
    it; the Exp's output is read by nothing) and ONNX Runtime's outputs for both branches, unchanged."""
    import onnx
    from onnx import TensorProto as T, helper as h, numpy_helper

    from graphmill.frontend.onnx_import import from_proto

    vi = h.make_tensor_value_info
    then_b = h.make_graph([h.make_node("Relu", ["x"], ["t"]), h.make_node("Exp", ["cv"], ["unused"])], "then", [],
                          [vi("t", T.FLOAT, [2, 3])])
    else_b = h.make_graph([h.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e", T.FLOAT, [2, 3])])
    model = h.make_model(h.make_graph(
        [h.make_node("Unsqueeze", ["x", "ax"], ["x3"]), h.make_node("Conv", ["x3", "w"], ["cv"]),
         h.make_node("If", ["c"], ["y"], then_branch=then_b, else_branch=else_b)],
        "g", [vi("x", T.FLOAT, [2, 3]), vi("c", T.BOOL, [])], [vi("y", T.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.ones((2, 2, 1), np.float32), "w"),
         numpy_helper.from_array(np.array([0], np.int64), "ax")]), opset_imports=[h.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    g = from_proto(model)
    run_passes(g, "dce")
    assert [n.op_type for n in g.nodes] == ["If"]
    assert [n.op_type for n in g.nodes[0].attrs["then_branch"].value.nodes] == ["Relu"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    for c in (True, False):
        assert compare(from_proto(model), g, {"x": x, "c": np.array(c)}).ok
