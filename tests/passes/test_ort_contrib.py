"""fuse-ort-contrib: ONNX Runtime contrib ops (com.microsoft) for decomposed subgraphs.

Reference: ONNX Runtime running the graph before the pass with ORT's own graph optimizations
disabled (so the reference is the unfused computation, not ORT's fusion of it), on seeded random
inputs, against the rewritten graph under the same options. The rules are float-reassociating:
rtol=1e-5, atol=1e-5 (1e-4 for the two-layer transformer). Refusals are checked twice: the graph
is unchanged, and ``explain`` names the failing check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphmill.backends.onnxruntime import OrtOptions, compare, random_inputs
from graphmill.ir.builder import GraphBuilder
from graphmill.testing.decomposed import gelu_erf as _gelu_erf
from graphmill.ir.rewrite import explain
from graphmill.passes import run_passes
from graphmill.passes.fusion import ort_contrib as oc

RTOL = ATOL = 1e-5
UNFUSED = OrtOptions(optimization="disabled")
MS = "com.microsoft"


def _run(g, schedule="fuse-ort-contrib, dce"):
    ref = g.copy()
    res = run_passes(g, schedule, verify_each=True)
    return ref, res


def _ops(g):
    return [(f"{n.domain}." if n.domain else "") + n.op_type for n in g.nodes]


def _same(ref, g, tol=RTOL, **kw):
    c = compare(ref, g, random_inputs(ref, seed=0, **kw), rtol=tol, atol=tol, options=UNFUSED)
    assert c.ok, c
    return c


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _rule(name):
    return next(r for r in oc.FuseOrtContrib.rules if r.name == name)


def _refused(g, rule, reason):
    before = _ops(g)
    _run(g)
    assert _ops(g) == before
    text = explain(_rule(rule), g)
    assert reason in text, text


# -- Gelu, FastGelu, BiasGelu -------------------------------------------------------------------



def _gelu_tanh(b, x):
    inner = b.Add(x, b.Mul(b.Pow(x, np.array(3, np.float32)), np.array(0.044715, np.float32)))
    t = b.Tanh(b.Mul(inner, np.array(math.sqrt(2 / math.pi), np.float32)))
    return b.Mul(b.Mul(x, np.array(0.5, np.float32)), b.Add(t, np.array(1, np.float32)))


@pytest.mark.parametrize("order,div", [(0, True), (1, True), (2, False)])
def test_erf_gelu_becomes_ms_gelu_at_opset_17(order, div):
    b = GraphBuilder(opset=17)  # ONNX's Gelu needs opset 20; com.microsoft's does not
    x = b.input("x", "float32", ["N", 16])
    b.output(_gelu_erf(b, x, order, div), "y")
    g = b.build()
    ref, _ = _run(g)
    assert _ops(g) == ["com.microsoft.Gelu"]
    assert g.opset_imports[MS] == 1
    _same(ref, g, dims={"N": 3})


def test_tanh_gelu_becomes_fastgelu():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [4, 16])
    b.output(_gelu_tanh(b, x), "y")
    g = b.build()
    ref, _ = _run(g)
    assert _ops(g) == ["com.microsoft.FastGelu"]
    _same(ref, g)


@pytest.mark.parametrize("shape", [[], None])
def test_tanh_gelu_on_0d_or_unknown_rank_stays_off_fastgelu(shape):
    """ORT's FastGelu rejects a 0-d input ("expected to have 1 or more dimensions"): the ort schedule
    used to emit it anyway, and the result did not run. Reference: ONNX Runtime runs the result and
    agrees with the graph before; ``explain`` names the rank."""
    import graphmill

    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", shape)
    b.output(_gelu_tanh(b, x), "y")
    g = b.build()
    ref = g.copy()
    graphmill.optimize(g, schedule_file="ort", verify_each=True)
    assert "com.microsoft.FastGelu" not in _ops(g)
    if shape == []:
        _same(ref, g)  # ONNX Runtime runs the result
    reason = "x is 0-d" if shape == [] else "x's rank is unknown"
    texts = [explain(r, ref) for r in oc.FuseOrtContrib.rules if r.name.startswith("ms-fastgelu-tanh")]
    assert any(reason in t for t in texts), texts


@pytest.mark.parametrize("bias_shape,bias_first", [((32,), False), ((32,), True), ((1, 1, 32), False)])
def test_matmul_bias_gelu_becomes_biasgelu(rng, bias_shape, bias_first):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 5, 8])
    mm = b.MatMul(x, _f32(rng, 8, 32))
    bias = _f32(rng, *bias_shape)
    h = b.Add(bias, mm) if bias_first else b.Add(mm, bias)
    b.output(_gelu_erf(b, h), "y")
    g = b.build()
    ref, _ = _run(g)
    assert _ops(g) == ["MatMul", "com.microsoft.BiasGelu"]  # 7 nodes built
    assert g.nodes[1].inputs[1].shape == (32,)  # the kernel takes a 1-D bias
    _same(ref, g)


@pytest.mark.parametrize("approximate,want", [("none", "com.microsoft.BiasGelu"), ("tanh", "com.microsoft.FastGelu")])
def test_bias_before_onnx_gelu(rng, approximate, want):
    b = GraphBuilder(opset=20)
    x = b.input("x", "float32", [3, 16])
    b.output(b.Gelu(b.Add(x, _f32(rng, 16)), approximate=approximate), "y")
    g = b.build()
    ref, _ = _run(g)
    assert _ops(g) == [want] and len(g.nodes[0].inputs) == 2
    _same(ref, g)


def test_bias_gelu_refusals(rng):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [5, 16])
    b.output(_gelu_erf(b, b.Add(x, _f32(rng, 5, 16))), "y")  # one bias per row, not per column
    g = b.build()
    _run(g)
    assert _ops(g) == ["Add", "com.microsoft.Gelu"]
    text = explain(_rule("bias-gelu"), g)
    assert "not one value per last-dim element" in text, text

    b = GraphBuilder(opset=17)
    x = b.input("x", "float64", [5, 16])  # the kernels here are used for float32 only
    b.output(_gelu_erf(b, x, dtype=np.float64), "y")
    g = b.build()
    _refused(g, "ms-gelu-erf-0", "float32 only")


# -- SkipLayerNormalization ---------------------------------------------------------------------

def _ln(b, x, rng, h, beta=True, **kw):
    return b.LayerNormalization(x, rng.uniform(0.5, 1.5, h).astype(np.float32),
                                *([_f32(rng, h)] if beta else []), epsilon=1e-5, **kw)


@pytest.mark.parametrize("x_shape,skip_shape,beta", [
    ([2, 5, 16], [2, 5, 16], True), ([2, 5, 16], [1, 5, 16], True), ([2, 5, 16], [5, 16], False),
    (["B", 5, 16], ["B", 5, 16], True), ([5, 16], [5, 16], True)])
def test_add_layernorm_becomes_skip_layernorm(rng, x_shape, skip_shape, beta):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", x_shape)
    s = b.input("s", "float32", skip_shape)
    b.output(_ln(b, b.Add(s, x), rng, 16, beta), "y")  # a broadcast skip first: it must become the skip
    g = b.build()
    ref, _ = _run(g)
    assert _ops(g) == ["com.microsoft.SkipLayerNormalization"]
    n = g.nodes[0]
    want = ("s", "x") if skip_shape == x_shape else ("x", "s")  # equal shapes keep the Add's order
    assert (n.inputs[0].name, n.inputs[1].name) == want and n.attr("epsilon") == pytest.approx(1e-5)
    _same(ref, g, dims={"B": 2})


@pytest.mark.parametrize("swap", [False, True])
def test_bias_add_folds_into_skip_layernorm(rng, swap):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 6, 8])
    res = b.input("res", "float32", [1, 6, 8])
    h = b.Add(b.MatMul(x, _f32(rng, 8, 16)), _f32(rng, 16))
    h = b.MatMul(b.Relu(h), _f32(rng, 16, 8))
    h = b.Add(_f32(rng, 8), h) if swap else b.Add(h, _f32(rng, 8))
    b.output(_ln(b, b.Add(res, h) if swap else b.Add(h, res), rng, 8), "y")
    g = b.build()
    ref, res_ = _run(g)
    assert _ops(g) == ["MatMul", "Add", "Relu", "MatMul", "com.microsoft.SkipLayerNormalization"]
    assert len(g.nodes[-1].inputs) == 5  # input, skip, gamma, beta, bias
    assert res_.stats()["fuse-ort-contrib"]["skip-layernorm-bias"] == 1
    _same(ref, g)


def test_pre_ln_residual_stream_reads_input_skip_bias_sum(rng):
    """Pre-LN blocks (ViT): the residual sum feeds the LayerNorm and the next residual Add."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 4, 8])
    t = x
    for _ in range(3):
        f = b.Add(b.MatMul(_ln(b, t, rng, 8), _f32(rng, 8, 8)), _f32(rng, 8))
        t = b.Add(t, f)  # the stream: read by the next block's LayerNorm and by the next residual Add
    b.output(_ln(b, t, rng, 8), "y")
    g = b.build()
    n_before = len(g.nodes)
    ref, _ = _run(g)
    ops = _ops(g)
    assert ops.count("com.microsoft.SkipLayerNormalization") == 3 and "LayerNormalization" in ops
    assert ops.count("Add") == 0 and len(g.nodes) == n_before - 6  # 3 residual Adds, 3 bias Adds
    summed = [n for n in g.nodes if n.op_type == "SkipLayerNormalization" and len(n.outputs) == 4]
    assert len(summed) == 2 and all(n.outputs[1] is None and n.outputs[2] is None for n in summed)
    _same(ref, g)


