"""ResNet-18 and ResNet-50 (He et al., 2015, Table 1), built with the IR builder.

Weights are random (He-normal convolutions, BN at identity statistics) and
seeded, so a model is the same on every machine without downloading anything.
Nodes carry ``meta["model_stage"]`` and ``meta["block"]`` for passes that need the
network's structure.
"""

from __future__ import annotations

import numpy as np

from graphmill.ir import Graph, Value
from graphmill.ir.builder import GraphBuilder

# (blocks per stage, bottleneck?) from the paper's Table 1.
_LAYOUTS = {"resnet18": ([2, 2, 2, 2], False), "resnet34": ([3, 4, 6, 3], False),
            "resnet50": ([3, 4, 6, 3], True), "resnet101": ([3, 4, 23, 3], True)}


class _Net:
    def __init__(self, b: GraphBuilder, seed: int) -> None:
        self.b = b
        self.rng = np.random.default_rng(seed)

    def conv_bn(self, x: Value, cin: int, cout: int, k: int, stride: int, relu: bool) -> Value:
        b = self.b
        w = (self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        y = b.Conv(x, b.const(w), kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        y = b.BatchNormalization(y, b.const(np.ones(cout, np.float32)), b.const(np.zeros(cout, np.float32)),
                                 b.const(np.zeros(cout, np.float32)), b.const(np.ones(cout, np.float32)),
                                 epsilon=1e-5)
        return b.Relu(y) if relu else y

    def basic(self, x: Value, cin: int, cout: int, stride: int) -> Value:
        y = self.conv_bn(x, cin, cout, 3, stride, True)
        y = self.conv_bn(y, cout, cout, 3, 1, False)
        sc = self.conv_bn(x, cin, cout, 1, stride, False) if stride != 1 or cin != cout else x
        return self.b.Relu(self.b.Add(y, sc))

    def bottleneck(self, x: Value, cin: int, width: int, stride: int) -> Value:
        cout = width * 4
        y = self.conv_bn(x, cin, width, 1, 1, True)
        y = self.conv_bn(y, width, width, 3, stride, True)  # stride on the 3x3 (torchvision's v1.5)
        y = self.conv_bn(y, width, cout, 1, 1, False)
        sc = self.conv_bn(x, cin, cout, 1, stride, False) if stride != 1 or cin != cout else x
        return self.b.Relu(self.b.Add(y, sc))


def resnet(name: str = "resnet18", *, width: float = 1.0, depth: float = 1.0, resolution: float = 224,
           num_classes: int = 1000, batch: int | str = "N", seed: int = 0, opset: int = 17,
           min_resolution: int = 32) -> Graph:
    """A ResNet from the paper's block table; ``name`` in resnet18/34/50/101.

    ``width`` scales every stage's channels (``round_filters``, divisor 8), ``depth`` the blocks per
    stage (``ceil(depth * n)``), ``resolution`` the 224x224 input (a multiplier below 16, else pixels),
    at least ``min_resolution`` (the network's total stride, 32, by default).
    """
    from ._common import (check_batch, check_count, check_positive, cnn_minimum, resolve_resolution, round_filters,
                          round_repeats)

    if name not in _LAYOUTS:
        raise ValueError(f"unknown ResNet {name!r}; choose one of {', '.join(_LAYOUTS)}")
    w = check_positive("width", width, model=name)
    d = check_positive("depth", depth, model=name)
    resolution = resolve_resolution(resolution, 224, model=name, **cnn_minimum(min_resolution))
    num_classes = check_count("num_classes", num_classes, model=name)
    batch = check_batch(batch, model=name)
    layout, bottleneck = _LAYOUTS[name]
    blocks = [round_repeats(n, d) for n in layout]
    b = GraphBuilder(name, opset=opset)
    net = _Net(b, seed)
    x = b.input("input", "float32", [batch, 3, resolution, resolution])
    stem = round_filters(64, w)
    with b.annotate(model_stage=0, block=0, kind="stem"):
        y = net.conv_bn(x, 3, stem, 7, 2, True)
        y = b.MaxPool(y, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = stem
    table = []
    for s, n in enumerate(blocks):
        width = round_filters(64 * 2**s, w)
        table.append(dict(stage=s + 1, kind="bottleneck" if bottleneck else "basic", repeats=n, width=width,
                          stride=1 if s == 0 else 2, kernel=3, expand=4 if bottleneck else 1, se=0.0))
        for i in range(n):
            stride = 2 if (i == 0 and s > 0) else 1
            with b.annotate(model_stage=s + 1, block=i, kind=table[-1]["kind"], kernel=3, stride=stride):
                if bottleneck:
                    y = net.bottleneck(y, cin, width, stride)
                    cin = width * 4
                else:
                    y = net.basic(y, cin, width, stride)
                    cin = width
    with b.annotate(model_stage=len(blocks) + 1, block=0, kind="head"):
        y = b.Flatten(b.GlobalAveragePool(y), axis=1)
        fc = (net.rng.standard_normal((num_classes, cin)) * np.sqrt(1.0 / cin)).astype(np.float32)
        y = b.Gemm(y, b.const(fc), b.const(np.zeros(num_classes, np.float32)), transB=1)
    b.output(y, "logits")
    g = b.build()
    g.meta["model"] = dict(family="resnet", variant=name, width=w, depth=d, resolution=resolution,
                           num_classes=num_classes)
    g.meta["stages"] = table
    g.meta["blocks"] = [dict(stage=t["stage"], block=i, kind=t["kind"], kernel=3,
                             stride=t["stride"] if i == 0 else 1) for t in table for i in range(t["repeats"])]
    return g
