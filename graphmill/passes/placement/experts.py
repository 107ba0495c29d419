"""Placing the experts of an MoE layer on chips (expert parallelism).

Each chip holds ``ceil(E / chips)`` expert slots at most (the experts' weights must fit, and GShard/Switch
shard experts evenly). ``contiguous`` puts experts ``e`` on chip ``e * chips // E`` (what GShard's and
Mesh TensorFlow's expert sharding does); ``balanced`` assigns experts in decreasing order of load to the
least-loaded chip that has a free slot (LPT, Graham 1969), so a skewed router does not pile the hot
experts on one chip. The step time of a placement is the simulator's business
(``backends/simulator/expert_parallel.py``); this module only decides where experts go.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

from graphmill.ir import Graph
from graphmill.ir.ops.moe import moe_experts
from graphmill.util.errors import UserInputError

from ..base import Option, Pass, PassContext, PassResult, register_pass

METHODS = ("contiguous", "balanced")
#: the most chips experts are placed on: the accelerator config's ``[system] chips`` limit, which the simulator's
#: expert-parallel step takes too (10^8 chips in the pass ran its LPT for minutes and wrote a placement the
#: simulator then refused, blaming the accelerator config; an outside check)
MAX_CHIPS = 4096
#: ``meta["lowered_from"]`` of the standard nodes an MoE layer was lowered to (a saved file's layers)
LOWERED_MOE = "graphmill::MoE"


def place_experts(loads: Sequence[float], chips: int, *, method: str = "balanced") -> list[int]:
    """The chip of each expert (a list of length E) for per-expert ``loads`` (tokens, or any work measure)."""
    E = len(loads)
    if not isinstance(chips, numbers.Integral) or isinstance(chips, bool) or not 1 <= chips <= MAX_CHIPS:
        raise UserInputError(f"expert placement needs a number of chips in 1..{MAX_CHIPS}, got {chips!r}")
    chips = int(chips)  # a numpy integer, as the zoo's builders take one
    if E < 1:
        raise UserInputError("expert placement needs at least one expert")
    if method not in METHODS:
        raise UserInputError(f"unknown expert placement method {method!r}; choose one of {', '.join(METHODS)}")
    for e, x in enumerate(loads):  # a negative or NaN load sorted an expert onto the busier chip, silently
        try:
            ok = math.isfinite(float(x)) and float(x) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserInputError(f"expert {e}'s load {x!r}: each load must be a finite number >= 0")
    if method == "contiguous":
        return [e * chips // E for e in range(E)]
    slots = math.ceil(E / chips)
    work = [0.0] * chips
    held = [0] * chips
    out = [0] * E
    for e in sorted(range(E), key=lambda i: (-float(loads[i]), i)):
        c = min((c for c in range(chips) if held[c] < slots), key=lambda c: (work[c], c))
        out[e] = c
        work[c] += float(loads[e])
        held[c] += 1
    return out


def chip_loads(loads: Sequence[float], placement: Sequence[int], chips: int) -> list[float]:
    """Total load per chip under ``placement``."""
    out = [0.0] * chips
    for e, c in enumerate(placement):
        out[c] += float(loads[e])
    return out


def node_loads(node) -> list[float] | None:
    """An MoE node's per-expert load: measured routing in ``meta["moe_routing"]["counts"]`` if any, else None."""
    r = node.meta.get("moe_routing")
    counts = r.get("counts") if isinstance(r, dict) else None
    return [float(c) for c in counts] if isinstance(counts, list) and counts else None


@register_pass
class PlaceExperts(Pass):
    """Place the experts of every MoE layer on chips: node.meta["expert_placement"] (one chip per expert) and
    node.meta["expert_chips"], on the graphmill::MoE node or, in a loaded model file, on every node of the
    layer's lowering (their meta["moe"] gives E); the simulator's expert-parallel step reads them."""

    name = "place-experts"
    options = (
        Option("chips", int, 8, "chips the experts are spread over", min=1, max=MAX_CHIPS),
        Option("method", str, "balanced", "contiguous (GShard's sharding) or balanced (LPT on the measured load, "
               "meta['moe_routing']; an even load without one)", choices=METHODS),
    )
    preserves = "all"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        chips, method = self.opts["chips"], self.opts["method"]
        placed = 0
        lowered: dict[str, list] = {}  # a loaded model file holds the layers lowered: lowered_node -> its nodes
        for node in graph.all_nodes():
            if node.domain == "graphmill" and node.op_type == "MoE":
                E = moe_experts(node)
                if E is None:
                    continue
                loads = node_loads(node) or [1.0] * E
                node.meta["expert_placement"] = place_experts(loads, chips, method=method)
                node.meta["expert_chips"] = chips
                placed += 1
            elif node.meta.get("lowered_from") == LOWERED_MOE and isinstance(node.meta.get("moe"), dict):
                lowered.setdefault(str(node.meta.get("lowered_node")), []).append(node)
        for nodes in lowered.values():  # every node of the layer carries its placement, as a lowering's meta
            E = nodes[0].meta["moe"].get("experts")
            if not isinstance(E, int) or E < 1:
                continue
            placement = place_experts(node_loads(nodes[0]) or [1.0] * E, chips, method=method)
            for n in nodes:
                n.meta["expert_placement"] = list(placement)
                n.meta["expert_chips"] = chips
            placed += 1
        return PassResult(changed=bool(placed), stats={"moe_layers_placed": placed})


__all__ = ["METHODS", "PlaceExperts", "chip_loads", "node_loads", "place_experts"]
