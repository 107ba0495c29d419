"""Quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear (ONNX Runtime's quantization tools
write them: a QDQ model is a float graph with a Quantize/Dequantize pair around each quantized tensor).

Each keeps its input's shape; what inference must get right is the element type, which the spec takes from
another input or an attribute. Without these entries onnx's own inference answered for them, and its data
propagation past them once gave a Reshape seven dims for a four-element shape (an outside check).
"""

from __future__ import annotations

from ..dtypes import DataType
from ..graph import Node
from ..types import TensorType
from .common import cost_with_elements
from .registry import Cost, InferenceContext, register


def _shaped_like_input(ctx: InferenceContext, dtype: DataType | None) -> TensorType:
    return TensorType(dtype, ctx.input_shape(0))


def _infer_quantize(ctx: InferenceContext) -> list:
    """y: x's shape; the zero point's element type when there is one, else ``output_dtype`` (opset 21), else
    uint8."""
    if ctx.has_input(2):
        dtype = ctx.input_dtype(2)
    else:
        dtype = ctx.dtype_attr("output_dtype", 0) or DataType.UINT8
    return [_shaped_like_input(ctx, dtype)]


def _infer_dequantize(ctx: InferenceContext) -> list:
    """y: x's shape; ``output_dtype`` when set (opset 23), else the scale's element type (float32 before opset
    19, where it is the only one allowed)."""
    dtype = ctx.dtype_attr("output_dtype", 0) or ctx.input_dtype(1)
    return [_shaped_like_input(ctx, dtype)]


def _infer_dynamic_quantize(ctx: InferenceContext) -> list:
    """y: uint8 of x's shape; its scale (float32) and zero point (uint8) are scalars."""
    return [_shaped_like_input(ctx, DataType.UINT8), TensorType(DataType.FLOAT, ()),
            TensorType(DataType.UINT8, ())][:len(ctx.node.outputs)]


def _quantize_cost(node: Node) -> Cost:
    """QuantizeLinear/DequantizeLinear: macs 0; flops ~ 3 per element (scale, round or shift, saturate);
    DynamicQuantizeLinear ~ 5 (a min/max pass first)."""
    return cost_with_elements(node, 5 if node.op_type == "DynamicQuantizeLinear" else 3, of_input=0)


register("QuantizeLinear", infer=_infer_quantize, cost=_quantize_cost)
register("DequantizeLinear", infer=_infer_dequantize, cost=_quantize_cost)
register("DynamicQuantizeLinear", infer=_infer_dynamic_quantize, cost=_quantize_cost)
