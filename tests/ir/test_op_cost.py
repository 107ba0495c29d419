"""Op costs (MACs, flops, bytes) against references computed outside graphmill.

- MACs of Conv / ConvTranspose / Gemm / MatMul: the published formula evaluated here with
  the layer sizes written out, published per-layer and whole-network numbers (ResNet-50's
  stem, MobileNet's depthwise layers and its 569M mult-adds), and ONNX Runtime: with all-ones
  inputs and weights and no padding, every output element of these ops is the count of its
  multiply-accumulates, so the sum of the executed output *is* the MAC count.
- Bytes: the ONNX node-test corpus's own input and expected output arrays (their nbytes).
- ``known=False`` whenever a shape is symbolic or missing, never a guess.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper

from graphmill.frontend import from_proto
from graphmill.ir import DataType, TensorType
from graphmill.ir.ops import infer_types, lookup, registered_ops

MAC_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "QLinearConv", "MatMulInteger",
           "QLinearMatMul", "LSTM", "GRU", "RNN", "Einsum"}


def _graph(nodes, inputs, inits=(), opset=18):
    """Build with onnx.helper, import, infer; returns the graph."""
    outs = [o for n in nodes for o in n.output if o]
    g = oh.make_graph(nodes, "g", [oh.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                      [oh.make_tensor_value_info(o, TP.UNDEFINED, None) for o in outs[-1:]],
                      initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in inits])
    graph = from_proto(oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)]))
    infer_types(graph, strict=True)
    return graph


def _cost(node):
    return lookup(node.domain, node.op_type).cost(node)


def _ones(*shape):
    return np.ones(shape, np.float32)


def _conv(x_shape, w_shape, **attrs):
    return _graph([oh.make_node("Conv", ["x", "w"], ["y"], **attrs)], [("x", TP.FLOAT, x_shape)],
                  [("w", _ones(*w_shape))])


def _conv_t(x_shape, w_shape, **attrs):
    return _graph([oh.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)], [("x", TP.FLOAT, x_shape)],
                  [("w", _ones(*w_shape))])


def _matmul(a, b):
    return _graph([oh.make_node("MatMul", ["a", "b"], ["y"])], [("a", TP.FLOAT, a), ("b", TP.FLOAT, b)])


def _einsum(equation, a, b):
    return _graph([oh.make_node("Einsum", ["a", "b"], ["y"], equation=equation)],
                  [("a", TP.FLOAT, a), ("b", TP.FLOAT, b)], opset=12)


def _gemm(a, b, **attrs):
    return _graph([oh.make_node("Gemm", ["a", "b"], ["y"], **attrs)], [("a", TP.FLOAT, a), ("b", TP.FLOAT, b)])


# -- MACs from the published formula, sizes written out --------------------------------------------

FORMULA_CASES = {
    # ResNet-50 conv1: 7x7/2, 3 -> 64, 224x224 -> 112x112.  N*Cout*Hout*Wout*(Cin/g)*Kh*Kw
    "resnet50_conv1": (lambda: _conv([1, 3, 224, 224], [64, 3, 7, 7], strides=[2, 2], pads=[3, 3, 3, 3]),
                       1 * 64 * 112 * 112 * 3 * 7 * 7, 118_013_952),
    # ResNeXt-50 32x4d stage-2 grouped 3x3: 128 -> 128 in 32 groups of 4 channels, 56x56.
    "resnext_grouped_3x3": (lambda: _conv([1, 128, 56, 56], [128, 4, 3, 3], group=32, pads=[1, 1, 1, 1]),
                            1 * 128 * 56 * 56 * 4 * 3 * 3, 14_450_688),
    # MobileNet v1 first depthwise layer: 3x3 dw over 32 channels at 112x112 = Dk*Dk*M*Df*Df.
    "mobilenet_depthwise": (lambda: _conv([1, 32, 112, 112], [32, 1, 3, 3], group=32, pads=[1, 1, 1, 1]),
                            3 * 3 * 32 * 112 * 112, 3_612_672),
    # ... and the pointwise layer after it: M*N*Df*Df = 32*64*112*112.
    "mobilenet_pointwise": (lambda: _conv([1, 32, 112, 112], [64, 32, 1, 1]), 32 * 64 * 112 * 112, 25_690_112),
    # Batch 8, SAME_UPPER stride 2 (out 28x28), 64 -> 128.
    "batch8_same_upper_s2": (lambda: _conv([8, 64, 56, 56], [128, 64, 3, 3], auto_pad="SAME_UPPER", strides=[2, 2]),
                             8 * 128 * 28 * 28 * 64 * 3 * 3, 462_422_016),
    # 1-D conv, dilation 2: L_out = 100 - 2*(5-1) = 92.
    "conv1d_dilated": (lambda: _conv([2, 16, 100], [32, 16, 5], dilations=[2]), 2 * 32 * 92 * 16 * 5, 471_040),
    # 3-D conv (C3D-style 3x3x3, 3 -> 64 at 16x112x112, pads 1): output 16x112x112.
    "conv3d_c3d_conv1": (lambda: _conv([1, 3, 16, 112, 112], [64, 3, 3, 3, 3], pads=[1, 1, 1, 1, 1, 1]),
                         64 * 16 * 112 * 112 * 3 * 27, 1_040_449_536),
    # ConvTranspose: N*Cin*Hin*Win*(Cout/g)*Kh*Kw. DCGAN-like 4x4/2 upsampling 512 -> 256 at 8x8.
    "convtranspose_dcgan": (lambda: _conv_t([1, 512, 8, 8], [512, 256, 4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
                            1 * 512 * 8 * 8 * 256 * 4 * 4, 134_217_728),
    # Grouped ConvTranspose: 4 -> 6 channels in 2 groups (W is [Cin, Cout/g, k, k]).
    "convtranspose_grouped": (lambda: _conv_t([2, 4, 5, 6], [4, 3, 3, 3], group=2, strides=[2, 2],
                                              output_padding=[1, 1]), 2 * 4 * 5 * 6 * 3 * 3 * 3, 6_480),
    # Gemm: AlexNet fc6, 9216 -> 4096 with the weight stored [N, K] (transB). M*N*K.
    "gemm_alexnet_fc6": (lambda: _gemm([1, 9216], [4096, 9216], transB=1), 1 * 4096 * 9216, 37_748_736),
    "gemm_transA": (lambda: _gemm([64, 8], [64, 10], transA=1), 8 * 10 * 64, 5_120),
    # MatMul: BERT-base attention scores Q K^T, 12 heads, seq 128, head dim 64. batch*M*N*K.
    "matmul_bert_qk": (lambda: _matmul([1, 12, 128, 64], [1, 12, 64, 128]), 12 * 128 * 128 * 64, 12_582_912),
    "matmul_broadcast_batch": (lambda: _matmul([4, 1, 8, 16], [3, 16, 5]), (4 * 3) * 8 * 5 * 16, 7_680),
    # 1-D operands (numpy matmul): a dot product is K MACs; vector @ batched matrix is B*N*K; ...
    "matmul_dot_1d": (lambda: _matmul([64], [64]), 64, 64),
    "matmul_vec_mat_batched": (lambda: _matmul([16], [3, 16, 5]), 3 * 5 * 16, 240),
    "matmul_mat_vec_batched": (lambda: _matmul([3, 7, 16], [16]), 3 * 7 * 16, 336),
}


@pytest.mark.parametrize("name", sorted(FORMULA_CASES))
def test_macs_match_published_formula(name: str) -> None:
    make, formula, literal = FORMULA_CASES[name]
    assert formula == literal  # the sizes above and the number quoted agree
    g = make()
    (node,) = g.nodes
    c = _cost(node)
    assert c.known
    assert c.macs == literal
    assert c.flops >= 2 * c.macs  # a MAC is a multiply and an add


def test_mobilenet_v1_total_is_569_million_mult_adds() -> None:
    """MobileNet v1 (224, width 1.0) has 569 million mult-adds (Howard et al. 2017, Table 2): the sum
    over its 27 convolutions and the classifier, built here from the paper's Table 1."""
    nodes, inits = [], []
    cur, c_in = "x", 3

    def conv(c_out, k, stride, group):
        nonlocal cur, c_in
        w = f"w{len(nodes)}"
        inits.append((w, np.zeros((c_out, c_in // group, k, k), np.float32)))
        out = f"t{len(nodes)}"
        nodes.append(oh.make_node("Conv", [cur, w], [out], strides=[stride, stride], pads=[k // 2] * 4, group=group))
        cur, c_in = out, c_out

    conv(32, 3, 2, 1)
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for c_out, s in blocks:
        conv(c_in, 3, s, c_in)  # depthwise
        conv(c_out, 1, 1, 1)  # pointwise
    nodes.append(oh.make_node("GlobalAveragePool", [cur], ["gap"]))
    nodes.append(oh.make_node("Flatten", ["gap"], ["flat"]))
    inits.append(("fc_w", np.zeros((1000, 1024), np.float32)))
    nodes.append(oh.make_node("Gemm", ["flat", "fc_w"], ["logits"], transB=1))
    g = _graph(nodes, [("x", TP.FLOAT, [1, 3, 224, 224])], inits)
    costs = [_cost(n) for n in g.nodes]
    assert all(c.known for c in costs)
    assert sum(1 for n in g.nodes if n.op_type == "Conv") == 27
    total = sum(c.macs for c in costs)
    assert round(total / 1e6) == 569
    assert g.nodes[-1].outputs[0].type.shape == (1, 1000)


# -- MACs against execution: all-ones inputs make each output element its own MAC count ----------

ORT_CASES = {
    "conv_strided": lambda: (_conv([2, 6, 9, 11], [4, 6, 3, 2], strides=[2, 3]), {"x": _ones(2, 6, 9, 11)}),
    "conv_grouped_dilated": lambda: (_conv([1, 8, 12, 12], [6, 4, 3, 3], group=2, dilations=[2, 1]),
                                     {"x": _ones(1, 8, 12, 12)}),
    "conv_depthwise_1d": lambda: (_conv([3, 5, 17], [5, 1, 4], group=5, strides=[2]), {"x": _ones(3, 5, 17)}),
    "conv_transpose_strided": lambda: (_conv_t([2, 3, 4, 5], [3, 4, 3, 2], strides=[2, 3]), {"x": _ones(2, 3, 4, 5)}),
    "conv_transpose_grouped": lambda: (_conv_t([1, 4, 3, 3], [4, 2, 2, 2], group=2, strides=[2, 2]),
                                       {"x": _ones(1, 4, 3, 3)}),
    "gemm_trans_both": lambda: (_gemm([7, 5], [3, 7], transA=1, transB=1), {"a": _ones(7, 5), "b": _ones(3, 7)}),
    "matmul_broadcast": lambda: (_matmul([2, 1, 3, 4], [5, 4, 6]), {"a": _ones(2, 1, 3, 4), "b": _ones(5, 4, 6)}),
    "matmul_1d_left": lambda: (_matmul([4], [2, 4, 3]), {"a": _ones(4), "b": _ones(2, 4, 3)}),
    "matmul_1d_both": lambda: (_matmul([9], [9]), {"a": _ones(9), "b": _ones(9)}),
    # Einsum: attention's scores, its weighted sum, a broadcast ellipsis, the implicit form, an outer product
    "einsum_scores": lambda: (_einsum("btd,bsd->bts", [2, 3, 4], [2, 5, 4]), {"a": _ones(2, 3, 4), "b": _ones(2, 5, 4)}),
    "einsum_weighted_sum": lambda: (_einsum("bts,bsd->btd", [2, 3, 5], [2, 5, 4]),
                                    {"a": _ones(2, 3, 5), "b": _ones(2, 5, 4)}),
    "einsum_ellipsis_broadcast": lambda: (_einsum("...ij,...jk->...ik", [2, 1, 3, 4], [1, 5, 4, 6]),
                                          {"a": _ones(2, 1, 3, 4), "b": _ones(1, 5, 4, 6)}),
    "einsum_implicit": lambda: (_einsum("ij,jk", [3, 4], [4, 2]), {"a": _ones(3, 4), "b": _ones(4, 2)}),
    "einsum_outer": lambda: (_einsum("i,j->ij", [3], [4]), {"a": _ones(3), "b": _ones(4)}),
}


@pytest.mark.parametrize("name", sorted(ORT_CASES))
def test_macs_equal_onnxruntime_ones_count(name: str) -> None:
    import onnxruntime as ort

    from graphmill.frontend import to_proto

    g, feeds = ORT_CASES[name]()
    (node,) = g.nodes
    c = _cost(node)
    assert c.known
    sess = ort.InferenceSession(to_proto(g).SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, feeds)
    assert c.macs == int(np.asarray(out, np.float64).sum())
    assert out.shape == node.outputs[0].type.shape


# -- unknown shapes give known=False -----------------------------------------------------------------

SYMBOLIC = {
    "conv_symbolic_batch": lambda: _conv(["N", 3, 32, 32], [8, 3, 3, 3]),
    "conv_symbolic_hw": lambda: _conv([1, 3, "H", "W"], [8, 3, 3, 3], pads=[1, 1, 1, 1]),
    "conv_transpose_symbolic_batch": lambda: _conv_t(["N", 4, 5, 5], [4, 2, 3, 3]),
    "gemm_symbolic_m": lambda: _gemm(["M", 16], [16, 4]),
    "matmul_symbolic_seq": lambda: _matmul([2, "S", 8], [8, 4]),
    "matmul_1d_symbolic_k": lambda: _matmul(["K"], ["K"]),
    "relu_symbolic": lambda: _graph([oh.make_node("Relu", ["x"], ["y"])], [("x", TP.FLOAT, ["N", 4])]),
    "softmax_symbolic": lambda: _graph([oh.make_node("Softmax", ["x"], ["y"])], [("x", TP.FLOAT, ["N", 4])]),
    "reduce_symbolic": lambda: _graph([oh.make_node("ReduceMean", ["x"], ["y"], axes=[1])],
                                      [("x", TP.FLOAT, ["N", 4])], opset=13),
    "pool_symbolic": lambda: _graph([oh.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])],
                                    [("x", TP.FLOAT, ["N", 4, 8, 8])]),
    "layernorm_symbolic": lambda: _graph([oh.make_node("LayerNormalization", ["x", "s"], ["y"])],
                                         [("x", TP.FLOAT, ["N", 4])], [("s", _ones(4))]),
    "reshape_symbolic": lambda: _graph([oh.make_node("Reshape", ["x", "s"], ["y"])], [("x", TP.FLOAT, ["N", 4])],
                                       [("s", np.array([-1], np.int64))]),
}


@pytest.mark.parametrize("name", sorted(SYMBOLIC))
def test_symbolic_shapes_make_cost_unknown(name: str) -> None:
    g = SYMBOLIC[name]()
    for node in g.nodes:
        c = _cost(node)
        assert not c.known, f"{node.op_type}: {c}"
        if node.op_type in MAC_OPS:
            assert c.macs == 0  # no guessed number


# -- every registered op, on the node-test corpus ------------------------------------------------------


def _as_array(a):
    """Corpus data as numpy (it holds ndarrays, numpy scalars and TensorProtos); None for
    sequences and optionals."""
    if isinstance(a, onnx.TensorProto):
        return numpy_helper.to_array(a)
    if isinstance(a, (np.ndarray, np.generic)):
        return np.asarray(a)
    return None


def _fixed_width(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind not in "USOV" and DataType.from_numpy(a.dtype).bitwidth >= 8


@functools.lru_cache(maxsize=None)
def _corpus_graphs():
    """(case name, graph with inferred types, input arrays, expected arrays) for every
    single-node case of an op with a registry cost whose inferred outputs are fully static (an If has none of
    its own: its branch's nodes are costed)."""
    from graphmill.testing.onnx_corpus import iter_cases

    out = []
    for case in iter_cases(("node",)):
        model = case.load_proto()
        if len(model.graph.node) != 1:
            continue
        op = lookup(model.graph.node[0].domain, model.graph.node[0].op_type)
        if op is None or op.cost is None:
            continue
        g = from_proto(model)
        infer_types(g)
        types = [v.type for v in g.nodes[0].outputs if v is not None]
        if not all(isinstance(t, TensorType) and t.shape is not None and all(isinstance(d, int) for d in t.shape)
                   for t in types):
            continue
        ins, expected = case.data_sets[0]
        out.append((case.name, g, [_as_array(a) for a in ins], [_as_array(a) for a in expected]))
    return out


def test_corpus_costs_count_the_reference_arrays_bytes() -> None:
    """bytes_read / bytes_written equal the nbytes of the case's own input and expected output
    arrays (fixed-width element types), and the cost is known."""
    checked = 0
    bad = []
    for name, g, ins, expected in _corpus_graphs():
        node = g.nodes[0]
        c = _cost(node)
        if not all(_fixed_width(a) for a in list(ins) + list(expected)):
            continue
        if len(ins) != sum(v is not None for v in node.inputs) or len(expected) != len(g.outputs):
            continue
        want_r = sum(a.nbytes for a in ins)
        want_w = sum(a.nbytes for a in expected)
        if not c.known or (c.bytes_read, c.bytes_written) != (want_r, want_w):
            bad.append(f"{name} ({node.op_type}): {c} vs read {want_r} written {want_w}")
        checked += 1
    assert checked > 700
    assert not bad, "\n".join(bad[:20])


def test_corpus_mac_ops_follow_the_formula_on_reference_shapes() -> None:
    """For Conv/ConvTranspose/Gemm/MatMul/Einsum corpus cases, MACs equal the formula evaluated on the
    case's own arrays' shapes (inputs and expected output), not on our inferred types. Einsum: the loop nest
    of a two-operand equation does one MAC per point of its index space (numpy's naive count: einsum_path);
    one operand (a transpose, a sum, a diagonal) does none."""
    checked = {}
    for name, g, ins, expected in _corpus_graphs():
        node = g.nodes[0]
        op = node.op_type
        if op not in ("Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum"):
            continue
        if op == "Einsum":
            terms = str(node.attr("equation")).replace(" ", "").split("->")[0].split(",")
            sizes = {c: d for t, a in zip(terms, ins) for c, d in zip(t, a.shape)}
            want = 0 if len(terms) == 1 else int(np.prod(list(sizes.values())))
            assert "..." in "".join(terms) or _cost(node).macs == want, (name, _cost(node), want)
            checked[op] = checked.get(op, 0) + ("..." not in "".join(terms))
            continue
        x, w, y = ins[0].shape, ins[1].shape, expected[0].shape
        if op == "Conv":
            want = int(np.prod(y)) * int(np.prod(w[1:]))  # N*Cout*prod(out) * (Cin/g)*prod(k)
        elif op == "ConvTranspose":
            want = int(np.prod(x)) * int(np.prod(w[1:]))  # N*Cin*prod(in) * (Cout/g)*prod(k)
        elif op == "Gemm":
            k = x[0] if node.attr("transA", 0) else x[1]
            want = int(np.prod(y)) * k  # M*N*K
        else:
            k = x[-1]
            want = int(np.prod(y)) * k  # batch*M*N*K: the output holds batch*M*N elements
        assert _cost(node).macs == want, (name, _cost(node), want)
        checked[op] = checked.get(op, 0) + 1
    assert set(checked) == {"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum"} and checked["Einsum"] >= 3, checked


def test_corpus_recurrent_macs_are_the_gate_matmuls() -> None:
    """LSTM/GRU/RNN: every direction, time step and batch row does X·W (gates*hidden x input) and H·R
    (gates*hidden x hidden). The sizes come from the corpus case's own arrays (X, W, R)."""
    checked = {}
    for name, g, ins, expected in _corpus_graphs():
        node = g.nodes[0]
        if node.op_type not in ("LSTM", "GRU", "RNN"):
            continue
        x, w, r = ins[0].shape, ins[1].shape, ins[2].shape
        seq, batch = (x[1], x[0]) if node.attr("layout", 0) else (x[0], x[1])
        want = w[0] * seq * batch * w[1] * (w[2] + r[2])  # dirs * steps * batch * (gates*hidden) * (input+hidden)
        assert _cost(node).macs == want, (name, _cost(node), want)
        checked[node.op_type] = checked.get(node.op_type, 0) + 1
    assert set(checked) == {"LSTM", "GRU", "RNN"}, checked


def test_corpus_other_ops_have_no_macs_and_flops_proportional_to_elements() -> None:
    """Everything but the MAC ops: macs 0, flops a small multiple (0..16) of the element count of
    the output or of the first input (reductions and global pools work on their input)."""
    bad = []
    for name, g, ins, expected in _corpus_graphs():
        node = g.nodes[0]
        if node.op_type in MAC_OPS or node.op_type in ("MaxPool", "AveragePool", "LpPool"):
            continue
        c = _cost(node)
        sizes = [int(np.prod(a.shape)) for a in (expected[:1] + ins[:1]) if isinstance(a, np.ndarray)]
        ok = c.known and c.macs == 0 and (c.flops == 0 or any(
            n and c.flops % n == 0 and c.flops // n <= 16 for n in sizes))
        if not ok:
            bad.append(f"{name} ({node.op_type}): {c}, elements {sizes}")
    assert not bad, "\n".join(bad[:20])


def test_corpus_window_ops_flops_are_output_times_kernel() -> None:
    """Max/Average/LpPool flops = output elements * prod(kernel_shape), on the reference shapes."""
    n = 0
    for name, g, ins, expected in _corpus_graphs():
        node = g.nodes[0]
        if node.op_type not in ("MaxPool", "AveragePool", "LpPool"):
            continue
        want = int(np.prod(expected[0].shape)) * int(np.prod(node.attr("kernel_shape")))
        assert _cost(node).flops == want, name
        n += 1
    assert n > 30


def test_corpus_costs_become_unknown_without_types() -> None:
    """Erasing one output's type (or making an input dim symbolic) turns every op's cost unknown."""
    bad = []
    for name, g, _, _ in _corpus_graphs():
        node = g.nodes[0]
        g2 = g.copy()
        n2 = g2.nodes[0]
        out = next(v for v in n2.outputs if v is not None)
        out.type = None
        if _cost(n2).known:
            bad.append(f"{name} ({node.op_type}): known with an output type erased")
        g3 = g.copy()
        n3 = g3.nodes[0]
        first = next((v for v in n3.inputs if v is not None and isinstance(v.type, TensorType) and v.type.shape), None)
        if first is not None:
            first.type = TensorType(first.type.dtype, ("sym",) + tuple(first.type.shape[1:]))
            if _cost(n3).known:
                bad.append(f"{name} ({node.op_type}): known with a symbolic input dim")
    assert not bad, "\n".join(bad[:20])


def test_every_cost_function_documents_its_convention() -> None:
    missing = [d.op_type for d in registered_ops() if d.cost is not None and not (d.cost.__doc__ or "").strip()]
    assert not missing, f"cost functions without a docstring: {missing}"


def test_resnet18_is_1_8_giga_mult_adds(resnet18_graph) -> None:
    """ResNet-18 at 224x224: 1.8 x 10^9 FLOPs (multiply-adds) in He et al. 2016, Table 1."""
    g = resnet18_graph.copy()
    infer_types(g)
    costs = [_cost(n) for n in g.nodes]
    assert all(c.known for c in costs)
    assert round(sum(c.macs for c in costs) / 1e8) == 18
