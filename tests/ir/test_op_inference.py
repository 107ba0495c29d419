"""The op registry's shape/type inference against references nobody here wrote.

Reference 1: the ONNX backend node-test corpus shipped in the onnx wheel. Every
case carries expected output arrays; their dtype and shape are what our
inference must produce for the case's model, whose output types we erase first.
A dimension we leave unknown counts as *not inferred*, never as a pass.

Reference 2: ``onnx.shape_inference.infer_shapes(..., data_prop=True)`` on small
graphs with symbolic dims. Where onnx determines a dim (a number or one of the
graph's symbols) ours must be the same. Where onnx gives up (it writes a fresh
``unk__*`` symbol) ours may be unknown, or more precise -- and then ONNX Runtime
decides: the graph is run under two different bindings of its symbols and every
dim we claim must match the executed shapes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper

from graphmill.frontend import from_proto
from graphmill.ir import DataType, ShapeInferenceError, TensorType
from graphmill.ir.ops import infer_types, lookup

# The ops the registry must cover (the brief's list), elementwise arithmetic spelled out.
REQUIRED_OPS = sorted({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "Sigmoid", "Tanh",
    "HardSigmoid", "HardSwish", "LeakyRelu", "Gelu", "Erf", "Softmax", "LogSoftmax", "Add", "Sub", "Mul", "Div",
    "Pow", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LayerNormalization",
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare", "Reshape", "Flatten", "Transpose", "Concat", "Split", "Slice",
    "Gather", "Squeeze", "Unsqueeze", "Shape", "Cast", "CastLike", "Constant", "ConstantOfShape", "Pad",
    "Resize", "Expand", "Where", "Range", "Tile", "Size", "Identity",
})

# Inputs whose *values* decide the output shape. The node tests feed them as runtime graph
# inputs, so no inference can know the shape; for such cases we make exactly these inputs
# constants (initializers holding the case's own data) and then require a fully static result.
_AXES = "axes to reduce"
SHAPE_INPUTS: dict[str, dict[int, str]] = {
    "Reshape": {1: "target shape"},
    "Slice": {1: "starts", 2: "ends", 3: "axes", 4: "steps"},
    "Squeeze": {1: "axes"},
    "Unsqueeze": {1: "axes"},
    "Split": {1: "split sizes"},
    "Pad": {1: "pads", 3: "axes"},
    "Resize": {1: "roi / scales (opset 10)", 2: "scales", 3: "sizes"},
    "Upsample": {1: "scales"},
    "Expand": {1: "target shape"},
    "Tile": {1: "repeats (tiles in opset 1)", 2: "axis (opset 1)"},
    "ConstantOfShape": {0: "output shape"},
    "Range": {0: "start", 1: "limit", 2: "delta"},
    "TopK": {1: "K"},
    "OneHot": {1: "depth"},
    "CenterCropPad": {1: "crop/pad shape"},
    "MaxUnpool": {2: "output_shape"},
    **{op: {1: _AXES} for op in ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                 "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]},
}
# Ops whose output size depends on the *data* even when every input is constant-shaped.
DATA_DEPENDENT_OPS = {
    "Compress": "the kept count is the number of true conditions",
    "NonZero": "the count is the number of non-zero elements",
    "Unique": "the count is the number of distinct values (slices)",
}
# Multi-node (function-expanded) cases whose output size is computed with float arithmetic
# (Cast(int -> float) -> Sub/Div -> Range); value propagation carries integers only, as onnx's
# data propagation does, so these stay unknown even with their integer inputs made constant.
EXPANDED_FLOAT_SHAPE_MATH = {
    f"test_{w}window{s}_expanded": "window length computed in float32 before Range"
    for w in ("blackman", "hamming", "hann") for s in ("", "_symmetric")
}


# -- Reference 1: the node-test corpus -----------------------------------------------------------


@dataclass
class CaseResult:
    name: str
    op: str
    problems: list[str] = field(default_factory=list)
    static: bool = False  # every output fully static and right, as the case stands
    compared: int = 0  # tensor outputs compared (0: only sequences/optionals)
    promoted: str = ""  # "" or why the case needed its shape inputs made constant
    static_promoted: bool = False


def _erase_and_infer(model: onnx.ModelProto):
    g = from_proto(model, path="<corpus>")
    for n in g.all_nodes():
        for v in n.outputs:
            if v is not None:
                v.type = None
    for v in g.outputs:
        if v.producer is not None:
            v.type = None
    report = infer_types(g, strict=True)
    return g, report


def _as_array(a):
    """A reference tensor as numpy: the corpus holds ndarrays, numpy scalars (0-d outputs) and
    TensorProtos (element types numpy lacks); sequences and optionals come back as None."""
    if isinstance(a, onnx.TensorProto):
        return numpy_helper.to_array(a)
    if isinstance(a, (np.ndarray, np.generic)):
        return np.asarray(a)
    return None


def _expected_dtype(a: np.ndarray) -> DataType:
    if a.dtype.kind in "USO":
        return DataType.STRING
    return DataType.from_numpy(a.dtype)


def _compare(g, report, data_sets) -> tuple[list[str], bool, int]:
    """Problems (wrong dtype, rank or dim), whether every checked output is fully static, and
    how many outputs were compared."""
    problems: list[str] = list(report.conflicts) + list(report.errors)
    static = True
    compared = 0
    for _, expected in data_sets:
        for v, e in zip(g.outputs, expected):
            e = _as_array(e)
            if e is None:
                continue  # sequences and optionals are out of scope
            compared += 1
            t = v.type
            if not isinstance(t, TensorType) or t.shape is None:
                static = False
                if isinstance(t, TensorType) and t.dtype != _expected_dtype(e):
                    problems.append(f"%{v.name}: dtype {t.dtype.name}, expected {_expected_dtype(e).name}")
                continue
            if t.dtype != _expected_dtype(e):
                problems.append(f"%{v.name}: dtype {t.dtype.name}, expected {_expected_dtype(e).name}")
            if len(t.shape) != e.ndim:
                problems.append(f"%{v.name}: shape {list(t.shape)}, expected {list(e.shape)}")
                continue
            for d, want in zip(t.shape, e.shape):
                if isinstance(d, int):
                    if d != want:
                        problems.append(f"%{v.name}: shape {list(t.shape)}, expected {list(e.shape)}")
                        break
                else:
                    static = False  # unknown (or symbolic) where the reference has a number
    return problems, static and compared > 0, compared


def _with_constant_inputs(model: onnx.ModelProto, feed: dict[str, np.ndarray], names: set[str]) -> onnx.ModelProto:
    """A copy where the named graph inputs become initializers holding the case's data."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [vi for vi in m.graph.input if vi.name not in names]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    for name in sorted(names):
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(feed[name]), name))
    return m


def _feed(model: onnx.ModelProto, data_sets) -> dict[str, np.ndarray]:
    inits = {t.name for t in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in inits]
    return {n: _as_array(a) for n, a in zip(names, data_sets[0][0])}


