"""The model-scaling rounding rules, one definition for the model builders and the scaling passes.

* ``round_filters(c, w, divisor=8)``: ``c * w`` rounded to the nearest multiple of ``divisor`` (at
  least ``divisor``), bumped up by one ``divisor`` when the rounding went down by more than 10%
  (EfficientNet's and MobileNetV2's ``_make_divisible``, Tan & Le 2019; Sandler et al. 2018).
* ``round_repeats(n, d)``: ``ceil(n * d)`` (EfficientNet's depth rule).
* ``squeeze_channels(c, ratio)``: ``max(1, int(c * ratio))``, the squeeze-excitation width of an MBConv
  block of ``c`` input channels (never rounded to the divisor).

They live in the IR layer because both the zoo (``graphmill.frontend.zoo``), which builds scaled
models, and compound scaling (``graphmill.passes.scaling``), which rescales built ones, must agree on
them, and neither of those layers may import the other.
"""

from __future__ import annotations

import math


def round_filters(channels: float, width: float = 1.0, divisor: int = 8, min_value: int | None = None) -> int:
    """``channels * width`` rounded to a multiple of ``divisor``, never more than 10% below it."""
    v = channels * width
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


def round_repeats(repeats: int, depth: float = 1.0) -> int:
    """EfficientNet's depth rule: ``ceil(depth * repeats)``."""
    return int(math.ceil(depth * repeats))


def squeeze_channels(channels: int, ratio: float) -> int:
    """EfficientNet's squeeze-excitation width: ``max(1, int(channels * ratio))`` of the block's input channels."""
    return max(1, int(channels * ratio))
