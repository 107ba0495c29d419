"""Local algebraic simplifications, as rewrite rules (data, not traversals).

Every rule below is a ``graphmill.ir.rewrite.Rule``; its ``check`` returns a readable reason
when it refuses, which ``explain`` (``--explain-match RULE``) reports. All are exact except
``add-zero-float``, ``mul-const-chain``, ``add-const-chain`` and ``transpose-through-elementwise-transcendental``
(see there). Each rule's docstring-like
``doc`` says what it does and refuses.

Legal cases:
- ``identity``: Identity(x) -> x.
- ``dropout-inference``: Dropout(x) -> x when its mask output is absent or unused and
  ``training_mode`` is absent or a constant false (opset < 7: only with ``is_test=1``).
- ``reshape-noop``: Reshape(x, s) -> x when ``s`` keeps every dimension (each entry 0 -- without
  allowzero --, the same static size, or one -1 standing for the only dimension left).
- ``transpose-noop``: Transpose with the identity permutation.
- ``cast-noop``: Cast to the element type ``x`` already has.
- ``pad-noop``: Pad whose pads are all zero (any mode).
- ``slice-noop``: Slice taking every element (start 0, step 1, end past a static dimension or
  the INT64 max sentinel) on every sliced axis.
- ``expand-noop``: Expand to a shape whose broadcast with ``x``'s is ``x``'s own.
- ``transpose-pair``: Transpose(Transpose(x, p1), p2) -> Transpose(x, p1[p2]), or x when that
  is the identity.
- ``cast-chain``: Cast(Cast(x, T1), T2) when the first cast is lossless for every value of x's
  type (widening): -> x when T2 is x's type, -> Cast(x, T2) when T2 is also lossless for x.
  Narrowing-then-widening (float32 -> float16 -> float32) rounds, so it is kept.
- ``castlike-to-cast``: CastLike(x, like) -> Cast(x, to=type(like)) when ``like``'s element type
  is known, carrying ``saturate`` over as it is (dropping saturate=0 would change float8 results).
- ``mul-one`` / ``div-one``: x*1, 1*x, x/1 -> x (IEEE exact, -0 and NaN included) when the
  constant has x's element type and broadcasting it keeps x's shape.
- ``sub-zero``: x - (+0) -> x (exact in IEEE: -0 - +0 = -0).
- ``add-zero-exact``: x + c -> x when c is all -0.0 (IEEE exact) or x is an integer type.
- ``add-zero-float``: x + (+0.0) -> x for floats. Tagged float-reassociating: it changes only
  the sign of zero (x = -0.0 gives +0.0 before, -0.0 after), and -0.0 == +0.0 under every
  comparison and tolerance; 1/x is the only way to tell them apart.
- ``mul-const-chain`` / ``add-const-chain``: (x * c1) * c2 -> x * (c1 * c2), (x + c1) + c2 -> x + (c1 + c2),
  the inner op read only there, both constants of x's element type and the combined one no bigger than
  the larger of them. Float-reassociating (one rounding instead of two); exact for integers, where both
  wrap alike. Refused where the combined float constant overflows or underflows (1e-30 * 1e-30 is 0 in
  float32, where (x * 1e-30) * 1e-30 is not for x = 1e30), and where the unmerged intermediate may: Add
  constants of opposite signs ((x + 1e8) - 1e8 is 0 for x = 1.5), Mul constants pulling in opposite
  directions by more than 2^16 ((x * 1e30) * 2e-30 is inf for x = 1e10; float16: any).
- ``transpose-through-elementwise``: Transpose(f(...g(Transpose(x, p1))...), p2) -> f(...g(Transpose(x,
  p1[p2]))...), the Transpose gone where p1[p2] is the identity: a converter's NHWC round trip around a bias
  and an activation (tf2onnx's Transpose -> Add -> Relu -> Transpose) cancels, and fuse-conv-bn then folds the
  bias into the Conv. f, g, ...: piecewise-linear unary ops (Relu, Clip, Cast, ... with any extra inputs kept:
  Clip's scalar bounds) and basic arithmetic and comparisons with constant operands, which are transposed along
  (a constant of higher rank than x is refused: it widens the chain). Each op of the chain and the first
  Transpose is read only by the next (which may read it twice: x * x). Exact: each element is computed by the same
  correctly rounded operation wherever it sits. ``transpose-through-elementwise-transcendental``: the same
  through chains with Sigmoid, Tanh, Exp, Pow, Max, Min, Mod, ..., float-reassociating for the reason
  merge-ops gives (a vectorised kernel's body and tail).
- ``squeeze-unsqueeze``: Squeeze(Unsqueeze(x, a), a) -> x; ``unsqueeze-squeeze``:
  Unsqueeze(Squeeze(x, a), a) -> x when every squeezed dimension is a static 1.
- ``reshape-chain``: Reshape(Reshape(x, s1), s2) -> Reshape(x, s2) when s2 has no 0 entry that
  would copy a dimension of the intermediate (or the outer Reshape has allowzero=1), and the inner
  Reshape pins nothing the outer one reads: s2 has no -1, or s1 has one too, or x's shape gives the
  same result symbolically both ways (Reshape(Reshape(x[N, 4], [1, 4]), [-1, 2]) is [2, 2] only
  because the inner one pins N to 1: merged it would be [2N, 2]).
- ``transpose-unit-dims``: Transpose that moves only dimensions of static size 1 (the other
  dimensions keep their order; static shape) -> Reshape (no data movement).
- ``reshape-unit-before-transpose``: Reshape(Transpose(x, p), s) where s only adds or drops 1s
  (static shapes) -> Transpose(Reshape(x, s'), p'), only where a Reshape producing x (read only
  there) or a Transpose reading the result then merges with it.
- ``unsqueeze-chain``: Unsqueeze(Unsqueeze(x, a1), a2) -> Unsqueeze(x, a) (opset >= 13, constant axes).
- ``shape-static``: Shape(x) -> a constant when every selected dimension of x is a static size;
  ``gather-shape``: Gather(Shape(x), i) -> a constant when the selected dimensions are static
  (the other dimensions may be symbolic; they are not specialised).
- ``shape-arith``: Concat / Unsqueeze / Squeeze / Gather / Reshape / Add / Sub / Mul / Div on
  small int64 constants (shape arithmetic, at most 1024 elements) -> a constant (opset >= 13).
- ``sequence-at-split``: SequenceAt(SplitToSequence(x, split, axis), i) -> output i of Split(x, sizes,
  axis) when the chunk sizes are known (a static axis size; split a constant scalar or list, or absent with
  keepdims=1) and i is a constant (opset >= 11; at most 256 chunks). The dynamo exporter's ``chunk``;
  cse then merges the identical Splits of one sequence, and dce removes the sequence.
- ``reshape-computed-dims``: Reshape(x, Concat(parts)) whose computed entries (Shape, Gather, Squeeze,
  Unsqueeze, Reshape or Cast of dimensions) are x's own dimensions at the same position (the same symbol) but
  for at most one -> Reshape(x, a constant): those entries 0 (copy x's; allowzero=0), the other -1, constants
  kept (no literal 0 under allowzero=1; no allowzero attribute before opset 14). Exact: a copied entry is the
  size it named, and the element count settles the -1, which is why a -1 never stands beside a copy of a
  dimension that may be 0 (ONNX Runtime cannot resolve it there). Only Casts to int64 are followed, and an
  empty dim_param names no size. The dynamo exporter's ``view(B, T, h, d)`` with symbolic B and T; dce then
  removes the Shape -> Squeeze -> Concat arithmetic.
- ``expand-to-own-shape``: Expand(x, s) with s computed (not a constant: expand-noop's case) and every entry of s
  x's own dimension at its (right-aligned) position, the same symbol or size, or 1 -> x. The dynamo exporter's
  advanced indexing broadcasts two [B] index tensors to Shape(Max(a, b)).

Refused everywhere: matches whose root output is a graph output that the replacement cannot
take over by name (e.g. Identity(input) -> output), and values returned directly by a subgraph
(``graphmill.ir.rewrite`` enforces both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphmill.ir import DataType, Node, Value
from graphmill.ir.ops.shape import reshape_dims
from graphmill.ir.rewrite import EXACT, REASSOCIATING, Const, Match, Op, Opt, ReplacementBuilder, Rule, Var

from ..base import register_pass
from ..rewrite_pass import RewritePass
from .common import (
    ONNX_DOMAINS,
    PIECEWISE_LINEAR,
    TRANSCENDENTAL,
    all_equal,
    axes_of,
    broadcast_keeps,
    checked_by,
    const_of,
    dtype_of,
    folded_constant,
    int_list,
    normalize_axes,
    opset,
    output_unused,
    shape_of,
)

INT64_MAX_ISH = 1 << 62


def _ok(cond: bool, reason: str) -> str | None:
    return None if cond else reason


# -- identity & dropout -----------------------------------------------------------------------

IDENTITY = Rule("identity", Op("Identity", Var("x")), replace=lambda m, r: m["x"],
                doc="Identity(x) -> x")


def _dropout_check(m: Match) -> str | None:
    node = m.node("dropout")
    outs = node.outputs
    if len(outs) > 1 and not output_unused(outs[1]):
        return "the mask output is used"
    if opset(m.graph) < 7 and node.attr("is_test", 0) != 1:
        return "opset < 7 Dropout without is_test=1 is in training mode"
    if "training_mode" in m:
        tm = const_of(m["training_mode"])
        if tm is None:
            return "training_mode is not a constant"
        if bool(np.any(tm)):
            return "training_mode is true"
    return None


DROPOUT = Rule("dropout-inference",
               Op("Dropout", Var("x"), Opt(Var("ratio")), Opt(Var("training_mode")), name="dropout"),
               check=_dropout_check,
               replace=lambda m, r: [m["x"]] + [None] * (len(m.root.outputs) - 1),
               doc="Dropout(x) at inference -> x")


# -- no-op Reshape / Transpose / Cast / Pad / Slice / Expand -----------------------------------

def _reshape_noop_check(m: Match) -> str | None:
    xs = shape_of(m["x"])
    s = int_list(m["shape"])
    if xs is None or s is None:
        return "the input's rank or the target shape is unknown"
    if len(s) != len(xs):
        return f"rank changes ({len(xs)} -> {len(s)})"
    allowzero = m.root.attr("allowzero", 0)
    minus = 0
    for d, t in zip(xs, s):
        if t == 0 and not allowzero:
            continue
        if t == -1:
            minus += 1
            continue
        if not (isinstance(d, int) and d == t):
            return f"target {s} does not keep dimension {d!r}"
    if minus > 1:
        return "more than one -1"
    if minus == 1 and any(isinstance(d, int) and d == 0 for d in xs):
        return "-1 beside a zero-size dimension is ambiguous"
    return None


RESHAPE_NOOP = Rule("reshape-noop", Op("Reshape", Var("x"), Const("shape")), check=_reshape_noop_check,
                    replace=lambda m, r: m["x"], doc="Reshape to the same shape -> x")


def _perm(node, rank: int | None) -> list[int] | None:
    p = node.attr("perm")
    if p is not None:
        return [int(a) for a in p]
    return None if rank is None else list(range(rank))[::-1]


def _transpose_noop_check(m: Match) -> str | None:
    xs = shape_of(m["x"])
    p = _perm(m.root, None if xs is None else len(xs))
    if p is None:
        return "no perm and the input rank is unknown"
    return _ok(p == list(range(len(p))), f"perm {p} is not the identity")


TRANSPOSE_NOOP = Rule("transpose-noop", Op("Transpose", Var("x")), check=_transpose_noop_check,
                      replace=lambda m, r: m["x"], doc="Transpose by the identity permutation -> x")


def _cast_noop_check(m: Match) -> str | None:
    to = m.root.attr("to")
    dt = dtype_of(m["x"])
    if not isinstance(to, int):
        return f"target type {to!r} is not an element type number (opset < 6 form)"
    if dt is None:
        return "the input's element type is unknown"
    try:
        target = DataType(to)
    except ValueError:  # to=9999: the pass failed with enum's message (an outside check); ONNX Runtime names it
        return f"target type {to} is not an ONNX element type"
    return _ok(dt == target, f"casts {dt.short_name} to {target.short_name}")


CAST_NOOP = Rule("cast-noop", Op("Cast", Var("x")), check=_cast_noop_check, replace=lambda m, r: m["x"],
                 doc="Cast to the type x already has -> x")


def _pad_noop_check(m: Match) -> str | None:
    node = m.root
    if "pads" in node.attrs or "paddings" in node.attrs:
        pads = [int(p) for p in node.attr("pads", node.attr("paddings"))]
    else:
        pads = int_list(node.inputs[1]) if len(node.inputs) > 1 else None
    if pads is None:
        return "pads are not constant"
    return _ok(all(p == 0 for p in pads), f"pads {pads} are not all zero")


PAD_NOOP = Rule("pad-noop", Op("Pad", Var("x"), allow_extra_inputs=True), check=_pad_noop_check,
                replace=lambda m, r: m["x"], doc="Pad by zero everywhere -> x")


def _slice_noop_check(m: Match) -> str | None:
    if opset(m.graph) < 10:
        return "opset < 10 Slice (attribute form) is not handled"
    xs = shape_of(m["x"])
    starts, ends = int_list(m["starts"]), int_list(m["ends"])
    axes = int_list(m["axes"]) if "axes" in m else None
    steps = int_list(m["steps"]) if "steps" in m else None
    if xs is None or starts is None or ends is None:
        return "rank or slice bounds unknown"
    if axes is None:
        if "axes" in m:
            return "axes are not integer constants"
        axes = list(range(len(starts)))
    if steps is None:
        if "steps" in m:
            return "steps are not integer constants"
        steps = [1] * len(starts)
    naxes = normalize_axes(axes, len(xs))
    if naxes is None or not (len(starts) == len(ends) == len(naxes) == len(steps)):
        return "slice arguments are inconsistent"
    for a, s, e, st in zip(naxes, starts, ends, steps):
        d = xs[a]
        if st != 1:
            return f"step {st} on axis {a}"
        if s != 0 and not (isinstance(d, int) and s <= -d):
            return f"start {s} on axis {a}"
        if e < INT64_MAX_ISH and not (isinstance(d, int) and e >= d):
            return f"end {e} on axis {a} of size {d!r} may cut it"
    return None


SLICE_NOOP = Rule("slice-noop", Op("Slice", Var("x"), Const("starts"), Const("ends"), Opt(Const("axes")),
                                   Opt(Const("steps"))),
                  check=_slice_noop_check, replace=lambda m, r: m["x"], doc="Slice of everything -> x")


def _expand_noop_check(m: Match) -> str | None:
    s = int_list(m["shape"])
    if s is None:
        return "target shape is not an integer constant"
    return _ok(broadcast_keeps(shape_of(m["x"]), tuple(s)), f"expanding to {s} changes the shape")


EXPAND_NOOP = Rule("expand-noop", Op("Expand", Var("x"), Const("shape")), check=_expand_noop_check,
                   replace=lambda m, r: m["x"], doc="Expand that broadcasts to x's own shape -> x")


# -- pairs and chains --------------------------------------------------------------------------

def _composed_perm(m: Match) -> list[int] | None:
    xs = shape_of(m["x"])
    rank = None if xs is None else len(xs)
    p1 = _perm(m.node("t1"), rank)
    p2 = _perm(m.node("t2"), len(p1) if p1 is not None else rank)
    if p1 is None or p2 is None or len(p1) != len(p2):
        return None
    return [p1[i] for i in p2]


def _transpose_pair_replace(m: Match, r):
    p = _composed_perm(m)
    if p == list(range(len(p))):
        return m["x"]
    return r.op("Transpose", m["x"], perm=p)


TRANSPOSE_PAIR = Rule(
    "transpose-pair", Op("Transpose", Op("Transpose", Var("x"), name="t1"), name="t2"),
    check=lambda m: _ok(_composed_perm(m) is not None, "permutations unknown (no perm and unknown rank)"),
    replace=_transpose_pair_replace, doc="Transpose(Transpose(x)) -> one Transpose, or x")

_INT_RANGE = {
    DataType.BOOL: (0, 1), DataType.INT8: (-2**7, 2**7 - 1), DataType.UINT8: (0, 2**8 - 1),
    DataType.INT16: (-2**15, 2**15 - 1), DataType.UINT16: (0, 2**16 - 1), DataType.INT32: (-2**31, 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1), DataType.INT64: (-2**63, 2**63 - 1), DataType.UINT64: (0, 2**64 - 1),
}
_FLOAT_INT_EXACT = {DataType.FLOAT16: 2**11, DataType.FLOAT: 2**24, DataType.DOUBLE: 2**53}
_FLOAT_RANK = {DataType.FLOAT16: 0, DataType.FLOAT: 1, DataType.DOUBLE: 2}


def lossless(src: DataType, dst: DataType) -> bool:
    """Every value of ``src`` converts to ``dst`` and back unchanged (bool as 0/1)."""
    if src == dst:
        return True
    if src in _FLOAT_RANK and dst in _FLOAT_RANK:
        return _FLOAT_RANK[dst] >= _FLOAT_RANK[src]  # widening float keeps NaN, inf, -0, subnormals
    if src in _INT_RANGE and dst in _INT_RANGE:
        lo, hi = _INT_RANGE[src]
        dlo, dhi = _INT_RANGE[dst]
        return dlo <= lo and hi <= dhi and dst != DataType.BOOL
    if src in _INT_RANGE and dst in _FLOAT_INT_EXACT:
        lo, hi = _INT_RANGE[src]
        return max(-lo, hi) <= _FLOAT_INT_EXACT[dst]
    return False


def _cast_chain_plan(m: Match) -> tuple[str, int] | str:
    x = dtype_of(m["x"])
    t1, t2 = m.node("c1").attr("to"), m.node("c2").attr("to")
    if x is None or not isinstance(t1, int) or not isinstance(t2, int):
        return "element types unknown"
    try:
        t1d, t2d = DataType(t1), DataType(t2)
    except ValueError:
        return "unknown element type"
    if not lossless(x, t1d):
        return f"the first cast {x.short_name} -> {t1d.short_name} can round; the chain is kept"
    if t2d == x:
        return ("drop", t2)
    if lossless(x, t2d):
        return ("cast", t2)
    return f"{x.short_name} -> {t2d.short_name} directly is not lossless either; the chain is kept"


def _cast_chain_replace(m: Match, r):
    kind, to = _cast_chain_plan(m)  # type: ignore[misc]
    if kind == "drop":
        return m["x"]
    return r.op("Cast", m["x"], to=to)


CAST_CHAIN = Rule(
    "cast-chain", Op("Cast", Op("Cast", Var("x"), name="c1"), name="c2"),
    check=checked_by(_cast_chain_plan),
    replace=_cast_chain_replace, doc="widening Cast then Cast back (or further) -> x (or one Cast)")


def _castlike_check(m: Match) -> str | None:
    dt = dtype_of(m["like"])
    if dt is None:
        return "the target (like) element type is unknown"
    return None


def _castlike_replace(m: Match, r):
    attrs = {"to": int(dtype_of(m["like"]))}
    sat = m.root.attrs.get("saturate")
    if sat is not None:
        attrs["saturate"] = int(sat.value)  # saturate=0 must stay 0 (onnxscript drops it: wrong float8 results)
    return r.op("Cast", m["x"], attrs=attrs)


CASTLIKE = Rule("castlike-to-cast", Op("CastLike", Var("x"), Var("like")), check=_castlike_check,
                replace=_castlike_replace, doc="CastLike with a known target type -> Cast (saturate kept)")


# -- neutral elements ----------------------------------------------------------------------------

def _neutral_check(value: float, *, int_only: bool = False, sign: int = 0):
    def check(m: Match) -> str | None:
        x, c = m["x"], m["c"]
        cv = const_of(c)
        dx, dc = dtype_of(x), dtype_of(c)
        if dx is None or dc is None or dx != dc:
            return "element types unknown or different"
        if not broadcast_keeps(shape_of(x), shape_of(c)):
            return f"broadcasting with the constant {shape_of(c)} changes x's shape {shape_of(x)}"
        if not all_equal(cv, value):
            return f"the constant is not all {value}"
        if int_only and not dx.is_integer:
            return "not an integer type"
        if sign and dx.is_floating:
            neg = np.signbit(cv.astype(np.float64))
            if sign < 0 and not bool(np.all(neg)):
                return "the zero is not all -0.0 (x + +0.0 turns -0.0 into +0.0)"
            if sign > 0 and bool(np.any(neg)):
                return "the zero is -0.0 somewhere (x - -0.0 turns -0.0 into +0.0)"
        if not (dx.is_floating or dx.is_integer):
            return f"element type {dx.short_name}"
        return None
    return check


def _add_zero_exact_check(m: Match) -> str | None:
    dx = dtype_of(m["x"])
    if dx is not None and dx.is_integer:
        return _neutral_check(0, int_only=True)(m)
    return _neutral_check(0, sign=-1)(m)


def _add_zero_float_check(m: Match) -> str | None:
    dx = dtype_of(m["x"])
    if dx is None or not dx.is_floating:
        return "not a floating type (add-zero-exact handles integers)"
    return _neutral_check(0)(m)


MUL_ONE = Rule("mul-one", Op("Mul", Var("x"), Const("c"), commutative=True), check=_neutral_check(1),
               replace=lambda m, r: m["x"], doc="x*1 -> x")
DIV_ONE = Rule("div-one", Op("Div", Var("x"), Const("c")), check=_neutral_check(1),
               replace=lambda m, r: m["x"], doc="x/1 -> x")
SUB_ZERO = Rule("sub-zero", Op("Sub", Var("x"), Const("c")), check=_neutral_check(0, sign=1),
                replace=lambda m, r: m["x"], doc="x - (+0) -> x")
ADD_ZERO_EXACT = Rule("add-zero-exact", Op("Add", Var("x"), Const("c"), commutative=True),
                      check=_add_zero_exact_check, replace=lambda m, r: m["x"],
                      doc="x + 0 -> x for integers, x + (-0.0) -> x for floats")
ADD_ZERO_FLOAT = Rule("add-zero-float", Op("Add", Var("x"), Const("c"), commutative=True),
                      check=_add_zero_float_check, replace=lambda m, r: m["x"], exactness=REASSOCIATING,
                      doc="x + (+0.0) -> x; differs only in the sign of a zero result")


# -- chains of constant operands ---------------------------------------------------------------

def _const_chain_plan(combine) -> "callable":
    """The check-and-constant of mul-const-chain / add-const-chain: the two constants combined (in the
    element type they share), or why not."""
    def plan(m: Match) -> np.ndarray | str:
        dx = dtype_of(m["x"])
        c1, c2 = m.const("c1"), m.const("c2")
        if dx is None or not (dx.is_floating or dx.is_integer) or dx == DataType.BOOL:
            return f"x's element type {getattr(dx, 'short_name', 'unknown')} is not a number"
        if c1.dtype != c2.dtype or c1.dtype.kind not in "fiu" or c1.dtype != dx.numpy():
            return f"the constants ({c1.dtype}, {c2.dtype}) are not both of x's element type"
        try:
            shape = np.broadcast_shapes(c1.shape, c2.shape)
        except ValueError:
            return f"the constants' shapes {c1.shape} and {c2.shape} do not broadcast"
        if int(np.prod(shape, dtype=np.int64)) > max(c1.size, c2.size):
            return f"the combined constant {shape} would be bigger than either of {c1.shape} and {c2.shape}"
        if c1.dtype.kind != "f":
            with np.errstate(all="ignore"):  # integers wrap alike in the chain and the combined constant
                return np.asarray(combine(c1, c2), dtype=c1.dtype)
        with np.errstate(all="ignore"):
            c = folded_constant(combine(c1.astype(np.float64), c2.astype(np.float64)), c1.dtype)
        if isinstance(c, str):
            return c
        return _intermediate_risk(combine, np.abs(c1).astype(np.float64), c2.astype(np.float64), c1) or c
    return plan


#: how far apart the two factors of a mul-const-chain may pull in opposite directions (x * c1 grows by up to this
#: before c2 shrinks it, or the reverse): x * c1 then overflows only for |x| > max / 2^16 (5e33 in float32), where
#: x * (c1 * c2) may not. float16's range is too short for any: there opposite directions are refused.
OPPOSITE_SCALE_LIMIT = 2.0 ** 16


def _intermediate_risk(combine, a: np.ndarray, c2: np.ndarray, c1: np.ndarray) -> str | None:
    """Why the intermediate of the unmerged chain may overflow, underflow or absorb x where the merged op does not
    (an outside check: (x * 1e30) * 2e-30 is inf for x = 1e10, x * 2 is not; (x + 1e8) - 1e8 is 0 for x = 1.5),
    or None. ``a``: |c1|; both broadcast against each other, element by element."""
    a, c2 = np.broadcast_arrays(a, c2)
    if combine is np.add:  # opposite signs cancel: x + c1 rounds x away (or overflows) before c2 takes c1 back
        if bool(np.any(np.sign(c1) * np.sign(c2) < 0)):
            return "the constants have opposite signs: (x + c1) may round x away or overflow before c2 cancels c1"
        return None
    b = np.abs(c2)
    limit = 1.0 if c1.dtype == np.float16 else OPPOSITE_SCALE_LIMIT
    grows_then_shrinks = (a > 1) & (b < 1) & (a > limit)
    shrinks_then_grows = (a < 1) & (b > 1) & (a != 0) & (a < 1 / limit)
    if bool(np.any(grows_then_shrinks | shrinks_then_grows)):
        return (f"c1 and c2 scale in opposite directions by more than {limit:g}: (x * c1) may overflow or underflow "
                "where x * (c1 * c2) does not")
    return None


def _const_chain_rule(name: str, op: str, combine, sign: str) -> Rule:
    """(x op c1) op c2 -> x op (c1 op c2), the constants combined by ``_const_chain_plan``."""
    plan = _const_chain_plan(combine)
    return Rule(name, Op(op, Op(op, Var("x"), Const("c1"), commutative=True, name="inner"), Const("c2"),
                         commutative=True),
                check=checked_by(plan), exactness=REASSOCIATING,
                replace=lambda m, r: r.op(op, m["x"], r.const(plan(m))),
                doc=f"(x {sign} c1) {sign} c2 -> x {sign} (c1 {sign} c2)")


MUL_CONST_CHAIN = _const_chain_rule("mul-const-chain", "Mul", np.multiply, "*")
ADD_CONST_CHAIN = _const_chain_rule("add-const-chain", "Add", np.add, "+")


# -- Transposes through elementwise chains ------------------------------------------------------

# The elementwise ops a Transpose passes through (transpose-through-elementwise). Unary ones keep any extra
# inputs as they are (Clip's scalar bounds); broadcasting ones have their constant operands transposed along.
# Exact where each element is one correctly rounded operation wherever it sits; the others as for Concat.
BROADCASTING_EXACT = ("Add", "Sub", "Mul", "Div", "PRelu", "Equal", "Less", "Greater", "LessOrEqual",
                      "GreaterOrEqual", "And", "Or", "Xor", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor")
BROADCASTING_REASSOCIATING = ("Pow", "Max", "Min", "Mod")
MAX_SUNK_CHAIN = 32


@dataclass
class _Sinking:
    """A Transpose -> elementwise chain -> Transpose, as transpose-through-elementwise rewrites it."""

    source: Value  # the first Transpose's input
    perm: list[int]  # the two permutations composed
    last_perm: list[int]  # the second Transpose's, which the constants take
    first_out: Value  # the first Transpose's output, which the chain's first op reads
    chain: list[Node]  # the elementwise ops, first to last


def _sinking(m: Match, ops: frozenset, needs: frozenset) -> _Sinking | str:
    """Walk up from the last Transpose through single-reader elementwise ops of ``ops`` to a Transpose;
    at least one op of the chain is in ``needs`` (so that the exact rule and the looser one do not both
    claim a chain)."""
    chain: list[Node] = []
    v, reader = m.root.inputs[0], m.root
    while True:
        n = v.producer if v is not None else None
        if n is None or n.graph is not m.graph:
            return "the chain does not start at a Transpose of this graph"
        if v.is_graph_output or any(u is not reader for u, _ in v.uses()):
            return f"%{v.name} is read elsewhere (or is a graph output): it would be computed twice"
        if n.op_type == "Transpose" and (n.domain or "") in ONNX_DOMAINS:
            break
        if (n.domain or "") not in ONNX_DOMAINS or n.op_type not in ops:
            return f"{n.describe()} is not an elementwise op the Transpose passes through"
        if len(chain) == MAX_SUNK_CHAIN:
            return f"more than {MAX_SUNK_CHAIN} ops between the Transposes"
        chain.append(n)
        reader = n
        if n.op_type in BROADCASTING_EXACT or n.op_type in BROADCASTING_REASSOCIATING:
            moving = {id(x): x for x in n.inputs if x is not None and const_of(x) is None}
            if len(moving) != 1:
                return f"{n.describe()} has {len(moving)} non-constant operands (one is needed)"
            v = next(iter(moving.values()))
        else:
            v = n.inputs[0]
    if not chain:
        return "no elementwise op between the Transposes (transpose-pair's case)"
    if not any(n.op_type in needs for n in chain):
        return "every op of the chain is the exact rule's"
    first, x = v.producer, v.producer.inputs[0]
    x_shape = shape_of(x)
    p1 = _perm(first, None if x_shape is None else len(x_shape))
    if p1 is None:
        return "the first Transpose has no perm and its input's rank is unknown"
    p2 = _perm(m.root, len(p1))
    if len(p2) != len(p1):
        return f"the Transposes' ranks differ ({len(p1)} and {len(p2)}): a constant widened the chain"
    if opset(m.graph) < 7:
        return "opset < 7 (broadcasting took attributes)"
    for n in chain:
        if n.op_type not in BROADCASTING_EXACT and n.op_type not in BROADCASTING_REASSOCIATING:
            continue
        for c in n.inputs:
            arr = const_of(c) if c is not None else None
            if arr is not None and arr.ndim > len(p1):
                return f"{n.describe()}'s constant %{c.name} has rank {arr.ndim} > {len(p1)}"
    chain.reverse()
    return _Sinking(x, [p1[i] for i in p2], p2, v, chain)


def _sinking_check(ops: tuple[str, ...], needs: tuple[str, ...]):
    allowed, needed = frozenset(ops), frozenset(needs)
    return checked_by(lambda m: _sinking(m, allowed, needed))


def _sink(ops: tuple[str, ...], needs: tuple[str, ...]):
    allowed, needed = frozenset(ops), frozenset(needs)

    def replace(m: Match, r):
        s = _sinking(m, allowed, needed)
        assert not isinstance(s, str)
        rank = len(s.perm)
        z = s.source if s.perm == list(range(rank)) else r.op("Transpose", s.source, perm=s.perm)
        old = s.first_out
        for n in s.chain:
            broadcasting = n.op_type in BROADCASTING_EXACT or n.op_type in BROADCASTING_REASSOCIATING
            ins = []
            for c in n.inputs:
                arr = const_of(c) if broadcasting and c is not None and c is not old else None
                if c is old:
                    ins.append(z)
                elif arr is not None:
                    full = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
                    ins.append(r.const(np.ascontiguousarray(np.transpose(full, s.last_perm)), name=c.name))
                else:
                    ins.append(c)
            z, old = r.op(n.op_type, *ins, attrs=dict(n.attrs), name=n.name), n.outputs[0]
        return z
    return replace


_SINK_EXACT = PIECEWISE_LINEAR + BROADCASTING_EXACT
_SINK_ALL = _SINK_EXACT + TRANSCENDENTAL + BROADCASTING_REASSOCIATING
TRANSPOSE_THROUGH_ELEMENTWISE = Rule(
    "transpose-through-elementwise", Op("Transpose", Var("y")), check=_sinking_check(_SINK_EXACT, _SINK_EXACT),
    replace=_sink(_SINK_EXACT, _SINK_EXACT), exactness=EXACT,
    doc="Transpose(f(...g(Transpose(x, p1))...), p2) -> f(...g(Transpose(x, p1[p2]))...) for piecewise-linear and "
        "basic arithmetic f, g (constants transposed along); the Transpose goes where p1[p2] is the identity")
_LOOSER = TRANSCENDENTAL + BROADCASTING_REASSOCIATING
TRANSPOSE_THROUGH_ELEMENTWISE_TRANSCENDENTAL = Rule(
    "transpose-through-elementwise-transcendental", Op("Transpose", Var("y")),
    check=_sinking_check(_SINK_ALL, _LOOSER), replace=_sink(_SINK_ALL, _LOOSER), exactness=REASSOCIATING,
    doc="the same through chains with Sigmoid, Tanh, Exp, Pow, Max, ...")


# -- Squeeze / Unsqueeze / Reshape chains ------------------------------------------------------

def _squeeze_unsqueeze_check(m: Match) -> str | None:
    xs = shape_of(m["x"])
    if xs is None:
        return "x's rank is unknown"
    a1 = axes_of(m.node("u"), 1)
    a2 = axes_of(m.node("s"), 1)
    if not a1 or not a2:
        return "axes unknown or absent"
    r = len(xs) + len(a1)
    n1, n2 = normalize_axes(a1, r), normalize_axes(a2, r)
    if n1 is None or n2 is None:
        return "axes out of range"
    return _ok(sorted(n1) == sorted(n2), f"Unsqueeze axes {a1} and Squeeze axes {a2} differ")


SQUEEZE_UNSQUEEZE = Rule(
    "squeeze-unsqueeze",
    Op("Squeeze", Op("Unsqueeze", Var("x"), Opt(Const("a1")), name="u"), Opt(Const("a2")), name="s"),
    check=_squeeze_unsqueeze_check, replace=lambda m, r: m["x"], doc="Squeeze(Unsqueeze(x, a), a) -> x")


def _unsqueeze_squeeze_check(m: Match) -> str | None:
    xs = shape_of(m["x"])
    if xs is None:
        return "x's rank is unknown"
    a1 = axes_of(m.node("s"), 1)
    a2 = axes_of(m.node("u"), 1)
    if not a1 or not a2:
        return "axes unknown or absent (Squeeze without axes depends on the runtime shape)"
    n1, n2 = normalize_axes(a1, len(xs)), normalize_axes(a2, len(xs))
    if n1 is None or n2 is None:
        return "axes out of range"
    if sorted(n1) != sorted(n2):
        return f"Squeeze axes {a1} and Unsqueeze axes {a2} differ"
    for a in n1:
        if xs[a] != 1:
            return f"dimension {a} of x is {xs[a]!r}, not a static 1"
    return None


UNSQUEEZE_SQUEEZE = Rule(
    "unsqueeze-squeeze",
    Op("Unsqueeze", Op("Squeeze", Var("x"), Opt(Const("a1")), name="s"), Opt(Const("a2")), name="u"),
    check=_unsqueeze_squeeze_check, replace=lambda m, r: m["x"], doc="Unsqueeze(Squeeze(x, a), a) -> x")


def _outer_target(m: Match) -> tuple[list[int] | None, str | None]:
    """The outer Reshape's target as a target for x: each 0 (a copy of the intermediate's dimension there) made
    what the intermediate has there, the inner target's entry or the intermediate's static size, and a 0 that
    copies x's own dimension through the inner 0 kept (torch's ``x.view(b, 4, 6).view(b, 24)`` after
    simplification: [0, 4, 6] then [0, 24], left as two Reshapes; an outside check). (None, the reason) when a
    copied dimension is known neither way."""
    s2 = int_list(m["s2"])
    if s2 is None:
        return None, "outer shape is not an integer constant"
    if 0 not in s2 or m.root.attr("allowzero", 0):
        return s2, None
    s1, allow1 = int_list(m["s1"]), bool(m.node("r1").attr("allowzero", 0))
    mid = shape_of(m.node("r1").outputs[0])
    out = list(s2)
    for i in (i for i, d in enumerate(s2) if d == 0):
        inner = s1[i] if s1 is not None and i < len(s1) else None
        if inner is not None and inner > 0:
            out[i] = inner
        elif inner == 0 and not allow1:
            pass  # both copy x's dimension i
        elif mid is not None and i < len(mid) and isinstance(mid[i], int) and mid[i] > 0:
            out[i] = mid[i]
        else:
            return None, f"outer shape copies dimension {i} (0) of the intermediate, which is not known"
    return out, None


def _reshape_chain_check(m: Match) -> str | None:
    s2, why = _outer_target(m)
    if s2 is None:
        return why
    if -1 not in s2:
        return None  # the result is s2 whatever x is, and Reshape(x, s2) keeps the element-count check
    s1 = int_list(m["s1"])
    if s1 is not None and -1 in s1:
        return None  # neither Reshape fixes the element count: the merged -1 resolves as the outer one did
    # The inner Reshape fixes the element count (a static target), and the outer -1 takes its value from
    # it: merged, the -1 would follow x instead. Identical only where x's shape gives the same result
    # symbolically (Reshape([N, C], [1, C]) pins N to 1; dropping it lets every N through with a
    # result of another shape than the declared one).
    xs = shape_of(m["x"])
    if xs is None or s1 is None:
        return "the inner Reshape fixes the element count, and x's shape or the inner target is unknown"
    allow1, allow2 = bool(m.node("r1").attr("allowzero", 0)), bool(m.root.attr("allowzero", 0))
    try:
        chained = reshape_dims(reshape_dims(xs, s1, allow1), s2, allow2)
        merged = reshape_dims(xs, s2, allow2)
    except ValueError as e:
        return f"the Reshapes do not apply to x's shape {list(xs)}: {e}"
    if None in merged or tuple(merged) != tuple(chained):
        return (f"the inner Reshape to {s1} pins x's shape {list(xs)}: merged, the result would be "
                f"{list(merged)}, not {list(chained)}")
    return None


def _merged_target(m: Match, r: ReplacementBuilder):
    """The outer target itself, or a new constant where ``_outer_target`` resolved some of its 0s."""
    s2 = _outer_target(m)[0]
    return m["s2"] if s2 == int_list(m["s2"]) else r.const(np.array(s2, np.int64))


RESHAPE_CHAIN = Rule(
    "reshape-chain", Op("Reshape", Op("Reshape", Var("x"), Var("s1"), name="r1"), Const("s2"), name="r2"),
    check=_reshape_chain_check,
    replace=lambda m, r: r.op("Reshape", m["x"], _merged_target(m, r), allowzero=m.root.attr("allowzero")),
    doc="Reshape(Reshape(x)) -> one Reshape")


# -- unit dimensions: Transpose / Reshape / Unsqueeze that only move or add 1s --------------------

def _static_shape(v) -> tuple | None:
    """The static shape, with no zero-size dimension (a 0 in a Reshape shape would copy a dimension)."""
    xs = shape_of(v)
    return xs if xs is not None and all(isinstance(d, int) and d > 0 for d in xs) else None


def _transpose_unit_check(m: Match) -> str | None:
    xs = _static_shape(m["x"])
    if xs is None:
        return "x's shape is not static (or has a zero-size dimension)"
    p = _perm(m.root, len(xs))
    if p is None or sorted(p) != list(range(len(xs))):
        return "perm is not a permutation of x's axes"
    moved = [a for a in p if xs[a] != 1]
    return _ok(moved == sorted(moved), f"perm {p} reorders dimensions of size other than 1 ({list(xs)})")


def _transpose_unit_replace(m: Match, r):
    xs = _static_shape(m["x"])
    p = _perm(m.root, len(xs))
    return r.op("Reshape", m["x"], r.const(np.array([xs[a] for a in p], np.int64), "unit_transpose_shape"))


TRANSPOSE_UNIT = Rule(
    "transpose-unit-dims", Op("Transpose", Var("x")), check=_transpose_unit_check, replace=_transpose_unit_replace,
    doc="Transpose that moves only dimensions of size 1 (static shape) -> Reshape (no data movement)")


def _reshape_transpose_plan(m: Match) -> tuple | str:
    """(new shape of x, new perm) so that Transpose(Reshape(x, s'), p') == Reshape(Transpose(x, p), s)."""
    xs = _static_shape(m["x"])
    target = _static_shape(m.root.outputs[0])
    if xs is None or target is None:
        return "shapes are not static (or have a zero-size dimension)"
    p = _perm(m.node("t"), len(xs))
    if p is None or sorted(p) != list(range(len(xs))):
        return "perm is not a permutation of x's axes"
    order = [a for a in p if xs[a] != 1]  # x's axes of size other than 1, in the Transpose output's order
    if [xs[a] for a in order] != [d for d in target if d != 1]:
        return f"the Reshape to {list(target)} does more than add or drop dimensions of size 1"
    # x's dims of size other than 1 keep their order and take the target's non-1 positions; the 1s stay
    # where the target has them, so the permutation leaves them in place (the forms ONNX Runtime's
    # Transpose handles best, e.g. [0, 2, 1, 3])
    kept = sorted(order)
    slots = [t for t, d in enumerate(target) if d != 1]
    new_x = [1] * len(target)
    for slot, a in zip(slots, kept):
        new_x[slot] = xs[a]
    perm = list(range(len(target)))
    for slot, a in zip(slots, order):
        perm[slot] = slots[kept.index(a)]
    return new_x, perm


def _reshape_transpose_check(m: Match) -> str | None:
    plan = _reshape_transpose_plan(m)
    if isinstance(plan, str):
        return plan
    x = m["x"]
    p = x.producer
    merges_above = p is not None and p.op_type == "Reshape" and x.num_uses == 1 and not x.is_graph_output
    out = m.root.outputs[0]
    merges_below = (not out.is_graph_output and out.num_uses == 1 and out.users[0].op_type == "Transpose")
    if not (merges_above or merges_below):
        return "neither a Reshape above nor a Transpose below to merge with: moving the Reshape gains nothing"
    return None


def _reshape_transpose_replace(m: Match, r):
    from graphmill.ir import TensorType

    new_x, perm = _reshape_transpose_plan(m)
    rs = r.op("Reshape", m["x"], r.const(np.array(new_x, np.int64), "unit_reshape_shape"))
    dt = dtype_of(m["x"])
    if dt is not None:
        rs.type = TensorType(dt, tuple(new_x))
    return r.op("Transpose", rs, perm=perm)


RESHAPE_TRANSPOSE = Rule(
    "reshape-unit-before-transpose",
    Op("Reshape", Op("Transpose", Var("x"), name="t"), Const("shape"), name="reshape"),
    check=_reshape_transpose_check, replace=_reshape_transpose_replace,
    doc="Reshape(Transpose(x, p), s) where s only adds or drops 1s -> Transpose(Reshape(x, s'), p'), when a "
        "Reshape above or a Transpose below then merges with it")


def _unsqueeze_axes_plan(m: Match) -> list[int] | str:
    if opset(m.graph) < 13:
        return "Unsqueeze axes are an attribute before opset 13"
    xs = shape_of(m["x"])
    a1, a2 = int_list(m["a1"]), int_list(m["a2"])
    if xs is None or a1 is None or a2 is None:
        return "x's rank or the axes are unknown"
    r1 = len(xs) + len(a1)
    n1, n2 = normalize_axes(a1, r1), normalize_axes(a2, r1 + len(a2))
    if n1 is None or n2 is None or len(set(n1)) != len(n1) or len(set(n2)) != len(n2):
        return "axes out of range or repeated"
    marks = [False] * len(xs)
    for a in sorted(n1):
        marks.insert(a, True)
    for a in sorted(n2):
        marks.insert(a, True)
    return [i for i, t in enumerate(marks) if t]


UNSQUEEZE_CHAIN = Rule(
    "unsqueeze-chain",
    Op("Unsqueeze", Op("Unsqueeze", Var("x"), Const("a1"), name="u1"), Const("a2"), name="u2"),
    check=checked_by(_unsqueeze_axes_plan),
    replace=lambda m, r: r.op("Unsqueeze", m["x"], r.const(np.array(_unsqueeze_axes_plan(m), np.int64), "axes")),
    doc="Unsqueeze(Unsqueeze(x, a1), a2) -> Unsqueeze(x, a) (opset >= 13)")


# -- static shapes ----------------------------------------------------------------------------

def _shape_dims(node, xs: tuple) -> tuple:
    r = len(xs)
    start, end = node.attr("start", 0), node.attr("end", r)
    start = min(max(start + r if start < 0 else start, 0), r)
    end = min(max(end + r if end < 0 else end, 0), r)
    return xs[start:end]


def _shape_static_check(m: Match) -> str | None:
    xs = shape_of(m["x"])
    if xs is None:
        return "x's shape is unknown"
    dims = _shape_dims(m.root, xs)
    return _ok(all(isinstance(d, int) for d in dims), f"shape {list(dims)} is not static (would specialise it)")


SHAPE_STATIC = Rule(
    "shape-static", Op("Shape", Var("x")), check=_shape_static_check,
    replace=lambda m, r: r.const(np.array(_shape_dims(m.root, shape_of(m["x"])), dtype=np.int64), "shape"),
    doc="Shape of a static shape -> constant")


def _gather_shape_dims(m: Match):
    xs = shape_of(m["x"])
    if xs is None:
        return "x's shape is unknown"
    if m.root.attr("axis", 0) not in (0, -1):
        return "Gather axis is not 0"
    dims = _shape_dims(m.node("shape"), xs)
    idx = const_of(m["idx"])
    if idx is None or idx.dtype.kind not in "iu" or idx.ndim > 1:
        return "indices are not a scalar or 1-D integer constant"
    n = len(dims)
    flat = [int(i) for i in idx.reshape(-1)]
    if any(i < -n or i >= n for i in flat):
        return "index out of range"
    picked = [dims[i % n] for i in flat]
    if not all(isinstance(d, int) for d in picked):
        return f"selected dimensions {picked} are not static (would specialise them)"
    return np.array(picked, dtype=np.int64).reshape(idx.shape)


GATHER_SHAPE = Rule(
    "gather-shape", Op("Gather", Op("Shape", Var("x"), name="shape", single_use=False), Const("idx")),
    check=checked_by(_gather_shape_dims),
    replace=lambda m, r: r.const(_gather_shape_dims(m), "dim"),
    doc="Gather of static dimensions from Shape -> constant")

SHAPE_ARITH_OPS = ("Concat", "Unsqueeze", "Squeeze", "Gather", "Reshape", "Add", "Sub", "Mul", "Div")


def _shape_arith(m: Match):
    from .fold_constants import evaluate_numpy

    node = m.root
    if opset(m.graph) < 13:
        return "opset < 13 (attribute forms of axes)"
    args = []
    for v in node.inputs:
        if v is None:
            args.append(None)
            continue
        a = const_of(v)
        if a is None or a.dtype != np.int64 or a.size > 1024:
            return "inputs are not small int64 constants"
        args.append(a)
    if not args or args[0] is None:
        return "no inputs"
    if node.op_type in ("Add", "Sub", "Mul", "Div"):
        if len(args) != 2 or args[1] is None:
            return "binary op needs two inputs"
        a, b = args
        if node.op_type == "Add":
            out = a + b
        elif node.op_type == "Sub":
            out = a - b
        elif node.op_type == "Mul":
            out = a * b
        else:
            if np.any(b == 0):
                return "division by zero"
            q = np.abs(a) // np.abs(b)
            out = np.where((a < 0) != (b < 0), -q, q)  # C++ integer division truncates toward zero
        res = [np.asarray(out, dtype=np.int64)]
    else:
        res = evaluate_numpy(node, args)
        if res is None:
            return "not evaluable here"
    if res[0].size > 1024:
        return "result too large"
    return res[0]


SHAPE_ARITH = Rule(
    "shape-arith", Op(SHAPE_ARITH_OPS, allow_extra_inputs=True),
    check=checked_by(_shape_arith),
    replace=lambda m, r: r.const(_shape_arith(m), "shape_const"),
    doc="shape arithmetic on small int64 constants -> constant")

# -- sequences and dynamic shapes that a static size or the element count settles ----------------

SPLIT_PARTS_MAX = 256  # a Split of more outputs than this is left a sequence


def _split_sizes(m: Match) -> tuple[list[int], int] | str:
    """The sizes of the chunks SplitToSequence(x, split, axis) makes along its (normalized) axis."""
    seq = m.node("seq")
    xs = shape_of(m["x"])
    if xs is None:
        return "x's shape is unknown"
    axis = seq.attr("axis", 0)
    if not -len(xs) <= axis < len(xs):
        return f"axis {axis} is out of range for rank {len(xs)}"
    axis %= len(xs)
    length = xs[axis]
    if not isinstance(length, int) or length < 1:
        return f"the split axis has no static size ({length})"
    if "split" not in m:
        if not seq.attr("keepdims", 1):
            return "keepdims=0 (the chunks lose the axis: a Squeeze each)"
        sizes = [1] * length
    else:
        split = const_of(m["split"])
        if split is None or split.dtype.kind not in "iu" or split.ndim > 1:
            return "split is not a scalar or 1-D integer constant"
        if split.ndim == 0:
            if not seq.attr("keepdims", 1):  # the spec ignores keepdims beside a split, ONNX Runtime squeezes
                return "keepdims=0 with a scalar split (ONNX Runtime squeezes the axis, the spec does not)"
            step = int(split)
            if step < 1:
                return f"split {step} is not >= 1"
            sizes = [step] * (length // step) + ([length % step] if length % step else [])
        else:
            sizes = [int(v) for v in split]
            if any(v < 0 for v in sizes) or sum(sizes) != length:
                return f"split {sizes} does not add up to the axis size {length}"
    if len(sizes) > SPLIT_PARTS_MAX:
        return f"{len(sizes)} chunks (more than {SPLIT_PARTS_MAX})"
    return sizes, axis


def _sequence_at_plan(m: Match) -> tuple[list[int], int, int] | str:
    """The chunk sizes, the axis and the (non-negative) position SequenceAt reads, or why not."""
    plan = _split_sizes(m)
    if isinstance(plan, str):
        return plan
    if opset(m.graph) < 11:
        return "opset < 11"
    idx = const_of(m["i"])
    if idx is None or idx.dtype.kind not in "iu" or idx.size != 1:
        return "the position is not a constant integer"
    i, n = int(idx.reshape(-1)[0]), len(plan[0])
    if not -n <= i < n:
        return f"position {i} is out of range for {n} chunks"
    return plan[0], plan[1], i % n


def _sequence_at_replace(m: Match, r):
    sizes, axis, index = _sequence_at_plan(m)
    split = np.array(sizes, dtype=np.int64)
    if opset(m.graph) >= 13:
        parts = r.op("Split", m["x"], r.const(split, "split"), axis=axis, outputs=len(sizes))
    else:
        parts = r.op("Split", m["x"], axis=axis, split=[int(v) for v in split], outputs=len(sizes))
    parts = [parts] if len(sizes) == 1 else parts
    return parts[index]


SEQUENCE_AT_SPLIT = Rule(
    "sequence-at-split",
    Op("SequenceAt", Op("SplitToSequence", Var("x"), Opt(Var("split")), name="seq", single_use=False), Var("i")),
    check=checked_by(_sequence_at_plan),
    replace=_sequence_at_replace,
    doc="SequenceAt(SplitToSequence(x), i) -> output i of Split(x) (cse merges the Splits of one sequence)")


_TRACE_DEPTH = 8


@dataclass(frozen=True)
class DeclaredDim:
    """A shape entry read from a tensor's dimension (Shape, and what slices or gathers it): its declared size,
    an int or a symbol. Never baked into a constant: a model may declare a size its ops do not keep (a dynamo
    export declared an LSTM output's 9 time steps, which change with the input), so such an entry is only ever
    compared with x's own declared dimension at the same position, where equal declarations stand or fall
    together."""

    size: int | str | None


def _keeps_value(node) -> bool:
    """A Cast keeps a size only to int64 (to bool, int8 or float16 it changes: Cast(Cast(B, bool), int64) is 1)."""
    return node.op_type != "Cast" or node.attr("to") == int(DataType.INT64)


def _scalar_entry(v, depth: int = 0):
    """What a computed int64 scalar holds: an int (a constant), a ``DeclaredDim`` or None (unknown)."""
    a = const_of(v)
    if a is not None:
        return int(a.reshape(-1)[0]) if a.size == 1 and a.dtype.kind in "iu" else None
    n = v.producer if v is not None else None
    if n is None or depth > _TRACE_DEPTH:
        return None
    if n.op_type in ("Squeeze", "Cast", "Identity", "Reshape", "Unsqueeze") and _keeps_value(n):
        entries = _shape_entries(n.inputs[0], depth + 1) if n.inputs else None
        return entries[0] if entries is not None and len(entries) == 1 else None
    if n.op_type == "Gather" and n.attr("axis", 0) == 0 and len(n.inputs) == 2:
        entries, idx = _shape_entries(n.inputs[0], depth + 1), const_of(n.inputs[1])
        if entries is not None and idx is not None and idx.size == 1 and -len(entries) <= int(idx) < len(entries):
            return entries[int(idx)]
    return None


def _shape_entries(v, depth: int = 0) -> list | None:
    """The entries of a 1-D (or scalar) int64 shape value, each an int (a constant), a ``DeclaredDim`` (a
    tensor's dimension) or None (unknown); None when even its length is unknown. Follows the exporters' shape
    arithmetic: Shape (with start/end), Gather/Slice (step 1) of it, Squeeze/Unsqueeze/Reshape/Cast of a scalar,
    Concat."""
    if v is None:
        return None
    a = const_of(v)
    if a is not None:
        return [int(e) for e in a.reshape(-1)] if a.dtype.kind in "iu" and a.ndim <= 1 else None
    n = v.producer
    vs = shape_of(v)
    length_only = [None] * vs[0] if vs is not None and len(vs) == 1 and isinstance(vs[0], int) else None
    if n is None or depth > _TRACE_DEPTH:
        return length_only
    if n.op_type == "Shape":
        xs = shape_of(n.inputs[0])
        if xs is not None:
            # an empty dim_param names nothing: two of them are not one size
            return [DeclaredDim(d if isinstance(d, int) or (isinstance(d, str) and d) else None)
                    for d in _shape_dims(n, xs)]
    elif n.op_type == "Concat" and n.attr("axis", 0) in (0, -1):
        out: list = []
        for part in n.inputs:
            got = _shape_entries(part, depth + 1)
            if got is None:
                out = None
                break
            out += got
        if out is not None:
            return out
    elif n.op_type in ("Squeeze", "Unsqueeze", "Reshape", "Cast", "Identity") and vs is not None and len(vs) <= 1 \
            and _keeps_value(n):
        e = _scalar_entry(n.inputs[0], depth + 1) if n.inputs else None
        if vs == () or vs == (1,):
            return [e]
    elif n.op_type == "Gather" and n.attr("axis", 0) == 0 and len(n.inputs) == 2:
        entries, idx = _shape_entries(n.inputs[0], depth + 1), const_of(n.inputs[1])
        if entries is not None and idx is not None and idx.ndim <= 1 and all(
                -len(entries) <= int(i) < len(entries) for i in idx.reshape(-1)):
            return [entries[int(i)] for i in idx.reshape(-1)]
    elif n.op_type == "Slice" and len(n.inputs) >= 3 and opset(n.graph) >= 10:
        entries = _shape_entries(n.inputs[0], depth + 1)
        given = list(n.inputs[1:5]) + [None] * (5 - len(n.inputs))  # starts, ends, axes, steps
        consts = [const_of(v) for v in given]
        known = all(v is None or (c is not None and c.size == 1) for v, c in zip(given, consts))
        if entries is not None and known and consts[0] is not None and consts[1] is not None and (
                given[2] is None or int(consts[2].reshape(-1)[0]) in (0, -1)) and (
                given[3] is None or int(consts[3].reshape(-1)[0]) == 1):
            return entries[int(consts[0].reshape(-1)[0]):int(consts[1].reshape(-1)[0])]
    return length_only


def _reshape_computed(m: Match) -> tuple[np.ndarray, int] | str:
    """The target shape as a constant, and its allowzero, or why not."""
    cat = m.node("cat")
    if cat.attr("axis", 0) not in (0, -1):
        return "Concat is not along axis 0"
    entries = _shape_entries(cat.outputs[0])
    if entries is None:
        return "a computed part has no static length"
    constant_parts = all(const_of(v) is not None for v in cat.inputs if v is not None)
    if constant_parts:
        return "every part is a constant (shape-arith folds it)"
    xs = shape_of(m["x"]) or ()
    allowzero = m.root.attr("allowzero", 0)
    target: list[int] = []
    unknown: list[int] = []
    copies = False
    for i, e in enumerate(entries):
        if isinstance(e, DeclaredDim):
            if e.size is not None and i < len(xs) and xs[i] == e.size:
                target.append(0)  # x's own dimension at that position: 0 copies it
                copies = True
            else:
                unknown.append(i)
                target.append(-1)
        elif isinstance(e, int) and not isinstance(e, bool):
            if e == 0 and allowzero:
                return "a constant entry is 0 under allowzero=1 (the element count is unknown)"
            if e == -1:
                unknown.append(i)
            elif e < -1:
                return f"entry {e} is negative"
            copies |= e == 0
            target.append(e)
        else:
            unknown.append(i)
            target.append(-1)
    if len(unknown) > 1:
        return f"{len(unknown)} computed entries are not x's own dimensions (one can be -1)"
    if unknown and entries[unknown[0]] != -1 and any(
            t == 0 and not (i < len(xs) and isinstance(xs[i], int) and xs[i] >= 1) for i, t in enumerate(target)):
        # a -1 beside a copied dimension that may be 0 at run time: the element count cannot settle it (ONNX
        # Runtime refuses), where the computed entry held its value
        return "a -1 would stand beside a copied dimension that may be 0"
    return np.array(target, dtype=np.int64), (0 if copies else allowzero)


def _reshape_computed_replace(m: Match, r):
    target, allowzero = _reshape_computed(m)
    if opset(m.graph) < 14:  # no allowzero before opset 14: 0 always copies there
        return r.op("Reshape", m["x"], r.const(target, "shape"))
    return r.op("Reshape", m["x"], r.const(target, "shape"), allowzero=allowzero)


RESHAPE_COMPUTED = Rule(
    "reshape-computed-dims",
    Op("Reshape", Var("x"), Op("Concat", name="cat", single_use=False, allow_extra_inputs=True)),
    check=checked_by(_reshape_computed),
    replace=_reshape_computed_replace,
    doc="Reshape to a computed shape of x's own dimensions and constants -> Reshape to a constant (0s, one -1)")

def _expand_own_shape_check(m: Match) -> str | None:
    if const_of(m["shape"]) is not None:
        return "the target is a constant (expand-noop's case)"
    entries, xs = _shape_entries(m["shape"]), shape_of(m["x"])
    if entries is None or xs is None:
        return "the target's length or x's shape is unknown"
    if len(entries) > len(xs):
        return f"the target has more dimensions ({len(entries)}) than x ({len(xs)})"
    for e, d in zip(reversed(entries), reversed(xs)):
        size = e.size if isinstance(e, DeclaredDim) else e
        if size is None:
            return "a target entry is not known to be x's dimension or 1"
        if not (size == d or (size == 1 and not isinstance(e, DeclaredDim))):  # a declared 1 may be no 1 at run time
            return f"target entry {size!r} against x's dimension {d!r}"
    return None


EXPAND_OWN_SHAPE = Rule(
    "expand-to-own-shape", Op("Expand", Var("x"), Var("shape")), check=_expand_own_shape_check,
    replace=lambda m, r: m["x"],
    doc="Expand to a computed shape whose entries are x's own dimensions (the same symbol) or 1 -> x")

RULES = (IDENTITY, DROPOUT, RESHAPE_NOOP, TRANSPOSE_NOOP, CAST_NOOP, PAD_NOOP, SLICE_NOOP, EXPAND_NOOP,
         TRANSPOSE_PAIR, CAST_CHAIN, CASTLIKE, MUL_ONE, DIV_ONE, SUB_ZERO, ADD_ZERO_EXACT, ADD_ZERO_FLOAT,
         MUL_CONST_CHAIN, ADD_CONST_CHAIN, TRANSPOSE_THROUGH_ELEMENTWISE, TRANSPOSE_THROUGH_ELEMENTWISE_TRANSCENDENTAL,
         SQUEEZE_UNSQUEEZE, UNSQUEEZE_SQUEEZE, RESHAPE_CHAIN, TRANSPOSE_UNIT, RESHAPE_TRANSPOSE, UNSQUEEZE_CHAIN,
         SHAPE_STATIC, GATHER_SHAPE, SHAPE_ARITH, SEQUENCE_AT_SPLIT, RESHAPE_COMPUTED, EXPAND_OWN_SHAPE)


@register_pass
class Simplify(RewritePass):
    """Local simplifications (no-op ops, neutral elements, pairs and chains, static shapes)."""

    name = "simplify"
    rules = RULES
    preserves = frozenset()
