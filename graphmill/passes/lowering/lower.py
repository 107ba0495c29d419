"""The ``lower-graphmill`` pass: graphmill-domain ops -> standard ONNX, through the registered lowerings.

Every node of a lowered domain (default: ``graphmill``) whose op has a lowering is replaced, in every
(sub)graph, by the nodes its lowering function builds; the replacements keep the original outputs'
types, and a replaced graph output keeps its name, so a lowered model has the same interface. The new
nodes carry the original node's ``meta`` plus ``lowered_from`` (``"graphmill::MoE"``), ``lowered_node``
(its name), what the lowering adds (``LoweringBuilder.meta``) and, on the node producing the value that
replaces output ``i``, ``lowered_outputs`` (``{"<its output index>": i}``), which travel in saved files: the simulator and reports can still tell
which standard nodes make up one layer.

Ops without a lowering are left as they are, with a note (``strict=True``: an error), because some
graphmill-domain ops (a training graph's ``Backward``) are never meant for an ONNX consumer. A graph
importing a default-domain opset below a lowering's ``min_opset`` is refused, not upgraded: changing
the opset would change the meaning of the graph's other nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graphmill.ir import Graph, Node
from graphmill.util.errors import IRError, UserInputError

from ..base import GraphNote, Option, Pass, PassContext, PassResult, register_pass
from .registry import LoweringBuilder, lowering_for

LOWERED_DOMAINS = ("graphmill",)


@dataclass
class LoweringReport:
    lowered: dict[str, int] = field(default_factory=dict)  # op type -> nodes lowered
    left: dict[str, int] = field(default_factory=dict)  # op type -> nodes without a lowering

    @property
    def changed(self) -> bool:
        return bool(self.lowered)


def has_ops_to_lower(graph: Graph, domains: tuple[str, ...] = LOWERED_DOMAINS) -> bool:
    """Whether ``graph`` (or a subgraph) holds a node of ``domains`` that has a registered lowering."""
    return any(n.domain in domains and lowering_for(n.domain, n.op_type) is not None for n in graph.all_nodes())


def _default_opset(graph: Graph) -> int:
    ops = graph.root.opset_imports
    return int(ops.get("", ops.get("ai.onnx", 1)))


def lower_node(graph: Graph, node: Node) -> bool:
    """Replace one node by its lowering in ``graph``; False when its op has none."""
    low = lowering_for(node.domain, node.op_type)
    if low is None:
        return False
    opset = _default_opset(graph)
    if opset < low.min_opset:
        raise UserInputError(f"cannot lower {node.describe()} to standard ONNX: its lowering needs opset "
                             f">= {low.min_opset}, the graph imports {opset}")
    b = LoweringBuilder(graph, node, opset)
    try:
        outs = list(low.fn(node, b))
    except BaseException:  # a Ctrl-C or a search's timeout too: the graph is not left half rewritten
        b.rollback()
        raise
    olds = node.outputs
    if len(outs) < len(olds):
        b.rollback()
        raise IRError(f"the lowering of {node.op_type} returned {len(outs)} value(s) for {len(olds)} output(s)")
    graph_outputs = {id(v) for v in graph.outputs}
    renames = []
    for i, (old, new) in enumerate(zip(olds, outs)):
        if old is None or new is None:
            continue
        if new.producer is not None and any(n is new.producer for n in b.nodes):
            # which output of the original op this value is: {producer output index: op output index}
            new.producer.meta.setdefault("lowered_outputs", {})[str(new.index)] = i
        if new.type is None:
            new.type = old.type
        if id(old) in graph_outputs:
            renames.append((old.name, new))
    graph.replace_node(node, b.nodes, outs[:len(olds)])
    for name, new in renames:  # the model's interface keeps its names
        graph.rename(new, name)
    return True


def lower_graph(graph: Graph, *, domains: tuple[str, ...] = LOWERED_DOMAINS, strict: bool = False) -> LoweringReport:
    """Lower every node of ``domains`` with a registered lowering, in place (see the module doc)."""
    report = LoweringReport()
    for g in list(graph.all_graphs()):
        for node in list(g.nodes):
            if node.domain not in domains:
                continue
            key = node.op_type
            if lower_node(g, node):
                report.lowered[key] = report.lowered.get(key, 0) + 1
            else:
                if strict:
                    raise UserInputError(f"{node.describe()} has no lowering to standard ONNX")
                report.left[key] = report.left.get(key, 0) + 1
    root = graph.root
    for d in domains:
        if d in root.opset_imports and not any(n.domain == d for n in root.all_nodes()):
            root.opset_imports = {k: v for k, v in root.opset_imports.items() if k != d}
    if report.lowered:
        from graphmill.ir.ops import infer_types

        infer_types(graph)  # types for the new intermediate values (best effort: never strict here)
    return report


def unlowered_node(graph: Graph) -> Node | None:
    """The first graphmill-domain node of ``graph`` (lowered already) that has no lowering, or None: a file or
    type check of such a graph is no standard ONNX's (``api.save`` refuses it, the passes' type check names it)."""
    return next((n for n in graph.all_nodes() if n.domain in LOWERED_DOMAINS), None)


def lowered_copy(graph: Graph) -> Graph:
    """``graph`` itself when nothing needs lowering, else a lowered copy (the caller's graph is kept)."""
    if not has_ops_to_lower(graph):
        return graph
    g = graph.copy()
    lower_graph(g)
    return g


@register_pass
class LowerGraphmill(Pass):
    """graphmill-domain ops -> standard ONNX nodes, through the registered lowerings."""

    name = "lower-graphmill"
    options = (
        Option("strict", bool, False, "fail on a graphmill-domain op that has no lowering (default: leave it, "
               "with a note)"),
    )
    preserves = frozenset()

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        report = lower_graph(graph, strict=self.strict)
        notes = []
        if report.left:
            def note(final: Graph) -> str | None:
                still = sorted({n.op_type for n in final.all_nodes() if n.domain in LOWERED_DOMAINS
                                and lowering_for(n.domain, n.op_type) is None})
                return (f"graphmill-domain op(s) without a lowering left in the graph: {', '.join(still)}"
                        if still else None)
            notes.append(GraphNote(note))
        stats = {f"lowered_{k}": v for k, v in sorted(report.lowered.items())}
        return PassResult(report.changed, stats, notes)


__all__ = ["LOWERED_DOMAINS", "LowerGraphmill", "LoweringReport", "has_ops_to_lower", "lower_graph", "lower_node",
           "lowered_copy"]
