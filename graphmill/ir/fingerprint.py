"""A graph's state as one comparable value, to catch a pass that edits the graph but reports no change.

The pass manager trusts ``PassResult.changed``: it drops cached analyses and runs the checks
(``--verify-each``, ``--check-numerics``) only after a pass that says it changed something. A pass that
edits the graph and says it did not (a user's pass with a wrong ``return PassResult(False)``) would then
be blamed on the next pass that does report a change, and that pass's reproducer, taken after the edit,
would not reproduce. LLVM catches the same lie with a structural hash taken around every pass in its
expensive-checks builds; this is that check.

The key covers what a pass may change: nodes in order with their op, domain, attributes, inputs and
outputs (by identity), names, meta, doc strings and metadata; graph inputs, outputs and initializers; opsets,
functions and model fields; subgraphs. Meta counts: a pass that only writes ``node.meta`` (a device, a fusion
group) changed the graph and must say so. Value types are left out: every pass may refine them through the
shapes analysis, which fills in what inference finds, and a wrong type change of an output is
``--verify-each``'s own check. Not seen: an in-place write into a constant's numpy array, which ``Tensor``'s
contract forbids. Constant data counts by the identity of its ``Tensor``:
tensors are immutable (``Tensor``'s contract), so an edit of a weight is a new ``Tensor``, and the key
costs no pass over the weights' bytes.
"""

from __future__ import annotations

from typing import Any

from .attrs import Attr
from .graph import Graph, Node, Value


def graph_state(graph: Graph) -> tuple:
    """A value equal for two states of ``graph`` exactly when nothing a pass may change differs."""
    return (
        graph.name,
        tuple(_value(v) for v in graph.inputs),
        tuple(_value(v) for v in graph.outputs),
        tuple((name, _value(v)) for name, v in graph.initializers.items()),
        tuple(_node(n) for n in graph.nodes),
        tuple(sorted(graph.opset_imports.items())),
        tuple((key, id(f), graph_state(f.graph)) for key, f in graph.functions.items()),
        repr(graph.meta),
        tuple(sorted(graph.metadata_props.items())),
        graph.doc_string,
        repr(graph.model),
    )


def _value(v: Value | None) -> Any:
    if v is None:
        return None
    return (id(v), v.name, id(v.const) if v.const is not None else None, repr(v.meta), v.doc_string,
            tuple(sorted(v.metadata_props.items())))


def _node(n: Node) -> tuple:
    return (
        id(n), n.op_type, n.domain, n.overload, n.name,
        tuple(_value(v) for v in n.inputs),
        tuple(_value(v) for v in n.outputs),
        tuple(_attr(a) for a in n.attrs.values()),
        repr(n.meta), n.doc_string, tuple(sorted(n.metadata_props.items())),
    )


def _attr(a: Attr) -> Any:
    return (a.name, int(a.kind), a.ref_attr_name, _attr_value(a.value))


def _attr_value(x: Any) -> Any:
    if isinstance(x, Graph):
        return graph_state(x)
    if isinstance(x, (list, tuple)):
        return tuple(_attr_value(y) for y in x)
    if isinstance(x, (int, float, str, bytes, bool)) or x is None:
        return x
    return id(x)  # a Tensor, SparseTensor or type: immutable, compared by identity
