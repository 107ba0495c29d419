"""ONNX tensors as lazy IR constants, with external data confined to the model's folder.

An imported ``TensorProto`` is kept as it is (``OnnxTensorSource``) and decoded
only on demand, so re-exporting an untouched weight copies bytes instead of
decoding and re-encoding them. External data is checked when the model is
loaded -- the path must be relative, must resolve (symlinks included) inside
the model's folder, and the byte range must lie inside the file -- and read
only when the data is needed.
"""

from __future__ import annotations

import os
import re
import stat
import sys

import numpy as np
import onnx
from onnx import numpy_helper

from graphmill.ir import DataType, Tensor
from graphmill.util.errors import ModelLoadError, UnsafeModelError
from graphmill.util.text import short_number

from .onnx_wire import TENSOR_RAW_DATA, RawData, field_boundary, field_key, varint


class ExternalData:
    """Where an external tensor's bytes live: a checked file path and byte range."""

    __slots__ = ("path", "offset", "length", "stamp", "size")

    def __init__(self, path: str, offset: int, length: int | None) -> None:
        self.path = path
        self.offset = offset
        self.length = length
        self.stamp = _identity(os.stat(path))  # data is read lazily: notice if the file changes meanwhile
        self.size = self.stamp[2]

    def read(self) -> bytes:
        # the file opened must be the one checked at load: its path was confined then, and a link swapped in since
        # (same size and time, another file) was read (an outside check); so the open file is compared. Opened
        # without blocking: a FIFO swapped in would block open() itself
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or _identity(st) != self.stamp:
                raise ModelLoadError(f"{self.path}: the external data file was replaced or changed after the model "
                                     "was loaded (another file, or the same bytes written anew); load the model again")
            f.seek(self.offset)
            data = f.read() if self.length is None else f.read(self.length)
        if self.length is not None and len(data) != self.length:
            raise ModelLoadError(f"{self.path}: external data ends early (wanted {self.length} bytes "
                                 f"at offset {self.offset}, got {len(data)})")
        return data


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """A file's identity and version: device, inode, size, modification time."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def string_entries(entries) -> tuple[dict[str, str], str | None]:
    """ONNX's key-value lists (``metadata_props``, ``external_data``) as a dict, and the first key given twice (None
    when each is given once): a dict keeps the last value and loses the others without a word, so the callers
    refuse a repeated key."""
    out: dict[str, str] = {}
    for e in entries:
        if e.key in out:
            return out, e.key
        out[e.key] = e.value
    return out, None


def resolve_external_data(proto: onnx.TensorProto, base_dir: str | None, model_path: str) -> ExternalData:
    """Validate an external-data reference; raise ``UnsafeModelError`` if it leaves ``base_dir``."""
    info, twice = string_entries(proto.external_data)
    where = f"{model_path}: tensor {proto.name!r}"
    if twice is not None:  # onnx takes the last, ONNX Runtime refuses the file (an outside check)
        ort = " (ONNX Runtime refuses such a file)" if twice == "location" else ""  # it takes a repeated offset's last
        raise ModelLoadError(f"{where} names its external data's {twice!r} twice; which one holds is ambiguous{ort}")
    location = info.get("location", "")
    if not location:
        raise ModelLoadError(f"{where} is stored externally but names no location")
    if "\x00" in location:  # no file name holds one; the OS calls would raise a bare ValueError
        raise ModelLoadError(f"{where} refers to external data {location!r}, a location with a NUL byte, "
                             "which no file can have")
    if base_dir is None:
        raise UnsafeModelError(f"{where} refers to external file {location!r}, but the model was not "
                               "loaded from a folder; load it from its file path")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        raise UnsafeModelError(f"{where} refers to external data at absolute path {location!r}; "
                               "external data must lie inside the model's folder")
    base_real = os.path.realpath(base_dir)
    target = os.path.realpath(os.path.join(base_real, location))
    if os.path.commonpath([base_real, target]) != base_real:
        raise UnsafeModelError(f"{where} refers to external data {location!r}, which leaves the model's "
                               f"folder {base_dir!r}; refusing to read it")
    if not os.path.isfile(target):
        missing = "does not exist" if not os.path.exists(target) else "is not a regular file (a folder, a pipe, ...)"
        raise ModelLoadError(f"{where} refers to external data file {location!r}, which {missing} in {base_dir!r}")
    for key in ("offset", "length"):  # ASCII digits only, as ONNX Runtime reads them: int() also took "0_0" and
        # other scripts' digits, and an empty value as 0: files graphmill read and ONNX Runtime refused (outside checks)
        if key in info and not re.fullmatch(r"-?[0-9]+", info[key]):  # a negative one: the range check
            raise ModelLoadError(f"{where} has an external data {key} that is not a whole number of bytes in "
                                 f"ASCII digits: {info[key][:40]!r}")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else None
    except ValueError:  # past Python's 4,300 digits
        raise ModelLoadError(f"{where} has an external data offset or length of thousands of digits") from None
    size = os.path.getsize(target)
    if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
        raise ModelLoadError(f"{where}: external data range offset={short_number(offset)} "
                             f"length={short_number(length)} lies outside "
                             f"{location!r} ({size} bytes)")
    return ExternalData(target, offset, length)


class OnnxTensorSource:
    """Keeps the imported ``TensorProto`` and decodes it when asked.

    ``raw``: where the tensor's ``raw_data`` lies in the file's contents, when the reader set it
    aside (``proto`` then lacks it): decoding views those bytes and saving writes them, with no copy.
    """

    __slots__ = ("proto", "external", "raw")

    def __init__(self, proto: onnx.TensorProto, external: ExternalData | None = None,
                 raw: RawData | None = None) -> None:
        self.proto = proto
        self.external = external
        self.raw = raw

    def inline_proto(self) -> onnx.TensorProto:
        """The tensor with its data inline (external or set-aside bytes put back)."""
        if self.external is None and self.raw is None:
            return self.proto
        p = onnx.TensorProto()
        p.CopyFrom(self.proto)
        if self.raw is not None:
            p.raw_data = bytes(self.raw.view())
            return p
        del p.external_data[:]
        p.data_location = onnx.TensorProto.DEFAULT
        p.raw_data = self.external.read()
        return p

    def numpy(self) -> np.ndarray:
        if self.raw is not None:
            arr = _view_raw(self.proto, self.raw)
            if arr is not None:
                return arr
        return numpy_helper.to_array(self.inline_proto())


def _view_raw(proto: onnx.TensorProto, raw: RawData) -> np.ndarray | None:
    """What ``numpy_helper.to_array`` returns for a tensor whose ``raw_data`` is ``raw`` (a read-only
    ``np.frombuffer`` array), viewing the file's bytes; None where it does more than that (packed
    element types, strings, segments, big-endian hosts) or would fail."""
    if sys.byteorder != "little" or proto.HasField("segment"):
        return None
    try:
        dtype = DataType(proto.data_type)
    except ValueError:
        return None
    if dtype in _PACKED or dtype in (DataType.STRING, DataType.UNDEFINED):
        return None
    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(proto.data_type)
    if len(raw) % np_dtype.itemsize:
        return None
    arr = np.frombuffer(raw.buf, dtype=np_dtype, count=len(raw) // np_dtype.itemsize, offset=raw.start)
    try:
        return arr.reshape(tuple(proto.dims))
    except ValueError:
        return None


def tensor_from_proto(proto: onnx.TensorProto, base_dir: str | None, model_path: str,
                      raw: RawData | None = None) -> Tensor:
    external = None
    if proto.data_location == onnx.TensorProto.EXTERNAL:
        inline = [f for f in ("raw_data", *_TYPED_FIELDS) if len(getattr(proto, f))] + (["raw_data"] if raw else [])
        if inline:
            # which copy a reader takes differs (graphmill's the inline one, ONNX Runtime the file, resolved against
            # its working directory when handed bytes): ambiguous, and a way to read outside the folder
            location = next((e.value for e in proto.external_data if e.key == "location"), "")
            raise ModelLoadError(f"{model_path}: tensor {proto.name!r} is stored externally ({location!r}) and also "
                                 f"holds its data inline ({inline[0]}); ONNX allows one or the other")
        external = resolve_external_data(proto, base_dir, model_path)
    try:
        dtype = DataType(proto.data_type)
    except ValueError:
        raise ModelLoadError(f"{model_path}: tensor {proto.name!r} has unknown element type {proto.data_type}") from None
    check_tensor_data(proto, dtype, model_path, raw, external)
    return Tensor(
        dtype=dtype,
        shape=tuple(proto.dims),
        source=OnnxTensorSource(proto, external, raw),
        name=proto.name,
        doc_string=proto.doc_string,
        metadata_props={p.key: p.value for p in proto.metadata_props} if len(proto.metadata_props) else None,
    )


_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def check_tensor_data(proto: onnx.TensorProto, dtype: DataType, model_path: str, raw: RawData | None = None,
                      external: ExternalData | None = None) -> None:
    """ModelLoadError naming the tensor when its data does not fill its dims (or its dims are beyond
    ``graphmill.util.limits``), checked at load from lengths alone: a short ``raw_data`` would
    otherwise surface much later, inside a pass or ONNX Runtime, as a pass failure."""
    from graphmill.util.limits import shape_problem

    dims = tuple(proto.dims)
    where = f"{model_path}: tensor {proto.name!r} (dims {list(dims)}, {dtype.short_name})"
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"{where}: negative dimension")
    problem = shape_problem(dims)
    if problem:
        raise ModelLoadError(f"{where}: {problem}")
    if proto.HasField("segment"):  # neither onnx's reader nor ONNX Runtime reads one: refused here, not by a pass
        raise ModelLoadError(f"{where}: stored in segments, which no reader supports (onnx's numpy_helper: "
                             "'Currently not supporting loading segments')")
    if dtype == DataType.UNDEFINED:
        raise ModelLoadError(f"{where}: element type UNDEFINED (0); a tensor's data has a type")
    n = 1
    for d in dims:
        n *= d
    stored = _stored_bytes(proto, raw, external)
    if dtype in _PACKED:  # sub-byte types: their raw bytes are ceil(n * bits / 8); typed fields are left to onnx
        if stored is None:
            return
        need, have = -(-n * _PACKED_BITS[dtype] // 8), stored
        if have != need:
            raise ModelLoadError(f"{where}: its dims need {need} bytes of data ({_PACKED_BITS[dtype]} bits an "
                                 f"element), it holds {have}")
        return
    if dtype == DataType.STRING:
        have, need, unit = len(proto.string_data), n, "strings"
    else:
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(proto.data_type).itemsize
        except (KeyError, TypeError, ValueError):
            return
        if stored is not None:
            need, have, unit = n * itemsize, stored, "bytes"
            if raw is None and external is not None:
                where += f" in external data {os.path.basename(external.path)!r} at offset {external.offset}"
        else:
            have = max(len(getattr(proto, f)) for f in _TYPED_FIELDS)
            need = n * (2 if dtype in (DataType.COMPLEX64, DataType.COMPLEX128) else 1)
            unit = "values"
    if have != need:
        raise ModelLoadError(f"{where}: its dims need {need} {unit} of data, it holds {have}")


def _stored_bytes(proto: onnx.TensorProto, raw: RawData | None, external: ExternalData | None) -> int | None:
    """The bytes a tensor's data holds when stored raw (set aside by the reader, in external data, in
    ``raw_data``), None when it is in the typed fields."""
    if raw is not None:
        return len(raw)
    if external is not None:  # no length: to the end of the file (ONNX's rule), sized at load
        return external.size - external.offset if external.length is None else external.length
    return len(proto.raw_data) if proto.HasField("raw_data") else None


def tensor_to_proto(t: Tensor, name: str | None = None, into: onnx.TensorProto | None = None) -> onnx.TensorProto:
    """Re-emit an untouched imported tensor verbatim; encode anything else from numpy.

    ``into`` (e.g. ``graph.initializer.add()``) receives the tensor directly, which
    saves copying large weights twice.
    """
    p = into if into is not None else onnx.TensorProto()
    src = t.source
    if isinstance(src, OnnxTensorSource):
        p.CopyFrom(src.inline_proto())
    else:
        arr = np.asarray(t.numpy())
        if t.dtype == DataType.STRING:
            enc = numpy_helper.from_array(np.asarray(arr, dtype=object))
        else:
            enc = numpy_helper.from_array(arr)
            if enc.data_type != int(t.dtype):
                # numpy's dtype did not say which ONNX type (e.g. packed int4): encode explicitly.
                enc = onnx.helper.make_tensor("", int(t.dtype), list(t.shape), arr.ravel().tolist())
        p.CopyFrom(enc)
        if t.doc_string:
            p.doc_string = t.doc_string
        for k, v in t.metadata_props.items():
            e = p.metadata_props.add()
            e.key, e.value = k, v
    final = name if name is not None else t.name
    if p.name != final:
        p.name = final
    return p


# -- a tensor as pieces of a serialized message (see onnx_export.serialize_model) ---------------

# element types numpy_helper.from_array packs (several elements per byte): encoded the long way
_PACKED_BITS = {DataType.INT4: 4, DataType.UINT4: 4, DataType.FLOAT4E2M1: 4, DataType.INT2: 2, DataType.UINT2: 2,
                DataType.FLOAT6E2M3: 6, DataType.FLOAT6E3M2: 6}
_PACKED = frozenset(_PACKED_BITS)


def tensor_chunks(t: Tensor, name: str, field: int) -> list:
    """The serialized entry of ``tensor_to_proto(t, name)`` in a length-delimited ``field`` of the
    enclosing message, as bytes-like chunks. A tensor held as a native numpy array is written from
    the array's own memory: the TensorProto's fields around ``raw_data`` (9) are encoded apart."""
    pieces = _array_pieces(t, name) or _set_aside_pieces(t, name)
    if pieces is None:
        src = t.source
        if isinstance(src, OnnxTensorSource) and src.external is None and src.proto.name == name:
            body = src.proto.SerializeToString()  # what tensor_to_proto would copy, verbatim
        else:
            body = tensor_to_proto(t, name).SerializeToString()
        return [field_key(field) + varint(len(body)), body]
    head, raw, tail = pieces
    raw_key = field_key(TENSOR_RAW_DATA) + varint(len(raw))
    size = len(head) + len(raw_key) + len(raw) + len(tail)
    return [field_key(field) + varint(size) + head + raw_key, raw, tail]


def _set_aside_pieces(t: Tensor, name: str) -> tuple[bytes, memoryview, bytes] | None:
    """(fields before raw_data, the data, fields after) of an untouched imported tensor whose data
    the reader set aside: its proto (without the data) split around field 9, and the file's bytes."""
    src = t.source
    if not isinstance(src, OnnxTensorSource) or src.raw is None or src.proto.name != name:
        return None
    rest = src.proto.SerializeToString()
    cut = field_boundary(rest, TENSOR_RAW_DATA)
    return rest[:cut], src.raw.view(), rest[cut:]


def _array_pieces(t: Tensor, name: str) -> tuple[bytes, memoryview, bytes] | None:
    """(fields before raw_data, the data, fields after) as ``tensor_to_proto`` encodes an array whose
    element type numpy names exactly; None for every other tensor."""
    if isinstance(t.source, OnnxTensorSource) or t.dtype == DataType.STRING or t.dtype in _PACKED:
        return None
    if sys.byteorder != "little":
        return None  # from_array swaps bytes there
    arr = np.asarray(t.numpy())
    if arr.dtype == object or arr.dtype.kind in "SU":
        return None
    try:
        code = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
    except (KeyError, ValueError, TypeError):
        return None
    if code != int(t.dtype):
        return None
    head = onnx.TensorProto()
    head.dims.extend(arr.shape)
    head.data_type = code
    if name:
        head.name = name
    tail = onnx.TensorProto()
    if t.doc_string:
        tail.doc_string = t.doc_string
    for k, v in t.metadata_props.items():
        e = tail.metadata_props.add()
        e.key, e.value = k, v
    raw = memoryview(np.ascontiguousarray(arr).view(np.uint8).reshape(-1))
    return head.SerializeToString(), raw, tail.SerializeToString()
