"""The op registry: what graphmill knows about an op's semantics.

For each (domain, op_type) an ``OpDef`` may give
- ``infer``: output types from input types (and from input *values* where the
  op's output shape depends on them, e.g. Reshape's shape input), and
- ``cost``: MACs, bytes read and written.

An op without an entry is carried through untouched: inference leaves its
outputs' types as they are and cost reports it as unknown. Only passes and
backends that need an op's semantics refuse it.

Inference propagates *small integer values* alongside types (the way onnx's
data propagation does), so shape computations such as Shape -> Gather ->
Concat -> Reshape resolve to static shapes; those values live in the
inference run only and never change the graph. A value may also be *partial*
(an object array whose entries are ints, dim symbols or None) so that a
symbolic batch size survives Shape -> Gather -> Concat -> Reshape too. A few
floats go along as well (``MAX_PROPAGATED_FLOATS``): sizes an exporter computes
in float (Cast, Div, Ceil, Mul, Cast back), and comparisons of sizes give known
booleans (an If's condition: ``branch``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..dtypes import DataType
from graphmill.util.errors import ShapeInferenceError
from ..graph import Node, Value
from ..tensor import Tensor
from ..types import Dim, TensorType, Type

DEFAULT_DOMAINS = ("", "ai.onnx")
# Integer tensors up to this many elements are propagated as known values.
MAX_PROPAGATED_ELEMENTS = 1024
# Floating ones up to this many: sizes an exporter computes in float (MobileViT's ceil(H / 2) * 2), not weights.
MAX_PROPAGATED_FLOATS = 8


@dataclass
class Cost:
    """What running one node costs, independent of any hardware.

    ``macs`` counts multiply-accumulates (a Conv/Gemm/MatMul inner product step);
    ``flops`` counts arithmetic operations: 2 per MAC plus the elementwise work
    (about one per output element per arithmetic op). ``params`` is the number of
    elements of the node's constant weight inputs (floating point or <= 8-bit
    integers). Bytes are those of the node's inputs (read) and outputs
    (written), at their element types' widths; ``known`` is False when shapes
    were missing.
    """

    macs: int = 0
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    known: bool = True
    params: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.macs + other.macs, self.flops + other.flops, self.bytes_read + other.bytes_read,
                    self.bytes_written + other.bytes_written, self.known and other.known,
                    self.params + other.params)


class InferenceContext:
    """What an ``infer`` function sees: the node, its input types and known input values."""

    def __init__(self, node: Node, opset: int, known: dict[int, np.ndarray]) -> None:
        self.node = node
        self.opset = opset
        self._known = known
        self.output_values: dict[int, np.ndarray] = {}

    @property
    def num_inputs(self) -> int:
        return self.node.num_inputs

    def has_input(self, i: int) -> bool:
        return self.node.input_at(i) is not None

    def input(self, i: int) -> Value | None:
        return self.node.input_at(i)

    def input_type(self, i: int) -> TensorType | None:
        v = self.input(i)
        t = v.type if v is not None else None
        return t if isinstance(t, TensorType) else None

    def input_shape(self, i: int) -> tuple[Dim, ...] | None:
        t = self.input_type(i)
        return None if t is None else t.shape

    def input_dtype(self, i: int) -> DataType:
        t = self.input_type(i)
        return DataType.UNDEFINED if t is None else t.dtype

    def input_value(self, i: int) -> np.ndarray | None:
        """The input's data when it is a constant or a propagated shape value, else None."""
        return self.value_of(self.input(i))

    def propagated(self, v: Value) -> np.ndarray | None:
        """What propagation knows of any value of the graph tree (an If's branch output): a full value or a
        partial one (an object array, ``input_partial``), else None. Constants are not included."""
        return self._known.get(id(v))

    def value_of(self, v: Value | None) -> np.ndarray | None:
        """``input_value`` for any value of the graph tree."""
        if v is None:
            return None
        got = self._known.get(id(v))
        if got is not None and got.dtype != object:  # object arrays are partial (symbolic) values
            return got
        t = v.const if isinstance(v.const, Tensor) else constant_node_tensor(v.producer)
        if t is not None and t.size <= MAX_PROPAGATED_ELEMENTS:
            try:
                return t.numpy()
            except Exception:  # noqa: BLE001 -- exotic dtype: just unknown
                return None
        return None

    def input_partial(self, i: int) -> np.ndarray | None:
        """The input's value as an object array of dims (int, symbol str, or None), or None.

        This is how shape values with symbolic entries travel (``Shape`` of an
        ``[N,3,H,W]`` tensor is ``["N", 3, "H", "W"]``), the way onnx's data
        propagation carries ``TensorShapeProto``s: data-movement ops (Gather,
        Concat, Slice, ...) pass them on, arithmetic does not.
        """
        full = self.input_value(i)
        if full is not None:
            if full.dtype.kind not in "iu":
                return None
            return np.array([int(x) for x in full.ravel()], dtype=object).reshape(full.shape)
        v = self.input(i)
        got = self._known.get(id(v)) if v is not None else None
        if got is not None and got.dtype == object:
            return got
        return None

    def input_partial_or_unknown(self, i: int) -> np.ndarray | None:
        """``input_partial``, or, for an integer input of static shape whose value is not known,
        an object array of ``None`` of that shape (onnx's data propagation does the same: a
        ``Concat`` of ``[seq]``, an unknown ``[?]`` and ``[16]`` is ``[seq, ?, 16]``)."""
        p = self.input_partial(i)
        if p is not None:
            return p
        t = self.input_type(i)
        if t is None or t.shape is None or not t.dtype.is_integer or not all(isinstance(d, int) for d in t.shape):
            return None
        if math.prod(t.shape) > MAX_PROPAGATED_ELEMENTS:  # exact: a declared 2^40 dim never allocates
            return None
        return np.full(tuple(t.shape), None, dtype=object)

    def set_output_partial(self, i: int, value: np.ndarray, dtype: np.dtype | type | None = None) -> None:
        """Record a partially known value (entries int, symbol str or None) of a shape computation.

        When every entry is an int it is stored as a plain value of ``dtype`` (default int64);
        when none is known nothing is stored. ``dtype`` ``object`` (``partial_dtype`` of a
        floating type: a shape cast to float) keeps the value an object array even when every
        entry is known, so that integer arithmetic never runs on float data; only data movement
        and ``Cast`` back to an integer type read it.
        """
        arr = np.asarray(value, dtype=object)
        if arr.size > MAX_PROPAGATED_ELEMENTS:
            return
        flat = list(arr.ravel())
        if dtype is not object and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in flat):
            self.set_output_value(i, np.array([int(x) for x in flat], dtype=dtype or np.int64).reshape(arr.shape))
        elif any(x is not None for x in flat):
            out = np.empty(arr.shape, dtype=object)
            out.ravel()[:] = [int(x) if isinstance(x, (int, np.integer)) else x for x in flat] if flat else []
            self.output_values[i] = out

    def attr(self, name: str, default=None):
        return self.node.attr(name, default)

    def set_output_value(self, i: int, value: np.ndarray) -> None:
        """Record a small integer output value (shape arithmetic) for downstream inference, or a float one of at
        most ``MAX_PROPAGATED_FLOATS`` elements (shape arithmetic an exporter does in float: ``elementwise``)."""
        value = np.asarray(value)
        if value.size <= MAX_PROPAGATED_ELEMENTS and value.dtype.kind in "iub" or \
                value.size <= MAX_PROPAGATED_FLOATS and value.dtype.kind == "f":
            self.output_values[i] = value

    def dtype_attr(self, name: str, default: int | None = None) -> DataType | None:
        """An element-type attribute (Cast's ``to``, EyeLike's ``dtype``), refused naming the node when it is no
        ONNX element type (``to=9999`` surfaced as a pass failure with enum's ValueError)."""
        v = self.attr(name, default)
        if v is None:
            return None
        try:
            return DataType(int(v))
        except (TypeError, ValueError):
            raise self.fail(f"attribute {name!r} is {v!r}, which is not an ONNX element type") from None

    def fail(self, msg: str) -> ShapeInferenceError:
        return ShapeInferenceError(f"{self.node.describe()}: {msg}")


