"""``ir.Graph`` -> ONNX ``ModelProto``; the inverse of ``onnx_import``.

Untouched imported tensors are re-emitted byte for byte; anything a pass
created is encoded from numpy. Graphs built in Python (no ``ModelInfo``) get
the smallest IR version their opsets need, so older runtimes still load them.
"""

from __future__ import annotations

import itertools

import onnx

from graphmill.ir import (
    Attr,
    AttrKind,
    Function,
    Graph,
    MapType,
    Node,
    OpaqueType,
    OptionalType,
    SequenceType,
    SparseTensor,
    SparseTensorType,
    Tensor,
    TensorType,
    Type,
    Value,
)

from .onnx_tensors import tensor_chunks, tensor_to_proto
from .onnx_wire import GRAPH_INITIALIZER, MODEL_GRAPH, field_boundary, field_key, varint


def type_to_proto(t: Type, tp: onnx.TypeProto) -> None:
    if t.denotation:
        tp.denotation = t.denotation
    if isinstance(t, (TensorType, SparseTensorType)):
        tt = tp.sparse_tensor_type if isinstance(t, SparseTensorType) else tp.tensor_type
        tt.elem_type = int(t.dtype)
        if t.shape is not None:
            tt.shape.SetInParent()
            dens = getattr(t, "dim_denotations", None)
            for i, d in enumerate(t.shape):
                dim = tt.shape.dim.add()
                if isinstance(d, int):
                    dim.dim_value = d
                elif isinstance(d, str):
                    dim.dim_param = d
                if dens and i < len(dens) and dens[i]:
                    dim.denotation = dens[i]
    elif isinstance(t, SequenceType):
        tp.sequence_type.SetInParent()
        if t.elem_type is not None:
            type_to_proto(t.elem_type, tp.sequence_type.elem_type)
    elif isinstance(t, OptionalType):
        tp.optional_type.SetInParent()
        if t.elem_type is not None:
            type_to_proto(t.elem_type, tp.optional_type.elem_type)
    elif isinstance(t, MapType):
        tp.map_type.key_type = int(t.key_dtype)
        if t.value_type is not None:
            type_to_proto(t.value_type, tp.map_type.value_type)
    elif isinstance(t, OpaqueType):
        tp.opaque_type.domain = t.domain
        tp.opaque_type.name = t.name


def _value_info(v: Value, vi: onnx.ValueInfoProto, *, type_override: Type | None = None) -> None:
    vi.name = v.name
    t = type_override if type_override is not None else v.type
    if t is not None:
        type_to_proto(t, vi.type)
    if v.doc_string:
        vi.doc_string = v.doc_string
    _set_props(vi.metadata_props, v.metadata_props)


def _contradicts(declared: onnx.TypeProto, t: Type | None) -> bool:
    """Whether a value_info's tensor type says otherwise than the value's own type: another element type, rank or
    known size (what is left out on either side contradicts nothing)."""
    if t is None or declared.WhichOneof("value") != "tensor_type":
        return False
    own = onnx.TypeProto()
    type_to_proto(t, own)
    if own.WhichOneof("value") != "tensor_type":
        return True
    a, b = declared.tensor_type, own.tensor_type
    if a.elem_type and b.elem_type and a.elem_type != b.elem_type:
        return True
    if not (a.HasField("shape") and b.HasField("shape")):
        return False
    if len(a.shape.dim) != len(b.shape.dim):
        return True
    return any(x.HasField("dim_value") and y.HasField("dim_value") and x.dim_value != y.dim_value
               for x, y in zip(a.shape.dim, b.shape.dim))


def _in_file_order(infos: list, order) -> list:
    """value_info as the loaded file listed it (its names' positions there); names it did not have (values a pass
    made) after them, in node order."""
    if not order:
        return infos
    position = {name: i for i, name in enumerate(order)}
    return sorted(infos, key=lambda vi: position.get(vi.name, len(position)))  # stable: new ones keep node order


