"""Built-in analyses, computed on demand through ``PassContext.analysis(name, graph)`` and cached
until a pass that changes the graph does not list them in its ``preserves``.

- ``shapes``: runs type/shape inference (registry, then onnx's) and returns its ``InferenceReport``;
  value types in the graph are filled in as a side effect.
- ``costs``: ``{id(node): Cost}`` for every node with a cost model (top-level graph).
- ``use-counts``: ``{id(value): number of uses}`` for every value of the top-level graph.
"""

from __future__ import annotations

from graphmill.ir import Graph
from graphmill.ir.summary import node_cost

from .base import Analysis, PassContext, register_analysis


@register_analysis
class Shapes(Analysis):
    name = "shapes"
    verifiable = False  # computing it fills in the graph's value types

    def compute(self, graph: Graph, ctx: PassContext):
        from graphmill.ir.ops import infer_types

        return infer_types(graph)


@register_analysis
class Costs(Analysis):
    name = "costs"
    verifiable = False  # computing it infers shapes first, which fills in the graph's value types

    def compute(self, graph: Graph, ctx: PassContext):
        ctx.analysis("shapes", graph)
        out = {}
        for n in graph.nodes:
            c = node_cost(n)
            if c is not None:
                out[id(n)] = c
        return out


@register_analysis
class UseCounts(Analysis):
    name = "use-counts"

    def compute(self, graph: Graph, ctx: PassContext):
        return {id(v): v.num_uses for v in graph.values()}
