"""Op semantics graphmill knows: type/shape inference and cost, by (domain, op_type).

Importing this package registers every definition below, one module per op family:
elementwise (arithmetic, comparisons, activations), nn (Conv, ConvTranspose, Gemm,
MatMul, Softmax, Dropout), norm (Batch/Layer/Instance/Group normalization...), pool,
reduce, shape (Reshape, Transpose, Squeeze, Shape, Expand, Tile...), slicing (Concat,
Split, Slice, Gather, Pad...), resize, constant (Constant, ConstantOfShape, Cast,
Range), recurrent (LSTM, GRU, RNN), quantize (Quantize/DequantizeLinear), quantized_contrib (ONNX Runtime's
QLinear* ops), contrib (the com.microsoft ops graphmill's passes emit for ONNX Runtime), branch (If: inference only). ``window`` holds the sliding-window arithmetic that conv and pool share.
"""

from . import chip, constant, contrib, elementwise, nn, norm, pool, recurrent, reduce, resize, shape, slicing  # noqa: F401  (register)
from . import quantize, quantized_contrib  # noqa: F401  (register)
from . import moe  # noqa: F401  (register graphmill::MoE)
from . import attention  # noqa: F401  (register graphmill::RelativeAttention)
from . import branch  # noqa: F401  (register If)
from .infer import InferenceReport, has_inference, infer_types, is_open, merge_types, unregistered_open_values
from .registry import Cost, InferenceContext, OpDef, lookup, register, registered_ops

__all__ = ["Cost", "InferenceContext", "OpDef", "lookup", "register", "registered_ops", "InferenceReport",
           "has_inference", "infer_types", "is_open", "merge_types", "unregistered_open_values"]
