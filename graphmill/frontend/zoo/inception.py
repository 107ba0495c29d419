"""Inception-V3 (Szegedy et al., 2016, "Rethinking the Inception Architecture", Table 1 and Figures 5-7), the
layout torchvision implements: the stem (3x3/2 32, 3x3 32, 3x3 64, max-pool, 1x1 80, 3x3 192, max-pool), three
InceptionA blocks (35x35), a grid reduction, four InceptionC blocks with factorized 1x7 / 7x1 convolutions
(17x17; 128, 160, 160, 192 channels in their 7x7 branches), a grid reduction, two InceptionE blocks with expanded
1x3 / 3x1 branches (8x8), global average pool and a 1000-way classifier; 299x299 input, 23.8M parameters
(the auxiliary classifier, used only in training, is left out).

Every convolution is Conv + BatchNormalization (eps 0.001) + ReLU with seeded He-normal weights. Nodes carry
``meta["model_stage"]`` (0 stem, 1-3 the grids, 4 head), ``meta["block"]`` and ``meta["kind"]``.
"""

from __future__ import annotations

import math

from graphmill.ir import Graph, Value
from graphmill.ir.builder import GraphBuilder

from ._common import Layers, check_batch, check_count, check_positive, resolve_resolution, round_filters


class _Inception(Layers):
    def __init__(self, b: GraphBuilder, seed: int, width: float) -> None:
        super().__init__(b, seed)
        self.width = width

    def c(self, n: int) -> int:
        return round_filters(n, self.width)

    def cba(self, x: Value, cin: int, cout: int, k: tuple[int, int] | int, stride: int = 1,
            pad: tuple[int, int] | int = 0) -> Value:
        kh, kw = (k, k) if isinstance(k, int) else k
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        b = self.b
        w = b.const(self.normal((cout, cin, kh, kw), math.sqrt(2.0 / (cin * kh * kw))))
        y = b.Conv(x, w, kernel_shape=[kh, kw], strides=[stride, stride], pads=[ph, pw, ph, pw])
        return b.Relu(self.bn(y, cout, eps=1e-3))

    def avg(self, x: Value) -> Value:
        return self.b.AveragePool(x, kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0)

    def block_a(self, x: Value, cin: int, pool: int) -> tuple[Value, int]:
        c = self.c
        b1 = self.cba(x, cin, c(64), 1)
        b5 = self.cba(self.cba(x, cin, c(48), 1), c(48), c(64), 5, pad=2)
        b3 = self.cba(self.cba(self.cba(x, cin, c(64), 1), c(64), c(96), 3, pad=1), c(96), c(96), 3, pad=1)
        bp = self.cba(self.avg(x), cin, c(pool), 1)
        return self.b.Concat(b1, b5, b3, bp, axis=1), c(64) + c(64) + c(96) + c(pool)

    def block_b(self, x: Value, cin: int) -> tuple[Value, int]:
        c = self.c
        b3 = self.cba(x, cin, c(384), 3, stride=2)
        bd = self.cba(self.cba(self.cba(x, cin, c(64), 1), c(64), c(96), 3, pad=1), c(96), c(96), 3, stride=2)
        bp = self.b.MaxPool(x, kernel_shape=[3, 3], strides=[2, 2])
        return self.b.Concat(b3, bd, bp, axis=1), c(384) + c(96) + cin

    def block_c(self, x: Value, cin: int, c7: int) -> tuple[Value, int]:
        c = self.c
        c7 = c(c7)
        b1 = self.cba(x, cin, c(192), 1)
        b7 = self.cba(x, cin, c7, 1)
        b7 = self.cba(b7, c7, c7, (1, 7), pad=(0, 3))
        b7 = self.cba(b7, c7, c(192), (7, 1), pad=(3, 0))
        bd = self.cba(x, cin, c7, 1)
        for k, p, o in (((7, 1), (3, 0), c7), ((1, 7), (0, 3), c7), ((7, 1), (3, 0), c7), ((1, 7), (0, 3), c(192))):
            bd = self.cba(bd, c7, o, k, pad=p)
        bp = self.cba(self.avg(x), cin, c(192), 1)
        return self.b.Concat(b1, b7, bd, bp, axis=1), 4 * c(192)

    def block_d(self, x: Value, cin: int) -> tuple[Value, int]:
        c = self.c
        b3 = self.cba(self.cba(x, cin, c(192), 1), c(192), c(320), 3, stride=2)
        b7 = self.cba(x, cin, c(192), 1)
        b7 = self.cba(b7, c(192), c(192), (1, 7), pad=(0, 3))
        b7 = self.cba(b7, c(192), c(192), (7, 1), pad=(3, 0))
        b7 = self.cba(b7, c(192), c(192), 3, stride=2)
        bp = self.b.MaxPool(x, kernel_shape=[3, 3], strides=[2, 2])
        return self.b.Concat(b3, b7, bp, axis=1), c(320) + c(192) + cin

    def block_e(self, x: Value, cin: int) -> tuple[Value, int]:
        c, b = self.c, self.b
        b1 = self.cba(x, cin, c(320), 1)
        b3 = self.cba(x, cin, c(384), 1)
        b3 = b.Concat(self.cba(b3, c(384), c(384), (1, 3), pad=(0, 1)),
                      self.cba(b3, c(384), c(384), (3, 1), pad=(1, 0)), axis=1)
        bd = self.cba(self.cba(x, cin, c(448), 1), c(448), c(384), 3, pad=1)
        bd = b.Concat(self.cba(bd, c(384), c(384), (1, 3), pad=(0, 1)),
                      self.cba(bd, c(384), c(384), (3, 1), pad=(1, 0)), axis=1)
        bp = self.cba(self.avg(x), cin, c(192), 1)
        return b.Concat(b1, b3, bd, bp, axis=1), c(320) + 4 * c(384) + c(192)


