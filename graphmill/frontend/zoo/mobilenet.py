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
from graphmill.ir.builder import GraphBuilder

from ._common import (CNN_MIN_RESOLUTION, Layers, check_batch, check_count, check_positive, cnn_minimum, mbconv,
                      node_meta, resolve_resolution, round_filters, round_repeats)

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


def _inverted_residual_net(name: str, table: list[tuple], *, stem: int, head: int, act: str, width: float,
                           depth: float, resolution: float, num_classes: int, batch: int | str, seed: int,
                           opset: int, head_width: float, family: str,
                           min_resolution: int = CNN_MIN_RESOLUTION) -> Graph:
    w = check_positive("width", width, model=name)
    d = check_positive("depth", depth, model=name)
    res = resolve_resolution(resolution, 224, model=name, **cnn_minimum(min_resolution))
    num_classes = check_count("num_classes", num_classes, model=name)
    batch = check_batch(batch, model=name)

    b = GraphBuilder(name, opset=opset)
    L = Layers(b, seed)
    x = b.input("input", "float32", [batch, 3, res, res])
    c_stem = round_filters(stem, w)
    with b.annotate(model_stage=0, block=0, kind="stem"):
        y = L.conv_bn_act(x, 3, c_stem, 3, 2, act=act)
    stages: list[dict] = []
    blocks: list[dict] = []
    cin = c_stem
    size = (res + 1) // 2
    for s, (kind, e, k, st, c, n, se) in enumerate(table, start=1):
        cout = round_filters(c, w)
        reps = round_repeats(n, d)
        stages.append(dict(stage=s, kind=kind, expand=e, kernel=k, stride=st, se=se, cin=cin, cout=cout,
                           repeats=reps))
        for i in range(reps):
            stride = st if i == 0 else 1
            squeeze = max(1, int(cin * se)) if se else 0
            info = dict(stage=s, block=i, kind=kind, expand=e, kernel=k, stride=stride, se=se)
            with b.annotate(**node_meta(info)):
                # MnasNet's SepConv block has no skip (the reference's "noskip"); MBConvs skip when shapes allow
                y = mbconv(L, y, cin=cin, cout=cout, expand=e, kernel=k, stride=stride, se_channels=squeeze,
                           act=act, se_act="relu", skip=kind != "sepconv")
            size = (size + stride - 1) // stride
            blocks.append(dict(info, cin=cin, cout=cout, se_channels=squeeze, out_size=size))
            cin = cout
    c_head = round_filters(head, head_width)
    with b.annotate(model_stage=len(table) + 1, block=0, kind="head"):
        y = L.conv_bn_act(y, cin, c_head, 1, act=act)
        y = L.classifier(y, c_head, num_classes)
    b.output(y, "logits")
    g = b.build()
    g.meta["model"] = dict(family=family, width=w, depth=d, resolution=res, stem=c_stem, head=c_head,
                           num_classes=num_classes)
    g.meta["stages"] = stages
    g.meta["blocks"] = blocks
    return g


def mobilenet_v2(*, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0, num_classes: int = 1000,
                 batch: int | str = "N", seed: int = 0, opset: int = 17,
                 min_resolution: int = CNN_MIN_RESOLUTION) -> Graph:
    """MobileNetV2 from Table 2: stem 32, inverted residuals with ReLU6, 1x1 conv to 1280, classifier.

    As in the paper, the last 1x1 conv keeps 1280 channels for width < 1 and grows with width > 1.
    """
    table = [("mbconv", t, 3, s, c, n, 0.0) for t, c, n, s in MOBILENET_V2_BLOCKS]
    w = check_positive("width", width, model="mobilenet_v2")
    return _inverted_residual_net("mobilenet_v2", table, stem=32, head=1280, act="relu6", width=w, depth=depth,
                                  resolution=resolution, num_classes=num_classes, batch=batch, seed=seed,
                                  opset=opset, head_width=max(1.0, w), family="mobilenet_v2",
                                  min_resolution=min_resolution)


def mnasnet_a1(*, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0, num_classes: int = 1000,
               batch: int | str = "N", seed: int = 0, opset: int = 17,
               min_resolution: int = CNN_MIN_RESOLUTION) -> Graph:
    """MnasNet-A1 from Figure 7: stem 32, SepConv 16, six MBConv stages (SE where marked), 1x1 conv to 1280."""
    w = check_positive("width", width, model="mnasnet_a1")
    return _inverted_residual_net("mnasnet_a1", MNASNET_A1_BLOCKS, stem=32, head=1280, act="relu", width=w,
                                  depth=depth, resolution=resolution, num_classes=num_classes, batch=batch,
                                  seed=seed, opset=opset, head_width=w, family="mnasnet",
                                  min_resolution=min_resolution)
