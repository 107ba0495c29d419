"""ResNet-18 and ResNet-50 (He et al., 2015, Table 1), built with the IR builder.

Weights are random (He-normal convolutions, BN at identity statistics) and
seeded, so a model is the same on every machine without downloading anything.
Nodes carry ``meta["stage"]`` and ``meta["block"]`` for passes that need the
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


def resnet(name: str = "resnet18", *, num_classes: int = 1000, resolution: int = 224, batch: int | str = "N",
           seed: int = 0, opset: int = 17) -> Graph:
    """A ResNet from the paper's block table; ``name`` in resnet18/34/50/101."""
    if name not in _LAYOUTS:
        raise ValueError(f"unknown ResNet {name!r}; choose one of {', '.join(_LAYOUTS)}")
    blocks, bottleneck = _LAYOUTS[name]
    b = GraphBuilder(name, opset=opset)
    net = _Net(b, seed)
    x = b.input("input", "float32", [batch, 3, resolution, resolution])
    with b.annotate(stage=0, block=0):
        y = net.conv_bn(x, 3, 64, 7, 2, True)
        y = b.MaxPool(y, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for s, n in enumerate(blocks):
        width = 64 * 2**s
        for i in range(n):
            stride = 2 if (i == 0 and s > 0) else 1
            with b.annotate(stage=s + 1, block=i):
                if bottleneck:
                    y = net.bottleneck(y, cin, width, stride)
                    cin = width * 4
                else:
                    y = net.basic(y, cin, width, stride)
                    cin = width
    with b.annotate(stage=len(blocks) + 1, block=0):
        y = b.Flatten(b.GlobalAveragePool(y), axis=1)
        w = (net.rng.standard_normal((num_classes, cin)) * np.sqrt(1.0 / cin)).astype(np.float32)
        y = b.Gemm(y, b.const(w), b.const(np.zeros(num_classes, np.float32)), transB=1)
    b.output(y, "logits")
    return b.build()
