"""Reductions: the Reduce* family and ArgMax/ArgMin.

``axes`` moved from an attribute to an input (ReduceSum at opset 13, the rest
at 18) and ``noop_with_empty_axes`` came with it; both forms are read, so a
model keeps its shapes when converted between opsets.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import DataType
from ..graph import Node
from ..types import Dim, TensorType
from .common import ABSENT, cost_with_elements, ints_from_attr_or_input, length_of_1d_input, normalize_axis
from .registry import Cost, InferenceContext, register

# flops per *input* element (the work is reading and combining every input element).
_REDUCE_FLOPS = {
    "ReduceSum": 1, "ReduceMean": 1, "ReduceMax": 1, "ReduceMin": 1, "ReduceProd": 1, "ReduceL1": 2,
    "ReduceL2": 2, "ReduceSumSquare": 2, "ReduceLogSum": 1, "ReduceLogSumExp": 3,
}
_NUMPY_REDUCE = {"ReduceSum": np.sum, "ReduceProd": np.prod, "ReduceMax": np.max, "ReduceMin": np.min}


def reduced_shape(shape: tuple[Dim, ...], axes: list[int] | None, keepdims: bool,
                  n_axes: int | None = None) -> tuple[Dim, ...] | None:
    """Shape after reducing ``axes`` (already normalized; None = unknown axes, of which
    ``n_axes`` may still be known). Unknown axes under keepdims keep the rank: a dim is
    then 1 if it was 1 (it stays 1 either way) and unknown otherwise."""
    if axes is None:
        if keepdims:
            return tuple(1 if d == 1 else None for d in shape)
        return None if n_axes is None else (None,) * (len(shape) - n_axes)
    red = set(axes)
    if keepdims:
        return tuple(1 if i in red else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in red)


def _reduction_axes(ctx: InferenceContext, attr_name: str = "axes"):
    """(axes, n_axes): normalized axes or None when unknown; the empty list means 'all'."""
    xs = ctx.input_shape(0)
    axes = ints_from_attr_or_input(ctx, attr_name, 1)
    noop = bool(ctx.attr("noop_with_empty_axes", 0))
    if axes is None:
        n = length_of_1d_input(ctx, 1)
        if n == 0:
            axes = []
        else:
            return None, n
    if axes is ABSENT or not axes:
        if noop:
            return "noop", 0
        return (list(range(len(xs))) if xs is not None else "all"), (len(xs) if xs is not None else None)
    if xs is None:
        return axes, len(axes)
    return [normalize_axis(a, len(xs), ctx) for a in axes], len(axes)


#: what a Reduce op with no axes and ``noop_with_empty_axes`` computes, for the integer values inference carries:
#: ReduceSumSquare still squares and ReduceL1 takes |x| (the identity was carried: Shape [3] through
#: ReduceSumSquare held 3 where ONNX Runtime computes 9; an outside check); ReduceL2, ReduceLogSum and
#: ReduceLogSumExp go through floats, so no value is carried
_NOOP_VALUE = {"ReduceSum": lambda v: v, "ReduceMean": lambda v: v, "ReduceMax": lambda v: v,
               "ReduceMin": lambda v: v, "ReduceProd": lambda v: v, "ReduceSumSquare": lambda v: v * v,
               "ReduceL1": np.abs}


def _infer_reduce(ctx: InferenceContext) -> list:
    """Reduced axes become 1 (keepdims=1, the default) or disappear; no axes means all of
    them, unless ``noop_with_empty_axes`` makes the op an identity."""
    x = ctx.input_type(0)
    dtype = ctx.input_dtype(0)
    keepdims = bool(ctx.attr("keepdims", 1))
    axes, n_axes = _reduction_axes(ctx)
    xs = x.shape if x is not None else None
    if axes == "noop":  # no reduction, but a composite op's elementwise step still runs (the schema's words)
        v, step = ctx.input_value(0), _NOOP_VALUE.get(ctx.node.op_type)
        if v is not None and step is not None:
            ctx.set_output_value(0, step(v).astype(v.dtype))
        return [x]
    if xs is None:
        return [TensorType(dtype, None)]
    shape = reduced_shape(xs, axes, keepdims, n_axes)  # type: ignore[arg-type]
    fn = _NUMPY_REDUCE.get(ctx.node.op_type)
    v = ctx.input_value(0)
    if fn is not None and v is not None and axes is not None and v.dtype.kind in "iu":
        ctx.set_output_value(0, np.asarray(fn(v, axis=tuple(axes), keepdims=keepdims)).astype(v.dtype))
    return [TensorType(dtype, shape)]


def _reduce_cost(node: Node) -> Cost:
    """Reduce*: macs 0; flops = input elements * (1 for sum/mean/max/min/prod/log-sum,
    2 for L1/L2/sum-square, 3 for log-sum-exp)."""
    return cost_with_elements(node, _REDUCE_FLOPS.get(node.op_type, 1), of_input=0)


register(list(_REDUCE_FLOPS), infer=_infer_reduce, cost=_reduce_cost)


def _infer_arg(ctx: InferenceContext) -> list:
    """ArgMax/ArgMin: int64 indices, ``axis`` (default 0) kept as 1 or dropped per keepdims."""
    xs = ctx.input_shape(0)
    if xs is None:
        return [TensorType(DataType.INT64, None)]
    axis = normalize_axis(int(ctx.attr("axis", 0)), len(xs), ctx)
    return [TensorType(DataType.INT64, reduced_shape(xs, [axis], bool(ctx.attr("keepdims", 1))))]


def _arg_cost(node: Node) -> Cost:
    """ArgMax/ArgMin: macs 0; flops = input elements (one compare each)."""
    return cost_with_elements(node, 1, of_input=0)


register(["ArgMax", "ArgMin"], infer=_infer_arg, cost=_arg_cost)
