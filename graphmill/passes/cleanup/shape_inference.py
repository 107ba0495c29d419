"""Shape inference as a pass.

Fills in value types in place with graphmill's op registry, then onnx's own
inference for what the registry leaves open
(``graphmill.frontend.onnx_shape_inference.infer_shapes``). Inference only adds
information: a symbolic dimension is never replaced by a number and a declared
type is never overwritten; conflicts and inference errors become notes, not
failures. The graph's structure (nodes, edges, initializers) never changes, so
every structural analysis survives it.
"""

from __future__ import annotations

from graphmill.ir import Graph, TensorType

from ..base import Option, Pass, PassContext, PassResult, register_pass

STRUCTURAL_ANALYSES = frozenset({"use-counts", "constants", "liveness", "topological-order", "parameters"})


@register_pass
class ShapeInference(Pass):
    """Infer element types and shapes of every value (registry first, then onnx)."""

    name = "shape-inference"
    options = (Option("use_onnx", bool, True, "also run onnx's shape inference for what the registry leaves open"),)
    preserves = STRUCTURAL_ANALYSES

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        from graphmill.frontend.onnx_shape_inference import infer_shapes

        before = _signature(graph)
        report = infer_shapes(graph, use_onnx=self.use_onnx)
        changed = _signature(graph) != before
        notes = [f"conflict: {c}" for c in report.conflicts[:5]] + [f"error: {e}" for e in report.errors[:5]]
        stats = {"inferred": report.inferred}
        if report.unknown_ops:
            stats["unknown_ops"] = sum(report.unknown_ops.values())
        return PassResult(changed, stats, notes)


def _signature(graph: Graph) -> list:
    sig = []
    for g in graph.all_graphs():
        for n in g.nodes:
            for v in n.outputs:
                if v is not None:
                    t = v.type
                    sig.append((t.dtype, t.shape) if isinstance(t, TensorType) else repr(t))
    return sig
