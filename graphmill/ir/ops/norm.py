"""Normalization ops: Batch/Instance/Layer/Group/RMS normalization, LRN, MVN, LpNormalization.

Their main output always has the input's type; what differs between them (and
between opsets) is the optional statistics outputs, which is what inference
here gets right. None has MACs: costs are flops per element.
"""

from __future__ import annotations

from ..dtypes import DataType
from ..graph import Node
from ..types import TensorType
from .common import cost_with_elements, normalize_axis
from .registry import Cost, InferenceContext, register


def _infer_batch_norm(ctx: InferenceContext) -> list:
    """Y like X; every statistics output (running_mean/var from opset 14, or mean, var,
    saved_mean, saved_var before) is [C] with the element type of input_mean (T2 in opset 15)."""
    x = ctx.input_type(0)
    shape = x.shape if x is not None else None
    c = None
    if shape is not None and len(shape) >= 2:
        c = shape[1]
    if c is None:
        for i in (1, 2, 3, 4):
            s = ctx.input_shape(i)
            if s is not None and len(s) == 1 and s[0] is not None:
                c = s[0]
                break
    stat_dtype = ctx.input_dtype(3) or ctx.input_dtype(0)
    n_out = len(ctx.node.outputs)
    return [x] + [TensorType(stat_dtype, (c,)) for _ in range(1, n_out)]


def _batch_norm_cost(node: Node) -> Cost:
    """BatchNormalization: macs 0; flops ~ 2 per element (a folded scale and shift)."""
    return cost_with_elements(node, 2)


register("BatchNormalization", infer=_infer_batch_norm, cost=_batch_norm_cost)


def _infer_layer_norm(ctx: InferenceContext) -> list:
    """Y like X; Mean and InvStdDev are X.shape[:axis] + [1]*(rank-axis) of ``stash_type``
    (float32 by default): the statistics are kept at the stash precision."""
    x = ctx.input_type(0)
    stash = ctx.dtype_attr("stash_type", 1)
    shape = x.shape if x is not None else None
    stat_shape = None
    if shape is not None:
        axis = normalize_axis(int(ctx.attr("axis", -1)), len(shape), ctx)
        stat_shape = tuple(shape[:axis]) + (1,) * (len(shape) - axis)
    n_out = len(ctx.node.outputs)
    return [x] + [TensorType(stash, stat_shape) for _ in range(1, n_out)]


def _layer_norm_cost(node: Node) -> Cost:
    """LayerNormalization: macs 0; flops ~ 8 per element (mean, centre, square, sum, rsqrt, scale, shift)."""
    return cost_with_elements(node, 8)


register("LayerNormalization", infer=_infer_layer_norm, cost=_layer_norm_cost)


def _infer_same(ctx: InferenceContext) -> list:
    return [ctx.input_type(0)]


def _norm_cost(flops: int, what: str):
    def cost(node: Node) -> Cost:
        return cost_with_elements(node, flops)

    cost.__doc__ = f"{what}: macs 0; flops ~ {flops} per element."
    return cost


register("InstanceNormalization", infer=_infer_same, cost=_norm_cost(8, "InstanceNormalization"))
register("GroupNormalization", infer=_infer_same, cost=_norm_cost(8, "GroupNormalization"))
register("RMSNormalization", infer=_infer_same, cost=_norm_cost(6, "RMSNormalization"))
register("MeanVarianceNormalization", infer=_infer_same, cost=_norm_cost(8, "MeanVarianceNormalization"))
register("LpNormalization", infer=_infer_same, cost=_norm_cost(4, "LpNormalization"))
register("LRN", infer=_infer_same, cost=_norm_cost(6, "LRN (a size-wide sum of squares, counted as ~6)"))
