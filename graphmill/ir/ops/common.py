"""Shared pieces for op definitions: broadcasting, byte counting, attribute helpers."""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np

from ..dtypes import DataType
from ..graph import Node
from ..types import Dim, TensorType, num_elements
from .registry import Cost, InferenceContext


def broadcast_shapes(shapes: list[tuple[Dim, ...] | None]) -> tuple[Dim, ...] | None:
    """Numpy-style (multidirectional) broadcast of possibly symbolic shapes; None if any rank is unknown.

    Raises ValueError on two different known sizes that are both not 1.
    """
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)  # type: ignore[arg-type]
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]  # type: ignore[arg-type]
        known = {d for d in dims if isinstance(d, int) and d != 1}
        if len(known) > 1:
            raise ValueError(f"cannot broadcast dimensions {sorted(known)}")
        if known:
            out.append(known.pop())
            continue
        others = [d for d in dims if d != 1]
        others = [d for d in others if (c := _clamped(d)) is None or c not in others]  # Min(512, seq) by seq: seq
        if not others:
            out.append(1)
        elif all(d == others[0] and d is not None for d in others):
            out.append(others[0])  # the same symbol everywhere
        else:
            out.append(None)
    return tuple(out)


_CLAMP = re.compile(r"Min\((\d+), ([A-Za-z_][\w]*)\)|Min\(([A-Za-z_][\w]*), (\d+)\)")


def _clamped(d: Dim) -> str | None:
    """The size ``s`` that ``Min(K, s)`` (or ``Min(s, K)``) clamps, K >= 1 (a table cut to the sequence length:
    ``slicing._slice_to_sizes``, torch dynamo's ``Min(64, s27)``), else None. Broadcast beside ``s`` it is ``s``:
    the two are equal, or one is 1, and then (K >= 1) so is the other, or the model cannot run."""
    m = _CLAMP.fullmatch(d) if isinstance(d, str) else None
    if m is None:
        return None
    k, s = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
    return s if int(k) >= 1 else None


def tensor_bytes(t) -> int | None:
    if not isinstance(t, TensorType):
        return None
    n = num_elements(t.shape)
    if n is None:
        return None
    return (n * (t.dtype.bitwidth or 8) + 7) // 8


def io_cost(node: Node, macs: int = 0, flops: int = 0) -> Cost:
    """A Cost whose bytes are the node's input and output sizes; unknown sizes make it inexact."""
    known = True
    read = written = params = 0
    for v in node.inputs:
        if v is None:
            continue
        if v.const is not None and is_weight_dtype(v.const.dtype):
            params += v.const.size if hasattr(v.const, "size") else 0
        b = tensor_bytes(v.type)
        if b is None:
            known = False
        else:
            read += b
    for v in node.outputs:
        if v is None:
            continue
        b = tensor_bytes(v.type)
        if b is None:
            known = False
        else:
            written += b
    return Cost(macs=macs, flops=flops, bytes_read=read, bytes_written=written, known=known, params=params)


def is_weight_dtype(dt: DataType | None) -> bool:
    """Element types that hold weights: floating point, complex, and <= 8-bit (quantized) integers.

    Wider integers and booleans are shapes, axes and indices.
    """
    if dt is None:
        return False
    return dt.is_floating or (dt.is_integer and dt.bitwidth <= 8) or dt in (DataType.COMPLEX64, DataType.COMPLEX128)


def output_elements(node: Node, i: int = 0) -> int | None:
    v = node.outputs[i] if i < len(node.outputs) else None
    return None if v is None or not isinstance(v.type, TensorType) else num_elements(v.type.shape)


def same_as_input(i: int = 0):
    """Infer: one output with the type of input ``i``."""

    def infer(ctx: InferenceContext):
        t = ctx.input_type(i)
        return [t]

    return infer


def elementwise_cost(flops_per_element: int = 1):
    def cost(node: Node) -> Cost:
        """Elementwise: macs 0; flops = output elements * a per-op constant (transcendentals count 1)."""
        n = output_elements(node)
        c = io_cost(node, flops=(n or 0) * flops_per_element)
        if n is None:
            c.known = False
        return c

    return cost


def normalize_axis(axis: int, rank: int, ctx: InferenceContext | None = None) -> int:
    if not -rank <= axis < max(rank, 1):
        msg = f"axis {axis} is out of range for rank {rank}"
        raise ctx.fail(msg) if ctx is not None else ValueError(msg)
    return axis + rank if axis < 0 else axis


def dtype_or(ctx: InferenceContext, i: int = 0) -> DataType:
    return ctx.input_dtype(i)


# -- helpers shared by the shape-manipulating op families --------------------------

ABSENT = object()  # "neither the attribute nor the input is there" (distinct from "there but unknown")


def ints_from_attr_or_input(ctx: InferenceContext, attr: str, index: int) -> "list[int] | None | object":
    """An int list given as an attribute in older opsets and as an input in newer ones.

    ONNX moved many such lists (Reduce axes, Split split, Squeeze axes, Pad pads,
    Slice starts...) from attributes to inputs; a file may use either form, so
    both are read regardless of the declared opset. Returns the list, ``None``
    when it is an input whose value is not known here, or ``ABSENT``.
    """
    a = ctx.attr(attr)
    if a is not None:
        return [int(x) for x in (a if isinstance(a, (list, tuple)) else [a])]
    if ctx.has_input(index):
        v = ctx.input_value(index)
        if v is None:
            return None
        return [int(x) for x in np.asarray(v).ravel()]
    return ABSENT


def dims_product(dims: Iterable[Dim]) -> Dim:
    """Product of dims: an int when all are known ints, else None."""
    n = 1
    for d in dims:
        if not isinstance(d, int):
            return None
        n *= d
    return n


def known_rank(ctx: InferenceContext, i: int) -> int | None:
    s = ctx.input_shape(i)
    return None if s is None else len(s)


def length_of_1d_input(ctx: InferenceContext, i: int) -> int | None:
    """Length of a 1-D input from its type (when its value is unknown), else None. Callers make it
    an output's rank, so a length over ``graphmill.util.limits.max_rank()`` fails the node."""
    s = ctx.input_shape(i)
    if s is not None and len(s) == 1 and isinstance(s[0], int):
        from graphmill.util.limits import max_rank

        if s[0] > max_rank():
            raise ctx.fail(f"input {i} has {s[0]} entries: an output rank over the limit of {max_rank()} "
                           "(GRAPHMILL_MAX_RANK)")
        return s[0]
    if s is not None and len(s) == 0:
        return 1
    return None


def cost_with_elements(node: Node, flops_per_element: int, *, of_input: int | None = None) -> Cost:
    """io_cost with flops = elements * constant, counted on the output (or one input).

    ``known`` is False when that element count is not static, so a caller never
    gets a guessed number.
    """
    if of_input is None:
        n = output_elements(node)
    else:
        v = node.input_at(of_input)
        n = None if v is None or not isinstance(v.type, TensorType) else num_elements(v.type.shape)
    c = io_cost(node, flops=(n or 0) * flops_per_element)
    if n is None:
        c.known = False
    return c


def movement_cost(node: Node) -> Cost:
    """Data movement and metadata ops (Reshape, Concat, Gather, Pad...): macs 0, flops 0.

    Only the bytes read and written count; ``known`` is False when any of
    those sizes is not static.
    """
    return cost_with_elements(node, 0)
