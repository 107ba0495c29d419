"""ONNX Runtime's contrib ops (``com.microsoft``) for what standard ONNX writes in several nodes.

The result runs on ONNX Runtime only (other runtimes do not know the ``com.microsoft`` domain), so
this pass is in the ``ort`` schedule, never in ``default``. Every rule is float-reassociating: ORT's
kernels compute the same function in another order. float32 only (the type every kernel below has
on ORT's CPU provider). The ``com.microsoft`` opset is imported when a rule fires.

Legal cases (Add/Mul operands in either order; inner nodes read only by the match unless said):

- ``ms-gelu-erf-*``: ``0.5 * x * (1 + Erf(x / sqrt(2)))`` in fuse-gelu's three orders (its
  patterns and constant checks) -> ``Gelu(x)``, at any opset (ONNX's Gelu needs opset 20).
  ``ms-fastgelu-tanh-*``: the tanh form -> ``FastGelu(x)`` (the same formula) when x's rank is known
  and at least 1 (ORT's kernel rejects a 0-d input).
- ``bias-gelu``: ``Gelu(Add(x, bias))`` (com.microsoft Gelu, or ONNX Gelu without approximation)
  -> ``BiasGelu(x, bias)``; ``bias-fastgelu``: FastGelu or ONNX ``Gelu(approximate="tanh")`` ->
  ``FastGelu(x, bias)``. The bias has x's static last dimension H and no other non-unit one (the
  kernels take a 1-D bias: a constant [1, 1, H] is stored as [H]); the Add's output has x's shape.
- ``skip-layernorm-bias`` / ``skip-layernorm``: ``LayerNormalization(Add(Add(x, bias), s))`` /
  ``LayerNormalization(Add(a, b))`` -> ``SkipLayerNormalization(input, skip, gamma, beta[, bias],
  epsilon)``. The kernel's constraints, checked by running it: input 2-D or 3-D; skip of the
  input's shape, or [1, S, H] / [S, H] for a 3-D input (the operand with the sum's shape becomes
  the input); gamma and beta 1-D [H], H static; the LayerNormalization over the last axis with
  stash_type 1 and its Mean/InvStdDev outputs unread. When the sum is also read elsewhere (pre-LN
  transformers: the residual stream), the node's fourth output ``input_skip_bias_sum`` replaces
  it; every such reader must come after the LayerNormalization (the fused node takes its place).
  Option ``skip_layernorm=false`` leaves these alone (without a "rule skipped" note: the ``ort``
  schedule sets it on purpose): on ORT 1.32's CPU provider the kernel is
  slower than Add + LayerNormalization (measured 6-8x on [1, 128..197, 512..768], one thread),
  on CUDA it is the faster form; ORT's own offline optimizer emits it on CPU too.
- ``fused-matmul-*``: MatMul (or FusedMatMul) whose input is a Transpose swapping the last two
  axes -> ``transA`` / ``transB`` (both operands of rank >= 2, transBatchA/B unset); whose input
  is ``Mul(x, s)`` or ``Div(x, s)``, or whose output is multiplied or divided by ``s``, with ``s``
  a one-element constant of rank <= the other operand's (it broadcasts nothing) -> ``alpha``
  (float32 arithmetic, as ORT's own MatMulScaleFusion). The Transpose / Mul / Div / MatMul
  absorbed must have no other reader; where it has one, the graph stays as it is.
  ``fused-matmul-batch-transpose-*``: an operand ``Transpose(Reshape(x))`` whose permutation
  FusedMatMul can read with ``transBatchA/B`` (and ``transA/B``) once only unit axes move --
  attention's ``[1, S, heads, d] -> [1, heads, S, d]`` and its ``[.., d, S]`` form -> the
  operand ``Reshape(x)`` to the shape that makes that so, with ``transBatch`` set: the Transpose
  goes and the two Reshapes are one. Static shapes only, and both operands of one rank (ORT's kernel
  refuses transBatch otherwise). The ``-again`` rules absorb into a
  FusedMatMul an earlier rule made (a MatMul with both operands scaled, say).
- ``fused-gemm``: ``Gemm`` followed by Relu, LeakyRelu, Sigmoid, Tanh or HardSigmoid ->
  ``FusedGemm(activation=..., activation_alpha/beta)`` (fuse-activation's parameters); the Gemm
  read only by the activation.

Refused: other element types; shapes the checks cannot prove (unknown ranks or dims); Clip after a
Gemm (FusedGemm's CPU kernel rejects it); Div by a constant 0; skip shapes the kernel rejects
(a 1-D skip, [B, 1, H]) or sums where neither operand has the result's shape (ORT 1.32 computes a
wrong sum for a [1, S, H] input with a [B, S, H] skip rather than failing, so the full-shape operand
is always made the input); batch transposes that move a non-unit axis past another.
"""

