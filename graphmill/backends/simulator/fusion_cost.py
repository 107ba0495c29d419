"""The cost of a fusion group: several ops run as one kernel on one chip (issue 14, item 2).

Unfused, every op reads its inputs from DRAM and writes its outputs back (the roofline / cycle-level op
time). Fused, the ops of a group run as **one kernel**: the tensors that one member produces and another
member reads (the *intermediates*) stay in the on-chip buffers, so they are neither written to DRAM nor read
back; DRAM traffic is paid at the group's boundary only. The rule, in words (one word per tensor element, as
the roofline and the vector unit count them):

* compute ``C`` = the sum over members of their primitives' compute cycles: ``ceil(MACs / (rows x cols))``
  per array primitive (Conv, MatMul, Gemm, recurrent layers), ``ceil(flops / lanes)`` per vector primitive;
  shape-only ops (Reshape, ...) are free;
* boundary reads ``R``: the words of every distinct tensor a member reads that no member produces (graph
  inputs, other ops' outputs, weights), read at ``ifmap_bw_words + filter_bw_words`` per cycle when a member
  runs on the array (the array's two read streams, as the roofline counts a Conv/MatMul), at
  ``ifmap_bw_words`` otherwise (the vector unit's); boundary writes ``W``: the words of every member output
  read outside the group (or a graph output) at ``ofmap_bw_words`` per cycle;
* ``time = max(C, ceil(R / read_bw), ceil(W / ofmap_bw))`` cycles of the chip's clock (the roofline of one
  kernel);
* **fit**: the intermediates together must fit in the active halves of the activation buffers,
  ``sum(intermediate words) <= (ifmap_words + ofmap_words) / 2`` (each buffer is double-buffered); a group that
  does not fit is refused (``fits=False``) with the reason. A group holding an op the simulator cannot lower
  to one kernel (a training graph's ``graphmill::Backward``, control flow, an uncosted op) is refused too.

A single op is not a fusion: ``PlacementCostModel.group_cost`` answers its own op time for it, so that the
unfused schedule is the placement's exactly.
"""

from __future__ import annotations

import math

from graphmill.ir import Node, UserInputError
from graphmill.ir.cost import GroupCost
from graphmill.ir.types import TensorType, num_elements

from .config import AccelConfig
from .lowering import ArrayLayer, Uncosted, VectorLayer, lower_node

__all__ = ["GroupCost", "kernel_cost", "tensor_words"]


def tensor_words(v) -> int:
    """Elements of a value's tensor (0 when unknown)."""
    if v is None or not isinstance(v.type, TensorType) or v.type.shape is None:
        return 0
    return int(num_elements(v.type.shape) or 0)


def _compute(node: Node, accel: AccelConfig) -> tuple[int | None, bool, str]:
    """(compute cycles, runs on the array, '') of one node, or (None, False, why it cannot be in a kernel)."""
    if node.domain == "graphmill":
        return None, False, f"{node.describe()} ({node.domain}::{node.op_type}) is not a kernel op the simulator fuses"
    try:
        prims = lower_node(node, [])
    except Uncosted as e:
        return None, False, f"{node.describe()}: {e}"
    except UserInputError as e:
        return None, False, str(e)
    c = 0
    array = False
    for p in prims:
        if isinstance(p, ArrayLayer):
            c += -(-p.macs // (accel.rows * accel.cols))
            array = True
        elif isinstance(p, VectorLayer):
            c += -(-p.flops // max(1, accel.lanes))
        else:
            return None, False, f"{node.describe()}: control flow is not fused"
    return c, array, ""


def kernel_cost(nodes: list[Node], accel: AccelConfig, *, scale: float = 1.0, memo: dict | None = None) -> GroupCost:
    """``nodes`` run as one kernel on a chip of ``accel`` (module docstring); ``scale`` converts its cycles to
    the caller's time unit (a heterogeneous device: reference clock / own clock / speed). ``memo`` keeps each
    node's lowering (keyed by the node and the accelerator, holding both so that ids are not reused)."""
    members = {id(n) for n in nodes}
    wb = accel.word_bytes
    capacity = (accel.ifmap_words + accel.ofmap_words) // 2
    compute = 0
    array = False
    for n in nodes:
        if memo is None:
            c, on_array, why = _compute(n, accel)
        else:
            hit = memo.get((id(n), id(accel)))
            if hit is None or hit[0] is not n or hit[1] is not accel:
                hit = memo[(id(n), id(accel))] = (n, accel, _compute(n, accel))
            c, on_array, why = hit[2]
        if c is None:
            return GroupCost(math.inf, False, f"refused: {why}", capacity_bytes=capacity * wb)
        compute += c
        array = array or on_array
    read = write = inter = 0
    seen: set[int] = set()
    for n in nodes:
        for v in n.inputs:
            if v is None or id(v) in seen:
                continue
            seen.add(id(v))
            if v.producer is not None and id(v.producer) in members:
                continue  # an intermediate: counted once, with its producer's outputs below
            read += tensor_words(v)
        for v in n.outputs:
            if v is None:
                continue
            users = v.users
            if any(id(u) in members for u in users):
                inter += tensor_words(v)
            if v.is_graph_output() or any(id(u) not in members for u in users):
                write += tensor_words(v)
    if inter > capacity:
        names = ", ".join(n.name or n.op_type for n in nodes)
        return GroupCost(math.inf, False, f"refused: the intermediate tensors of [{names}] need {inter * wb:,} bytes "
                         f"on chip, the buffers hold {capacity * wb:,} (active halves of ifmap + ofmap)",
                         read * wb, write * wb, inter * wb, capacity * wb)
    read_bw = accel.ifmap_bw_words + (accel.filter_bw_words if array else 0)
    cycles = max(compute, -(-read // read_bw), -(-write // accel.ofmap_bw_words))
    return GroupCost(float(cycles) * scale, True, "", read * wb, write * wb, inter * wb, capacity * wb)
