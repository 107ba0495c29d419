"""Shape-manipulating ops: Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Shape, Size,
Expand, Tile, Identity, DepthToSpace, SpaceToDepth.

They move data without computing on it, so besides types they carry *values*
through: Shape turns a (possibly symbolic) shape into a value, and Reshape,
Squeeze, Unsqueeze, Identity pass values on, which is what lets exporter-made
shape subgraphs (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) resolve.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ..dtypes import DataType
from ..types import Dim, TensorType
from .common import (
    ABSENT,
    broadcast_shapes,
    dims_product,
    ints_from_attr_or_input,
    length_of_1d_input,
    movement_cost,
    normalize_axis,
)
from .registry import InferenceContext, partial_dtype, register


def symbolic_product(dims) -> Dim:
    """Product of dims: an int if all are ints, a symbol if exactly one symbol times ints
    multiplying to 1, otherwise unknown (None)."""
    n, syms = 1, []
    for d in dims:
        if isinstance(d, int):
            n *= d
        elif isinstance(d, str):
            syms.append(d)
        else:
            return None
    if not syms:
        return n
    return syms[0] if len(syms) == 1 and n == 1 else None


def _pass_partial(ctx: InferenceContext, out_shape, src: int = 0) -> None:
    """Forward input ``src``'s (partial) value reshaped to ``out_shape`` when that is static."""
    p = ctx.input_partial(src)
    if p is not None and out_shape is not None and all(isinstance(d, int) for d in out_shape):
        if int(np.prod(out_shape, dtype=np.int64)) == p.size:
            ctx.set_output_partial(0, p.reshape(out_shape), partial_dtype(ctx.input_dtype(src)))


# -- Reshape ---------------------------------------------------------------------------------


def _target_shape(ctx: InferenceContext):
    """The requested shape as a list of int / symbol / None entries, or None when unknown."""
    attr = ctx.attr("shape")  # opset 1-4
    if attr is not None:
        return [int(d) for d in attr]
    p = ctx.input_partial(1)
    if p is None:
        return None
    return [int(d) if isinstance(d, (int, np.integer)) else d for d in p.ravel()]


def reshape_dims(in_shape, target: list, allowzero: bool) -> tuple[Dim, ...]:
    """ONNX Reshape: 0 copies the input dim (unless ``allowzero``), -1 takes what is left.

    The -1 dim is solved symbolically: input dims copied through a 0 cancel
    themselves, equal symbols on both sides cancel, and what remains must be
    ints (or one symbol over nothing) to give a known size. Raises ValueError
    on a contradiction between known sizes.
    """
    if sum(1 for d in target if d == -1) > 1:
        raise ValueError(f"more than one -1 in the target shape {target}")
    out: list[Dim] = []
    copied: set[int] = set()
    for i, d in enumerate(target):
        if isinstance(d, int) and d == 0 and not allowzero:
            if in_shape is None:
                out.append(None)
            elif i >= len(in_shape):
                raise ValueError(f"target shape {target} copies dim {i} of a rank-{len(in_shape)} input")
            else:
                out.append(in_shape[i])
                copied.add(i)
        elif isinstance(d, int) and d < -1:
            raise ValueError(f"invalid target dim {d}")
        else:
            out.append(d)
    if -1 not in out:
        _check_total(in_shape, out)
        return tuple(out)
    k = out.index(-1)
    if in_shape is None:
        out[k] = None
        return tuple(out)
    num = [d for i, d in enumerate(in_shape) if i not in copied]
    den = [d for i, d in enumerate(out) if i != k and i not in copied]
    if any(d is None for d in num) or any(d is None for d in den):
        out[k] = None
        return tuple(out)
    num_syms = Counter(d for d in num if isinstance(d, str))
    den_syms = Counter(d for d in den if isinstance(d, str))
    common = num_syms & den_syms
    num_syms -= common
    den_syms -= common
    ni = int(np.prod([d for d in num if isinstance(d, int)], dtype=np.int64))
    di = int(np.prod([d for d in den if isinstance(d, int)], dtype=np.int64))
    if den_syms:
        out[k] = None
    elif not num_syms:
        if di == 0:
            if ni != 0:
                raise ValueError(f"cannot reshape {list(in_shape)} to {target}")
            out[k] = None
        elif ni % di:
            raise ValueError(f"cannot reshape {list(in_shape)} ({ni} elements) to {target}")
        else:
            out[k] = ni // di
    elif sum(num_syms.values()) == 1 and ni == di:
        out[k] = next(iter(num_syms))
    else:
        out[k] = None
    return tuple(out)


