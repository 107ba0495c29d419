"""Pooling ops for the torch backend: MaxPool, AveragePool, LpPool and their global forms."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from graphmill.ir.ops.window import Window, window_output_dim

from .common import CONV_BY_RANK, check, op, spatial, torch_pad


def _pool_args(a, X):
    nsp = X.dim() - 2
    k, s, d, pads, _ = spatial(a, X, [0, 0] + list(a["kernel_shape"]))
    return nsp, k, s, d, pads


def _drop_windows_in_end_pad(y: torch.Tensor, x_spatial: tuple[int, ...], k, s, d, pads) -> torch.Tensor:
    """Under ceil_mode ONNX ignores a last window that would start in the end padding; torch, given the padding
    as data (F.pad), keeps it (a -inf max, a 0/0 average). Cut each spatial axis to ONNX's length."""
    w = Window(tuple(k), tuple(s), tuple(d), tuple(pads), "NOTSET")
    for i, n in enumerate(x_spatial):
        y = y.narrow(2 + i, 0, window_output_dim(n, w, i, ceil_mode=True))
    return y


@op("MaxPool")
def _maxpool(rt, a, x):
    X = x[0]
    nsp, k, s, d, pads = _pool_args(a, X)
    ceil = bool(a.get("ceil_mode", 0))
    begin, end = pads[:nsp], pads[nsp:]
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nsp]
    if begin == end and all(p <= kk // 2 for p, kk in zip(begin, k)):  # torch's limit: half the undilated kernel
        return fn(X, k, s, begin, d, ceil_mode=ceil)
    # padding that can never be the max: -inf, or the integer type's least value (0 beat every negative; a review)
    lowest = float("-inf") if X.is_floating_point() else int(torch.iinfo(X.dtype).min)
    Xp = F.pad(X, torch_pad(pads), value=lowest)
    y = fn(Xp, k, s, 0, d, ceil_mode=ceil)
    return _drop_windows_in_end_pad(y, tuple(X.shape[2:]), k, s, d, pads) if ceil else y


@check("MaxPool")
def _check_maxpool(node, opset):
    if len(node.outputs) > 1 and node.outputs[1] is not None:
        return "MaxPool's Indices output is not supported"
    return None


@op("AveragePool")
def _avgpool(rt, a, x):
    X = x[0]
    nsp, k, s, d, pads = _pool_args(a, X)
    ceil = bool(a.get("ceil_mode", 0))
    include = bool(a.get("count_include_pad", 0))
    squeeze = nsp == 1
    if squeeze:  # F.avg_pool1d has no divisor_override: pool 1-D as 2-D
        X = X.unsqueeze(-1)
        k, s, pads = k + [1], s + [1], [pads[0], 0, pads[1], 0]
        nsp = 2
    fn = {2: F.avg_pool2d, 3: F.avg_pool3d}[nsp]
    tp = torch_pad(pads)
    ones = torch.ones((1, 1) + tuple(X.shape[2:]), dtype=X.dtype, device=X.device)
    total = fn(F.pad(X, tp), k, s, 0, ceil, True, 1)
    count = fn(F.pad(ones, tp, value=1.0 if include else 0.0), k, s, 0, ceil, True, 1)
    y = total / count
    if ceil:
        y = _drop_windows_in_end_pad(y, tuple(X.shape[2:]), k, s, [1] * nsp, pads)
    return y.squeeze(-1) if squeeze else y


@check("AveragePool")
def _check_avgpool(node, opset):
    if any(v != 1 for v in node.attr("dilations", []) or []):
        return "AveragePool with dilations is not supported"
    if len(node.attr("kernel_shape", [])) > 3:
        return "AveragePool over more than 3 spatial dims is not supported"
    return None


@op("GlobalAveragePool")
def _gap(rt, a, x):
    return x[0].mean(dim=tuple(range(2, x[0].dim())), keepdim=True)


@op("GlobalMaxPool")
def _gmp(rt, a, x):
    return x[0].amax(dim=tuple(range(2, x[0].dim())), keepdim=True)


@op("LpPool")
def _lppool(rt, a, x):
    """(sum of |x|^p over each window)^(1/p), the sum a depthwise convolution with a kernel of ones (which takes
    dilations; the zero padding adds nothing); under ceil_mode the input is padded at the end with enough zeros
    for ONNX's last window."""
    X = x[0]
    nsp, k, s, d, pads = _pool_args(a, X)
    p = a.get("p", 2)
    ceil = bool(a.get("ceil_mode", 0))
    w = Window(tuple(k), tuple(s), tuple(d), tuple(pads), "NOTSET")
    out = [window_output_dim(n, w, i, ceil_mode=ceil) for i, n in enumerate(X.shape[2:])]
    end = [max(pe, (o - 1) * st + (kk - 1) * dd + 1 - n - pb)
           for o, st, kk, dd, n, pb, pe in zip(out, s, k, d, X.shape[2:], pads[:nsp], pads[nsp:])]
    powered = F.pad(X.abs() ** p, torch_pad(pads[:nsp] + end))
    channels = X.shape[1]
    ones = torch.ones((channels, 1) + tuple(k), dtype=X.dtype, device=X.device)
    y = CONV_BY_RANK[nsp](powered, ones, stride=s, dilation=d, groups=channels)
    for i, o in enumerate(out):
        y = y.narrow(2 + i, 0, o)
    return y ** (1.0 / p)


@op("GlobalLpPool")
def _glppool(rt, a, x):
    X = x[0]
    p = a.get("p", 2)
    return (X.abs() ** p).sum(dim=tuple(range(2, X.dim())), keepdim=True) ** (1.0 / p)
