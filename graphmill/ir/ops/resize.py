"""Resampling: Resize (opsets 10-19), Upsample (7-9), CenterCropPad.

Resize's inputs moved around between opsets (scales at 1 in opset 10; roi,
scales, sizes at 1-3 from 11, optional from 13; ``axes`` and
``keep_aspect_ratio_policy`` from 18), which is why the input positions are
chosen by opset here.
"""

from __future__ import annotations

import math

import numpy as np

from ..graph import Node
from ..types import Dim, TensorType
from .common import cost_with_elements, movement_cost, normalize_axis
from .registry import Cost, InferenceContext, register


def scaled_dim(d: Dim, scale: float) -> Dim:
    """floor(d * scale), the product in float32 as ONNX Runtime computes it (``float * int64``): width 3 at
    float32(5/3) is 5 there, 4 in float64 (onnx's reference and torch say 4), and the declared 4 contradicted ONNX
    Runtime's run (a review)."""
    if not np.isfinite(scale):
        raise ValueError(f"scale {scale} must be finite")
    if isinstance(d, int):
        return int(math.floor(np.float32(d) * np.float32(scale)))
    return d if scale == 1 else None


def _values(ctx: InferenceContext, i: int):
    """(present, values or None): an absent or empty input counts as not given."""
    if not ctx.has_input(i):
        return False, None
    s = ctx.input_shape(i)
    if s is not None and len(s) == 1 and s[0] == 0:
        return False, None
    v = ctx.input_value(i)
    if v is not None and v.size == 0:
        return False, None
    return True, (None if v is None else [x.item() for x in np.asarray(v).ravel()])


def _axes(ctx: InferenceContext, rank: int) -> list[int]:
    """The ``axes`` attribute normalized (default: every axis)."""
    axes = ctx.attr("axes")
    return list(range(rank)) if axes is None else [normalize_axis(int(a), rank, ctx) for a in axes]


def _infer_resize(ctx: InferenceContext) -> list:
    """Output dims are ``sizes`` (adjusted by keep_aspect_ratio_policy) or floor(in * scale)."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    if xs is None:
        return [TensorType(dtype, None)]
    r = len(xs)
    axes = _axes(ctx, r)
    if ctx.opset and ctx.opset < 11:
        has_scales, scales = _values(ctx, 1)
        has_sizes, sizes = False, None
    else:
        has_scales, scales = _values(ctx, 2)
        has_sizes, sizes = _values(ctx, 3)
    out = list(xs)
    if has_sizes:
        if sizes is None:
            return [TensorType(dtype, tuple(None if i in axes else d for i, d in enumerate(xs)))]
        if len(sizes) != len(axes):
            raise ctx.fail(f"{len(sizes)} sizes for {len(axes)} axes")
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        if policy == "stretch":
            for a, s in zip(axes, sizes):
                out[a] = int(s)
        else:
            ins = [xs[a] for a in axes]
            if not all(isinstance(d, int) for d in ins):
                return [TensorType(dtype, tuple(None if i in axes else d for i, d in enumerate(xs)))]
            ratios = [int(s) / d for s, d in zip(sizes, ins)]  # type: ignore[operator]
            scale = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                out[a] = int(scale * xs[a] + 0.5)  # round half up, as the spec says
    elif has_scales:
        if scales is None:
            return [TensorType(dtype, tuple(None if i in axes else d for i, d in enumerate(xs)))]
        if len(scales) != len(axes):
            raise ctx.fail(f"{len(scales)} scales for {len(axes)} axes")
        for a, s in zip(axes, scales):
            if not np.isfinite(s):  # as ONNX Runtime says it (inference failed with float's own error: a review)
                raise ctx.fail(f"scale {s} must be finite")
            if s <= 0:
                raise ctx.fail(f"scale {s} must be positive")
            out[a] = scaled_dim(xs[a], np.float32(s))
    else:
        raise ctx.fail("one of scales and sizes is required")
    return [TensorType(dtype, tuple(out))]


def _infer_upsample(ctx: InferenceContext) -> list:
    """floor(in * scale) per axis; scales an attribute in opset 7, an input from 9."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    if xs is None:
        return [TensorType(dtype, None)]
    scales = ctx.attr("scales")
    if scales is None:
        v = ctx.input_value(1)
        if v is None:
            return [TensorType(dtype, (None,) * len(xs))]
        scales = [x.item() for x in np.asarray(v).ravel()]
    if len(scales) != len(xs):
        raise ctx.fail(f"{len(scales)} scales for a rank-{len(xs)} input")
    return [TensorType(dtype, tuple(scaled_dim(d, np.float32(s)) for d, s in zip(xs, scales)))]


_RESIZE_FLOPS = {"nearest": 1, "linear": 4, "cubic": 16}


def _resize_cost(node: Node) -> Cost:
    """Resize/Upsample: macs 0; flops per output element ~ 1 (nearest), 4 (linear), 16 (cubic)."""
    mode = node.attr("mode", "nearest")
    return cost_with_elements(node, _RESIZE_FLOPS.get(mode if isinstance(mode, str) else "nearest", 4))


register("Resize", infer=_infer_resize, cost=_resize_cost)
register("Upsample", infer=_infer_upsample, cost=_resize_cost)


def _infer_center_crop_pad(ctx: InferenceContext) -> list:
    """The input shape with the ``axes`` (default all) set to the requested ``shape`` input."""
    xs = ctx.input_shape(0)
    dtype = ctx.input_dtype(0)
    if xs is None:
        return [TensorType(dtype, None)]
    r = len(xs)
    axes = _axes(ctx, r)
    v = ctx.input_value(1)
    if v is None:
        return [TensorType(dtype, tuple(None if i in axes else d for i, d in enumerate(xs)))]
    sizes = [int(x) for x in np.asarray(v).ravel()]
    if len(sizes) != len(axes):
        raise ctx.fail(f"{len(sizes)} sizes for {len(axes)} axes")
    out = list(xs)
    for a, s in zip(axes, sizes):
        out[a] = s
    return [TensorType(dtype, tuple(out))]


register("CenterCropPad", infer=_infer_center_crop_pad, cost=movement_cost)