def _set_props(field, props: dict[str, str]) -> None:
    for k, val in props.items():
        e = field.add()
        e.key, e.value = k, val


def _json_safe(meta: dict) -> dict:
    import json

    out = {}
    for k, v in meta.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue  # in-memory objects (e.g. analysis handles) do not travel
        out[k] = v
    return out


def _set_meta(field, meta: dict) -> None:
    """Annotations travel as JSON under ``graphmill.meta`` (see onnx_import.META_KEY)."""
    if not meta:
        return
    import json

    safe = _json_safe(meta)
    if safe:
        e = field.add()
        e.key, e.value = "graphmill.meta", json.dumps(safe, sort_keys=True, separators=(",", ":"))


def _sparse_to_proto(s: SparseTensor, sp: onnx.SparseTensorProto, name: str | None = None) -> None:
    tensor_to_proto(s.values, name, into=sp.values)
    tensor_to_proto(s.indices, into=sp.indices)
    sp.dims.extend(s.dims)


def _attr_to_proto(a: Attr, ap: onnx.AttributeProto) -> None:
    ap.name = a.name
    ap.type = int(a.kind)
    if a.doc_string:
        ap.doc_string = a.doc_string
    if a.ref_attr_name:
        ap.ref_attr_name = a.ref_attr_name
        return
    k, v = a.kind, a.value
    if k == AttrKind.FLOAT:
        ap.f = v
    elif k == AttrKind.INT:
        ap.i = v
    elif k == AttrKind.STRING:
        ap.s = v.encode("utf-8") if isinstance(v, str) else v
    elif k == AttrKind.TENSOR:
        tensor_to_proto(v, into=ap.t)
    elif k == AttrKind.GRAPH:
        graph_to_proto(v, ap.g)
    elif k == AttrKind.FLOATS:
        ap.floats.extend(v)
    elif k == AttrKind.INTS:
        ap.ints.extend(v)
    elif k == AttrKind.STRINGS:
        ap.strings.extend(s.encode("utf-8") if isinstance(s, str) else s for s in v)
    elif k == AttrKind.TENSORS:
        for t in v:
            tensor_to_proto(t, into=ap.tensors.add())
    elif k == AttrKind.GRAPHS:
        for sub in v:
            graph_to_proto(sub, ap.graphs.add())
    elif k == AttrKind.SPARSE_TENSOR:
        _sparse_to_proto(v, ap.sparse_tensor)
    elif k == AttrKind.SPARSE_TENSORS:
        for s in v:
            _sparse_to_proto(s, ap.sparse_tensors.add())
    elif k == AttrKind.TYPE_PROTO:
        if v is not None:
            type_to_proto(v, ap.tp)
    elif k == AttrKind.TYPE_PROTOS:
        for t in v:
            type_to_proto(t, ap.type_protos.add())


def node_to_proto(n: Node, npb: onnx.NodeProto) -> None:
    npb.input.extend(v.name if v is not None else "" for v in n.inputs)
    npb.output.extend(v.name if v is not None else "" for v in n.outputs)
    if n.name:
        npb.name = n.name
    npb.op_type = n.op_type
    if n.domain:
        npb.domain = n.domain
    if n.overload:
        npb.overload = n.overload
    if n.doc_string:
        npb.doc_string = n.doc_string
    for a in n.attrs.values():
        _attr_to_proto(a, npb.attribute.add())
    _set_props(npb.metadata_props, n.metadata_props)
    _set_meta(npb.metadata_props, n.meta)
    for blob in n.extra.get("device_configurations", ()):
        npb.device_configurations.add().ParseFromString(blob)


def _is_big_float_weight(v: Value, limit: int) -> bool:
    c = v.const
    return isinstance(c, Tensor) and c.dtype.is_floating and c.size > limit


