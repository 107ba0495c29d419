"""ONNX ``ModelProto`` -> ``ir.Graph``.

Everything the proto carries is kept: opset imports, model metadata, model-local
functions, nested graphs (with outer-scope references resolved to the outer
``Value``), value_info types, doc strings, metadata_props, sparse initializers;
fields the IR does not model (training_info, quantization annotations, device
configurations) ride along as serialized bytes. Values are resolved in two
sweeps per graph so that an out-of-order file imports (and is then sorted) and
an undefined name or a cycle is reported with the node that has it.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections import ChainMap

import onnx

from graphmill.ir import (
    Attr,
    AttrKind,
    DataType,
    Function,
    Graph,
    IRError,
    MapType,
    ModelInfo,
    ModelLoadError,
    Node,
    OpaqueType,
    OptionalType,
    SequenceType,
    SparseTensor,
    Tensor,
    SparseTensorType,
    TensorType,
    Type,
    UnsupportedModelError,
    Value,
    describe_node,
)

from graphmill.util.errors import ModelWarning
from graphmill.util.files import JSON_NESTING_LIMIT, JsonDuplicateKey, JsonTooDeep, parse_json

from .onnx_tensors import resolve_external_data, string_entries, tensor_from_proto

MAX_SUPPORTED_OPSET = onnx.defs.onnx_opset_version()
_DEFAULT_DOMAINS = ("", "ai.onnx")


def type_from_proto(tp: onnx.TypeProto) -> Type | None:
    which = tp.WhichOneof("value")
    den = tp.denotation
    if which == "tensor_type" or which == "sparse_tensor_type":
        tt = getattr(tp, which)
        shape = None
        dim_dens = None
        if tt.HasField("shape"):
            dims = []
            dens = []
            for d in tt.shape.dim:
                kind = d.WhichOneof("value")
                dims.append(d.dim_value if kind == "dim_value" else d.dim_param if kind == "dim_param" else None)
                dens.append(d.denotation)
            shape = tuple(dims)
            dim_dens = tuple(dens) if any(dens) else None
        if which == "sparse_tensor_type":
            return SparseTensorType(_dtype(tt.elem_type), shape, den, dim_dens)
        return TensorType(_dtype(tt.elem_type), shape, den, dim_dens)
    if which == "sequence_type":
        et = tp.sequence_type.elem_type
        return SequenceType(type_from_proto(et) if tp.sequence_type.HasField("elem_type") else None, den)
    if which == "optional_type":
        et = tp.optional_type.elem_type
        return OptionalType(type_from_proto(et) if tp.optional_type.HasField("elem_type") else None, den)
    if which == "map_type":
        mt = tp.map_type
        return MapType(_dtype(mt.key_type), type_from_proto(mt.value_type) if mt.HasField("value_type") else None, den)
    if which == "opaque_type":
        return OpaqueType(tp.opaque_type.domain, tp.opaque_type.name, den)
    return None


@functools.lru_cache(maxsize=None)
def _schema(op_type: str, opset: int):
    """The default domain's schema of ``op_type`` at ``opset``, or None (an op onnx does not know)."""
    try:
        return onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return None


def _kind_name(kind: int) -> str:
    try:
        return onnx.AttributeProto.AttributeType.Name(kind)
    except ValueError:
        return f"of unknown kind {kind}"


class UnknownElementType(ValueError):
    """A type naming an element type code that onnx does not define (``elem_type`` 12345). Refused at load:
    kept as UNDEFINED, the file was written back changed (12345 -> 0) or, after shape inference, as float."""


def _dtype(code: int) -> DataType:
    try:
        return DataType(code)
    except ValueError:
        if code in onnx.TensorProto.DataType.values():  # a newer onnx than graphmill's DataType knows
            raise UnknownElementType(f"element type {code} ({onnx.TensorProto.DataType.Name(code)}), which graphmill "
                                     "does not support yet") from None
        raise UnknownElementType(f"element type {code}, which onnx {onnx.__version__} does not define "
                                 f"(TensorProto.DataType)") from None