def _check_single(case) -> CaseResult:
    model = case.load_proto()
    node = model.graph.node[0]
    res = CaseResult(case.name, node.op_type)
    try:
        g, report = _erase_and_infer(model)
        res.problems, res.static, res.compared = _compare(g, report, case.data_sets)
        if not res.compared:
            return res  # nothing tensor-valued to compare (sequence/optional outputs)
    except Exception as e:  # noqa: BLE001 -- a crash is a finding for this case
        res.problems.append(f"inference raised {type(e).__name__}: {e}")
        return res
    if res.static or res.problems:
        return res
    shape_inputs = SHAPE_INPUTS.get(node.op_type, {})
    graph_inputs = {vi.name for vi in model.graph.input} - {t.name for t in model.graph.initializer}
    runtime = {i: node.input[i] for i in shape_inputs if i < len(node.input) and node.input[i] in graph_inputs}
    if runtime:
        res.promoted = ", ".join(f"{shape_inputs[i]} (input {i}) is a runtime graph input" for i in sorted(runtime))
        try:
            m2 = _with_constant_inputs(model, _feed(model, case.data_sets), set(runtime.values()))
            g2, report2 = _erase_and_infer(m2)
            problems2, res.static_promoted, _ = _compare(g2, report2, case.data_sets)
        except Exception as e:  # noqa: BLE001
            problems2 = [f"inference with constant shape inputs raised {type(e).__name__}: {e}"]
        res.problems += [f"[shape inputs constant] {p}" for p in problems2]
        if not res.static_promoted:
            res.problems.append("not fully static even with its shape inputs constant")
    elif node.op_type in DATA_DEPENDENT_OPS:
        res.promoted = DATA_DEPENDENT_OPS[node.op_type]
    else:
        res.problems.append("output shape not fully inferred though nothing it depends on is runtime data")
    return res


@functools.lru_cache(maxsize=None)
def _corpus_cases():
    """Node-test cases: single-node ones by registered op type, and multi-node ones."""
    from graphmill.testing.onnx_corpus import iter_cases

    single: dict[str, list] = {}
    multi = []
    for case in iter_cases(("node",)):
        model = case.load_proto()
        nodes = model.graph.node
        if not nodes:
            continue
        if len(nodes) == 1:
            if lookup(nodes[0].domain, nodes[0].op_type) is not None:
                single.setdefault(nodes[0].op_type, []).append(case)
        elif all(lookup(n.domain, n.op_type) is not None for n in nodes):
            multi.append(case)
    return single, multi


@functools.lru_cache(maxsize=None)
def _single_results() -> dict[str, list[CaseResult]]:
    single, _ = _corpus_cases()
    return {op: [_check_single(c) for c in cases] for op, cases in single.items()}


def _corpus_ops() -> list[str]:
    return sorted(_corpus_cases()[0])


@pytest.mark.parametrize("op", _corpus_ops())
def test_node_corpus_inference(op: str) -> None:
    """Every single-node corpus case of ``op``: dtype and shape equal the expected outputs', and
    fully static unless a shape input is runtime data (then static once it is made constant)."""
    results = _single_results()[op]
    bad = [f"{r.name}: {p}" for r in results for p in r.problems]
    assert not bad, f"{op}: {len(bad)} problem(s):\n" + "\n".join(bad[:20])
    assert any(r.compared for r in results), f"{op}: no case has a tensor output to compare"


def test_required_ops_are_registered_and_covered_by_the_corpus() -> None:
    single, _ = _corpus_cases()
    missing = [op for op in REQUIRED_OPS if lookup("", op) is None or lookup("", op).infer is None]
    assert not missing, f"required ops without inference: {missing}"
    uncovered = [op for op in REQUIRED_OPS if op not in single]
    assert not uncovered, f"required ops with no single-node corpus case: {uncovered}"


def test_node_corpus_coverage_report() -> None:
    """Coverage table (printed; see it with ``pytest -s`` or ``-rP``). It also pins that every required op's cases are
    all accounted for: fully static, or static once their listed shape inputs are constant."""
    results = _single_results()
    lines = [f"{'op':<26}{'cases':>6}{'static':>8}{'+const':>8}{'data-dep':>9}"]
    tot = [0, 0, 0, 0]
    for op in sorted(results):
        rs = [r for r in results[op] if r.compared]
        row = [len(rs), sum(r.static for r in rs), sum(r.static_promoted for r in rs),
               sum(bool(r.promoted) and not r.static_promoted for r in rs)]
        tot = [a + b for a, b in zip(tot, row)]
        lines.append(f"{op:<26}" + "".join(f"{x:>{w}}" for x, w in zip(row, (6, 8, 8, 9))))
    lines.append(f"{'TOTAL':<26}" + "".join(f"{x:>{w}}" for x, w in zip(tot, (6, 8, 8, 9))))
    needed_constants = sorted((r.name, r.promoted) for rs in results.values() for r in rs if r.promoted)
    lines.append(f"\n{len(needed_constants)} cases whose output shape depends on runtime data:")
    lines += [f"  {name}: {why}" for name, why in needed_constants]
    skipped = sorted(r.name for rs in results.values() for r in rs if not r.compared)
    lines.append(f"\n{len(skipped)} cases with only sequence/optional outputs (not compared): {', '.join(skipped)}")
    print("\n" + "\n".join(lines))
    for op in REQUIRED_OPS:
        assert any(r.compared for r in results[op]), op
        for r in results[op]:
            assert not r.compared or r.static or r.static_promoted, f"{r.name} ({op}) not fully inferred: {r.problems}"


def test_node_corpus_expanded_graphs() -> None:
    """Function-expanded cases (several nodes, all registered) chain inference and value
    propagation (Shape -> Slice -> Concat -> Reshape, ConstantOfShape ...). Same checks; integer
    graph inputs are what such graphs compute shapes from, so those become constants when needed."""
    _, multi = _corpus_cases()
    assert len(multi) > 300  # the corpus has a few hundred such cases; guard against a loader change
    bad, static, promoted = [], 0, 0
    for case in multi:
        model = case.load_proto()
        try:
            g, report = _erase_and_infer(model)
        except Exception as e:  # noqa: BLE001 -- name the case that broke
            bad.append(f"{case.name}: inference raised {type(e).__name__}: {e}")
            continue
        problems, ok_static, compared = _compare(g, report, case.data_sets)
        if not compared:
            continue
        if not ok_static and not problems:
            ints = {vi.name for vi in model.graph.input
                    if vi.type.tensor_type.elem_type in (TP.INT32, TP.INT64)}
            if ints:
                m2 = _with_constant_inputs(model, _feed(model, case.data_sets), ints)
                problems, ok_static, _ = _compare(*_erase_and_infer(m2), case.data_sets)
                promoted += ok_static
            if not ok_static and case.name not in EXPANDED_FLOAT_SHAPE_MATH:
                problems.append("output shape not fully inferred")
        static += ok_static
        bad += [f"{case.name}: {p}" for p in problems]
    assert not bad, "\n".join(bad[:20])
    assert static + len(EXPANDED_FLOAT_SHAPE_MATH) >= len(multi)
    assert promoted > 0


# -- Reference 2: onnx's own shape inference on symbolic graphs -----------------------------------

F = TP.FLOAT
I64 = TP.INT64


def _w(*shape) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _i(*vals) -> np.ndarray:
    return np.array(vals, dtype=np.int64)


def _model(nodes, inputs, inits=(), opset=18) -> onnx.ModelProto:
    outs = [o for n in nodes for o in n.output if o]
    g = oh.make_graph(nodes, "g", [oh.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                      [oh.make_tensor_value_info(o, TP.UNDEFINED, None) for o in outs],
                      initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in inits])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])


def _chain_reshape():
    # The exporter idiom for x.view(x.size(0), -1).
    return _model([oh.make_node("Shape", ["x"], ["s"]), oh.make_node("Gather", ["s", "i0"], ["n"], axis=0),
                   oh.make_node("Unsqueeze", ["n", "ax"], ["nu"]), oh.make_node("Concat", ["nu", "m1"], ["t"], axis=0),
                   oh.make_node("Reshape", ["x", "t"], ["y"])],
                  [("x", F, ["N", 3, 4, 4])], [("i0", np.array(0, np.int64)), ("ax", _i(0)), ("m1", _i(-1))])