def _check_total(in_shape, out) -> None:
    a = dims_product(in_shape) if in_shape is not None else None
    b = dims_product(out)
    if a is not None and b is not None and a != b:
        raise ValueError(f"cannot reshape {list(in_shape)} ({a} elements) to {list(out)} ({b} elements)")


def _infer_reshape(ctx: InferenceContext) -> list:
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    target = _target_shape(ctx)
    if target is None:
        n = length_of_1d_input(ctx, 1)
        return [TensorType(dtype, None if n is None else (None,) * n)]
    try:
        shape = reshape_dims(xs, target, bool(ctx.attr("allowzero", 0)))
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    _pass_partial(ctx, shape)
    return [TensorType(dtype, shape)]


register("Reshape", infer=_infer_reshape, cost=movement_cost)


def _infer_flatten(ctx: InferenceContext) -> list:
    """[prod(dims[:axis]), prod(dims[axis:])]; axis defaults to 1 and may be negative."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    if xs is None:
        return [TensorType(dtype, (None, None))]
    axis = int(ctx.attr("axis", 1))
    if axis < 0:
        axis += len(xs)
    if not 0 <= axis <= len(xs):
        raise ctx.fail(f"axis {ctx.attr('axis', 1)} is out of range for rank {len(xs)}")
    shape = (symbolic_product(xs[:axis]), symbolic_product(xs[axis:]))
    _pass_partial(ctx, shape)
    return [TensorType(dtype, shape)]


register("Flatten", infer=_infer_flatten, cost=movement_cost)


def _infer_transpose(ctx: InferenceContext) -> list:
    """Dims permuted by ``perm`` (default: reversed)."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    perm = ctx.attr("perm")
    if xs is None:
        return [TensorType(dtype, None if perm is None else (None,) * len(perm))]
    perm = list(range(len(xs)))[::-1] if perm is None else [int(p) for p in perm]
    if sorted(normalize_axis(p, len(xs), ctx) for p in perm) != list(range(len(xs))):
        raise ctx.fail(f"perm {perm} is not a permutation of the {len(xs)} axes")
    perm = [normalize_axis(p, len(xs), ctx) for p in perm]
    p = ctx.input_partial(0)
    if p is not None and p.ndim == len(perm):
        ctx.set_output_partial(0, np.transpose(p, perm), partial_dtype(dtype))
    return [TensorType(dtype, tuple(xs[i] for i in perm))]


register("Transpose", infer=_infer_transpose, cost=movement_cost)


# -- Squeeze / Unsqueeze ------------------------------------------------------------------


