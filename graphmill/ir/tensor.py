"""Constant tensor data: initializers, tensor attributes, folded constants.

Data is lazy. An imported weight keeps a *source* (whatever the importer
provides: an ONNX ``TensorProto``, an external-data file slice) and decodes to
numpy only when someone asks, so loading and re-saving a model never decodes
or re-encodes weights it does not touch -- that is what makes round trips both
fast and bit-exact, including for element types numpy lacks.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import numpy as np

from .dtypes import DataType
from .types import num_elements


class TensorSource(Protocol):
    """What an importer hands a ``Tensor`` so that it can decode on demand."""

    def numpy(self) -> np.ndarray: ...


class Tensor:
    """A constant: element type, static shape, and data, treated as immutable.

    The array passed in is kept, not copied (weights can be large): do not
    mutate it afterwards; build a new ``Tensor`` instead. ``source`` is opaque
    to the IR; exporters may recognise their own source type and re-emit it
    verbatim.
    """

    __slots__ = ("dtype", "shape", "name", "doc_string", "metadata_props", "_array", "source", "_digest")

    def __init__(
        self,
        array: np.ndarray | None = None,
        *,
        dtype: DataType | None = None,
        shape: tuple[int, ...] | None = None,
        source: TensorSource | None = None,
        name: str = "",
        doc_string: str = "",
        metadata_props: dict[str, str] | None = None,
    ) -> None:
        if array is None and source is None:
            raise ValueError("a Tensor needs an array or a source")
        if array is not None:
            if not isinstance(array, np.ndarray):
                array = np.asarray(array)
            if dtype is None:
                dtype = DataType.from_numpy(array.dtype)
            if shape is None:
                shape = tuple(int(d) for d in array.shape)
        if dtype is None or shape is None:
            raise ValueError("a Tensor built from a source needs dtype and shape")
        self.dtype = DataType(dtype)
        self.shape = tuple(int(d) for d in shape)
        self.name = name
        self.doc_string = doc_string
        self.metadata_props = dict(metadata_props or {})
        self._array = array
        self.source = source
        self._digest: str | None = None

    @property
    def size(self) -> int:
        return num_elements(self.shape) or 0

    @property
    def nbytes(self) -> int:
        """Storage size (sub-byte types packed); strings count their UTF-8 bytes."""
        if self.dtype == DataType.STRING:
            return int(sum(len(s) for s in np.asarray(self.numpy()).ravel()))
        return (self.size * self.dtype.bitwidth + 7) // 8

    @property
    def is_decoded(self) -> bool:
        return self._array is not None

    def numpy(self) -> np.ndarray:
        """The data as a numpy array (decoded once, then cached)."""
        if self._array is None:
            arr = self.source.numpy()  # type: ignore[union-attr]
            if tuple(arr.shape) != self.shape:
                arr = arr.reshape(self.shape)
            self._array = arr
        return self._array

    def data_digest(self) -> str:
        """SHA-1 of the data's bytes (of ``repr`` for object arrays), computed once and kept: the tensor
        is immutable, and passes that look for equal constants (``cse``) ask again on every fixpoint
        round, which re-hashed every weight of a big model each time."""
        if self._digest is None:
            self._digest = array_digest(self.numpy())
        return self._digest

    def __repr__(self) -> str:
        return f"Tensor({self.dtype.short_name}{list(self.shape)}{', ' + self.name if self.name else ''})"


def array_digest(arr: np.ndarray) -> str:
    """SHA-1 of an array's bytes (of ``repr`` of its elements for object arrays); dtype and shape are
    not part of it."""
    if arr.dtype == object:
        return hashlib.sha1(repr(arr.tolist()).encode()).hexdigest()
    return hashlib.sha1(np.ascontiguousarray(arr).view(np.uint8).reshape(-1)).hexdigest()


class SparseTensor:
    """ONNX sparse tensor: ``values`` at ``indices`` in a dense tensor of ``dims``."""

    __slots__ = ("values", "indices", "dims")

    def __init__(self, values: Tensor, indices: Tensor, dims: tuple[int, ...]) -> None:
        self.values = values
        self.indices = indices
        self.dims = tuple(int(d) for d in dims)

    @property
    def name(self) -> str:
        return self.values.name

    @property
    def dtype(self) -> DataType:
        return self.values.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.dims

    def __repr__(self) -> str:
        return f"SparseTensor({self.dtype.short_name}{list(self.dims)}, nnz={self.values.size})"


def as_tensor(value: Any, name: str = "") -> Tensor:
    """Wrap a numpy array / Python scalar / Tensor as a ``Tensor``."""
    if isinstance(value, Tensor):
        return value
    return Tensor(np.asarray(value), name=name)
