"""The sparsely-gated mixture-of-experts layer, ``graphmill::MoE`` (Shazeer et al. 2017; Switch, Fedus et al.
2021; GShard, Lepikhin et al. 2020).

One op holds the whole layer (gate, dispatch, experts, combine) so that passes, ``inspect``'s MAC count
and the simulator see the layer and its experts; ``passes/lowering/moe.py`` writes it in standard ONNX
for ONNX Runtime and ``backends/torch/ops/moe.py`` runs and trains it. The semantics below are the
contract all three implement.

Inputs (``X [..., d]`` is read as ``T = prod(...)`` tokens of ``d`` features):

====  ========  ==================  =====================================================
 0    X         [..., d]            tokens
 1    Wg        [d, E]              gate weights
 2    Wnoise    [d, E] (optional)   noise weights (Shazeer's W_noise)
 3    W1        [E, d, h]           expert FFN: ``act(x W1[e] + B1[e]) W2[e] + B2[e]``
 4    B1        [E, h]
 5    W2        [E, h, d]
 6    B2        [E, d]
 7    noise     [T, E] (optional)   standard-normal samples; absent: no noise (inference).
                                    The torch backend draws them itself when training.
====  ========  ==================  =====================================================

Attributes: ``k`` (1 <= k <= E), ``capacity_factor`` (> 0), ``gate`` (``topk``, ``switch``, ``gshard``),
``activation`` (``relu``).

Gate. ``H = X Wg + noise * softplus(X Wnoise)`` (the noise term only with both inputs).
``topk`` (Shazeer eq. 3-5): the k largest entries of ``H``, softmax over those k (the others 0).
``switch`` (Fedus eq. 1-2): ``p = softmax(H)`` over all E, the top-k probabilities unchanged (k = 1 in the
paper). ``gshard`` (Lepikhin, Algorithm 1): ``p = softmax(H)``, the top-k probabilities renormalized to
sum 1 (k = 2 in the paper; its random dispatch of the second expert is not modelled).

Capacity. Each expert takes at most ``C = min(T, ceil(T * (capacity_factor * k / E)))`` tokens (the
product in float64). Assignments are ranked choice-major: every token's first choice in token order, then
every second choice, ... (GShard's priority for the first expert). An assignment whose rank at its expert is
``>= C`` is dropped: it contributes nothing to the output (the model's residual carries the token) and is
counted in ``dropped``.

Outputs:

====  ===============  ======  ======================================================================
 0    Y                [..., d] ``sum over kept (t, j) of gate(t, j) * expert_{e(t, j)}(x_t)``
 1    importance_loss  []       ``CV(importance)^2``, ``importance = sum_t gates[t, :]`` (Shazeer eq. 6),
                                ``CV^2 = var / (mean^2 + 1e-10)`` (population variance, as tensor2tensor)
 2    load_loss        []       ``topk`` with Wnoise: ``CV(load)^2`` of Shazeer's smooth load estimator
                                (eq. 8-10: ``P = Phi((clean - kth_excluding) / softplus(X Wnoise))``);
                                ``topk`` without Wnoise, or k = E: ``CV^2`` of the assignment counts;
                                ``switch``/``gshard``: the load-balancing loss ``E * sum_e f_e * P_e``
                                (Switch eq. 4 and GShard's code; its paper's ``l_aux`` is E times less):
                                ``f_e`` the fraction of tokens whose first choice is ``e``, ``P_e`` the mean
                                router probability
 3    expert_counts    [E]      int64: assignments per expert before capacity (the load)
 4    dropped          []       int64: assignments over capacity
====  ===============  ======  ======================================================================

Cost: MACs count the gate (``T d E``, twice with Wnoise) and only the k chosen experts per token
(``T k 2 d h``), not the E experts the weights hold; ``params`` counts every expert.
"""

from __future__ import annotations

import math
import numbers

from graphmill.util.errors import UserInputError

from ..dtypes import DataType
from ..graph import Node
from ..types import TensorType
from .common import dims_product, io_cost
from .nn import unknown_cost, value_shape
from .registry import Cost, InferenceContext, register

