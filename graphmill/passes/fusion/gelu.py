"""The decomposed GELU forms exporters emit -> ``Gelu`` (opset >= 20).

Legal cases (``x`` any float tensor; Mul/Add operands in either order; every inner node read only
by the pattern):
- erf form ``0.5 * x * (1 + erf(x / sqrt(2)))`` (``x / 1.41421`` or ``x * 0.70710``), with the 0.5
  applied first, last, or to the ``(1 + erf)`` factor -> ``Gelu(x)``. Float-reassociating: the
  same function, evaluated in another order.
- tanh form ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`` (``x^3`` as ``Pow(x, 3)``
  or ``x * (x * x)``) -> ``Gelu(x, approximate="tanh")``. ONNX defines Gelu's tanh mode as exactly
  this formula, so the rewrite is float-reassociating too (it does not swap the tanh
  approximation for the exact GELU -- that would be an approximate rewrite, not offered).

Constants must equal their GELU values to 1e-6 relative. Refused: other constants, inner
values with other readers, non-float types; models importing opset < 20 are left as they are,
with a note counting the patterns found (Gelu does not exist there).
"""

from __future__ import annotations

import math

import numpy as np

from graphmill.ir import Graph
from graphmill.ir.rewrite import REASSOCIATING, Const, Match, Op, Rule, Var

from ..base import GraphNote, PassContext, PassResult, register_pass
from ..cleanup.common import FLOAT_TYPES, broadcast_keeps, const_of, dtype_of, opset, shape_of
from ..rewrite_pass import RewritePass

GELU_OPSET = 20


def _near(v, want: float) -> bool:
    a = const_of(v)
    return a is not None and a.size == 1 and bool(np.isclose(float(a.reshape(-1)[0]), want, rtol=1e-6, atol=0))


def _outer_forms(plus1: Op) -> list[Op]:
    """0.5 * x * plus1 in the three orders exporters use."""
    return [
        Op("Mul", Op("Mul", Var("x"), plus1, commutative=True, name="xm"), Const("half"),
           commutative=True, name="root"),
        Op("Mul", Op("Mul", Var("x"), Const("half"), commutative=True, name="xh"), plus1,
           commutative=True, name="root"),
        Op("Mul", Var("x"), Op("Mul", plus1, Const("half"), commutative=True, name="ph"),
           commutative=True, name="root"),
    ]


def _erf_plus1() -> Op:
    scaled = Op(("Div", "Mul"), Var("x"), Const("k"), name="scale")
    return Op("Add", Op("Erf", scaled, name="erf"), Const("one"), commutative=True, name="plus1")


def _tanh_plus1(cube: Op) -> Op:
    inner = Op("Add", Var("x"), Op("Mul", cube, Const("c"), commutative=True, name="cm"),
               commutative=True, name="inner")
    t = Op("Tanh", Op("Mul", inner, Const("s"), commutative=True, name="ts"), name="tanh")
    return Op("Add", t, Const("one"), commutative=True, name="plus1")


#: the pattern's constants (those of one form or the other)
CONSTANTS = ("half", "one", "k", "three", "c", "s")


def _common(m: Match) -> str | None:
    if dtype_of(m["x"]) not in FLOAT_TYPES:
        return "x is not float16/32/64"
    if not _near(m["one"], 1.0):
        return "the added constant is not 1"
    if not _near(m["half"], 0.5):
        return "the scaling constant is not 0.5"
    return _keeps_shape(m)


def _keeps_shape(m: Match) -> str | None:
    """A constant of more dimensions than x broadcasts the result to them, which Gelu(x) would not (a fuzzer's
    0.5 of shape [1, 1, 1] on x [N, 5]: the output [1, N, 5] became [N, 5]); a 0-d one never does."""
    for name in CONSTANTS:
        a = const_of(m[name]) if name in m else None
        if a is not None and a.ndim and not broadcast_keeps(shape_of(m["x"]), a.shape):
            return f"the constant {name} of shape {list(a.shape)} would broadcast x {shape_of(m['x'])} to another shape"
    return None


def _erf_form(m: Match) -> str | None:
    why = _common(m)
    if why:
        return why
    scale = m.node("scale")
    want = math.sqrt(2.0) if scale.op_type == "Div" else 1.0 / math.sqrt(2.0)
    return None if _near(m["k"], want) else f"x is scaled by {const_of(m['k'])}, not 1/sqrt(2)"


def _tanh_form(m: Match) -> str | None:
    why = _common(m)
    if why:
        return why
    if "three" in m and not _near(m["three"], 3.0):
        return "the power is not 3"
    if not _near(m["c"], 0.044715):
        return "the cubic coefficient is not 0.044715"
    if not _near(m["s"], math.sqrt(2.0 / math.pi)):
        return "the tanh argument is not scaled by sqrt(2/pi)"
    return None


def _with_opset(form):
    def check(m: Match) -> str | None:
        why = form(m)
        if why:
            return why
        if opset(m.graph) < GELU_OPSET:
            return f"Gelu needs opset >= {GELU_OPSET}, the model imports {opset(m.graph)}"
        return None
    return check


ERF_RULES = tuple(
    Rule(f"gelu-erf-{i}", pat, check=_with_opset(_erf_form), exactness=REASSOCIATING,
         replace=lambda m, r: r.op("Gelu", m["x"]), doc="0.5*x*(1+erf(x/sqrt2)) -> Gelu(x)")
    for i, pat in enumerate(_outer_forms(_erf_plus1())))

_CUBES = (Op("Pow", Var("x"), Const("three"), name="cube"),
          Op("Mul", Var("x"), Op("Mul", Var("x"), Var("x"), name="sq"), commutative=True, name="cube"))
TANH_RULES = tuple(
    Rule(f"gelu-tanh-{j}{i}", pat, check=_with_opset(_tanh_form), exactness=REASSOCIATING,
         replace=lambda m, r: r.op("Gelu", m["x"], approximate="tanh"),
         doc="0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715x^3))) -> Gelu(x, approximate=tanh)")
    for j, cube in enumerate(_CUBES) for i, pat in enumerate(_outer_forms(_tanh_plus1(cube))))

FORMS = {r.name: _erf_form for r in ERF_RULES} | {r.name: _tanh_form for r in TANH_RULES}


@register_pass
class FuseGelu(RewritePass):
    """Decomposed GELU (erf form, tanh form) -> Gelu where the opset has it (>= 20)."""

    name = "fuse-gelu"
    rules = ERF_RULES + TANH_RULES
    exactness = REASSOCIATING
    preserves = frozenset()

    def run(self, graph, ctx: PassContext) -> PassResult:
        if opset(graph) >= GELU_OPSET:
            return super().run(graph, ctx)
        rules = self.active_rules(ctx)
        found = count_gelu_patterns(graph, rules)

        def left(final: Graph) -> str | None:  # a later pass (the ort schedule's fuse-ort-contrib) may fuse them
            n = count_gelu_patterns(final, rules)
            return (f"{n} GELU pattern(s) left decomposed: Gelu needs opset >= {GELU_OPSET}, "
                    f"the model imports {opset(final)}") if n else None

        return PassResult(False, {"left_for_opset": found} if found else {}, [GraphNote(left)] if found else [])


def count_gelu_patterns(graph: Graph, rules) -> int:
    """Decomposed GELUs (erf or tanh form) in ``graph`` and its subgraphs that ``rules`` match."""
    found = 0
    for g in graph.all_graphs():
        for node in g.nodes:
            if node.op_type == "Mul" and any(
                    (m := r.match(g, node)) is not None and FORMS[r.name](m) is None for r in rules):
                found += 1
    return found