def inception_v3(*, width: float = 1.0, depth: float = 1.0, resolution: float = 299, num_classes: int = 1000,
                 batch: int | str = "N", seed: int = 0, opset: int = 17) -> Graph:
    """Inception-V3 from the paper's Table 1 (module docstring). ``width`` scales every convolution's channels
    (``round_filters``), ``resolution`` the 299x299 input (a multiplier below 16, else pixels, at least 75);
    ``depth`` is accepted for the zoo's common interface and must be 1 (the blocks are all different)."""
    w = check_positive("width", width, model="inception_v3")
    d = check_positive("depth", depth, model="inception_v3")
    if d != 1.0:
        from graphmill.ir import UserInputError

        raise UserInputError("depth for inception_v3: its blocks are each different; only depth=1 is defined")
    res = resolve_resolution(resolution, 299, model="inception_v3", minimum=75,
                             why="its stem and two grid reductions need 75x75")
    num_classes = check_count("num_classes", num_classes, model="inception_v3")
    batch = check_batch(batch, model="inception_v3")
    b = GraphBuilder("inception_v3", opset=opset)
    net = _Inception(b, seed, w)
    c = net.c
    x = b.input("input", "float32", [batch, 3, res, res])
    with b.annotate(model_stage=0, block=0, kind="stem"):
        y = net.cba(x, 3, c(32), 3, stride=2)
        y = net.cba(y, c(32), c(32), 3)
        y = net.cba(y, c(32), c(64), 3, pad=1)
        y = b.MaxPool(y, kernel_shape=[3, 3], strides=[2, 2])
        y = net.cba(y, c(64), c(80), 1)
        y = net.cba(y, c(80), c(192), 3)
        y = b.MaxPool(y, kernel_shape=[3, 3], strides=[2, 2])
    cin = c(192)
    blocks = []
    for i, pool in enumerate((32, 64, 64)):
        with b.annotate(model_stage=1, block=i, kind="inception_a"):
            y, cin = net.block_a(y, cin, pool)
        blocks.append(("inception_a", 1, i))
    with b.annotate(model_stage=2, block=0, kind="reduction_b"):
        y, cin = net.block_b(y, cin)
    blocks.append(("reduction_b", 2, 0))
    for i, c7 in enumerate((128, 160, 160, 192)):
        with b.annotate(model_stage=2, block=i + 1, kind="inception_c"):
            y, cin = net.block_c(y, cin, c7)
        blocks.append(("inception_c", 2, i + 1))
    with b.annotate(model_stage=3, block=0, kind="reduction_d"):
        y, cin = net.block_d(y, cin)
    blocks.append(("reduction_d", 3, 0))
    for i in range(2):
        with b.annotate(model_stage=3, block=i + 1, kind="inception_e"):
            y, cin = net.block_e(y, cin)
        blocks.append(("inception_e", 3, i + 1))
    with b.annotate(model_stage=4, block=0, kind="head"):
        y = net.classifier(y, cin, num_classes)
    b.output(y, "logits")
    g = b.build()
    g.meta["model"] = dict(family="inception", variant="inception_v3", width=w, resolution=res,
                           num_classes=num_classes)
    g.meta["blocks"] = [dict(stage=s, block=i, kind=k) for k, s, i in blocks]
    return g


__all__ = ["inception_v3"]