def _props(entries, path: str, where: str) -> dict[str, str]:
    """metadata_props as a dict. ONNX says its keys should be distinct (onnx.checker enforces it for the model's
    only): a repeated key is refused, where a dict kept its last value and lost the others without a word."""
    out, twice = string_entries(entries)
    if twice is not None:
        raise ModelLoadError(f"{path}: {where}: metadata_props repeats key {twice!r} (ONNX: keys should be "
                             "distinct); give each key once")
    return out


def negative_dim_problem(name: str, graph_name: str, t: Type | None) -> str | None:
    """What is wrong with value ``name``'s declared type when a dimension is negative (ONNX dims are >= 0), or
    None: the one wording of ``load``'s refusal and ``save``'s."""
    shape = getattr(t, "shape", None) if isinstance(t, (TensorType, SparseTensorType)) else None
    bad = next((d for d in shape or () if isinstance(d, int) and d < 0), None)
    if bad is None:
        return None
    return (f"value {name!r} in graph {graph_name!r} is declared with dimension {bad} (shape {list(shape)}); "
            "dimensions are >= 0, or a name for a symbolic one")


class _Importer:
    def __init__(self, model_path: str, base_dir: str | None, opset: int | None = None) -> None:
        self.path = model_path
        self.base_dir = base_dir
        self.opset = opset  # of the default domain: the schemas attribute kinds are checked against

    def value_type(self, vi: onnx.ValueInfoProto, graph_name: str) -> Type | None:
        """``vi``'s type; a negative dimension is refused here, naming the value, not later as numpy's
        "negative dimensions are not allowed" from the first pass that makes inputs of that shape."""
        try:
            t = type_from_proto(vi.type) if vi.HasField("type") else None
        except UnknownElementType as e:
            raise self.error(f"value {vi.name!r} in graph {graph_name!r} is declared with {e}") from None
        problem = negative_dim_problem(vi.name, graph_name, t)
        if problem:
            raise self.error(problem)
        return t

    def check_attr_kinds(self, npb: onnx.NodeProto, graph_name: str) -> None:
        """Refuse an attribute whose kind is not the one its op's schema defines (``Transpose perm="abc"``):
        bad input at load, not a crash of whichever pass first reads the attribute."""
        if npb.domain not in _DEFAULT_DOMAINS or self.opset is None:
            return
        schema = _schema(npb.op_type, self.opset)
        if schema is None:
            return
        for ap in npb.attribute:
            spec = schema.attributes.get(ap.name)
            kind = ap.type or _guess_attr_kind(ap)
            if spec is None or ap.ref_attr_name or kind == int(spec.type):
                continue
            raise self.error(f"{describe_proto(npb)} in graph {graph_name!r}: attribute {ap.name!r} is "
                             f"{_kind_name(kind)}, but {npb.op_type} (opset {self.opset}) takes "
                             f"{_kind_name(int(spec.type))}")

    def error(self, msg: str) -> ModelLoadError:
        return ModelLoadError(f"{self.path}: {msg}")

    # -- attributes ---------------------------------------------------------
    def attr(self, ap: onnx.AttributeProto, scope: ChainMap, owner: Node | None) -> Attr:
        kind = ap.type
        if kind == 0:  # very old files leave the type out: tell it from the field that is set
            kind = _guess_attr_kind(ap)
        k = AttrKind(kind)
        if ap.ref_attr_name:
            return Attr(ap.name, k, None, ap.ref_attr_name, ap.doc_string)
        if k == AttrKind.FLOAT:
            v = ap.f
        elif k == AttrKind.INT:
            v = ap.i
        elif k == AttrKind.STRING:
            v = _text(ap.s)
        elif k in (AttrKind.TENSOR, AttrKind.TENSORS, AttrKind.SPARSE_TENSOR, AttrKind.SPARSE_TENSORS):
            v = self.attr_tensors(ap, k, owner)
        elif k == AttrKind.GRAPH:
            v = self.graph(ap.g, scope)
        elif k == AttrKind.FLOATS:
            v = list(ap.floats)
        elif k == AttrKind.INTS:
            v = list(ap.ints)
        elif k == AttrKind.STRINGS:
            v = [_text(s) for s in ap.strings]
        elif k == AttrKind.GRAPHS:
            v = [self.graph(g, scope) for g in ap.graphs]
        elif k in (AttrKind.TYPE_PROTO, AttrKind.TYPE_PROTOS):
            try:
                v = type_from_proto(ap.tp) if k == AttrKind.TYPE_PROTO else [type_from_proto(t) for t in ap.type_protos]
            except UnknownElementType as e:
                where = f" of {owner.describe()}" if owner is not None else ""
                raise self.error(f"attribute {ap.name!r}{where} holds a type with {e}") from None
        else:
            v = None
        return Attr(ap.name, k, v, "", ap.doc_string)

    def attr_tensors(self, ap: onnx.AttributeProto, k: AttrKind, owner: Node | None):
        """The tensors an attribute holds; a refusal of an unnamed one (a Constant's ``value`` usually is) names
        the attribute and its node: "tensor ''" located nothing (an outside check)."""
        try:
            if k == AttrKind.TENSOR:
                return tensor_from_proto(ap.t, self.base_dir, self.path)
            if k == AttrKind.TENSORS:
                return [tensor_from_proto(t, self.base_dir, self.path) for t in ap.tensors]
            if k == AttrKind.SPARSE_TENSOR:
                return self.sparse(ap.sparse_tensor)
            return [self.sparse(sp) for sp in ap.sparse_tensors]
        except ModelLoadError as e:
            unnamed = f"{self.path}: tensor ''"
            if not str(e).startswith(unnamed):
                raise
            where = f"attribute {ap.name!r}" + (f" of {owner.describe()}" if owner is not None else "")
            raise type(e)(f"{self.path}: the tensor of {where}{str(e)[len(unnamed):]}") from None

    def sparse(self, sp: onnx.SparseTensorProto) -> SparseTensor:
        values = tensor_from_proto(sp.values, self.base_dir, self.path)
        indices = tensor_from_proto(sp.indices, self.base_dir, self.path)
        dims = tuple(sp.dims)
        self.check_sparse(values, indices, dims)
        return SparseTensor(values, indices, dims)

    def check_sparse(self, values: Tensor, indices: Tensor, dims: tuple[int, ...]) -> None:
        """ONNX's rules for a sparse tensor, at load (dims 2^40, an index 10^12 or -1 were accepted and failed,
        if at all, inside ONNX Runtime: an outside check): dims within the limits, values [NNZ], indices int64
        [NNZ] (positions in the flattened tensor) or [NNZ, rank], each within the dims."""
        import numpy as np

        from graphmill.util.limits import shape_problem

        where = f"sparse tensor {values.name!r} (dims {list(dims)})"
        problem = "a negative dimension" if any(d < 0 for d in dims) else shape_problem(dims)
        if problem:
            raise self.error(f"{where}: {problem}")
        if len(values.shape) != 1:
            raise self.error(f"{where}: its values have dims {list(values.shape)}, not [NNZ]")
        nnz = values.shape[0]
        if indices.dtype != DataType.INT64 or tuple(indices.shape) not in ((nnz,), (nnz, len(dims))):
            raise self.error(f"{where}: its indices are {indices.dtype.short_name} of dims {list(indices.shape)}, "
                             f"not int64 [{nnz}] or [{nnz}, {len(dims)}]")
        idx = indices.numpy()
        # within the limits checked above, the flattened size fits int64
        limit = np.array([int(np.prod(dims, dtype=np.int64))] if idx.ndim == 1 else dims, dtype=np.int64)
        bad = (idx < 0) | (idx >= limit)
        if bad.any():
            at = tuple(int(a) for a in np.argwhere(bad)[0])
            raise self.error(f"{where}: index {int(idx[at])} at {list(at)} is outside dims {list(dims)}")

    # -- graphs -------------------------------------------------------------
    def warn_if_shadowing(self, name: str, outer: ChainMap, graph: str) -> None:
        """A subgraph's initializer named as a value of an enclosing graph is read here, as ONNX Runtime reads it
        in most layouts; but ONNX Runtime reads the enclosing value where a sibling branch reads that name too,
        and onnx's reference evaluator always does (an outside check; binding the enclosing value instead made
        7 other layouts differ from ONNX Runtime: a review). The model means different things to its readers,
        so it is said."""
        if name in outer:
            warnings.warn(ModelWarning(
                f"{self.path or 'the model'}: graph {graph!r} has an initializer {name!r} named as a value of an "
                "enclosing graph; graphmill reads the initializer, ONNX Runtime and onnx's reference evaluator may "
                "read the enclosing value: rename one of them"), stacklevel=2)

    def graph(self, gp: onnx.GraphProto, outer: ChainMap, *, is_function: bool = False,
              raw_data: list | None = None) -> Graph:
        g = Graph(gp.name)
        g.doc_string = gp.doc_string
        g.metadata_props = _props(gp.metadata_props, self.path, f"graph {gp.name!r}")
        meta_json = g.metadata_props.pop(META_KEY, None)
        if meta_json is not None:
            g.meta = _meta_from_json(meta_json, self.path, gp.name)
        if len(gp.quantization_annotation):
            g.extra["quantization_annotation"] = [q.SerializeToString() for q in gp.quantization_annotation]
        scope = outer.new_child()
        vinfo = {vi.name: vi for vi in gp.value_info}
        output_names = {vi.name for vi in gp.output}

        for vi in gp.input:
            v = Value(vi.name, self.value_type(vi, gp.name), doc_string=vi.doc_string)
            if len(vi.metadata_props):
                v.metadata_props = _props(vi.metadata_props, self.path, f"input {vi.name!r}")
            g.add_input(v)
            scope.maps[0][vi.name] = v
        local_inputs = {v.name: v for v in g.inputs}
        for i, tp in enumerate(gp.initializer):
            t = tensor_from_proto(tp, self.base_dir, self.path, raw_data[i] if raw_data else None)
            v = local_inputs.get(tp.name)
            if v is None:
                v = Value(tp.name, TensorType(t.dtype, t.shape))
                scope.maps[0][tp.name] = v
                self.warn_if_shadowing(tp.name, outer, gp.name)
            v.const = t
            self.add_initializer(g, v)
        for sp in gp.sparse_initializer:
            st = self.sparse(sp)
            name = sp.values.name
            v = local_inputs.get(name)
            if v is None:
                v = Value(name, SparseTensorType(st.dtype, st.dims))
                scope.maps[0][name] = v
                self.warn_if_shadowing(name, outer, gp.name)
            v.const = st
            self.add_initializer(g, v)

        # Sweep 1: every node output gets its Value, so inputs can be resolved in any order.
        pending: list[tuple[onnx.NodeProto, list[Value | None]]] = []
        local = scope.maps[0]
        producers: dict[str, onnx.NodeProto] = {}  # the nodes are built in sweep 2: their protos name them
        for npb in gp.node:
            self.check_attr_kinds(npb, gp.name)
            outs: list[Value | None] = []
            for name in npb.output:
                if not name:
                    outs.append(None)
                    continue
                if name in local:
                    prev = producers.get(name)
                    what = describe_proto(prev) if prev is not None else "a graph input or initializer"
                    raise self.error(f"{describe_proto(npb)} in graph {gp.name!r} defines {name!r}, "
                                     f"which {what} already defines (values must have one producer)")
                producers[name] = npb
                vi = vinfo.get(name)
                v = Value(name, self.value_type(vi, gp.name) if vi is not None else None)
                if vi is not None and name not in output_names:  # an output's own declaration has its doc and
                    # metadata; the value_info entry about it is kept verbatim (it lent them to the output: a
                    # round-trip fuzzer)
                    v.doc_string = vi.doc_string
                    if len(vi.metadata_props):
                        v.metadata_props = _props(vi.metadata_props, self.path, f"value {name!r}")
                local[name] = v
                outs.append(v)
            pending.append((npb, outs))

        # Sweep 2: build nodes (subgraphs see the whole enclosing scope).
        for npb, outs in pending:
            ins: list[Value | None] = []
            for name in npb.input:
                if not name:
                    ins.append(None)
                    continue
                v = local.get(name)
                if v is None:
                    v = scope.get(name)  # outer scopes (subgraphs reading enclosing values)
                if v is None:
                    raise self.error(f"{describe_proto(npb)} in graph {gp.name!r} reads {name!r}, "
                                     "which no graph input, initializer or node defines")
                ins.append(v)
            node = Node(npb.op_type, ins, None, outputs=outs, domain=npb.domain, name=npb.name,
                        overload=npb.overload, doc_string=npb.doc_string)
            if len(npb.metadata_props):
                node.metadata_props = _props(npb.metadata_props, self.path,
                                             f"{describe_proto(npb)} in graph {gp.name!r}")
                meta_json = node.metadata_props.pop(META_KEY, None)
                if meta_json is not None:
                    node.meta = _meta_from_json(meta_json, self.path, npb.name)
            if len(npb.device_configurations):
                node.extra["device_configurations"] = [d.SerializeToString() for d in npb.device_configurations]
            if len(npb.attribute):
                node.attrs = {ap.name: self.attr(ap, scope, node) for ap in npb.attribute}
                if len(node.attrs) != len(npb.attribute):  # the last one was kept: an invalid model made valid with
                    # another meaning (onnx's checker and ONNX Runtime refuse it; an outside check)
                    names = [ap.name for ap in npb.attribute]
                    twice = next(n for n in names if names.count(n) > 1)
                    raise self.error(f"{describe_proto(npb)} in graph {gp.name!r}: attribute {twice!r} is given "
                                     "twice; which one is meant cannot be told")
            g.append(node)  # adopts the node and its subgraphs; the Node already recorded its inputs' uses

        passthrough: dict[int, tuple[str, str, bytes]] = {}
        for vi in gp.output:
            v = scope.get(vi.name) if vi.name else None
            if v is None:
                raise self.error(f"graph {gp.name!r} output {vi.name!r} is not defined by any node, input or initializer")
            if v.producer is None and v.graph is g:
                # a graph input or initializer that is also an output has one Value and two declarations: the
                # output's is kept verbatim, written back while the value is as read (it came back as the input's
                # type, doc and metadata; a round-trip fuzzer)
                passthrough[len(g.outputs)] = (v.name, repr(v.type), vi.SerializeToString())
                g.outputs.append(v)
                continue
            if vi.HasField("type") and v.graph is g and (v.type is None or v.producer is not None):
                v.type = self.value_type(vi, gp.name)
            if vi.doc_string and not v.doc_string:
                v.doc_string = vi.doc_string
            if len(vi.metadata_props) and not v.metadata_props:
                v.metadata_props = _props(vi.metadata_props, self.path, f"output {vi.name!r}")
            g.outputs.append(v)
        if passthrough:
            g.extra["passthrough_outputs"] = passthrough
        # value_info the IR has no home for (about inputs, initializers, graph outputs, or names that do
        # not exist) rides along verbatim so that a round trip loses nothing.
        output_ids = {id(v) for v in g.outputs}
        extra, about = [], []
        for vi in gp.value_info:
            v = local.get(vi.name)
            if v is None or v.producer is None or id(v) in output_ids:
                extra.append(vi.SerializeToString())
                if v is not None:
                    about.append(vi.name)
        if extra:
            g.extra["value_info"] = extra
        if about:  # entries about values of this graph: save drops those whose value a pass removed
            g.extra["value_info_about"] = about
        if len(gp.value_info) > 1:  # the file's order, which save keeps (an exporter may list initializers first)
            g.extra["value_info_order"] = [vi.name for vi in gp.value_info]
        # Out-of-order files are legal to read; the IR keeps nodes sorted.
        try:
            if not g.is_sorted():
                g.sort()
        except IRError as e:
            raise self.error(str(e)) from None
        return g

    def add_initializer(self, g: Graph, v: Value) -> None:
        try:
            g.add_initializer(v)
        except IRError as e:  # two initializers of one name
            raise self.error(str(e)) from None

    def function(self, fp: onnx.FunctionProto) -> Function:
        gp = onnx.GraphProto()
        gp.name = fp.name
        for name in fp.input:
            gp.input.add().name = name
        for name in fp.output:
            gp.output.add().name = name
        gp.node.extend(fp.node)
        gp.value_info.extend(fp.value_info)
        model_opset = self.opset
        own = {o.domain: o.version for o in fp.opset_import if o.domain in _DEFAULT_DOMAINS}
        self.opset = own.get("", own.get("ai.onnx", model_opset))  # a body's ops are of the function's opsets
        try:
            body = self.graph(gp, ChainMap())
        finally:
            self.opset = model_opset
        body.opset_imports = {o.domain: o.version for o in fp.opset_import}
        defaults = {ap.name: self.attr(ap, ChainMap(), None) for ap in fp.attribute_proto}
        return Function(fp.domain, fp.name, body, list(fp.attribute), defaults, fp.overload,
                        fp.doc_string, _props(fp.metadata_props, self.path, f"function {fp.name!r}"))


