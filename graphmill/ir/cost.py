"""The cost-model interface: how passes that weigh alternatives (placement, pipeline partitioning, scaling,
learned passes) ask what a node costs on a device, without importing a backend.

A ``CostModel`` answers, in cycles of the device's clock and bytes:

* ``op_time(node, device)``: cycles one node takes on one device,
* ``transfer_time(nbytes, src, dst)``: cycles to move a tensor between devices (0 on the same device),
* ``memory(node)``: bytes a node keeps resident (its constant inputs: weights).

A ``FusionCostModel`` also answers ``group_cost(nodes, device)``: a fusion group run as one kernel (``GroupCost``).
It may also offer ``group_builder(device)``: an empty group whose ``try_add(node) -> GroupCost`` answers the cost
with one more op (in a topological order) and whose ``accept()`` then adds it, so that a caller growing a group op
by op pays for each op, not for the whole group each time (the learned passes use it when it is there).

Implementations live with the backends (the simulator's ``SimulatorCostModel`` and ``RooflineCostModel``;
ONNX Runtime timing) and reach passes through the ``PassContext``; ``ir`` only defines the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .graph import Node


@runtime_checkable
class CostModel(Protocol):
    """What a pass may ask about costs; see the module docstring for the units."""

    def op_time(self, node: Node, device: int = 0) -> float: ...

    def transfer_time(self, nbytes: int, src: int, dst: int) -> float: ...

    def memory(self, node: Node) -> int: ...


@dataclass(frozen=True)
class GroupCost:
    """A fusion group run as one kernel on one device (``FusionCostModel.group_cost``): ``time`` in the cost
    model's units (``inf`` when refused), the DRAM ``read_bytes``/``write_bytes`` paid at the group's boundary,
    the ``onchip_bytes`` its intermediate tensors need against the buffers' ``capacity_bytes``; ``fits`` False
    with the ``reason`` when the group is refused."""

    time: float
    fits: bool
    reason: str = ""
    read_bytes: int = 0
    write_bytes: int = 0
    onchip_bytes: int = 0
    capacity_bytes: int = 0


@runtime_checkable
class FusionCostModel(Protocol):
    """A ``CostModel`` that also costs a fusion group (the learned passes ask it through the PassContext)."""

    def group_cost(self, nodes: list[Node], device: int = 0) -> GroupCost: ...
