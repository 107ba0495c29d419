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

``itgm_conv`` is EvaNet's iTGM layer (a 3-D convolution whose temporal profile is a learned mixture of
Gaussians, computed in the graph from a few parameters); ``conv_bn`` / ``batchnorm`` are the pieces, with a
zero-initialized BatchNormalization scale and a residual input for layers that must start as the identity.

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
    return conv_bn(b, rng, x, cin, cout, kernel, stride, name)


def batchnorm(b: GraphBuilder, y: Value, c: int, name: str, *, zero_scale: bool = False) -> Value:
    """BatchNormalization of ``c`` channels (scale 1, or 0 with ``zero_scale``: a zero-initialized residual
    branch, BigNAS's choice, which an inserted layer uses to start as the identity)."""
    scale = np.zeros(c, np.float32) if zero_scale else np.ones(c, np.float32)
    return b.BatchNormalization(y, b.const(scale, name=f"{name}.bn.scale"),
                                b.const(np.zeros(c, np.float32), name=f"{name}.bn.bias"),
                                b.const(np.zeros(c, np.float32), name=f"{name}.bn.mean"),
                                b.const(np.ones(c, np.float32), name=f"{name}.bn.var"), epsilon=1e-5,
                                name=f"{name}.bn")


def conv_bn(b: GraphBuilder, rng: np.random.Generator, x: Value, cin: int, cout: int, kernel: Sequence[int],
            stride: Sequence[int], name: str, *, relu: bool = True, zero_scale: bool = False,
            residual: Value | None = None) -> Value:
    """3-D convolution (``kernel`` = ``[kt, kh, kw]``, "same" padding ``k // 2``, He-initialized ``{name}.w``)
    + BatchNormalization (``{name}.bn.*``) [+ ``residual``] [+ ReLU]."""
    kt, kh, kw = kernel
    w = (rng.standard_normal((cout, cin, kt, kh, kw)) * math.sqrt(2.0 / (cin * kt * kh * kw))).astype(np.float32)
    pads = [kt // 2, kh // 2, kw // 2] * 2
    y = b.Conv(x, b.const(w, name=f"{name}.w"), kernel_shape=list(kernel), strides=list(stride), pads=pads,
               name=f"{name}.conv")
    y = batchnorm(b, y, cout, name, zero_scale=zero_scale)
    if residual is not None:
        y = b.Add(residual, y, name=f"{name}.add")
    return b.Relu(y, name=f"{name}.relu") if relu else y


ITGM_SUFFIXES = (".itgm.w", ".itgm.center", ".itgm.width", ".itgm.mix")
"""Names (suffixes) of an iTGM layer's parameters: what ``itgm_parameters`` finds for ``to_torch(trainable=)``."""


def itgm_conv(b: GraphBuilder, rng: np.random.Generator, x: Value, cin: int, cout: int, *, k: int = 3,
              length: int = 3, mixtures: int = 2, stride: int = 1, tstride: int = 1, name: str = "itgm",
              relu: bool = True, zero_scale: bool = False, residual: Value | None = None) -> Value:
    """An iTGM layer (inflated Temporal Gaussian Mixture, EvaNet, Piergiovanni et al. 2019) + BN [+ residual]
    [+ ReLU]: a ``length x k x k`` 3-D convolution whose kernel is a 2-D ``k x k`` kernel ``{name}.itgm.w``
    (``[cout, cin, 1, k, k]``) times, per output channel, a temporal profile that mixes ``mixtures`` Gaussians::

        g_m(t) = exp(-(t - center_m)^2 / (2 exp(2 width_m))), normalized over the taps t = -(L-1)/2 .. (L-1)/2
        profile[c] = softmax(mix[c]) @ g                          kernel = w * profile[c]  (broadcast over t)

    ``center``, ``width`` (log sigma, in frames) and ``mix`` (``[cout, mixtures]``) are parameters, so the
    layer has ``cout*cin*k*k + 2*mixtures + cout*mixtures`` of them whatever its temporal length (the point of
    iTGM: long temporal kernels at 2-D cost in parameters). The kernel is computed in the graph from the
    parameters (standard ONNX ops: ONNX Runtime and the torch backend run it, the torch backend trains it with
    ``to_torch(graph, trainable=weight_initializers(graph) | itgm_parameters(graph))``).
    """
    M, L = mixtures, length
    w = (rng.standard_normal((cout, cin, 1, k, k)) * math.sqrt(2.0 / (cin * k * k))).astype(np.float32)
    half = (L - 1) / 2
    centers = np.linspace(-half / 2, half / 2, M).astype(np.float32) if M > 1 else np.zeros(1, np.float32)
    widths = np.full(M, math.log(max(0.5, L / (2.0 * M))), np.float32)
    ws = b.const(w, name=f"{name}.itgm.w")
    c = b.Reshape(b.const(centers, name=f"{name}.itgm.center"), np.array([M, 1], np.int64), name=f"{name}.c")
    taps = b.const((np.arange(L, dtype=np.float32) - np.float32(half))[None, :], name=f"{name}.taps")
    d = b.Sub(taps, c, name=f"{name}.d")                                                    # [M, L]
    var = b.Exp(b.Mul(b.const(widths, name=f"{name}.itgm.width"), np.float32(2.0), name=f"{name}.w2"),
                name=f"{name}.var")
    var = b.Reshape(var, np.array([M, 1], np.int64), name=f"{name}.var2")
    g = b.Exp(b.Div(b.Mul(d, d, name=f"{name}.dd"), b.Mul(var, np.float32(-2.0), name=f"{name}.v2"),
                    name=f"{name}.q"), name=f"{name}.g")
    g = b.Div(g, b.ReduceSum(g, np.array([1], np.int64), keepdims=1, name=f"{name}.gsum"), name=f"{name}.gn")
    mix = b.Softmax(b.const(np.zeros((cout, M), np.float32), name=f"{name}.itgm.mix"), axis=1,
                    name=f"{name}.softmax")
    prof = b.Reshape(b.MatMul(mix, g, name=f"{name}.profile"), np.array([cout, 1, L, 1, 1], np.int64),
                     name=f"{name}.profile5")
    kernel = b.Mul(ws, prof, name=f"{name}.kernel")                                         # [cout, cin, L, k, k]
    y = b.Conv(x, kernel, kernel_shape=[L, k, k], strides=[tstride, stride, stride], pads=[L // 2, k // 2, k // 2] * 2,
               name=f"{name}.conv")
    y = batchnorm(b, y, cout, name, zero_scale=zero_scale)
    if residual is not None:
        y = b.Add(residual, y, name=f"{name}.add")
    return b.Relu(y, name=f"{name}.relu") if relu else y


def itgm_parameters(graph: Graph) -> set[str]:
    """The initializers of ``graph``'s iTGM layers that train (``ITGM_SUFFIXES``): ``weight_initializers`` does
    not see them, since they reach the Conv through the ops that compute its kernel."""
    return {n for n in graph.initializers if n.endswith(ITGM_SUFFIXES)}


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
    b.output(classifier_head(b, rng, y, cin, num_classes), "logits")
    return b.build()


def classifier_head(b: GraphBuilder, rng: np.random.Generator, y: Value, cin: int, num_classes: int) -> Value:
    """Global average pooling over T, H, W, then a Gemm to ``num_classes`` logits (``fc.w``, ``fc.b``)."""
    y = b.Flatten(b.GlobalAveragePool(y, name="pool"), axis=1, name="flatten")
    w = (rng.standard_normal((num_classes, cin)) * math.sqrt(1.0 / cin)).astype(np.float32)
    return b.Gemm(y, b.const(w, name="fc.w"), b.const(np.zeros(num_classes, np.float32), name="fc.b"), transB=1,
                  name="fc")
