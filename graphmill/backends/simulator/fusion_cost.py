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
* **ops without primitives** (shape-only and layout ops the simulator counts as free alone: Reshape, Transpose,
  Slice, Concat, ...) stay free in a group: they read and write nothing themselves. A value a member with
  primitives reads through them is read at the smaller of its own words and its sources' outside the group
  (a Slice of a graph input: the slice; a Concat of an intermediate and an outside tensor: the outside one),
  and a vector op reads no more than it reads alone (a Gather: the rows it gathers, not its table);
  a view read outside the group is written at the smaller of its own words and those of the members' tensors
  it is made of that are not written anyway (a Slice of an intermediate: the slice); a Shape or Size member makes
  a host-side value from no tensor's data (``Expand(y, Shape(h))`` neither reads nor keeps ``h``, and the shape,
  free alone as all shape arithmetic is, is neither kept nor written); each outside tensor is read
  once, at the most any member reads of it, and no member reads more than alone (the roofline's words: a strided
  1x1 Conv its sampled pixels). Before
  2026-12-05 they paid the group's boundary like any op, so a group of free ops cost up to 1,154 cycles where
  its members cost 0, and the greedy fusion baseline and the learned passes kept such groups (an outside
  check: 10% of the step on a torch-exported encoder);
* **fit**: the intermediates together must fit in the active halves of the activation buffers,
  ``sum(intermediate words) <= (ifmap_words + ofmap_words) / 2`` (each buffer is double-buffered); a group that
  does not fit is refused (``fits=False``) with the reason. A group holding an op the simulator cannot lower
  to one kernel (a training graph's ``graphmill::Backward``, control flow, an uncosted op) is refused too.

A single op is not a fusion: ``PlacementCostModel.group_cost`` answers its own op time for it, so that the
unfused schedule is the placement's exactly.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from graphmill.ir import Node, UserInputError
from graphmill.ir.cost import GroupCost
from graphmill.ir.types import TensorType, num_elements

from .config import AccelConfig
from .engine import array_words_read
from .lowering import ArrayLayer, Uncosted, VectorLayer, lower_node, reads_shape_only

__all__ = ["GroupCost", "kernel_cost", "tensor_words"]


def tensor_words(v) -> int:
    """Elements of a value's tensor (0 when unknown)."""
    if v is None or not isinstance(v.type, TensorType) or v.type.shape is None:
        return 0
    return int(num_elements(v.type.shape) or 0)


class _Member(NamedTuple):
    """What one node brings to a kernel: ``cycles`` None when it cannot be in one (``why`` says why);
    ``has_prims`` false for an op the simulator counts as free (shape-only, layout); ``read_cap`` the DRAM words
    it reads alone, as the roofline counts them (a Gather the rows it gathers, not its table; a strided 1x1 Conv
    the pixels it samples, M x K, not its whole input)."""

    cycles: int | None
    on_array: bool
    why: str
    has_prims: bool
    read_cap: int


def _compute(node: Node, accel: AccelConfig) -> _Member:
    if node.domain == "graphmill":
        return _Member(None, False, f"{node.describe()} ({node.domain}::{node.op_type}) is not a kernel op the "
                       "simulator fuses", False, 0)
    try:
        prims = lower_node(node, [])
    except Uncosted as e:
        return _Member(None, False, f"{node.describe()}: {e}", False, 0)
    except UserInputError as e:
        return _Member(None, False, str(e), False, 0)
    c = 0
    array = False
    read_cap = 0
    for p in prims:
        if isinstance(p, ArrayLayer):
            c += -(-p.macs // (accel.rows * accel.cols))
            array = True
            read_cap += array_words_read(p, accel)  # the roofline's count
        elif isinstance(p, VectorLayer):
            c += -(-p.flops // max(1, accel.lanes))
            read_cap += p.words_read
        else:
            return _Member(None, False, f"{node.describe()}: control flow is not fused", False, 0)
    return _Member(c, array, "", bool(prims), read_cap)


def kernel_cost(nodes: list[Node], accel: AccelConfig, *, scale: float = 1.0, memo: dict | None = None) -> GroupCost:
    """``nodes`` run as one kernel on a chip of ``accel`` (module docstring); ``scale`` converts its cycles to
    the caller's time unit (a heterogeneous device: reference clock / own clock / speed). ``memo`` keeps each
    node's lowering (keyed by the node and the accelerator, holding both so that ids are not reused)."""
    members = {id(n) for n in nodes}
    wb = accel.word_bytes
    capacity = (accel.ifmap_words + accel.ofmap_words) // 2
    compute = 0
    array = False
    free: set[int] = set()  # members without primitives (free alone, free in the group)
    info: dict[int, _Member] = {}
    for n in nodes:
        if memo is None:
            m = _compute(n, accel)
        else:
            hit = memo.get((id(n), id(accel)))
            if hit is None or hit[0] is not n or hit[1] is not accel:
                hit = memo[(id(n), id(accel))] = (n, accel, _compute(n, accel))
            m = hit[2]
        if m.cycles is None:
            return GroupCost(math.inf, False, f"refused: {m.why}", capacity_bytes=capacity * wb)
        compute += m.cycles
        array = array or m.on_array
        if not m.has_prims:
            free.add(id(n))
        info[id(n)] = m
    sources: dict[int, tuple[dict, dict]] = {}

    def direct(v) -> tuple[dict, dict] | None:
        """(``v``, outside the group) or (made by a member with primitives), or None for a free member's output.
        A member Shape or Size makes a host-side value from no tensor's data: (nothing, nothing). Its input is
        neither read nor kept on chip for it (it was counted as an intermediate, which could refuse a group that
        fits), and the shape, free alone as all shape arithmetic is, costs nothing in a group either."""
        p = v.producer
        if p is None or id(p) not in members:
            return {id(v): v}, {}
        if reads_shape_only(p):
            return {}, {}
        return ({}, {id(v): v}) if id(p) not in free else None

    def sources_of(v) -> tuple[dict, dict]:
        """The tensors ``v`` is a view of through free members: (outside the group, made by a member with
        primitives), each keyed by id. Without recursion: a long chain of views is no deeper than a short one."""
        hit = direct(v)
        if hit is not None:
            return hit
        stack = [v]
        while stack:
            w = stack[-1]
            if id(w) in sources:
                stack.pop()
                continue
            ins = [u for u in w.producer.inputs if u is not None]
            pending = [u for u in ins if direct(u) is None and id(u) not in sources]
            if pending:
                stack.extend(pending)
                continue
            outside: dict = {}
            inside: dict = {}
            for u in ins:
                o, i = direct(u) or sources[id(u)]
                outside.update(o)
                inside.update(i)
            sources[id(w)] = (outside, inside)
            stack.pop()
        return sources[id(v)]

    need: dict[int, float] = {}  # outside tensor -> the most words any member reads of it
    kept: dict[int, object] = {}  # intermediates: members' tensors read inside the group
    written: list = []  # tensors of members with primitives read outside the group
    views: list = []  # free members' outputs read outside it
    for n in nodes:
        if id(n) not in free:
            shares: dict[int, int] = {}
            for v in n.inputs:
                if v is None or id(v) in shares:
                    continue
                outside, inside = sources_of(v)
                kept.update(inside)
                if outside:
                    shares[id(v)] = min(tensor_words(v), sum(tensor_words(u) for u in outside.values()))
            own = sum(shares.values())
            cap = info[id(n)].read_cap
            # it reads no more than alone: a Gather, a strided Conv (not named `scale`: that one, the parameter,
            # converts the cycles below; reusing the name scaled a group ending in a Gather by its read fraction)
            fraction = min(1.0, cap / own) if own else 1.0
            for k, words in shares.items():
                need[k] = max(need.get(k, 0.0), words * fraction)  # one read per tensor, the largest any needs
        for v in n.outputs:
            if v is not None and (v.is_graph_output() or any(id(u) not in members for u in v.users)):
                (views if id(n) in free else written).append(v)
    read = math.ceil(sum(need.values()) - 1e-9)
    # a view read outside is written as itself, or as the members' tensors it is made of when they are fewer words
    # (a Slice: the slice; a Concat of an intermediate and an outside tensor: the intermediate), less what is
    # written anyway: a tensor is written once, whole or through one view
    write = sum(tensor_words(v) for v in written)
    whole = {id(v) for v in written}
    for v in views:
        rest = {k: u for k, u in sources_of(v)[1].items() if k not in whole}
        if rest:
            write += min(tensor_words(v), sum(tensor_words(u) for u in rest.values()))
            whole.update(rest)
    inter = sum(tensor_words(v) for v in kept.values())
    if inter > capacity:
        names = ", ".join(n.name or n.op_type for n in nodes)
        return GroupCost(math.inf, False, f"refused: the intermediate tensors of [{names}] need {inter * wb:,} bytes "
                         f"on chip, the buffers hold {capacity * wb:,} (active halves of ifmap + ofmap)",
                         read * wb, write * wb, inter * wb, capacity * wb)
    read_bw = accel.ifmap_bw_words + (accel.filter_bw_words if array else 0)
    cycles = max(compute, -(-read // read_bw), -(-write // accel.ofmap_bw_words))
    return GroupCost(float(cycles) * scale, True, "", read * wb, write * wb, inter * wb, capacity * wb)
