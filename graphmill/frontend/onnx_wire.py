"""Just enough of protobuf's wire format to handle an ONNX model's weights as plain bytes.

A serialized message is a sequence of fields, each a tag (field number and wire type) and a
value; a length-delimited value (a string, bytes, or a nested message) is its length then its
bytes, and a message is the concatenation of its fields. That lets the file reader set the
weights' bytes (``TensorProto.raw_data``) aside before parsing and the writer put them back in
place, instead of protobuf copying every weight into and out of message objects.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

MODEL_GRAPH = 7  # ModelProto.graph
GRAPH_INITIALIZER = 5  # GraphProto.initializer
TENSOR_RAW_DATA = 9  # TensorProto.raw_data

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class Field(NamedTuple):
    number: int
    wire: int
    tag_start: int  # where the field's tag starts
    start: int  # where its value starts (after the length, for length-delimited fields)
    end: int  # where it ends


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint encoding of a non-negative integer."""
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field_key(field: int) -> bytes:
    """The tag of a length-delimited field."""
    return varint(field << 3 | _LEN)


def _read_varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    if i < end and buf[i] < 0x80:  # one byte: most tags and lengths
        return buf[i], i + 1
    n = shift = 0
    while True:
        if i >= end or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return n, i


def iter_fields(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[Field]:
    """The top-level fields of the message serialized in ``buf[start:end]``; ValueError if malformed."""
    end = len(buf) if end is None else end
    i = start
    while i < end:
        tag, j = _read_varint(buf, i, end)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            _, k = _read_varint(buf, j, end)
        elif wire == _I64:
            k = j + 8
        elif wire == _LEN:
            n, j = _read_varint(buf, j, end)
            k = j + n
        elif wire == _I32:
            k = j + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if number == 0 or k > end:
            raise ValueError("malformed field")
        yield Field(number, wire, i, j, k)
        i = k


def field_boundary(buf: bytes, field: int) -> int:
    """Offset of the first top-level field numbered above ``field`` (``len(buf)`` if none): where
    that field's entries go in a message serialized in field-number order, as protobuf writes.
    (``iter_fields``'s walk without building a Field per field: save calls it once per weight.)"""
    i, end = 0, len(buf)
    while i < end:
        tag, j = _read_varint(buf, i, end)
        if tag >> 3 > field:
            return i
        wire = tag & 7
        if wire == _VARINT:
            _, i = _read_varint(buf, j, end)
        elif wire == _LEN:
            n, j = _read_varint(buf, j, end)
            i = j + n
        elif wire == _I64:
            i = j + 8
        elif wire == _I32:
            i = j + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return end


class RawData:
    """A weight's bytes inside the file's contents, which it keeps alive."""

    __slots__ = ("buf", "start", "end")

    def __init__(self, buf: bytes, start: int, end: int) -> None:
        self.buf = buf
        self.start = start
        self.end = end

    def __len__(self) -> int:
        return self.end - self.start

    def view(self) -> memoryview:
        return memoryview(self.buf)[self.start:self.end]


def carve_weights(data: bytes) -> tuple[bytes, list[RawData | None]] | None:
    """Split a serialized ModelProto into a skeleton and its top-level initializers' ``raw_data``.

    The skeleton is the model with each top-level initializer's ``raw_data`` field left out; the
    list gives, per initializer in file order, where its bytes are in ``data`` (None where the
    initializer has no single ``raw_data``: external, typed fields, or repeated fields, kept whole).
    Returns None when the file does not have exactly one ``graph`` field (protobuf would merge
    several); raises ValueError when it is not a well-formed message.
    """
    top = [f for f in iter_fields(data) if f.number == MODEL_GRAPH]
    if len(top) != 1 or top[0].wire != _LEN:
        return None
    graph = top[0]
    mv = memoryview(data)
    pieces: list = []
    raws: list[RawData | None] = []
    cursor = graph.start
    for f in iter_fields(data, graph.start, graph.end):
        if f.number != GRAPH_INITIALIZER or f.wire != _LEN:
            continue
        found = [t for t in iter_fields(data, f.start, f.end) if t.number == TENSOR_RAW_DATA]
        if len(found) != 1 or found[0].wire != _LEN:
            raws.append(None)
            continue
        r = found[0]
        body = bytes(mv[f.start:r.tag_start]) + bytes(mv[r.end:f.end])
        pieces += [mv[cursor:f.tag_start], field_key(GRAPH_INITIALIZER) + varint(len(body)) + body]
        cursor = f.end
        raws.append(RawData(data, r.start, r.end))
    pieces.append(mv[cursor:graph.end])
    skeleton_graph = b"".join(pieces)
    skeleton = b"".join([mv[:graph.tag_start], field_key(MODEL_GRAPH) + varint(len(skeleton_graph)),
                         skeleton_graph, mv[graph.end:]])
    return skeleton, raws