DOMAIN = "graphmill"
OP = "MoE"
GATES = ("topk", "switch", "gshard")
ACTIVATIONS = ("relu",)
#: input positions
X, WG, WNOISE, W1, B1, W2, B2, NOISE = range(8)
#: output positions
Y, IMPORTANCE_LOSS, LOAD_LOSS, EXPERT_COUNTS, DROPPED = range(5)
CV_EPSILON = 1e-10


class MoEConfigError(UserInputError):
    """An MoE layer's configuration no layer can have (k > E, capacity factor <= 0, an unknown gate)."""


def check_moe_config(*, experts: int, k: int, capacity_factor: float, gate: str = "topk",
                     activation: str = "relu", where: str = "MoE") -> None:
    """Refuse what no MoE layer can be, in one line naming ``where`` (a node or a zoo model)."""
    def whole(v) -> bool:  # numpy integers too; True is not a count
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if not whole(experts) or experts < 1:
        raise MoEConfigError(f"{where}: the number of experts must be a positive integer, got {experts!r}")
    if not whole(k) or k < 1:
        raise MoEConfigError(f"{where}: k (experts per token) must be a positive integer, got {k!r}")
    if k > experts:
        raise MoEConfigError(f"{where}: k = {k} experts per token, but the layer has only {experts} experts "
                             "(k must be <= E)")
    if not isinstance(capacity_factor, numbers.Real) or isinstance(capacity_factor, bool):  # not "1.0" either
        raise MoEConfigError(f"{where}: capacity factor must be a number > 0, got {capacity_factor!r}")
    cf = float(capacity_factor)
    if not cf > 0 or math.isinf(cf):
        raise MoEConfigError(f"{where}: capacity factor must be > 0 (and finite), got {capacity_factor!r}")
    if gate not in GATES:
        raise MoEConfigError(f"{where}: unknown gate {gate!r}; choose one of {', '.join(GATES)}")
    if activation not in ACTIVATIONS:
        raise MoEConfigError(f"{where}: unknown expert activation {activation!r}; choose one of "
                             f"{', '.join(ACTIVATIONS)}")


def moe_capacity(tokens: int, k: int, experts: int, capacity_factor: float) -> int:
    """Tokens one expert takes: ``min(T, ceil(T * (capacity_factor * k / E)))``, in float64 exactly as the
    ONNX lowering computes it (so ONNX Runtime and torch drop the same assignments)."""
    ratio = float(capacity_factor) * k / experts
    return int(min(tokens, math.ceil(float(tokens) * ratio)))


def moe_attrs(node: Node) -> dict:
    """The node's attributes with their defaults: k, capacity_factor, gate, activation."""
    gate = node.attr("gate", "topk")
    act = node.attr("activation", "relu")
    return {"k": int(node.attr("k", 1)), "capacity_factor": float(node.attr("capacity_factor", 1.0)),
            "gate": gate.decode() if isinstance(gate, bytes) else gate,
            "activation": act.decode() if isinstance(act, bytes) else act}


def moe_experts(node: Node) -> int | None:
    """E, from the gate weights' shape (or the experts')."""
    for i, axis in ((WG, 1), (W1, 0), (B1, 0)):
        s = value_shape(node, i)
        if s is not None and len(s) > axis and isinstance(s[axis], int):
            return s[axis]
    return None


def moe_dims(node: Node) -> tuple:
    """(tokens T, d, h, E) as far as the input shapes know them (None where unknown)."""
    x, w1 = value_shape(node, X), value_shape(node, W1)
    tokens = dims_product(x[:-1]) if x else None
    d = x[-1] if x else None
    h = w1[2] if w1 is not None and len(w1) == 3 else None
    return tokens, d, h, moe_experts(node)


def _has(node: Node, i: int) -> bool:
    return node.input_at(i) is not None


#: every input but X by its dimensions' names; X is ``[..., d]`` and T the product of its leading dimensions
LAYOUT = {WG: ("Wg", "dE"), WNOISE: ("Wnoise", "dE"), W1: ("W1", "Edh"), B1: ("B1", "Eh"), W2: ("W2", "Ehd"),
          B2: ("B2", "Ed"), NOISE: ("noise", "TE")}