def _infer_squeeze(ctx: InferenceContext) -> list:
    """Remove the listed size-1 axes (attribute before opset 13, input after); with no axes,
    every dim that is 1 -- which needs every dim known."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    axes = ints_from_attr_or_input(ctx, "axes", 1)
    if axes is None:
        n = length_of_1d_input(ctx, 1)
        rank = None if xs is None or n is None else len(xs) - n
        return [TensorType(dtype, None if rank is None else (None,) * rank)]
    if xs is None:
        return [TensorType(dtype, None)]
    if axes is ABSENT or not axes:
        if not all(isinstance(d, int) for d in xs):
            return [TensorType(dtype, None)]
        shape = tuple(d for d in xs if d != 1)
    else:
        norm = {normalize_axis(a, len(xs), ctx) for a in axes}
        for a in norm:
            if isinstance(xs[a], int) and xs[a] != 1:
                raise ctx.fail(f"cannot squeeze axis {a} of size {xs[a]}")
        shape = tuple(d for i, d in enumerate(xs) if i not in norm)
    _pass_partial(ctx, shape)
    return [TensorType(dtype, shape)]


def _infer_unsqueeze(ctx: InferenceContext) -> list:
    """Insert size-1 axes at ``axes`` (positions in the *output*, attribute before opset 13)."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    axes = ints_from_attr_or_input(ctx, "axes", 1)
    if axes is None or axes is ABSENT:
        if axes is ABSENT:
            raise ctx.fail("axes are required")
        n = length_of_1d_input(ctx, 1)
        rank = None if xs is None or n is None else len(xs) + n
        return [TensorType(dtype, None if rank is None else (None,) * rank)]
    if xs is None:
        return [TensorType(dtype, None)]
    rank = len(xs) + len(axes)
    norm = sorted(normalize_axis(a, rank, ctx) for a in axes)
    if len(set(norm)) != len(norm):
        raise ctx.fail(f"repeated axes {axes}")
    it = iter(xs)
    shape = tuple(1 if i in norm else next(it) for i in range(rank))
    _pass_partial(ctx, shape)
    return [TensorType(dtype, shape)]


register("Squeeze", infer=_infer_squeeze, cost=movement_cost)
register("Unsqueeze", infer=_infer_unsqueeze, cost=movement_cost)


# -- Shape / Size / Identity ----------------------------------------------------------------


def _infer_shape(ctx: InferenceContext) -> list:
    """int64 [k]: the input's dims from ``start`` to ``end`` (opset 15, clamped like slicing).
    The (possibly symbolic) dims become the output's value."""
    xs = ctx.input_shape(0)
    if xs is None:
        return [TensorType(DataType.INT64, (None,))]
    r = len(xs)
    start = int(ctx.attr("start", 0))
    end = ctx.attr("end")
    end = r if end is None else int(end)
    start = min(max(start + r if start < 0 else start, 0), r)
    end = min(max(end + r if end < 0 else end, 0), r)
    dims = list(xs[start:end]) if end > start else []
    ctx.set_output_partial(0, np.array(dims, dtype=object).reshape(len(dims)))
    return [TensorType(DataType.INT64, (len(dims),))]


def _infer_size(ctx: InferenceContext) -> list:
    """int64 scalar: the element count, also propagated as a value when static."""
    xs = ctx.input_shape(0)
    n = dims_product(xs) if xs is not None else None
    if n is not None:
        ctx.set_output_value(0, np.array(n, dtype=np.int64))
    return [TensorType(DataType.INT64, ())]


def _infer_identity(ctx: InferenceContext) -> list:
    """The input's type, whatever it is (tensor, sequence, optional), and its value."""
    v = ctx.input(0)
    p = ctx.input_partial(0)
    if p is not None:
        ctx.set_output_partial(0, p, partial_dtype(ctx.input_dtype(0)))
    return [v.type if v is not None else None]


register("Shape", infer=_infer_shape, cost=movement_cost)
register("Size", infer=_infer_size, cost=movement_cost)
register("Identity", infer=_infer_identity, cost=movement_cost)


# -- Expand / Tile ----------------------------------------------------------------------------


