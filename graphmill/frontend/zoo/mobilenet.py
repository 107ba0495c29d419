"""MobileNetV2 (Sandler et al., 2018, Table 2) and MnasNet-A1 (Tan et al., 2019, Figure 7).

Both are stacks of inverted residual (MBConv) blocks, built with the IR builder
from the papers' tables with seeded random weights. ``width`` scales channels
with ``round_filters`` (divisor 8, never more than 10% down), ``depth`` the
repeats of each stage by ``ceil(depth * n)``, ``resolution`` the 224x224 input
(a multiplier below 16, a size in pixels from 16 up).

Nodes carry ``meta["model_stage"]`` / ``meta["block"]`` and, in MBConv stages, the
block's ``kind``, ``expand``, ``kernel``, ``stride`` and ``se``;
``graph.meta["blocks"]`` and ``graph.meta["stages"]`` hold the table.
"""

from __future__ import annotations

from graphmill.ir import Graph

from ._common import CNN_MIN_RESOLUTION, check_positive, inverted_residual_net

# MobileNetV2, Table 2: (t expansion, c channels, n repeats, s stride); all 3x3 depthwise, ReLU6.
MOBILENET_V2_BLOCKS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]

# MnasNet-A1, Figure 7: (kind, expansion, kernel, stride, channels, repeats, SE ratio); ReLU.
# The first block is a SepConv (depthwise 3x3 + pointwise 1x1, no expansion).
MNASNET_A1_BLOCKS = [
    ("sepconv", 1, 3, 1, 16, 1, 0.0),
    ("mbconv", 6, 3, 2, 24, 2, 0.0),
    ("mbconv", 3, 5, 2, 40, 3, 0.25),
    ("mbconv", 6, 3, 2, 80, 4, 0.0),
    ("mbconv", 6, 3, 1, 112, 2, 0.25),
    ("mbconv", 6, 5, 2, 160, 3, 0.25),
    ("mbconv", 6, 3, 1, 320, 1, 0.0),
]


def mobilenet_v2(*, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0, num_classes: int = 1000,
                 batch: int | str = "N", seed: int = 0, opset: int = 17,
                 min_resolution: int = CNN_MIN_RESOLUTION) -> Graph:
    """MobileNetV2 from Table 2: stem 32, inverted residuals with ReLU6, 1x1 conv to 1280, classifier.

    As in the paper, the last 1x1 conv keeps 1280 channels for width < 1 and grows with width > 1.
    """
    table = [("mbconv", t, 3, s, c, n, 0.0) for t, c, n, s in MOBILENET_V2_BLOCKS]
    w = check_positive("width", width, model="mobilenet_v2")
    return inverted_residual_net("mobilenet_v2", table, stem=32, head=1280, act="relu6", width=w, depth=depth,
                                 resolution=resolution, num_classes=num_classes, batch=batch, seed=seed,
                                 opset=opset, head_width=max(1.0, w), family="mobilenet_v2",
                                 min_resolution=min_resolution)


def mnasnet_a1(*, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0, num_classes: int = 1000,
               batch: int | str = "N", seed: int = 0, opset: int = 17,
               min_resolution: int = CNN_MIN_RESOLUTION) -> Graph:
    """MnasNet-A1 from Figure 7: stem 32, SepConv 16, six MBConv stages (SE where marked), 1x1 conv to 1280."""
    w = check_positive("width", width, model="mnasnet_a1")
    return inverted_residual_net("mnasnet_a1", MNASNET_A1_BLOCKS, stem=32, head=1280, act="relu", width=w,
                                 depth=depth, resolution=resolution, num_classes=num_classes, batch=batch,
                                 seed=seed, opset=opset, head_width=w, family="mnasnet",
                                 min_resolution=min_resolution)
