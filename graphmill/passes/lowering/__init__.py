"""Lowering graphmill-domain ops to standard ONNX (see ``registry.py`` for the contract, ``lower.py`` for
the ``lower-graphmill`` pass).

Every module of this package is imported here, so a module that calls ``register_lowering`` at import
time is all a new op's lowering needs (no list to edit).
"""

from __future__ import annotations

import importlib
import pkgutil

from .lower import (LOWERED_DOMAINS, LowerGraphmill, LoweringReport, has_ops_to_lower, lower_graph, lower_node,
                    lowered_copy, unlowered_node)
from .registry import Lowering, LoweringBuilder, LoweringFn, lowering_for, register_lowering, registered_lowerings

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in ("lower", "registry"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["LOWERED_DOMAINS", "LowerGraphmill", "Lowering", "LoweringBuilder", "LoweringFn", "LoweringReport",
           "has_ops_to_lower", "lower_graph", "lower_node", "lowered_copy", "unlowered_node", "lowering_for",
           "register_lowering", "registered_lowerings"]