def test_skip_layernorm_can_be_left_out(rng):
    b = GraphBuilder(opset=17)
    x, s = (b.input(n, "float32", [2, 5, 8]) for n in ("x", "s"))
    b.output(_ln(b, b.Add(x, s), rng, 8), "y")
    g = b.build()
    _run(g, "fuse-ort-contrib(skip_layernorm=false)")
    assert _ops(g) == ["Add", "LayerNormalization"]


def test_skip_layernorm_refusals(rng):
    def build(x_shape, skip_shape, reader_before=False, **ln_kw):
        b = GraphBuilder(opset=17)
        x = b.input("x", "float32", x_shape)
        s = b.input("s", "float32", skip_shape)
        total = b.Add(x, s)
        if reader_before:
            b.output(b.Relu(total), "r")  # a reader placed between the Add and the LayerNorm
        b.output(_ln(b, total, rng, x_shape[-1], **ln_kw), "y")
        return b.build()

    _refused(build([2, 3, 5, 8], [2, 3, 5, 8]), "skip-layernorm", "2-D or 3-D input")
    _refused(build([2, 5, 8], [8]), "skip-layernorm", "[1, S, H] or [S, H]")  # the kernel rejects a 1-D skip
    _refused(build([2, 5, 8], [2, 1, 8]), "skip-layernorm", "[1, S, H] or [S, H]")
    _refused(build([1, 5, 8], [2, 1, 8]), "skip-layernorm", "[1, S, H] or [S, H]")  # neither has the sum's shape
    _refused(build([2, 5, 8], [2, 5, 8], reader_before=True), "skip-layernorm", "before the LayerNormalization")
    g = build([2, 5, 8], [2, 5, 8])
    g.nodes[1].set_attr("axis", 1)
    _refused(g, "skip-layernorm", "not over the last one")


