"""Ready-made search spaces: MnasNet's factorized hierarchical space, an accelerator's parameters, their product.

``SPACES`` maps the names the CLI accepts (``--space mnasnet``) to functions returning the ``Space``.
"""

from __future__ import annotations

from typing import Callable

from graphmill.search.space import Space

from .accelerator import accel_config, accelerator_space
from .joint import joint_space, split
from .mnasnet import MNASNET_A1, MnasNetBuilder, build_mnasnet, check_config, mnasnet_space

SPACES: dict[str, Callable[[], Space]] = {
    "mnasnet": mnasnet_space,
    "accelerator": accelerator_space,
    "mnasnet+accelerator": joint_space,
}

__all__ = ["SPACES", "MNASNET_A1", "MnasNetBuilder", "accel_config", "accelerator_space", "build_mnasnet",
           "check_config",
           "joint_space", "mnasnet_space", "split"]
