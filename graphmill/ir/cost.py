"""The cost-model interface: how passes that weigh alternatives (placement, pipeline partitioning, scaling,
learned passes) ask what a node costs on a device, without importing a backend.

A ``CostModel`` answers, in cycles of the device's clock and bytes:

* ``op_time(node, device)``: cycles one node takes on one device,
* ``transfer_time(nbytes, src, dst)``: cycles to move a tensor between devices (0 on the same device),
* ``memory(node)``: bytes a node keeps resident (its constant inputs: weights).

Implementations live with the backends (the simulator's ``SimulatorCostModel`` and ``RooflineCostModel``;
ONNX Runtime timing) and reach passes through the ``PassContext``; ``ir`` only defines the protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .graph import Node


@runtime_checkable
class CostModel(Protocol):
    """What a pass may ask about costs; see the module docstring for the units."""

    def op_time(self, node: Node, device: int = 0) -> float: ...

    def transfer_time(self, nbytes: int, src: int, dst: int) -> float: ...

    def memory(self, node: Node) -> int: ...
