"""Shape inference as a pass.

Fills in value types in place with graphmill's op registry
(``graphmill.ir.ops.infer_types``, about 145 ops), then asks the context's
``ShapeInferencer`` (onnx's inference, provided by the frontend; passes do not
import it) about the outputs of ops the registry has no entry for, and only
when one of those is still open. The inferencer round-trips the whole graph
through ONNX protobuf; the registry propagates shape values (symbolic ones
too: ``Shape -> Slice -> Div -> Cast -> Concat -> Reshape`` on a dynamic-axes
export) as far as onnx's data propagation does, so asking onnx about the
registry's own ops would cost that round trip for nothing. Zoo models and
TorchScript/dynamo exports of CNNs and transformers never ask it.

Inference only adds information: a symbolic dimension a graph input carries is
never replaced by a number (a symbol only outputs carry names a size the graph
computes, and yields to it: ``graphmill.ir.ops.infer``) and a declared type is
never overwritten; conflicts and inference errors become notes, not failures. The graph's structure
(nodes, edges, initializers)
never changes, so every structural analysis survives it.
"""

from __future__ import annotations

from graphmill.ir import Graph, TensorType
from graphmill.ir.ops import infer_types, unregistered_open_values

from ..base import Option, Pass, PassContext, PassResult, register_pass

# what inference leaves true: the uses of every value (the nodes and their inputs stay). Costs follow the shapes.
# Four names here were of analyses that do not exist; a declared name must be a registered analysis now
STRUCTURAL_ANALYSES = frozenset({"use-counts"})


@register_pass
class ShapeInference(Pass):
    """Infer element types and shapes of every value (the registry, then onnx for ops it lacks)."""

    name = "shape-inference"
    options = (Option("use_onnx", bool, True, "ask the context's shape inferencer (onnx's inference) about "
                                             "the open outputs of ops the registry lacks"),)
    preserves = STRUCTURAL_ANALYSES

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        before = signature(graph)
        report = infer_types(graph)
        stats: dict[str, float] = {}
        inferencer = ctx.shape_inferencer if self.use_onnx else None
        if inferencer is not None and next(unregistered_open_values(graph), None) is not None:
            known = report.inferred
            inferencer.refine(graph, report)
            stats["fallback"] = 1
            if report.inferred > known:  # what follows the unknown ops gains from the inferencer's answers
                report.inferred += infer_types(graph).inferred
        changed = signature(graph) != before
        notes = [f"conflict: {c}" for c in report.conflicts[:5]] + [f"error: {e}" for e in report.errors[:5]]
        stats["inferred"] = report.inferred
        if report.unknown_ops:
            stats["unknown_ops"] = sum(report.unknown_ops.values())
        return PassResult(changed, stats, notes)


def signature(graph: Graph) -> list:
    """Every node output's type, in order: equal before and after means inference changed nothing."""
    sig = []
    for g in graph.all_graphs():
        for n in g.nodes:
            for v in n.outputs:
                if v is not None:
                    t = v.type
                    sig.append((t.dtype, t.shape) if isinstance(t, TensorType) else repr(t))
    return sig
