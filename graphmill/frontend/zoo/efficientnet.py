"""EfficientNet-B0..B7 (Tan & Le, 2019), built with the IR builder from the paper's B0 table.

B0's block table (Table 1 of the paper): per stage the MBConv expansion, kernel,
stride, output channels and repeats. A variant B``i`` scales it with the
paper's compound coefficients (width, depth, resolution, dropout): channels by
``round_filters`` (divisor 8, never more than 10% down), repeats by
``ceil(depth * n)``, the input by the resolution. Blocks have
squeeze-and-excitation with 0.25 of the block's *input* channels and swish
(``x * sigmoid(x)``); stem 32 and head 1280 channels are scaled like the rest.

The user's ``width``/``depth`` multiply the variant's coefficients;
``resolution`` is a multiplier of the variant's input size (< 16) or a size in
pixels. Dropout is an inference no-op: its rate is recorded in
``graph.meta["model"]``, not built.

Every node carries ``meta["model_stage"]`` (0 stem, 1..7 the MBConv stages, 8 the
head) and ``meta["block"]``, and MBConv nodes also the block's ``kind``,
``expand``, ``kernel``, ``stride`` and ``se``; ``graph.meta["blocks"]`` and
``graph.meta["stages"]`` hold the same table in machine-readable form.
"""

from __future__ import annotations

from graphmill.ir import Graph
from graphmill.ir.builder import GraphBuilder

from ._common import (CNN_MIN_RESOLUTION, Layers, check_batch, check_count, check_positive, cnn_minimum, mbconv,
                      node_meta, resolve_resolution, round_filters, round_repeats, squeeze_channels)

# (expand, kernel, stride, in, out, repeats): Table 1 of the paper (EfficientNet-B0).
B0_BLOCKS = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
SE_RATIO = 0.25

# (width, depth, resolution, dropout): the paper's / official implementation's coefficients.
COEFFICIENTS = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}


def stage_table(width: float = 1.0, depth: float = 1.0) -> list[dict]:
    """B0's table scaled by ``width`` and ``depth``: one dict per stage (expand, kernel, stride, in, out, repeats)."""
    return [dict(stage=s + 1, kind="mbconv", expand=e, kernel=k, stride=st, se=SE_RATIO,
                 cin=round_filters(cin, width), cout=round_filters(cout, width), repeats=round_repeats(n, depth))
            for s, (e, k, st, cin, cout, n) in enumerate(B0_BLOCKS)]


def efficientnet(variant: str = "b0", *, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0,
                 num_classes: int = 1000, batch: int | str = "N", seed: int = 0, opset: int = 17,
                 min_resolution: int = CNN_MIN_RESOLUTION) -> Graph:
    """EfficientNet-``variant`` (b0..b7), further scaled by the ``width``/``depth``/``resolution`` multipliers."""
    variant = variant.lower().removeprefix("efficientnet-").removeprefix("efficientnet_")
    if variant not in COEFFICIENTS:
        from graphmill.ir import UserInputError
        raise UserInputError(f"unknown EfficientNet variant {variant!r}; choose one of {', '.join(COEFFICIENTS)}")
    name = f"efficientnet_{variant}"
    cw, cd, cres, dropout = COEFFICIENTS[variant]
    w = cw * check_positive("width", width, model=name)
    d = cd * check_positive("depth", depth, model=name)
    res = resolve_resolution(resolution, cres, model=name, **cnn_minimum(min_resolution))
    num_classes = check_count("num_classes", num_classes, model=name)
    batch = check_batch(batch, model=name)

    b = GraphBuilder(name, opset=opset)
    L = Layers(b, seed)
    x = b.input("input", "float32", [batch, 3, res, res])
    stem = round_filters(STEM_CHANNELS, w)
    with b.annotate(model_stage=0, block=0, kind="stem"):
        y = L.conv_bn_act(x, 3, stem, 3, 2, act="swish", eps=1e-3)
    stages = stage_table(w, d)
    blocks: list[dict] = []
    cin = stem
    size = (res + 1) // 2
    for st in stages:
        for i in range(st["repeats"]):
            stride = st["stride"] if i == 0 else 1
            squeeze = squeeze_channels(cin, SE_RATIO)
            info = dict(stage=st["stage"], block=i, kind="mbconv", expand=st["expand"], kernel=st["kernel"],
                        stride=stride, se=SE_RATIO)
            with b.annotate(**node_meta(info)):
                y = mbconv(L, y, cin=cin, cout=st["cout"], expand=st["expand"], kernel=st["kernel"], stride=stride,
                           se_channels=squeeze, act="swish", eps=1e-3)
            size = (size + stride - 1) // stride
            blocks.append(dict(info, cin=cin, cout=st["cout"], se_channels=squeeze, out_size=size))
            cin = st["cout"]
    head = round_filters(HEAD_CHANNELS, w)
    with b.annotate(model_stage=len(stages) + 1, block=0, kind="head"):
        y = L.conv_bn_act(y, cin, head, 1, act="swish", eps=1e-3)
        y = L.classifier(y, head, num_classes)
    b.output(y, "logits")
    g = b.build()
    g.meta["model"] = dict(family="efficientnet", variant=variant, width=w, depth=d, resolution=res,
                           dropout=dropout, stem=stem, head=head, num_classes=num_classes)
    g.meta["stages"] = stages
    g.meta["blocks"] = blocks
    return g
