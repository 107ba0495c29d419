"""Conv / Gemm followed by an activation, as one fused op.

Default (``emit="meta"``): nothing ONNX sees changes. The producer gets
``meta["fused_activation"] = {"op": "Relu", ...attributes}`` and the activation node
``meta["fused_into"] = <producer name>``, so the simulator can cost them as one op
(exact: the graph computes what it computed).

``emit="fused-conv"``: Conv + activation become ``com.microsoft::FusedConv`` (ONNX Runtime's
contrib op) with ``activation`` and ``activation_params``; the ``com.microsoft`` opset is imported
if it is not. Only float32 Conv (FusedConv's CPU kernel) with a constant-bounded Clip.
Float-reassociating: ORT applies the activation inside its convolution kernel.

With ``emit="fused-conv"`` an activation applied to a Concat of Convs (what ``merge-ops`` makes of
Conv -> Relu branches) moves back into each Conv as a FusedConv, and SiLU written as ``x * Sigmoid(x)`` also becomes ``com.microsoft::QuickGelu``
(alpha=1), which computes exactly that (FusedConv has no Swish activation).

Legal activations: Relu, LeakyRelu(alpha), Sigmoid, Tanh, HardSigmoid(alpha, beta),
Clip(min, max) with constant bounds (attributes before opset 11). The producer must have no
other reader (its pre-activation output would be lost) and must not already be marked.

Refused: producers with several readers or that are graph outputs, activations with
non-constant bounds, Gemm for ``fused-conv`` (no such ORT op), other element types for FusedConv.
"""

from __future__ import annotations

from graphmill.ir import DataType, infer_attr
from graphmill.ir.rewrite import EXACT, REASSOCIATING, Match, Op, Opt, Rule, Var

from ..base import Option, PassContext, register_pass
from ..cleanup.common import concat_producers, const_scalar, dtype_of, opset
from ..rewrite_pass import RewritePass

ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "Clip")


def fused_activation_params(m: Match) -> dict | str:
    act = m.root
    op = act.op_type
    if op == "LeakyRelu":
        return {"op": op, "alpha": float(act.attr("alpha", 0.01))}
    if op == "HardSigmoid":
        return {"op": op, "alpha": float(act.attr("alpha", 0.2)), "beta": float(act.attr("beta", 0.5))}
    if op == "Clip":
        if opset(m.graph) < 11:
            return {"op": op, "min": float(act.attr("min", -3.4028234663852886e38)),
                    "max": float(act.attr("max", 3.4028234663852886e38))}
        lo = const_scalar(m["lo"]) if "lo" in m else -3.4028234663852886e38
        hi = const_scalar(m["hi"]) if "hi" in m else 3.4028234663852886e38
        if lo is None or hi is None:
            return "Clip bounds are not constant scalars"
        return {"op": op, "min": lo, "max": hi}
    return {"op": op}


def activation_pattern(producers: tuple[str, ...]) -> Op:
    return Op(ACTIVATIONS, Op(producers, Var("x"), Var("w"), Opt(Var("b")), name="producer",
                              allow_extra_inputs=True),
              Opt(Var("lo")), Opt(Var("hi")), name="act")


def _mark_check(m: Match) -> str | None:
    if "fused_activation" in m.node("producer").meta or "fused_into" in m.root.meta:
        return "already marked"
    p = fused_activation_params(m)
    return p if isinstance(p, str) else None


def _mark(m: Match, r):
    m.node("producer").meta["fused_activation"] = fused_activation_params(m)
    m.root.meta["fused_into"] = m.node("producer").name
    return list(m.root.outputs)  # the graph is unchanged: the rule only annotates


MARK = Rule("mark-activation", activation_pattern(("Conv", "Gemm")), check=_mark_check, replace=_mark, exactness=EXACT,
            doc="annotate Conv/Gemm + activation as one fused op (meta only)")


def _fused_conv_check(m: Match) -> str | None:
    if m.node("producer").op_type != "Conv":
        return "FusedConv fuses Conv only"
    if dtype_of(m["x"]) != DataType.FLOAT:
        return "FusedConv's CPU kernel is float32 only"
    p = fused_activation_params(m)
    return p if isinstance(p, str) else None


def _fused_conv(m: Match, r):
    m.graph.root.opset_imports.setdefault("com.microsoft", 1)
    return _fused_conv_node(r, m.node("producer"), fused_activation_params(m))