# graphmill's annotations (node.meta / graph.meta: stage, block, device, fusion group...) travel through
# ONNX files as JSON under this metadata_props key, so a model keeps them between graphmill commands.
META_KEY = "graphmill.meta"


def _meta_from_json(text: str, path: str, where: str) -> dict:
    try:
        meta = parse_json(text)
    except JsonTooDeep:
        # what graphmill writes nests a few levels; deeper meta would make every later copy, comparison or
        # save recurse past Python's limit (a traceback, exit 1, where the file is the problem)
        raise ModelLoadError(f"{path}: {where!r} has a {META_KEY} entry nested deeper than {JSON_NESTING_LIMIT} "
                             "levels") from None
    except ValueError as e:
        said = str(e) if isinstance(e, JsonDuplicateKey) else f"not JSON: {e}"  # a repeated key is JSON, ambiguous
        raise ModelLoadError(f"{path}: {where!r} has a malformed {META_KEY} entry ({said})") from None
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path}: {where!r} has a {META_KEY} entry that is not a JSON object")
    return meta



def _text(b: bytes) -> str | bytes:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b  # binary attribute payloads are kept as bytes


def _guess_attr_kind(ap: onnx.AttributeProto) -> int:
    for field, kind in (("floats", 6), ("ints", 7), ("strings", 8), ("tensors", 9), ("graphs", 10)):
        if len(getattr(ap, field)):
            return kind
    for field, kind in (("t", 4), ("g", 5), ("sparse_tensor", 11), ("tp", 13)):
        if ap.HasField(field):
            return kind
    if ap.HasField("s"):
        return 3
    if ap.HasField("f"):
        return 1
    return 2