from __future__ import annotations

import numpy as np

from graphmill.ir import DataType, Node, TensorType, Value, infer_attr
from graphmill.ir.rewrite import REASSOCIATING, Const, Match, Op, Opt, Rule, Var

from ..base import Option, PassContext, register_pass
from ..cleanup.common import checked_by, const_of, dtype_of, folded_constant, shape_of
from ..rewrite_pass import RewritePass
from .activation import fused_activation_params
from .activation import activation_pattern as _activation_pattern
from .gelu import ERF_RULES, FORMS, TANH_RULES

MS = "com.microsoft"
F32_ONLY = "used for float32 only (ONNX Runtime's CPU kernel)"


def _import_ms(m: Match) -> None:
    m.graph.root.opset_imports.setdefault(MS, 1)


def _f32(*vs: Value | None) -> bool:
    return all(dtype_of(v) == DataType.FLOAT for v in vs)


def _known(d) -> bool:
    return isinstance(d, (int, str))


def _same_shape(a: tuple | None, b: tuple | None) -> bool:
    """Equal ranks and every dim the same static size or the same symbol (unknown dims prove nothing)."""
    return a is not None and b is not None and len(a) == len(b) and all(
        _known(x) and x == y for x, y in zip(a, b))


def _bias_1d(v: Value, h: int) -> Value | np.ndarray | str:
    """The bias as the kernels want it (1-D [H]): the value itself, a reshaped constant, or a reason."""
    s = shape_of(v)
    if s is None:
        return "the bias's shape is unknown"
    if len(s) == 1 and s[0] == h:
        return v
    a = const_of(v)
    if a is not None and a.size == h and a.ndim >= 1 and a.shape[-1] == h:
        return np.ascontiguousarray(a.reshape(h))
    return f"the bias of shape {list(s)} is not one value per last-dim element (H={h})"


# -- Gelu, FastGelu -----------------------------------------------------------------------------

def _gelu_check(form):
    def check(m: Match) -> str | None:
        why = form(m)
        if why:
            return why
        return None if _f32(m["x"]) else f"com.microsoft Gelu/FastGelu are {F32_ONLY}"
    return check


def _fastgelu_check(form):
    """ORT's FastGelu kernel rejects a 0-d input ("Input 0 is expected to have 1 or more dimensions"),
    and an input of unknown rank might be one."""
    gelu = _gelu_check(form)

    def check(m: Match) -> str | None:
        why = gelu(m)
        if why:
            return why
        xs = shape_of(m["x"])
        if xs is None:
            return "x's rank is unknown: com.microsoft FastGelu needs rank >= 1"
        return None if len(xs) >= 1 else "x is 0-d: com.microsoft FastGelu needs rank >= 1 (ONNX Runtime rejects it)"
    return check


def _emit_unary(op: str):
    def replace(m: Match, r):
        _import_ms(m)
        return r.op(op, m["x"], domain=MS, name=m.root.name)
    return replace


GELU_RULES = tuple(
    Rule(f"ms-{r.name}", r.pattern, check=_gelu_check(FORMS[r.name]), replace=_emit_unary("Gelu"),
         exactness=REASSOCIATING, doc="0.5*x*(1+erf(x/sqrt2)) -> com.microsoft Gelu(x), any opset")
    for r in ERF_RULES)
FASTGELU_RULES = tuple(
    Rule(f"ms-fast{r.name}", r.pattern, check=_fastgelu_check(FORMS[r.name]), replace=_emit_unary("FastGelu"),
         exactness=REASSOCIATING, doc="0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715x^3))) -> com.microsoft FastGelu(x)")
    for r in TANH_RULES)


