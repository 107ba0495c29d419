"""ONNX op semantics in torch, one function per op, grouped by op family; importing this package fills the registry.

``common`` holds the registry (``OPS``, ``CHECKS``) and the helpers several
families share; each family module registers its ops when imported.
"""

from __future__ import annotations

from . import elementwise, linear, losses, normalization, pooling  # noqa: F401 -- each registers its ops
from . import recurrent, reduction, resize, shape  # noqa: F401 -- each registers its ops
from . import moe  # noqa: F401 -- graphmill::MoE, registered under its domain-qualified name
from . import attention  # noqa: F401 -- graphmill::RelativeAttention
from .common import CHECKS, OPS

__all__ = ["CHECKS", "OPS"]
