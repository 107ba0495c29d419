"""MACs and parameters of a candidate, as ``graphmill inspect`` counts them (types inferred, symbols bound to 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from graphmill.ir import Graph


def cost_metrics(graph: Graph) -> dict[str, float]:
    """``{"macs", "params"}`` of ``graph`` (one sample: symbolic dimensions are bound to 1)."""
    from graphmill.frontend.onnx_shape_inference import infer_shapes
    from graphmill.ir.summary import summarize

    infer_shapes(graph)  # an exported candidate may declare no intermediate shapes
    s = summarize(graph)
    return {"macs": float(s.macs), "params": float(s.params)}


@dataclass
class CostEvaluator:
    """``evaluate(config)``: the MACs and parameters of ``builder(config)``; reward = -MACs (fewer is better)."""

    builder: Callable[[dict], Graph]

    def __call__(self, config: dict) -> dict[str, float]:
        m = cost_metrics(self.builder(config))
        return {"reward": -m["macs"], **m}
