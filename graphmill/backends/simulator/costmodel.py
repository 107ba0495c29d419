"""The simulator's two implementations of the ``CostModel`` protocol (graphmill/ir/cost.py, re-exported here).

``SimulatorCostModel`` answers op_time with the cycle-level simulation (memoized per layer shape);
``RooflineCostModel`` with max(MACs / array size, bytes / DRAM bandwidth), microseconds per call.
Chips are identical (one AccelConfig); ``device`` is accepted for heterogeneous models later.

A node the simulator cannot cost (lowering.py) takes 0 cycles here, never silently: it is listed in
``uncosted`` ({"name", "op", "reason"}) and a ``SimulationWarning`` names it, once per node.
"""

from __future__ import annotations

import warnings

from graphmill.ir import Node
from graphmill.ir.cost import CostModel
from graphmill.ir.partition import value_bytes
from graphmill.ir.types import TensorType
from graphmill.util.errors import SimulationWarning

from .config import AccelConfig, as_accel
from .engine import array_words_read, simulate_array_layer, simulate_vector_layer
from .lowering import ArrayLayer, BranchChoice, Uncosted, lower_node
__all__ = ["CostModel", "SimulationWarning", "SimulatorCostModel", "RooflineCostModel", "value_bytes"]


def _shapes(node: Node) -> tuple:
    return tuple(v.type.shape if v is not None and isinstance(v.type, TensorType) else None
                 for v in (*node.inputs, *node.outputs))


class _Base:
    def __init__(self, accel) -> None:
        self.accel: AccelConfig = as_accel(accel)
        self._cache: dict[int, tuple[Node, tuple, float]] = {}  # id -> (the node itself, its shapes, cycles)
        self.uncosted: list[dict] = []

    def transfer_time(self, nbytes: int, src: int, dst: int) -> float:
        if src == dst or nbytes <= 0:
            return 0.0
        return self.accel.link_latency_cycles + -(-nbytes // self.accel.link_bw_bytes_per_cycle)

    def memory(self, node: Node) -> int:
        return sum(value_bytes(v) for v in node.inputs if v is not None and v.const is not None)

    def op_time(self, node: Node, device: int = 0) -> float:
        """Cycles of ``node`` on one chip, memoized per node object and the shapes it sees: the cache keeps
        the node alive (so a later node cannot reuse its id) and recomputes when its shapes change (a graph
        re-batched in place)."""
        k = id(node)
        shapes = _shapes(node)
        hit = self._cache.get(k)
        if hit is None or hit[0] is not node or hit[1] != shapes:
            inner: list[dict] = []
            try:
                prims = lower_node(node, inner)
            except Uncosted as e:
                prims = []
                inner.append({"name": node.name or node.op_type, "op": node.qualified_op, "reason": str(e)})
            for u in inner:  # names inside a control-flow body are already "outer/inner"
                self.uncosted.append(u)
                warnings.warn(f"simulator: {u['name']} ({u['op']}) is not costed: {u['reason']}; it counts as 0 "
                              "cycles", SimulationWarning, stacklevel=2)
            hit = (node, shapes, float(sum(self._time(p) for p in prims)))
            self._cache[k] = hit
        return hit[2]

    def _time(self, p) -> int:
        if isinstance(p, BranchChoice):  # the worst case of an If
            return max(sum(self._time(q) for q in b) for b in p.branches)
        return self._prim_time(p)


class SimulatorCostModel(_Base):
    """Cycle-level: the memory-system simulation of each lowered primitive."""

    def __init__(self, accel) -> None:
        super().__init__(accel)
        self._memo: dict = {}

    def _prim_time(self, p) -> int:
        if isinstance(p, ArrayLayer):
            return simulate_array_layer(p, self.accel, memo=self._memo).total_cycles
        return simulate_vector_layer(p, self.accel).total_cycles


class RooflineCostModel(_Base):
    """Analytical: max(compute at peak, DRAM traffic at the configured bandwidth)."""

    def _prim_time(self, p) -> int:
        a = self.accel
        if isinstance(p, ArrayLayer):
            words = array_words_read(p, a)
            out = p.M * p.N * p.repeat
            return max(-(-p.macs // (a.rows * a.cols)), -(-words // (a.ifmap_bw_words + a.filter_bw_words)),
                       -(-out // a.ofmap_bw_words))
        return simulate_vector_layer(p, a).total_cycles
