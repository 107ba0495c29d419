"""ONNX Runtime's com.microsoft contrib ops that graphmill's passes emit (``fuse-activation
emit=fused-conv``, ``fuse-ort-contrib``), so that shapes and costs stay known after the ``ort`` schedule:
a MAC count that silently dropped every fused Conv would make the optimized model look cheaper than
it is. Semantics follow ONNX Runtime's ContribOperators documentation; FusedConv / FusedGemm are
Conv / Gemm with an activation applied to the output (its flops are not counted, as for an unfused
activation's MACs).
"""

from __future__ import annotations

from ..graph import Node
from ..types import Dim, TensorType
from .common import cost_with_elements, elementwise_cost, io_cost, same_as_input
from .nn import conv_cost, gemm_cost, infer_conv, infer_gemm, value_shape, unknown_cost, matmul_macs, matmul_shape
from .registry import Cost, InferenceContext, register

MS = "com.microsoft"

register("FusedConv", MS, infer=infer_conv, cost=conv_cost)
register("FusedGemm", MS, infer=infer_gemm, cost=gemm_cost)
# x * sigmoid(alpha x), erf GELU, tanh GELU (optionally + bias), erf GELU of (A + bias)
register(["QuickGelu", "Gelu", "FastGelu", "BiasGelu"], MS, infer=same_as_input(0), cost=elementwise_cost(8))


def _infer_skip_layer_norm(ctx: InferenceContext) -> list:
    """output and input_skip_bias_sum like the input; mean / inv_std_var: the input's shape with the
    normalized (last) axis reduced to 1, float32."""
    x = ctx.input_type(0)
    shape = x.shape if isinstance(x, TensorType) else None
    stat = TensorType(x.dtype if isinstance(x, TensorType) else None,
                      None if shape is None else tuple(shape[:-1]) + (1,))
    outs: list = [x, stat, stat, x]
    return outs[:len(ctx.node.outputs)]


def _skip_layer_norm_cost(node: Node) -> Cost:
    """SkipLayerNormalization: the two (or three, with bias) adds plus LayerNormalization's ~8 flops per element."""
    return cost_with_elements(node, 10)


register("SkipLayerNormalization", MS, infer=_infer_skip_layer_norm, cost=_skip_layer_norm_cost)


def _as_read(shape: tuple[Dim, ...], trans: int, trans_batch: int) -> tuple[Dim, ...]:
    """The operand FusedMatMul multiplies: ``transBatch`` moves axis 0 to just before the last axis,
    then ``trans`` swaps the last two."""
    s = list(shape)
    if trans_batch and len(s) >= 3:
        s = s[1:-1] + [s[0], s[-1]]
    if trans and len(s) >= 2:
        s[-1], s[-2] = s[-2], s[-1]
    return tuple(s)


def _operands(node: Node, a: tuple | None, b: tuple | None) -> tuple[tuple, tuple] | None:
    if a is None or b is None:
        return None
    return (_as_read(a, int(node.attr("transA", 0)), int(node.attr("transBatchA", 0))),
            _as_read(b, int(node.attr("transB", 0)), int(node.attr("transBatchB", 0))))


def _infer_fused_matmul(ctx: InferenceContext) -> list:
    """alpha * A' @ B' with A', B' read through transBatch / trans (numpy matmul broadcasting)."""
    dtype = ctx.input_dtype(0) or ctx.input_dtype(1)
    ops = _operands(ctx.node, ctx.input_shape(0), ctx.input_shape(1))
    if ops is None:
        return [TensorType(dtype, None)]
    try:
        return [TensorType(dtype, matmul_shape(*ops))]
    except ValueError as e:
        raise ctx.fail(f"{e} (operands as read: {list(ops[0])} and {list(ops[1])})") from None


def _fused_matmul_cost(node: Node) -> Cost:
    """FusedMatMul: the MatMul formula on the operands as read (batch * M * N * K); flops 2*MACs (the
    alpha scale is folded into the accumulation)."""
    ops = _operands(node, value_shape(node, 0), value_shape(node, 1))
    macs = matmul_macs(*ops) if ops is not None else None
    if macs is None:
        return unknown_cost(node)
    return io_cost(node, macs=macs, flops=2 * macs)


register("FusedMatMul", MS, infer=_infer_fused_matmul, cost=_fused_matmul_cost)
