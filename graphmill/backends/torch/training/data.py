"""The shipped training task and its regularizers: scikit-learn's digits, RandAugment-style augmentation, mixup.

The task: the 1,797 8x8 digits of ``sklearn.datasets.load_digits`` (10 classes, shipped with
scikit-learn, no download), upsampled bilinearly to the size a stage trains at, normalized, split 4/5
train and 1/5 held out (a seeded permutation). Every resolution of one seed holds the same images in
the same split, so a progressive schedule changes the size of the images, never which images.

``rand_augment`` and ``mixup`` are the regularizers EfficientNetV2's progressive learning raises with the
image size (Tan & Le 2021, Table 6): RandAugment (Cubuk et al. 2020: ``num_ops`` operations drawn per
image, each at one global magnitude) and mixup (Zhang et al. 2018: a convex mix of two images and their
labels, the weight drawn from Beta(alpha, alpha)). Both draw from torch's global random generator, which
a training checkpoint saves, so a resumed run draws what the uninterrupted one would have.
"""

from __future__ import annotations

import functools
import math

from graphmill.util.errors import UserInputError

TASK = ("scikit-learn digits (1,797 8x8 images, 10 classes) upsampled bilinearly to the stage's size; "
        "4/5 train, 1/5 held out")
"""The shipped task, as every training report states it."""

MAX_MAGNITUDE = 30.0
"""RandAugment's magnitude scale (0 .. 30, as in the paper); EfficientNetV2-S raises it from 5 to 15."""

AUGMENT_OPS = ("identity", "rotate", "shear_x", "shear_y", "translate_x", "translate_y", "brightness", "contrast")
"""The operations ``rand_augment`` draws from (the geometric and photometric ones that mean something on a
one-channel digit; at magnitude 30: rotation 30 degrees, shear 0.3, translation 30% of the size, brightness
+-0.5 standard deviations, contrast x0.1 .. x1.9)."""


@functools.lru_cache(maxsize=16)
def digits_data(size: int, channels: int = 1, seed: int = 0):
    """``(x_train, y_train, x_test, y_test)`` torch tensors: digits resized to ``size`` x ``size``, repeated
    over ``channels``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is in the test extra
        raise UserInputError("training on digits needs scikit-learn (pip install scikit-learn)") from None
    import torch
    import torch.nn.functional as F

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).repeat(1, channels, 1, 1)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = len(y) // 5
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def rand_augment(x, magnitude: float, *, num_ops: int = 2):
    """``x`` (``[N, C, H, W]``) with ``num_ops`` operations of ``AUGMENT_OPS`` applied to each image, each drawn
    independently (uniformly, with a random sign) at ``magnitude`` (0 .. ``MAX_MAGNITUDE``); 0 returns ``x``
    itself and draws nothing. Geometric operations compose into one affine resampling per image (border
    padding: the digits' border is their background)."""
    import torch
    import torch.nn.functional as F

    if magnitude <= 0 or num_ops <= 0:
        return x
    n = x.shape[0]
    f = min(float(magnitude), MAX_MAGNITUDE) / MAX_MAGNITUDE
    affine = torch.eye(3).repeat(n, 1, 1)
    gain = torch.ones(n)
    shift = torch.zeros(n)
    for _ in range(num_ops):
        op = torch.randint(0, len(AUGMENT_OPS), (n,))
        sign = torch.randint(0, 2, (n,)).float() * 2 - 1
        m = torch.eye(3).repeat(n, 1, 1)
        angle = sign * math.radians(30.0) * f
        rot = op == AUGMENT_OPS.index("rotate")
        m[rot, 0, 0], m[rot, 0, 1] = torch.cos(angle[rot]), -torch.sin(angle[rot])
        m[rot, 1, 0], m[rot, 1, 1] = torch.sin(angle[rot]), torch.cos(angle[rot])
        for name, (i, j), scale in (("shear_x", (0, 1), 0.3), ("shear_y", (1, 0), 0.3),
                                    ("translate_x", (0, 2), 0.6), ("translate_y", (1, 2), 0.6)):
            sel = op == AUGMENT_OPS.index(name)  # translation in grid units: the image spans [-1, 1]
            m[sel, i, j] = sign[sel] * scale * f
        affine = affine @ m
        bright = op == AUGMENT_OPS.index("brightness")
        shift[bright] += sign[bright] * 0.5 * f
        con = op == AUGMENT_OPS.index("contrast")
        gain[con] *= 1 + sign[con] * 0.9 * f
    grid = F.affine_grid(affine[:, :2], list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    return (y - mean) * gain.view(n, 1, 1, 1) + mean + shift.view(n, 1, 1, 1)


def mixup(x, y, alpha: float):
    """``(x_mixed, y, y_partner, lam)``: the batch mixed with a permutation of itself, ``lam`` ~ Beta(alpha,
    alpha) (one per batch, as in the paper); the loss is ``lam * CE(y) + (1 - lam) * CE(y_partner)``.
    ``alpha`` 0 returns the batch unmixed (``lam`` 1) and draws nothing."""
    import torch

    if alpha <= 0:
        return x, y, y, 1.0
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0])
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam
