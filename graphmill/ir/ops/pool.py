"""Pooling ops: MaxPool (with Indices), AveragePool, LpPool, the Global* pools, MaxUnpool.

Output sizes come from ``window.window_output_dim`` so they agree with Conv's
arithmetic, plus ``ceil_mode`` which only pooling has.
"""

from __future__ import annotations

from ..dtypes import DataType
from ..graph import Node
from ..types import TensorType
from .common import cost_with_elements, dims_product, io_cost
from .registry import Cost, InferenceContext, register
from .window import read_window, window_output_dim


def pooled_shape(ctx: InferenceContext):
    xs = ctx.input_shape(0)
    if xs is None:
        return None
    if len(xs) < 3:
        raise ctx.fail(f"input must have rank >= 3 ([N, C, spatial...]), got rank {len(xs)}")
    win = read_window(ctx, None)
    if win is None:
        raise ctx.fail("kernel_shape is required")
    if win.rank != len(xs) - 2:
        raise ctx.fail(f"kernel_shape has {win.rank} axes for {len(xs) - 2} spatial axes")
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    spatial = tuple(window_output_dim(xs[2 + i], win, i, ceil_mode=ceil_mode) for i in range(win.rank))
    return tuple(xs[:2]) + spatial


def _infer_pool(ctx: InferenceContext) -> list:
    """Y is [N, C, pooled spatial...]; MaxPool's optional Indices has Y's shape, int64."""
    shape = pooled_shape(ctx)
    out = [TensorType(ctx.input_dtype(0), shape)]
    if len(ctx.node.outputs) > 1:
        out.append(TensorType(DataType.INT64, shape))
    return out


def _window_cost(node: Node) -> Cost:
    """Max/Average/LpPool: macs 0; flops = output elements * prod(kernel_shape) (one compare or
    add per window element; the average's divide is in the noise)."""
    ks = node.attr("kernel_shape")
    ys = node.outputs[0].type.shape if node.outputs and isinstance(node.outputs[0].type, TensorType) else None
    n = dims_product(ys) if ys is not None else None
    k = dims_product(ks) if ks is not None else None
    if n is None or k is None:
        c = io_cost(node)
        c.known = False
        return c
    return io_cost(node, flops=n * k)


register(["MaxPool", "AveragePool", "LpPool"], infer=_infer_pool, cost=_window_cost)


def _infer_global_pool(ctx: InferenceContext) -> list:
    """[N, C, 1, 1, ...]: every spatial axis pooled to one element."""
    xs = ctx.input_shape(0)
    if xs is not None and len(xs) < 2:
        raise ctx.fail(f"input must have rank >= 2 ([N, C, ...]), got rank {len(xs)}")
    shape = None if xs is None else tuple(xs[:2]) + (1,) * (len(xs) - 2)
    return [TensorType(ctx.input_dtype(0), shape)]


def _global_pool_cost(node: Node) -> Cost:
    """Global pools: macs 0; flops = input elements (one compare or add each)."""
    return cost_with_elements(node, 1, of_input=0)


register(["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"], infer=_infer_global_pool, cost=_global_pool_cost)


def _infer_max_unpool(ctx: InferenceContext) -> list:
    """Y is ``output_shape`` (input 2) when given, else (in-1)*stride + kernel - pads per axis."""
    dtype = ctx.input_dtype(0)
    if ctx.has_input(2):
        v = ctx.input_value(2)
        if v is not None:
            return [TensorType(dtype, tuple(int(d) for d in v.ravel()))]
        s = ctx.input_shape(2)
        rank = s[0] if s is not None and len(s) == 1 and isinstance(s[0], int) else None
        return [TensorType(dtype, None if rank is None else (None,) * rank)]
    xs = ctx.input_shape(0)
    if xs is None:
        return [TensorType(dtype, None)]
    win = read_window(ctx, None)
    if win is None:
        raise ctx.fail("kernel_shape is required")
    spatial = []
    for i in range(win.rank):
        d = xs[2 + i]
        pads = win.pads[i] + win.pads[i + win.rank]
        spatial.append((d - 1) * win.strides[i] + win.kernel[i] - pads if isinstance(d, int) else None)
    return [TensorType(dtype, tuple(xs[:2]) + tuple(spatial))]


def _max_unpool_cost(node: Node) -> Cost:
    """MaxUnpool: macs 0; flops = output elements (a zero fill plus a scatter)."""
    return cost_with_elements(node, 1)


register("MaxUnpool", infer=_infer_max_unpool, cost=_max_unpool_cost)