_DIM_NAMES = {"d": "the feature size d", "E": "the number of experts E", "h": "the hidden size h",
              "T": "the token count T"}


def _check_layout(ctx: InferenceContext, x) -> None:
    """Refuse inputs whose known sizes disagree with the layout (E, d, h, T named once across all inputs), so
    that a malformed layer is refused when it is built, not inside ONNX Runtime's lowered MatMuls."""
    seen: dict[str, tuple[int, str]] = {}
    if x:
        if isinstance(x[-1], int):
            seen["d"] = (x[-1], f"X {list(x)}")
        tokens = dims_product(x[:-1])
        if tokens is not None:
            seen["T"] = (tokens, f"X {list(x)}")
    for i, (name, letters) in LAYOUT.items():
        s = ctx.input_shape(i) if ctx.has_input(i) else None
        if s is None:
            continue
        if len(s) != len(letters):
            raise ctx.fail(f"{name} must be {len(letters)}-D [{', '.join(letters)}], got shape {list(s)}")
        for letter, size in zip(letters, s):
            if not isinstance(size, int):
                continue
            if letter in seen and seen[letter][0] != size:
                size0, where = seen[letter]
                raise ctx.fail(f"{name} {list(s)} and {where} disagree on {_DIM_NAMES[letter]} ({size} vs "
                               f"{size0}; need {name} [{', '.join(letters)}])")
            seen.setdefault(letter, (size, f"{name} {list(s)}"))


def infer_moe(ctx: InferenceContext) -> list:
    node = ctx.node
    a = moe_attrs(node)
    for i, name in ((X, "X"), (WG, "Wg"), (W1, "W1"), (B1, "B1"), (W2, "W2"), (B2, "B2")):
        if not ctx.has_input(i):
            raise ctx.fail(f"input {i} ({name}) is required")
    experts = moe_experts(node)
    if experts is not None:
        check_moe_config(experts=experts, where=node.describe(), **a)
    x = ctx.input_shape(X)
    if x is not None and len(x) == 0:
        raise ctx.fail("X is a scalar; expected tokens [..., d] (rank >= 1)")
    _check_layout(ctx, x)
    dtype = ctx.input_dtype(X) or DataType.FLOAT
    for i, (name, _) in LAYOUT.items():
        other = ctx.input_dtype(i) if ctx.has_input(i) else DataType.UNDEFINED
        if other not in (DataType.UNDEFINED, dtype):
            raise ctx.fail(f"{name} is {other.short_name} but X is {dtype.short_name}; every float input of an "
                           "MoE layer has X's element type")
    return [TensorType(dtype, x), TensorType(dtype, ()), TensorType(dtype, ()),
            TensorType(DataType.INT64, (experts,)), TensorType(DataType.INT64, ())]


def moe_cost(node: Node) -> Cost:
    """MACs: the gate (``T d E``; ``2 T d E`` with the noise weights) plus the k chosen experts of every token
    (``T k (d h + h d)``); flops: 2 per MAC plus the softmax, expert bias/activation and combine work."""
    tokens, d, h, experts = moe_dims(node)
    a = moe_attrs(node)
    if not all(isinstance(v, int) for v in (tokens, d, h, experts)):
        return unknown_cost(node)
    k = a["k"]
    gate_macs = tokens * d * experts * (2 if _has(node, WNOISE) else 1)
    expert_macs = tokens * k * 2 * d * h
    macs = gate_macs + expert_macs
    elementwise = tokens * (5 * experts + k * (2 * h + 3 * d))
    return io_cost(node, macs=macs, flops=2 * macs + elementwise)


register(OP, DOMAIN, infer=infer_moe, cost=moe_cost, doc="sparsely-gated mixture of experts (gate, dispatch with "
         "capacity, experts, combine, auxiliary losses)")

__all__ = ["ACTIVATIONS", "DOMAIN", "GATES", "MoEConfigError", "OP", "check_moe_config", "infer_moe", "moe_attrs",
           "moe_capacity", "moe_cost", "moe_dims", "moe_experts"]
