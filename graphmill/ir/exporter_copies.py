"""The ``Identity`` copies of an initializer that torch's TorchScript exporter writes, walked back to what they copy.

The exporter stores initializers of equal values once and writes every other one as an ``Identity`` of it: a fresh
network's zero biases and LayerNorm ones (``n2.bias = Identity(n1.bias)``), and constant-folded weights, named by the
exporter (``onnx::MatMul_20 = Identity(onnx::MatMul_19)``). Each copy is a tensor of its own (the torch backend's
``weights``, parameter counts): folded copies come from nn.TransformerEncoder's deep-copied layers, which start
equal, as often as from one layer applied twice (ALBERT), and the file cannot tell them apart. Read as one tensor,
the second kind counted right and the first halved a TransformerEncoder's parameters and would have trained its
layers as one (an outside check); ``from_torch``, which has the module, keeps real ties.
"""

from __future__ import annotations

from .graph import Value


def identity_source(v: Value | None) -> Value | None:
    """What ``v`` is an ``Identity`` of (any domain-less Identity with an input), else None."""
    p = v.producer if v is not None else None
    if p is None or p.op_type != "Identity" or p.domain not in ("", "ai.onnx") or not p.inputs:
        return None
    return p.inputs[0]


def initializer_root(v: Value | None) -> Value | None:
    """The initializer ``v`` is, or is an ``Identity`` chain of, else None."""
    while v is not None and not v.is_initializer:
        v = identity_source(v)
    return v
