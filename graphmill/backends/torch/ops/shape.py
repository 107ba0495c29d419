"""Shape and data-movement ops for the torch backend: Reshape, Transpose, DepthToSpace/SpaceToDepth, Concat,
Split, Slice, Gather(Elements/ND), Scatter(Elements), Compress, NonZero, ReverseSequence, OneHot, EyeLike,
Squeeze/Unsqueeze, Shape, ConstantOfShape, Pad, Expand, Tile, Range, Trilu."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..tensors import torch_dtype
from .common import CHECKS, check, ints, norm_axis, op, refuse_other_values, torch_pad


@op("Reshape")
def _reshape(rt, a, x):
    X = x[0]
    if len(x) > 1 and x[1] is not None:
        shape = ints(x[1])
    else:
        shape = list(a["shape"])
    if not a.get("allowzero", 0):
        shape = [X.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return X.reshape(shape)


@op("Flatten")
def _flatten(rt, a, x):
    X = x[0]
    axis = norm_axis(a.get("axis", 1), X.dim())
    lead = int(np.prod(X.shape[:axis], dtype=np.int64))
    rest = int(np.prod(X.shape[axis:], dtype=np.int64))
    return X.reshape(lead, rest)


@op("Transpose")
def _transpose(rt, a, x):
    X = x[0]
    perm = a.get("perm") or list(reversed(range(X.dim())))
    return X.permute(perm)


@op("DepthToSpace")
def _depth_to_space(rt, a, x):
    X = x[0]
    n, c, h, w = X.shape
    b = a["blocksize"]
    if a.get("mode", "DCR") == "CRD":  # channel, then row and column of the block (torch's PixelShuffle)
        y = X.reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
    else:  # DCR: the block's row and column, then the channel
        y = X.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


CHECKS["DepthToSpace"] = CHECKS["SpaceToDepth"] = refuse_other_values("mode", ("DCR", "CRD"), "DCR")


@op("SpaceToDepth")
def _space_to_depth(rt, a, x):
    X = x[0]
    n, c, h, w = X.shape
    b = a["blocksize"]
    y = X.reshape(n, c, h // b, b, w // b, b)
    # CRD (opset 28): the channel, then the block's row and column (DepthToSpace CRD's inverse); DCR the other way
    y = y.permute(0, 1, 3, 5, 2, 4) if a.get("mode", "DCR") == "CRD" else y.permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


@op("Concat")
def _concat(rt, a, x):
    return torch.cat([v for v in x if v is not None], dim=norm_axis(a["axis"], x[0].dim()))


@op("Split")
def _split(rt, a, x):
    X = x[0]
    axis = norm_axis(a.get("axis", 0), X.dim())
    split = x[1] if len(x) > 1 and x[1] is not None else a.get("split")
    n = rt.current_outputs
    if split is not None and len(ints(split)):
        sizes = ints(split)
    elif a.get("num_outputs") is not None:
        num = a["num_outputs"]
        chunk = -(-X.shape[axis] // num)
        sizes = [chunk] * (num - 1) + [X.shape[axis] - chunk * (num - 1)]
    else:
        sizes = [X.shape[axis] // n] * n
    return tuple(torch.split(X, sizes, dim=axis))


@op("Slice")
def _slice(rt, a, x):
    X = x[0]
    if len(x) > 1:
        starts, ends = ints(x[1]), ints(x[2])
        axes = ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
        steps = ints(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    else:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes") or range(len(starts)))
        steps = [1] * len(starts)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = norm_axis(ax, X.dim())
        dim = X.shape[ax]
        st = st + dim if st < 0 else st
        en = en + dim if en < 0 else en
        if sp > 0:
            st, en = min(max(st, 0), dim), min(max(en, 0), dim)
            idx = [slice(None)] * X.dim()
            idx[ax] = slice(st, max(en, st), sp)
            X = X[tuple(idx)]
        else:
            st, en = min(max(st, 0), dim - 1), min(max(en, -1), dim - 1)
            # an empty range (start at or before end, or an empty axis): torch.arange refuses a step of the wrong
            # sign, where ONNX gives an empty slice (an outside check)
            index = torch.arange(st, en, sp, device=X.device) if st > en else \
                torch.zeros(0, dtype=torch.int64, device=X.device)
            X = X.index_select(ax, index)
    return X


def _gather_args(a, x):
    """Data, axis and int64 indices with ONNX's negative indices counted from the end of the axis."""
    X, idx = x
    axis = norm_axis(a.get("axis", 0), X.dim())
    idx = idx.to(torch.int64)
    return X, axis, torch.where(idx < 0, idx + X.shape[axis], idx)


@op("Gather")
def _gather(rt, a, x):
    X, axis, idx = _gather_args(a, x)
    out = X.index_select(axis, idx.reshape(-1))
    return out.reshape(tuple(X.shape[:axis]) + tuple(idx.shape) + tuple(X.shape[axis + 1:]))


@op("GatherElements")
def _gather_el(rt, a, x):
    X, axis, idx = _gather_args(a, x)
    return torch.gather(X, axis, idx)