def _chain_div():
    # Integer shape arithmetic: split the channel dim in two halves, C/2 via Div.
    return _model([oh.make_node("Shape", ["x"], ["s"]), oh.make_node("Slice", ["s", "st", "en"], ["c"]),
                   oh.make_node("Div", ["c", "two"], ["h"]), oh.make_node("Concat", ["n0", "two", "h", "m1"], ["t"], axis=0),
                   oh.make_node("Reshape", ["x", "t"], ["y"], allowzero=0)],
                  [("x", F, ["N", 8, 5])], [("st", _i(1)), ("en", _i(2)), ("two", _i(2)), ("n0", _i(0)),
                                           ("m1", _i(-1))])


SYMBOLIC_GRAPHS = {
    "conv_resnet_stem": lambda: _model(
        [oh.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[3, 3, 3, 3])],
        [("x", F, ["N", 3, 224, 224])], [("w", _w(64, 3, 7, 7))]),
    "conv_same_symbolic_hw": lambda: _model(
        [oh.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
        [("x", F, ["N", 3, "H", "W"])], [("w", _w(8, 3, 3, 3)), ("b", _w(8))]),
    "conv_stride2_symbolic_hw": lambda: _model(
        [oh.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])],
        [("x", F, ["N", 3, "H", "W"])], [("w", _w(8, 3, 3, 3))]),
    "conv_depthwise_same_upper": lambda: _model(
        [oh.make_node("Conv", ["x", "w"], ["y"], group=32, auto_pad="SAME_UPPER", strides=[2, 2])],
        [("x", F, ["N", 32, 15, 15])], [("w", _w(32, 1, 3, 3))]),
    "conv_grouped_same_lower": lambda: _model(
        [oh.make_node("Conv", ["x", "w"], ["y"], group=4, auto_pad="SAME_LOWER")],
        [("x", F, ["N", 16, "H", "W"])], [("w", _w(8, 4, 3, 3))]),
    "conv1d_dilated_valid": lambda: _model(
        [oh.make_node("Conv", ["x", "w"], ["y"], dilations=[2], auto_pad="VALID")],
        [("x", F, ["N", 4, 20])], [("w", _w(8, 4, 3))]),
    "conv3d": lambda: _model(
        [oh.make_node("Conv", ["x", "w"], ["y"], strides=[1, 2, 2], pads=[0, 1, 1, 0, 1, 1])],
        [("x", F, ["N", 3, 8, 16, 16])], [("w", _w(4, 3, 3, 3, 3))]),
    "conv_transpose": lambda: _model(
        [oh.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])],
        [("x", F, ["N", 16, 7, 7])], [("w", _w(16, 8, 3, 3))]),
    "conv_transpose_same_grouped": lambda: _model(
        [oh.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER", group=2)],
        [("x", F, ["N", 4, 5, 6])], [("w", _w(4, 3, 3, 3))]),
    "matmul_batched_symbolic": lambda: _model(
        [oh.make_node("MatMul", ["a", "b"], ["y"])], [("a", F, ["N", "S", 64])], [("b", _w(64, 128))]),
    "matmul_broadcast": lambda: _model(
        [oh.make_node("MatMul", ["a", "b"], ["y"])], [("a", F, ["N", 1, "S", 64]), ("b", F, [12, 64, "T"])]),
    "matmul_1d_left": lambda: _model(
        [oh.make_node("MatMul", ["a", "b"], ["y"])], [("a", F, [64]), ("b", F, ["N", 64, 5])]),
    "matmul_1d_right": lambda: _model(
        [oh.make_node("MatMul", ["a", "b"], ["y"])], [("a", F, ["N", 7, 64]), ("b", F, [64])]),
    "gemm_transB_bias": lambda: _model(
        [oh.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1)], [("a", F, ["N", 512])],
        [("b", _w(1000, 512)), ("c", _w(1000))]),
    "gemm_transA": lambda: _model(
        [oh.make_node("Gemm", ["a", "b"], ["y"], transA=1)], [("a", F, [512, "N"])], [("b", _w(512, 10))]),
    "reshape_zero_minus_one": lambda: _model(
        [oh.make_node("Reshape", ["x", "s"], ["y"])], [("x", F, ["N", 3, 4, 4])], [("s", _i(0, -1))]),
    "reshape_minus_one_to_symbol": lambda: _model(
        [oh.make_node("Reshape", ["x", "s"], ["y"])], [("x", F, ["N", 3, 4])], [("s", _i(12, -1))]),
    "reshape_minus_one_over_symbol": lambda: _model(
        [oh.make_node("Reshape", ["x", "s"], ["y"])], [("x", F, ["N", 3, 4, 4])], [("s", _i(-1, 16))]),
    "shape_gather_concat_reshape": _chain_reshape,
    "shape_slice_div_concat_reshape": _chain_div,
    "shape_slice_concat_reshape_symbols": lambda: _model(
        [oh.make_node("Shape", ["x"], ["s"]), oh.make_node("Slice", ["s", "st", "en"], ["hw"]),
         oh.make_node("Concat", ["nc", "hw"], ["t"], axis=0), oh.make_node("Reshape", ["z", "t"], ["y"])],
        [("x", F, ["N", 3, "H", "W"]), ("z", F, [2, 5, "H", "W"])],
        [("st", _i(2)), ("en", _i(4)), ("nc", _i(10, 1))]),
    "constant_of_shape_symbolic": lambda: _model(
        [oh.make_node("Shape", ["x"], ["s"]), oh.make_node("ConstantOfShape", ["s"], ["y"])],
        [("x", F, ["N", 3, "H"])]),
    "concat_symbolic": lambda: _model(
        [oh.make_node("Concat", ["a", "b"], ["y"], axis=1)], [("a", F, ["N", 3, "H"]), ("b", F, ["N", 5, "H"])]),
    "concat_on_symbolic_axis": lambda: _model(
        [oh.make_node("Concat", ["a", "b"], ["y"], axis=0)], [("a", F, ["N", 3]), ("b", F, ["M", 3])]),
    "transpose": lambda: _model(
        [oh.make_node("Transpose", ["a"], ["y"], perm=[0, 2, 3, 1])], [("a", F, ["N", 3, "H", "W"])]),
    "maxpool_indices": lambda: _model(
        [oh.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
        [("x", F, ["N", 64, 112, 112])]),
    "maxpool_ceil": lambda: _model(
        [oh.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)],
        [("x", F, ["N", 64, 56, 56])]),
    "averagepool_symbolic_h": lambda: _model(
        [oh.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
        [("x", F, ["N", 64, "H", 7])]),
    "global_average_pool": lambda: _model(
        [oh.make_node("GlobalAveragePool", ["x"], ["y"])], [("x", F, ["N", 2048, "H", "W"])]),
    "global_max_pool": lambda: _model(
        [oh.make_node("GlobalMaxPool", ["x"], ["y"])], [("x", F, ["N", 8, 5])]),
    "flatten": lambda: _model([oh.make_node("Flatten", ["x"], ["y"])], [("x", F, ["N", 2048, 1, 1])]),
    "flatten_symbol_after_axis": lambda: _model(
        [oh.make_node("Flatten", ["x"], ["y"], axis=2)], [("x", F, ["N", 3, "H", 1])]),
    "slice_to_end_symbolic": lambda: _model(
        [oh.make_node("Slice", ["x", "st", "en", "ax"], ["y"])], [("x", F, ["N", 3, "H"])],
        [("st", _i(1)), ("en", _i(2**63 - 1)), ("ax", _i(1))]),
    "slice_whole_symbolic_axis": lambda: _model(
        [oh.make_node("Slice", ["x", "st", "en", "ax"], ["y"])], [("x", F, ["N", 3, "H"])],
        [("st", _i(0)), ("en", _i(2**63 - 1)), ("ax", _i(2))]),
    "resize_scales": lambda: _model(
        [oh.make_node("Resize", ["x", "", "sc"], ["y"])], [("x", F, ["N", 3, 8, 8])],
        [("sc", np.array([1, 1, 2, 2], np.float32))]),
    "expand": lambda: _model(
        [oh.make_node("Expand", ["x", "s"], ["y"])], [("x", F, ["N", 1, 5])], [("s", _i(4, 1))]),
    "split_num_outputs": lambda: _model(
        [oh.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2)], [("x", F, ["N", 6])]),
    "squeeze_input_axes": lambda: _model(
        [oh.make_node("Squeeze", ["x", "ax"], ["y"])], [("x", F, ["N", 1, 5])], [("ax", _i(1))]),
    "squeeze_without_axes": lambda: _model(
        [oh.make_node("Squeeze", ["x"], ["y"])], [("x", F, [1, 3, 1, 5])]),
    "unsqueeze_input_axes": lambda: _model(
        [oh.make_node("Unsqueeze", ["x", "ax"], ["y"])], [("x", F, ["N", 5])], [("ax", _i(0, -1))]),
    "reduce_mean_input_axes": lambda: _model(
        [oh.make_node("ReduceMean", ["x", "ax"], ["y"], keepdims=0)], [("x", F, ["N", 5, "S"])], [("ax", _i(1))]),
    "reduce_mean_attr_axes_opset13": lambda: _model(
        [oh.make_node("ReduceMean", ["x"], ["y"], axes=[-1])], [("x", F, ["N", 5, "S"])], opset=13),
    "gather_symbolic_indices": lambda: _model(
        [oh.make_node("Gather", ["x", "i"], ["y"], axis=1)], [("x", F, ["N", 5, "S"]), ("i", I64, ["B", "K"])]),
    "pad_input": lambda: _model(
        [oh.make_node("Pad", ["x", "p"], ["y"])], [("x", F, ["N", 3, 5])], [("p", _i(0, 0, 1, 0, 0, 2))]),
    "layer_norm_stats": lambda: _model(
        [oh.make_node("LayerNormalization", ["x", "s"], ["y", "m", "r"], axis=-1)], [("x", F, ["N", "S", 8])],
        [("s", _w(8))]),
    "layer_norm_float16_stats_at_stash_type": lambda: _model(
        [oh.make_node("LayerNormalization", ["x", "s"], ["y", "m", "r"], axis=1)], [("x", TP.FLOAT16, ["N", "S", 8])],
        [("s", np.ones(8, np.float16))], opset=17),
    "dropout_mask": lambda: _model(
        [oh.make_node("Dropout", ["x"], ["y", "mask"])], [("x", F, ["N", 4])], opset=13),
    "batch_norm": lambda: _model(
        [oh.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])], [("x", F, ["N", 8, "H", "W"])],
        [("s", _w(8)), ("b", _w(8)), ("m", _w(8)), ("v", np.ones(8, np.float32))]),
    "softmax": lambda: _model([oh.make_node("Softmax", ["x"], ["y"])], [("x", F, ["N", 8])]),
    "range_constant": lambda: _model(
        [oh.make_node("Range", ["a", "b", "c"], ["y"])], [],
        [("a", np.array(1, np.int64)), ("b", np.array(10, np.int64)), ("c", np.array(3, np.int64))]),
    "tile": lambda: _model([oh.make_node("Tile", ["x", "r"], ["y"])], [("x", F, ["N", 3])], [("r", _i(1, 2))]),
    "size": lambda: _model([oh.make_node("Size", ["x"], ["y"])], [("x", F, ["N", 3])]),
    "where_broadcast": lambda: _model(
        [oh.make_node("Where", ["c", "a", "b"], ["y"])],
        [("c", TP.BOOL, ["N", 1]), ("a", F, [1, 5]), ("b", F, ["N", 5])]),
    "cast_shape": lambda: _model(
        [oh.make_node("Shape", ["x"], ["s"]), oh.make_node("Cast", ["s"], ["y"], to=TP.INT32)], [("x", F, ["N", 3])]),
}



