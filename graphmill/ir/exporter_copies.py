"""Which ``Identity`` copies of an initializer are that tensor again (a tie), and which are tensors of their own.

torch's TorchScript exporter stores initializers of equal values once and writes every other one as an ``Identity``
of it. Two kinds of copy arrive that way:

* parameters with equal initial values (a fresh network's zero biases, its LayerNorms' ones): the copy is named after
  its own parameter (``n2.bias = Identity(n1.bias)``), a tensor of its own, counted and trained apart;
* one parameter folded twice: a layer applied twice (ALBERT shares its layers' weights) has its weight's transpose
  constant-folded once per use, into initializers the exporter names ``onnx::MatMul_<n>``, equal, so one stays and
  the other use reads an ``Identity`` of it. That is one tensor: counted apart, ALBERT had 37% more parameters than
  torch counts, and ``to_torch`` untied its layers (an outside check).

The name tells them apart: ``onnx::`` is the exporter's prefix for what it computes. A folded copy of values all
equal (zeros) might as well be two parameters that start alike, and stays a tensor of its own.
"""

from __future__ import annotations

import numpy as np

from .graph import Value

#: the TorchScript exporter's prefix for the names of values it computes (folded constants among them)
EXPORTER_PREFIX = "onnx::"


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


def is_tied_copy(v: Value | None) -> bool:
    """Whether ``v`` is an exporter-named ``Identity`` of an initializer (or of a copy of one) holding values that
    are not all equal: the same tensor read a second time (module docstring)."""
    src = identity_source(v)
    if src is None or not v.name.startswith(EXPORTER_PREFIX):
        return False
    root = initializer_root(src)
    if root is None:
        return False
    from .rewrite import constant_value

    data = constant_value(root)
    if data is None or data.size <= 1:
        return False
    flat = data.ravel()
    return not np.array_equal(flat, np.full_like(flat, flat[0]), equal_nan=flat.dtype.kind in "fc")