def _bias_plan(m: Match) -> tuple[Value, Value | np.ndarray] | str:
    """(x, bias) of the Add feeding a Gelu: the operand with the Add's shape and a 1-D-able bias."""
    add = m.node("add")
    out = shape_of(add.outputs[0])
    if not _f32(*add.inputs):
        return f"BiasGelu/FastGelu are {F32_ONLY}"
    why = "neither Add operand has the sum's shape with a static last dim"
    for x, b in (add.inputs, reversed(add.inputs)):
        xs = shape_of(x)
        if not xs or not _same_shape(xs, out) or not isinstance(xs[-1], int):
            continue
        bias = _bias_1d(b, xs[-1])
        if not isinstance(bias, str):
            return x, bias
        why = bias
    return why


_bias_check = checked_by(_bias_plan)


def _bias_emit(op: str):
    def replace(m: Match, r):
        x, bias = _bias_plan(m)
        _import_ms(m)
        if isinstance(bias, np.ndarray):
            bias = r.const(bias, "gelu_bias")
        return r.op(op, x, bias, domain=MS, name=m.root.name)
    return replace


def _add() -> Op:
    return Op("Add", Var("p"), Var("q"), name="add")


def _exact_gelu(a) -> bool:
    return a in (None, "none")


BIAS_GELU_RULES = (
    Rule("bias-gelu", Op("Gelu", _add(), domain=MS, name="gelu"), check=_bias_check,
         replace=_bias_emit("BiasGelu"), exactness=REASSOCIATING,
         doc="com.microsoft Gelu(Add(x, bias[H])) -> com.microsoft BiasGelu(x, bias)"),
    Rule("bias-gelu-onnx", Op("Gelu", _add(), attrs={"approximate": _exact_gelu}, name="gelu"),
         check=_bias_check, replace=_bias_emit("BiasGelu"), exactness=REASSOCIATING,
         doc="Gelu(Add(x, bias[H])) -> com.microsoft BiasGelu(x, bias)"),
    Rule("bias-fastgelu", Op("FastGelu", _add(), domain=MS, name="gelu"), check=_bias_check,
         replace=_bias_emit("FastGelu"), exactness=REASSOCIATING,
         doc="com.microsoft FastGelu(Add(x, bias[H])) -> com.microsoft FastGelu(x, bias)"),
    Rule("bias-fastgelu-onnx", Op("Gelu", _add(), attrs={"approximate": "tanh"}, name="gelu"),
         check=_bias_check, replace=_bias_emit("FastGelu"), exactness=REASSOCIATING,
         doc="Gelu(Add(x, bias[H]), approximate=tanh) -> com.microsoft FastGelu(x, bias)"),
)


# -- SkipLayerNormalization ---------------------------------------------------------------------

def _skip_ok(s: tuple | None, out: tuple) -> bool:
    if _same_shape(s, out):
        return True
    return len(out) == 3 and s is not None and (
        _same_shape(s, out[1:]) or (len(s) == 3 and s[0] == 1 and _same_shape(s[1:], out[1:])))


