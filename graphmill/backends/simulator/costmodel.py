"""The cost-model interface of ARCHITECTURE.md, and its two implementations here.

A ``CostModel`` answers, in cycles of the accelerator's clock and bytes:
  ``op_time(node, device)``      cycles one node takes on one chip,
  ``transfer_time(nbytes, src, dst)``  cycles to move a tensor between chips (0 on the same chip),
  ``memory(node)``               bytes a node keeps resident (its constant inputs: weights).
``SimulatorCostModel`` answers op_time with the cycle-level simulation (memoized per layer shape);
``RooflineCostModel`` with max(MACs / array size, bytes / DRAM bandwidth), microseconds per call.
Chips are identical (one AccelConfig); ``device`` is accepted for heterogeneous models later.
"""

from __future__ import annotations

from typing import Protocol

from graphmill.ir import Node
from graphmill.ir.types import TensorType, num_elements

from .config import AccelConfig, as_accel
from .engine import simulate_array_layer, simulate_vector_layer
from .lowering import ArrayLayer, lower_node


class CostModel(Protocol):
    def op_time(self, node: Node, device: int = 0) -> float: ...

    def transfer_time(self, nbytes: int, src: int, dst: int) -> float: ...

    def memory(self, node: Node) -> int: ...


def value_bytes(v) -> int:
    if v is None or not isinstance(v.type, TensorType):
        return 0
    n = num_elements(v.type.shape)
    if n is None:
        return 0
    try:
        width = max(1, v.type.dtype.itemsize)
    except Exception:  # noqa: BLE001
        width = 4
    return n * width


class _Base:
    def __init__(self, accel) -> None:
        self.accel: AccelConfig = as_accel(accel)
        self._cache: dict[int, float] = {}

    def transfer_time(self, nbytes: int, src: int, dst: int) -> float:
        if src == dst or nbytes <= 0:
            return 0.0
        return self.accel.link_latency_cycles + -(-nbytes // self.accel.link_bw_bytes_per_cycle)

    def memory(self, node: Node) -> int:
        return sum(value_bytes(v) for v in node.inputs if v is not None and v.const is not None)

    def op_time(self, node: Node, device: int = 0) -> float:
        k = id(node)
        if k not in self._cache:
            self._cache[k] = float(sum(self._prim_time(p) for p in lower_node(node)))
        return self._cache[k]


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
            words = (p.M * p.K + p.K * p.N) * p.repeat
            out = p.M * p.N * p.repeat
            return max(-(-p.macs // (a.rows * a.cols)), -(-words // (a.ifmap_bw_words + a.filter_bw_words)),
                       -(-out // a.ofmap_bw_words))
        return simulate_vector_layer(p, a).total_cycles
