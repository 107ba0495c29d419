"""Indexing ops: Concat, Split, Slice, Gather(Elements/ND), Scatter*, Pad, TopK, OneHot,
and the shape-preserving Trilu/CumSum/ReverseSequence, plus the data-dependent
Compress/NonZero.

Concat, Split, Slice and Gather pass (partial) values on, since exporters
build shapes out of them.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import DataType
from ..graph import Node
from ..types import Dim, TensorType
from .common import (
    ABSENT,
    cost_with_elements,
    ints_from_attr_or_input,
    movement_cost,
    normalize_axis,
)
from .registry import Cost, InferenceContext, partial_dtype, register

INT_BIG = 2**31 - 1  # exporters write INT_MAX / INT64_MAX for "to the end"


def _merge_dim(a: Dim, b: Dim) -> Dim:
    """Two dims that must be equal: the more precise one."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    if isinstance(a, int) and isinstance(b, int):
        raise ValueError(f"{a} != {b}")
    return a if isinstance(a, int) else b


# -- Concat -----------------------------------------------------------------------------------


def symbolic_sum(dims: list[Dim]) -> Dim:
    """The sum of sizes, symbols included, as a size expression (``P + S``, ``2*N``, ``S + 1``: what
    ``ir.summary.size_expression`` reads, and torch dynamo writes) so that a KV cache's Concat of ``past [B, P, d]``
    and ``new [B, S, d]`` is ``[B, P + S, d]``: unnamed, the exporter's own name for it (``T``, declared on the
    present output only) was a free size of its own, bound to 1, and the attention products after it were counted
    at length 1 (an outside check). None when a part is unknown."""
    if any(d is None for d in dims):
        return None
    if len(dims) == 1 or all(isinstance(d, int) for d in dims):
        return dims[0] if len(dims) == 1 else sum(dims)  # type: ignore[arg-type]
    counts: dict[str, int] = {}
    constant = 0
    for d in dims:
        terms = _sum_terms(d)
        if terms is None:  # a name that is no sum of names (``past-len``): read as arithmetic, it would be wrong
            return None
        for name, n in terms.items():
            if name:
                counts[name] = counts.get(name, 0) + n
            else:
                constant += n
    terms = [name if n == 1 else f"{n}*{name}" for name, n in sorted(counts.items())]
    return " + ".join(terms + ([str(constant)] if constant else []))


def _sum_terms(d: Dim) -> dict[str, int] | None:
    """A size as {name: count} ("" for the constant): an int, a name, or a sum ``symbolic_sum`` wrote
    (``P + S``, ``2*N + 1``, torch dynamo's ``S + P``); None for anything else."""
    if isinstance(d, int):
        return {"": d}
    out: dict[str, int] = {}
    for term in str(d).split(" + "):
        count, _, name = term.rpartition("*")
        if term.isdigit():
            out[""] = out.get("", 0) + int(term)
        elif name.isidentifier() and (not count or count.isdigit()):
            out[name] = out.get(name, 0) + (int(count) if count else 1)
        else:
            return None
    return out


def concat_shape(ctx: InferenceContext, shapes: list) -> tuple[tuple[Dim, ...] | None, int | None]:
    """(the shape of ``shapes`` (None: unknown) concatenated along ``ctx``'s ``axis``, that axis): its sizes add
    up (``symbolic_sum``), every other dim must agree."""
    known = [s for s in shapes if s is not None]
    if not known:
        return None, None
    rank = len(known[0])
    if any(len(s) != rank for s in known):
        raise ctx.fail(f"inputs have different ranks: {[list(s) for s in known]}")
    axis = normalize_axis(int(ctx.attr("axis", 1)), rank, ctx)
    out: list[Dim] = []
    for i in range(rank):
        if i == axis:
            out.append(symbolic_sum([None if s is None else s[i] for s in shapes]))
        else:
            d: Dim = None
            try:
                for s in known:
                    d = _merge_dim(d, s[i])
            except ValueError as e:
                raise ctx.fail(f"dim {i} differs between inputs: {e}") from None
            out.append(d)
    return tuple(out), axis


