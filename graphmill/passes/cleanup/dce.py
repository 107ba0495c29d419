"""Dead code elimination.

Removes, in every (sub)graph:
- nodes none of whose outputs is read or is a graph output, when their domain is one whose ops
  are free of side effects (the ONNX domains, com.microsoft, graphmill); ops of other custom
  domains are kept unless ``remove_custom`` is set;
- initializers nobody reads that are not graph inputs; and, in the top-level graph, those that are,
  where such initializers are weights rather than overridable defaults (``input_initializers``; by default below IR version 4,
  whose models had to list every initializer as an input: ONNX Runtime warns about each unused one);
- model-local functions no node calls (``prune_functions``).
"""

from __future__ import annotations

from graphmill.ir import Graph

from ..base import Option, Pass, PassContext, PassResult, register_pass
from .common import INPUT_INITIALIZERS, INPUT_INITIALIZERS_DOC, input_initializers_are_constant

PURE_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "graphmill", "ai.onnx.preview.training"})


@register_pass
class DeadCodeElimination(Pass):
    """Remove nodes, initializers and functions whose results nobody uses."""

    name = "dce"
    options = (
        Option("remove_custom", bool, False, "also remove unused ops of custom domains (they may have side effects)"),
        Option("prune_functions", bool, True, "drop model-local functions that no node calls"),
        Option("input_initializers", str, "auto", INPUT_INITIALIZERS_DOC + "; unused constant ones are removed "
               "with their input", choices=INPUT_INITIALIZERS),
    )
    # the types of what stays; not the use counts: a removed node's inputs lose its uses (the preserved-analyses
    # check of --verify-each found it)
    preserves = frozenset({"shapes"})

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        removed_nodes = removed_inits = 0
        # innermost first: a branch's dead node is gone before its parent graph asks who reads an outer value (in
        # the other order a Conv read only by a dead Exp inside a live If outlived one sweep; an outside check)
        for g in reversed(list(graph.all_graphs())):
            outputs = {id(v) for v in g.outputs}
            dead = []
            dead_ids: set[int] = set()
            for node in reversed(g.nodes):
                if node.domain not in PURE_DOMAINS and not self.remove_custom and not _is_local_function(graph, node):
                    continue
                live = False
                for v in node.outputs:
                    if v is None:
                        continue
                    if id(v) in outputs or any(id(u) not in dead_ids for u in v.users):
                        live = True
                        break
                if not live:
                    dead.append(node)
                    dead_ids.add(id(node))
                    # its subgraphs' reads of outer values die with it: an If's producers go in this same sweep
                    dead_ids.update(id(m) for sub in node.owned_subgraphs() for m in sub.all_nodes())
            if dead:
                g.remove_nodes(dead)
                removed_nodes += len(dead)
            inputs = {id(v) for v in g.inputs}
            unused = [v for v in g.initializers.values()
                      if v.num_uses == 0 and id(v) not in inputs and id(v) not in outputs]
            g.remove_initializers(unused)
            removed_inits += len(unused)
            if g is graph and input_initializers_are_constant(graph, self.input_initializers):
                unused_inputs = [v for v in g.inputs if v.is_initializer and v.num_uses == 0
                                 and id(v) not in outputs]
                g.remove_inputs(unused_inputs)
                removed_inits += len(unused_inputs)
        removed_funcs = 0
        if self.prune_functions and graph.functions:
            used = _called_functions(graph)
            for key in list(graph.functions):
                if key not in used:
                    del graph.functions[key]
                    removed_funcs += 1
        stats = {"nodes_removed": removed_nodes, "initializers_removed": removed_inits}
        if removed_funcs:
            stats["functions_removed"] = removed_funcs
        return PassResult(bool(removed_nodes or removed_inits or removed_funcs), stats)


def _is_local_function(graph: Graph, node) -> bool:
    return (node.domain, node.op_type, node.overload) in graph.functions


def _called_functions(graph: Graph) -> set[tuple[str, str, str]]:
    """Functions reachable from the main graph, through calls inside other functions too."""
    used: set[tuple[str, str, str]] = set()
    stack = list(graph.all_nodes())
    while stack:
        n = stack.pop()
        key = (n.domain, n.op_type, n.overload)
        if key in graph.functions and key not in used:
            used.add(key)
            stack.extend(graph.functions[key].graph.all_nodes())
    return used