def _sln_plan(m: Match) -> tuple | str:
    """(input, skip, bias value/array or None, other readers of the sum) or a reason."""
    ln, add = m.root, m.node("add")
    total = add.outputs[0]
    out = shape_of(total)
    if not _f32(total, *(v for v in ln.inputs[1:] if v is not None)):
        return f"SkipLayerNormalization is {F32_ONLY}"
    if out is None or len(out) not in (2, 3):
        return f"SkipLayerNormalization's kernel takes 2-D or 3-D input, the sum is {out and list(out)}"
    h = out[-1]
    if not isinstance(h, int):
        return "the hidden size (last dim) is not static"
    if ln.attr("axis", -1) not in (-1, len(out) - 1):
        return f"the LayerNormalization normalizes from axis {ln.attr('axis')}, not over the last one"
    if ln.attr("stash_type", 1) != 1:
        return "the LayerNormalization's stash_type is not float32"
    if any(o is not None and (o.num_uses or o.is_graph_output) for o in ln.outputs[1:]):
        return "the LayerNormalization's Mean/InvStdDev outputs are read"
    for name in ("gamma", "beta"):
        if name in m and tuple(shape_of(m[name]) or ()) != (h,):
            return f"{name} is not 1-D [{h}]"
    bias = None
    if "biasadd" in m.nodes:
        bias = _bias_1d(m["bias"], h)
        if isinstance(bias, str):
            return bias
        if not _same_shape(shape_of(m["x"]), shape_of(m.node("biasadd").outputs[0])):
            return "the bias broadcasts its Add's other operand to a bigger shape"
        pair = (m["x"], m["s"])
    else:
        pair = tuple(add.inputs)
    for inp, skip in (pair, pair[::-1]):
        if _same_shape(shape_of(inp), out) and _skip_ok(shape_of(skip), out):
            break
    else:
        return (f"the Add's operands {[list(shape_of(v) or ['?']) for v in pair]} are not an input of the sum's "
                f"shape {list(out)} and a skip of that shape, [1, S, H] or [S, H]")
    others = [u for u in total.users if u is not ln]
    if others:
        if total.is_graph_output:
            return "the sum is also a graph output"
        order = {id(n): i for i, n in enumerate(m.graph.nodes)}
        at = order[id(ln)]
        for u in others:
            if id(u) not in order or order[id(u)] < at:
                return f"the sum is read by {u.describe()} before the LayerNormalization (or in a subgraph)"
    return inp, skip, bias, others


_sln_check = checked_by(_sln_plan)


def _sln_replace(m: Match, r):
    inp, skip, bias, others = _sln_plan(m)
    _import_ms(m)
    ln, total = m.root, m.node("add").outputs[0]
    ins = [inp, skip, m["gamma"], m["beta"] if "beta" in m else None]
    if bias is not None:
        ins.append(r.const(bias, "skip_ln_bias") if isinstance(bias, np.ndarray) else bias)
    outs = [Value(), None, None, Value(type=total.type)] if others else 1
    res = r.op("SkipLayerNormalization", *ins, outputs=outs, domain=MS, name=ln.name,
               epsilon=float(ln.attr("epsilon", 1e-5)))
    unread = [None] * (len(ln.outputs) - 1)  # Mean / InvStdDev, declared but unread (the check says so)
    if not others:
        return [res] + unread
    # The sum's other readers read input_skip_bias_sum. Safe to rewire here: the root's replacement is
    # this new node's output, which try_rewrite never refuses, so the rewrite does not roll back.
    for u in others:
        u.replace_input_with(total, res[3])
    return [res[0]] + unread


def _ln(add: Op) -> Op:
    return Op("LayerNormalization", add, Var("gamma"), Opt(Var("beta")), name="ln")


SLN_RULES = (
    Rule("skip-layernorm-bias",
         _ln(Op("Add", Op("Add", Var("x"), Const("bias"), commutative=True, name="biasadd"), Var("s"),
                commutative=True, single_use=False, name="add")),
         check=_sln_check, replace=_sln_replace, exactness=REASSOCIATING,
         doc="LayerNormalization(Add(Add(x, bias[H]), s)) -> com.microsoft SkipLayerNormalization(x, s, ..., bias)"),
    Rule("skip-layernorm", _ln(Op("Add", Var("a"), Var("b"), single_use=False, name="add")),
         check=_sln_check, replace=_sln_replace, exactness=REASSOCIATING,
         doc="LayerNormalization(Add(a, b)) -> com.microsoft SkipLayerNormalization(a, b, gamma, beta)"),
)


# -- FusedMatMul --------------------------------------------------------------------------------

_FMM_DEFAULTS = {"alpha": 1.0, "transA": 0, "transB": 0, "transBatchA": 0, "transBatchB": 0}


def _fmm_attrs(mm) -> dict:
    return {k: mm.attr(k, d) for k, d in _FMM_DEFAULTS.items()}


def _rank(v: Value | None) -> int | None:
    s = shape_of(v)
    return None if s is None else len(s)


