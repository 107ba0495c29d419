"""The placement problem as numbers: the compute ops in the graph's order, their time on each device, the
values they exchange, the links and the memory capacities; everything a placement method and the schedule
simulation (``schedule.py``) need, so that neither touches the IR again.

Costs come from the cost model on the ``PassContext``: a ``graphmill.ir.cost.CostModel`` that also answers the
device-set questions of ``DeviceCostModel`` (the simulator backend's ``PlacementCostModel`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from graphmill.ir import Graph, Node, UserInputError
from graphmill.ir.naming import name_nodes
from graphmill.ir.partition import value_bytes
from graphmill.ir.summary import constant_values, is_constant_node

#: ops that start a new "layer" for round-robin and expert placement when the graph has no layer annotations
LAYER_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN", "Gather", "Attention"})


@runtime_checkable
class DeviceCostModel(Protocol):
    """A ``CostModel`` that knows its devices: how many, their names, memory capacity and links."""

    devices: int
    names: list[str]
    units: str

    def op_time(self, node: Node, device: int = 0) -> float: ...

    def transfer_time(self, nbytes: int, src: int, dst: int) -> float: ...

    def memory(self, node: Node) -> int: ...

    def capacity(self, device: int) -> float: ...

    def link(self, src: int, dst: int) -> tuple[float, float]: ...


@dataclass
class ValueInfo:
    """One tensor: ``producer`` an op index (None: a graph input or constant, present on every device at 0)."""

    name: str
    bytes: int
    producer: int | None
    consumers: list[int]


@dataclass
class PlacementProblem:
    names: list[str]
    nodes: list[Node]
    op_time: np.ndarray  # [n, D]
    values: list[ValueInfo]
    latency: np.ndarray  # [D, D]
    bytes_per_unit: np.ndarray  # [D, D] (inf on the diagonal)
    capacity: np.ndarray  # [D] bytes
    units: str
    device_names: list[str]
    # derived
    out_values: list[list[int]] = field(default_factory=list)  # op -> indices of values it produces (consumed)
    in_count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # op -> produced values it reads
    resident: list[list[int]] = field(default_factory=list)  # op -> indices of producer-less values it reads
    preds: list[list[int]] = field(default_factory=list)
    succs: list[list[int]] = field(default_factory=list)
    edge_bytes: dict[tuple[int, int], int] = field(default_factory=dict)  # (producer op, consumer op) -> bytes
    layers: list[int] = field(default_factory=list)  # op -> layer index (round-robin / expert)
    groups: list[int] = field(default_factory=list)  # op -> colocation group index
    uncosted: list[dict] = field(default_factory=list)  # ops the cost model could not cost (0 in op_time)

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def devices(self) -> int:
        return self.op_time.shape[1]

    def transfer(self, nbytes: float, src: int, dst: int) -> float:
        if src == dst or nbytes <= 0:
            return 0.0
        return float(self.latency[src, dst] + nbytes / self.bytes_per_unit[src, dst])

    def finish(self) -> "PlacementProblem":
        """Fill the derived tables."""
        n = self.n
        self.out_values = [[] for _ in range(n)]
        self.resident = [[] for _ in range(n)]
        self.in_count = np.zeros(n, np.int64)
        preds: list[set[int]] = [set() for _ in range(n)]
        self.edge_bytes = {}
        for k, v in enumerate(self.values):
            if v.producer is None:
                for c in v.consumers:
                    self.resident[c].append(k)
                continue
            if v.consumers:
                self.out_values[v.producer].append(k)
            for c in v.consumers:
                self.in_count[c] += 1
                preds[c].add(v.producer)
                key = (v.producer, c)
                self.edge_bytes[key] = self.edge_bytes.get(key, 0) + v.bytes
        self.preds = [sorted(p) for p in preds]
        succs: list[list[int]] = [[] for _ in range(n)]
        for c, ps in enumerate(self.preds):
            for p in ps:
                succs[p].append(c)
        self.succs = succs
        return self


def cost_model_of(ctx: Any, what: str) -> Any:
    cost = getattr(ctx, "cost_model", None)
    if cost is None:
        raise UserInputError(f"{what} needs a cost model with devices: PassContext(cost_model=...) (graphmill.place "
                             "and `graphmill place` give it the simulator's PlacementCostModel)")
    if not isinstance(cost, DeviceCostModel):
        raise UserInputError(f"{what}: the cost model {type(cost).__name__} does not describe its devices (devices, "
                             "names, units, capacity(d), link(src, dst)); use graphmill.backends.simulator.devices."
                             "PlacementCostModel")
    return cost


def replay_record(cost: Any) -> dict:
    """What replaying decisions made on ``cost`` needs, for the graph's meta (``device_set``, ``cost``): written by
    the passes themselves, so that a model placed by ``run_passes`` with a hand-built context replays in
    ``graphmill simulate`` and ``api.learned_replay`` as one from ``graphmill optimize`` does. A cost model that
    cannot describe itself (no ``replay_record()``, or measured times) gives {}: nothing to replay on."""
    describe = getattr(cost, "replay_record", None)
    return dict(describe() or {}) if callable(describe) else {}


def infer_open_shapes(graph: Graph, ctx: Any, what: str) -> None:
    """Run the ``shape-inference`` pass when a value lacks a shape: ops are costed from their sizes, and a model
    loaded from a ``torch.onnx.export`` file declares no intermediate shapes (``api.place`` and ``graphmill
    optimize`` infer them first; a pass run from Python on a loaded model gets them here). A symbolic dimension
    (a dynamic batch) is refused in one line naming it: a pass has no size for it."""
    from graphmill.ir.ops import is_open
    from graphmill.ir.summary import data_dependent_note, symbols, symbols_to_give

    # open: no type, no shape or an unknown dim (an earlier pass of the schedule may have made it inferable:
    # fold-constants turning a Resize's computed scales into a constant)
    if any(is_open(v.type) for n in graph.nodes for v in n.outputs if v is not None):
        from graphmill.passes.cleanup.shape_inference import ShapeInference

        ShapeInference().run(graph, ctx)
    free = symbols_to_give(graph, symbols(graph))
    if free:
        raise UserInputError(f"{what}: graph {graph.name!r} has symbolic dimension(s) {', '.join(free)}; op costs "
                             f"need sizes: give them with --dim {free[0]}=32 (graphmill optimize or place, which save "
                             "the model at those sizes; api: dims=, or graphmill.ir.summary.bind_symbols)"
                             + data_dependent_note(graph, free))


def build_problem(graph: Graph, cost: Any) -> PlacementProblem:
    """The compute ops of ``graph`` (not constant-only, in the graph's order) and their costs."""
    if not graph.is_sorted():
        graph.sort()
    name_nodes(graph)
    constant = constant_values(graph)
    nodes = [n for n in graph.nodes if not is_constant_node(n, constant)]
    if not nodes:
        raise UserInputError(f"graph {graph.name!r} has no compute op to place")
    D = int(cost.devices)
    if D < 1:
        raise UserInputError("zero devices: a placement needs at least one device")
    index = {id(n): i for i, n in enumerate(nodes)}
    t = np.zeros((len(nodes), D))
    for i, n in enumerate(nodes):
        for d in range(D):
            t[i, d] = cost.op_time(n, d)
            if not t[i, d] >= 0:  # a user's cost model: the schedule and the lower bounds assume times >= 0
                raise UserInputError(f"the cost model gives {n.describe()} a time of {float(t[i, d])} on device {d}: "
                                     "an op time must be a number >= 0")
    values: list[ValueInfo] = []
    seen: dict[int, int] = {}

    def add(v: Any, producer: int | None) -> int:
        k = seen.get(id(v))
        if k is None:
            k = seen[id(v)] = len(values)
            values.append(ValueInfo(v.name, int(value_bytes(v)), producer, []))
        return k

    for v in graph.inputs:
        if id(v) not in constant:
            add(v, None)
    for i, n in enumerate(nodes):
        for v in n.inputs:
            if v is None:
                continue
            p = v.producer
            k = add(v, index[id(p)] if p is not None and id(p) in index else None)
            if not values[k].consumers or values[k].consumers[-1] != i:
                values[k].consumers.append(i)
        for v in n.outputs:
            if v is not None:
                add(v, i)
    # producer-less values read by no compute op (unused inputs) and outputs nobody reads are kept: they cost
    # nothing, and the report lists every tensor
    lat = np.zeros((D, D))
    bw = np.full((D, D), np.inf)
    for s in range(D):
        for d in range(D):
            if s != d:
                lat[s, d], bw[s, d] = cost.link(s, d)
    cap = np.array([float(cost.capacity(d)) for d in range(D)])
    prob = PlacementProblem([n.name for n in nodes], nodes, t, values, lat, bw, cap, str(cost.units),
                            list(cost.names)).finish()
    prob.layers = layer_index(nodes, constant)
    prob.groups = colocation_groups(prob)
    prob.uncosted = uncosted_of(nodes, cost)
    return prob


def uncosted_of(nodes: list[Node], cost: Any) -> list[dict]:
    """The entries of the cost model's ``uncosted`` that are these ``nodes`` (or ops in their control-flow
    bodies: ``outer/inner``), each once, matched by name and op: the cost model keeps them for its whole life, so
    a model that costed another graph before, or this one before a pass replaced a node (even under the same
    name), listed ops this graph does not have."""
    ops = {n.name: n.qualified_op for n in nodes}
    out: dict[tuple, dict] = {}
    for u in getattr(cost, "uncosted", []):
        name = u["name"]
        if ops.get(name) == u["op"] or any(name.startswith(p + "/") for p in ops if p):
            out.setdefault((name, u["op"], u["reason"]), dict(u))
    return list(out.values())


def _reads_weights(node: Node, constant: set[int]) -> bool:
    """Whether ``node`` reads a floating-point constant (``ir.summary.constant_values``: an initializer, or a value
    computed from constants only, such as a cast, transposed or dequantized weight): a weighted op. A torch
    export's Gather of a Shape output (integer indices into shape arithmetic) started a layer of its own, and so
    did a MatMul of two activations (an attention score)."""
    return any(v is not None and id(v) in constant and getattr(getattr(v, "type", None), "dtype", None) is not None
               and v.type.dtype.is_floating for v in node.inputs)


def layer_index(nodes: list[Node], constant: set[int]) -> list[int]:
    """Layer of each op: ``meta["layer"]`` / ``meta["block"]`` (with ``meta["model_stage"]``, the zoo's
    architectural stage) where the builder annotated them, else a new layer at each weighted op
    (``LAYER_OPS`` reading a floating-point value of ``constant``) in the graph's order, the ops after it joining it. Backward ops (``meta["forward"]``)
    take their forward op's layer."""
    keys: list[Any] = []
    cur = 0
    by_name: dict[str, int] = {}
    annotated = any("layer" in n.meta or "block" in n.meta for n in nodes)
    for n in nodes:
        fwd = n.meta.get("forward")
        if fwd is not None and fwd in by_name:
            keys.append(("same", by_name[fwd]))
            continue
        if annotated:
            k = n.meta.get("layer", (n.meta.get("model_stage"), n.meta.get("block")))
            keys.append(("key", repr(k)))
        else:
            if n.op_type in LAYER_OPS and _reads_weights(n, constant) and keys:
                cur += 1
            keys.append(("key", cur))
        by_name[n.name] = len(keys) - 1
    out: list[int] = []
    ids: dict[Any, int] = {}
    for i, k in enumerate(keys):
        if k[0] == "same":
            out.append(out[k[1]])
            continue
        if k not in ids:
            ids[k] = len(ids)
        out.append(ids[k])
    return out


def colocation_groups(prob: PlacementProblem) -> list[int]:
    """Colocation groups, as the papers colocate: an op with its gradient and update (``meta["forward"]`` /
    ``meta["colocate"]`` name the op to sit with); constants are not placed (every device holds the ones it
    reads). Group ids are numbered in the graph's order of their first op."""
    parent = list(range(prob.n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    index = {name: i for i, name in enumerate(prob.names)}
    for i, n in enumerate(prob.nodes):
        for key in ("forward", "colocate"):
            other = n.meta.get(key)
            if isinstance(other, str) and other in index:
                a, b = find(i), find(index[other])
                if a != b:
                    parent[max(a, b)] = min(a, b)
    ids: dict[int, int] = {}
    out = []
    for i in range(prob.n):
        r = find(i)
        if r not in ids:
            ids[r] = len(ids)
        out.append(ids[r])
    return out


def op_bytes(prob: PlacementProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per op: the bytes it produces, reads from other ops and reads from graph inputs and weights (the byte
    features of the rl placer and of the learned passes' policy)."""
    out_b, in_b, w_b = np.zeros(prob.n), np.zeros(prob.n), np.zeros(prob.n)
    for v in prob.values:
        if v.producer is not None:
            out_b[v.producer] += v.bytes
        for c in v.consumers:
            (in_b if v.producer is not None else w_b)[c] += v.bytes
    return out_b, in_b, w_b
