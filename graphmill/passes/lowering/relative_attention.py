"""``graphmill::RelativeAttention`` in standard ONNX (opset >= 13: single-axis ``Softmax``).

The same arithmetic as the torch backend (``backends/torch/ops/attention.py``), in the same order, so ONNX
Runtime and torch agree to float rounding (the semantics are in ``ir/ops/attention.py``)::

    logits = MatMul(Q, Transpose(K)) * scale
    bias   = Transpose(Gather(table, index, axis=0), [2, 0, 1])     # [L, L, heads] -> [heads, L, L]
    out    = MatMul(Softmax(logits + bias, axis=-1), V)

``index`` is the constant ``[L, L]`` relative-position index of the node's height and width, one initializer per
size shared by the graph's nodes.
"""

from __future__ import annotations

import numpy as np

from graphmill.ir import Node
from graphmill.ir.ops.attention import (DOMAIN, OP, K, Q, TABLE, V, attention_attrs, attention_scale,
                                        relative_position_index)
from graphmill.util.errors import UserInputError

from .registry import LoweringBuilder, register_lowering


def _shared_index(b: LoweringBuilder, height: int, width: int):
    """The [L, L] index initializer of a ``height x width`` map, one per size in a graph (CoAtNet's blocks
    of one stage share it: 14 copies of 196 x 196 int64 would be 4 MB of one array)."""
    name = f"relative_position_index_{height}x{width}"
    v = b.graph.initializers.get(name)
    size = (height * width,) * 2
    if v is not None and v.const is not None and v.const.dtype.is_integer and tuple(v.const.shape) == size:
        return v
    return b.const(relative_position_index(height, width), name=name)


def lower_relative_attention(node: Node, b: LoweringBuilder) -> list:
    """graphmill::RelativeAttention -> MatMul, Mul, Gather, Transpose, Add, Softmax, MatMul."""
    a = attention_attrs(node)
    q, k, v, table = (node.inputs[i] for i in (Q, K, V, TABLE))
    qs = getattr(q.type, "shape", None)
    if qs is None or not isinstance(qs[-1], int):
        raise UserInputError(f"cannot lower {node.describe()}: the rank and head size of Q must be known "
                             "(run shape inference first)")
    rank = len(qs)
    dtype = q.type.dtype.numpy()
    kt = b.op("Transpose", k, perm=list(range(rank - 2)) + [rank - 1, rank - 2])
    logits = b.op("Mul", b.op("MatMul", q, kt), np.asarray(attention_scale(node, qs[-1]), dtype))
    index = _shared_index(b, a["height"], a["width"])
    bias = b.op("Transpose", b.op("Gather", table, index, axis=0), perm=[2, 0, 1])
    probs = b.op("Softmax", b.op("Add", logits, bias), axis=-1)
    return [b.op("MatMul", probs, v)]


register_lowering(DOMAIN, OP, lower_relative_attention, min_opset=13)
