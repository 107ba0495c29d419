"""Fold an inference-mode BatchNormalization into the Conv, ConvTranspose or Gemm before it.

BN(y) = (y - mean) * s + bias with s = scale / sqrt(var + eps), per channel (axis 1). For
Conv the output channel is W's axis 0, for ConvTranspose (weights [C, M/group, k...]) axis 1
within each group, for Gemm the column of B (axis 1, or 0 with transB). The folded weights are
computed in float64 and cast back; the result is float-reassociating (the scaling happens
before the accumulation instead of after).

Legal cases: BN with one used output (no running statistics wanted), training_mode absent or 0,
every BN parameter constant; a producer whose weights (and bias, if any) are constant floats
(float32/64) and whose only reader is the BN; opset >= 7, and at opsets 7-8 ``spatial`` absent or 1, which
computes what opset 9's BatchNormalization does (``spatial=0``'s per-element statistics and opset 6's
``is_test`` form are refused; Gemm needs opset >= 11 for an optional C).

Refused: a folded constant (weights, bias, scale) that its element type cannot hold, overflowing to inf or
underflowing to 0 where the exact value is not (``cleanup.common.folded_constant``; the original scales at run
time and may not: (Conv(x, W) * 3e30) * 3e30 gave nan where the original gave inf), float16 weights (the folded
bias is rounded to float16 before it cancels against the scaled products, which the BN's own subtraction of the
mean did not do: a fuzzer's model ended outside float16's tolerance under ONNX Runtime), non-constant weights
or statistics, a producer with other readers (its unscaled output would be lost), BN in training mode or with its
mean/var outputs used, unknown channel counts, Gemm whose C is not one bias per column ([M, N] or [M, 1] biases
vary along rows).
"""

from __future__ import annotations

import numpy as np

from graphmill.ir import DataType
from graphmill.ir.rewrite import REASSOCIATING, Const, Match, Op, Opt, Rule, Var

from ..base import register_pass
from ..cleanup.common import (FLOAT_TYPES, checked_by, const_of, dtype_of, folded_constant, opset, output_unused,
                              shape_of)
from ..rewrite_pass import RewritePass


def _old_form(bn, graph) -> str | None:
    """Why ``bn`` is a BatchNormalization form of an opset before 9 that the folds do not take, or None (opsets 7-8
    with ``spatial`` absent or 1 are opset 9's: an outside check found every opset-7/8 BN left unfolded)."""
    version = opset(graph)
    if version < 7:
        return "opset < 7 BatchNormalization (is_test / consumed_inputs forms)"
    if version < 9 and bn.attr("spatial", 1) != 1:
        return "BatchNormalization with spatial=0 (statistics per element, not per channel)"
    return None


def _bn_params(m: Match):
    bn = m.root
    if why := _old_form(bn, m.graph):
        return why
    if bn.attr("training_mode", 0):
        return "BatchNormalization in training mode"
    if any(not output_unused(o) for o in bn.outputs[1:]):
        return "BatchNormalization's running statistics are used"
    vals = [const_of(m[k]) for k in ("scale", "bias", "mean", "var")]
    if any(v is None for v in vals):
        return "BatchNormalization parameters are not all constant"
    scale, bias, mean, var = (v.astype(np.float64).reshape(-1) for v in vals)
    if not (scale.size == bias.size == mean.size == var.size):
        return "BatchNormalization parameters have different sizes"
    eps = float(bn.attr("epsilon", 1e-5))
    s = scale / np.sqrt(var + eps)
    return s, bias - mean * s


def _weights(m: Match):
    w = const_of(m["w"])
    if w is None or dtype_of(m["w"]) not in FLOAT_TYPES:
        return "weights are not float constants"
    b = const_of(m["b"]) if "b" in m else None
    if "b" in m and b is None:
        return "bias is not constant"
    return w, b


def _bn_and_weights(m: Match):
    """(bn scale, bn shift, weights, bias) or the reason the fold cannot happen."""
    if dtype_of(m["w"]) == DataType.FLOAT16:
        # the folded bias (B - mean) * s + bias is rounded to float16 and cancels against W*s*x at run time,
        # where BatchNormalization's subtraction of the mean did not lose those bits: 9x the original's error
        # against float32 on a fuzzer's model, outside float16's tolerance (onnxoptimizer folds float32/64 only)
        return "float16 weights: the folded bias's rounding can exceed float16's output tolerance"
    p = _bn_params(m)
    if isinstance(p, str):
        return p
    w = _weights(m)
    if isinstance(w, str):
        return w
    return (*p, *w)