@op("GatherND")
def _gather_nd(rt, a, x):
    """ONNX GatherND as one advanced index per batch: the leading ``batch_dims`` axes of data and indices
    are flattened into one, the last axis of indices addresses the next ``m`` axes of data (negative counted from
    the end). Differentiable in data, as torch's indexing is."""
    X, idx = x
    b = a.get("batch_dims", 0)
    m = idx.shape[-1]
    out_shape = tuple(idx.shape[:-1]) + tuple(X.shape[b + m:])
    if idx.numel() == 0 or X.numel() == 0:  # nothing to address: the reshapes below cannot infer their -1
        if m == 0 and idx.numel() == 0 and X.numel():  # m = 0 gathers whole slices: [4, 0] indices of a [2, 3]
            batch = int(np.prod(X.shape[:b], dtype=np.int64))
            rows = X.reshape((batch, 1) + tuple(X.shape[b:]))
            return rows.expand((batch, int(np.prod(idx.shape[b:-1], dtype=np.int64))) + tuple(X.shape[b:])) \
                .reshape(out_shape)
        return X.new_zeros(out_shape)
    batch = int(np.prod(X.shape[:b], dtype=np.int64))
    data = X.reshape((batch,) + tuple(X.shape[b:]))
    flat = idx.to(torch.int64).reshape(batch, -1, m)
    sizes = torch.tensor(X.shape[b:b + m], dtype=torch.int64, device=X.device)
    flat = torch.where(flat < 0, flat + sizes, flat)
    rows = torch.arange(batch, device=X.device).reshape(batch, 1)
    out = data[(rows,) + tuple(flat[..., j] for j in range(m))]
    return out.reshape(out_shape)


@op("Compress")
def _compress(rt, a, x):
    X, cond = x
    axis = a.get("axis")
    if axis is None:  # over the flattened input
        X, axis = X.reshape(-1), 0
    axis = norm_axis(axis, X.dim())
    keep = torch.nonzero(cond.reshape(-1)[:X.shape[axis]].to(torch.bool)).reshape(-1)
    return X.index_select(axis, keep)


@op("NonZero")
def _nonzero(rt, a, x):
    X = x[0]
    return torch.nonzero(X.reshape(1) if X.dim() == 0 else X).T.contiguous()


@op("ReverseSequence")
def _reverse_sequence(rt, a, x):
    """Each batch entry's first ``sequence_lens[b]`` steps in reverse, the rest as they are: one gather along the
    time axis with a per-entry index."""
    X, lens = x
    t_axis, b_axis = a.get("time_axis", 0), a.get("batch_axis", 1)
    steps = X.shape[t_axis]
    t = torch.arange(steps, device=X.device).reshape(1, steps)
    n = lens.to(torch.int64).reshape(-1, 1)
    src = torch.where(t < n, n - 1 - t, t)  # [batch, time]
    if t_axis < b_axis:
        src = src.T
    shape = [1] * X.dim()
    shape[t_axis], shape[b_axis] = steps, X.shape[b_axis]
    return torch.gather(X, t_axis, src.reshape(shape).expand(X.shape))


@op("OneHot")
def _one_hot(rt, a, x):
    idx, depth, values = x
    depth = int(depth.reshape(()).item())
    rank = idx.dim() + 1
    axis = norm_axis(a.get("axis", -1), rank)
    ind = idx.to(torch.int64)
    ind = torch.where(ind < 0, ind + depth, ind)  # -depth..-1 count from the end; what stays outside is all off
    classes = torch.arange(depth, device=idx.device).reshape([depth] + [1] * idx.dim())
    hot = (ind.unsqueeze(0) == classes).movedim(0, axis)
    off, on = values.reshape(2)
    return torch.where(hot, on, off)


@op("EyeLike")
def _eye_like(rt, a, x):
    X = x[0]
    n, m = X.shape
    dt = a.get("dtype")
    dtype = torch_dtype(dt) if dt is not None else X.dtype
    diag = torch.arange(m, device=X.device).reshape(1, m) - torch.arange(n, device=X.device).reshape(n, 1)
    return (diag == a.get("k", 0)).to(dtype)


#: ONNX ScatterElements' reduction -> torch.scatter_reduce's (none and add: torch.scatter and scatter_add)
SCATTER_REDUCE = {"mul": "prod", "max": "amax", "min": "amin"}


@op("ScatterElements", "Scatter")  # Scatter: opsets 9-10's name of ScatterElements
def _scatter_el(rt, a, x):
    """ONNX ScatterElements (differentiable in ``data`` and ``updates``); ``reduction`` none, add, mul, max or min
    combines with ``data``'s own value, as ONNX does."""
    data, axis, idx = _gather_args(a, x[:2])
    updates = x[2]
    red = a.get("reduction", "none")
    red = red.decode() if isinstance(red, bytes) else red
    if red == "none":
        return data.scatter(axis, idx, updates)
    if red == "add":
        return data.scatter_add(axis, idx, updates)
    return data.scatter_reduce(axis, idx, updates, SCATTER_REDUCE[red], include_self=True)


