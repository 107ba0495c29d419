"""Value types: tensors with symbolic shapes, and ONNX's container types.

A dimension is an ``int`` (known), a ``str`` (a symbol such as ``"N"``: equal
symbols mean equal sizes) or ``None`` (unknown). A shape of ``None`` means even
the rank is unknown. Types are immutable so that passes can share them freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Union

from .dtypes import DataType

Dim = Union[int, str, None]
Shape = tuple  # tuple[Dim, ...]


def normalize_shape(shape: Iterable[Dim] | None) -> tuple[Dim, ...] | None:
    if shape is None:
        return None
    out: list[Dim] = []
    for d in shape:
        if d is None or isinstance(d, str):
            out.append(d)
        else:
            out.append(int(d))
    return tuple(out)


def format_dim(d: Dim) -> str:
    return "?" if d is None else str(d)


def format_shape(shape: tuple[Dim, ...] | None) -> str:
    if shape is None:
        return "[...]"
    return "[" + ",".join(format_dim(d) for d in shape) + "]"


def is_static(shape: tuple[Dim, ...] | None) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def num_elements(shape: tuple[Dim, ...] | None) -> int | None:
    """Element count of a static shape, ``None`` when any dim is not a known int."""
    if not is_static(shape):
        return None
    n = 1
    for d in shape:  # type: ignore[union-attr]
        n *= d  # type: ignore[operator]
    return n


@dataclass(frozen=True)
class TensorType:
    dtype: DataType = DataType.UNDEFINED
    shape: tuple[Dim, ...] | None = None
    denotation: str = ""
    # Per-dimension denotations (ONNX ``Dimension.denotation``), kept for lossless round trips.
    dim_denotations: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", DataType(self.dtype))
        object.__setattr__(self, "shape", normalize_shape(self.shape))

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def with_shape(self, shape: Iterable[Dim] | None) -> "TensorType":
        return TensorType(self.dtype, normalize_shape(shape), self.denotation)

    def __str__(self) -> str:
        return f"{self.dtype.short_name}{format_shape(self.shape)}"


@dataclass(frozen=True)
class SparseTensorType:
    dtype: DataType = DataType.UNDEFINED
    shape: tuple[Dim, ...] | None = None
    denotation: str = ""
    # per-dimension denotations, as TensorType keeps them (a round trip dropped them; an outside check)
    dim_denotations: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", DataType(self.dtype))
        object.__setattr__(self, "shape", normalize_shape(self.shape))

    def __str__(self) -> str:
        return f"sparse<{self.dtype.short_name}{format_shape(self.shape)}>"


@dataclass(frozen=True)
class SequenceType:
    elem_type: "Type | None" = None
    denotation: str = ""

    def __str__(self) -> str:
        return f"seq<{self.elem_type if self.elem_type is not None else '?'}>"


@dataclass(frozen=True)
class OptionalType:
    elem_type: "Type | None" = None
    denotation: str = ""

    def __str__(self) -> str:
        return f"optional<{self.elem_type if self.elem_type is not None else '?'}>"


@dataclass(frozen=True)
class MapType:
    key_dtype: DataType = DataType.UNDEFINED
    value_type: "Type | None" = None
    denotation: str = ""

    def __str__(self) -> str:
        return f"map<{DataType(self.key_dtype).short_name},{self.value_type}>"


@dataclass(frozen=True)
class OpaqueType:
    domain: str = ""
    name: str = ""
    denotation: str = ""

    def __str__(self) -> str:
        return f"opaque<{self.domain}.{self.name}>"


Type = Union[TensorType, SparseTensorType, SequenceType, OptionalType, MapType, OpaqueType]
