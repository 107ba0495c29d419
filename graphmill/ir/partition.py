"""Cutting a graph into contiguous stages: which values cross each cut, and each stage as a graph of its own.

A *stage* is a set of compute nodes (nodes that are not constant: ``summary.constant_values``); the stages
come in an order and together hold every compute node. The values that cross the boundary between stage
``s`` and ``s + 1`` are those produced at or before stage ``s`` (graph inputs count as produced before stage
0) and read after it, or graph outputs produced before the last stage: a value that skips a stage (a skip
connection) crosses every boundary on its way, because a pipeline passes tensors only from one stage to the
next. Constants never cross: each stage keeps its own copy of the initializers and constant nodes it reads.

``extract_stages`` builds each stage as a ``Graph``: its inputs are the values crossing the boundary before it
(the model's inputs for stage 0), its outputs those crossing the boundary after it (the model's outputs for
the last stage), in a fixed order (graph inputs first, then by producing node). The torch backend runs such a
graph as one pipeline stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from graphmill.util.errors import UserInputError

from .graph import Graph, Node, Value
from .summary import constant_values, is_constant_node
from .types import TensorType, num_elements


def value_bytes(v: Value | None) -> int:
    """Bytes of a value's tensor (0 when its type, element type or shape is not known)."""
    if v is None or not isinstance(v.type, TensorType) or v.type.shape is None:
        return 0
    n = num_elements(v.type.shape)
    if n is None:
        return 0
    try:
        width = max(1, v.type.dtype.numpy().itemsize)
    except (AttributeError, TypeError, ValueError):
        width = 4
    return n * width


def compute_nodes(graph: Graph) -> list[Node]:
    """The nodes that do work on every run (not constant-only), in the graph's order."""
    constant = constant_values(graph)
    return [n for n in graph.nodes if not is_constant_node(n, constant)]


@dataclass
class Crossing:
    """The values crossing each cut of an order of ``n`` compute nodes: cut ``j`` (j = 1 .. n-1) lies between
    positions ``j - 1`` and ``j``; cuts 0 and ``n`` have none. ``first`` and ``last`` give, per value id, the
    position after which it exists (-1: a graph input) and the last position reading it (n: a graph output).

    Each value's live range is kept, not the list of values at every cut: a value live across many cuts (a
    graph output made early, a skip to a final Sum) is in all of them, so the lists held O(n^2) entries
    (8 million entries for 4,000 Relus that are each a graph output; ``partition`` of 4,000 inputs and outputs
    took 40 s, now 3.5 s)."""

    order: list[Node]
    first: dict[int, int] = field(default_factory=dict)
    last: dict[int, int] = field(default_factory=dict)
    vals: dict[int, Value] = field(default_factory=dict)
    rank: dict[int, tuple[int, int]] = field(default_factory=dict)

    def _span(self, k: int) -> range:
        """The cuts value ``k`` crosses."""
        return range(max(self.first[k] + 1, 1), min(self.last[k], len(self.order) - 1) + 1)

    def at(self, j: int) -> list[Value]:
        """The values crossing cut ``j``, in a fixed order: graph inputs first (in input order), then by
        producing position."""
        out = [v for k, v in self.vals.items() if k in self.last and j in self._span(k)]
        out.sort(key=lambda v: self.rank.get(id(v), (self.first[id(v)], v.index or 0)))
        return out

    def bytes(self) -> list[int]:
        """Bytes crossing each cut 0 .. n: each value added over its span (a difference array)."""
        n = len(self.order)
        delta = [0] * (n + 2)
        for k, v in self.vals.items():
            span = self._span(k) if k in self.last else range(0)
            if len(span):
                b = value_bytes(v)
                delta[span.start] += b
                delta[span.stop] -= b
        out, total = [], 0
        for j in range(n + 1):
            total += delta[j]
            out.append(total)
        return out


def crossing_values(graph: Graph, order: Sequence[Node]) -> Crossing:
    """Which values cross each cut of ``order`` (a topological order of ``compute_nodes(graph)``)."""
    order = list(order)
    n = len(order)
    constant = constant_values(graph)
    first: dict[int, int] = {}
    vals: dict[int, Value] = {}
    for v in graph.inputs:
        if id(v) not in constant:
            first[id(v)] = -1
            vals[id(v)] = v
    for i, node in enumerate(order):
        for v in node.outputs:
            if v is not None:
                first[id(v)] = i
                vals[id(v)] = v
    last: dict[int, int] = {}
    for i, node in enumerate(order):
        for v in node.inputs:
            if v is not None and id(v) in first:
                last[id(v)] = max(last.get(id(v), -1), i)
    for v in graph.outputs:
        if id(v) in first:
            last[id(v)] = n
    rank = {id(v): (-1, i) for i, v in enumerate(graph.inputs)}
    return Crossing(order, first, last, vals, rank)


