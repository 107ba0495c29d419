"""Resize for the torch backend: nearest and linear modes from opset 11 (cubic, antialias and
tf_crop_and_resize are refused when the module is built), and Upsample (opsets 7-9) as the Resize it became."""

from __future__ import annotations

import math

import torch

from graphmill.ir.ops.resize import scaled_dim

from .common import CHECKS, check, ints, norm_axis, op, refuse_other_values


def _source_coords(mode: str, n_out: int, n_in: int, scale: float, device, n_out_f: float) -> torch.Tensor:
    xr = torch.arange(n_out, dtype=torch.float64, device=device)
    if mode == "half_pixel":
        return (xr + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (xr + 0.5) / scale - 0.5 if n_out > 1 else torch.zeros_like(xr)
    if mode == "align_corners":
        # ONNX's reference uses the unrounded output length (n_in * scale) when scales are given
        return xr * (n_in - 1) / (n_out_f - 1) if n_out_f != 1 else torch.zeros_like(xr)
    if mode == "asymmetric":
        return xr / scale
    if mode == "tf_half_pixel_for_nn":
        return (xr + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adj = n_out / (scale * n_in)
        center = n_in / 2
        return center * (1 - adj) + (xr + 0.5) / scale - 0.5
    raise NotImplementedError(mode)


def _nearest(xo: torch.Tensor, how: str) -> torch.Tensor:
    if how == "floor":
        return torch.floor(xo)
    if how == "ceil":
        return torch.ceil(xo)
    frac = xo - torch.floor(xo)
    if how == "round_prefer_ceil":
        return torch.where(frac == 0.5, torch.ceil(xo), torch.round(xo))
    return torch.where(frac == 0.5, torch.floor(xo), torch.round(xo))  # round_prefer_floor


@op("Resize")
def _resize(rt, a, x):
    X = x[0]
    rank = X.dim()
    scales = x[2] if len(x) > 2 and x[2] is not None and x[2].numel() else None
    sizes = x[3] if len(x) > 3 and x[3] is not None and x[3].numel() else None
    axes = [norm_axis(v, rank) for v in (a.get("axes") or range(rank))]
    in_sz = [X.shape[ax] for ax in axes]
    if 0 in in_sz:  # an empty axis resized: nothing to sample, only the output's shape to give (the sizes' ratios
        # divided by its 0; a fuzzer). ONNX Runtime's rules: the aspect policy over the axes that have a ratio,
        # and an empty axis cannot become a non-empty one
        out = ints(sizes) if sizes is not None else [scaled_dim(i, v) for i, v in zip(in_sz, scales.tolist())]
        policy = a.get("keep_aspect_ratio_policy", "stretch")
        if sizes is not None and policy != "stretch":
            ratios = [o / i for o, i in zip(out, in_sz) if i]
            r = (min(ratios) if policy == "not_larger" else max(ratios)) if ratios else 1.0
            out = [int(math.floor(i * r + 0.5)) for i in in_sz]
        grown = [(ax, o) for ax, i, o in zip(axes, in_sz, out) if i == 0 and o > 0]
        if grown:
            raise ValueError(f"axis {grown[0][0]} has size 0 and cannot be resized to {grown[0][1]}")
        shape = list(X.shape)
        for ax, n_out in zip(axes, out):
            shape[ax] = n_out
        return X.new_zeros(shape)
    if sizes is not None:
        out_sz = ints(sizes)
        policy = a.get("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            ratios = [o / i for o, i in zip(out_sz, in_sz)]
            r = min(ratios) if policy == "not_larger" else max(ratios)
            out_sz = [int(math.floor(i * r + 0.5)) for i in in_sz]
            sc = [r] * len(axes)
        else:
            sc = [o / i for o, i in zip(out_sz, in_sz)]
    else:
        sc = [float(v) for v in scales.tolist()]
        out_sz = [scaled_dim(i, s) for i, s in zip(in_sz, sc)]  # in float32, as ONNX Runtime sizes it
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    how = a.get("nearest_mode", "round_prefer_floor")
    for ax, n_in, n_out, s in zip(axes, in_sz, out_sz, sc):
        if n_in == n_out and s == 1.0:
            continue
        xo = _source_coords(ctm, n_out, n_in, s, X.device, n_in * s if sizes is None else n_out)
        if mode == "nearest":
            idx = _nearest(xo, how).clamp(0, n_in - 1).to(torch.int64)
            X = X.index_select(ax, idx)
        else:
            x0 = torch.floor(xo)
            w1 = (xo - x0).to(X.dtype)
            i0 = x0.clamp(0, n_in - 1).to(torch.int64)
            i1 = (x0 + 1).clamp(0, n_in - 1).to(torch.int64)
            shape = [1] * rank
            shape[ax] = n_out
            w1 = w1.reshape(shape)
            X = X.index_select(ax, i0) * (1 - w1) + X.index_select(ax, i1) * w1
    return X


@op("Upsample")
def _upsample(rt, a, x):
    """Resize with Upsample's fixed sampling: source coordinate = output / scale (asymmetric), nearest rounding
    down (onnx's reference repeats each element ``scale`` times; ONNX Runtime truncates)."""
    scales = x[1] if len(x) > 1 else torch.tensor(a["scales"], dtype=torch.float32)
    attrs = {"mode": a.get("mode", "nearest"), "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    return _resize(rt, attrs, [x[0], None, scales])


CHECKS["Upsample"] = refuse_other_values("mode", ("nearest", "linear"), "nearest")


@check("Resize")
def _check_resize(node, opset):
    mode = node.attr("mode", "nearest")
    if mode not in ("nearest", "linear"):
        return f"Resize mode {mode!r} is not supported (only nearest and linear)"
    if node.attr("antialias", 0):
        return "Resize with antialias is not supported"
    ctm = node.attr("coordinate_transformation_mode", "half_pixel")
    if ctm not in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
                   "half_pixel_symmetric"):
        return f"Resize coordinate_transformation_mode {ctm!r} is not supported"
    if opset < 11:
        return "Resize before opset 11 is not supported"
    return None
