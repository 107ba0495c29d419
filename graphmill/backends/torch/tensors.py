"""Element types and tensors between the IR (numpy, ``DataType``) and torch, for the torch backend."""

from __future__ import annotations

import numpy as np
import torch

from graphmill.ir import DataType

_TORCH_DTYPES = {
    DataType.FLOAT: torch.float32, DataType.DOUBLE: torch.float64, DataType.FLOAT16: torch.float16,
    DataType.BFLOAT16: torch.bfloat16, DataType.INT8: torch.int8, DataType.UINT8: torch.uint8,
    DataType.INT16: torch.int16, DataType.INT32: torch.int32, DataType.INT64: torch.int64,
    DataType.BOOL: torch.bool, DataType.COMPLEX64: torch.complex64, DataType.COMPLEX128: torch.complex128,
}  # torch's uint16/32/64 lack most CPU kernels, float8/4-bit types most ops: refused at construction


def torch_dtype(dt: int) -> torch.dtype:
    """The torch element type of an ONNX ``DataType``; ``TypeError`` when torch has none the backend can run."""
    try:
        return _TORCH_DTYPES[DataType(dt)]
    except KeyError:
        raise TypeError(f"element type {DataType(dt).short_name} has no torch equivalent") from None


def to_torch_tensor(arr: np.ndarray) -> torch.Tensor:
    """A copy of ``arr`` as a torch tensor (bfloat16 through float32, exactly); ``TypeError`` for strings."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "US O":
        raise TypeError("string tensors have no torch equivalent")
    dt = DataType.from_numpy(arr.dtype)
    if dt == DataType.BFLOAT16:  # numpy has no bfloat16: go through float32 (exact)
        return torch.from_numpy(arr.astype(np.float32)).to(torch.bfloat16)
    torch_dtype(dt)
    return torch.from_numpy(np.array(arr, copy=True))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as numpy (bfloat16 as ml_dtypes' bfloat16)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(DataType.BFLOAT16.numpy())
    return t.numpy()