def constant_node_tensor(node: Node | None) -> Tensor | None:
    """The tensor a ``Constant`` node holds in its ``value`` attribute, or None. Only integer values are
    propagated as shape arithmetic, but a float Constant is as constant as a float initializer: an exporter's
    Resize scales or Range start and step (``torch.nn.Upsample``, ``torch.arange``) come as Constant nodes."""
    if node is None or node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    a = node.attrs.get("value")
    return a.value if a is not None and isinstance(a.value, Tensor) else None


def partial_dtype(dt: DataType) -> np.dtype | type:
    """How a shape value of element type ``dt`` is stored (``set_output_partial``'s ``dtype``): as
    that integer type, as ``object`` for a floating type (a shape cast to float: its entries stay
    exact, and nothing computes on them as integers), int64 when the type is unknown."""
    if dt.is_integer:
        try:
            return dt.numpy()
        except TypeError:
            return np.int64
    if dt.is_floating:
        return object
    return np.int64


InferFn = Callable[[InferenceContext], "list[Type | None]"]
CostFn = Callable[[Node], Cost]


@dataclass
class OpDef:
    op_type: str
    domain: str = ""
    infer: InferFn | None = None
    cost: CostFn | None = None
    doc: str = ""
    extra: dict = field(default_factory=dict)


_REGISTRY: dict[tuple[str, str], OpDef] = {}


def _key(domain: str, op_type: str) -> tuple[str, str]:
    return ("" if domain in DEFAULT_DOMAINS else domain, op_type)


def register(op_types: str | list[str], domain: str = "", *, infer: InferFn | None = None,
             cost: CostFn | None = None, doc: str = "") -> None:
    """Register (or extend) the definition of one or more ops."""
    for op in [op_types] if isinstance(op_types, str) else op_types:
        k = _key(domain, op)
        d = _REGISTRY.get(k) or OpDef(op, k[0], doc=doc)
        if infer is not None:
            d.infer = infer
        if cost is not None:
            d.cost = cost
        _REGISTRY[k] = d


def lookup(domain: str, op_type: str) -> OpDef | None:
    return _REGISTRY.get(_key(domain, op_type))


def registered_ops() -> list[OpDef]:
    return sorted(_REGISTRY.values(), key=lambda d: (d.domain, d.op_type))
