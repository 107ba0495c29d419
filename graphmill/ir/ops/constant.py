"""Ops that make tensors or change element types: Constant, ConstantOfShape, Cast, CastLike,
Range, EyeLike.

Constant and ConstantOfShape are where most shape values start, and Cast and
Range where exporters transform them, so all of these propagate small integer
values.
"""

from __future__ import annotations

import math

import numpy as np

from ..attrs import AttrKind
from ..dtypes import DataType
from ..graph import Node
from ..tensor import SparseTensor, Tensor
from ..types import TensorType
from .common import cost_with_elements, length_of_1d_input, movement_cost
from .registry import MAX_PROPAGATED_ELEMENTS, Cost, InferenceContext, register


def _infer_constant(ctx: InferenceContext) -> list:
    """The type of whichever ``value*`` attribute is set (exactly one must be)."""
    attrs = ctx.node.attrs
    if "value" in attrs and isinstance(attrs["value"].value, Tensor):
        t = attrs["value"].value
        if t.size <= MAX_PROPAGATED_ELEMENTS and t.dtype.is_integer:
            ctx.set_output_value(0, t.numpy())
        return [TensorType(t.dtype, t.shape)]
    if "sparse_value" in attrs and isinstance(attrs["sparse_value"].value, SparseTensor):
        st = attrs["sparse_value"].value
        return [TensorType(st.dtype, st.dims)]
    if "value_int" in attrs:
        ctx.set_output_value(0, np.array(int(attrs["value_int"].value), dtype=np.int64))
        return [TensorType(DataType.INT64, ())]
    if "value_ints" in attrs:
        ints = [int(x) for x in attrs["value_ints"].value]
        ctx.set_output_value(0, np.array(ints, dtype=np.int64))
        return [TensorType(DataType.INT64, (len(ints),))]
    if "value_float" in attrs:
        return [TensorType(DataType.FLOAT, ())]
    if "value_floats" in attrs:
        return [TensorType(DataType.FLOAT, (len(attrs["value_floats"].value),))]
    if "value_string" in attrs:
        return [TensorType(DataType.STRING, ())]
    if "value_strings" in attrs:
        return [TensorType(DataType.STRING, (len(attrs["value_strings"].value),))]
    raise ctx.fail("no value attribute (value, value_int(s), value_float(s), value_string(s), sparse_value)")


register("Constant", infer=_infer_constant, cost=movement_cost)


def _infer_constant_of_shape(ctx: InferenceContext) -> list:
    """Shape from the input's (possibly symbolic) value; element type of the ``value``
    attribute (float32 zero by default)."""
    a = ctx.node.attrs.get("value")
    fill = a.value if a is not None and a.kind == AttrKind.TENSOR else None
    dtype = fill.dtype if fill is not None else DataType.FLOAT
    p = ctx.input_partial(0)
    if p is None:
        n = length_of_1d_input(ctx, 0)
        return [TensorType(dtype, None if n is None else (None,) * n)]
    dims = tuple(int(d) if isinstance(d, (int, np.integer)) else d for d in p.ravel())
    if any(isinstance(d, int) and d < 0 for d in dims):
        raise ctx.fail(f"negative dim in shape {list(dims)}")
    if fill is not None and dtype.is_integer and all(isinstance(d, int) for d in dims):
        if math.prod(dims) <= MAX_PROPAGATED_ELEMENTS:  # type: ignore[arg-type]
            ctx.set_output_value(0, np.full(dims, fill.numpy().ravel()[0], dtype=fill.numpy().dtype))
    return [TensorType(dtype, dims)]


register("ConstantOfShape", infer=_infer_constant_of_shape, cost=movement_cost)


# The largest integer each floating type holds exactly (every smaller one too): a shape value cast
# to float and back is itself only below it.
EXACT_INT_LIMIT = {DataType.FLOAT16: 2**11, DataType.BFLOAT16: 2**8, DataType.FLOAT: 2**24, DataType.DOUBLE: 2**53}
# Symbolic dims (sizes of real tensors) are taken to fit float32 and double exactly, as onnx's data
# propagation takes them to fit any type; float16 and bfloat16 drop them (a 4097-token sequence).
SYMBOLS_SURVIVE = (DataType.FLOAT, DataType.DOUBLE)
# Integer casts: a symbolic dim is taken to fit 32 bits (as it is taken to fit float32 above); 8- and 16-bit
# types drop it, since a Cast to them wraps a 257-element dim to 1 (int8) and the symbol would claim 257.
INT_SYMBOLS_SURVIVE = (DataType.INT32, DataType.UINT32, DataType.INT64, DataType.UINT64)


