"""How often a Loop runs its body, and which branch an If runs, as far as the graph says: inspect's costs, the
simulator's lowering and the ONNX Runtime backend's guard against endless runs read it here, so that they agree.

A Loop has a trip count M, a condition, or both. M alone is the count; a condition its body passes through
unchanged (or a constant true) never ends the loop, so M is the count then too; a condition the body computes
can end it sooner, so M is an upper bound. TorchScript writes every ``while`` loop (and a ``for`` with a
``break``) as ``Loop(M = INT64_MAX, cond)``: M there is no count at all, and taken as one the simulator
multiplied the body's cycles by 9.2e18 and the backend refused to run a loop that ends after a few iterations
(an outside check). So a bound over ``GRAPHMILL_MAX_LOOP_ITERATIONS`` beside a condition that can end the loop
is read as unknown.
"""

from __future__ import annotations

from graphmill.util.limits import max_loop_iterations

from .dtypes import DataType
from .graph import Graph, Node, Value, depends_on
from .ops.branch import reads_loop_state, taken_branch
from .ops.infer import propagated_value
from .rewrite import constant_through_views
from .types import TensorType


def passes_true_through(body: Graph) -> bool:
    """Whether a Loop body's condition output is its condition input (through Identity) or a constant true."""
    if len(body.outputs) < 1 or len(body.inputs) < 2:
        return False
    out = body.outputs[0]
    while out is not body.inputs[1] and out.const is None and out.producer is not None \
            and out.producer.op_type == "Identity":
        out = out.producer.input_at(0)
    if out is body.inputs[1]:
        return True
    value = constant_through_views(out)
    return value is not None and value.size == 1 and bool(value.reshape(-1)[0])


#: ops that draw anew on every run: a condition they compute changes between iterations
_RANDOM = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                     "Bernoulli"})