def _mm_operands_check(a: Value, b: Value) -> str | None:
    if not _f32(a, b):
        return f"FusedMatMul is {F32_ONLY}"
    if (_rank(a) or 0) < 2 or (_rank(b) or 0) < 2:
        return "an operand is not known to be of rank >= 2"
    return None


def _scale_factor(m: Match, scaled: Value) -> float | str:
    """The factor Mul/Div node ``scale`` applies to ``scaled``, as float32 (Div: 1/s, as ORT computes it)."""
    node, s = m.node("scale"), m["s"]
    a = const_of(s)
    if a is None or a.size != 1:
        return "the scale is not a one-element constant"
    if not _f32(s):
        return f"FusedMatMul is {F32_ONLY}"
    if (_rank(s) or 0) > (_rank(scaled) or 0):
        return "the scale constant has more dims than the scaled tensor (it broadcasts)"
    v = np.float32(a.reshape(-1)[0])
    if node.op_type == "Div":
        if node.inputs[1] is not s:
            return "the constant is the dividend, not the divisor"
        if v == 0:
            return "division by a constant 0"
        return float(np.float32(1) / v)
    return float(v)


def _fused_alpha(m: Match, mm: Node, scaled: Value) -> float | str:
    """FusedMatMul's alpha once node ``scale``'s factor joins it (float32, as ORT holds it), or why not: an alpha
    that overflows or underflows float32 ((x * 3e30) * 3e30 before a MatMul gave alpha inf, and ONNX Runtime -inf
    where the original gave nan: an outside check's fuzzing)."""
    f = _scale_factor(m, scaled)
    if isinstance(f, str):
        return f
    alpha = folded_constant(np.float64(np.float32(_fmm_attrs(mm)["alpha"])) * np.float64(f), np.float32)
    return f"alpha: {alpha}" if isinstance(alpha, str) else float(alpha)


def _emit_fmm(m: Match, r, mm, a: Value, b: Value, **changes):
    attrs = _fmm_attrs(mm)
    attrs.update(changes)
    _import_ms(m)
    return r.op("FusedMatMul", a, b, domain=MS, name=mm.name,
                alpha=float(attrs["alpha"]), transA=int(attrs["transA"]), transB=int(attrs["transB"]),
                transBatchA=int(attrs["transBatchA"]), transBatchB=int(attrs["transBatchB"]))


def _swaps_last_two(t) -> bool:
    perm = t.attr("perm")
    r = _rank(t.inputs[0])
    if perm is None:
        return r == 2
    perm = list(perm)
    n = len(perm)
    return n >= 2 and perm == list(range(n - 2)) + [n - 1, n - 2]


def _transpose_rule(side: str, domain: str) -> Rule:
    other = "b" if side == "a" else "a"
    t = Op("Transpose", Var("x"), name="t")
    ins = (t, Var(other)) if side == "a" else (Var(other), t)
    flag = "trans" + side.upper()

    def check(m: Match) -> str | None:
        mm = m.root
        if not _swaps_last_two(m.node("t")):
            return f"the Transpose's perm {m.node('t').attr('perm')} does not swap exactly the last two axes"
        if mm.attr("transBatch" + side.upper(), 0):
            return f"transBatch{side.upper()} is set"
        x, o = m["x"], m[other]
        return _mm_operands_check(*((x, o) if side == "a" else (o, x)))

    def replace(m: Match, r):
        mm = m.root
        a, b = (m["x"], m["b"]) if side == "a" else (m["a"], m["x"])
        return _emit_fmm(m, r, mm, a, b, **{flag: 1 - int(mm.attr(flag, 0))})

    root = "MatMul" if domain == "" else "FusedMatMul"
    return Rule(f"fused-matmul-transpose-{side}{'' if domain == '' else '-again'}",
                Op(root, *ins, domain=domain, name="mm"), check=check, replace=replace, exactness=REASSOCIATING,
                doc=f"{root}(.., Transpose(last two axes)) on input {side.upper()} -> com.microsoft FusedMatMul({flag})")


def _batch_perm(rank: int, trans: int) -> list[int]:
    """The axes FusedMatMul reads a ``transBatch`` operand in: [1 .. r-2, 0, r-1], or [1 .. r-2, r-1, 0] with
    ``trans`` (checked against numpy for ranks 3-5, both operands, every flag combination)."""
    return list(range(1, rank - 1)) + ([rank - 1, 0] if trans else [0, rank - 1])


