"""``verify(graph)``: the structural invariants every pass must preserve.

Checked: every value has a name that is unique in the graph tree and at most
one definition; every node input and graph output is defined in scope before
it is used (dangling and undefined uses, order, cycles); use-def chains agree
with node inputs; initializer data agrees with the declared type; nodes and
subgraphs point back at their owners. All findings are collected, so one run
reports everything wrong.
"""

from __future__ import annotations

from graphmill.util.errors import VerificationError
from .graph import Graph, Node, Value, require_graph, topological_order
from graphmill.util.errors import IRError
from .tensor import Tensor
from .types import TensorType


def verify(graph: Graph) -> None:
    """Raise ``VerificationError`` listing every problem; return ``None`` when the graph is sound."""
    require_graph(graph, "verify")
    problems = find_problems(graph)
    if problems:
        raise VerificationError(problems, graph.name)


def find_problems(graph: Graph) -> list[str]:
    require_graph(graph, "ir.find_problems")
    problems: list[str] = []
    names: dict[str, str] = {}
    _check_graph(graph, set(), problems, names, {})
    for f in graph.functions.values():
        _check_graph(f.graph, set(), problems, {}, {}, where=f"function {f.domain}::{f.name}")
    return problems


def _where(node: Node, idx: int) -> str:
    return f"{node.describe()} (#{idx} in graph {node.graph.name!r})" if node.graph else node.describe()


def _claim_name(v: Value, what: str, names: dict[str, str], problems: list[str]) -> None:
    if not v.name:
        problems.append(f"{what} has an empty name")
        return
    prev = names.get(v.name)
    if prev is not None:
        problems.append(f"value name {v.name!r} is defined twice: {prev} and {what}")
    else:
        names[v.name] = what


def _check_graph(graph: Graph, scope: set[int], problems: list[str], names: dict[str, str],
                 use_sets: dict[int, set[tuple[int, int]]], where: str = "") -> None:
    """Check ``graph`` with ``scope`` the ids of the values its enclosing graphs define so far; what this graph
    adds to it is taken out again on return. ``use_sets`` caches each value's uses for the whole tree: an outer
    value read in 8,000 subgraphs had its use set rebuilt in each, and the scope was copied into each (quadratic:
    an outside check)."""
    label = where or f"graph {graph.name!r}"
    added: list[int] = []

    def define(v: Value) -> None:
        if id(v) not in scope:
            scope.add(id(v))
            added.append(id(v))

    for v in graph.inputs:
        if v.producer is not None:
            problems.append(f"{label}: input %{v.name} has a producer {v.producer.describe()}")
        if id(v) not in scope:
            _claim_name(v, f"input of {label}", names, problems)
        define(v)
    for name, v in graph.initializers.items():
        if v.name != name:
            problems.append(f"{label}: initializer registered as {name!r} is named {v.name!r}")
        if v.const is None:
            problems.append(f"{label}: initializer %{v.name} has no data")
        elif isinstance(v.const, Tensor) and isinstance(v.type, TensorType):
            if v.type.dtype and v.type.dtype != v.const.dtype:
                problems.append(f"{label}: initializer %{v.name} is declared {v.type.dtype.short_name} "
                                f"but holds {v.const.dtype.short_name}")
            if v.type.shape is not None and len(v.type.shape) == len(v.const.shape):
                for d, c in zip(v.type.shape, v.const.shape):
                    if isinstance(d, int) and d != c:
                        problems.append(f"{label}: initializer %{v.name} is declared {v.type} "
                                        f"but holds shape {list(v.const.shape)}")
                        break
        if id(v) not in scope:
            _claim_name(v, f"initializer of {label}", names, problems)
            define(v)

    # Definitions by position, to tell "used before defined" from "never defined".
    defined_at: dict[int, int] = {}
    for i, n in enumerate(graph.nodes):
        for v in n.outputs:
            if v is not None:
                defined_at[id(v)] = i

    def listed(v, n, k) -> bool:
        got = use_sets.get(id(v))
        if got is None:
            got = use_sets[id(v)] = {(id(u), j) for u, j in v.uses()}
        return (id(n), k) in got

    nodes = graph.nodes
    for i, n in enumerate(nodes):
        if n.graph is not graph:
            problems.append(f"{label}: {n.describe()} at #{i} does not point back at its graph")
        for k, v in enumerate(n.inputs):
            if v is None:
                continue
            if not listed(v, n, k):
                problems.append(f"{_where(n, i)}: input {k} (%{v.name}) is missing from its use list")
            if id(v) in scope:
                continue
            if id(v) in defined_at:
                problems.append(f"{_where(n, i)}: input %{v.name} is used before it is defined "
                                f"(by {nodes[defined_at[id(v)]].describe()} at #{defined_at[id(v)]})")
            else:
                shown = f"%{v.name}" if v.name else f"{k} (unnamed)"
                problems.append(f"{_where(n, i)}: input {shown} is not defined in this graph or an enclosing one"
                                + (f" (this graph's %{v.name} is another value: this one comes from another graph "
                                   "or was removed)" if v.name and v.name in names else ""))
        for k, v in enumerate(n.outputs):
            if v is None:
                continue
            if v.producer is not n or v.index != k:
                problems.append(f"{_where(n, i)}: output {k} (%{v.name}) does not name this node as its producer")
            _claim_name(v, f"output {k} of {n.describe()}", names, problems)
        for sub in n.subgraphs():
            if sub.parent is not n:
                problems.append(f"{_where(n, i)}: subgraph {sub.name!r} does not point back at its node")
            _check_graph(sub, scope, problems, names, use_sets, where=f"subgraph {sub.name!r} of {n.describe()}")
        for v in n.outputs:
            if v is not None:
                define(v)
        # use lists must not claim uses that are not there
    for n in nodes:
        for v in n.outputs:
            if v is None:
                continue
            for user, k in v.uses():
                ins = user.inputs
                if k >= len(ins) or ins[k] is not v:
                    problems.append(f"{label}: %{v.name} lists a use by {user.describe()} input {k} that is not there")
    for v in graph.outputs:
        if v is None or id(v) not in scope:
            name = getattr(v, "name", "")
            problems.append(f"{label}: output {f'%{name}' if name else '(unnamed)'} is not defined")
    if any("used before it is defined" in p for p in problems):
        try:
            topological_order(graph)
        except IRError as e:
            problems.append(str(e))
    scope.difference_update(added)  # this graph's values are not in scope of its siblings or its parent