# -- FusedMatMul --------------------------------------------------------------------------------

def test_transposed_and_scaled_operands_become_one_fused_matmul(rng):
    b = GraphBuilder(opset=17)
    q = b.input("q", "float32", [2, 3, 5, 4])
    k = b.input("k", "float32", [2, 3, 6, 4])
    qs = b.Mul(np.array([0.5], np.float32), q)
    kt = b.Div(b.Transpose(k, perm=[0, 1, 3, 2]), np.array(4.0, np.float32))
    b.output(b.Mul(b.MatMul(qs, kt), np.array(3.0, np.float32)), "y")
    g = b.build()
    ref, _ = _run(g)
    assert _ops(g) == ["com.microsoft.FusedMatMul"]  # 5 nodes built
    n = g.nodes[0]
    assert (n.inputs[0].name, n.inputs[1].name) == ("q", "k")
    assert (n.attr("transA"), n.attr("transB")) == (0, 1)
    assert n.attr("alpha") == pytest.approx(0.5 / 4 * 3)
    _same(ref, g)


def test_transpose_a_of_a_2d_matrix(rng):
    b = GraphBuilder(opset=17)
    a = b.input("a", "float32", [7, 5])
    b.output(b.MatMul(b.Transpose(a), _f32(rng, 3, 7, 4)), "y")  # no perm: reversed axes, a swap in 2-D
    g = b.build()
    ref, _ = _run(g)
    assert _ops(g) == ["com.microsoft.FusedMatMul"] and g.nodes[0].attr("transA") == 1
    _same(ref, g)


def _heads(b, x, perm, shape=(1, 6, 2, 4)):
    return b.Transpose(b.Reshape(x, np.array(shape, np.int64)), perm=perm)


