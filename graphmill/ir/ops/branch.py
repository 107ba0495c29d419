"""If: its outputs are those of the branch that runs.

A static export tests sizes before it branches: torch's ``x.repeat(...)`` compares the input's rank with the
number of repeats, ``Greater(Size(Shape(x)) - 2, 0)``, and picks the repeats in an If. Propagation knows that
condition, so the If's outputs are the taken branch's, types and values alike, and the sizes after it stay static
(onnx's inference merges both branches and lost them: simulate, place and partition refused such a model). With
the condition unknown, an output has what both branches agree on (onnx's rule).

Only inference is registered: an If's cost is its branch's (``graphmill.ir.summary``, the simulator), and which
branch that is, is ``graphmill.ir.control_flow.if_branch``.
"""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Value, depends_on
from ..types import TensorType, Type
from .registry import InferenceContext, register


def reads_loop_state(value: Value) -> bool:
    """Whether ``value`` is computed from an input of a Loop's or Scan's body, in whichever enclosing body: what
    changes between iterations, shapes included (a carried tensor that grows by a row). Typed with the first
    iteration's shapes (``control_flow.type_body_inputs``), a rank test on it was taken as known, and the simulator
    costed every iteration's If by the first one's branch (a review: a MatMul taken from the third iteration on was
    not counted): such a condition is not known."""
    def loop_input(v: Value) -> bool:
        owner = v.graph
        return v.producer is None and v.is_graph_input and owner.parent is not None \
            and owner.parent.op_type in ("Loop", "Scan")

    return depends_on(value, loop_input)


def known_condition(ctx: InferenceContext) -> str | None:
    """The branch an If's condition, as inference knows it, selects (``taken_branch``); None when unknown or read
    from a loop's state (``reads_loop_state``)."""
    taken = taken_branch(ctx.input_value(0))
    return None if taken is None or reads_loop_state(ctx.input(0)) else taken


def taken_branch(cond: np.ndarray | None) -> str | None:
    """The branch attribute a known condition selects ("then_branch" / "else_branch"), None when unknown."""
    if cond is None or cond.size != 1 or cond.dtype.kind not in "biu":
        return None
    return "then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"


def _agreed(a: Type | None, b: Type | None) -> Type | None:
    """What two branch outputs' types agree on: the element type, and the rank with the dims both have."""
    if a is None or b is None:
        return None
    if not isinstance(a, TensorType) or not isinstance(b, TensorType):
        return a if a == b else None
    if a.dtype != b.dtype:
        return None
    if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
        return TensorType(a.dtype, None)
    return TensorType(a.dtype, [x if x == y else None for x, y in zip(a.shape, b.shape)])


def _infer_if(ctx: InferenceContext) -> list:
    branches = {name: ctx.node.attr(name) for name in ("then_branch", "else_branch")}
    if not all(isinstance(g, Graph) for g in branches.values()):
        return []
    taken = known_condition(ctx)
    if taken is None:
        then, other = branches["then_branch"].outputs, branches["else_branch"].outputs
        return [_agreed(a.type, b.type) for a, b in zip(then, other)]
    outputs = branches[taken].outputs
    for i, v in enumerate(outputs):
        value = ctx.value_of(v)
        if value is not None:
            ctx.set_output_value(i, value)
        elif (partial := ctx.propagated(v)) is not None:
            ctx.output_values[i] = partial
    return [v.type for v in outputs]


register("If", infer=_infer_if)
