"""CoAtNet-0..3 (Dai, Liu, Le & Tan 2021): convolution then relative self-attention, stacked C-C-T-T.

Table 3 of the paper gives each variant's blocks ``L`` and channels ``D`` for its five stages: S0 a conv stem
(stride 2), S1-S2 MBConv stages and S3-S4 Transformer stages, each halving the map (224 -> 112, 56, 28, 14, 7).

* S0: 3x3 conv (stride 2) + BN + GELU, then a 3x3 conv (the next block's pre-norm normalizes it).
* MBConv (pre-norm, section 3.1 / eq. 4 of the paper): ``x + Proj(SE(DConv(Conv(Norm(x)))))`` with expansion
  4 of the output channels, a 3x3 depthwise conv, squeeze-excitation of 0.25 of the output channels (swish),
  BN + GELU after the 1x1 expansion and the depthwise conv; the first block of a stage downsamples as the
  paper writes it: ``Proj(Pool(x)) + Proj(SE(DConv(Conv(Norm(x), stride=2))))`` (stride 2 in the 1x1
  expansion conv, the shortcut a 2x2 average pool and a 1x1 conv).
* Transformer (pre-norm): ``x + Attention(Norm(x))``, ``x + FFN(Norm(x))`` with LayerNorm, head size 32,
  FFN expansion 4 with GELU; the first block of a stage is ``Proj(Pool(x)) + Attention(Pool(Norm(x)))``.
  Attention is *relative attention* over the whole map (eq. 3): one ``graphmill::RelativeAttention`` node
  (``ir/ops/attention.py``) per block, whose learned table of ``(2H-1)(2W-1) x heads`` biases the logits by
  relative position; it is lowered to standard ONNX (Gather + Add before Softmax) when saved or run by ONNX
  Runtime, and run directly by the torch backend. The Transformer stages keep activations as [N, H, W, C].
* Head: global average pool, LayerNorm, a pre-logits dense layer of the last width with tanh (the official
  MaxViT/CoAtNet code's and timm's paper configurations' head), the classifier.

Multipliers: ``width`` scales every stage's channels (``round_filters``; the Transformer stages to multiples
of 32, the head size); ``depth`` the blocks of S1-S4 (``ceil``); ``resolution`` the 224x224 input (below 16 a
multiplier, from 16 up pixels), which must be a multiple of 32: every stage halves the map exactly, and the
relative-attention tables are sized by the S3/S4 maps. Weights are seeded and drawn when first read.

Published (paper Table 4, ImageNet-1K at 224, "FLOPs" being multiply-adds): CoAtNet-0 25M / 4.2B,
CoAtNet-1 42M / 8.4B, CoAtNet-2 75M / 15.7B, CoAtNet-3 168M / 34.7B; tests/frontend/test_zoo_coatnet.py
compares them.
"""

from __future__ import annotations

import numpy as np

from graphmill.ir import Graph, UserInputError, Value
from graphmill.ir.builder import GraphBuilder
from graphmill.ir.ops.attention import DOMAIN as ATTENTION_DOMAIN
from graphmill.ir.ops.attention import OP as ATTENTION_OP
from graphmill.ir.ops.attention import table_rows
from graphmill.util.limits import shape_problem

from ._common import (check_batch, check_count, check_positive, node_meta, resolve_resolution, round_filters,
                      round_repeats, squeeze_channels)
from .transformer import Encoder

#: variant -> (blocks L, channels D) of stages S0..S4: the paper's Table 3
VARIANTS = {
    0: ((2, 2, 3, 5, 2), (64, 96, 192, 384, 768)),
    1: ((2, 2, 6, 14, 2), (64, 96, 192, 384, 768)),
    2: ((2, 2, 6, 14, 2), (128, 128, 256, 512, 1024)),
    3: ((2, 2, 6, 14, 2), (192, 192, 384, 768, 1536)),
}
BLOCK_TYPES = ("conv", "mbconv", "mbconv", "transformer", "transformer")
HEAD_SIZE = 32
MBCONV_EXPANSION = 4
FFN_EXPANSION = 4
SE_RATIO = 0.25
NATIVE_RESOLUTION = 224
#: every stage halves the map: the input must be a multiple of 2^5
RESOLUTION_MULTIPLE = 32