def graph_to_proto(g: Graph, gp: onnx.GraphProto, *, initializers_are_inputs: bool = False,
                   strip_weights_over: int | None = None, deferred: list | None = None) -> onnx.GraphProto:
    """``initializers_are_inputs``: IR versions below 4 require every initializer to be listed as a graph
    input too; initializers a pass created (e.g. folded constants) are appended to the inputs then.

    ``strip_weights_over``: see ``to_proto``. ``deferred``: dense initializers are appended to it as
    (name, Tensor) pairs, in order, instead of being encoded (``serialize_model`` writes them)."""
    gp.name = g.name
    if g.doc_string:
        gp.doc_string = g.doc_string
    for v in g.inputs:
        _value_info(v, gp.input.add())
    stripped: set[int] = set()
    if strip_weights_over is not None:
        stripped = {id(v) for v in g.initializers.values() if _is_big_float_weight(v, strip_weights_over)}
    if initializers_are_inputs or stripped:
        listed = {id(v) for v in g.inputs}
        for v in g.initializers.values():
            if id(v) not in listed and (initializers_are_inputs or id(v) in stripped):
                t = TensorType(v.const.dtype, v.const.shape) if id(v) in stripped else None
                _value_info(v, gp.input.add(), type_override=t)
    for name, v in g.initializers.items():
        if id(v) in stripped:
            continue
        if isinstance(v.const, SparseTensor):
            _sparse_to_proto(v.const, gp.sparse_initializer.add(), name)
        elif deferred is not None:
            deferred.append((name, v.const))
        else:
            tensor_to_proto(v.const, name, into=gp.initializer.add())
    nodes = g.nodes
    for n in nodes:
        node_to_proto(n, gp.node.add())
    boundary = {id(v) for v in g.inputs} | {id(v) for v in g.outputs} | {id(v) for v in g.initializers.values()}
    infos = []
    for n in nodes:
        for v in n.outputs:
            if v is None or id(v) in boundary:
                continue
            if v.type is not None or v.doc_string or v.metadata_props:
                _value_info(v, vi := onnx.ValueInfoProto())
                infos.append(vi)
    about = set(g.extra.get("value_info_about", ()))
    live = {v.name: v for v in itertools.chain(g.values(), g.outputs)} if about else {}
    for blob in g.extra.get("value_info", ()):
        vi = onnx.ValueInfoProto()
        vi.ParseFromString(blob)
        if vi.name in about and (vi.name not in live or _contradicts(vi.type, live[vi.name].type)):
            # about a weight or input a pass removed or reshaped: stale (a folded weight's entry stayed; after
            # `scale`, 101 entries kept the old shapes and onnx's checker refused the file)
            continue
        infos.append(vi)
    gp.value_info.extend(_in_file_order(infos, g.extra.get("value_info_order", ())))
    kept = g.extra.get("passthrough_outputs", {})
    for i, v in enumerate(g.outputs):
        name, typed, blob = kept.get(i, ("", "", b""))
        if blob and v.name == name and v.producer is None and repr(v.type) == typed:  # as read: its own declaration
            gp.output.add().ParseFromString(blob)
        else:
            _value_info(v, gp.output.add())
    _set_props(gp.metadata_props, g.metadata_props)
    _set_meta(gp.metadata_props, g.meta)
    for blob in g.extra.get("quantization_annotation", ()):
        gp.quantization_annotation.add().ParseFromString(blob)
    return gp


def function_to_proto(f: Function) -> onnx.FunctionProto:
    fp = onnx.FunctionProto()
    fp.name = f.name
    fp.domain = f.domain
    if f.overload:
        fp.overload = f.overload
    body = f.graph
    fp.input.extend(v.name for v in body.inputs)
    fp.output.extend(v.name for v in body.outputs)
    fp.attribute.extend(f.attributes)
    for a in f.attribute_defaults.values():
        _attr_to_proto(a, fp.attribute_proto.add())
    nodes = body.nodes
    for n in nodes:
        node_to_proto(n, fp.node.add())
    for d, ver in body.opset_imports.items():
        o = fp.opset_import.add()
        o.domain, o.version = d, ver
    boundary = {id(v) for v in body.inputs} | {id(v) for v in body.outputs}
    for n in nodes:
        for v in n.outputs:
            if v is not None and id(v) not in boundary and v.type is not None:
                _value_info(v, fp.value_info.add())
    if f.doc_string:
        fp.doc_string = f.doc_string
    _set_props(fp.metadata_props, f.metadata_props)
    return fp


