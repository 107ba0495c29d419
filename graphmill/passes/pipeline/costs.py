"""What the partitioner weighs, per compute node of a graph: forward and backward time, weights, activations,
and the bytes crossing each cut of the order, all for one micro-batch.

Rules (stated in the README, "Pipeline partitioning"):

* **Micro-batch.** The batch dimension is dimension 0 of every model input; the mini-batch ``B`` (the
  model's own size, or ``batch`` for a symbolic one) is split into ``M`` equal micro-batches of ``B / M``;
  every time and size here is for one micro-batch (the graph is costed with its batch bound to ``B / M``).
* **Forward** time of a node: ``CostModel.op_time(node, 0)`` (devices are identical).
* **Backward** time: ``CostModel.backward_time(node, 0)`` when the cost model has it; otherwise twice the
  forward time for a MAC op (Conv, Gemm, MatMul, ...: one product for the input's gradient, one for the
  weights'), once the forward time for every other op (its gradient is elementwise work of the same size).
* **Transfer** across a cut: the bytes of the values crossing it (``graphmill.ir.partition``, skip
  connections included on every cut they pass) sent forward on the link ``s -> s + 1``, and their gradients
  (same bytes) sent back on the link ``s + 1 -> s``: each link's time per micro-batch, the larger of the two,
  ``max(CostModel.transfer_time(bytes, s, s + 1), CostModel.transfer_time(bytes, s + 1, s))``. The links run
  beside the chips (the simulated schedule overlaps a transfer with the next micro-batch's compute), so a cut's
  transfer is a stage of its own in the pipeline, not time added to the sending stage (PipeDream's planner).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphmill.ir import Graph, Node, TensorType, UserInputError, Value
from graphmill.ir.ops import infer_types, lookup
from graphmill.ir.partition import compute_nodes, crossing_values, value_bytes
from graphmill.ir.summary import bind_symbols, constant_values, is_bn_statistic, node_cost


@dataclass
class BatchInfo:
    """The batch dimension: ``size`` (the mini-batch ``B``), ``symbol`` (its name when symbolic)."""

    size: int
    symbol: str | None


def batch_dimension(graph: Graph, batch: int = 0, *, symbolic: int = 0) -> BatchInfo:
    """Dimension 0 of the model's inputs, the one micro-batches split; a UserInputError when there is none.
    ``batch``: the mini-batch asked for (0: none; a fixed batch must equal it); ``symbolic``: the size a symbolic
    batch takes when ``batch`` is 0."""
    constant = constant_values(graph)
    inputs = [v for v in graph.inputs if id(v) not in constant]
    if not inputs:
        raise UserInputError(f"graph {graph.name!r} has no input, so no batch dimension to split into micro-batches")
    dims = set()
    for v in inputs:
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None or len(t.shape) == 0 or t.shape[0] is None:
            raise UserInputError(f"input {v.name!r} of graph {graph.name!r} has no batch dimension to split into "
                                 f"micro-batches (its shape is {getattr(t, 'shape', None)}); give it a leading "
                                 "batch dimension")
        dims.add(t.shape[0])
    if len(dims) > 1:
        raise UserInputError(f"graph {graph.name!r}: the inputs' first dimensions differ ({sorted(map(str, dims))}); "
                             "there is no one batch dimension to split into micro-batches")
    d = dims.pop()
    if isinstance(d, str):
        batch = batch or symbolic
        if batch < 1:
            raise UserInputError(f"graph {graph.name!r} has a symbolic batch dimension {d!r}: give the mini-batch "
                                 "size (batch=B, --batch B)")
        return BatchInfo(batch, d)
    if batch and batch != d:
        raise UserInputError(f"graph {graph.name!r} has a fixed batch of {d}; batch={batch} cannot change it")
    if d < 1:
        raise UserInputError(f"graph {graph.name!r}: batch dimension of size {d} has nothing to split")
    return BatchInfo(int(d), None)


def at_batch(graph: Graph, info: BatchInfo, size: int) -> Graph:
    """A copy of ``graph`` whose batch dimension is ``size`` (node order kept: node i is node i)."""
    if info.symbol is not None:
        # bound, then inferred: a torch.onnx.export file declares no intermediate shapes, and sizes the graph
        # computes from Shape (a Reshape's target) become known only at a bound batch
        g = bind_symbols(graph, {info.symbol: size})
        infer_types(g)
        return g
    if size == info.size:
        return graph.copy()
    g = graph.copy()
    constant = constant_values(g)
    for v in g.inputs:
        if id(v) not in constant:
            v.type = v.type.with_shape([size, *v.type.shape[1:]])
    for n in g.nodes:
        for o in n.outputs:
            if o is not None:
                o.type = None
    infer_types(g)
    for n, orig_n in zip(g.nodes, graph.nodes):  # a shape known at the whole batch and lost at a micro-batch
        op = lookup(n.domain, n.op_type)
        if op is None or op.infer is None:  # its shapes came from the file: no inference to blame
            continue
        for o, orig in zip(n.outputs, orig_n.outputs):
            if o is not None and orig is not None and isinstance(orig.type, TensorType) and \
                    orig.type.shape is not None and not (isinstance(o.type, TensorType) and o.type.shape is not None):
                shapes = ", ".join(str(list(v.type.shape)) if v is not None and isinstance(v.type, TensorType)
                                   and v.type.shape is not None else "?" for v in n.inputs)
                raise UserInputError(f"graph {graph.name!r}: micro-batches split the inputs' first dimension "
                                     f"({info.size} -> {size}), and then {n.describe()} has no shape (inputs "
                                     f"{shapes}): dimension 0 is not the batch here (a sequence-first model, or a "
                                     "constant sized for the whole batch); use --microbatches 1")
    for v, orig in zip(g.outputs, graph.outputs):
        t = v.type
        if isinstance(t, TensorType) and t.shape and isinstance(orig.type, TensorType) and orig.type.shape and \
                t.shape[0] != size and orig.type.shape[0] == info.size:
            raise UserInputError(f"graph {graph.name!r}: output {v.name!r} keeps batch {t.shape[0]} when the input "
                                 f"batch is {size}: the batch size {info.size} is fixed inside the model (a Reshape to "
                                 "a constant shape?), so there is no batch dimension to split into micro-batches")
    return g


# Cost models may memoize per node object (the simulator's key on id(node)); a graph copy made for one call and
# freed would let a later copy's nodes reuse those ids and read stale times. So each (cost model, graph, batch
# size) keeps its one copy for as long as the cost model lives.
_WORK: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _work_graph(graph: Graph, info: BatchInfo, size: int, cost: Any) -> Graph:
    try:
        per_cost = _WORK.setdefault(cost, {})
    except TypeError:  # a cost model that cannot be weakly referenced: nothing to share
        return at_batch(graph, info, size)
    key = (id(graph), size, len(graph.nodes))
    hit = per_cost.get(key)
    if hit is not None and hit[0] is graph and all(a.name == b.name for a, b in zip(graph.nodes, hit[1].nodes)):
        return hit[1]
    work = at_batch(graph, info, size)
    per_cost[key] = (graph, work)
    return work


@dataclass
class NodeCosts:
    """Per compute node (in ``order``) and per cut, for one micro-batch; see the module docstring."""

    order: list[Node]            # compute nodes of the original graph, in the order partitions are cut
    forward: np.ndarray          # [n]
    backward: np.ndarray         # [n]
    weight_bytes: np.ndarray     # [n] constant inputs, each counted at its first reader (shared_weights: the rest)
    trained_bytes: np.ndarray    # [n] of those, the ones training keeps a gradient and optimizer state of
    param_count: np.ndarray      # [n] elements of those (torchgpipe's balance by size)
    act_bytes: np.ndarray        # [n] output bytes (what the backward pass keeps)
    cut_bytes: np.ndarray        # [n + 1] bytes crossing cut j (0 and n: none); cut 0 holds the model inputs
    input_bytes: int             # the model inputs of one micro-batch
    transfer: list[np.ndarray]   # per stage s: the link time of cut j after it, each direction's the larger ([n + 1])
    batch: BatchInfo
    microbatches: int
    units: str
    shared_weights: list[tuple[float, np.ndarray]]  # constant inputs read at several positions: (bytes, positions)
    shared_trained: list[tuple[float, np.ndarray]]  # the same, (trained bytes, positions)

    @property
    def n(self) -> int:
        return len(self.order)


def trained_bytes(v: Value) -> float:
    """Bytes of the gradient (and, per byte, of the optimizer's state) that training keeps for constant ``v``: a
    floating-point weight's; none for BatchNorm's running statistics (buffers, which no optimizer sees) or an
    integer constant (a shape). Every constant counted as a trained weight before: a CNN's stages carried
    gradients and Adam state for their statistics (an outside check). Coarser than the torch backend's rule
    (``backends/torch/weights.py``), which also keeps float constants such as an attention scale, a GELU's 0.5 or
    a fixed mask or positional table fixed: mostly scalars (a transformer's 64 x 64 mask is 16 KB), and passes may
    not import the backend."""
    t = v.type
    if not isinstance(t, TensorType) or t.dtype is None or not t.dtype.is_floating or is_bn_statistic(v):
        return 0.0
    return float(value_bytes(v))


def is_mac_op(node: Node) -> bool:
    c = node_cost(node)
    return bool(c is not None and c.macs > 0)


def node_costs(graph: Graph, cost: Any, *, stages: int, microbatches: int, batch: int = 0) -> NodeCosts:
    """Cost every compute node of ``graph`` for one micro-batch (``graph`` itself is not changed)."""
    info = batch_dimension(graph, batch)
    if microbatches < 1:
        raise UserInputError(f"microbatches must be >= 1, got {microbatches}")
    if info.size % microbatches:
        raise UserInputError(f"the mini-batch of {info.size} does not split into {microbatches} equal micro-batches")
    micro = info.size // microbatches
    work = _work_graph(graph, info, micro, cost)
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    wnodes = work.nodes
    order = compute_nodes(graph)
    worder = [wnodes[index[id(n)]] for n in order]
    n = len(order)
    fwd = np.zeros(n)
    bwd = np.zeros(n)
    backward_time = getattr(cost, "backward_time", None)
    for i, node in enumerate(worder):
        f = float(cost.op_time(node, 0))
        fwd[i] = f
        bwd[i] = float(backward_time(node, 0)) if backward_time is not None else (2.0 if is_mac_op(node) else 1.0) * f
    seen: set[int] = set()
    wbytes = np.zeros(n)
    tbytes = np.zeros(n)
    pcount = np.zeros(n)
    wconstant = constant_values(work)
    readers: dict[int, tuple[Value, list[int]]] = {}
    for i, node in enumerate(worder):
        for v in node.inputs:
            if v is None or id(v) not in wconstant:
                continue
            at = readers.setdefault(id(v), (v, []))[1]
            if not at or at[-1] != i:
                at.append(i)
            if id(v) not in seen:
                seen.add(id(v))
                wbytes[i] += value_bytes(v)
                tbytes[i] += trained_bytes(v)
                if v.const is not None and hasattr(v.const, "shape") and len(v.const.shape) > 0:
                    pcount[i] += int(np.prod(v.const.shape))
    shared = [(float(value_bytes(v)), np.array(at, dtype=np.int64)) for v, at in readers.values()
              if len(at) > 1 and value_bytes(v) > 0]
    shared_trained = [(trained_bytes(v), np.array(at, dtype=np.int64)) for v, at in readers.values()
                      if len(at) > 1 and trained_bytes(v) > 0]
    act = np.array([sum(value_bytes(o) for o in node.outputs) for node in worder], dtype=float)
    cross = crossing_values(work, worder)
    cut = np.array(cross.bytes(), dtype=float)
    inputs = sum(value_bytes(v) for v in work.inputs if id(v) not in wconstant)
    cut[0] = inputs
    transfer = []
    for s in range(stages):
        t = np.array([max(float(cost.transfer_time(int(b), s, s + 1)), float(cost.transfer_time(int(b), s + 1, s)))
                      if 0 < j < n else 0.0 for j, b in enumerate(cut)])
        transfer.append(t)
    units = getattr(cost, "units", "cycles")
    return NodeCosts(order, fwd, bwd, wbytes, tbytes, pcount, act, cut, int(inputs), transfer, info, microbatches,
                     units, shared, shared_trained)
