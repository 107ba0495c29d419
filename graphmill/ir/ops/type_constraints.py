"""ONNX's type constraints between a node's inputs: inputs bound to one type parameter share one element type.

MatMul's A and B are both ``T``: a float32 activation times a float64 weight (numpy 2 turns ``w / np.sqrt(d)``
into float64 without a word) is no ONNX model, and ONNX Runtime refuses the file ("Type parameter (T) of Optype
(MatMul) bound to different types"), where graphmill's inference, ``verify`` and ``save`` let it through (an
outside check). The table lists, per standard op, the input positions bound to the op's main type parameter
(``ALL``: every input); it follows the ONNX operator schemas (onnx.defs), written out here because ``ir`` does
not import onnx. Ops it does not list are not checked (BatchNormalization, whose constraints change with the
opset, among them).
"""

from __future__ import annotations

from ..graph import Node
from ..types import TensorType

ALL = None  # every input shares one type (variadic ops, binary arithmetic)

SHARED_TYPE_INPUTS: dict[str, tuple[int, ...] | None] = {
    **dict.fromkeys(["Add", "Sub", "Mul", "Div", "Mod", "PRelu", "BitShift", "BitwiseAnd", "BitwiseOr",
                     "BitwiseXor", "Sum", "Mean", "Max", "Min", "Equal", "Less", "Greater", "LessOrEqual",
                     "GreaterOrEqual", "And", "Or", "Xor", "Concat", "Einsum", "Range"], ALL),
    "MatMul": (0, 1), "Gemm": (0, 1, 2), "Conv": (0, 1, 2), "ConvTranspose": (0, 1, 2), "Clip": (0, 1, 2),
    "Where": (1, 2), "Pad": (0, 2), "ScatterND": (0, 2), "ScatterElements": (0, 2),
    "LayerNormalization": (0, 1, 2), "InstanceNormalization": (0, 1, 2), "GroupNormalization": (0, 1, 2),
    "LSTM": (0, 1, 2, 3, 5, 6, 7), "GRU": (0, 1, 2, 3, 5), "RNN": (0, 1, 2, 3, 5),
    "Slice": (1, 2, 3, 4), "DequantizeLinear": (0, 2),
}

#: ops checked only from an opset on: below it ONNX Runtime runs a default-domain op of its own under that name
#: (its LayerNormalization takes float16 X with float32 scale and bias; a review)
SINCE_OPSET = {"LayerNormalization": 17}


def mismatched_input_types(node: Node, opset: int) -> str | None:
    """Why ``node``'s inputs break their shared type parameter (two known element types differ), or None.
    Only tensors of known element type are compared; a standard op only (a custom domain has its own rules), at
    the graph's ``opset``."""
    if (node.domain or "") not in ("", "ai.onnx") or node.op_type not in SHARED_TYPE_INPUTS:
        return None
    if opset < SINCE_OPSET.get(node.op_type, 0):
        return None
    positions = SHARED_TYPE_INPUTS[node.op_type]
    first: tuple[int, object] | None = None
    for i, v in enumerate(node.inputs):
        if v is None or positions is not None and i not in positions:
            continue
        t = v.type
        if not isinstance(t, TensorType) or not t.dtype:
            continue
        if first is None:
            first = (i, v)
        elif t.dtype != first[1].type.dtype:
            j, u = first
            return (f"{node.describe()}: input {i} (%{v.name}) is {t.dtype.short_name} but input {j} (%{u.name}) "
                    f"is {u.type.dtype.short_name}; {node.op_type} takes one element type for both (ONNX Runtime "
                    "refuses the model)")
    return None
