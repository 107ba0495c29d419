"""Joint NN x accelerator search: the product of a network space and an accelerator space.

``joint_space()`` is ``graphmill.search.product(mnasnet_space(), accelerator_space())``: a configuration is
``{"nn": {"block1": {...}, ...}, "accel": {"rows": 32, ...}}``; ``split(config)`` hands back the two halves.
"""

from __future__ import annotations

from graphmill.search.space import Space, product

from .accelerator import accelerator_space
from .mnasnet import mnasnet_space

NAMES = ("nn", "accel")


def joint_space(nn: Space | None = None, accel: Space | None = None) -> Space:
    """``{"nn": nn, "accel": accel}`` (defaults: MnasNet's space and ``accelerator_space()``)."""
    return product(nn if nn is not None else mnasnet_space(), accel if accel is not None else accelerator_space(),
                   names=NAMES)


def split(config: dict) -> tuple[dict, dict | None]:
    """``(nn_config, accel_config)`` of a joint configuration; a plain network configuration gives
    ``(config, None)``."""
    if set(config) == set(NAMES):
        return config["nn"], config["accel"]
    return config, None