# Exporters' shape subgraphs (TorchScript with dynamic_axes, dynamo): x is float32[N, S, 64]; the
# value ``t`` computed from Shape(x) becomes the shape of y = ConstantOfShape(t) (or Reshape's target),
# so y's shape is what the registry propagated. Shape-inference asks onnx only about ops without a
# registry entry, so each of these must be at least as precise as onnx's data propagation.
def _shape_value_graph(nodes, inits=(), use="cos"):
    tail = [oh.make_node("ConstantOfShape", ["t"], ["y"])] if use == "cos" else [oh.make_node("Reshape", ["x", "t"], ["y"])]
    return _model([oh.make_node("Shape", ["x"], ["s"])] + nodes + tail, [("x", F, ["N", "S", 64])], inits)


SHAPE_VALUE_GRAPHS = {
    # entry-wise arithmetic: ints compute, a symbol survives where exact (N*1 = N, N+0 = N, N/1 = N)
    "shape_mul_entrywise": lambda: _shape_value_graph([oh.make_node("Mul", ["s", "k"], ["t"])], [("k", _i(1, 1, 2))]),
    "shape_add_entrywise": lambda: _shape_value_graph([oh.make_node("Add", ["s", "k"], ["t"])], [("k", _i(0, 0, 2))]),
    "shape_sub_entrywise": lambda: _shape_value_graph([oh.make_node("Sub", ["s", "k"], ["t"])], [("k", _i(0, 0, 2))]),
    "shape_div_entrywise": lambda: _shape_value_graph([oh.make_node("Div", ["s", "k"], ["t"])], [("k", _i(1, 1, 8))]),
    "shape_mul_symbol_by_symbol": lambda: _shape_value_graph([oh.make_node("Mul", ["s", "s"], ["t"])]),
    "shape_max_entrywise": lambda: _shape_value_graph([oh.make_node("Max", ["s", "k"], ["t"])], [("k", _i(1, 1, 1))]),
    "shape_mul_then_reshape": lambda: _shape_value_graph([oh.make_node("Mul", ["s", "k"], ["t"])], [("k", _i(1, 1, 1))],
                                                         use="reshape"),
    # the multi-head attention idiom: [seq, batch * heads, d / heads] with batch * heads unknown
    "shape_concat_with_unknown_entry": lambda: _shape_value_graph(
        [oh.make_node("Gather", ["s", "i1"], ["b"]), oh.make_node("Mul", ["b", "heads"], ["bh"]),
         oh.make_node("Gather", ["s", "i0"], ["n"]), oh.make_node("Unsqueeze", ["n", "ax"], ["nu"]),
         oh.make_node("Unsqueeze", ["bh", "ax"], ["bhu"]), oh.make_node("Concat", ["nu", "bhu", "hd"], ["t"], axis=0)],
        [("i0", np.array(0, np.int64)), ("i1", np.array(1, np.int64)), ("heads", np.array(4, np.int64)),
         ("ax", _i(0)), ("hd", _i(16))]),
    # int -> float -> int keeps the (symbolic) entries; int -> int too
    "shape_cast_float_and_back": lambda: _shape_value_graph(
        [oh.make_node("Cast", ["s"], ["f"], to=TP.FLOAT), oh.make_node("Cast", ["f"], ["t"], to=TP.INT64)]),
    "shape_cast_double_int32_back": lambda: _shape_value_graph(
        [oh.make_node("Cast", ["s"], ["f"], to=TP.DOUBLE), oh.make_node("Cast", ["f"], ["i"], to=TP.INT32),
         oh.make_node("Cast", ["i"], ["t"], to=TP.INT64)]),
    # Slice with bounds computed from the rank: s[0 : rank - 1]
    "shape_slice_computed_bounds": lambda: _shape_value_graph(
        [oh.make_node("Shape", ["s"], ["r"]), oh.make_node("Sub", ["r", "one"], ["e"]),
         oh.make_node("Slice", ["s", "z", "e"], ["t"])], [("one", _i(1)), ("z", _i(0))]),
    # where(shape == -1, 1, shape): a dim is never negative
    "shape_equal_where": lambda: _shape_value_graph(
        [oh.make_node("Equal", ["s", "m1"], ["e"]), oh.make_node("Where", ["e", "o", "s"], ["t"])],
        [("m1", _i(-1, -1, -1)), ("o", _i(1, 1, 1))]),
    "shape_expand_value": lambda: _shape_value_graph(
        [oh.make_node("Gather", ["s", "i2"], ["d"]), oh.make_node("Expand", ["d", "two"], ["t"])],
        [("i2", _i(2)), ("two", _i(2))]),
    "shape_mod_of_constants_in_slice": lambda: _shape_value_graph(
        [oh.make_node("Mod", ["a", "b"], ["m"]), oh.make_node("Slice", ["s", "z", "m"], ["t"])],
        [("a", _i(-1)), ("b", _i(3)), ("z", _i(0))]),
}
# onnx leaves the rank of the Mod case unknown, which the comparison with onnx cannot take: that one
# is checked against ONNX Runtime alone (test_shape_value_propagation_through_exporter_idioms).
SYMBOLIC_GRAPHS.update({k: v for k, v in SHAPE_VALUE_GRAPHS.items() if k != "shape_mod_of_constants_in_slice"})

# Two bindings of the symbols for the ONNX Runtime check (different values, so a dim that
# tracks a symbol and one that is a constant cannot be confused).
BINDINGS = ({"N": 2, "H": 10, "W": 12, "S": 7, "T": 3, "M": 4, "B": 2, "K": 3},
            {"N": 3, "H": 9, "W": 16, "S": 5, "T": 6, "M": 1, "B": 1, "K": 4})


def _onnx_types(model: onnx.ModelProto) -> dict[str, tuple[int, tuple | None]]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        shape = None
        if tt.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value")
                          else (None if not d.HasField("dim_param") or d.dim_param.startswith("unk__") else d.dim_param)
                          for d in tt.shape.dim)
        out[vi.name] = (tt.elem_type, shape)
    return out


def _ort_shapes(model: onnx.ModelProto, binding: dict[str, int]) -> dict[str, tuple[int, ...]]:
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    feeds = {}
    for vi in model.graph.input:
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else binding[d.dim_param] for d in tt.shape.dim]
        if tt.elem_type == TP.BOOL:
            feeds[vi.name] = rng.random(shape) > 0.5
        elif tt.elem_type == TP.INT64:
            feeds[vi.name] = np.zeros(shape, np.int64)
        else:
            feeds[vi.name] = rng.standard_normal(shape).astype(oh.tensor_dtype_to_np_dtype(tt.elem_type))
    typed = onnx.shape_inference.infer_shapes(model)  # ORT wants the outputs' element types declared
    sess = ort.InferenceSession(typed.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return {n: tuple(a.shape) for n, a in zip(names, sess.run(names, feeds))}


def _ours(model: onnx.ModelProto) -> dict[str, TensorType]:
    g, _ = _erase_and_infer(model)
    return {v.name: v.type for n in g.nodes for v in n.outputs if v is not None}


def _size(d, binding: dict):
    """A dim under a binding of the symbols: a symbol's size, or a size expression's (``M + N``) by arithmetic."""
    return eval(d, {"__builtins__": {}}, dict(binding)) if isinstance(d, str) else d


@pytest.mark.parametrize("name", sorted(SYMBOLIC_GRAPHS))
def test_symbolic_shapes_match_onnx_shape_inference(name: str) -> None:
    model = SYMBOLIC_GRAPHS[name]()
    onnx_types = _onnx_types(model)
    ours = _ours(model)
    executed = [_ort_shapes(model, b) for b in BINDINGS]
    for vname, t in ours.items():
        assert isinstance(t, TensorType) and t.shape is not None, f"{name}: %{vname} not inferred"
        o_dtype, o_shape = onnx_types[vname]
        assert int(t.dtype) == o_dtype, f"{name}: %{vname} dtype {t.dtype.name} vs onnx {o_dtype}"
        assert o_shape is not None and len(t.shape) == len(o_shape), f"{name}: %{vname} {t.shape} vs onnx {o_shape}"
        for k, (ours_d, onnx_d) in enumerate(zip(t.shape, o_shape)):
            if onnx_d is not None:
                assert ours_d == onnx_d, f"{name}: %{vname} dim {k}: ours {ours_d}, onnx {onnx_d}"
            elif ours_d is not None:  # we claim more than onnx: execution must agree under both bindings
                for b, shapes in zip(BINDINGS, executed):
                    want = shapes[vname][k]
                    got = _size(ours_d, b)
                    assert got == want, f"{name}: %{vname} dim {k} = {ours_d} but ORT gives {want} for {b}"
        for b, shapes in zip(BINDINGS, executed):  # and every dim agrees with execution anyway
            run = shapes[vname]
            mine = tuple(_size(d, b) for d in t.shape)
            assert all(m is None or m == r for m, r in zip(mine, run)), f"{name}: %{vname} {t.shape} vs ORT {run}"


def test_symbolic_refinements_over_onnx_are_the_expected_ones() -> None:
    """Where we are more precise than onnx, it is for the reasons the ops' docstrings give
    (symbols cancel in Reshape's -1, identity windows keep H/W, a whole slice keeps its dim);
    pinned so that a regression to onnx's 'unknown' is noticed."""
    expect = {
        ("conv_same_symbolic_hw", "y"): ("N", 8, "H", "W"),  # floor((H + 2 - 3) / 1) + 1 = H
        ("conv_grouped_same_lower", "y"): ("N", 8, "H", "W"),  # SAME, stride 1: ceil(H / 1) = H
        ("reshape_minus_one_over_symbol", "y"): (None, 16),  # N*48/16 = 3N: not a single symbol
        ("reshape_minus_one_to_symbol", "y"): (12, "N"),  # N*3*4 / 12 = N
        ("shape_gather_concat_reshape", "y"): ("N", 48),  # N*3*4*4 / N
        ("slice_whole_symbolic_axis", "y"): ("N", 3, "H"),  # [0 : INT64_MAX] of H
        ("resize_scales", "y"): ("N", 3, 16, 16),  # scale 1 on the batch axis
        ("tile", "y"): ("N", 6),  # repeat 1 on the batch axis
        ("concat_on_symbolic_axis", "y"): ("M + N", 3),  # a size expression (a KV cache's P + S)
    }
    for (name, vname), shape in expect.items():
        assert _ours(SYMBOLIC_GRAPHS[name]())[vname].shape == shape, (name, vname)


# What the registry makes of each exporter idiom above: equal to onnx's data propagation where onnx
# knows the dim, and where it does not, the value ONNX Runtime executes (both checked by
# test_symbolic_shapes_match_onnx_shape_inference); pinned so that losing a rule is noticed.
SHAPE_VALUE_EXPECTED = {
    "shape_mul_entrywise": ("N", "S", 128),  # onnx: (?, ?, 128)
    "shape_add_entrywise": ("N", "S", 66),  # onnx: (?, ?, 66)
    "shape_sub_entrywise": ("N", "S", 62),  # onnx: (?, ?, 62)
    "shape_div_entrywise": ("N", "S", 8),  # onnx: (?, ?, ?)
    "shape_mul_symbol_by_symbol": (None, None, 4096),  # N*N is no symbol; onnx the same
    "shape_max_entrywise": (None, None, 64),  # max(N, 1) is not N when N = 0; onnx: (?, ?, ?)
    "shape_mul_then_reshape": ("N", "S", 64),  # onnx: (?, ?, 64)
    "shape_concat_with_unknown_entry": ("N", None, 16),  # onnx the same
    "shape_cast_float_and_back": ("N", "S", 64),  # onnx the same
    "shape_cast_double_int32_back": ("N", "S", 64),  # onnx the same
    "shape_slice_computed_bounds": ("N", "S"),  # onnx the same
    "shape_equal_where": ("N", "S", 64),  # onnx: (?, ?, ?)
    "shape_expand_value": (64, 64),  # onnx: (?, ?)
    "shape_mod_of_constants_in_slice": ("N", "S"),  # -1 mod 3 = 2 (sign of the divisor); onnx: rank 1, (?)
}


@pytest.mark.parametrize("name", sorted(SHAPE_VALUE_GRAPHS))
def test_shape_value_propagation_through_exporter_idioms(name: str) -> None:
    model = SHAPE_VALUE_GRAPHS[name]()
    got = _ours(model)["y"].shape
    assert got == SHAPE_VALUE_EXPECTED[name]
    for b in BINDINGS:  # and ONNX Runtime executes that shape under both bindings of N and S
        run = _ort_shapes(model, b)["y"]
        assert all(d is None or (b[d] if isinstance(d, str) else d) == r for d, r in zip(got, run)), (b, got, run)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("length, kernel, stride", [(2, 3, 2), (2, 3, 3), (2, 4, 3), (3, 5, 2)])
def test_a_ceil_mode_window_longer_than_its_input(op: str, length: int, kernel: int, stride: int) -> None:
    """With ceil_mode, ceil((2 - 3) / 2) + 1 = 1 window: 0 was inferred whenever the kernel outran the input, and
    gather-shape folded Shape(pool)[2] to 0, so optimize's model returned nothing (an outside check's fuzzer).
    Reference: ONNX Runtime's executed shape (and onnx's reference evaluator, which agrees)."""
    from onnx.reference import ReferenceEvaluator

    model = _model([oh.make_node(op, ["x"], ["y"], kernel_shape=[kernel], strides=[stride], ceil_mode=1)],
                   [("x", F, [1, 3, length])])
    executed = _ort_shapes(model, {})["y"]
    x = np.zeros((1, 3, length), np.float32)
    assert ReferenceEvaluator(model).run(None, {"x": x})[0].shape == executed
    assert _ours(model)["y"].shape == executed


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_a_floor_mode_window_past_its_input_by_less_than_a_stride_is_unknown(op: str) -> None:
    """Length 1, kernel 2, stride 2: the spec's floor((1 - 2) / 2) + 1 is 0, ONNX Runtime runs 1 window (it
    truncates toward zero), and gather-shape folded Shape(pool)[2] to 0 (an outside check). Neither figure is
    claimed. Reference: ONNX Runtime's executed shape, and the spec's formula by hand."""
    model = _model([oh.make_node(op, ["x"], ["y"], kernel_shape=[2], strides=[2])], [("x", F, [1, 1, 1])])
    assert _ort_shapes(model, {})["y"] == (1, 1, 1) and (1 - 2) // 2 + 1 == 0
    assert _ours(model)["y"].shape == (1, 1, None)
    past = _model([oh.make_node(op, ["x"], ["y"], kernel_shape=[3], strides=[1])], [("x", F, [1, 1, 2])])
    assert _ours(past)["y"].shape == (1, 1, 0)  # past it by a whole stride: both say 0


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum"])
def test_a_noop_reduce_still_applies_its_elementwise_step_to_shape_values(op: str) -> None:
    """noop_with_empty_axes skips the reduction only: ReduceSumSquare still squares (the schema says so), and the
    identity was carried, so Shape [3] through it held 3 where ONNX Runtime computes 9, and optimize refused the
    valid model as ill-typed (an outside check's fuzzer). Reference: ONNX Runtime's executed shape of a
    ConstantOfShape of the result's |value| (of -3, or 3 where the op takes logs)."""
    model = _model([oh.make_node("Shape", ["x"], ["s"]), oh.make_node("Concat", ["s", "k"], ["c"], axis=0),
                    oh.make_node(op, ["c", "e"], ["r"], noop_with_empty_axes=1),
                    oh.make_node("Abs", ["r"], ["a"]), oh.make_node("ConstantOfShape", ["a"], ["y"])]
                   if op not in ("ReduceL2", "ReduceLogSum") else  # float-only ops: through a Cast
                   [oh.make_node("Shape", ["x"], ["s"]), oh.make_node("Concat", ["s", "k"], ["c"], axis=0),
                    oh.make_node("Cast", ["c"], ["f"], to=TP.FLOAT),
                    oh.make_node(op, ["f", "e"], ["r"], noop_with_empty_axes=1),
                    oh.make_node("Cast", ["r"], ["ri"], to=TP.INT64),
                    oh.make_node("Abs", ["ri"], ["a"]), oh.make_node("ConstantOfShape", ["a"], ["y"])],
                   [("x", F, [3])], [("k", _i(3 if op in ("ReduceL2", "ReduceLogSum") else -3)),
                                     ("e", np.zeros(0, np.int64))])
    executed = _ort_shapes(model, {})["y"]
    assert all(d is None or d == e for d, e in zip(_ours(model)["y"].shape, executed)), (_ours(model)["y"], executed)
    if op == "ReduceL1":  # |-3| seen through a Concat that keeps the sign of what it is given (the Abs above hides it)
        signed = _model([oh.make_node("Shape", ["x"], ["s"]), oh.make_node("Concat", ["s", "k"], ["c"], axis=0),
                         oh.make_node(op, ["c", "e"], ["r"], noop_with_empty_axes=1),
                         oh.make_node("Slice", ["r", "one", "two"], ["last"]),
                         oh.make_node("ConstantOfShape", ["last"], ["y"])],
                        [("x", F, [3])], [("k", _i(-3)), ("e", np.zeros(0, np.int64)), ("one", _i(1)), ("two", _i(2))])
        assert _ort_shapes(signed, {})["y"] == (3,) and _ours(signed)["y"].shape in ((3,), (None,))


def test_shape_values_cast_to_float16_keep_only_exact_entries() -> None:
    """float16 holds integers exactly up to 2048 only (IEEE 754 half: 11 significant bits), so a
    symbolic dim cast to float16 and back is unknown and so is 4097, while 64 and 2048 stay: the
    reference is the format's definition, checked with numpy's float16."""
    assert float(np.float16(4097)) != 4097 and float(np.float16(2048)) == 2048
    model = _model([oh.make_node("Shape", ["x"], ["s"]), oh.make_node("Concat", ["s", "k"], ["c"], axis=0),
                    oh.make_node("Cast", ["c"], ["f"], to=TP.FLOAT16), oh.make_node("Cast", ["f"], ["t"], to=TP.INT64),
                    oh.make_node("ConstantOfShape", ["t"], ["y"])],
                   [("x", F, ["N", 64])], [("k", _i(2048, 4097))])
    assert _ours(model)["y"].shape == (None, 64, 2048, None)


def test_value_propagation_resolves_exporter_shape_chains_to_static() -> None:
    """With a static input the same exporter idioms give fully static shapes, as ONNX Runtime's
    executed shapes confirm (the reference here is execution, not onnx's inference)."""
    for make, fix in ((_chain_reshape, {"N": 2}), (_chain_div, {"N": 3})):
        model = make()
        for d in model.graph.input[0].type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.dim_value = fix[d.dim_param]
        ours = _ours(model)
        run = _ort_shapes(model, {})
        for vname, shape in run.items():
            assert ours[vname].shape == shape, (vname, ours[vname], shape)


# -- opset forms: attributes that became inputs -------------------------------------------------


@pytest.mark.parametrize("x_shape,attr_form,input_form", [
    # input shape, then (op, opset, attrs, {input index: constant}) in the attribute and the input form
    ([1, 6, 8, 8], ("ReduceMean", 13, {"axes": [1], "keepdims": 0}, {}),
     ("ReduceMean", 18, {"keepdims": 0}, {1: _i(1)})),
    ([1, 6, 8, 8], ("ReduceSum", 11, {"axes": [0, 2]}, {}), ("ReduceSum", 13, {}, {1: _i(0, 2)})),
    ([1, 6, 8, 8], ("Split", 11, {"axis": 1, "split": [2, 4]}, {}), ("Split", 13, {"axis": 1}, {1: _i(2, 4)})),
    ([1, 6, 8, 1], ("Squeeze", 11, {"axes": [0, -1]}, {}), ("Squeeze", 13, {}, {1: _i(0, -1)})),
    ([1, 6, 8, 8], ("Unsqueeze", 11, {"axes": [0, 3]}, {}), ("Unsqueeze", 13, {}, {1: _i(0, 3)})),
    ([1, 6, 8], ("Pad", 2, {"pads": [0, 1, 2, 0, 3, 4]}, {}), ("Pad", 11, {}, {1: _i(0, 1, 2, 0, 3, 4)})),
    ([1, 6, 8, 8], ("Slice", 1, {"starts": [1], "ends": [5], "axes": [2]}, {}),
     ("Slice", 13, {}, {1: _i(1), 2: _i(5), 3: _i(2)})),
    ([1, 6, 8, 8], ("Clip", 6, {"min": 0.0, "max": 6.0}, {}),
     ("Clip", 13, {}, {1: np.array(0, np.float32), 2: np.array(6, np.float32)})),
    ([1, 6, 8, 8], ("Upsample", 7, {"scales": [1.0, 1.0, 2.0, 2.0]}, {}),
     ("Resize", 13, {}, {2: np.array([1, 1, 2, 2], np.float32)})),
    ([1, 6, 8, 8], ("Resize", 10, {}, {1: np.array([1, 1, 0.5, 2], np.float32)}),
     ("Resize", 18, {"axes": [2, 3]}, {2: np.array([0.5, 2], np.float32)})),
])
def test_attribute_and_input_forms_agree_with_onnx(x_shape, attr_form, input_form) -> None:
    """Both spellings of the same op give the same shape, and it is the one onnx infers for each."""
    shapes = []
    for op, opset, attrs, extra in (attr_form, input_form):
        names = ["x"] + [f"in{i}" if i in extra else "" for i in range(1, max(extra, default=0) + 1)]
        outs = ["a", "b"] if op == "Split" else ["y"]
        model = _model([oh.make_node(op, names, outs, **attrs)], [("x", F, x_shape)],
                       [(f"in{i}", v) for i, v in extra.items()], opset=opset)
        ours = _ours(model)
        ref = _onnx_types(model)
        for o in outs:
            assert ours[o].shape == ref[o][1], (op, opset, o, ours[o].shape, ref[o][1])
        shapes.append(tuple(ours[o].shape for o in outs))
    assert shapes[0] == shapes[1]


_CONSTANT_ATTRS = {
    "value": numpy_helper.from_array(np.zeros((2, 3), np.float16)),
    "value_float": 1.5,
    "value_floats": [1.0, 2.0],
    "value_int": 3,
    "value_ints": [1, 2, 3],
    "value_string": "ab",
    "value_strings": ["a", "b"],
    "sparse_value": oh.make_sparse_tensor(numpy_helper.from_array(np.array([1.0, 2.0], np.float32)),
                                          numpy_helper.from_array(np.array([1, 5], np.int64)), [2, 3]),
}


@pytest.mark.parametrize("attr", sorted(_CONSTANT_ATTRS))
def test_constant_value_attributes(attr: str) -> None:
    """Each of Constant's value* attributes gives the type onnx infers and ONNX Runtime produces
    (ORT hands back sparse constants as sparse objects, so that one is checked against onnx only)."""
    model = _model([oh.make_node("Constant", [], ["y"], **{attr: _CONSTANT_ATTRS[attr]})], [], opset=13)
    ours = _ours(model)["y"]
    assert (int(ours.dtype), ours.shape) == _onnx_types(model)["y"]
    if attr != "sparse_value":
        import onnxruntime as ort

        typed = onnx.shape_inference.infer_shapes(model)
        (out,) = ort.InferenceSession(typed.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {})
        assert (ours.dtype, ours.shape) == (_expected_dtype(out), out.shape)


def test_batch_norm_opset9_statistics_outputs() -> None:
    """BatchNormalization-9 (training) has five outputs: Y like X and mean, var, saved_mean,
    saved_var, each 1-D of size C (the opset-9 operator spec; onnx's own inference leaves them
    untyped and ONNX Runtime does not run this form, so the spec text is the reference)."""
    w = np.ones(8, np.float32)
    model = _model([oh.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv", "sm", "sv"])],
                   [("x", F, ["N", 8, 3])], [(n, w) for n in "sbmv"], opset=9)
    ours = _ours(model)
    assert ours["y"] == TensorType(DataType.FLOAT, ("N", 8, 3))
    for o in ("rm", "rv", "sm", "sv"):
        assert ours[o] == TensorType(DataType.FLOAT, (8,)), o


# -- value propagation, op by op ------------------------------------------------------------------

_N = oh.make_node
# Each chain turns x: float32[2, 3, 4, 5] into an int64 1-D value t through the op under test;
# ConstantOfShape(t) then has a static shape only if the op propagated t's value.
VALUE_CHAINS = {
    "Shape": [_N("Shape", ["x"], ["t"], start=1)],
    "Size": [_N("Size", ["x"], ["n"]), _N("Unsqueeze", ["n", "ax0"], ["t"])],
    "Gather": [_N("Shape", ["x"], ["s"]), _N("Gather", ["s", "idx"], ["t"])],
    "Concat": [_N("Shape", ["x"], ["s"]), _N("Concat", ["s", "c2"], ["t"], axis=0)],
    "Unsqueeze": [_N("Shape", ["x"], ["s"]), _N("Gather", ["s", "i0"], ["n"]), _N("Unsqueeze", ["n", "ax0"], ["t"])],
    "Squeeze": [_N("Shape", ["x"], ["s"]), _N("Unsqueeze", ["s", "ax0"], ["u"]), _N("Squeeze", ["u", "ax0"], ["t"])],
    "Slice": [_N("Shape", ["x"], ["s"]), _N("Slice", ["s", "st", "en"], ["t"])],
    "Cast": [_N("Shape", ["x"], ["s"]), _N("Cast", ["s"], ["s32"], to=TP.INT32), _N("Cast", ["s32"], ["t"], to=TP.INT64)],
    "Constant": [_N("Constant", [], ["t"], value_ints=[3, 2])],
    "ConstantOfShape": [_N("ConstantOfShape", ["c2"], ["t"], value=numpy_helper.from_array(np.array([3], np.int64)))],
    "Reshape": [_N("Shape", ["x"], ["s"]), _N("Reshape", ["s", "c22"], ["m"]), _N("Reshape", ["m", "m1"], ["t"])],
    "Range": [_N("Range", ["i0", "c3", "i1"], ["r"]), _N("Shape", ["x"], ["s"]), _N("Gather", ["s", "r"], ["t"])],
    "Add": [_N("Shape", ["x"], ["s"]), _N("Add", ["s", "i1"], ["t"])],
    "Sub": [_N("Shape", ["x"], ["s"]), _N("Sub", ["s", "i1"], ["t"])],
    "Mul": [_N("Shape", ["x"], ["s"]), _N("Mul", ["s", "i1"], ["m"]), _N("Mul", ["m", "c2x"], ["t"])],
    "Div": [_N("Shape", ["x"], ["s"]), _N("Div", ["s", "c2"], ["t"])],
    "Neg": [_N("Shape", ["x"], ["s"]), _N("Neg", ["s"], ["m"]), _N("Neg", ["m"], ["t"])],
    "Max": [_N("Shape", ["x"], ["s"]), _N("Max", ["s", "c3"], ["t"])],
    "Identity": [_N("Shape", ["x"], ["s"]), _N("Identity", ["s"], ["t"])],
    "Split": [_N("Shape", ["x"], ["s"]), _N("Split", ["s"], ["t", "rest"], axis=0, num_outputs=2)],
    "ReduceProd": [_N("Shape", ["x"], ["s"]), _N("ReduceProd", ["s"], ["t"], keepdims=1)],
}
_CHAIN_CONSTANTS = [("ax0", _i(0)), ("idx", _i(3, 1)), ("i0", np.array(0, np.int64)), ("i1", np.array(1, np.int64)),
                    ("c2", _i(2)), ("c2x", _i(2)), ("c3", np.array(3, np.int64)), ("c22", _i(2, 2)), ("m1", _i(-1)),
                    ("st", _i(1)), ("en", _i(3))]


@pytest.mark.parametrize("op", sorted(VALUE_CHAINS))
def test_value_propagation_through(op: str) -> None:
    """ConstantOfShape(t) is static only if ``op`` propagated t; ONNX Runtime's executed shape is
    the reference."""
    nodes = VALUE_CHAINS[op] + [_N("ConstantOfShape", ["t"], ["y"])]
    used = {i for n in nodes for i in n.input}
    model = _model(nodes, [("x", F, [2, 3, 4, 5])], [(n, v) for n, v in _CHAIN_CONSTANTS if n in used])
    model.graph.ClearField("output")
    model.graph.output.append(oh.make_tensor_value_info("y", TP.UNDEFINED, None))
    want = _ort_shapes(model, {})["y"]
    assert _ours(model)["y"].shape == want


def test_split_into_more_parts_than_fit_has_unknown_sizes() -> None:
    """Split of 5 elements into num_outputs=4: ceil(5/4) = 2 each leaves -1 for the last, which inference gave
    and `save` then refused as a declared -1, making the onnx corpus's affine_grid_3d_expanded (where such a
    Split sits in an If branch no run takes) unsavable (an outside check). References: ONNX Runtime refuses to
    run it ("negative final split"), onnx's reference evaluator gives 2, 2, 1, 0: no size is agreed, so none is
    inferred."""
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    from graphmill.frontend import from_proto
    from graphmill.frontend.onnx_shape_inference import infer_shapes

    g = oh.make_graph([oh.make_node("Split", ["x"], list("abcd"), axis=0, num_outputs=4)], "g",
                      [oh.make_tensor_value_info("x", I64, [5])],
                      [oh.make_tensor_value_info(o, I64, None) for o in "abcd"])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)])
    x = np.arange(5, dtype=np.int64)
    with pytest.raises(Exception, match="negative final split"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert [len(o) for o in ReferenceEvaluator(model).run(None, {"x": x})] == [2, 2, 1, 0]
    g = from_proto(model, path="split.onnx")
    infer_shapes(g)
    assert [n.outputs[k].type.shape for n in g.nodes for k in range(4)] == [(None,)] * 4


@pytest.mark.parametrize("dead_nodes, inits", [
    ([oh.make_node("ConvTranspose", ["x", "w"], ["z"], pads=[3, 3, 3, 3])], [("w", np.ones((1, 1, 2, 2), np.float32))]),
    ([oh.make_node("TopK", ["x", "k"], ["z", "ix"])], [("k", _i(-1))]),
    ([oh.make_node("Resize", ["x", "", "", "s"], ["z"])], [("s", _i(1, 1, -2, 2))]),
    ([oh.make_node("Split", ["x", "sp"], ["z", "b"], axis=2)], [("sp", _i(4, -2))]),
])
def test_a_negative_size_in_a_branch_no_run_takes_is_unknown_and_the_model_saves(dead_nodes, inits) -> None:
    """Sizes no run can take, in an If's else branch while the model always takes the other: graphmill's inference
    computed a negative size and `optimize` then refused to save a model ONNX Runtime runs, blaming a size the
    file "declares" (a review, after the Split fix above). References: ONNX Runtime runs the original (asserted);
    the optimized model, through save's checks (`writable`), gives ONNX Runtime's output of the original."""
    import onnxruntime as ort

    import graphmill
    from graphmill.frontend import from_proto, to_proto
    from graphmill.frontend.onnx_io import writable

    then_g = oh.make_graph([oh.make_node("Relu", ["x"], ["t"])], "then", [], [oh.make_tensor_value_info("t", F, None)])
    else_g = oh.make_graph(dead_nodes, "else", [], [oh.make_tensor_value_info("z", F, None)],
                           initializer=[numpy_helper.from_array(v, n) for n, v in inits])
    g = oh.make_graph([oh.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], "g",
                      [oh.make_tensor_value_info("c", TP.BOOL, []), oh.make_tensor_value_info("x", F, [1, 1, 2, 2])],
                      [oh.make_tensor_value_info("y", F, None)])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)])
    model.ir_version = 8
    feed = {"c": np.array(True), "x": np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2) - 1.5}

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]

    expected = run(model)
    graph = from_proto(model, path="dead.onnx")
    graphmill.optimize(graph)
    got = run(to_proto(writable(graph, "dead.onnx")))
    np.testing.assert_array_equal(got, expected)


