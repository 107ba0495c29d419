"""Reading and writing ONNX files: the checks and the atomic write around import/export.

Files are parsed with protobuf directly (never ``onnx.load`` with external
data, whose path handling we do not control), never unpickled, and written to
a temporary file in the destination folder that is renamed into place only
once complete, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import os
import tempfile

import onnx
from google.protobuf.message import DecodeError

from graphmill.ir import Graph, ModelLoadError, UserInputError
from graphmill.ir.tensor import Tensor

from .onnx_export import to_proto
from .onnx_import import from_proto

_PROTOBUF_LIMIT = 2**31 - 1


def read_model_proto(path: str | os.PathLike) -> onnx.ModelProto:
    """Parse a file into a ``ModelProto`` with errors that say what is wrong with it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelLoadError(f"{path}: is a folder, not an ONNX model file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read ({e.strerror})") from None
    if not data:
        raise ModelLoadError(f"{path}: the file is empty, not an ONNX model")
    looks_onnx = data[0] == 0x08  # every ONNX writer starts with field 1, ir_version (varint)
    try:
        model = onnx.ModelProto.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        if looks_onnx:
            raise ModelLoadError(f"{path}: the ONNX protobuf is truncated or corrupt ({e}); "
                                 "re-export or re-download the model") from None
        raise ModelLoadError(f"{path}: not an ONNX model (the file does not parse as an ONNX protobuf)") from None
    if not model.HasField("graph") or model.ir_version == 0 and not len(model.opset_import):
        raise ModelLoadError(f"{path}: not an ONNX model (no graph or version in the file)")
    return model


def load(path: str | os.PathLike) -> Graph:
    """Load an ONNX model file into a ``Graph``; external data must lie in the model's folder."""
    path = os.fspath(path)
    model = read_model_proto(path)
    return from_proto(model, base_dir=os.path.dirname(os.path.abspath(path)), path=path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserInputError(f"{path}: the folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(graph: Graph, path: str | os.PathLike, *, external_data: str | None = None,
         size_threshold: int = 1024) -> None:
    """Save ``graph`` as an ONNX file, atomically.

    With ``external_data`` (a file name, relative to the model's folder), tensors
    of at least ``size_threshold`` bytes go to that file instead of the model;
    models over protobuf's 2 GiB limit need it.
    """
    path = os.fspath(path)
    model = to_proto(graph)
    if external_data is not None:
        _move_to_external(model, path, external_data, size_threshold)
    # Measuring the size costs a serialization; only do it when the weights alone come close.
    if external_data is None and _inline_bytes(graph) > _PROTOBUF_LIMIT // 2:
        size = model.ByteSize()
        if size > _PROTOBUF_LIMIT:
            raise UserInputError(f"{path}: the model is {size / 2**30:.1f} GiB, over protobuf's 2 GiB limit; "
                                 "save it with external_data='weights.data'")
    atomic_write_bytes(path, model.SerializeToString())


def _inline_bytes(graph: Graph) -> int:
    return sum(v.const.nbytes for g in graph.all_graphs() for v in g.initializers.values()
               if isinstance(v.const, Tensor) and v.const.dtype != 8)


def _move_to_external(model: onnx.ModelProto, path: str, location: str, threshold: int) -> None:
    if os.path.isabs(location) or os.path.normpath(location).startswith(".."):
        raise UserInputError(f"external data location {location!r} must be a file name inside the model's folder")
    folder = os.path.dirname(os.path.abspath(path))
    chunks: list[bytes] = []
    offset = 0
    for t in _all_tensors(model.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL or not t.HasField("raw_data"):
            continue
        raw = t.raw_data
        if len(raw) < threshold:
            continue
        pad = (-offset) % 4096  # page-align like onnx's own writer, so readers can mmap
        chunks.append(b"\0" * pad)
        offset += pad
        chunks.append(raw)
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
            e = t.external_data.add()
            e.key, e.value = k, v
        offset += len(raw)
    atomic_write_bytes(os.path.join(folder, location), b"".join(chunks))


def _all_tensors(gp: onnx.GraphProto):
    yield from gp.initializer
    for n in gp.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t
            elif a.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _all_tensors(g)


__all__ = ["load", "save", "read_model_proto", "atomic_write_bytes", "from_proto", "to_proto", "Tensor"]
