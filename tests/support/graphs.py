"""Small IR graphs that placement tests build with graphmill's ``GraphBuilder`` (ONNX models built independently
of graphmill are in ``models.py``)."""
from __future__ import annotations

import numpy as np

from graphmill.ir.builder import GraphBuilder


def matmul_towers(towers: int, depth: int, *, width: int, batch: int, scale: float, act: str = "Relu",
                  seed: int = 0) -> tuple[GraphBuilder, list]:
    """Input ``x`` [batch, width] feeding ``towers`` independent chains of ``depth`` MatMul + ``act`` (weights
    normal x ``scale``, drawn tower by tower): independent work a placement can spread over devices. Returns
    the builder (graph ``towers``) and the chains' last values; the caller joins them and adds the outputs."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("towers")
    x = b.input("x", "float32", [batch, width])
    tails = []
    for _ in range(towers):
        v = x
        for _ in range(depth):
            v = getattr(b, act)(b.MatMul(v, (rng.standard_normal((width, width)) * scale).astype(np.float32)))
        tails.append(v)
    return b, tails
