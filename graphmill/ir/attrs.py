"""Typed node attributes.

The kind is stored, not guessed, because ONNX distinguishes ``[]`` as INTS from
``[]`` as FLOATS, and a round trip must keep that.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np


class AttrKind(enum.IntEnum):
    # Numbered as ONNX's AttributeProto.AttributeType.
    UNDEFINED = 0
    FLOAT = 1
    INT = 2
    STRING = 3
    TENSOR = 4
    GRAPH = 5
    FLOATS = 6
    INTS = 7
    STRINGS = 8
    TENSORS = 9
    GRAPHS = 10
    SPARSE_TENSOR = 11
    SPARSE_TENSORS = 12
    TYPE_PROTO = 13
    TYPE_PROTOS = 14


@dataclass
class Attr:
    """One attribute. ``ref_attr_name`` is set inside function bodies for attributes
    that take the value of the calling node's attribute of that name."""

    name: str
    kind: AttrKind
    value: Any
    ref_attr_name: str = ""
    doc_string: str = ""

    def __repr__(self) -> str:
        if self.ref_attr_name:
            return f"{self.name}=@{self.ref_attr_name}"
        return f"{self.name}={self.value!r}"


def infer_attr(name: str, value: Any) -> Attr:
    """Build an ``Attr`` from a plain Python value (for builders and passes)."""
    from .graph import Graph  # local: graph imports attrs
    from .tensor import SparseTensor, Tensor

    if isinstance(value, Attr):
        return value
    if isinstance(value, bool):
        return Attr(name, AttrKind.INT, int(value))
    if isinstance(value, (int, np.integer)):
        return Attr(name, AttrKind.INT, int(value))
    if isinstance(value, (float, np.floating)):
        return Attr(name, AttrKind.FLOAT, float(value))
    if isinstance(value, (str, bytes)):
        return Attr(name, AttrKind.STRING, value if isinstance(value, str) else value.decode())
    if isinstance(value, Tensor):
        return Attr(name, AttrKind.TENSOR, value)
    if isinstance(value, np.ndarray):
        return Attr(name, AttrKind.TENSOR, Tensor(value))
    if isinstance(value, SparseTensor):
        return Attr(name, AttrKind.SPARSE_TENSOR, value)
    if isinstance(value, Graph):
        return Attr(name, AttrKind.GRAPH, value)
    if isinstance(value, (list, tuple)):
        items = list(value)
        if not items:
            raise ValueError(f"attribute {name!r}: cannot tell the kind of an empty list; pass an Attr")
        if all(isinstance(v, (bool, int, np.integer)) for v in items):
            return Attr(name, AttrKind.INTS, [int(v) for v in items])
        if all(isinstance(v, (int, float, np.integer, np.floating)) for v in items):
            return Attr(name, AttrKind.FLOATS, [float(v) for v in items])
        if all(isinstance(v, str) for v in items):
            return Attr(name, AttrKind.STRINGS, items)
        if all(isinstance(v, Tensor) for v in items):
            return Attr(name, AttrKind.TENSORS, items)
        if all(isinstance(v, Graph) for v in items):
            return Attr(name, AttrKind.GRAPHS, items)
    raise ValueError(f"attribute {name!r}: unsupported value {value!r}")
