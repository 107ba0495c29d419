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
from graphmill.ir.gc_pause import collector_paused
from graphmill.util.files import atomic_write_bytes, atomic_write_many, check_target

from .onnx_export import serialize_model, to_proto
from .onnx_import import from_proto
from .onnx_wire import carve_weights

_PROTOBUF_LIMIT = 2**31 - 1


def read_model_proto(path: str | os.PathLike) -> onnx.ModelProto:
    """Parse a file into a ``ModelProto`` with errors that say what is wrong with it."""
    path = os.fspath(path)
    return _parse_model(path, _read_file(path))


def _read_file(path: str) -> bytes:
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
    return data


def _parse_model(path: str, data: bytes) -> onnx.ModelProto:
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


@collector_paused()
def load(path: str | os.PathLike) -> Graph:
    """Load an ONNX model file into a ``Graph``; external data must lie in the model's folder.

    The weights' bytes (top-level initializers' ``raw_data``) are set aside before parsing and stay
    in the file's contents, where decoding views them and ``save`` writes them from: protobuf never
    copies them into message objects.
    """
    path = os.fspath(path)
    data = _read_file(path)
    model, raw = _parse_skeleton(path, data)
    return from_proto(model, base_dir=os.path.dirname(os.path.abspath(path)), path=path, raw_data=raw)


def _parse_skeleton(path: str, data: bytes) -> tuple[onnx.ModelProto, list | None]:
    """The model without its weights' bytes, and where they are; the whole model, parsed as
    ``read_model_proto`` does (with its errors), when the file is not a plain one-graph message."""
    try:
        carved = carve_weights(data)
        if carved is not None:
            skeleton, raw = carved
            model = onnx.ModelProto.FromString(skeleton)
            if (model.HasField("graph") and len(model.graph.initializer) == len(raw)
                    and (model.ir_version or len(model.opset_import))):
                return model, raw
    except (ValueError, DecodeError, RuntimeError):
        pass
    return _parse_model(path, data), None


@collector_paused()
def save(graph: Graph, path: str | os.PathLike, *, external_data: str | None = None,
         size_threshold: int = 1024) -> None:
    """Save ``graph`` as an ONNX file, atomically.

    With ``external_data`` (a file name, relative to the model's folder), tensors
    of at least ``size_threshold`` bytes go to that file instead of the model;
    models over protobuf's 2 GiB limit need it (CLI: ``--external-data NAME``).
    The model and its data file are replaced together or not at all.
    """
    path = os.fspath(path)
    check_target(path)
    if external_data is not None:
        model = to_proto(graph)
        data = _move_to_external(model, path, external_data, size_threshold)
        atomic_write_many([data, (path, model.SerializeToString())])
        return
    chunks = serialize_model(graph)  # the bytes of to_proto(graph), weights not copied into a proto
    size = sum(len(c) for c in chunks)
    if size > _PROTOBUF_LIMIT:
        raise UserInputError(f"{path}: the model is {size / 2**30:.1f} GiB, over protobuf's 2 GiB limit; "
                             "save its weights separately (CLI: --external-data weights.data; "
                             "Python: save(graph, path, external_data='weights.data'))")
    atomic_write_many([(path, chunks)])


def _move_to_external(model: onnx.ModelProto, path: str, location: str, threshold: int) -> tuple[str, bytes]:
    if (not location or os.path.isabs(location) or os.path.normpath(location).startswith("..")
            or os.path.dirname(os.path.normpath(location))):
        raise UserInputError(f"external data location {location!r} must be a plain file name; it is written "
                             "next to the model")
    if location == os.path.basename(path):
        raise UserInputError(f"external data location {location!r} is the model file itself; pick another name")
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
    return os.path.join(folder, location), b"".join(chunks)


def external_data_files(graph: Graph) -> set[str]:
    """Absolute paths of the external data files a loaded graph's tensors read from."""
    from .onnx_tensors import OnnxTensorSource

    found: set[str] = set()
    for g in graph.all_graphs():
        for v in g.initializers.values():
            for t in (v.const, getattr(v.const, "values", None), getattr(v.const, "indices", None)):
                src = getattr(t, "source", None)
                if isinstance(src, OnnxTensorSource) and src.external is not None:
                    found.add(src.external.path)
        for n in g.nodes:
            for a in n.attrs.values():
                for t in (a.value if isinstance(a.value, list) else [a.value]):
                    src = getattr(t, "source", None)
                    if isinstance(src, OnnxTensorSource) and src.external is not None:
                        found.add(src.external.path)
    return found


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


def clear_default_presence(msg) -> None:
    """Clear scalar fields explicitly set to their default value, recursively, in place.

    ONNX's protos are proto2, so ``domain: ""`` written out differs from
    ``domain`` left unset, though no reader can tell them apart. Round-trip
    equality is judged after this normalisation and no other.
    """
    from google.protobuf.descriptor import FieldDescriptor

    for fd, value in msg.ListFields():
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if is_repeated_field(fd):
                for m in value:
                    clear_default_presence(m)
            else:
                clear_default_presence(value)
        elif not is_repeated_field(fd) and fd.containing_oneof is None:
            if value == fd.default_value:
                msg.ClearField(fd.name)


def is_repeated_field(fd) -> bool:
    rep = getattr(fd, "is_repeated", None)  # newer protobuf; ``label`` is deprecated there
    if rep is not None:
        return bool(rep() if callable(rep) else rep)
    return fd.label == fd.LABEL_REPEATED



__all__ = ["load", "save", "clear_default_presence", "read_model_proto", "atomic_write_bytes", "atomic_write_many", "external_data_files",
           "from_proto", "to_proto"]