def _batch_plan(m: Match, side: str) -> tuple[int, list[int]] | str:
    """(trans flag, shape to reshape the Reshape's input to) such that FusedMatMul reading that reshape with
    transBatch set sees what it saw through the Transpose; or a reason."""
    mm, t, x = m.root, m.node("t"), m.node("rs").outputs[0]
    if mm.attr("transBatch" + side.upper(), 0):
        return f"transBatch{side.upper()} is already set"
    xs = shape_of(x)
    if xs is None or len(xs) < 3 or not all(isinstance(d, int) and d > 0 for d in xs):
        return "the transposed operand is not of static rank >= 3 without zero dims"
    r = len(xs)
    other = shape_of(m["b" if side == "a" else "a"])
    if other is None or len(other) != r:  # ORT 1.32: "Two inputs should have same rank ... if transBatchA or
        # transBatchB is true"; a rank-2 weight beside a rank-3 operand (Linear after transpose(0, 1)) failed at run
        return (f"the other operand's rank is not the transposed operand's {r} (FusedMatMul's transBatch needs "
                "both of one rank)")
    perm = list(t.attr("perm") or range(r - 1, -1, -1))
    if mm.attr("trans" + side.upper(), 0):
        perm = perm[:-2] + [perm[-1], perm[-2]]
    for trans in (0, 1):
        inv = np.argsort(_batch_perm(r, trans))
        q = [perm[int(i)] for i in inv]
        moved = [a for a in q if xs[a] != 1]
        if moved == sorted(moved):  # only unit axes move: a Reshape, not a data movement
            return trans, [xs[a] for a in q]
    return f"Transpose perm {list(t.attr('perm') or [])} is not a batch transpose FusedMatMul can read"


def _batch_transpose_rule(side: str, domain: str) -> Rule:
    other = "b" if side == "a" else "a"
    t = Op("Transpose", Op("Reshape", Var("x"), Var("shape"), name="rs"), name="t")
    ins = (t, Var(other)) if side == "a" else (Var(other), t)

    def check(m: Match) -> str | None:
        x, o = m.node("rs").outputs[0], m[other]
        why = _mm_operands_check(*((x, o) if side == "a" else (o, x)))
        if why:
            return why
        p = _batch_plan(m, side)
        return p if isinstance(p, str) else None

    def replace(m: Match, r):
        trans, shape = _batch_plan(m, side)
        y = r.op("Reshape", m["x"], r.const(np.array(shape, np.int64), "batch_transposed_shape"))
        y.type = TensorType(dtype_of(m["x"]), tuple(shape))  # read by later rules' checks
        a, b = (y, m["b"]) if side == "a" else (m["a"], y)
        u = side.upper()
        return _emit_fmm(m, r, m.root, a, b, **{"trans" + u: trans, "transBatch" + u: 1})

    root = "MatMul" if domain == "" else "FusedMatMul"
    return Rule(f"fused-matmul-batch-transpose-{side}{'' if domain == '' else '-again'}",
                Op(root, *ins, domain=domain, name="mm"), check=check, replace=replace, exactness=REASSOCIATING,
                doc=f"{root}(.., Transpose(Reshape(x)) moving batch axes) on input {side.upper()} -> "
                    f"FusedMatMul(Reshape(x), transBatch{side.upper()}=1): one node fewer")


def _scale_in_rule(side: str, domain: str) -> Rule:
    other = "b" if side == "a" else "a"
    sc = Op(("Mul", "Div"), Var("x"), Const("s"), commutative=True, name="scale")
    ins = (sc, Var(other)) if side == "a" else (Var(other), sc)

    def check(m: Match) -> str | None:
        x, o = m["x"], m[other]
        why = _mm_operands_check(*((x, o) if side == "a" else (o, x)))
        if why:
            return why
        f = _fused_alpha(m, m.root, x)
        return f if isinstance(f, str) else None

    def replace(m: Match, r):
        mm = m.root
        a, b = (m["x"], m["b"]) if side == "a" else (m["a"], m["x"])
        return _emit_fmm(m, r, mm, a, b, alpha=_fused_alpha(m, mm, m["x"]))

    root = "MatMul" if domain == "" else "FusedMatMul"
    return Rule(f"fused-matmul-scale-{side}{'' if domain == '' else '-again'}",
                Op(root, *ins, domain=domain, name="mm"), check=check, replace=replace, exactness=REASSOCIATING,
                doc=f"{root} of Mul/Div(x, scalar const) on input {side.upper()} -> com.microsoft FusedMatMul(alpha)")


