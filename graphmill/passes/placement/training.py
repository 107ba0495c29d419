"""The training-step version of a graph for placement: the forward ops followed by one ``graphmill::Backward``
op per forward compute op, in reverse order, wired as back-propagation is.

Building real gradient graphs for every op type is a compiler of its own; placement needs the *structure* and
the *costs* of a training step, not its numbers. So each forward op ``f`` gets one backward op ``f_grad``
(``meta["forward"] = f``, which also colocates them, as the papers colocate an op with its gradient) that reads

* the gradients of ``f``'s outputs: one tensor per output, produced by the backward ops of that output's
  readers (several readers: their gradients are all read, the sum being part of the op), and
* ``f``'s inputs (the saved activations and the weights),

and produces the gradient of each of ``f``'s non-constant float inputs (same shape and type) and of each float
weight (read by nobody: the update is in place). A graph output's gradient is a new graph input (the loss
gradient). Its time is the cost model's rule (``PlacementCostModel``: twice the forward time for a MAC op, once
for the others). The result is not meant to be run.
"""

from __future__ import annotations

from graphmill.ir import Graph, Node, TensorType, Value
from graphmill.ir.summary import constant_values, is_constant_node


def _is_float(v: Value) -> bool:
    t = v.type
    try:
        return isinstance(t, TensorType) and t.dtype is not None and t.dtype.numpy().kind == "f"
    except (AttributeError, TypeError, ValueError):
        return False


def training_graph(graph: Graph) -> Graph:
    """A copy of ``graph`` with the backward ops of a training step appended (module docstring)."""
    g = graph.copy()
    g.name = f"{graph.name}_train"
    if not g.is_sorted():
        g.sort()
    seen: set[str] = set()
    for i, n in enumerate(g.nodes):  # unique names: backward ops refer to forward ops by name
        if not n.name or n.name in seen:
            n.name = f"{n.name or n.op_type}_{i}"
        seen.add(n.name)
    constant = constant_values(g)
    forward = [n for n in g.nodes if not is_constant_node(n, constant)]
    grads: dict[int, list[Value]] = {}  # forward value id -> gradient tensors flowing into it
    for v in g.outputs:
        if id(v) not in constant and _is_float(v):
            gv = Value(g.unique_name(f"{v.name}_grad_in"), v.type)
            g.add_input(gv)
            grads.setdefault(id(v), []).append(gv)
    for f in reversed(forward):
        ins: list[Value] = []
        for o in f.outputs:
            if o is not None:
                ins.extend(grads.get(id(o), []))
        if not ins:
            continue  # nothing flows back through this op (it feeds no float output)
        saved = [v for v in f.inputs if v is not None]
        outs: list[Value] = []
        targets: list[Value] = []
        for v in saved:
            if not _is_float(v):
                continue
            gv = Value(g.unique_name(f"{v.name}_grad"), v.type)
            outs.append(gv)
            targets.append(v)
        if not outs:
            outs.append(Value(g.unique_name(f"{f.name}_grad"), ins[0].type))
            targets.append(None)  # type: ignore[arg-type]
        b = Node("Backward", ins + saved, {}, outputs=outs, domain="graphmill", name=f"{f.name}_grad")
        b.meta = {"forward": f.name, **{k: f.meta[k] for k in ("model_stage", "block", "layer")
                                           if k in f.meta}}
        g.append(b)
        for v, gv in zip(targets, outs):
            if v is not None and id(v) not in constant and v.producer is not None:
                grads.setdefault(id(v), []).append(gv)
            # a weight's (or a graph input's) gradient is read by nobody: the update happens in place
    if "graphmill" not in g.opset_imports:
        g.opset_imports = {**g.opset_imports, "graphmill": 1}
    return g


def training_step(graph: Graph, decisions: dict, keys: tuple[str, ...]) -> Graph:
    """The training step (``training_graph``) of the forward ``graph`` a placement or a learned pass decided for,
    each op's node meta ``keys`` set from ``decisions`` ({op name: [one value per key]}). Its backward ops are
    not in the forward model that is saved, so the decisions of every op travel in the graph's meta as this
    table (``graph.meta["placement"]`` or ``["learned"]``, ``"decisions"``) and a replay rebuilds the step
    here: without it, it would re-simulate the forward graph alone."""
    step = training_graph(graph)
    for n in step.nodes:
        values = decisions.get(n.name)
        if isinstance(values, (list, tuple)) and len(values) == len(keys):
            n.meta.update(zip(keys, values))
    return step