def _infer_concat(ctx: InferenceContext) -> list:
    """Sizes along ``axis`` add up; every other dim must agree."""
    shapes = [ctx.input_shape(i) for i in range(ctx.num_inputs) if ctx.has_input(i)]
    dtype = next((ctx.input_dtype(i) for i in range(ctx.num_inputs) if ctx.input_dtype(i)), DataType.UNDEFINED)
    out, axis = concat_shape(ctx, shapes)
    if out is None:
        return [TensorType(dtype, None)]
    rank = len(out)
    parts = [ctx.input_partial_or_unknown(i) for i in range(ctx.num_inputs) if ctx.has_input(i)]
    if parts and all(p is not None and p.ndim == rank for p in parts):
        ctx.set_output_partial(0, np.concatenate(parts, axis=axis), partial_dtype(dtype))
    elif dtype.is_floating:  # a few floats (set_output_value's limit): nn.Upsample's scales as from_torch writes
        # them, Concat of two Constants; unread, nothing after the Resize had a shape (an outside check: HRNet)
        values = [ctx.input_value(i) for i in range(ctx.num_inputs) if ctx.has_input(i)]
        if values and all(v is not None and v.ndim == rank for v in values):
            ctx.set_output_value(0, np.concatenate(values, axis=axis))
    return [TensorType(dtype, out)]


register("Concat", infer=_infer_concat, cost=movement_cost)


# -- Split ------------------------------------------------------------------------------------