# ai.onnx.ml's newest opset, from onnx's release table (release, ir, ai.onnx, ai.onnx.ml, ...).
MAX_ML_OPSET = max(row[3] for row in onnx.helper.VERSION_TABLE)


_NEWER_HINT = "this installation supports (onnx {}); upgrade onnx or export the model for an older one"


def check_opsets(model: onnx.ModelProto, path: str) -> None:
    """Refuse models newer than this onnx understands (IR version, ai.onnx and ai.onnx.ml opsets)."""
    if model.ir_version > onnx.IR_VERSION:
        raise UnsupportedModelError(f"{path}: model has IR version {model.ir_version}, newer than the "
                                    f"{onnx.IR_VERSION} {_NEWER_HINT.format(onnx.__version__)}")
    check_opset_versions([(op.domain, op.version) for op in model.opset_import], path)


def check_opset_versions(opsets: list[tuple[str, int]], path: str) -> None:
    """Refuse an ai.onnx or ai.onnx.ml opset newer than this onnx understands (``save`` checks a graph's too)."""
    hint = _NEWER_HINT.format(onnx.__version__)
    for domain, version in opsets:
        if version < 0:  # accepted, and then nothing had a schema (an outside check)
            raise ModelLoadError(f"{path}: model imports opset {version} of domain {domain or 'ai.onnx'!r}; opset "
                                 "versions are >= 0")
        if domain in _DEFAULT_DOMAINS and version > MAX_SUPPORTED_OPSET:
            raise UnsupportedModelError(
                f"{path}: model uses opset {version} of the default ONNX domain, newer than the "
                f"{MAX_SUPPORTED_OPSET} {hint}")
        if domain == "ai.onnx.ml" and version > MAX_ML_OPSET:
            raise UnsupportedModelError(f"{path}: model uses opset {version} of ai.onnx.ml, newer than the "
                                        f"{MAX_ML_OPSET} {hint}")


