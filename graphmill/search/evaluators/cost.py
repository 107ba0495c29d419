"""MACs and parameters of a candidate, from ``graphmill.api.inspect`` (types inferred, symbols bound to 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from graphmill.ir import Graph


def cost_metrics(graph: Graph) -> dict[str, float]:
    """``{"macs", "params"}`` of ``graph`` (one sample: symbolic dimensions are bound to 1)."""
    from graphmill.api import inspect

    s = inspect(graph)
    return {"macs": float(s["macs"]), "params": float(s["params"])}


@dataclass
class CostEvaluator:
    """``evaluate(config)``: the MACs and parameters of ``builder(config)``; reward = -MACs (fewer is better)."""

    builder: Callable[[dict], Graph]

    def __call__(self, config: dict) -> dict[str, float]:
        m = cost_metrics(self.builder(config))
        return {"reward": -m["macs"], **m}