def _constant_condition(body: Graph) -> bool | None:
    """The body's next condition when it is a constant (through views), else None."""
    value = constant_through_views(body.outputs[0]) if body.outputs else None
    return bool(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def _starts_false(loop: Node) -> bool:
    """Whether ``loop``'s condition input is a constant false: the body never runs."""
    cond = loop.input_at(1) if len(loop.inputs) > 1 else None
    start = constant_through_views(cond) if cond is not None else None
    return start is not None and start.size == 1 and not bool(start.reshape(-1)[0])


def condition_may_end(loop: Node) -> bool:
    """Whether ``loop``'s condition can stop it before its trip count: it has one, and it starts as a constant
    false, or its body's next condition is a constant false (one iteration), or the body computes it from what
    changes between iterations (the iteration number, the carried values, the condition itself, a random draw). A
    condition computed from constants and outer values only is the same on every iteration: true, it never ends
    the loop (``Less(0, 1)`` hung optimize's comparison, Ctrl-C could not stop it: an outside check); such a
    computed one is taken as true, as graphmill does not evaluate it here."""
    if len(loop.inputs) < 2 or loop.input_at(1) is None:
        return False
    if _starts_false(loop):
        return True
    body = loop.attr("body")
    if not isinstance(body, Graph) or not body.outputs or passes_true_through(body):
        return False
    return _constant_condition(body) is False or _varies(body, body.outputs[0])


def _varies(body: Graph, value: Value) -> bool:
    """Whether ``value`` of ``body`` depends on one of its inputs (what a Loop feeds anew each iteration) or on a
    random draw, through its nodes and what their subgraphs read."""
    inputs = {id(v) for v in body.inputs}
    return depends_on(value, lambda v: id(v) in inputs or v.producer is not None and v.producer.op_type in _RANDOM)


def trip_count(loop: Node) -> tuple[int | None, str]:
    """``(M, "")``: the trip count, a constant, read through Identity/Cast/Reshape; ``(None, why)`` when there is
    none or it is no whole number an int64 holds."""
    trip = constant_through_views(loop.input_at(0) if loop.inputs else None)
    if trip is None or trip.size != 1:
        return None, "its trip count M is not a constant input"
    value = trip.reshape(-1)[0]  # read beneath a Cast: a float may be inf, nan or past int64
    try:
        if not -2 ** 63 <= value < 2 ** 63:
            raise ValueError
        return max(int(value), 0), ""
    except (ValueError, OverflowError):
        return None, f"its trip count M is {value!r}, not a whole number an int64 holds"


def loop_runs(loop: Node) -> tuple[int | None, str]:
    """``(n, "")``: the most times ``loop`` runs its body (its trip count; an upper bound where its condition can
    end it sooner); ``(None, why)`` where the graph does not say."""
    count, why = trip_count(loop)
    if count is None:
        return None, why
    if _starts_false(loop):
        return 0, ""
    body = loop.attr("body")
    has_condition = len(loop.inputs) > 1 and loop.input_at(1) is not None
    if has_condition and isinstance(body, Graph) and _constant_condition(body) is False:
        return min(count, 1), ""  # its body's next condition is false: it runs once at most
    if count > max_loop_iterations() and condition_may_end(loop):
        return None, (f"its trip count M is {count:,}, over GRAPHMILL_MAX_LOOP_ITERATIONS ({max_loop_iterations():,}) "
                      "beside a condition its body computes: an exporter's 'no bound' (a while loop), not a count")
    return count, ""


def type_body_inputs(graph: Graph) -> None:
    """Give every Loop's and Scan's body inputs the types the node feeds them, in ``graph`` and its subgraphs, as
    onnx's inference assumes them: a Loop's iteration number (int64 scalar), condition (bool scalar) and carried
    values (their initial types); a Scan's (opset 9 on) state values and one slice of each scanned input. What the
    file declares stays; only its unknown parts are filled. For a working copy only (the simulator's): a carried
    value may change shape between iterations, and a saved model declaring its first shape would not run. Left
    untyped, nothing in the body had a shape, and simulate refused a Loop over a MatMul (an outside check)."""
    from .ops import InferenceReport, merge_types  # ops imports this module's readers lazily: no cycle

    for g in list(graph.all_graphs()):
        for node in g.nodes:
            body = node.attr("body") if node.domain in ("", "ai.onnx") else None
            if node.op_type not in ("Loop", "Scan") or not isinstance(body, Graph):
                continue
            if node.op_type == "Loop":
                fed = [TensorType(DataType.INT64, ()), TensorType(DataType.BOOL, ())] + [
                    v.type if v is not None else None for v in node.inputs[2:]]
            else:
                n_scan = int(node.attr("num_scan_inputs", 0) or 0)
                if len(node.inputs) != len(body.inputs):  # opset 8's Scan: a batch axis and sequence_lens
                    continue
                fed = [v.type if v is not None else None for v in node.inputs[:len(node.inputs) - n_scan]]
                axes = list(node.attr("scan_input_axes") or [0] * n_scan)
                for v, axis in zip(node.inputs[len(node.inputs) - n_scan:], axes):
                    t = v.type if v is not None else None
                    shape = t.shape if isinstance(t, TensorType) else None
                    cut = int(axis) % len(shape) if shape else 0
                    fed.append(TensorType(t.dtype, shape[:cut] + shape[cut + 1:]) if shape else None)
            for v, t in zip(body.inputs, fed):
                if isinstance(t, TensorType) and t.dtype:
                    v.type = merge_types(v.type, t, v.name, InferenceReport())


def if_branch(node: Node) -> str | None:
    """The branch attribute an If runs ("then_branch" or "else_branch") when its condition is known from the graph:
    a constant, or computed from constants and static shapes (a static export's rank test before ``x.repeat``);
    else None. The graph's shapes must have been inferred. A condition computed from what a Loop or Scan feeds its
    body anew is not known (``reads_loop_state``), whatever the first iteration's shapes say."""
    cond = node.input_at(0)
    if cond is None:
        return None
    value = constant_through_views(cond)
    if value is None and not reads_loop_state(cond):
        value = propagated_value(cond)
    return taken_branch(value)

