"""Decomposed forms of fused ops, written the ways exporters write them, for fusion tests.

One definition shared by the tests of every pass that recognizes them (fuse-gelu for ONNX Gelu,
fuse-ort-contrib for com.microsoft Gelu), so a new exporter variant is added once.
"""

from __future__ import annotations

import math

import numpy as np

from graphmill.ir import Value
from graphmill.ir.builder import GraphBuilder


def gelu_erf(b: GraphBuilder, x: Value, order: int = 0, div: bool = True, dtype: type = np.float32) -> Value:
    """x * 0.5 * (1 + erf(x / sqrt 2)): ``div`` picks x / sqrt2 or x * (1 / sqrt2); ``order`` 0-2 picks
    the association of the final products (torch's and TF's exporters differ there); ``dtype``: x's element
    type, which the constants share (ONNX's type constraints)."""
    s = b.Div(x, np.array(math.sqrt(2), dtype)) if div else b.Mul(x, np.array(1 / math.sqrt(2), dtype))
    p = b.Add(b.Erf(s), np.array(1, dtype))
    half = np.array(0.5, dtype)
    if order == 0:
        return b.Mul(b.Mul(x, p), half)
    if order == 1:
        return b.Mul(p, b.Mul(half, x))
    return b.Mul(x, b.Mul(p, half))