class _CoAtLayers(Encoder):
    """Transformer layers (``Encoder``) with GELU for the conv stages, lazily drawn weights, NHWC pooling."""

    def __init__(self, b: GraphBuilder, seed: int, opset: int) -> None:
        super().__init__(b, seed, opset)
        self.lazy = True  # Layers: weights are drawn when something reads them

    def act(self, x: Value, kind: str) -> Value:
        return self.gelu(x) if kind == "gelu" else super().act(x, kind)

    def pool_nhwc(self, x: Value) -> Value:
        """2x2 average pool (stride 2) of an [N, H, W, C] map."""
        b = self.b
        return b.Transpose(b.AveragePool(b.Transpose(x, perm=[0, 3, 1, 2]), kernel_shape=[2, 2], strides=[2, 2]),
                           perm=[0, 2, 3, 1])

    def mbconv(self, x: Value, cin: int, cout: int, stride: int) -> Value:
        b = self.b
        mid = cout * MBCONV_EXPANSION
        if stride == 2:
            with b.annotate(layer="shortcut"):
                shortcut = self.conv(b.AveragePool(x, kernel_shape=[2, 2], strides=[2, 2]), cin, cout, 1, bias=True,
                                     gain=1.0)
        else:
            shortcut = x
        with b.annotate(layer="pre_norm"):
            y = self.bn(x, cin, eps=1e-3)
        with b.annotate(layer="expand"):
            y = self.conv_bn_act(y, cin, mid, 1, stride, act="gelu", eps=1e-3, gain=1.0)
        with b.annotate(layer="depthwise"):
            y = self.conv_bn_act(y, mid, mid, 3, 1, groups=mid, act="gelu", eps=1e-3)
        with b.annotate(layer="se"):
            y = self.squeeze_excite(y, mid, squeeze_channels(cout, SE_RATIO), "swish")
        with b.annotate(layer="project"):
            y = self.conv(y, mid, cout, 1, bias=True, gain=0.5)
        return b.Add(shortcut, y)

    def transformer(self, x: Value, cin: int, cout: int, stride: int, size: int, eps: float) -> Value:
        """One pre-norm Transformer block on an [N, H, W, cin] map; ``size`` is the output map's side."""
        b = self.b
        heads = cout // HEAD_SIZE
        with b.annotate(layer="attention"):
            y = self.layer_norm(x, cin, eps)
            if stride == 2:
                y = self.pool_nhwc(y)
                with b.annotate(layer="shortcut"):
                    x = self.linear(self.pool_nhwc(x), cin, cout)
            tokens = b.Reshape(y, b.const(np.array([0, -1, cin], np.int64)))
            split = b.const(np.array([0, 0, heads, HEAD_SIZE], np.int64))
            q, k, v = (b.Transpose(b.Reshape(self.linear(tokens, cin, cout), split), perm=[0, 2, 1, 3])
                       for _ in range(3))
            table = self.weight(table_rows(size, size), heads)
            a = b.op(ATTENTION_OP, q, k, v, table, domain=ATTENTION_DOMAIN, height=size, width=size)
            a = b.Reshape(b.Transpose(a, perm=[0, 2, 1, 3]), b.const(np.array([0, 0, cout], np.int64)))
            a = b.Reshape(self.linear(a, cout, cout), b.const(np.array([0, size, size, cout], np.int64)))
            x = b.Add(x, a)
        return b.Add(x, self.mlp(self.layer_norm(x, cout, eps), cout, cout * FFN_EXPANSION))

    def head(self, x: Value, c: int, num_classes: int, eps: float) -> Value:
        b = self.b
        if self.opset >= 18:
            y = b.ReduceMean(x, b.const(np.array([1, 2], np.int64)), keepdims=0)
        else:
            y = b.ReduceMean(x, axes=[1, 2], keepdims=0)
        y = self.layer_norm(y, c, eps)
        with b.annotate(layer="pre_logits"):
            y = b.Tanh(b.Gemm(y, self.weight(c, c), self.zeros(c), transB=1))
        return b.Gemm(y, self.weight(num_classes, c), self.zeros(num_classes), transB=1)