@dataclass
class StageGraph:
    """One stage as a graph: ``graph``'s inputs are the values crossing into it, its outputs those crossing out."""

    index: int
    graph: Graph
    nodes: list[Node]  # the compute nodes of the original graph in this stage


def extract_stages(graph: Graph, stages: Sequence[Sequence[Node]]) -> list[StageGraph]:
    """Each stage of ``graph`` as a graph of its own (see the module docstring).

    ``stages`` hold the compute nodes of ``graph`` in order; concatenated they must be a topological
    order of them, every compute node in exactly one stage (a UserInputError names the node otherwise).
    """
    order = [n for s in stages for n in s]
    compute = compute_nodes(graph)
    if len(order) != len(compute) or {id(n) for n in order} != {id(n) for n in compute}:
        missing = [n for n in compute if id(n) not in {id(m) for m in order}]
        what = missing[0].describe() if missing else "a node"
        raise UserInputError(f"graph {graph.name!r}: the stages must hold every compute node once; {what} is not "
                             "in exactly one stage")
    pos = {id(n): i for i, n in enumerate(order)}
    for n in order:
        for v in n.inputs:
            if v is not None and v.producer is not None and id(v.producer) in pos and \
                    pos[id(v.producer)] > pos[id(n)]:
                raise UserInputError(f"{n.describe()} reads {v.name!r} from a later stage: the stages are not in "
                                     "a topological order")
    cross = crossing_values(graph, order)
    constant = constant_values(graph)
    const_nodes = [n for n in graph.nodes if is_constant_node(n, constant)]
    out: list[StageGraph] = []
    start = 0
    k = len(stages)
    model_inputs = [v for v in graph.inputs if id(v) not in constant]
    for s, members in enumerate(stages):
        end = start + len(members)
        ins = model_inputs if s == 0 else cross.at(start)
        outs = list(graph.outputs) if s == k - 1 else cross.at(end)
        out.append(StageGraph(s, _stage_graph(graph, s, list(members), ins, outs, const_nodes), list(members)))
        start = end
    return out


def constant_closure(graph: Graph, reads: Iterable[Value | None], is_constant: Callable[[Node], bool]) -> list[Node]:
    """The constant nodes ``reads`` depend on, transitively, in graph order: a piece cut out of ``graph``
    recomputes them (or holds their initializers) rather than receiving them from another piece."""
    needed: set[int] = set()
    todo = [v for v in reads if v is not None]
    while todo:
        p = todo.pop().producer
        if p is not None and id(p) not in needed and is_constant(p):
            needed.add(id(p))
            todo.extend(x for x in p.inputs if x is not None)
    return [n for n in graph.nodes if id(n) in needed]


def clone_nodes(g: Graph, nodes: Iterable[Node], mapped: Callable[[Value | None], Value | None],
                vmap: dict[int, Value], *, keep_meta: bool = True) -> None:
    """Append copies of ``nodes`` (in a topological order) to ``g``: inputs through ``mapped``, each output a
    new value recorded in ``vmap`` under the original's id."""
    for n in nodes:
        ins = [mapped(v) for v in n.inputs]
        outs: list[Value | None] = []
        for o in n.outputs:
            if o is None:
                outs.append(None)
                continue
            nv = Value(o.name, o.type)
            vmap[id(o)] = nv
            outs.append(nv)
        nn = Node(n.op_type, ins, dict(n.attrs), outputs=outs, domain=n.domain, name=n.name)
        if keep_meta:
            nn.meta = dict(n.meta)
        g.append(nn)


def _stage_graph(graph: Graph, s: int, members: list[Node], ins: list[Value], outs: list[Value],
                 const_nodes: list[Node]) -> Graph:
    g = Graph(f"{graph.name}_stage{s}", opset_imports=graph.opset_imports)
    vmap: dict[int, Value] = {}
    for v in ins:
        nv = Value(v.name, v.type)
        g.add_input(nv)
        vmap[id(v)] = nv
    const_ids = {id(n) for n in const_nodes}
    reads = [v for n in members for v in n.inputs] + list(outs)
    nodes = constant_closure(graph, reads, lambda n: id(n) in const_ids) + members

    def mapped(v: Value | None) -> Value | None:
        if v is None:
            return None
        got = vmap.get(id(v))
        if got is not None:
            return got
        if v.const is not None:
            nv = g.add_initializer(Value(v.name, v.type, const=v.const))
            vmap[id(v)] = nv
            return nv
        raise UserInputError(f"stage {s} of graph {graph.name!r} reads {v.name!r}, which neither crosses into it "
                             "nor is computed in it")

    clone_nodes(g, nodes, mapped, vmap)
    g.outputs = [mapped(v) for v in outs]  # type: ignore[misc]
    return g
