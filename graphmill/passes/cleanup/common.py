"""Small helpers the cleanup and fusion passes share: opsets, shapes, constants, attribute forms."""

from __future__ import annotations

from typing import Any

import numpy as np

from graphmill.ir import DataType, Graph, Node, TensorType, Value
from graphmill.ir.rewrite import Match, constant_value, inputs_overridable

ONNX_DOMAINS = ("", "ai.onnx")

# Elementwise unary ops (Concat and Transpose commute with them). Piecewise-linear ones give bit-identical
# results wherever the element sits; the transcendental ones may not under a vectorised kernel (an element in
# its SIMD body or its scalar tail).
PIECEWISE_LINEAR = ("Relu", "LeakyRelu", "Clip", "Abs", "Neg", "Floor", "Ceil", "Round", "Sign", "HardSigmoid",
                    "HardSwish", "Shrink", "ThresholdedRelu", "Cast", "Not")
TRANSCENDENTAL = ("Sigmoid", "Tanh", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Erf", "Exp", "Log", "Sqrt",
                  "Reciprocal", "Mish", "Gelu", "Sin", "Cos")
FLOAT_TYPES = frozenset({DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE})
NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                              "Multinomial", "Bernoulli"})
INPUT_INITIALIZERS = ("auto", "constant", "overridable")
INPUT_INITIALIZERS_DOC = (
    "initializers also listed as graph inputs: 'constant' treats them as weights (callers can no longer "
    "override them), 'overridable' leaves them alone, 'auto' does what ONNX Runtime does: constant below IR "
    "version 4 (where every initializer had to be listed as an input), overridable from 4 on")


def input_initializers_are_constant(graph: Graph, mode: str) -> bool:
    """Whether initializers listed as graph inputs are weights (``mode`` is an INPUT_INITIALIZERS choice)."""
    if mode == "auto":
        return not inputs_overridable(graph)
    return mode == "constant"


def opset(graph: Graph, domain: str = "") -> int:
    """The opset the model imports for ``domain`` (the default domain: "" or "ai.onnx")."""
    imports = graph.root.opset_imports
    if domain in ONNX_DOMAINS:
        return int(imports.get("", imports.get("ai.onnx", 0)))
    return int(imports.get(domain, 0))


def need_opset(m: Match, minimum: int, what: str) -> str | None:
    got = opset(m.graph)
    return None if got >= minimum else f"{what} needs opset >= {minimum}, the model imports {got}"


def shape_of(v: Value | None) -> tuple | None:
    if v is None:
        return None
    if v.const is not None and hasattr(v.const, "shape"):
        return tuple(v.const.shape)
    t = v.type
    return tuple(t.shape) if isinstance(t, TensorType) and t.shape is not None else None


def dtype_of(v: Value | None) -> DataType | None:
    if v is None:
        return None
    t = v.type
    dt = t.dtype if isinstance(t, TensorType) else None
    if not dt and v.const is not None and hasattr(v.const, "dtype"):
        dt = v.const.dtype
    return dt or None


def is_static(shape: tuple | None) -> bool:
    return shape is not None and all(isinstance(d, int) and d >= 0 for d in shape)


def const_of(v: Value | None) -> np.ndarray | None:
    return None if v is None else constant_value(v)


def int_list(v: Value | None) -> list[int] | None:
    a = const_of(v)
    if a is None or a.dtype.kind not in "iu":
        return None
    return [int(x) for x in a.reshape(-1)]


def axes_of(node: Node, input_index: int, attr: str = "axes") -> list[int] | None:
    """Axes given as an attribute (older opsets) or as a constant input (newer ones); None if unknown,
    [] if absent."""
    if attr in node.attrs:
        return [int(a) for a in node.attr(attr)]
    if input_index < len(node.inputs) and node.inputs[input_index] is not None:
        return int_list(node.inputs[input_index])
    return []