def _infer_split(ctx: InferenceContext) -> list:
    """Pieces along ``axis``: the ``split`` sizes (attribute before opset 13, input after), else
    equal parts, the last one smaller when ``num_outputs`` (opset 18) does not divide the dim."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    n_out = len(ctx.node.outputs)
    if xs is None:
        return [TensorType(dtype, None) for _ in range(n_out)]
    axis = normalize_axis(int(ctx.attr("axis", 0)), len(xs), ctx)
    split = ints_from_attr_or_input(ctx, "split", 1)
    d = xs[axis]
    sizes: list[Dim]
    if split is None:
        sizes = [None] * n_out
    elif split is not ABSENT and split:
        if len(split) != n_out:
            raise ctx.fail(f"split {split} has {len(split)} entries for {n_out} outputs")
        if isinstance(d, int) and sum(split) != d:
            raise ctx.fail(f"split {split} does not add up to dim {axis} of size {d}")
        sizes = list(split)
    else:
        n = int(ctx.attr("num_outputs", n_out))
        if n != n_out:
            raise ctx.fail(f"num_outputs={n} but the node has {n_out} outputs")
        if isinstance(d, int):
            if d % n == 0:
                sizes = [d // n] * n
            else:
                if ctx.attr("num_outputs") is None:
                    raise ctx.fail(f"dim {axis} of size {d} does not split into {n} equal parts")
                part = -(-d // n)
                sizes = [part] * (n - 1) + [d - part * (n - 1)]
                if sizes[-1] < 0:  # 5 into 4: ONNX Runtime refuses it at run time, onnx's reference gives 2,2,1,0;
                    # in an If branch no run takes it is valid (the onnx corpus's affine_grid_3d_expanded), and a
                    # -1 here made such a model unsavable (an outside check): unknown sizes
                    sizes = [None] * n
        else:
            sizes = [d if n == 1 else None] * n
    outs = []
    for s in sizes:
        shape = list(xs)
        shape[axis] = s
        outs.append(TensorType(dtype, tuple(shape)))
    p = ctx.input_partial(0)
    if p is not None and all(isinstance(s, int) for s in sizes) and p.ndim == len(xs):
        pieces = np.split(p, np.cumsum(sizes[:-1]).astype(int), axis=axis)  # type: ignore[arg-type]
        for i, piece in enumerate(pieces):
            ctx.set_output_partial(i, piece, partial_dtype(dtype))
    return outs


register("Split", infer=_infer_split, cost=movement_cost)


# -- Slice ------------------------------------------------------------------------------------


def slice_bounds(d: int, start: int, end: int, step: int) -> tuple[int, int, int]:
    """Clamp (start, end) of a slice over ``d`` elements as ONNX (and numpy) do; returns
    (start, end, length)."""
    if start < 0:
        start += d
    if end < 0:
        end += d
    if step > 0:
        start = min(max(start, 0), d)
        end = min(max(end, 0), d)
        n = max(0, -(-(end - start) // step))
    else:
        start = min(max(start, 0), d - 1)
        end = min(max(end, -1), d - 1)
        n = max(0, -(-(start - end) // -step))
    return start, end, n


def _infer_slice(ctx: InferenceContext) -> list:
    """Per sliced axis, the clamped length ceil((end - start) / step); starts/ends/axes are
    attributes before opset 10 and inputs after (steps only as an input)."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    if xs is None:
        return [TensorType(dtype, None)]
    r = len(xs)
    starts = ints_from_attr_or_input(ctx, "starts", 1)
    ends = ints_from_attr_or_input(ctx, "ends", 2)
    axes = ints_from_attr_or_input(ctx, "axes", 3)
    steps = ints_from_attr_or_input(ctx, "steps", 4)
    if axes is None:
        return [TensorType(dtype, (None,) * r)]
    if ends is None:
        ends = _symbolic_ends(ctx)
    if starts is None or ends is None or steps is None:
        if axes is ABSENT:
            return [TensorType(dtype, (None,) * r)]
        norm = {normalize_axis(a, r, ctx) for a in axes}
        return [TensorType(dtype, tuple(None if i in norm else d for i, d in enumerate(xs)))]
    if starts is ABSENT or ends is ABSENT:
        raise ctx.fail("starts and ends are required")
    if axes is ABSENT:
        axes = list(range(len(starts)))
    if steps is ABSENT:
        steps = [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.fail(f"starts {starts}, ends {ends}, axes {axes}, steps {steps} differ in length")
    out = list(xs)
    index = [slice(None)] * r
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = normalize_axis(a, r, ctx)
        if st == 0:
            raise ctx.fail("slice step cannot be 0")
        d = xs[a]
        if isinstance(e, str):  # cut to a size: HF BERT's position_ids[:, :seq] of a [1, 512] table is
            # [1, Min(512, seq)], the clamp written as torch dynamo writes it (ir.summary.size_expression reads it;
            # common.broadcast_shapes knows it is seq wherever it meets seq); only a cut from 0 by 1 is sized
            clamp = 0 if d == 0 else f"Min({d}, {e})"  # an empty table cut to any length is empty
            out[a] = (e if d == e else clamp if isinstance(d, int) else None) if s == 0 and st == 1 else None
            index = None  # which entries: not known
        elif isinstance(d, int):
            b, f, n = slice_bounds(d, s, e, st)
            out[a] = n
            if index is not None:
                index[a] = slice(b, f if f >= 0 else None, st)
        else:
            whole = s == 0 and st == 1 and e >= INT_BIG
            out[a] = d if whole else None
    p = ctx.input_partial(0)
    if p is not None and p.ndim == r and index is not None:
        ctx.set_output_partial(0, p[tuple(index)], partial_dtype(dtype))
    return [TensorType(dtype, tuple(out))]


def _symbolic_ends(ctx: InferenceContext) -> list | None:
    """Slice's ends input as sizes when some are symbols (``t[:, :seq]``: an end taken from ``Shape``), else None."""
    p = ctx.input_partial(2) if ctx.has_input(2) and ctx.attr("ends") is None else None
    if p is None or p.ndim != 1 or any(e is None for e in p) or not any(isinstance(e, str) for e in p):
        return None
    return [e if isinstance(e, str) else int(e) for e in p]


register("Slice", infer=_infer_slice, cost=movement_cost)


# -- Gather family ----------------------------------------------------------------------------


def _infer_gather(ctx: InferenceContext) -> list:
    """data.shape[:axis] + indices.shape + data.shape[axis+1:]."""
    xs, ids = ctx.input_shape(0), ctx.input_shape(1)
    dtype = ctx.input_dtype(0)
    if xs is None or ids is None:
        return [TensorType(dtype, None)]
    axis = normalize_axis(int(ctx.attr("axis", 0)), len(xs), ctx)
    shape = tuple(xs[:axis]) + tuple(ids) + tuple(xs[axis + 1:])
    idx = ctx.input_value(1)
    if idx is not None and isinstance(xs[axis], int):
        d = xs[axis]
        if np.any(idx < -d) or np.any(idx >= d):
            raise ctx.fail(f"indices {idx.tolist()} are out of range for dim {axis} of size {d}")
    p = ctx.input_partial(0)
    if p is not None and idx is not None and p.ndim == len(xs):
        ctx.set_output_partial(0, np.take(p, idx.astype(np.int64), axis=axis), partial_dtype(dtype))
    return [TensorType(dtype, shape)]


def _infer_gather_elements(ctx: InferenceContext) -> list:
    """Output has the indices' shape and the data's element type."""
    return [TensorType(ctx.input_dtype(0), ctx.input_shape(1))]


def _infer_gather_nd(ctx: InferenceContext) -> list:
    """indices.shape[:-1] + data.shape[batch_dims + indices.shape[-1]:]."""
    xs, ids = ctx.input_shape(0), ctx.input_shape(1)
    dtype = ctx.input_dtype(0)
    if xs is None or ids is None or not isinstance(ids[-1], int):
        return [TensorType(dtype, None)]
    b = int(ctx.attr("batch_dims", 0))
    if b + ids[-1] > len(xs):
        raise ctx.fail(f"indices of depth {ids[-1]} with batch_dims {b} exceed data rank {len(xs)}")
    return [TensorType(dtype, tuple(ids[:-1]) + tuple(xs[b + ids[-1]:]))]


register("Gather", infer=_infer_gather, cost=movement_cost)
register("GatherElements", infer=_infer_gather_elements, cost=movement_cost)
register("GatherND", infer=_infer_gather_nd, cost=movement_cost)


def _infer_like_input(ctx: InferenceContext) -> list:
    return [ctx.input_type(0)]


register(["ScatterElements", "Scatter", "ScatterND", "ReverseSequence"], infer=_infer_like_input,
         cost=movement_cost)


def _cumulative_cost(node: Node) -> Cost:
    """CumSum/CumProd/Trilu: macs 0; flops ~ 1 per element."""
    return cost_with_elements(node, 1)


register(["CumSum", "CumProd", "Trilu"], infer=_infer_like_input, cost=_cumulative_cost)


# -- Pad ---------------------------------------------------------------------------------------


def _infer_pad(ctx: InferenceContext) -> list:
    """Each padded axis grows by pad_begin + pad_end. ``pads`` is an attribute before opset 11
    (``paddings`` in opset 1) and an input after; opset 18 adds the ``axes`` input."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    if xs is None:
        return [TensorType(dtype, None)]
    r = len(xs)
    pads = ints_from_attr_or_input(ctx, "pads", 1)
    if pads is ABSENT and ctx.attr("paddings") is not None:
        pads = [int(p) for p in ctx.attr("paddings")]
    axes = ints_from_attr_or_input(ctx, "axes", 3)
    if axes is None:
        return [TensorType(dtype, (None,) * r)]
    axes = list(range(r)) if axes is ABSENT else [normalize_axis(a, r, ctx) for a in axes]
    if pads is None:
        return [TensorType(dtype, tuple(None if i in axes else d for i, d in enumerate(xs)))]
    if pads is ABSENT:
        raise ctx.fail("pads are required")
    if len(pads) != 2 * len(axes):
        raise ctx.fail(f"{len(pads)} pads for {len(axes)} axes (need begin and end for each)")
    out = list(xs)
    n = len(axes)
    for j, a in enumerate(axes):
        grow = pads[j] + pads[j + n]
        d = xs[a]
        out[a] = d + grow if isinstance(d, int) else (d if grow == 0 else None)
        if isinstance(out[a], int) and out[a] < 0:
            raise ctx.fail(f"pads {pads} make dim {a} negative")
    return [TensorType(dtype, tuple(out))]


register("Pad", infer=_infer_pad, cost=movement_cost)


# -- TopK / OneHot -------------------------------------------------------------------------------


def _infer_topk(ctx: InferenceContext) -> list:
    """Values (input type) and Indices (int64), with dim ``axis`` replaced by K
    (an attribute in opset 1, an input after)."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    if xs is None:
        return [TensorType(dtype, None), TensorType(DataType.INT64, None)]
    axis = normalize_axis(int(ctx.attr("axis", -1)), len(xs), ctx)
    k = ints_from_attr_or_input(ctx, "k", 1)
    kd: Dim = k[0] if isinstance(k, list) and k else None
    if isinstance(kd, int) and isinstance(xs[axis], int) and kd > xs[axis]:
        raise ctx.fail(f"K={kd} exceeds dim {axis} of size {xs[axis]}")
    shape = tuple(kd if i == axis else d for i, d in enumerate(xs))
    return [TensorType(dtype, shape), TensorType(DataType.INT64, shape)]


def _topk_cost(node: Node) -> Cost:
    """TopK: macs 0; flops ~ 2 per input element (a partial sort, counted linearly)."""
    return cost_with_elements(node, 2, of_input=0)


register("TopK", infer=_infer_topk, cost=_topk_cost)


def _infer_one_hot(ctx: InferenceContext) -> list:
    """indices.shape with ``depth`` inserted at ``axis``; element type of ``values``."""
    ids = ctx.input_shape(0)
    dtype = ctx.input_dtype(2)
    if ids is None:
        return [TensorType(dtype, None)]
    depth = ctx.input_value(1)
    dd: Dim = None if depth is None else int(np.asarray(depth).ravel()[0])
    r = len(ids) + 1
    axis = normalize_axis(int(ctx.attr("axis", -1)), r, ctx)
    shape = tuple(ids[:axis]) + (dd,) + tuple(ids[axis:])
    return [TensorType(dtype, shape)]


register("OneHot", infer=_infer_one_hot, cost=movement_cost)


# -- data-dependent sizes ------------------------------------------------------------------------


def count_symbol(ctx: InferenceContext, *where: tuple[int, int]) -> str:
    """The name of a size only the data decides (how many elements Compress keeps, NonZero or Unique finds), so
    that ``--dim NAME=SIZE`` can give an estimate where a cost needs one (unnamed, nothing could): the name the
    file declares for it (``where``: (output, dim) positions holding the count), else one made from the output's
    name (``nz_count``)."""
    outs = ctx.node.outputs
    for i, d in where:
        t = outs[i].type if i < len(outs) and outs[i] is not None else None
        shape = getattr(t, "shape", None)
        if shape is not None and 0 <= d < len(shape) and isinstance(shape[d], str):
            return shape[d]
    out = outs[0] if outs else None
    return f"{out.name if out is not None and out.name else ctx.node.op_type}_count"


def _infer_compress(ctx: InferenceContext) -> list:
    """The kept count depends on the condition's data: a symbol of its own, or the number of true entries where
    the condition is a constant and covers the axis (a condition shorter than the axis keeps none beyond it)."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    axis = ctx.attr("axis")
    cond = ctx.input_value(1)
    a = None if axis is None or xs is None else normalize_axis(int(axis), len(xs), ctx)
    length = (int(np.prod(xs)) if xs is not None and all(isinstance(d, int) for d in xs) else None) \
        if axis is None else (xs[a] if a is not None else None)
    if cond is not None and isinstance(length, int):
        count: Dim = int(np.count_nonzero(np.asarray(cond).reshape(-1)[:length]))
    else:
        count = count_symbol(ctx, (0, 0 if axis is None else a if a is not None else 0))
    if axis is None:
        return [TensorType(dtype, (count,))]
    if xs is None:
        return [TensorType(dtype, None)]
    return [TensorType(dtype, tuple(count if i == a else d for i, d in enumerate(xs)))]


def _infer_nonzero(ctx: InferenceContext) -> list:
    """int64 [rank, number of non-zeros] (a scalar counts as rank 1, as ONNX Runtime runs it); the count depends on
    the data: a symbol of its own."""
    xs = ctx.input_shape(0)
    return [TensorType(DataType.INT64, (None if xs is None else max(len(xs), 1), count_symbol(ctx, (0, 1))))]


def _infer_unique(ctx: InferenceContext) -> list:
    """Y (the unique values: flattened, or the input with the axis cut to them), their first indices, the inverse
    indices (one per input element, or per slice along the axis) and their counts; how many are unique depends
    on the data: a symbol of its own."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    axis = ctx.attr("axis")
    a = None if axis is None or xs is None else normalize_axis(int(axis), len(xs), ctx)
    count = count_symbol(ctx, (0, 0 if axis is None else -1 if a is None else a), (1, 0), (3, 0))
    if axis is None:
        y, per_input = (count,), (int(np.prod(xs)) if xs is not None and all(isinstance(d, int) for d in xs)
                                  else None,)
    elif a is None:
        y, per_input = None, (None,)
    else:
        y, per_input = tuple(count if i == a else d for i, d in enumerate(xs)), (xs[a],)
    return [TensorType(dtype, y), TensorType(DataType.INT64, (count,)), TensorType(DataType.INT64, per_input),
            TensorType(DataType.INT64, (count,))][:len(ctx.node.outputs)]


register("Compress", infer=_infer_compress, cost=movement_cost)
register("Unique", infer=_infer_unique, cost=movement_cost)
register("NonZero", infer=_infer_nonzero, cost=movement_cost)
