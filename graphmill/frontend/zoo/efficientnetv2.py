"""EfficientNetV2-S/M/L (Tan & Le, 2021), built with the IR builder from the paper's and the official code's tables.

Stage table rows are ``(kind, expansion, kernel, stride, channels, repeats, se_ratio)``: S is the paper's
Table 4; M and L are the official configurations (``effnetv2_configs.py``: ``v2_m_block``, ``v2_l_block``),
which the paper describes only as S scaled up. The early stages are Fused-MBConv (one regular 3x3 conv in
place of MBConv's 1x1 expansion + 3x3 depthwise, no SE), the later ones MBConv with SE 0.25 of the block's
input channels; swish everywhere (``x * sigmoid(x)``), BatchNorm epsilon 1e-3, a 1x1 conv to 1280
channels, global pooling and the classifier. The blocks are ``_common.fused_mbconv`` and
``_common.mbconv``, stacked by ``_common.inverted_residual_net`` (MobileNetV2's and MnasNet's builder).

Resolution: the default input is the variant's *evaluation* size (S 384, M 480, L 480), at which the
published parameter and FLOP counts are measured; ``graph.meta["model"]["train_resolution"]`` holds the
final training size of progressive learning (S 300, M 384, L 384) and ``dropout`` the rate (an inference
no-op, not built). ``width``/``depth`` scale the table like EfficientNet's (``round_filters``, ``ceil``);
``resolution`` below 16 multiplies the evaluation size, from 16 up it is the size in pixels. Weights are
seeded and drawn when first read (``Layers(lazy=True)``), so building L for its counts takes no time.

Published counts (the paper's Table 7 / the official README for the released code, FLOPs meaning
multiply-adds): S 22M / 8.8B (README 21.5M / 8.4B), M 54M / 24B (README 54.1M / 24.7B),
L 120M / 53B (README 119.5M / 56.3B); tests/frontend/test_zoo_efficientnetv2.py compares them.
"""

from __future__ import annotations

from graphmill.ir import Graph, UserInputError

from ._common import CNN_MIN_RESOLUTION, check_positive, inverted_residual_net
from .efficientnet import HEAD_CHANNELS, SE_RATIO

FUSED, MB = "fused_mbconv", "mbconv"

# (kind, expansion, kernel, stride, output channels, repeats, SE ratio)
S_BLOCKS = [  # the paper's Table 4
    (FUSED, 1, 3, 1, 24, 2, 0.0),
    (FUSED, 4, 3, 2, 48, 4, 0.0),
    (FUSED, 4, 3, 2, 64, 4, 0.0),
    (MB, 4, 3, 2, 128, 6, SE_RATIO),
    (MB, 6, 3, 1, 160, 9, SE_RATIO),
    (MB, 6, 3, 2, 256, 15, SE_RATIO),
]
M_BLOCKS = [  # official v2_m_block
    (FUSED, 1, 3, 1, 24, 3, 0.0),
    (FUSED, 4, 3, 2, 48, 5, 0.0),
    (FUSED, 4, 3, 2, 80, 5, 0.0),
    (MB, 4, 3, 2, 160, 7, SE_RATIO),
    (MB, 6, 3, 1, 176, 14, SE_RATIO),
    (MB, 6, 3, 2, 304, 18, SE_RATIO),
    (MB, 6, 3, 1, 512, 5, SE_RATIO),
]
L_BLOCKS = [  # official v2_l_block
    (FUSED, 1, 3, 1, 32, 4, 0.0),
    (FUSED, 4, 3, 2, 64, 7, 0.0),
    (FUSED, 4, 3, 2, 96, 7, 0.0),
    (MB, 4, 3, 2, 192, 10, SE_RATIO),
    (MB, 6, 3, 1, 224, 19, SE_RATIO),
    (MB, 6, 3, 2, 384, 25, SE_RATIO),
    (MB, 6, 3, 1, 640, 7, SE_RATIO),
]

#: variant -> (block table, stem channels, evaluation size, final training size, dropout)
VARIANTS = {
    "s": (S_BLOCKS, 24, 384, 300, 0.2),
    "m": (M_BLOCKS, 24, 480, 384, 0.3),
    "l": (L_BLOCKS, 32, 480, 384, 0.4),
}


def efficientnetv2(variant: str = "s", *, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0,
                   num_classes: int = 1000, batch: int | str = "N", seed: int = 0, opset: int = 17,
                   min_resolution: int = CNN_MIN_RESOLUTION) -> Graph:
    """EfficientNetV2-``variant`` (s, m, l), scaled further by the ``width``/``depth``/``resolution`` multipliers.

    Nodes carry ``meta["model_stage"]`` (0 stem, 1..n the block stages, n+1 the head), ``block`` and the
    block's ``kind`` (``fused_mbconv`` / ``mbconv``), ``expand``, ``kernel``, ``stride``, ``se``.
    """
    key = str(variant).strip().lower().removeprefix("efficientnetv2").lstrip("-_")
    if key not in VARIANTS:
        raise UserInputError(f"unknown EfficientNetV2 variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    name = f"efficientnetv2_{key}"
    table, stem, eval_size, train_size, dropout = VARIANTS[key]
    w = check_positive("width", width, model=name)
    g = inverted_residual_net(name, table, stem=stem, head=HEAD_CHANNELS, act="swish", width=w, depth=depth,
                              resolution=resolution, num_classes=num_classes, batch=batch, seed=seed, opset=opset,
                              head_width=w, family="efficientnetv2", native=eval_size, se_act="swish", eps=1e-3,
                              lazy=True, min_resolution=min_resolution)
    g.meta["model"].update(variant=key, eval_resolution=eval_size, train_resolution=train_size, dropout=dropout)
    return g