def test_attention_head_transposes_become_batch_transposed_operands(rng):
    """q @ k^T and p @ v as exporters write them: [1, S, h*d] -> [1, S, h, d] -> [1, h, S, d]."""
    b = GraphBuilder(opset=17)
    q, k, v = (b.input(n, "float32", [1, 6, 8]) for n in ("q", "k", "v"))
    s = b.Mul(b.MatMul(_heads(b, q, [0, 2, 1, 3]), _heads(b, k, [0, 2, 3, 1])), np.array(0.5, np.float32))
    y = b.MatMul(b.Softmax(s, axis=-1), _heads(b, v, [0, 2, 1, 3]))
    b.output(y, "y")
    g = b.build()
    ref, _ = _run(g)
    assert sorted(_ops(g)) == ["Reshape"] * 3 + ["Softmax"] + ["com.microsoft.FusedMatMul"] * 2  # 12 built
    qk, pv = (n for n in g.nodes if n.op_type == "FusedMatMul")
    assert (qk.attr("transBatchA"), qk.attr("transBatchB"), qk.attr("transA"), qk.attr("transB")) == (1, 1, 0, 1)
    assert (pv.attr("transBatchA"), pv.attr("transBatchB"), pv.attr("transB")) == (0, 1, 0)
    assert qk.attr("alpha") == 0.5
    _same(ref, g)


def test_batch_transpose_refuses_to_move_a_real_batch_axis(rng):
    b = GraphBuilder(opset=17)
    q, k = (b.input(n, "float32", [2, 6, 8]) for n in ("q", "k"))
    y = b.MatMul(_heads(b, q, [0, 2, 1, 3], (2, 6, 2, 4)), _heads(b, k, [0, 2, 3, 1], (2, 6, 2, 4)))
    b.output(y, "y")
    _refused(b.build(), "fused-matmul-batch-transpose-a", "not a batch transpose FusedMatMul can read")


@pytest.mark.parametrize("weight_shape", [(12, 8), (1, 2, 12, 8)])
def test_batch_transpose_needs_both_operands_of_one_rank(rng, weight_shape):
    """``Linear(x.reshape(4, 2, 12).transpose(0, 1))``: a rank-3 operand beside a rank-2 (or rank-4) weight. The
    FusedMatMul with transBatchA failed under ONNX Runtime ("Two inputs should have same rank and rank >= 3 if
    transBatchA or transBatchB is true"; an outside check's fuzzer, ``-s ort``). Reference: ONNX Runtime runs the
    graph left as it is and the one where both are rank 3 is fused."""
    def build(shape):
        b = GraphBuilder(opset=17)
        x = b.input("x", "float32", [8, 12])
        b.output(b.MatMul(_heads(b, x, [1, 0, 2], (4, 2, 12)), _f32(rng, *shape)), "y")
        return b.build()

    g = build(weight_shape)
    ref = g.copy()
    _refused(g, "fused-matmul-batch-transpose-a", "the other operand's rank is not the transposed operand's 3")
    _same(ref, g)
    g = build((2, 12, 8))
    ref, _ = _run(g)
    assert "com.microsoft.FusedMatMul" in _ops(g) and g.nodes[-1].attr("transBatchA") == 1
    _same(ref, g)


def test_fused_matmul_refusals(rng):
    def build(make):
        b = GraphBuilder(opset=17)
        a = b.input("a", "float32", [2, 4, 5])
        c = b.input("c", "float32", [2, 5, 4])
        b.output(make(b, a, c), "y")
        return b.build()

    _refused(build(lambda b, a, c: b.MatMul(a, b.Transpose(b.Transpose(c, perm=[1, 2, 0]), perm=[2, 0, 1]))),
             "fused-matmul-transpose-b", "does not swap exactly the last two axes")
    _refused(build(lambda b, a, c: b.MatMul(b.Div(np.array(2.0, np.float32), a), c)),
             "fused-matmul-scale-a", "the dividend")
    _refused(build(lambda b, a, c: b.MatMul(b.Mul(a, _f32(rng, 5)), c)),
             "fused-matmul-scale-a", "not a one-element constant")
    _refused(build(lambda b, a, c: b.MatMul(b.Mul(a, np.ones((1, 1, 1, 1), np.float32)), c)),
             "fused-matmul-scale-a", "broadcasts")
    # the alpha float32 cannot hold: (a * 3e30) * 3e30 folded to alpha inf (an outside check's fuzzing), and the
    # product of two tiny scales to 0; the first scale alone is fine and folds, the second stays a Mul
    for big in (3e30, 1e-30):
        g = build(lambda b, a, c: b.MatMul(b.Mul(b.Mul(a, np.array(big, np.float32)), np.array(big, np.float32)), c))
        _run(g)
        assert _ops(g) == ["Mul", "com.microsoft.FusedMatMul"]
        fmm = g.nodes[1]
        assert fmm.attr("alpha") == np.float32(big)  # not inf, not 0
        why = "overflow" if big > 1 else "underflows"
        assert why in explain(_rule("fused-matmul-scale-a-again"), g), explain(_rule("fused-matmul-scale-a-again"), g)

    b = GraphBuilder(opset=17)  # the Transpose has another reader: absorbing it would not remove it
    a = b.input("a", "float32", [4, 5])
    t = b.Transpose(a)
    b.output(b.MatMul(t, _f32(rng, 4, 3)), "y")
    b.output(t, "t")
    g = b.build()
    before = _ops(g)
    _run(g)
    assert _ops(g) == before
    assert "is a graph output; fusing it would duplicate its work" in explain(_rule("fused-matmul-transpose-a"), g)


