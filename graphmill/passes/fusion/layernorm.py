"""The decomposed layer normalization exporters emit -> ``LayerNormalization`` (opset >= 17).

Pattern (x of a float type; Add/Mul operands in either order)::

    mean = ReduceMean(x, axes)          d = Sub(x, mean)
    var  = ReduceMean(Pow(d, 2), axes)  y = Div(d, Sqrt(Add(var, eps)))      (or Mul(d, d): the ``-mul`` rules)
    [y = Mul(y, gamma)] [y = Add(y, beta)]

Legal cases: both ReduceMeans over the same trailing axes (given as attribute or constant
input, keepdims=1), those trailing dimensions static, exponent 2, eps / gamma / beta constants
of x's element type, gamma and beta broadcastable to the normalized shape alone; ``d`` read by
exactly the Pow and the Div, every other inner value only by the pattern. The result is
``LayerNormalization(x, gamma, beta, axis=-k, epsilon=eps)`` (gamma of ones when there is no
Mul). Float-reassociating: ORT computes mean and variance in one pass, in float32 (stash_type).

Refused: axes that are not trailing or differ, symbolic normalized dimensions (the scale tensor
must be materialised), gamma/beta varying along the non-normalized axes, other exponents,
shared intermediates; models importing opset < 17 are left as they are, with a note.
"""

from __future__ import annotations

import numpy as np

from graphmill.ir.rewrite import REASSOCIATING, Const, Match, Op, Opt, Rule, Var

from ..base import PassContext, PassResult, register_pass
from ..cleanup.common import FLOAT_TYPES, axes_of, checked_by, const_of, dtype_of, normalize_axes, opset, shape_of
from ..rewrite_pass import RewritePass

LN_OPSET = 17


def _core(square: str = "Pow") -> Op:
    """The pattern with the variance's square as ``Pow(d, 2)`` or as ``Mul(d, d)`` (hand-written layer norms)."""
    sub = lambda: Op("Sub", Var("x"), Op("ReduceMean", Var("x"), Opt(Const("ax1")), name="rm1"),  # noqa: E731
                     name="sub", single_use=False)
    sq = Op("Pow", sub(), Const("two"), name="pow") if square == "Pow" else Op("Mul", sub(), sub(), name="pow")
    var = Op("ReduceMean", sq, Opt(Const("ax2")), name="rm2")
    std = Op("Sqrt", Op("Add", var, Const("eps"), commutative=True, name="addeps"), name="sqrt")
    return Op("Div", sub(), std, name="div")


def _axes(m: Match):
    xs = shape_of(m["x"])
    if xs is None:
        return "x's rank is unknown"
    r = len(xs)
    a1, a2 = axes_of(m.node("rm1"), 1), axes_of(m.node("rm2"), 1)
    if not a1 or not a2:
        return "ReduceMean axes unknown or absent"
    for n in (m.node("rm1"), m.node("rm2")):
        if n.attr("keepdims", 1) != 1:
            return "ReduceMean without keepdims"
    n1, n2 = normalize_axes(a1, r), normalize_axes(a2, r)
    if n1 is None or n2 is None or sorted(n1) != sorted(n2):
        return f"the two ReduceMeans reduce different axes ({a1}, {a2})"
    k = len(n1)
    if sorted(n1) != list(range(r - k, r)):
        return f"axes {a1} are not the trailing ones"
    norm = xs[r - k:]
    if not all(isinstance(d, int) for d in norm):
        return f"normalized dimensions {list(norm)} are not static"
    return k, tuple(norm)


def _param(m: Match, name: str, norm: tuple):
    a = const_of(m[name])
    if a is None:
        return f"{name} is not constant"
    if dtype_of(m[name]) != dtype_of(m["x"]):
        return f"{name}'s element type differs from x's"
    if a.ndim > len(shape_of(m["x"])):  # its leading 1s broadcast the result to a higher rank (a fuzzer)
        return f"{name} of shape {list(a.shape)} would broadcast x to a higher rank"
    while a.ndim > len(norm) and a.shape[0] == 1:
        a = a.reshape(a.shape[1:])
    if a.ndim > len(norm):
        return f"{name} of shape {list(a.shape)} varies along non-normalized axes"
    try:
        return np.ascontiguousarray(np.broadcast_to(a, norm))
    except ValueError:
        return f"{name} of shape {list(a.shape)} does not broadcast to the normalized shape {list(norm)}"