def _cast_to(ctx: InferenceContext, dtype: DataType) -> list:
    """Same shape, element type ``dtype``; shape values go along (symbolic entries included):
    integer to integer, integer to float (kept exact, as an object value), float back to integer."""
    t = ctx.input_type(0)
    src = ctx.input_dtype(0)
    if dtype.is_integer or dtype == DataType.BOOL:
        v = ctx.input_value(0)
        try:
            np_dtype = dtype.numpy()
        except TypeError:
            np_dtype = None
        if v is not None and np_dtype is not None and v.dtype.kind in "iufb" and np.all(np.isfinite(v)):
            ctx.set_output_value(0, v.astype(np_dtype))
        elif v is None and dtype.is_integer and np_dtype is not None:
            p = ctx.input_partial(0)
            if p is not None:  # int -> int, or a float-cast shape back to int: known entries wrap as the cast does
                keep = [_cast_int(d, np_dtype) if isinstance(d, int) else d if dtype in INT_SYMBOLS_SURVIVE else None
                        for d in p.ravel()]
                ctx.set_output_partial(0, np.array(keep, dtype=object).reshape(p.shape), np_dtype)
    elif dtype in EXACT_INT_LIMIT and (src.is_integer or src in EXACT_INT_LIMIT):
        p = ctx.input_partial(0)
        if p is not None:
            limit = EXACT_INT_LIMIT[dtype]
            keep = [d if (isinstance(d, int) and abs(d) <= limit) or (isinstance(d, str) and dtype in SYMBOLS_SURVIVE)
                    else None for d in p.ravel()]
            ctx.set_output_partial(0, np.array(keep, dtype=object).reshape(p.shape), object)
    return [TensorType(dtype, t.shape if t is not None else None)]


def _cast_int(d: int, np_dtype) -> int:
    """An integer entry as a Cast to ``np_dtype`` leaves it (two's-complement wrap, as ONNX Runtime's)."""
    return int(np.array(d & (2**64 - 1), dtype=np.uint64).astype(np_dtype))  # uint64's 2^63.. included


def _infer_cast(ctx: InferenceContext) -> list:
    """Same shape, element type ``to``."""
    return _cast_to(ctx, ctx.dtype_attr("to"))


def _infer_cast_like(ctx: InferenceContext) -> list:
    """Same shape, element type of ``target_type`` (input 1)."""
    return _cast_to(ctx, ctx.input_dtype(1))


def _cast_cost(node: Node) -> Cost:
    """Cast/CastLike: macs 0; flops ~ 1 per element (a conversion)."""
    return cost_with_elements(node, 1)


register("Cast", infer=_infer_cast, cost=_cast_cost)
register("CastLike", infer=_infer_cast_like, cost=_cast_cost)


def _scalar(ctx: InferenceContext, i: int):
    """A one-element input's value: a constant, or a shape entry even when cast to float (``torch.arange(n)``
    of a float ``n`` taken from a shape exports as ``Range(0.0, Cast(Gather(Shape(x))), 1.0)``)."""
    v = ctx.input_value(i)
    if v is None:
        v = ctx.input_partial(i)
        if v is None or v.size != 1 or not isinstance(v.ravel()[0], (int, np.integer)):
            return None
    if v.size != 1:
        return None
    return v.ravel()[0]


def _infer_range(ctx: InferenceContext) -> list:
    """1-D of max(ceil((limit - start) / delta), 0) elements of start's type."""
    dtype = ctx.input_dtype(0)
    start, limit, delta = _scalar(ctx, 0), _scalar(ctx, 1), _scalar(ctx, 2)
    if start is None or limit is None or delta is None:
        return [TensorType(dtype, (None,))]
    if delta == 0:
        raise ctx.fail("delta cannot be 0")
    n = max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0)
    if dtype.is_integer and n <= MAX_PROPAGATED_ELEMENTS:
        ctx.set_output_value(0, (int(start) + int(delta) * np.arange(n, dtype=np.int64)).astype(dtype.numpy()))
    return [TensorType(dtype, (n,))]


register("Range", infer=_infer_range, cost=movement_cost)


def _infer_eye_like(ctx: InferenceContext) -> list:
    """The input's 2-D shape; element type ``dtype`` or the input's."""
    d = ctx.dtype_attr("dtype")
    return [TensorType(d if d is not None else ctx.input_dtype(0), ctx.input_shape(0))]


register("EyeLike", infer=_infer_eye_like, cost=movement_cost)
