"""Video building blocks on the IR: 3-D convolution and the (2+1)-D block (issue 15 item 4, the IR part).

A 3-D convolution is ONNX's ``Conv`` on a 5-D input ``[N, C, T, H, W]`` with a ``[kt, kh, kw]`` kernel: the op
registry already infers its shapes and counts its MACs (``N * Cout * T' * H' * W' * Cin/group * kt*kh*kw``),
the torch backend runs it (``conv3d``), ONNX Runtime runs it, and the simulator lowers it
(``backends/simulator/lowering.py``) as one 2-D convolution per output frame over the ``kt`` input frames
it reads, stacked as channels: the same MACs, the ifmap read again for every output frame.

``conv2plus1d`` is R(2+1)D's factorization (Tran et al. 2018): a ``1 x k x k`` spatial convolution to ``mid``
channels, BatchNormalization, ReLU, then a ``kt x 1 x 1`` temporal convolution, with ``mid`` chosen as the paper
does so that the block has the parameters of the full ``kt x k x k`` convolution:
``mid = floor(kt * k^2 * cin * cout / (k^2 * cin + kt * cout))``.

``video_net`` builds a small classifier of such blocks (global average pool, Gemm) for generated clips.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from graphmill.ir import Graph, Value
from graphmill.ir.builder import GraphBuilder
from graphmill.util.errors import UserInputError

KINDS = ("3d", "2+1d")


def r2plus1d_mid(cin: int, cout: int, k: int, kt: int) -> int:
    """R(2+1)D's intermediate channel count (Tran et al. 2018, Section 3.5): parameters of the full 3-D conv."""
    return max(1, math.floor(kt * k * k * cin * cout / (k * k * cin + kt * cout)))


def _conv3d(b: GraphBuilder, rng: np.random.Generator, x: Value, cin: int, cout: int, kernel: Sequence[int],
            stride: Sequence[int], name: str) -> Value:
    kt, kh, kw = kernel
    w = (rng.standard_normal((cout, cin, kt, kh, kw)) * math.sqrt(2.0 / (cin * kt * kh * kw))).astype(np.float32)
    pads = [kt // 2, kh // 2, kw // 2] * 2
    y = b.Conv(x, b.const(w, name=f"{name}.w"), kernel_shape=list(kernel), strides=list(stride), pads=pads,
               name=f"{name}.conv")
    c = cout
    y = b.BatchNormalization(y, b.const(np.ones(c, np.float32), name=f"{name}.bn.scale"),
                             b.const(np.zeros(c, np.float32), name=f"{name}.bn.bias"),
                             b.const(np.zeros(c, np.float32), name=f"{name}.bn.mean"),
                             b.const(np.ones(c, np.float32), name=f"{name}.bn.var"), epsilon=1e-5, name=f"{name}.bn")
    return b.Relu(y, name=f"{name}.relu")


def conv3d_block(b: GraphBuilder, rng: np.random.Generator, x: Value, cin: int, cout: int, *, k: int = 3,
                 kt: int = 3, stride: int = 1, tstride: int = 1, name: str = "c3d") -> Value:
    """Full ``kt x k x k`` 3-D convolution + BatchNormalization + ReLU."""
    return _conv3d(b, rng, x, cin, cout, (kt, k, k), (tstride, stride, stride), name)


def conv2plus1d(b: GraphBuilder, rng: np.random.Generator, x: Value, cin: int, cout: int, *, k: int = 3, kt: int = 3,
                stride: int = 1, tstride: int = 1, mid: int | None = None, name: str = "c21d") -> Value:
    """(2+1)-D block: ``1 x k x k`` conv to ``mid`` (default R(2+1)D's) + BN + ReLU, ``kt x 1 x 1`` conv + BN + ReLU."""
    mid = r2plus1d_mid(cin, cout, k, kt) if mid is None else mid
    y = _conv3d(b, rng, x, cin, mid, (1, k, k), (1, stride, stride), f"{name}.spatial")
    return _conv3d(b, rng, y, mid, cout, (kt, 1, 1), (tstride, 1, 1), f"{name}.temporal")


def video_net(blocks: Sequence[tuple[str, int, int, int, int]], *, frames: int = 8, size: int = 16,
              in_channels: int = 1, num_classes: int = 10, seed: int = 0, batch: int | str = "N",
              name: str = "video_net") -> Graph:
    """A verified classifier of video blocks: ``blocks`` = ``(kind, cout, k, kt, stride)`` each (``kind`` in
    ``KINDS``; ``stride`` spatial and temporal), then global average pooling over T, H, W and a Gemm."""
    b = GraphBuilder(name, opset=17)
    rng = np.random.default_rng(seed)
    x = b.input("clip", "float32", [batch, in_channels, frames, size, size])
    y, cin = x, in_channels
    for i, (kind, cout, k, kt, stride) in enumerate(blocks):
        if kind not in KINDS:
            raise UserInputError(f"block {i}: kind {kind!r} is not one of {list(KINDS)}")
        fn = conv3d_block if kind == "3d" else conv2plus1d
        with b.annotate(video_block=i, kind=kind):
            y = fn(b, rng, y, cin, cout, k=k, kt=kt, stride=stride, tstride=stride, name=f"b{i}")
        cin = cout
    y = b.Flatten(b.GlobalAveragePool(y, name="pool"), axis=1, name="flatten")
    w = (rng.standard_normal((num_classes, cin)) * math.sqrt(1.0 / cin)).astype(np.float32)
    y = b.Gemm(y, b.const(w, name="fc.w"), b.const(np.zeros(num_classes, np.float32), name="fc.b"), transB=1,
               name="fc")
    b.output(y, "logits")
    return b.build()