def _conv_folded(m: Match, transpose: bool) -> tuple | str:
    """The folded (weights, bias) in the weights' element type, or why not."""
    got = _bn_and_weights(m)
    if isinstance(got, str):
        return got
    s, shift, w, b = got
    group = int(m.node("conv").attr("group", 1))
    channels = w.shape[0] if not transpose else w.shape[1] * group
    if w.ndim < 3 or channels != s.size:
        return f"BatchNormalization has {s.size} channels, the convolution {channels}"
    w64 = w.astype(np.float64)
    if not transpose:
        w_new = w64 * s.reshape((-1,) + (1,) * (w.ndim - 1))
    else:
        c, mg = w.shape[0], w.shape[1]
        g = w64.reshape((group, c // group, mg) + w.shape[2:])
        g = g * s.reshape((group, 1, mg) + (1,) * (w.ndim - 2))
        w_new = g.reshape(w.shape)
    b64 = np.zeros(s.size) if b is None else b.astype(np.float64).reshape(-1)
    return _folded(("weights", w_new, w.dtype), ("bias", b64 * s + shift, w.dtype))


def _folded(*parts: tuple[str, np.ndarray, np.dtype]) -> tuple | str:
    """Each (what, exact value, element type) as ``folded_constant`` stores it, or why one cannot be stored; the
    weights are summed by their op (``summed``), the rest stands alone."""
    out = []
    for what, exact, dtype in parts:
        got = folded_constant(exact, dtype, summed=what == "weights")
        if isinstance(got, str):
            return f"{what}: {got}"
        out.append(got)
    return tuple(out)


def _conv_replace(m: Match, r, transpose: bool):
    w_new, b_new = _conv_folded(m, transpose)
    conv = m.node("conv")
    wv = r.const(w_new, m["w"].name + "_bn")
    bv = r.const(b_new, (m["b"].name if "b" in m else m["w"].name) + "_bn_bias")
    extra = list(conv.inputs[3:])  # none for Conv/ConvTranspose today; kept for safety
    return r.op(conv.op_type, m["x"], wv, bv, *extra, attrs=dict(conv.attrs), name=conv.name)


def _conv_rule(op_type: str, transpose: bool) -> Rule:
    return Rule(
        f"{op_type.lower()}-bn",
        Op("BatchNormalization",
           Op(op_type, Var("x"), Const("w"), Opt(Const("b")), name="conv"),
           Const("scale"), Const("bias"), Const("mean"), Const("var"), name="bn"),
        check=checked_by(lambda m: _conv_folded(m, transpose)),
        replace=lambda m, r: _conv_replace(m, r, transpose),
        exactness=REASSOCIATING,
        doc=f"BatchNormalization({op_type}(x, W, B)) -> {op_type}(x, W*s, (B-mean)*s+bias)")


def _gemm_folded(m: Match) -> tuple | str:
    """The folded (B, C) in B's element type, or why not."""
    if opset(m.graph) < 11:
        return "Gemm with optional C needs opset >= 11"
    got = _bn_and_weights(m)
    if isinstance(got, str):
        return got
    s, shift, w, c = got
    gemm = m.node("conv")
    if w.ndim != 2:
        return "B is not 2-D"
    n = w.shape[0] if gemm.attr("transB", 0) else w.shape[1]
    if n != s.size:
        return f"BatchNormalization has {s.size} channels, the Gemm {n} columns"
    if c is not None and not (c.size in (1, n) and (c.ndim < 2 or c.shape[0] == 1)):
        return f"C of shape {list(c.shape)} is not one bias per column"
    beta = float(gemm.attr("beta", 1.0))
    w_new = w.astype(np.float64) * (s.reshape(-1, 1) if gemm.attr("transB", 0) else s.reshape(1, -1))
    c64 = np.zeros(s.size) if c is None else np.broadcast_to(c.astype(np.float64).reshape(-1), (s.size,))
    return _folded(("weights", w_new, w.dtype), ("bias", beta * c64 * s + shift, w.dtype))


def _gemm_replace(m: Match, r):
    w_new, c_new = _gemm_folded(m)
    gemm = m.node("conv")
    attrs = {k: a.value for k, a in gemm.attrs.items()}
    attrs["beta"] = 1.0
    attrs["alpha"] = float(gemm.attr("alpha", 1.0))
    wv = r.const(w_new, m["w"].name + "_bn")
    cv = r.const(c_new, m["w"].name + "_bn_bias")
    return r.op("Gemm", m["x"], wv, cv, attrs=attrs, name=gemm.name)


GEMM_BN = Rule(
    "gemm-bn",
    Op("BatchNormalization", Op("Gemm", Var("x"), Const("w"), Opt(Const("b")), name="conv"),
       Const("scale"), Const("bias"), Const("mean"), Const("var"), name="bn"),
    check=checked_by(_gemm_folded), replace=_gemm_replace, exactness=REASSOCIATING,
    doc="BatchNormalization(Gemm(A, B, C)) -> Gemm(A, B*s, (beta*C-mean)*s+bias)")


# -- per-channel constant scale / shift after a Conv or a BatchNormalization --------------------
#
# Exporters (and older converters: the onnx light models) leave a decomposed BatchNormalization:
# Mul(y, s) and Add(y, t) with s, t of shape [C, 1, 1] (or [1, C, 1, 1], [C, 1], a scalar). When y
# is a Conv output, Mul folds into W (and B) and Add into B; when y is a BatchNormalization output,
# Mul folds into its scale and bias and Add into its bias. Legal only when the constant varies
# along the channel axis (1) at most, has the producer's element type and does not broadcast the
# output to a bigger shape (its rank is at most the output's, a leading dim of a full-rank
# constant is 1). Float-reassociating: the scaling happens before the accumulation.


def _per_channel(c: np.ndarray | None, rank: int | None, channels: int) -> np.ndarray | str:
    """The constant as one value per channel (shape [channels]), or why it is not per-channel."""
    if c is None:
        return "the operand is not a constant"
    if rank is None:
        return "the output's rank is unknown"
    if c.ndim > rank:
        return f"the constant (rank {c.ndim}) would broadcast the rank-{rank} output to a higher rank"
    shape = (1,) * (rank - c.ndim) + tuple(c.shape)
    if rank < 2:
        return "the output has no channel axis"
    if any(d != 1 for i, d in enumerate(shape) if i != 1):
        return f"the constant of shape {list(c.shape)} varies along an axis other than the channel axis"
    if shape[1] not in (1, channels):
        return f"the constant has {shape[1]} channels, the output {channels}"
    return np.broadcast_to(c.astype(np.float64).reshape(-1), (channels,))


def _float_match(m: Match, a: str, b: str) -> str | None:
    da, db = dtype_of(m[a]), dtype_of(m[b])
    if da not in FLOAT_TYPES or da != db:
        return "operands are not floats of the same element type"
    return None


def _conv_affine(m: Match) -> tuple | str:
    w = _weights(m)
    if isinstance(w, str):
        return w
    w, b = w
    conv = m.node("conv")
    if w.ndim < 3:
        return "weights of rank < 3"
    if conv.op_type == "Conv":
        channels = w.shape[0]
    else:
        channels = w.shape[1] * int(conv.attr("group", 1))
    why = _float_match(m, "w", "c")
    if why:
        return why
    c = _per_channel(const_of(m["c"]), w.ndim, channels)
    if isinstance(c, str):
        return c
    if "b" in m and dtype_of(m["b"]) != dtype_of(m["w"]):
        return "bias and weights differ in element type"
    return w, b, c


def _scale_weights(w: np.ndarray, s: np.ndarray, conv) -> np.ndarray:
    w64 = w.astype(np.float64)
    if conv.op_type == "Conv":
        return w64 * s.reshape((-1,) + (1,) * (w.ndim - 1))
    group = int(conv.attr("group", 1))
    c, mg = w.shape[0], w.shape[1]
    g = w64.reshape((group, c // group, mg) + w.shape[2:]) * s.reshape((group, 1, mg) + (1,) * (w.ndim - 2))
    return g.reshape(w.shape)


def _conv_scaled(m: Match) -> tuple | str:
    """Mul(Conv(x, W, B), s): the folded (W*s, B*s or None) in W's element type, or why not."""
    got = _conv_affine(m)
    if isinstance(got, str):
        return got
    w, b, s = got
    w_new = _scale_weights(w, s, m.node("conv"))
    if b is None:
        got = _folded(("weights", w_new, w.dtype))
        return got if isinstance(got, str) else (got[0], None)
    return _folded(("weights", w_new, w.dtype), ("bias", b.astype(np.float64).reshape(-1) * s, w.dtype))


def _conv_shifted(m: Match) -> np.ndarray | str:
    """Add(Conv(x, W, B), t): the folded B+t in W's element type, or why not."""
    got = _conv_affine(m)
    if isinstance(got, str):
        return got
    w, b, t = got
    b64 = np.zeros(t.size) if b is None else b.astype(np.float64).reshape(-1)
    got = _folded(("bias", b64 + t, w.dtype))
    return got if isinstance(got, str) else got[0]


def _conv_scale_replace(m: Match, r):
    w_new, b_new = _conv_scaled(m)
    conv = m.node("conv")
    ins = [m["x"], r.const(w_new, m["w"].name + "_scaled")]
    if b_new is not None:
        ins.append(r.const(b_new, m["b"].name + "_scaled"))
    return r.op(conv.op_type, *ins, attrs=dict(conv.attrs), name=conv.name)


def _conv_shift_replace(m: Match, r):
    conv = m.node("conv")
    bv = r.const(_conv_shifted(m), (m["b"].name if "b" in m else m["w"].name) + "_shifted")
    return r.op(conv.op_type, m["x"], m["w"], bv, attrs=dict(conv.attrs), name=conv.name)


def _conv_operand(op_type: str):
    return Op(("Conv", "ConvTranspose"), Var("x"), Const("w"), Opt(Const("b")), name="conv")


CONV_MUL = Rule(
    "conv-mul",
    Op("Mul", _conv_operand("Mul"), Const("c"), commutative=True, name="mul"),
    check=checked_by(_conv_scaled), replace=_conv_scale_replace, exactness=REASSOCIATING,
    doc="Mul(Conv(x, W, B), s) with s per channel -> Conv(x, W*s, B*s)")

CONV_ADD = Rule(
    "conv-add",
    Op("Add", _conv_operand("Add"), Const("c"), commutative=True, name="add"),
    check=checked_by(_conv_shifted), replace=_conv_shift_replace, exactness=REASSOCIATING,
    doc="Add(Conv(x, W, B), t) with t per channel -> Conv(x, W, B+t)")


def _bn_affine(m: Match) -> tuple | str:
    bn = m.node("bn")
    if why := _old_form(bn, m.graph):
        return why
    if bn.attr("training_mode", 0):
        return "BatchNormalization in training mode"
    if any(not output_unused(o) for o in bn.outputs[1:]):
        return "BatchNormalization's running statistics are used"
    scale, bias = const_of(m["scale"]), const_of(m["bias"])
    if scale is None or bias is None or scale.ndim != 1 or bias.shape != scale.shape:
        return "BatchNormalization scale and bias are not constant vectors of one shape"
    why = _float_match(m, "scale", "c") or _float_match(m, "x", "c")
    if why:
        return why
    shape = shape_of(m["x"]) or shape_of(bn.outputs[0])
    c = _per_channel(const_of(m["c"]), None if shape is None else len(shape), scale.size)
    if isinstance(c, str):
        return c
    return scale, bias, c


def _bn_scaled(m: Match) -> tuple | str:
    """Mul(BatchNormalization(x, scale, bias, ...), s): the folded (scale*s, bias*s), or why not."""
    got = _bn_affine(m)
    if isinstance(got, str):
        return got
    scale, bias, s = got
    return _folded(("scale", scale.astype(np.float64) * s, scale.dtype),
                   ("bias", bias.astype(np.float64) * s, bias.dtype))


def _bn_shifted(m: Match) -> tuple | str:
    """Add(BatchNormalization(x, scale, bias, ...), t): the folded (scale, bias+t), or why not."""
    got = _bn_affine(m)
    if isinstance(got, str):
        return got
    scale, bias, t = got
    return _folded(("scale", scale.astype(np.float64), scale.dtype),
                   ("bias", bias.astype(np.float64) + t, bias.dtype))


def _bn_rebuild(m: Match, r, folded: tuple):
    bn = m.node("bn")
    scale, bias = folded
    sv = r.const(scale, m["scale"].name + "_scaled")
    bv = r.const(bias, m["bias"].name + "_shifted")
    attrs = {k: a.value for k, a in bn.attrs.items()}
    return r.op("BatchNormalization", m["x"], sv, bv, m["mean"], m["var"], attrs=attrs, name=bn.name)


def _bn_operand():
    return Op("BatchNormalization", Var("x"), Const("scale"), Const("bias"), Var("mean"), Var("var"), name="bn")


BN_MUL = Rule(
    "bn-mul",
    Op("Mul", _bn_operand(), Const("c"), commutative=True, name="mul"),
    check=checked_by(_bn_scaled), replace=lambda m, r: _bn_rebuild(m, r, _bn_scaled(m)), exactness=REASSOCIATING,
    doc="Mul(BatchNormalization(x, scale, bias, mean, var), s) with s per channel -> "
        "BatchNormalization(x, scale*s, bias*s, mean, var)")

BN_ADD = Rule(
    "bn-add",
    Op("Add", _bn_operand(), Const("c"), commutative=True, name="add"),
    check=checked_by(_bn_shifted), replace=lambda m, r: _bn_rebuild(m, r, _bn_shifted(m)),
    exactness=REASSOCIATING,
    doc="Add(BatchNormalization(x, scale, bias, mean, var), t) with t per channel -> "
        "BatchNormalization(x, scale, bias+t, mean, var)")

RULES = (_conv_rule("Conv", False), _conv_rule("ConvTranspose", True), GEMM_BN, CONV_MUL, CONV_ADD, BN_MUL, BN_ADD)


@register_pass
class FuseConvBN(RewritePass):
    """Fold inference BatchNormalization into Conv / ConvTranspose / Gemm weights, and per-channel constant
    Mul / Add after a Conv or a BatchNormalization into its weights, bias or scale."""

    name = "fuse-conv-bn"
    rules = RULES
    exactness = REASSOCIATING
    preserves = frozenset()
