"""Reductions for the torch backend: Reduce*, ArgMax/ArgMin and CumSum."""

from __future__ import annotations

import torch

from .common import OPS, ints, norm_axis, op


def _reduce(fn):
    def impl(rt, a, x):
        X = x[0]
        axes = x[1] if len(x) > 1 and x[1] is not None else a.get("axes")
        axes = ints(axes) if axes is not None else []
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return X
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


for _n, _f in {
    "ReduceMean": lambda X, ax, k: X.mean(dim=ax, keepdim=k),
    "ReduceSum": lambda X, ax, k: X.sum(dim=ax, keepdim=k),
    "ReduceMax": _amax, "ReduceMin": _amin, "ReduceProd": _prod,
    "ReduceL1": lambda X, ax, k: X.abs().sum(dim=ax, keepdim=k),
    "ReduceL2": lambda X, ax, k: (X * X).sum(dim=ax, keepdim=k).sqrt(),
    "ReduceSumSquare": lambda X, ax, k: (X * X).sum(dim=ax, keepdim=k),
    "ReduceLogSum": lambda X, ax, k: X.sum(dim=ax, keepdim=k).log(),
    "ReduceLogSumExp": lambda X, ax, k: torch.logsumexp(X, dim=ax, keepdim=k),
}.items():
    OPS[_n] = _reduce(_f)


def _arg(fn):
    def impl(rt, a, x):
        X = x[0]
        axis = norm_axis(a.get("axis", 0), X.dim())
        keep = bool(a.get("keepdims", 1))
        if a.get("select_last_index", 0):
            idx = X.shape[axis] - 1 - fn(X.flip(axis), dim=axis, keepdim=keep)
        else:
            idx = fn(X, dim=axis, keepdim=keep)
        return idx.to(torch.int64)
    return impl


OPS["ArgMax"] = _arg(torch.argmax)
OPS["ArgMin"] = _arg(torch.argmin)


@op("CumSum")
def _cumsum(rt, a, x):
    X = x[0]
    axis = norm_axis(int(x[1].item()), X.dim())
    if a.get("reverse", 0):
        X = X.flip(axis)
    y = torch.cumsum(X, axis).to(X.dtype)
    if a.get("exclusive", 0):
        y = y - X
    if a.get("reverse", 0):
        y = y.flip(axis)
    return y