def check_declared_dims(graph: Graph, path: str) -> None:
    """Refuse a value declared with a negative dimension anywhere in ``graph`` (``save``: a ``GraphBuilder``
    input of shape [-2, 3] was written, and the file was then refused by ``load``)."""
    for g in graph.all_graphs():
        for v in [*g.inputs, *g.values(), *g.outputs]:
            problem = negative_dim_problem(v.name, g.name, v.type)
            if problem:
                raise ModelLoadError(f"{path}: {problem}")


def from_proto(model: onnx.ModelProto, *, base_dir: str | None = None, path: str = "<model>",
               raw_data: list | None = None) -> Graph:
    """Import a model. ``base_dir`` is the folder external data must stay inside.

    ``raw_data``: per top-level initializer, the ``RawData`` the file reader set aside from it (the
    proto then lacks its ``raw_data``), or None (see ``onnx_wire.carve_weights``).
    """
    if not model.HasField("graph"):
        raise ModelLoadError(f"{path}: not an ONNX model (no graph in the file)")
    check_opsets(model, path)
    default = {o.domain: o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS}
    imp = _Importer(path, os.path.abspath(base_dir) if base_dir else None,
                    default.get("", default.get("ai.onnx")))
    g = imp.graph(model.graph, ChainMap(), raw_data=raw_data)
    g.separate_sibling_names()  # ONNX's sibling subgraphs may share names; the IR's tree may not
    g.opset_imports = {o.domain: o.version for o in model.opset_import}
    g.model = ModelInfo(
        ir_version=model.ir_version,
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        domain=model.domain,
        model_version=model.model_version,
        doc_string=model.doc_string,
        metadata_props=_props(model.metadata_props, path, "model"),
    )
    if len(model.training_info):
        g.model.opaque["training_info"] = [_inline_external(t, imp.base_dir, imp.path).SerializeToString()
                                           for t in model.training_info]
    if len(model.configuration):
        g.model.opaque["configuration"] = [c.SerializeToString() for c in model.configuration]
    for fp in model.functions:
        f = imp.function(fp)
        f.graph.separate_sibling_names()  # a body's If branches may share names too
        if f.key in g.functions:  # the last one was kept, silently (onnx's checker and ONNX Runtime refuse it; an
            # outside check)
            raise imp.error(f"function {fp.domain}::{fp.name}" + (f" (overload {fp.overload!r})" if fp.overload else "")
                            + " is defined twice; which one is meant cannot be told")
        g.functions[f.key] = f
    check_no_recursion(g, path)
    return g


