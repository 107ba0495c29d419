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

from ..graph import Graph
from ..types import TensorType, Type
from .registry import InferenceContext, register


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
    taken = taken_branch(ctx.input_value(0))
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