def normalize_axes(axes: list[int], rank: int) -> list[int] | None:
    out = []
    for a in axes:
        if a < -rank or a >= rank:
            return None
        out.append(a % rank)
    return out


def broadcast_keeps(x_shape: tuple | None, c_shape: tuple | None) -> bool:
    """True when broadcasting a tensor of ``x_shape`` with one of ``c_shape`` (static) gives ``x_shape``:
    ``c`` has no more dims and each of its dims is 1 or the same static size."""
    if x_shape is None or c_shape is None or len(c_shape) > len(x_shape):
        return False
    for xd, cd in zip(reversed(x_shape), reversed(c_shape)):
        if cd == 1:
            continue
        if not (isinstance(xd, int) and xd == cd):
            return False
    return True


def all_equal(a: np.ndarray | None, value: float) -> bool:
    return a is not None and a.size > 0 and bool(np.all(a == value))


def checked_by(plan):
    """A rule's check from its plan, which returns either what the replacement needs or why not (a str): the
    reason, or None to fire."""
    return lambda m: (lambda p: p if isinstance(p, str) else None)(plan(m))


def folded_constant(exact: np.ndarray, dtype: np.dtype, *, summed: bool = False) -> np.ndarray | str:
    """A constant a rewrite folded, computed exactly (float64), in the element type the model stores it in; or why
    it must not be folded: where that type cannot hold it, the folded model computes inf, nan or 0 where the
    original's ops, scaling at run time, may not ((Conv(x, W) * 3e30) * 3e30 folded W to +-inf, and ONNX Runtime
    gave nan where the original gave inf: an outside check's fuzzing). For one operation on two constants of that
    type the cast is the result computed in it (float64 holds the exact product or sum).

    ``summed``: the constant's entries are weights summed together (a convolution's, a Gemm's), so an entry that
    underflows matters only next to the others: refused only where it is at least the type's epsilon times the
    largest (a trained model's subnormal weight among normal ones does not stop a BatchNormalization fold).
    Otherwise every entry stands alone (an elementwise operand) and any underflow refuses."""
    with np.errstate(all="ignore"):
        exact = np.asarray(exact)
        value = exact.astype(dtype)
        if np.dtype(dtype).kind != "f":
            return value
        if not bool(np.all(np.isfinite(value))):
            return "the folded constant is not finite (overflow, or a constant is inf or nan)"
        lost = (np.abs(value) < np.finfo(dtype).tiny) & (exact != 0)
        if summed and bool(np.any(lost)):
            lost &= np.abs(exact) >= np.finfo(dtype).eps * float(np.max(np.abs(exact)))
        if bool(np.any(lost)):
            return "the folded constant underflows (subnormal or zero where the exact value is not)"
    return value


def output_unused(v: Value | None) -> bool:
    return v is None or (v.num_uses == 0 and not v.is_graph_output)


def attr_value(node: Node, name: str, default: Any = None) -> Any:
    return node.attr(name, default)


def const_scalar(v: Value | None) -> float | None:
    a = const_of(v)
    if a is None or a.size != 1:
        return None
    return float(a.reshape(-1)[0])


def concat_producers(concat: Node, ops: tuple[str, ...]) -> list[Node] | str:
    """The single-output default-domain nodes of ``ops`` producing every Concat input, each input read
    only by the Concat (so the producers die with it); or why not."""
    producers = []
    for i, v in enumerate(concat.inputs):
        p = v.producer if v is not None else None
        if p is None or p.op_type not in ops or (p.domain or "") not in ONNX_DOMAINS:
            which = f"a {ops[0]}" if len(ops) == 1 else f"one of {', '.join(ops[:4])}{', ...' if len(ops) > 4 else ''}"
            return f"Concat input {i} is not produced by {which}"
        if v.num_uses != 1 or v.is_graph_output or len([o for o in p.outputs if o is not None]) != 1:
            return f"Concat input {i} ({v.name}) has other readers or is a graph output"
        producers.append(p)
    return producers
