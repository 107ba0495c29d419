"""MatMul followed by Add of a bias -> Gemm.

Legal cases: Add(MatMul(A, B), C) (either Add operand order) where A is 2-D (its first
dimension may be symbolic), B is a constant 2-D float matrix, C is a constant float of the same
element type whose broadcast with the MatMul output [M, N] is [M, N] itself -- Gemm's C
broadcasts unidirectionally only, so C's dimensions must be 1 or equal to the static M / N
(e.g. [N], [1, N], [M, N], a scalar). The MatMul must have no other reader. Opset >= 11.
Float-reassociating: Gemm may accumulate the bias into the product.

Refused: A of another rank (batched MatMul is not a Gemm), a non-constant B (weights computed at
run time stay MatMul; ONNX Runtime fuses those itself), a bias that would broadcast the output
to a bigger shape (C [K, M, N]) or whose row count depends on a symbolic M, integer types.
"""

from __future__ import annotations

from graphmill.ir.rewrite import REASSOCIATING, Const, Match, Op, Rule, Var

from ..base import register_pass
from ..cleanup.common import FLOAT_TYPES, dtype_of, need_opset, shape_of
from ..rewrite_pass import RewritePass


def _check(m: Match) -> str | None:
    why = need_opset(m, 11, "Gemm with a broadcast C")
    if why:
        return why
    a, b, c = shape_of(m["a"]), shape_of(m["b"]), shape_of(m["c"])
    if a is None or len(a) != 2:
        return f"A is not 2-D ({a})"
    if b is None or len(b) != 2:
        return "B is not a 2-D matrix"
    dt = dtype_of(m["a"])
    if dt not in FLOAT_TYPES or dtype_of(m["b"]) != dt or dtype_of(m["c"]) != dt:
        return "element types are not one float type"
    out = (a[0], b[1])
    if c is None or len(c) > 2:
        return f"bias of shape {c} does not broadcast to [M, N] unidirectionally"
    for od, cd in zip(reversed(out), reversed(c)):
        if cd != 1 and not (isinstance(od, int) and od == cd):
            return f"bias of shape {list(c)} does not broadcast to [M, N] = {list(out)} unidirectionally"
    return None


MATMUL_ADD = Rule(
    "matmul-add",
    Op("Add", Op("MatMul", Var("a"), Const("b"), name="mm"), Const("c"), commutative=True, name="add"),
    check=_check,
    replace=lambda m, r: r.op("Gemm", m["a"], m["b"], m["c"]),
    exactness=REASSOCIATING,
    doc="Add(MatMul(A[M,K], B[K,N]), C) -> Gemm(A, B, C)")


@register_pass
class FuseMatMulAdd(RewritePass):
    """MatMul + Add of a constant bias -> Gemm, where Gemm's unidirectional broadcast allows it."""

    name = "fuse-matmul-add"
    rules = (MATMUL_ADD,)
    exactness = REASSOCIATING
    preserves = frozenset()
