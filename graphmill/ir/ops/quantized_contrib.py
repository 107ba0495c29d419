"""ONNX Runtime's com.microsoft quantized ops, which its quantizer writes in the QOperator format (QLinearAdd,
QLinearMul, QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearGlobalAveragePool, QLinearAveragePool,
QLinearConcat, QGemm). Each takes the float op's operands with a scale and a zero point beside every quantized
tensor; the shapes are the float op's, the element type the output zero point's. Without these entries shapes
stopped at the first of them: simulate refused such models, inspect left their costs unknown (an outside check).
Semantics follow ONNX Runtime's ContribOperators documentation.
"""

from __future__ import annotations

from ..dtypes import DataType
from ..graph import Node
from ..types import TensorType
from .common import broadcast_shapes, cost_with_elements, dims_product, elementwise_cost, io_cost
from .nn import gemm_cost_from, gemm_mnk, unknown_cost
from .pool import pooled_shape
from .registry import Cost, InferenceContext, register
from .slicing import concat_shape

MS = "com.microsoft"


def _infer_binary(ctx: InferenceContext) -> list:
    """QLinearAdd / QLinearMul (A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp): A and B broadcast; C of A's
    element type."""
    try:
        shape = broadcast_shapes([ctx.input_shape(0), ctx.input_shape(3)])
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    return [TensorType(ctx.input_dtype(0), shape)]


def _infer_unary(ctx: InferenceContext) -> list:
    """QLinearSigmoid / QLinearLeakyRelu / QLinearSoftmax (X, X_scale, X_zp, Y_scale, Y_zp): Y like X."""
    return [TensorType(ctx.input_dtype(0), ctx.input_shape(0))]


def _channels_last_shape(ctx: InferenceContext, pooled) -> tuple | None:
    """``pooled`` for [N, C, spatial...] input; a channels_last input is [N, spatial..., C]."""
    xs = ctx.input_shape(0)
    if xs is None:
        return None
    if not ctx.attr("channels_last", 0):
        return pooled
    if pooled is None:
        return (None,) * len(xs)
    return (pooled[0],) + tuple(pooled[2:]) + (pooled[1],)


def _infer_global_pool(ctx: InferenceContext) -> list:
    """QLinearGlobalAveragePool (X, x_scale, x_zp, y_scale, y_zp): every spatial axis pooled to one element."""
    xs = ctx.input_shape(0)
    nchw = None if xs is None else (xs[0], xs[-1] if ctx.attr("channels_last", 0) else xs[1]) + (1,) * (len(xs) - 2)
    return [TensorType(ctx.input_dtype(0), _channels_last_shape(ctx, nchw))]


def _infer_average_pool(ctx: InferenceContext) -> list:
    """QLinearAveragePool: AveragePool's window arithmetic on X (channels-first; a channels_last input keeps its
    rank only)."""
    pooled = None if ctx.attr("channels_last", 0) else pooled_shape(ctx)
    return [TensorType(ctx.input_dtype(0), _channels_last_shape(ctx, pooled))]


def _infer_concat(ctx: InferenceContext) -> list:
    """QLinearConcat (Y_scale, Y_zp, then X, X_scale, X_zp per input): the inputs concatenated along ``axis``;
    Y of the zero point's element type."""
    shapes = [ctx.input_shape(i) for i in range(2, ctx.num_inputs, 3)]
    shape, _ = concat_shape(ctx, shapes)
    return [TensorType(ctx.input_dtype(1) or ctx.input_dtype(2), shape)]


def _infer_qgemm(ctx: InferenceContext) -> list:
    """QGemm (A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp): Y[M, N], quantized to y_zp's element type
    when y_scale is given, else float32."""
    a, b = ctx.input_shape(0), ctx.input_shape(3)
    m = n = None
    if a is not None and b is not None and len(a) == 2 and len(b) == 2:
        m, n, _, _ = gemm_mnk(a, b, bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0)))
    dtype = (ctx.input_dtype(8) or ctx.input_dtype(0)) if ctx.has_input(7) else DataType.FLOAT
    return [TensorType(dtype, (m, n))]


def _qgemm_cost(node: Node) -> Cost:
    """QGemm: Gemm's count on A (input 0), B (input 3) and C (input 6)."""
    return gemm_cost_from(node, 0, 3, 6)


def _average_pool_cost(node: Node) -> Cost:
    """QLinearAveragePool: flops = output elements * prod(kernel_shape), as AveragePool's."""
    k = dims_product(node.attr("kernel_shape") or [])
    return cost_with_elements(node, k) if isinstance(k, int) else unknown_cost(node)


def _global_pool_cost(node: Node) -> Cost:
    """QLinearGlobalAveragePool: macs 0; flops = input elements (an add each), as GlobalAveragePool's."""
    return cost_with_elements(node, 1, of_input=0)


def _concat_cost(node: Node) -> Cost:
    """QLinearConcat: macs 0, flops 0 (a requantizing copy); only the bytes moved count."""
    return io_cost(node)


register(["QLinearAdd", "QLinearMul"], MS, infer=_infer_binary, cost=elementwise_cost(3))
register(["QLinearSigmoid", "QLinearLeakyRelu"], MS, infer=_infer_unary, cost=elementwise_cost(4))
register("QLinearSoftmax", MS, infer=_infer_unary, cost=elementwise_cost(5))
register("QLinearGlobalAveragePool", MS, infer=_infer_global_pool, cost=_global_pool_cost)
register("QLinearAveragePool", MS, infer=_infer_average_pool, cost=_average_pool_cost)
register("QLinearConcat", MS, infer=_infer_concat, cost=_concat_cost)
register("QGemm", MS, infer=_infer_qgemm, cost=_qgemm_cost)
