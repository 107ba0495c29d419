"""Shape inference as a pass.

Fills in value types in place with graphmill's op registry
(``graphmill.ir.ops.infer_types``, about 145 ops), then asks the context's
``ShapeInferencer`` (onnx's inference, provided by the frontend; passes do not
import it) about what the registry leaves open. The inferencer round-trips the
graph through ONNX protobuf, so it is asked only when some value is still open
after the registry (never on the zoo's CNNs and transformers, whose every value
the registry types). It is not asked merely for values produced by ops without
a registry entry: on dynamic-axes exports onnx's symbolic data propagation
recovers dimensions the registry cannot (a ``Reshape`` whose shape is sliced
out of ``Shape`` with computed bounds), and those dimensions decide fusions.

Inference only adds information: a symbolic dimension is never replaced by a
number and a declared type is never overwritten; conflicts and inference errors
become notes, not failures. The graph's structure (nodes, edges, initializers)
never changes, so every structural analysis survives it.
"""

from __future__ import annotations

from typing import Iterator

from graphmill.ir import Graph, TensorType, Type, Value
from graphmill.ir.ops import infer_types

from ..base import Option, Pass, PassContext, PassResult, register_pass

STRUCTURAL_ANALYSES = frozenset({"use-counts", "constants", "liveness", "topological-order", "parameters"})


@register_pass
class ShapeInference(Pass):
    """Infer element types and shapes of every value (registry first, then onnx for what it leaves open)."""

    name = "shape-inference"
    options = (Option("use_onnx", bool, True, "ask the context's shape inferencer (onnx's inference) about "
                                             "what the registry leaves open"),)
    preserves = STRUCTURAL_ANALYSES

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        before = signature(graph)
        report = infer_types(graph)
        stats: dict[str, float] = {}
        inferencer = ctx.shape_inferencer if self.use_onnx else None
        if inferencer is not None and next(open_values(graph), None) is not None:
            inferencer.refine(graph, report)
            stats["fallback"] = 1
        changed = signature(graph) != before
        notes = [f"conflict: {c}" for c in report.conflicts[:5]] + [f"error: {e}" for e in report.errors[:5]]
        stats["inferred"] = report.inferred
        if report.unknown_ops:
            stats["unknown_ops"] = sum(report.unknown_ops.values())
        return PassResult(changed, stats, notes)


def is_open(t: Type | None) -> bool:
    """Whether a type still lacks something inference could add (element type, rank, a dim)."""
    if t is None:
        return True
    if isinstance(t, TensorType):
        return not t.dtype or t.shape is None or any(d is None for d in t.shape)
    return False


def open_values(graph: Graph) -> Iterator[Value]:
    """Node outputs of the whole graph tree whose type is still open."""
    return (v for g in graph.all_graphs() for n in g.nodes for v in n.outputs if v is not None and is_open(v.type))


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
