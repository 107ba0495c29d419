"""Elementwise ops: arithmetic with broadcasting, comparisons, activations."""

from __future__ import annotations

import numpy as np

from ..dtypes import DataType
from ..types import TensorType
from .common import broadcast_shapes, elementwise_cost, same_as_input
from .registry import InferenceContext, register

_BINARY_ARITH = ["Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "PRelu",
                 "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor"]
_COMPARE = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"]


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX integer Div truncates toward zero (C semantics), unlike numpy's floor division."""
    if np.any(b == 0):
        raise ZeroDivisionError
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q).astype(np.result_type(a, b))


_NUMPY_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _int_div, "Max": np.maximum,
                 "Min": np.minimum}


def _broadcast(ctx: InferenceContext):
    shapes = [ctx.input_shape(i) for i in range(ctx.num_inputs) if ctx.has_input(i)]
    try:
        return broadcast_shapes(shapes)
    except ValueError as e:
        raise ctx.fail(str(e)) from None


def _infer_arith(ctx: InferenceContext):
    dtype = next((ctx.input_dtype(i) for i in range(ctx.num_inputs) if ctx.input_dtype(i)), DataType.UNDEFINED)
    shape = _broadcast(ctx)
    fn = _NUMPY_BINARY.get(ctx.node.op_type)
    if fn is not None and ctx.num_inputs == 2:  # shape arithmetic (e.g. H*W) stays known
        a, b = ctx.input_value(0), ctx.input_value(1)
        if a is not None and b is not None and a.dtype.kind in "iu" and b.dtype.kind in "iu":
            try:
                ctx.set_output_value(0, fn(a, b))
            except ZeroDivisionError:
                pass  # the value stays unknown; the type does not depend on it
    return [TensorType(dtype, shape)]


def _infer_compare(ctx: InferenceContext):
    return [TensorType(DataType.BOOL, _broadcast(ctx))]


def _infer_where(ctx: InferenceContext):
    return [TensorType(ctx.input_dtype(1) or ctx.input_dtype(2), _broadcast(ctx))]


register(_BINARY_ARITH, infer=_infer_arith, cost=elementwise_cost())
register(_COMPARE, infer=_infer_compare, cost=elementwise_cost())
register("Where", infer=_infer_where, cost=elementwise_cost())

# Unary ops whose output has the input's type. Cost: flops per element, a rough
# count of arithmetic operations (transcendentals count as one).
_UNARY = {
    "Relu": 1, "LeakyRelu": 2, "Sigmoid": 4, "Tanh": 4, "HardSigmoid": 3, "HardSwish": 4, "Gelu": 8,
    "Erf": 4, "Elu": 3, "Selu": 3, "Celu": 3, "Softplus": 3, "Softsign": 2, "Mish": 6, "ThresholdedRelu": 1,
    "Abs": 1, "Neg": 1, "Exp": 1, "Log": 1, "Sqrt": 1, "Reciprocal": 1, "Floor": 1, "Ceil": 1, "Round": 1,
    "Sign": 1, "Sin": 1, "Cos": 1, "Tan": 1, "Asin": 1, "Acos": 1, "Atan": 1, "Sinh": 1, "Cosh": 1,
    "Asinh": 1, "Acosh": 1, "Atanh": 1, "Clip": 2, "Shrink": 2, "BitwiseNot": 1,
    "Swish": 5,
}
for _op, _flops in _UNARY.items():
    register(_op, infer=same_as_input(0), cost=elementwise_cost(_flops))


_NUMPY_UNARY = {"Neg": np.negative, "Abs": np.abs}


def _infer_int_unary(ctx: InferenceContext):
    """Neg/Abs keep integer shape values known (e.g. an axis count negated for a Slice)."""
    v = ctx.input_value(0)
    if v is not None and v.dtype.kind in "iu":
        ctx.set_output_value(0, _NUMPY_UNARY[ctx.node.op_type](v))
    return [ctx.input_type(0)]


register(list(_NUMPY_UNARY), infer=_infer_int_unary)


def _infer_not(ctx: InferenceContext):
    return [TensorType(DataType.BOOL, ctx.input_shape(0))]


def _infer_isx(ctx: InferenceContext):
    return [TensorType(DataType.BOOL, ctx.input_shape(0))]


register("Not", infer=_infer_not, cost=elementwise_cost())
register(["IsNaN", "IsInf"], infer=_infer_isx, cost=elementwise_cost())