def test_a_negative_size_on_a_node_that_runs_is_a_problem_inspect_lists() -> None:
    """Taken as unknown (above), a TopK with k=-1 in the main graph was silent: inspect showed "?" where it had
    shown [-1] (a review). Reference: ONNX Runtime refuses to run the node (asserted)."""
    import onnxruntime as ort

    from graphmill.frontend import from_proto
    from graphmill.frontend.onnx_shape_inference import infer_shapes
    from graphmill.ir import ShapeInferenceError
    from graphmill.ir.ops import infer_types

    g = oh.make_graph([oh.make_node("TopK", ["x", "k"], ["v", "i"], name="top")], "g",
                      [oh.make_tensor_value_info("x", F, [2, 4])],
                      [oh.make_tensor_value_info("v", F, None), oh.make_tensor_value_info("i", I64, None)],
                      initializer=[numpy_helper.from_array(_i(-1), "k")])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)])
    with pytest.raises(Exception):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": np.zeros((2, 4), np.float32)})
    report = infer_shapes(from_proto(model, path="top.onnx"))
    assert any("TopK node 'top'" in e and "which no run can have" in e for e in report.errors), report.errors
    with pytest.raises(ShapeInferenceError, match="which no run can have"):
        infer_types(from_proto(model, path="top.onnx"), strict=True)


def test_resize_sizes_from_scales_as_onnxruntime_computes_them():
    """floor(3 x float32(5/3)) is 5 in float32, where ONNX Runtime multiplies, and 4 in float64 (onnx's reference):
    inference declared 4 against ONNX Runtime's 5 (a review); a NaN or infinite scale is refused as ONNX Runtime
    refuses it, not with float's own error. Reference: ONNX Runtime's output shape and its refusal."""
    import onnxruntime as ort

    def model(scale):
        g = oh.make_graph([oh.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest")], "r",
                          [oh.make_tensor_value_info("x", TP.FLOAT, [1, 1, 4, 3])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                          [numpy_helper.from_array(np.array([1, 1, 1, scale], np.float32), "s")])
        return oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)])

    m = model(np.float32(5 / 3))
    got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.zeros((1, 1, 4, 3), np.float32)})[0].shape
    g = from_proto(m)
    infer_types(g)
    assert tuple(g.outputs[0].type.shape) == got == (1, 1, 4, 5)
    for bad in (np.nan, np.inf):
        g = from_proto(model(bad))
        with pytest.raises(ShapeInferenceError, match=f"scale {bad} must be finite"):
            infer_types(g, strict=True)
