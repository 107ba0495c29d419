"""Fold an inference-mode BatchNormalization into the Conv, ConvTranspose or Gemm before it.

BN(y) = (y - mean) * s + bias with s = scale / sqrt(var + eps), per channel (axis 1). For
Conv the output channel is W's axis 0, for ConvTranspose (weights [C, M/group, k...]) axis 1
within each group, for Gemm the column of B (axis 1, or 0 with transB). The folded weights are
computed in float64 and cast back; the result is float-reassociating (the scaling happens
before the accumulation instead of after).

Legal cases: BN with one used output (no running statistics wanted), training_mode absent or 0,
every BN parameter constant; a producer whose weights (and bias, if any) are constant floats
(float16/32/64) and whose only reader is the BN; opset >= 9 (no ``spatial``/``is_test`` forms;
Gemm needs opset >= 11 for an optional C).

Refused: non-constant weights or statistics, a producer with other readers (its unscaled output
would be lost), BN in training mode or with its mean/var outputs used, unknown channel counts,
Gemm whose C is not one bias per column ([M, N] or [M, 1] biases vary along rows).
"""

from __future__ import annotations

import numpy as np

from graphmill.ir.rewrite import REASSOCIATING, Const, Match, Op, Opt, Rule, Var

from ..base import register_pass
from ..cleanup.common import FLOAT_TYPES, const_of, dtype_of, opset, output_unused
from ..rewrite_pass import RewritePass


def _bn_params(m: Match):
    bn = m.root
    if opset(m.graph) < 9:
        return "opset < 9 BatchNormalization (spatial / is_test forms)"
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


def _conv_check(m: Match, transpose: bool) -> str | None:
    p = _bn_params(m)
    if isinstance(p, str):
        return p
    w = _weights(m)
    if isinstance(w, str):
        return w
    w, _ = w
    s, _ = p
    group = int(m.node("conv").attr("group", 1))
    channels = w.shape[0] if not transpose else w.shape[1] * group
    if w.ndim < 3 or channels != s.size:
        return f"BatchNormalization has {s.size} channels, the convolution {channels}"
    return None


def _conv_replace(m: Match, r, transpose: bool):
    s, shift = _bn_params(m)
    w, b = _weights(m)
    conv = m.node("conv")
    group = int(conv.attr("group", 1))
    w64 = w.astype(np.float64)
    if not transpose:
        w_new = w64 * s.reshape((-1,) + (1,) * (w.ndim - 1))
    else:
        c, mg = w.shape[0], w.shape[1]
        g = w64.reshape((group, c // group, mg) + w.shape[2:])
        g = g * s.reshape((group, 1, mg) + (1,) * (w.ndim - 2))
        w_new = g.reshape(w.shape)
    b64 = np.zeros(s.size) if b is None else b.astype(np.float64).reshape(-1)
    b_new = b64 * s + shift
    wv = r.const(w_new.astype(w.dtype), m["w"].name + "_bn")
    bv = r.const(b_new.astype(w.dtype), (m["b"].name if "b" in m else m["w"].name) + "_bn_bias")
    extra = list(conv.inputs[3:])  # none for Conv/ConvTranspose today; kept for safety
    return r.op(conv.op_type, m["x"], wv, bv, *extra, attrs=dict(conv.attrs), name=conv.name)


def _conv_rule(op_type: str, transpose: bool) -> Rule:
    return Rule(
        f"{op_type.lower()}-bn",
        Op("BatchNormalization",
           Op(op_type, Var("x"), Const("w"), Opt(Const("b")), name="conv"),
           Const("scale"), Const("bias"), Const("mean"), Const("var"), name="bn"),
        check=lambda m: _conv_check(m, transpose),
        replace=lambda m, r: _conv_replace(m, r, transpose),
        exactness=REASSOCIATING,
        doc=f"BatchNormalization({op_type}(x, W, B)) -> {op_type}(x, W*s, (B-mean)*s+bias)")


def _gemm_check(m: Match) -> str | None:
    if opset(m.graph) < 11:
        return "Gemm with optional C needs opset >= 11"
    p = _bn_params(m)
    if isinstance(p, str):
        return p
    w = _weights(m)
    if isinstance(w, str):
        return w
    w, c = w
    s, _ = p
    gemm = m.node("conv")
    if w.ndim != 2:
        return "B is not 2-D"
    n = w.shape[0] if gemm.attr("transB", 0) else w.shape[1]
    if n != s.size:
        return f"BatchNormalization has {s.size} channels, the Gemm {n} columns"
    if c is not None and not (c.size in (1, n) and (c.ndim < 2 or c.shape[0] == 1)):
        return f"C of shape {list(c.shape)} is not one bias per column"
    return None


def _gemm_replace(m: Match, r):
    s, shift = _bn_params(m)
    w, c = _weights(m)
    gemm = m.node("conv")
    alpha, beta = float(gemm.attr("alpha", 1.0)), float(gemm.attr("beta", 1.0))
    w64 = w.astype(np.float64)
    w_new = w64 * (s.reshape(-1, 1) if gemm.attr("transB", 0) else s.reshape(1, -1))
    c64 = np.zeros(s.size) if c is None else np.broadcast_to(c.astype(np.float64).reshape(-1), (s.size,))
    c_new = beta * c64 * s + shift
    attrs = {k: a.value for k, a in gemm.attrs.items()}
    attrs["beta"] = 1.0
    attrs["alpha"] = alpha
    wv = r.const(w_new.astype(w.dtype), m["w"].name + "_bn")
    cv = r.const(c_new.astype(w.dtype), m["w"].name + "_bn_bias")
    return r.op("Gemm", m["x"], wv, cv, attrs=attrs, name=gemm.name)


GEMM_BN = Rule(
    "gemm-bn",
    Op("BatchNormalization", Op("Gemm", Var("x"), Const("w"), Opt(Const("b")), name="conv"),
       Const("scale"), Const("bias"), Const("mean"), Const("var"), name="bn"),
    check=_gemm_check, replace=_gemm_replace, exactness=REASSOCIATING,
    doc="BatchNormalization(Gemm(A, B, C)) -> Gemm(A, B*s, (beta*C-mean)*s+bias)")

RULES = (_conv_rule("Conv", False), _conv_rule("ConvTranspose", True), GEMM_BN)


@register_pass
class FuseConvBN(RewritePass):
    """Fold inference BatchNormalization into Conv / ConvTranspose / Gemm weights."""

    name = "fuse-conv-bn"
    rules = RULES
    exactness = REASSOCIATING
    preserves = frozenset()