def _plan(m: Match):
    if dtype_of(m["x"]) not in FLOAT_TYPES:
        return "x is not float16/32/64"
    sub = m.node("sub")
    out = sub.outputs[0]
    users = {id(u) for u in out.users}
    square = m.node("pow")
    uses = 3 if square.op_type == "Mul" else 2  # Mul(d, d) reads d twice
    if out.is_graph_output or out.num_uses != uses or users != {id(square), id(m.node("div"))}:
        return "x - mean is read outside the pattern"
    eps = const_of(m["eps"])
    if square.op_type == "Pow":
        two = const_of(m["two"])
        if two is None or two.size != 1 or float(two.reshape(-1)[0]) != 2.0:
            return "the exponent is not 2"
    if eps is None or eps.size != 1:
        return "epsilon is not a scalar constant"
    ax = _axes(m)
    if isinstance(ax, str):
        return ax
    for name, c in (("epsilon", eps), ("the exponent", const_of(m["two"]) if "two" in m else None)):
        if c is not None and c.ndim > len(shape_of(m["x"])):  # [1, 1, 1, 1, 1] on x [N, 5]: the output grew
            return f"{name} of shape {list(c.shape)} would broadcast x to a higher rank (a fuzzer)"
    k, norm = ax
    gamma = _param(m, "gamma", norm) if "gamma" in m.values else np.ones(norm, dtype=const_of(m["eps"]).dtype)
    if isinstance(gamma, str):
        return gamma
    beta = _param(m, "beta", norm) if "beta" in m.values else None
    if isinstance(beta, str):
        return beta
    if opset(m.graph) < LN_OPSET:
        return f"LayerNormalization needs opset >= {LN_OPSET}, the model imports {opset(m.graph)}"
    return k, float(eps.reshape(-1)[0]), gamma.astype(dtype_of(m["x"]).numpy()), beta


_check = checked_by(_plan)


def _replace(m: Match, r):
    k, eps, gamma, beta = _plan(m)
    ins = [m["x"], r.const(gamma, "ln_scale")]
    if beta is not None:
        ins.append(r.const(beta.astype(gamma.dtype), "ln_bias"))
    return r.op("LayerNormalization", *ins, axis=-k, epsilon=eps)


def _rules(square: str, suffix: str) -> tuple[Rule, Rule, Rule]:
    """The three rules (with scale and bias, with scale, plain) for one form of the variance's square; each
    smaller one leaves a match to a bigger one that fires at its reader."""
    affine = Rule(f"layernorm-affine{suffix}",
                  Op("Add", Op("Mul", _core(square), Const("gamma"), commutative=True, name="mul"), Const("beta"),
                     commutative=True, name="addb"),
                  check=_check, replace=_replace, exactness=REASSOCIATING,
                  doc=f"decomposed LayerNorm ({square} square) with scale and bias -> LayerNormalization")
    scale = Rule(f"layernorm-scale{suffix}",
                 Op("Mul", _core(square), Const("gamma"), commutative=True, name="mul"),
                 check=lambda m: _check(m) or _defer(m, affine), replace=_replace, exactness=REASSOCIATING,
                 doc=f"decomposed LayerNorm ({square} square) with scale -> LayerNormalization")
    plain = Rule(f"layernorm{suffix}", _core(square), check=lambda m: _check(m) or _defer(m, scale, affine),
                 replace=_replace, exactness=REASSOCIATING,
                 doc=f"decomposed LayerNorm ({square} square) -> LayerNormalization")
    return affine, scale, plain


LN_AFFINE, LN_SCALE, LN_PLAIN = _rules("Pow", "")
LN_AFFINE_MUL, LN_SCALE_MUL, LN_PLAIN_MUL = _rules("Mul", "-mul")


def _defer(m: Match, *bigger: Rule) -> str | None:
    """Leave the match to a bigger rule that will fire at the single reader of the root."""
    out = m.root.outputs[0]
    if out.num_uses != 1 or out.is_graph_output:
        return None
    user = out.users[0]
    frontier = [user] + ([u for u in user.outputs[0].users] if user.outputs and user.outputs[0] is not None
                         and user.outputs[0].num_uses == 1 else [])
    for rule in bigger:
        for node in frontier:
            if node.op_type in rule.pattern.types:
                bm = rule.match(m.graph, node)
                if bm is not None and (rule.check is None or rule.check(bm) is None):
                    return f"left for the larger rule {rule.name!r} at {node.describe()}"
    return None


@register_pass
class FuseLayerNorm(RewritePass):
    """Decomposed layer normalization -> LayerNormalization where the opset has it (>= 17)."""

    name = "fuse-layernorm"
    rules = (LN_AFFINE, LN_SCALE, LN_PLAIN, LN_AFFINE_MUL, LN_SCALE_MUL, LN_PLAIN_MUL)
    exactness = REASSOCIATING
    preserves = frozenset()

    def run(self, graph, ctx: PassContext) -> PassResult:
        if opset(graph) >= LN_OPSET:
            return super().run(graph, ctx)
        found = sum(1 for g in graph.all_graphs() for n in g.nodes
                    if n.op_type == "Div" and (LN_PLAIN.match(g, n) or LN_PLAIN_MUL.match(g, n)) is not None)
        notes = [f"{found} layer-norm pattern(s) left decomposed: LayerNormalization needs opset >= {LN_OPSET}, "
                 f"the model imports {opset(graph)}"] if found else []
        return PassResult(False, {"left_for_opset": found} if found else {}, notes)