def describe_proto(npb: onnx.NodeProto) -> str:
    """A NodeProto named as ``Node.describe`` names a node (``node ''`` located nothing)."""
    return describe_node(npb.op_type, npb.domain, npb.name, npb.output)


def check_no_recursion(graph: Graph, path: str) -> None:
    """ModelLoadError when a model-local function calls itself, directly or through others: ONNX forbids it
    (onnx's checker: "Cycle detected in model-local function references"), and inlining or inferring such a
    file never ends; before, it loaded and failed later with onnx's traceback."""
    calls = {key: {(n.domain, n.op_type, n.overload) for n in f.graph.all_nodes()} & graph.functions.keys()
             for key, f in graph.functions.items()}
    state: dict = {}  # key -> 1 on the path, 2 done
    done: list = []  # the functions in the order they were done: every callee before its callers
    # depth-first without recursion: a chain of a thousand functions, each calling the next, has no cycle, and
    # recursing along it ended in Python's RecursionError traceback (an outside check)
    for root in sorted(graph.functions):
        if state.get(root) is not None:
            continue
        chain = [root]
        stack = [iter(sorted(calls[root]))]
        state[root] = 1
        while stack:
            callee = next(stack[-1], None)
            if callee is None:
                done.append(chain.pop())
                state[done[-1]] = 2
                stack.pop()
            elif state.get(callee) == 1:
                loop = chain[chain.index(callee):] + [callee]
                names = " -> ".join(f"{d}::{n}" for d, n, _ in loop)
                raise ModelLoadError(f"{path}: model-local function {callee[0]}::{callee[1]} calls itself ({names}); "
                                     "ONNX does not allow recursive functions")
            elif state.get(callee) is None:
                state[callee] = 1
                chain.append(callee)
                stack.append(iter(sorted(calls[callee])))
    check_function_expansion(graph, done, path)