def to_proto(g: Graph, *, strip_weights_over: int | None = None, deferred: list | None = None) -> onnx.ModelProto:
    """Export a top-level graph as a model.

    ``strip_weights_over`` (for analyses, never for saving): the top-level graph's initializers of a
    floating element type with more than this many elements become typed graph inputs without data.
    onnx's shape inference reads only their types (the inputs whose values decide shapes are integer
    or rank-sized), and serializing then parsing every weight is what made it slow on big models.
    ``deferred``: see ``graph_to_proto`` (the top-level graph's initializers only).
    """
    m = onnx.ModelProto()
    info = g.model
    opsets = g.opset_imports or {"": onnx.defs.onnx_opset_version()}
    for d, ver in opsets.items():
        o = m.opset_import.add()
        o.domain, o.version = d, ver
    if info is not None:
        m.ir_version = info.ir_version
        if info.producer_name:
            m.producer_name = info.producer_name
        if info.producer_version:
            m.producer_version = info.producer_version
        if info.domain:
            m.domain = info.domain
        if info.model_version:
            m.model_version = info.model_version
        if info.doc_string:
            m.doc_string = info.doc_string
        _set_props(m.metadata_props, info.metadata_props)
        for blob in info.opaque.get("training_info", ()):
            m.training_info.add().ParseFromString(blob)
        for blob in info.opaque.get("configuration", ()):
            m.configuration.add().ParseFromString(blob)
    else:
        m.ir_version = onnx.helper.find_min_ir_version_for(list(m.opset_import), ignore_unknown=True)
        m.producer_name = "graphmill"
    graph_to_proto(g, m.graph, initializers_are_inputs=m.ir_version < 4, strip_weights_over=strip_weights_over,
                   deferred=deferred)
    for f in g.functions.values():
        m.functions.append(function_to_proto(f))
    return m


# -- serializing without copying weights -----------------------------------------------------
#
# Protobuf writes a message's fields in field-number order, and a message is the concatenation of
# its fields. So the bytes of ``to_proto(g).SerializeToString()`` can be assembled from pieces:
# the model's fields before ``graph`` (7), the graph's fields before ``initializer`` (5: ``node``,
# ``name``), each initializer, the graph's later fields, the model's later fields. The initializers
# are the weights: encoding them into a ModelProto copied every weight three times (into the
# TensorProto, into the model, into the serialized bytes), the bulk of saving a big model.

def serialize_model(g: Graph) -> list:
    """``to_proto(g).SerializeToString()``, the same bytes, as a list of bytes-like chunks to write
    in order; weights held as numpy arrays are referenced, not copied."""
    deferred: list = []
    m = to_proto(g, deferred=deferred)
    graph_bytes = m.graph.SerializeToString()
    m.ClearField("graph")
    model_bytes = m.SerializeToString()
    g_split = field_boundary(graph_bytes, GRAPH_INITIALIZER)
    m_split = field_boundary(model_bytes, MODEL_GRAPH)
    inits: list = []
    for name, t in deferred:
        inits.extend(tensor_chunks(t, name, GRAPH_INITIALIZER))
    graph_len = len(graph_bytes) + sum(len(c) for c in inits)
    return [model_bytes[:m_split], field_key(MODEL_GRAPH) + varint(graph_len), graph_bytes[:g_split], *inits,
            graph_bytes[g_split:], model_bytes[m_split:]]