FUSED_CONV = Rule("fused-conv", activation_pattern(("Conv",)), check=_fused_conv_check, replace=_fused_conv,
                  exactness=REASSOCIATING, doc="Conv + activation -> com.microsoft FusedConv")


def _concat_convs(m: Match) -> list | str:
    """The Convs feeding the Concat under the activation, each read only there, or why not."""
    convs = concat_producers(m.node("concat"), ("Conv",))
    if not isinstance(convs, str) and any(dtype_of(c.outputs[0]) != DataType.FLOAT for c in convs):
        return "FusedConv's CPU kernel is float32 only"
    return convs


def _into_concat_check(m: Match) -> str | None:
    convs = _concat_convs(m)
    if isinstance(convs, str):
        return convs
    p = fused_activation_params(m)
    return p if isinstance(p, str) else None


def _fused_conv_node(r, conv, params: dict):
    attrs = dict(conv.attrs)
    values = [v for k, v in params.items() if k != "op"]
    attrs["activation"] = infer_attr("activation", params["op"])
    if values:
        attrs["activation_params"] = infer_attr("activation_params", [float(x) for x in values])
    return r.op("FusedConv", *conv.inputs, domain="com.microsoft", attrs=attrs, name=conv.name)


def _into_concat(m: Match, r):
    m.graph.root.opset_imports.setdefault("com.microsoft", 1)
    params = fused_activation_params(m)
    fused = [_fused_conv_node(r, c, params) for c in _concat_convs(m)]
    concat = m.node("concat")
    return r.op("Concat", *fused, attrs=dict(concat.attrs), name=concat.name)


# merge-ops hoists Conv -> Relu -> Concat branches to Concat -> one Relu (fewer standard nodes); for
# ONNX Runtime the activation goes back inside each Conv, where its kernel applies it for free.
INTO_CONCAT = Rule("activation-into-concat",
                   Op(ACTIVATIONS, Op("Concat", allow_extra_inputs=True, name="concat"), Opt(Var("lo")),
                      Opt(Var("hi")), name="act"),
                   check=_into_concat_check, replace=_into_concat, exactness=REASSOCIATING,
                   doc="activation(Concat(Conv, Conv, ...)) -> Concat(FusedConv, FusedConv, ...) "
                       "(emit=fused-conv only)")


def _silu_check(m: Match) -> str | None:
    if dtype_of(m["x"]) != DataType.FLOAT:
        return "QuickGelu is used for float32 only"
    return None


def _silu(m: Match, r):
    m.graph.root.opset_imports.setdefault("com.microsoft", 1)
    return r.op("QuickGelu", m["x"], domain="com.microsoft", alpha=1.0, name=m.root.name)


# SiLU/Swish as exporters write it. FusedConv has no Swish activation, but ORT's contrib QuickGelu
# computes x * sigmoid(alpha * x): with alpha = 1 it is SiLU in one op (what ORT's own optimizer does).
SILU = Rule("silu-quickgelu",
            Op("Mul", Var("x"), Op("Sigmoid", Var("x"), name="sigmoid"), commutative=True, name="mul"),
            check=_silu_check, replace=_silu, exactness=REASSOCIATING,
            doc="x * Sigmoid(x) -> com.microsoft QuickGelu(alpha=1) (emit=fused-conv only)")


@register_pass
class FuseActivation(RewritePass):
    """Mark Conv/Gemm + activation as one fused op (meta), or emit com.microsoft FusedConv."""

    name = "fuse-activation"
    options = RewritePass.options + (
        Option("emit", str, "meta", "meta: annotate only; fused-conv: emit com.microsoft FusedConv for ORT",
               choices=("meta", "fused-conv")),
    )
    rules = (MARK, FUSED_CONV, INTO_CONCAT, SILU)
    preserves = frozenset()

    def _wanted(self) -> tuple[Rule, ...]:
        return (MARK,) if self.emit == "meta" else (FUSED_CONV, INTO_CONCAT, SILU)

    def active_rules(self, ctx: PassContext):
        return [r for r in super().active_rules(ctx) if r in self._wanted()]

    def run(self, graph, ctx):
        result = super().run(graph, ctx)
        # rules of the other emit mode are not "skipped", they are not asked for
        other = {r.name for r in self.rules if r not in self._wanted()}
        result.notes = [n for n in result.notes if not any(f"'{name}'" in n for name in other)]
        return result