def _infer_expand(ctx: InferenceContext) -> list:
    """Broadcast of the input shape with the requested shape (either side may be larger)."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    p = ctx.input_partial(1)
    if p is None:
        n = length_of_1d_input(ctx, 1)
        if xs is None or n is None:
            return [TensorType(dtype, None)]
        target = (None,) * n
    else:
        target = tuple(int(d) if isinstance(d, (int, np.integer)) else d for d in p.ravel())
    if xs is None:
        return [TensorType(dtype, (None,) * len(target))]
    try:
        shape = _broadcast_with_unknown(xs, target)
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    if shape is not None and all(isinstance(d, int) for d in shape) and math.prod(shape) <= 1024:
        v, p = ctx.input_value(0), ctx.input_partial(0)
        if v is not None and v.dtype.kind == "b":
            ctx.set_output_value(0, np.broadcast_to(v, shape).copy())
        elif p is not None:  # a shape value broadcast (symbolic entries too)
            ctx.set_output_partial(0, np.broadcast_to(p, shape).copy(), partial_dtype(dtype))
    return [TensorType(dtype, shape)]


def _broadcast_with_unknown(a, b):
    """Broadcast where an unknown requested dim against a known input dim d != 1 must be d."""
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if y is None and isinstance(x, int) and x != 1:
            out.append(x)
        elif x is None and isinstance(y, int) and y != 1:
            out.append(y)
        else:
            out.append(broadcast_shapes([(x,), (y,)])[0])  # type: ignore[index]
    return tuple(out)


def _infer_tile(ctx: InferenceContext) -> list:
    """Each dim times its repeat (opset 6+: ``repeats`` input; opset 1: tiles and axis inputs)."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    if xs is None:
        return [TensorType(dtype, None)]
    if ctx.num_inputs >= 3:  # Tile-1: (input, tiles, axis)
        tiles, axis = ctx.input_value(1), ctx.input_value(2)
        if tiles is None or axis is None:
            return [TensorType(dtype, (None,) * len(xs))]
        reps = [1] * len(xs)
        reps[normalize_axis(int(np.asarray(axis).ravel()[0]), len(xs), ctx)] = int(np.asarray(tiles).ravel()[0])
    else:
        r = ctx.input_value(1)
        if r is None:
            return [TensorType(dtype, tuple(d if d == 0 else None for d in xs))]
        reps = [int(x) for x in np.asarray(r).ravel()]
    if len(reps) != len(xs):
        raise ctx.fail(f"{len(reps)} repeats for a rank-{len(xs)} input")
    shape = tuple(d * k if isinstance(d, int) else (d if k == 1 else None) for d, k in zip(xs, reps))
    v = ctx.input_value(0)
    if v is not None and all(isinstance(d, int) for d in shape) and int(np.prod(shape, dtype=np.int64)) <= 1024:
        ctx.set_output_value(0, np.tile(v, reps))
    return [TensorType(dtype, shape)]


register("Expand", infer=_infer_expand, cost=movement_cost)
register("Tile", infer=_infer_tile, cost=movement_cost)


# -- DepthToSpace / SpaceToDepth ---------------------------------------------------------------


def _div(d: Dim, k: int) -> Dim:
    if isinstance(d, int):
        return d // k
    return d if k == 1 else None


def _mul(d: Dim, k: int) -> Dim:
    if isinstance(d, int):
        return d * k
    return d if k == 1 else None


def _infer_depth_to_space(ctx: InferenceContext) -> list:
    """[N, C/b^2, H*b, W*b]."""
    xs = ctx.input_shape(0)
    b = int(ctx.attr("blocksize"))
    if xs is None:
        return [TensorType(ctx.input_dtype(0), (None,) * 4)]
    if len(xs) != 4:
        raise ctx.fail(f"input must be 4-D, got rank {len(xs)}")
    if isinstance(xs[1], int) and xs[1] % (b * b):
        raise ctx.fail(f"{xs[1]} channels are not divisible by blocksize^2 = {b * b}")
    return [TensorType(ctx.input_dtype(0), (xs[0], _div(xs[1], b * b), _mul(xs[2], b), _mul(xs[3], b)))]


def _infer_space_to_depth(ctx: InferenceContext) -> list:
    """[N, C*b^2, H/b, W/b]."""
    xs = ctx.input_shape(0)
    b = int(ctx.attr("blocksize"))
    if xs is None:
        return [TensorType(ctx.input_dtype(0), (None,) * 4)]
    if len(xs) != 4:
        raise ctx.fail(f"input must be 4-D, got rank {len(xs)}")
    for d in xs[2:]:
        if isinstance(d, int) and d % b:
            raise ctx.fail(f"spatial size {d} is not divisible by blocksize {b}")
    return [TensorType(ctx.input_dtype(0), (xs[0], _mul(xs[1], b * b), _div(xs[2], b), _div(xs[3], b)))]


register("DepthToSpace", infer=_infer_depth_to_space, cost=movement_cost)
register("SpaceToDepth", infer=_infer_space_to_depth, cost=movement_cost)
