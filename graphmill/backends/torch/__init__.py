"""The torch backend: ``to_torch(graph)`` lowers an ``ir.Graph`` to a trainable ``nn.Module``.

``lowering`` builds the module and writes trained weights back (``export_weights``); ``weights``
decides which initializers are weights (trained) and which constants (buffers), and which are the
exporter's deduplicated copies (``initializer_copies``: trained as Parameters of their own);
``ops`` holds each ONNX op's semantics in torch, by op family; ``tensors`` converts
element types and tensors between numpy and torch. Importing this package imports torch.
"""

from __future__ import annotations

from .lowering import GraphModule, export_weights, supported_ops, to_torch
from .tensors import to_numpy, to_torch_tensor, torch_dtype
from .weights import initializer_copies, weight_initializers

__all__ = ["GraphModule", "export_weights", "initializer_copies", "supported_ops", "to_numpy", "to_torch",
           "to_torch_tensor", "torch_dtype", "weight_initializers"]
