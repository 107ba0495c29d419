"""Relative attention, ``graphmill::RelativeAttention`` (CoAtNet, Dai et al. 2021, eq. 3; Swin's and MaxViT's
relative position bias).

Scaled dot-product attention over the ``L = height * width`` positions of a 2-D map whose logits get a
learned bias that depends only on the *relative* position of query and key:

    out = softmax(scale * Q K^T + B) V,   B[h, i, j] = table[index[i, j], h],
    index[i, j] = (y_i - y_j + height - 1) * (2 width - 1) + (x_i - x_j + width - 1)

for positions ``i = y_i * width + x_i`` in row-major order, so the table has ``(2 height - 1) (2 width - 1)``
rows, one per relative offset, and one column per head. One op holds the layer so that passes, ``inspect``'s
MAC count and the simulator see it as attention; ``passes/lowering/relative_attention.py`` writes it in
standard ONNX (the bias is a ``Gather`` of the table by the constant ``index``, transposed, and an ``Add``
to the logits before ``Softmax``) and ``backends/torch/ops/attention.py`` runs and trains it.

====  =======  =========================================  ==========================================
 in    name     shape                                      meaning
====  =======  =========================================  ==========================================
 0     Q        [..., heads, L, d]                         queries
 1     K        [..., heads, L, d]                         keys
 2     V        [..., heads, L, dv]                        values
 3     table    [(2 height - 1) (2 width - 1), heads]      the learned bias per relative offset
====  =======  =========================================  ==========================================

Attributes: ``height``, ``width`` (>= 1, ``height * width = L``), ``scale`` (default ``1 / sqrt(d)``).
Output: ``[..., heads, L, dv]``. Cost: MACs of the two products, ``batch heads L L (d + dv)``; flops twice
that plus ~7 per logit (scale, bias add, softmax's exp/sum/divide); ``params`` counts the table.
"""

from __future__ import annotations

import math

import numpy as np

from ..graph import Node
from ..types import TensorType
from .common import io_cost
from .nn import matmul_macs, unknown_cost, value_shape
from .registry import Cost, InferenceContext, register

DOMAIN = "graphmill"
OP = "RelativeAttention"
Q, K, V, TABLE = 0, 1, 2, 3
#: flops per attention logit besides the products: scale, bias add, softmax (max, exp, sum, divide) ~ 7
LOGIT_FLOPS = 7


def relative_position_index(height: int, width: int) -> np.ndarray:
    """``index[i, j]``: the table row of query ``i`` and key ``j`` (row-major positions), int64 [L, L]."""
    ys, xs = np.divmod(np.arange(height * width, dtype=np.int64), width)
    dy = ys[:, None] - ys[None, :] + (height - 1)
    dx = xs[:, None] - xs[None, :] + (width - 1)
    return dy * (2 * width - 1) + dx


def table_rows(height: int, width: int) -> int:
    """Rows of the bias table: one per relative offset, ``(2 height - 1) (2 width - 1)``."""
    return (2 * height - 1) * (2 * width - 1)


def attention_attrs(node: Node) -> dict:
    """``height``, ``width`` and ``scale`` (None: ``1 / sqrt(d)``) of a RelativeAttention node."""
    scale = node.attr("scale", None)
    return dict(height=int(node.attr("height", 0)), width=int(node.attr("width", 0)),
                scale=None if scale is None else float(scale))


def attention_scale(node: Node, head_dim: int) -> float:
    """The logit scale: the ``scale`` attribute, else ``1 / sqrt(head_dim)``."""
    s = attention_attrs(node)["scale"]
    return 1.0 / math.sqrt(head_dim) if s is None else s


def _infer(ctx: InferenceContext) -> list:
    a = attention_attrs(ctx.node)
    h, w = a["height"], a["width"]
    if h < 1 or w < 1:
        raise ctx.fail(f"height={h} and width={w} must be >= 1")
    q, k, v, t = (ctx.input_shape(i) for i in (Q, K, V, TABLE))
    dtype = ctx.input_dtype(V) or ctx.input_dtype(Q)
    for name, s in (("Q", q), ("K", k), ("V", v)):
        if s is not None and len(s) < 3:  # the [L, L, heads] bias needs a heads axis to broadcast against
            raise ctx.fail(f"{name} has rank {len(s)}; expected [..., heads, L, d] (rank >= 3)")
        if s is not None and isinstance(s[-2], int) and s[-2] != h * w:
            raise ctx.fail(f"{name} has {s[-2]} positions; height {h} x width {w} is {h * w}")
    if q is not None and k is not None and isinstance(q[-1], int) and isinstance(k[-1], int) and q[-1] != k[-1]:
        raise ctx.fail(f"Q and K differ in head size ({q[-1]} vs {k[-1]})")
    if t is not None:
        if len(t) != 2:
            raise ctx.fail(f"the bias table has rank {len(t)}; expected [(2h-1)(2w-1), heads]")
        if isinstance(t[0], int) and t[0] != table_rows(h, w):
            raise ctx.fail(f"the bias table has {t[0]} rows; height {h}, width {w} need {table_rows(h, w)}")
        heads = q[-3] if q is not None and len(q) >= 3 else None
        if isinstance(heads, int) and isinstance(t[1], int) and t[1] != heads:
            raise ctx.fail(f"the bias table has {t[1]} columns for {heads} heads")
    if q is None or v is None:
        return [TensorType(dtype, None)]
    return [TensorType(dtype, tuple(q[:-1]) + (v[-1],))]


def _cost(node: Node) -> Cost:
    """MACs of both products (Q·K^T and the weights times V), one per multiply-add; flops add LOGIT_FLOPS per
    logit (scale, bias add, softmax); params are the constant inputs' entries (the learned bias table)."""
    q, k, v = (value_shape(node, i) for i in (Q, K, V))
    if q is None or k is None or v is None:
        return unknown_cost(node)
    logits = matmul_macs(q, tuple(k[:-2]) + (k[-1], k[-2]))   # Q K^T
    mixed = matmul_macs(tuple(q[:-1]) + (k[-2],), v)           # P V
    if logits is None or mixed is None:
        return unknown_cost(node)
    n_logits = logits // q[-1] if isinstance(q[-1], int) and q[-1] else 0
    return io_cost(node, macs=logits + mixed, flops=2 * (logits + mixed) + LOGIT_FLOPS * n_logits)


register(OP, DOMAIN, infer=_infer, cost=_cost,
         doc="softmax(scale Q K^T + relative position bias) V over a height x width map (CoAtNet)")