def check_function_expansion(graph: Graph, done: list, path: str) -> None:
    """ModelLoadError when the model's nodes, with every function call expanded, outnumber
    ``GRAPHMILL_MAX_INLINED_NODES``: onnx's shape inference expands them, inside C++ where neither Ctrl-C nor
    SIGTERM stops it; a 2.6 KB file of 40 functions each calling the next twice (2^40 calls) ran 12 minutes
    until killed (an outside check). ``done``: the functions, callees before callers."""
    from graphmill.util.limits import max_inlined_nodes

    limit = max_inlined_nodes()
    size: dict = {}  # function -> its nodes, calls expanded

    def expanded(g: Graph) -> int:
        return sum(1 + size.get((n.domain, n.op_type, n.overload), 0) for n in g.all_nodes())

    for key in done:
        size[key] = expanded(graph.functions[key].graph)
    total = expanded(graph)
    if total > limit:
        raise ModelLoadError(f"{path}: its function calls expand to {total:,} nodes, more than {limit:,} "
                             "(GRAPHMILL_MAX_INLINED_NODES raises the limit)")


def _inline_external(info: onnx.TrainingInfoProto, base_dir: str | None, path: str) -> onnx.TrainingInfoProto:
    """A copy of ``info`` (carried verbatim, not modelled) with every external tensor's bytes read in, through
    the same confinement check as the graph's own (``resolve_external_data``). Copied as it was, a reference
    to ``../secret.bin`` passed unchecked, and an in-folder one pointed nowhere once saved elsewhere."""
    out = onnx.TrainingInfoProto()
    out.CopyFrom(info)
    for t in _training_tensors(out):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            data = resolve_external_data(t, base_dir, path).read()
            del t.external_data[:]
            t.data_location = onnx.TensorProto.DEFAULT
            t.raw_data = data
    return out


def _training_tensors(info: onnx.TrainingInfoProto):
    def graph(gp: onnx.GraphProto):
        yield from gp.initializer
        for sp in gp.sparse_initializer:
            yield sp.values
            yield sp.indices
        for n in gp.node:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("sparse_tensor"):
                    yield a.sparse_tensor.values
                    yield a.sparse_tensor.indices
                for sp in a.sparse_tensors:
                    yield sp.values
                    yield sp.indices
                if a.HasField("g"):
                    yield from graph(a.g)
                for sub in a.graphs:
                    yield from graph(sub)

    yield from graph(info.initialization)
    yield from graph(info.algorithm)
