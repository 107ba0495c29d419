"""Reductions for the torch backend: Reduce*, ArgMax/ArgMin, CumSum and CumProd."""

from __future__ import annotations

import torch

from .common import OPS, ints, norm_axis, op


def _reduce(fn, elementwise=None):
    """``fn(X, axes, keepdims)``; ``elementwise``: what the op does to each element before summing (x*x, |x|) or
    after (log), which an empty ``axes`` with ``noop_with_empty_axes`` still applies (onnx's reference and ONNX
    Runtime do: ReduceSumSquare of [0.5, -2] is [0.25, 4], not the input; an outside check)."""
    def impl(rt, a, x):
        X = x[0]
        axes = x[1] if len(x) > 1 and x[1] is not None else a.get("axes")
        axes = ints(axes) if axes is not None else []
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return X if elementwise is None else elementwise(X).to(X.dtype)
            axes = list(range(X.dim()))
        axes = sorted(norm_axis(v, X.dim()) for v in axes)
        if not axes:  # a scalar input reduces to itself
            out = fn(X.reshape(1), [0], False).reshape(())
        else:
            out = fn(X, axes, keep)
        return out if out.dtype == X.dtype else out.to(X.dtype)
    return impl


def _empty_reduce(X, axes, keep, fill):
    shape = [1 if i in axes else d for i, d in enumerate(X.shape)] if keep else \
        [d for i, d in enumerate(X.shape) if i not in axes]
    if X.dtype == torch.bool:
        fill = fill > 0  # max over nothing is False, min True
    elif not X.is_floating_point():
        info = torch.iinfo(X.dtype)
        fill = info.min if fill < 0 else info.max
    return torch.full(shape, fill, dtype=X.dtype, device=X.device)


def _amax(X, axes, keep):
    if any(X.shape[a] == 0 for a in axes):  # ONNX: the identity of max (-inf, or the type's minimum)
        return _empty_reduce(X, axes, keep, float("-inf"))
    return X.amax(dim=axes, keepdim=keep)


def _amin(X, axes, keep):
    if any(X.shape[a] == 0 for a in axes):
        return _empty_reduce(X, axes, keep, float("inf"))
    return X.amin(dim=axes, keepdim=keep)


def _prod(X, axes, keep):
    for ax in sorted(axes, reverse=True):
        X = X.prod(dim=ax, keepdim=keep)
    return X


def _mean(X, axes, keep):
    if X.is_floating_point():
        return X.mean(dim=axes, keepdim=keep)
    # torch has no integer mean ("could not infer output dtype"); ONNX Runtime's truncates: [1, 2, 4] -> 2,
    # [-1, -2, -4] -> -2 (an outside check)
    count = 1
    for ax in axes:
        count *= X.shape[ax]
    total = X.sum(dim=axes, keepdim=keep)
    # over nothing ONNX Runtime gives 0 (a division by zero here; a review)
    return torch.div(total, count, rounding_mode="trunc") if count else torch.zeros_like(total)


for _n, _f, _e in (
    ("ReduceMean", _mean, None),
    ("ReduceSum", lambda X, ax, k: X.sum(dim=ax, keepdim=k), None),
    ("ReduceMax", _amax, None), ("ReduceMin", _amin, None), ("ReduceProd", _prod, None),
    ("ReduceL1", lambda X, ax, k: X.abs().sum(dim=ax, keepdim=k), torch.abs),
    ("ReduceL2", lambda X, ax, k: (X * X).sum(dim=ax, keepdim=k).sqrt(), torch.abs),
    ("ReduceSumSquare", lambda X, ax, k: (X * X).sum(dim=ax, keepdim=k), lambda X: X * X),
    ("ReduceLogSum", lambda X, ax, k: X.sum(dim=ax, keepdim=k).log(), torch.log),
    ("ReduceLogSumExp", lambda X, ax, k: torch.logsumexp(X, dim=ax, keepdim=k), None),
):
    OPS[_n] = _reduce(_f, _e)


def _arg(fn):
    def impl(rt, a, x):
        X = x[0]
        axis = norm_axis(a.get("axis", 0), X.dim())
        keep = bool(a.get("keepdims", 1))
        shape = [1 if i == axis else d for i, d in enumerate(X.shape)] if keep else \
            [d for i, d in enumerate(X.shape) if i != axis]
        if X.shape[axis] == 0 and 0 in shape:  # an empty result, which torch refuses to reduce to (a fuzzer)
            return torch.zeros(shape, dtype=torch.int64, device=X.device)
        if a.get("select_last_index", 0):
            idx = X.shape[axis] - 1 - fn(X.flip(axis), dim=axis, keepdim=keep)
        else:
            idx = fn(X, dim=axis, keepdim=keep)
        return idx.to(torch.int64)
    return impl


OPS["ArgMax"] = _arg(torch.argmax)
OPS["ArgMin"] = _arg(torch.argmin)


def _cumulative(scan, identity: int):
    """CumSum (``torch.cumsum``, 0) and CumProd (``torch.cumprod``, 1): ``exclusive`` shifts the running result by
    one, starting at the identity; ``reverse`` runs from the end."""
    def impl(rt, a, x):
        X = x[0]
        axis = norm_axis(int(x[1].item()), X.dim())
        if a.get("reverse", 0):
            X = X.flip(axis)
        y = scan(X, axis).to(X.dtype)
        if a.get("exclusive", 0):  # shifted by one: the sum minus X gave NaN after an inf (an outside check)
            first = torch.full_like(X.narrow(axis, 0, min(1, X.shape[axis])), identity)
            y = torch.cat([first, y.narrow(axis, 0, max(0, X.shape[axis] - 1))], dim=axis)
        if a.get("reverse", 0):
            y = y.flip(axis)
        return y
    return impl


OPS["CumSum"] = _cumulative(torch.cumsum, 0)
OPS["CumProd"] = _cumulative(torch.cumprod, 1)
