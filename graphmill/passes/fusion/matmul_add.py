"""MatMul followed by Add of a bias -> Gemm.

Legal cases: Add(MatMul(A, B), C) (either Add operand order) where A is 2-D (its first
dimension may be symbolic), B is a constant 2-D float matrix, C is a constant float of the same
element type whose broadcast with the MatMul output [M, N] is [M, N] itself -- Gemm's C
broadcasts unidirectionally only, so C's dimensions must be 1 or equal to the static M / N
(e.g. [N], [1, N], [M, N], a scalar). The MatMul must have no other reader. Opset >= 11.
Float-reassociating: Gemm may accumulate the bias into the product.

A batched A (rank >= 3, [..., K] with static leading dims) against a 2-D constant B is a Gemm on
the flattened rows: ``matmul-add-rows`` rewrites Reshape(Add(MatMul(A, B), C), S) into
Reshape(Gemm(Reshape(A, [-1, K]), B, C'), S') (C' the bias as [N], S' the target shape with copied
dims resolved). It fires only where that saves nodes once cleanup has merged Reshape chains and
CSE has merged identical flattenings: the result already feeds a Reshape (they merge), and A is
flattened for at least one other Gemm too (the query/key/value projections of attention read one
A), or A is itself the output of a Reshape only such sites read (the two Reshapes merge). Elsewhere
the MatMul + Add pair stays (a Reshape before and after would add nodes).

Refused: A of another rank (batched MatMul is not a Gemm), a non-constant B (weights computed at
run time stay MatMul; ONNX Runtime fuses those itself), a bias that would broadcast the output
to a bigger shape (C [K, M, N]) or whose row count depends on a symbolic M, integer types.
"""

from __future__ import annotations

import numpy as np

from graphmill.ir.rewrite import REASSOCIATING, Const, Match, Op, Rule, Var

from ..base import register_pass
from ..cleanup.common import FLOAT_TYPES, const_of, dtype_of, int_list, is_static, need_opset, shape_of
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


def _rows_site(mm) -> tuple | None:
    """(K, N, bias as [N] or None, add node, reshape node) when ``mm`` is MatMul(A[..., K], B[K, N]) whose only
    reader is Add(., C) with C one bias per column, whose only reader is a Reshape with a constant shape."""
    if mm.op_type != "MatMul" or len(mm.inputs) != 2 or mm.outputs[0].is_graph_output:
        return None
    a, b = mm.inputs
    bw = const_of(b)
    sa = shape_of(a)
    if bw is None or bw.ndim != 2 or sa is None or len(sa) < 3 or not is_static(sa) or 0 in sa:
        return None
    dt = dtype_of(a)
    if dt not in FLOAT_TYPES or dtype_of(b) != dt:
        return None
    k, n = bw.shape
    if sa[-1] != k:
        return None
    users = mm.outputs[0].users
    if len(users) != 1 or mm.outputs[0].num_uses != 1 or users[0].op_type != "Add":
        return None
    add = users[0]
    if add.outputs[0].is_graph_output or add.outputs[0].num_uses != 1 or len(add.inputs) != 2:
        return None
    c = add.inputs[1] if add.inputs[0] is mm.outputs[0] else add.inputs[0]
    cw = const_of(c)
    if cw is None or c is mm.outputs[0] or dtype_of(c) != dt or cw.ndim > len(sa):
        return None
    if any(d != 1 for d in cw.shape[:-1]) or (cw.ndim and cw.shape[-1] not in (1, n)):
        return None
    rs = add.outputs[0].users[0]
    if rs.op_type != "Reshape" or rs.inputs[0] is not add.outputs[0] or const_of(rs.inputs[1]) is None:
        return None
    return k, n, cw, add, rs


def _is_flatten(node, a, k: int) -> bool:
    return (node.op_type == "Reshape" and node.inputs[0] is a and len(node.inputs) > 1
            and int_list(node.inputs[1]) in ([-1, k],) and not node.attr("allowzero", 0))


def _rows_check(m: Match) -> str | None:
    why = need_opset(m, 11, "Gemm with a broadcast C")
    if why:
        return why
    site = _rows_site(m.node("mm"))
    if site is None:
        return ("not MatMul(A[..., K] static, B[K, N] const) -> Add(bias per column) -> Reshape(const shape), "
                "each the only reader of the one before, one float type")
    k = site[0]
    shape = _resolved_target(m)
    if isinstance(shape, str):
        return shape
    a = m["a"]
    sites = flats = other = 0
    for u in a.users:
        if u.op_type == "MatMul" and u.inputs[0] is a and u.inputs[1] is not a and _rows_site(u) is not None \
                and _rows_site(u)[0] == k:
            sites += 1
        elif _is_flatten(u, a, k):
            flats += 1
        else:
            other += 1
    if sites + flats >= 2:
        return None
    p = a.producer
    if p is not None and p.op_type == "Reshape" and other == 0 and not a.is_graph_output:
        return None
    return ("A is flattened for no other Gemm and is not the output of a Reshape: a Reshape before the Gemm would "
            "add a node")


def _resolved_target(m: Match) -> list[int] | str:
    rs = m.node("reshape")
    target = int_list(m["shape"])
    out = shape_of(m.node("add").outputs[0]) or shape_of(m.node("mm").outputs[0])
    if target is None:
        return "the Reshape's shape is not an integer constant"
    if 0 in target:
        if rs.attr("allowzero", 0):
            return "the Reshape's shape has a literal 0 dimension"
        if out is None or not is_static(out) or len(target) > len(out):
            return "the Reshape copies dimensions of an input of unknown shape"
        target = [out[i] if d == 0 else d for i, d in enumerate(target)]
    return target


def _rows_replace(m: Match, r):
    k, n, cw, _add, _rs = _rows_site(m.node("mm"))
    flat = r.op("Reshape", m["a"], r.const(np.array([-1, k], np.int64), "flatten_rows"))
    c = m["c"] if cw.ndim == 1 else r.const(cw.reshape(-1), m["c"].name + "_row")
    gemm = r.op("Gemm", flat, m["b"], c)
    shape = m["shape"] if 0 not in int_list(m["shape"]) else r.const(np.array(_resolved_target(m), np.int64))
    return r.op("Reshape", gemm, shape)


MATMUL_ADD_ROWS = Rule(
    "matmul-add-rows",
    Op("Reshape", Op("Add", Op("MatMul", Var("a"), Const("b"), name="mm"), Const("c"), commutative=True,
                     name="add"), Const("shape"), name="reshape"),
    check=_rows_check,
    replace=_rows_replace,
    exactness=REASSOCIATING,
    doc="Reshape(Add(MatMul(A[..., K], B[K, N]), C), S) -> Reshape(Gemm(Reshape(A, [-1, K]), B, C), S) where "
        "A is flattened for another Gemm too or comes from a Reshape (fewer nodes after cleanup)")


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
    rules = (MATMUL_ADD, MATMUL_ADD_ROWS)
    exactness = REASSOCIATING
    preserves = frozenset()
