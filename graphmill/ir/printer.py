"""Readable, stable text form of a graph, meant to be diffed between passes.

Stable means: the same graph prints the same text (attributes sorted by name,
no object ids, large constants summarised by dtype/shape and a checksum).
"""

from __future__ import annotations

import json
import re
import zlib

import numpy as np

from .attrs import Attr, AttrKind
from .graph import Graph, Node, Value
from .tensor import SparseTensor, Tensor

_INLINE_LIMIT = 8  # constants with at most this many elements are printed in full


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_./:\-]+$")


def format_name(name: str) -> str:
    """``%conv1/out`` for ordinary names; ``%"a b"`` (JSON-style escapes) for anything else."""
    if _PLAIN_NAME.match(name):
        return "%" + name
    return "%" + json.dumps(name)


def format_value(v: Value | None) -> str:
    return format_name(v.name) if v is not None else "_"


def _typed(v: Value) -> str:
    return f"{format_name(v.name)}: {v.type if v.type is not None else '?'}"


def _float(x: float) -> str:
    """Floats are stored as float32 in ONNX: print the shortest text that reads back the same float32."""
    return np.format_float_positional(np.float32(x), unique=True, trim="0") if np.isfinite(x) else repr(x)


def format_tensor(t: Tensor | SparseTensor) -> str:
    if isinstance(t, SparseTensor):
        return repr(t)
    head = f"{t.dtype.short_name}{list(t.shape)}"
    try:
        arr = t.numpy()
    except Exception:  # noqa: BLE001 -- undecodable exotic data: still print the header
        return f"<{head}>"
    if arr.size <= _INLINE_LIMIT:
        return f"{head} {np.array2string(np.asarray(arr).ravel(), separator=',', threshold=_INLINE_LIMIT)}"
    try:
        crc = zlib.crc32(np.ascontiguousarray(arr).tobytes()) & 0xFFFFFFFF
    except Exception:  # noqa: BLE001
        return f"<{head}>"
    return f"<{head} crc32={crc:08x}>"


def format_attr(a: Attr, indent: str) -> str:
    if a.ref_attr_name:
        return f"{a.name}=@{a.ref_attr_name}"
    k = a.kind
    if k == AttrKind.FLOAT:
        return f"{a.name}={_float(a.value)}"
    if k in (AttrKind.INT, AttrKind.STRING):
        return f"{a.name}={a.value!r}"
    if k == AttrKind.FLOATS:
        return f"{a.name}=[{', '.join(_float(x) for x in a.value)}]"
    if k in (AttrKind.INTS, AttrKind.STRINGS):
        return f"{a.name}=[{', '.join(repr(x) for x in a.value)}]"
    if k in (AttrKind.TENSOR, AttrKind.SPARSE_TENSOR):
        return f"{a.name}={format_tensor(a.value)}"
    if k in (AttrKind.TENSORS, AttrKind.SPARSE_TENSORS):
        return f"{a.name}=[{', '.join(format_tensor(t) for t in a.value)}]"
    if k == AttrKind.GRAPH:
        return f"{a.name}=" + format_graph(a.value, indent + "    ").lstrip()
    if k == AttrKind.GRAPHS:
        return f"{a.name}=[" + ", ".join(format_graph(g, indent + "    ").lstrip() for g in a.value) + "]"
    return f"{a.name}={a.value}"


def format_node(n: Node, indent: str = "  ") -> str:
    outs = ", ".join(format_value(v) for v in n.outputs)
    op = n.qualified_op
    ins = ", ".join(format_value(v) for v in n.inputs)
    attrs = ""
    if n.attrs:
        attrs = " {" + ", ".join(format_attr(n.attrs[k], indent) for k in sorted(n.attrs)) + "}"
    types = ", ".join(str(v.type) if v is not None and v.type is not None else "?" for v in n.outputs)
    name = f"  # {json.dumps(n.name)[1:-1]}" if n.name else ""
    return f"{indent}{outs} = {op}({ins}){attrs} -> {types}{name}"


def format_model(g: Graph) -> str:
    """The graph followed by the model-local functions it may call."""
    parts = [format_graph(g)]
    for f in g.functions.values():
        attrs = f" attrs({', '.join(f.attributes)})" if f.attributes else ""
        parts.append(f"function {f.domain}::{f.name}{'@' + f.overload if f.overload else ''}{attrs}\n"
                     + format_graph(f.graph))
    return "\n".join(parts)


def format_graph(g: Graph, indent: str = "") -> str:
    lines = []
    head = f"{indent}graph {g.name}"
    if g.opset_imports and g.parent is None:
        head += " <" + ", ".join(f"{d or 'ai.onnx'}:{v}" for d, v in sorted(g.opset_imports.items())) + ">"
    inputs = [v for v in g.inputs]
    lines.append(head + " (")
    for v in inputs:
        lines.append(f"{indent}    {_typed(v)}" + ("  = initializer" if v.is_initializer else ""))
    lines.append(f"{indent}) {{")
    input_ids = {id(v) for v in g.inputs}
    for name in sorted(g.initializers):
        v = g.initializers[name]
        if id(v) in input_ids:
            continue
        lines.append(f"{indent}  const {_typed(v)} = {format_tensor(v.const)}")
    for n in g.nodes:
        lines.append(format_node(n, indent + "  "))
    lines.append(f"{indent}  return " + ", ".join(format_value(v) for v in g.outputs))
    lines.append(f"{indent}}}")
    return "\n".join(lines)
