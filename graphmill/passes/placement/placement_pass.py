"""The ``place`` pass: ``node.meta["device"]`` on every node, the report in ``graph.meta["placement"]``."""

from __future__ import annotations

from graphmill.ir import Graph
from graphmill.passes.base import Option, Pass, PassContext, PassResult, register_pass

from .place import METHODS, place_graph
from .problem import cost_model_of, infer_open_shapes, replay_record


@register_pass
class Place(Pass):
    """Place every op on a device (single, round-robin, expert, heft, heft-colocated, metis, rl, hierarchical) so
    that the simulated step finishes soonest; writes node.meta["device"] (needs a device cost model on the context)."""

    name = "place"
    options = (
        Option("method", str, "heft", "placement method", choices=METHODS),
        Option("budget", int, 0, "placements the learned placers may simulate (0: their default)", min=0),
    )
    preserves = "all"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        cost = cost_model_of(ctx, "the place pass")
        infer_open_shapes(graph, ctx, "the place pass")
        r = place_graph(graph, cost, method=self.opts["method"], budget=self.opts["budget"], seed=ctx.seed)
        graph.meta["placement"].update(replay_record(cost))  # a saved model replays however the pass was run
        return PassResult(changed=True, stats={"makespan": r.report["makespan"], "devices": len(r.report["devices"])})
