"""Element types, numbered as ONNX numbers them so import/export is a no-op.

Types numpy lacks (bfloat16, the float8/float4/int4 families) map to ml_dtypes.
"""

from __future__ import annotations

import enum

import ml_dtypes
import numpy as np


class DataType(enum.IntEnum):
    UNDEFINED = 0
    FLOAT = 1
    UINT8 = 2
    INT8 = 3
    UINT16 = 4
    INT16 = 5
    INT32 = 6
    INT64 = 7
    STRING = 8
    BOOL = 9
    FLOAT16 = 10
    DOUBLE = 11
    UINT32 = 12
    UINT64 = 13
    COMPLEX64 = 14
    COMPLEX128 = 15
    BFLOAT16 = 16
    FLOAT8E4M3FN = 17
    FLOAT8E4M3FNUZ = 18
    FLOAT8E5M2 = 19
    FLOAT8E5M2FNUZ = 20
    UINT4 = 21
    INT4 = 22
    FLOAT4E2M1 = 23
    FLOAT8E8M0 = 24
    UINT2 = 25
    INT2 = 26
    FLOAT6E2M3 = 27
    FLOAT6E3M2 = 28

    @property
    def short_name(self) -> str:
        """Name used by the text printer and error messages (``float32``, ``int64``...)."""
        return _SHORT_NAMES.get(self, self.name.lower())

    @property
    def bitwidth(self) -> int:
        """Bits per element (0 where undefined or variable, as for strings)."""
        return _BITS.get(self, 0)

    @property
    def is_floating(self) -> bool:
        return self in _FLOATING

    @property
    def is_integer(self) -> bool:
        return self in _INTEGER

    def numpy(self) -> np.dtype:
        """The numpy dtype that holds one element (unpacked for sub-byte types)."""
        try:
            return _TO_NUMPY[self]
        except KeyError:
            raise TypeError(f"element type {self.short_name} has no numpy equivalent") from None

    @classmethod
    def from_numpy(cls, dtype: np.dtype | type) -> "DataType":
        dtype = np.dtype(dtype)
        try:
            return _FROM_NUMPY[dtype]
        except KeyError:
            if dtype.kind in ("U", "S", "O"):
                return cls.STRING
            raise TypeError(f"numpy dtype {dtype} has no ONNX element type") from None

    @classmethod
    def parse(cls, text: "str | int | DataType | np.dtype | type") -> "DataType":
        """Accept ``"float32"``, ``"FLOAT"``, ``1``, ``np.float32``... -- for builders and CLIs."""
        if isinstance(text, DataType):
            return text
        if isinstance(text, int):
            return cls(text)
        if isinstance(text, str):
            key = text.strip().lower()
            for dt, short in _SHORT_NAMES.items():
                if key == short:
                    return dt
            try:
                return cls[text.strip().upper()]
            except KeyError:
                raise ValueError(f"unknown element type {text!r}") from None
        return cls.from_numpy(text)


_SHORT_NAMES = {
    DataType.FLOAT: "float32",
    DataType.DOUBLE: "float64",
    DataType.FLOAT16: "float16",
    DataType.BFLOAT16: "bfloat16",
    DataType.UINT8: "uint8",
    DataType.INT8: "int8",
    DataType.UINT16: "uint16",
    DataType.INT16: "int16",
    DataType.INT32: "int32",
    DataType.INT64: "int64",
    DataType.UINT32: "uint32",
    DataType.UINT64: "uint64",
    DataType.STRING: "string",
    DataType.BOOL: "bool",
    DataType.COMPLEX64: "complex64",
    DataType.COMPLEX128: "complex128",
}

_BITS = {
    DataType.FLOAT: 32, DataType.DOUBLE: 64, DataType.FLOAT16: 16, DataType.BFLOAT16: 16,
    DataType.UINT8: 8, DataType.INT8: 8, DataType.UINT16: 16, DataType.INT16: 16,
    DataType.INT32: 32, DataType.INT64: 64, DataType.UINT32: 32, DataType.UINT64: 64,
    DataType.BOOL: 8, DataType.COMPLEX64: 64, DataType.COMPLEX128: 128,
    DataType.FLOAT8E4M3FN: 8, DataType.FLOAT8E4M3FNUZ: 8, DataType.FLOAT8E5M2: 8,
    DataType.FLOAT8E5M2FNUZ: 8, DataType.FLOAT8E8M0: 8, DataType.UINT4: 4, DataType.INT4: 4,
    DataType.FLOAT4E2M1: 4, DataType.UINT2: 2, DataType.INT2: 2,
    DataType.FLOAT6E2M3: 6, DataType.FLOAT6E3M2: 6,
}

_FLOATING = frozenset({
    DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16,
    DataType.FLOAT8E4M3FN, DataType.FLOAT8E4M3FNUZ, DataType.FLOAT8E5M2,
    DataType.FLOAT8E5M2FNUZ, DataType.FLOAT8E8M0, DataType.FLOAT4E2M1,
    DataType.FLOAT6E2M3, DataType.FLOAT6E3M2,
})
_INTEGER = frozenset({
    DataType.UINT8, DataType.INT8, DataType.UINT16, DataType.INT16, DataType.INT32,
    DataType.INT64, DataType.UINT32, DataType.UINT64, DataType.UINT4, DataType.INT4,
    DataType.UINT2, DataType.INT2,
})

_TO_NUMPY: dict[DataType, np.dtype] = {
    DataType.FLOAT: np.dtype(np.float32),
    DataType.DOUBLE: np.dtype(np.float64),
    DataType.FLOAT16: np.dtype(np.float16),
    DataType.UINT8: np.dtype(np.uint8),
    DataType.INT8: np.dtype(np.int8),
    DataType.UINT16: np.dtype(np.uint16),
    DataType.INT16: np.dtype(np.int16),
    DataType.INT32: np.dtype(np.int32),
    DataType.INT64: np.dtype(np.int64),
    DataType.UINT32: np.dtype(np.uint32),
    DataType.UINT64: np.dtype(np.uint64),
    DataType.BOOL: np.dtype(np.bool_),
    DataType.STRING: np.dtype(object),
    DataType.COMPLEX64: np.dtype(np.complex64),
    DataType.COMPLEX128: np.dtype(np.complex128),
    DataType.BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    DataType.FLOAT8E4M3FN: np.dtype(ml_dtypes.float8_e4m3fn),
    DataType.FLOAT8E4M3FNUZ: np.dtype(ml_dtypes.float8_e4m3fnuz),
    DataType.FLOAT8E5M2: np.dtype(ml_dtypes.float8_e5m2),
    DataType.FLOAT8E5M2FNUZ: np.dtype(ml_dtypes.float8_e5m2fnuz),
    DataType.UINT4: np.dtype(ml_dtypes.uint4),
    DataType.INT4: np.dtype(ml_dtypes.int4),
    DataType.FLOAT4E2M1: np.dtype(ml_dtypes.float4_e2m1fn),
}
for _name, _dt in (("float8_e8m0fnu", DataType.FLOAT8E8M0), ("uint2", DataType.UINT2),
                   ("int2", DataType.INT2), ("float6_e2m3fn", DataType.FLOAT6E2M3),
                   ("float6_e3m2fn", DataType.FLOAT6E3M2)):
    if hasattr(ml_dtypes, _name):
        _TO_NUMPY[_dt] = np.dtype(getattr(ml_dtypes, _name))

_FROM_NUMPY = {v: k for k, v in _TO_NUMPY.items() if k is not DataType.STRING}