def _check_resolution(resolution, name: str) -> int:
    r = check_positive("resolution", resolution, model=name)
    if r >= 16 and (not r.is_integer() or int(r) % RESOLUTION_MULTIPLE):
        raise UserInputError(
            f"resolution={r:g} for {name}: the input size must be a multiple of {RESOLUTION_MULTIPLE} "
            f"(five stride-2 stages halve it exactly; the relative-attention stages attend over its 1/16 and 1/32 "
            f"maps, {r / 16:g}x{r / 16:g} and {r / 32:g}x{r / 32:g} here)")
    res = resolve_resolution(r, NATIVE_RESOLUTION, model=name, multiple=RESOLUTION_MULTIPLE,
                             minimum=RESOLUTION_MULTIPLE, why="five stride-2 stages")
    positions = (res // 16) ** 2  # S3's map, the largest relative attention
    why = shape_problem((positions, positions))
    if why:
        raise UserInputError(f"resolution={res} for {name}: stage 3 attends over {positions} positions, and each "
                             f"head's [{positions}, {positions}] attention logits would have {why}")
    return res


def coatnet(variant: int = 0, *, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0,
            num_classes: int = 1000, batch: int | str = "N", seed: int = 0, opset: int = 17,
            eps: float = 1e-5) -> Graph:
    """CoAtNet-``variant`` (0..3) from the paper's Table 3, scaled by ``width``/``depth``/``resolution``.

    Nodes carry ``meta["model_stage"]`` (0 the stem, 1-2 MBConv, 3-4 Transformer, 5 the head), ``block``,
    ``kind`` and ``layer``; ``graph.meta["stages"]``/``["blocks"]`` hold the scaled table.
    """
    key = str(variant).strip().lower().removeprefix("coatnet").lstrip("-_")
    if key not in {str(v) for v in VARIANTS}:
        raise UserInputError(f"unknown CoAtNet variant {variant!r}; choose one of {', '.join(map(str, VARIANTS))}")
    v = int(key)
    name = f"coatnet_{v}"
    w = check_positive("width", width, model=name)
    d = check_positive("depth", depth, model=name)
    res = _check_resolution(resolution, name)
    num_classes = check_count("num_classes", num_classes, model=name)
    batch = check_batch(batch, model=name)
    layers, dims = VARIANTS[v]
    widths = [round_filters(c, w, HEAD_SIZE if kind == "transformer" else 8) for c, kind in zip(dims, BLOCK_TYPES)]
    repeats = [layers[0]] + [round_repeats(n, d) for n in layers[1:]]

    b = GraphBuilder(name, opset=opset, opsets={ATTENTION_DOMAIN: 1})
    L = _CoAtLayers(b, seed, opset)
    x = b.input("input", "float32", [batch, 3, res, res])
    size = res // 2
    with b.annotate(model_stage=0, block=0, kind="stem"):
        y = L.conv_bn_act(x, 3, widths[0], 3, 2, act="gelu", eps=1e-3)
        for _ in range(repeats[0] - 1):
            y = L.conv(y, widths[0], widths[0], 3, 1, gain=2.0)
    stages = [dict(stage=0, kind="conv", cin=3, cout=widths[0], repeats=repeats[0], stride=2, out_size=size)]
    blocks: list[dict] = []
    cin = widths[0]
    for s in range(1, 5):
        kind, cout = BLOCK_TYPES[s], widths[s]
        if kind == "transformer" and stages[-1]["kind"] != "transformer":
            # NCHW -> NHWC for LayerNorm over channels: the stage's first block's (one node without a stage made
            # `graphmill scale` ignore the recorded stages and deepen the two MBConv stages only)
            with b.annotate(**node_meta(dict(stage=s, block=0, kind=kind, stride=2))):
                y = b.Transpose(y, perm=[0, 2, 3, 1])
        size //= 2
        stages.append(dict(stage=s, kind=kind, cin=cin, cout=cout, repeats=repeats[s], stride=2, out_size=size,
                           **({"heads": cout // HEAD_SIZE} if kind == "transformer" else {})))
        for i in range(repeats[s]):
            stride = 2 if i == 0 else 1
            info = dict(stage=s, block=i, kind=kind, stride=stride)
            with b.annotate(**node_meta(info)):
                y = L.mbconv(y, cin, cout, stride) if kind == "mbconv" else L.transformer(y, cin, cout, stride, size,
                                                                                             eps)
            blocks.append(dict(info, cin=cin, cout=cout, out_size=size))
            cin = cout
    with b.annotate(model_stage=5, block=0, kind="head"):
        y = L.head(y, cin, num_classes, eps)
    b.output(y, "logits")
    g = b.build()
    g.meta["model"] = dict(family="coatnet", variant=v, width=w, depth=d, resolution=res, widths=widths,
                           repeats=repeats, head_size=HEAD_SIZE, num_classes=num_classes)
    g.meta["stages"] = stages
    g.meta["blocks"] = blocks
    return g