def _scale_out_rule(domain: str) -> Rule:
    root = "MatMul" if domain == "" else "FusedMatMul"
    mm = Op(root, Var("a"), Var("b"), domain=domain, name="mm")

    def check(m: Match) -> str | None:
        why = _mm_operands_check(m["a"], m["b"])
        if why:
            return why
        f = _fused_alpha(m, m.node("mm"), m.node("mm").outputs[0])
        return f if isinstance(f, str) else None

    def replace(m: Match, r):
        node = m.node("mm")
        return _emit_fmm(m, r, node, m["a"], m["b"], alpha=_fused_alpha(m, node, node.outputs[0]))

    return Rule(f"fused-matmul-scale-out{'' if domain == '' else '-again'}",
                Op(("Mul", "Div"), mm, Const("s"), commutative=True, name="scale"),
                check=check, replace=replace, exactness=REASSOCIATING,
                doc=f"Mul/Div({root}(a, b), scalar const) -> com.microsoft FusedMatMul(alpha)")


FMM_RULES = tuple(
    rule for domain in ("", MS) for rule in (
        _transpose_rule("a", domain), _transpose_rule("b", domain),
        _batch_transpose_rule("a", domain), _batch_transpose_rule("b", domain),
        _scale_in_rule("a", domain), _scale_in_rule("b", domain), _scale_out_rule(domain)))


# -- FusedGemm ----------------------------------------------------------------------------------

GEMM_ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid")


def _fused_gemm_check(m: Match) -> str | None:
    if m.root.op_type not in GEMM_ACTIVATIONS:
        return f"FusedGemm's CPU kernel has no {m.root.op_type} activation"
    if not _f32(m["x"]):
        return f"FusedGemm is {F32_ONLY}"
    p = fused_activation_params(m)
    return p if isinstance(p, str) else None


def _fused_gemm(m: Match, r):
    p = fused_activation_params(m)
    gemm = m.node("producer")
    attrs = dict(gemm.attrs)
    attrs["activation"] = infer_attr("activation", p["op"])
    for k, v in p.items():
        if k != "op":
            attrs[f"activation_{k}"] = infer_attr(f"activation_{k}", float(v))
    _import_ms(m)
    return r.op("FusedGemm", *gemm.inputs, domain=MS, attrs=attrs, name=gemm.name)


FUSED_GEMM = Rule("fused-gemm", _activation_pattern(("Gemm",)), check=_fused_gemm_check, replace=_fused_gemm,
                  exactness=REASSOCIATING, doc="Gemm + Relu/LeakyRelu/Sigmoid/Tanh/HardSigmoid -> com.microsoft FusedGemm")


@register_pass
class FuseOrtContrib(RewritePass):
    """ONNX Runtime com.microsoft ops: (Bias/Fast)Gelu, SkipLayerNorm, FusedMatMul, FusedGemm (ORT only)."""

    name = "fuse-ort-contrib"
    options = RewritePass.options + (
        Option("skip_layernorm", bool, True,
               "emit SkipLayerNormalization (fewest nodes; ORT 1.32's CPU kernel is slower than Add + "
               "LayerNormalization, its CUDA one faster)"),
    )
    rules = SLN_RULES + GELU_RULES + FASTGELU_RULES + BIAS_GELU_RULES + FMM_RULES + (FUSED_GEMM,)
    exactness = REASSOCIATING
    preserves = frozenset()

    def active_rules(self, ctx: PassContext):
        rules = super().active_rules(ctx)
        return rules if self.skip_layernorm else [r for r in rules if r not in SLN_RULES]