# -- FusedGemm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("act,kw", [("Relu", {}), ("LeakyRelu", {"alpha": 0.1}), ("Sigmoid", {}), ("Tanh", {}),
                                    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4})])
def test_gemm_activation_becomes_fused_gemm(rng, act, kw):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 6])
    y = b.Gemm(x, _f32(rng, 5, 6), _f32(rng, 5), transB=1, alpha=0.5)
    b.output(b.op(act, y, **kw), "y")
    g = b.build()
    ref, _ = _run(g)
    assert _ops(g) == ["com.microsoft.FusedGemm"]
    n = g.nodes[0]
    assert n.attr("activation") == act and n.attr("transB") == 1 and n.attr("alpha") == 0.5
    for k, v in kw.items():
        assert n.attr(f"activation_{k}") == pytest.approx(v)
    _same(ref, g, dims={"N": 3})


def test_fused_gemm_refusals(rng):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [3, 6])
    b.output(b.Clip(b.Gemm(x, _f32(rng, 6, 5)), np.array(0, np.float32), np.array(6, np.float32)), "y")
    _refused(b.build(), "fused-gemm", "no Clip activation")
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [3, 6])
    y = b.Gemm(x, _f32(rng, 6, 5))
    b.output(b.Relu(y), "y")
    b.output(y, "pre")  # the pre-activation value is a graph output
    g = b.build()
    before = _ops(g)
    _run(g)
    assert _ops(g) == before


# -- the `ort` schedule on a real model ----------------------------------------------------------

def _embedded(name):
    from graphmill.passes.builtin_schedules import builtin_schedule

    return builtin_schedule(name)


def test_default_schedule_stays_standard_onnx():
    assert "fuse-ort-contrib" not in {r.name for r in _embedded("default").runs()}
    assert "fuse-ort-contrib" in {r.name for r in _embedded("ort").runs()}


def test_ort_schedule_on_a_torch_transformer_encoder(tmp_path):
    """nn.TransformerEncoder (2 layers, d_model 32) exported as benchmarks/torch_models.py does it."""
    torch = pytest.importorskip("torch")
    import warnings

    import graphmill

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    path = str(tmp_path / "enc.onnx")
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # else the encoder traces to one fused aten op ONNX lacks
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(1, 10, 32),), path, dynamo=False, opset_version=17,
                              input_names=["src"], output_names=["out"])
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    original = graphmill.load(path)
    std, ms = original.copy(), original.copy()
    run_passes(std, _embedded("default"), verify_each=True)
    run_passes(ms, _embedded("ort"), verify_each=True)
    ops = _ops(ms)
    assert len(ms.nodes) < len(std.nodes)
    # the ort schedule leaves Add + LayerNormalization (ORT's CPU SkipLayerNormalization is slower)
    assert "com.microsoft.SkipLayerNormalization" not in ops and ops.count("LayerNormalization") == 4
    assert ops.count("com.microsoft.FusedMatMul") == 4  # scaled q @ k^T and p @ v, heads read via transBatch
    assert ops.count("Transpose") < [n.op_type for n in std.nodes].count("Transpose")
    assert not any(n.domain == MS for n in std.nodes)
    _same(original, ms, tol=1e-4)
    sln = original.copy()
    run_passes(sln, _embedded("default"), verify_each=True)
    run_passes(sln, "fuse-ort-contrib, dce", verify_each=True)  # the pass's own default emits it
    ops = _ops(sln)
    assert ops.count("com.microsoft.SkipLayerNormalization") == 4 and "LayerNormalization" not in ops
    assert len(sln.nodes) < len(ms.nodes)
    _same(original, sln, tol=1e-4)
