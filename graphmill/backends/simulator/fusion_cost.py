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
  it is made of that are not written anyway (a Slice of an intermediate: the slice; views are counted largest
  first, so one that needs a tensor whole counts it whole whatever smaller view of it also leaves the group);
  a Shape or Size member makes
  a host-side value from no tensor's data (``Expand(y, Shape(h))`` neither reads nor keeps ``h``, and the shape,
  free alone as all shape arithmetic is, is neither kept nor written); each outside tensor is read
  once, at the most any member reads of it, and no member reads more than alone (the roofline's words: a strided
  1x1 Conv its sampled pixels). Before
  2026-12-05 they paid the group's boundary like any op, so a group of free ops cost up to 1,154 cycles where
  its members cost 0, and the greedy fusion baseline and the learned passes kept such groups (an outside
  check: 10% of the step on a torch-exported encoder);
* **fit**: the intermediates together must fit in the active halves of the activation buffers,
  ``sum(intermediate words) <= (ifmap_words + ofmap_words) / 2`` (each buffer is double-buffered). An
  intermediate is an output of a member with primitives that a member with primitives reads, directly or through
  free members: a free member's output (a Concat of intermediates) is a view of them, its parts counted once;
  a group that
  does not fit is refused (``fits=False``) with the reason. A group holding an op the simulator cannot lower
  to one kernel (a training graph's ``graphmill::Backward``, control flow, an uncosted op) is refused too.

A single op is not a fusion: ``PlacementCostModel.group_cost`` answers its own op time for it, so that the
unfused schedule is the placement's exactly.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

from graphmill.ir import Node, UserInputError
from graphmill.ir.graph import stable_order
from graphmill.ir.cost import GroupCost
from graphmill.ir.summary import reads_shape_only
from graphmill.ir.types import TensorType, num_elements

from .config import AccelConfig
from .engine import array_words_read
from .lowering import ArrayLayer, Uncosted, VectorLayer, lower_node

__all__ = ["GroupCost", "KernelBuilder", "kernel_cost", "tensor_words"]


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
    node's lowering (keyed by the node and the accelerator, holding both so that ids are not reused). The nodes
    may come in any order, with the same answer: they are grown into a ``KernelBuilder`` in a topological order
    of the group, and nothing it counts depends on which one (but a refusal's list of names)."""
    builder = KernelBuilder(accel, scale=scale, memo=memo)
    for node in nodes:  # the first member that cannot be in a kernel, in the order given, is the reason
        why = builder.refusal(node)
        if why is not None:
            return why
    cost = GroupCost(0.0, True, "", capacity_bytes=builder.capacity * accel.word_bytes)
    order, cycle = stable_order(nodes)
    for node in order if not cycle else nodes:
        cost = builder.try_add(node)
        builder.accept()
    return cost


class KernelBuilder:
    """A fusion group grown one op at a time, each op costed in time proportional to its own inputs and outputs
    (and the group's boundary views), not to the group: ``kernel_cost`` of a group of L ops is this grown over
    them, and a caller that grows a group op by op (the learned passes' environment) pays O(L) in all where
    costing every prefix anew paid O(L^2) (a 5,000-op chain took 78 s to place). Ops must come in a topological
    order of the group (a member never produces an input of an earlier member); ``kernel_cost`` sorts them.

    ``try_add(node)`` answers the group's cost with ``node`` added and leaves the group as it was;
    ``accept()`` then adds it. The cost is ``kernel_cost``'s rule exactly (module docstring)."""

    def __init__(self, accel: AccelConfig, *, scale: float = 1.0, memo: dict | None = None) -> None:
        self.accel, self.scale, self.memo = accel, scale, memo
        self.capacity = (accel.ifmap_words + accel.ofmap_words) // 2
        self.nodes: list[Node] = []
        self.members: set[int] = set()
        self.free: set[int] = set()  # members without primitives (free alone, free in the group)
        self.compute = 0
        self.array = False
        self.need: dict[int, Fraction | int] = {}  # outside tensor -> the most words any member reads of it
        self.read_sum: Fraction | int = 0
        self.kept: set[int] = set()  # intermediates: members' tensors read inside the group
        self.inter = 0
        self.sources: dict[int, tuple[dict, dict]] = {}
        # members' outputs: how many distinct readers outside the group; those read outside (or graph outputs)
        # are the group's boundary writes
        self.outside_readers: dict[int, int] = {}
        self.boundary: dict[int, tuple[object, bool]] = {}  # id -> (value, made by a free member), in order
        self.boundary_words = 0  # of the boundary values made by members with primitives
        self.pending: tuple | None = None

    def _member(self, node: Node) -> _Member:
        if self.memo is None:
            return _compute(node, self.accel)
        key = (id(node), id(self.accel))
        hit = self.memo.get(key)
        if hit is None or hit[0] is not node or hit[1] is not self.accel:
            hit = self.memo[key] = (node, self.accel, _compute(node, self.accel))
        return hit[2]

    def _direct(self, v) -> tuple[dict, dict] | None:
        """(``v``, outside the group) or (made by a member with primitives), or None for a free member's output.
        A member Shape or Size makes a host-side value from no tensor's data: (nothing, nothing). Its input is
        neither read nor kept on chip for it (it was counted as an intermediate, which could refuse a group that
        fits), and the shape, free alone as all shape arithmetic is, costs nothing in a group either."""
        p = v.producer
        if p is None or id(p) not in self.members:
            return {id(v): v}, {}
        if reads_shape_only(p):
            return {}, {}
        return ({}, {id(v): v}) if id(p) not in self.free else None

    def _sources_of(self, v) -> tuple[dict, dict]:
        """The tensors ``v`` is a view of through free members: (outside the group, made by a member with
        primitives), each keyed by id. Without recursion: a long chain of views is no deeper than a short one.
        Memoized: what a member's output is a view of depends on earlier members only."""
        hit = self._direct(v)
        if hit is not None:
            return hit
        sources = self.sources
        stack = [v]
        while stack:
            w = stack[-1]
            if id(w) in sources:
                stack.pop()
                continue
            ins = [u for u in w.producer.inputs if u is not None]
            pending = [u for u in ins if self._direct(u) is None and id(u) not in sources]
            if pending:
                stack.extend(pending)
                continue
            outside: dict = {}
            inside: dict = {}
            for u in ins:
                o, i = self._direct(u) or sources[id(u)]
                outside.update(o)
                inside.update(i)
            sources[id(w)] = (outside, inside)
            stack.pop()
        return sources[id(v)]

    def refusal(self, node: Node) -> GroupCost | None:
        """The group's cost when ``node`` cannot be in a kernel at all (control flow, an uncosted op), else None."""
        m = self._member(node)
        if m.cycles is not None:
            return None
        return GroupCost(math.inf, False, f"refused: {m.why}", capacity_bytes=self.capacity * self.accel.word_bytes)

    def try_add(self, node: Node) -> GroupCost:
        wb = self.accel.word_bytes
        m = self._member(node)
        if m.cycles is None:
            self.pending = None
            return self.refusal(node)
        free = not m.has_prims
        kept: dict[int, object] = {}
        need: dict[int, Fraction | int] = {}
        if not free:
            shares: dict[int, int] = {}
            for v in node.inputs:
                if v is None or id(v) in shares:
                    continue
                outside, inside = self._sources_of(v)
                kept.update((k, u) for k, u in inside.items() if k not in self.kept)
                if outside:
                    shares[id(v)] = min(tensor_words(v), sum(tensor_words(u) for u in outside.values()))
            own = sum(shares.values())
            # it reads no more than alone: a Gather, a strided Conv (not named `scale`: that one, the parameter,
            # converts the cycles below; reusing the name scaled a group ending in a Gather by its read fraction)
            # (exact: a running sum of floats would drift where summing the group anew did not)
            fraction = Fraction(m.read_cap, own) if m.read_cap < own else 1
            for k, words in shares.items():
                if words * fraction > self.need.get(k, 0):
                    need[k] = words * fraction  # one read per tensor, the largest any needs
        # the readers this op takes inside: a member's output it reads may stop being written
        closed: list[int] = []
        for v in node.inputs:
            if v is not None and id(v) in self.outside_readers and id(v) not in closed:
                closed.append(id(v))
        opened = [(v, len(v.users)) for v in node.outputs if v is not None]
        self.pending = (node, m, free, kept, need, closed, opened)
        # the new op is a member while the boundary is counted: a view it makes is written as what it is made of
        self.members.add(id(node))
        if free:
            self.free.add(id(node))
        try:
            write = self._write(free, closed, opened)
        finally:
            self.members.discard(id(node))
            self.free.discard(id(node))
        read = math.ceil(self.read_sum + sum(w - self.need.get(k, 0) for k, w in need.items()))
        inter = self.inter + sum(tensor_words(v) for v in kept.values())
        if inter > self.capacity:
            names = ", ".join(n.name or n.op_type for n in [*self.nodes, node])
            return GroupCost(math.inf, False, f"refused: the intermediate tensors of [{names}] need {inter * wb:,} "
                             f"bytes on chip, the buffers hold {self.capacity * wb:,} (active halves of ifmap + "
                             "ofmap)", read * wb, write * wb, inter * wb, self.capacity * wb)
        accel = self.accel
        read_bw = accel.ifmap_bw_words + (accel.filter_bw_words if self.array or m.on_array else 0)
        cycles = max(self.compute + m.cycles, -(-read // read_bw), -(-write // accel.ofmap_bw_words))
        return GroupCost(float(cycles) * self.scale, True, "", read * wb, write * wb, inter * wb, self.capacity * wb)

    def accept(self) -> None:
        """Add the op of the last ``try_add`` (refused for its intermediates or not; a member that cannot be in
        a kernel at all cannot be added)."""
        if self.pending is None:
            raise ValueError("accept() without a try_add() of an op that can be in a kernel")
        node, m, free, kept, need, closed, opened = self.pending
        self.pending = None
        self.nodes.append(node)
        self.members.add(id(node))
        if free:
            self.free.add(id(node))
        self.compute += m.cycles
        self.array = self.array or m.on_array
        for k, words in need.items():
            self.read_sum += words - self.need.get(k, 0)
            self.need[k] = words
        for k, v in kept.items():
            self.kept.add(k)
            self.inter += tensor_words(v)
        for k in closed:
            self.outside_readers[k] -= 1
            v, made_free = self.boundary[k]
            if not self.outside_readers[k] and not v.is_graph_output:
                del self.boundary[k]
                if not made_free:
                    self.boundary_words -= tensor_words(v)
        for v, readers in opened:
            self.outside_readers[id(v)] = readers
            if readers or v.is_graph_output:
                self.boundary[id(v)] = (v, free)
                if not free:
                    self.boundary_words += tensor_words(v)

    def _write(self, free: bool, closed: list[int], opened: list) -> int:
        """The boundary's written words with ``node`` added: the outputs of members with primitives read outside,
        then each view read outside as the smaller of its own words and those of the members' tensors it is made
        of that are not written anyway (a tensor is written once, whole or through one view)."""
        gone = {k for k in closed if self.outside_readers[k] == 1 and not self.boundary[k][0].is_graph_output}
        fresh = [(v, free) for v, readers in opened if readers or v.is_graph_output]
        write = self.boundary_words - sum(tensor_words(self.boundary[k][0]) for k in gone if not self.boundary[k][1])
        write += sum(tensor_words(v) for v, f in fresh if not f)
        entries = [e for k, e in self.boundary.items() if k not in gone] + fresh
        views = [v for v, f in entries if f]
        if not views:
            return write
        whole = {id(v) for v, f in entries if not f}
        # the largest first (then by name): a view that needs its tensor whole (a Reshape that is a graph output)
        # counts it whole whatever smaller view of it (a Slice) also leaves the group; in the order met, the
        # Slice first wrote 16 words of a 256-word output, and the answer depended on how the group was listed
        for v in sorted(views, key=lambda v: (-tensor_words(v), v.name)):
            rest = {k: u for k, u in self._sources_of(v)[1].items() if k not in whole}
            if rest:
                write += min(tensor_words(v), sum(tensor_words(u) for u in rest.values()))
                whole.update(rest)
        return write