@op("Squeeze")
def _squeeze(rt, a, x):
    X = x[0]
    axes = x[1] if len(x) > 1 and x[1] is not None else a.get("axes")
    if axes is None:
        return X.squeeze()
    axes = sorted((norm_axis(v, X.dim()) for v in ints(axes)), reverse=True)
    for ax in axes:
        X = X.squeeze(ax)
    return X


@op("Unsqueeze")
def _unsqueeze(rt, a, x):
    X = x[0]
    axes = ints(x[1] if len(x) > 1 and x[1] is not None else a["axes"])
    rank = X.dim() + len(axes)
    for ax in sorted(norm_axis(v, rank) for v in axes):
        X = X.unsqueeze(ax)
    return X


@op("Shape")
def _shape(rt, a, x):
    X = x[0]
    dims = list(X.shape)
    start = a.get("start", 0)
    end = a.get("end")
    dims = dims[start:end] if end is not None else dims[start:]
    return torch.tensor(dims, dtype=torch.int64, device=X.device)


@op("Size")
def _size(rt, a, x):
    return torch.tensor(x[0].numel(), dtype=torch.int64, device=x[0].device)


@op("ConstantOfShape")
def _cos(rt, a, x):
    shape = ints(x[0])
    val = a.get("value")
    if val is None:
        return torch.zeros(shape, dtype=torch.float32, device=x[0].device)
    return torch.full(shape, val.reshape(()).item(), dtype=val.dtype, device=x[0].device)


@op("Pad")
def _pad(rt, a, x):
    X = x[0]
    mode = a.get("mode", "constant")
    if len(x) > 1:
        pads = ints(x[1])
        value = x[2].item() if len(x) > 2 and x[2] is not None and x[2].numel() else 0
        axes = ints(x[3]) if len(x) > 3 and x[3] is not None else None
    else:
        pads = list(a.get("pads") or a.get("paddings"))
        value = a.get("value", 0.0)
        axes = None
    rank = X.dim()
    if axes is not None:
        full = [0] * (2 * rank)
        n = len(axes)
        for i, ax in enumerate(axes):
            ax = norm_axis(ax, rank)
            full[ax], full[ax + rank] = pads[i], pads[i + n]
        pads = full
    if mode == "constant":
        tp = torch_pad(pads)
        while len(tp) > 2 and tp[-1] == 0 and tp[-2] == 0:  # F.pad wants only the dims it touches
            tp = tp[:-2]
        return F.pad(X, tp, value=value)
    # reflect/edge/wrap as a gather per padded axis: F.pad's non-constant modes take only the last 1-3 axes of a
    # 2-5-D tensor and a reflection shorter than the axis, where ONNX pads any axis (an outside check)
    for ax in range(rank):
        begin, end = pads[ax], pads[ax + rank]
        if begin < 0 or end < 0:  # a negative pad crops first: the pad then copies from what is left (as ORT)
            X = X.narrow(ax, max(0, -begin), X.shape[ax] - max(0, -begin) - max(0, -end))
            begin, end = max(0, begin), max(0, end)
        if begin or end:
            X = X.index_select(ax, _pad_source_index(mode, X.shape[ax], begin, end, X.device))
    return X


def _pad_source_index(mode: str, n: int, begin: int, end: int, device) -> torch.Tensor:
    """For each position of a padded axis, the input position it copies (numpy.pad's reflect, edge and wrap,
    which ONNX's reference uses)."""
    if n == 0:
        raise ValueError(f"Pad mode {mode!r} on an axis of length 0")
    i = torch.arange(-begin, n + end, device=device)
    if mode == "edge":
        return i.clamp(0, n - 1)
    if mode == "wrap":
        return i.remainder(n)
    if max(begin, end) > n - 1:  # numpy reflects again; ONNX Runtime refuses, so a model trained here would not run
        raise ValueError(f"Pad mode 'reflect': a pad of {max(begin, end)} on an axis of length {n} reflects past its "
                         f"far end (at most {n - 1}; ONNX Runtime refuses it too)")
    period = 2 * (n - 1)  # reflect: ... 2 1 | 0 1 2 ... n-1 | n-2 ...
    if period == 0:
        return torch.zeros_like(i)
    j = i.remainder(period)
    return torch.where(j >= n, period - j, j)


@op("Expand")
def _expand(rt, a, x):
    X = x[0]
    shape = torch.broadcast_shapes(tuple(X.shape), tuple(ints(x[1])))
    return X.expand(shape)


@op("Tile")
def _tile(rt, a, x):
    return x[0].repeat(ints(x[1]))


@op("Range")
def _range(rt, a, x):
    start, limit, delta = x
    n = max(int(math.ceil((limit.item() - start.item()) / delta.item())), 0)
    return start + torch.arange(n, device=start.device).to(start.dtype) * delta


@op("Trilu")
def _trilu(rt, a, x):
    k = int(x[1].item()) if len(x) > 1 and x[1] is not None else 0
    return torch.triu(x[0], k) if a.get("upper", 1) else torch.tril(x[0], k)


@check("Pad")
def _check_pad(node, opset):
    mode = node.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        return f"Pad mode {mode!r} is not supported"
    return None
