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

from graphmill.ir import Graph, ModelLoadError, UserInputError, find_problems
from graphmill.ir.gc_pause import collector_paused
from graphmill.util.suggest import did_you_mean
from graphmill.util.files import (MODEL_FILE_LIMIT, atomic_write_bytes, atomic_write_many, check_target, read_user_file,
                                  written_path)

from .onnx_export import serialize_model, to_proto
from .onnx_import import check_declared_dims, check_opset_versions, from_proto
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
        data = read_user_file(path, MODEL_FILE_LIMIT, "an ONNX model file", error=ModelLoadError)
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
        if "depth" in str(e).lower():  # protobuf's own nesting limit (upb's "MaxDepth"): no corruption
            raise ModelLoadError(f"{path}: the model nests messages deeper than protobuf reads ({e}): subgraphs "
                                 "(If/Loop/Scan bodies) inside subgraphs to a depth no real model has") from None
        if looks_onnx:
            raise ModelLoadError(f"{path}: the ONNX protobuf is truncated or corrupt ({e}); "
                                 "re-export or re-download the model") from None
        raise ModelLoadError(f"{path}: not an ONNX model (the file does not parse as an ONNX protobuf)") from None
    if not model.HasField("graph") or model.ir_version == 0 and not len(model.opset_import):
        raise ModelLoadError(f"{path}: not an ONNX model (no graph or version in the file)")
    check_parsed(model, path)
    return model


_TEXT_PLAN: dict = {}  # message descriptor -> its string fields and message fields, (name, repeated) each


def _text_plan(desc) -> tuple[list, list]:
    from google.protobuf.descriptor import FieldDescriptor

    plan = _TEXT_PLAN.get(desc)
    if plan is None:
        plan = _TEXT_PLAN[desc] = (
            [(f.name, is_repeated_field(f)) for f in desc.fields if f.type == FieldDescriptor.TYPE_STRING],
            [(f.name, is_repeated_field(f)) for f in desc.fields if f.type == FieldDescriptor.TYPE_MESSAGE])
    return plan


def _bad_text(msg, where: list) -> tuple[list, str, bytes] | None:
    strings, messages = _text_plan(msg.DESCRIPTOR)
    for name, repeated in strings:
        value = getattr(msg, name)
        if repeated:
            for i, item in enumerate(value):
                if type(item) is bytes:
                    return where, f"{name}[{i}]", item
        elif type(value) is bytes:
            return where, name, value
    for name, repeated in messages:
        if repeated:
            for i, sub in enumerate(getattr(msg, name)):
                found = _bad_text(sub, where + [(f"{name}[{i}]", sub)])
                if found:
                    return found
        elif msg.HasField(name):
            sub = getattr(msg, name)
            found = _bad_text(sub, where + [(name, sub)])
            if found:
                return found
    return None


def check_text_fields(model: onnx.ModelProto, path: str) -> None:
    """ModelLoadError naming the field (and node) when a text field of the model is not UTF-8.

    ONNX's names, op types, domains, doc strings and metadata are protobuf ``string``s, UTF-8 by the
    format; protobuf's parser does not check that for ONNX's proto2 messages and hands the raw bytes
    on, which every later step would trip over. Attribute strings and tensor string data are
    ``bytes`` fields, legal with any content, and are not checked (they round-trip as they are).
    """
    found = _bad_text(model, [])
    if found is None:
        return
    where, field, raw = found
    node = next((m for _, m in reversed(where) if isinstance(m, onnx.NodeProto)), None)
    location = ".".join(step for step, _ in where) or "model"
    if node is not None and type(node.op_type) is str:
        named = type(node.name) is str and node.name
        location += f" (node {node.name!r}, {node.op_type})" if named else f" ({node.op_type} node)"
    shown = raw[:40] + (b"..." if len(raw) > 40 else b"")
    raise ModelLoadError(f"{path}: {location}: {field} is not valid UTF-8 ({shown!r}); ONNX text fields must "
                         "be UTF-8")


def check_parsed(model: onnx.ModelProto, path: str) -> None:
    """The checks of a parsed model, whichever way it was parsed (whole, or without its weights' bytes)."""
    check_header(model, path)
    check_subgraph_count(model, path)  # before the text check, which walks every message in Python
    check_text_fields(model, path)


def check_header(model: onnx.ModelProto, path: str) -> None:
    """ModelLoadError for a model without an IR version, or of IR >= 3 without any opset import (before IR 3
    opset 1 is implied), which onnx.checker refuses:
    graphmill used to load them and write a model with the same fault (ir_version 0), or one silently given the
    newest opset (an outside fuzzer)."""
    if model.ir_version <= 0:
        raise ModelLoadError(f"{path}: ir_version is {model.ir_version}, not set: every ONNX model names the IR "
                             "version it was written for (re-export the model)")
    if not len(model.opset_import) and model.ir_version >= 3:  # before IR 3, opset 1 is implied
        raise ModelLoadError(f"{path}: the model imports no opset (opset_import is empty): every ONNX model names "
                             "the opset version of its ops (re-export the model)")


def check_subgraph_count(model: onnx.ModelProto, path: str) -> None:
    """ModelLoadError when the model holds more subgraphs (If/Loop/Scan bodies, in its graph and functions) than
    ``GRAPHMILL_MAX_SUBGRAPHS``: onnx's shape inference, which every command runs, is superlinear in them (8,000
    Ifs, a 1 MB file: 6 s; 100,000: over 15 minutes inside C++, where neither Ctrl-C nor SIGTERM stops it: an
    outside check)."""
    from graphmill.util.limits import max_subgraphs

    limit = max_subgraphs()
    count = 0
    pending = [model.graph] + [n for f in model.functions for n in f.node]
    while pending:
        item = pending.pop()
        for node in item.node if isinstance(item, onnx.GraphProto) else [item]:
            for a in node.attribute:
                subs = [a.g] if a.HasField("g") else list(a.graphs)
                count += len(subs)
                pending.extend(subs)
        if count > limit:
            raise ModelLoadError(f"{path}: more than {limit:,} subgraphs (If/Loop/Scan bodies), more than any "
                                 "real model has (GRAPHMILL_MAX_SUBGRAPHS raises the limit)")


@collector_paused()
def load(path: str | os.PathLike) -> Graph:
    """Load an ONNX model file into a ``Graph``; external data must lie in the model's folder.

    The weights' bytes (top-level initializers' ``raw_data``) are set aside before parsing and stay
    in the file's contents, where decoding views them and ``save`` writes them from: protobuf never
    copies them into message objects.
    """
    if not isinstance(path, (str, bytes, os.PathLike)):  # os.fspath's TypeError read as a bug (an outside check)
        raise UserInputError(f"graphmill.load: expected a file path (str or os.PathLike), got "
                             f"{type(path).__name__} {path!r:.60}")
    path = os.fspath(path)
    data = _read_file(path)
    model, raw = _parse_skeleton(path, data)
    graph = from_proto(model, base_dir=os.path.dirname(os.path.abspath(path)), path=path, raw_data=raw)
    check_sizes(graph, path)
    check_schema(graph, path)
    problems = find_problems(graph)  # what onnx's checker refuses too (two graph inputs named x): not a model
    if problems:
        raise ModelLoadError(f"{path}: {_first_problem(problems)}")
    return graph


def _first_problem(problems: list[str]) -> str:
    """``verify``'s first finding, and how many more: the one line of a refusal to load or to write."""
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


def check_schema(graph: Graph, path: str, *, writing: bool = False) -> None:
    """ModelLoadError naming the node when it has more inputs or outputs than its op's schema allows
    (or fewer than it requires), or an attribute the schema does not define (``b.LeakyRelu(x, alpah=0.3)`` from
    the Python API was saved, and ONNX Runtime refused the file), for ops onnx knows at the model's opset. Such a
    file would otherwise load and fail later inside a pass or ONNX Runtime, reported as that pass's failure.
    ``writing`` (``save``): also an attribute of another type than the schema's (``alpha=1``, an int, for
    LeakyRelu's float; the loader refuses it as it reads the file), an op the default domain does not have at the
    graph's opset (``Gelu`` at 17, a misspelt ``Relux``) and a domain the graph has no opset import for: each was
    written, and onnx's checker and ONNX Runtime refused the file (an outside check). The last is refused on
    loading too (outside function bodies, which import their own)."""
    schemas: dict = {}
    for g in graph.all_graphs():
        for n in g.nodes:
            domain = "" if n.domain in ("", "ai.onnx") else n.domain
            key = (domain, n.op_type)
            if domain and domain not in graph.opset_imports:  # loaded, such a file ran through a whole schedule and
                # was refused as the output was written, naming the output (an outside check)
                fix = f"graph.opset_imports[{domain!r}] = 1 declares one" if writing else "its opset_import lacks it"
                why = _CHECKER_REFUSES if writing else "onnx's checker and ONNX Runtime refuse such a file"
                raise ModelLoadError(f"{path}: {n.describe()}: the graph imports no opset of domain {domain!r} "
                                     f"({fix}); {why}")
            if key not in schemas:
                version = graph.opset_imports.get(domain, graph.opset_imports.get("ai.onnx", 0)) if domain == "" \
                    else graph.opset_imports.get(domain, 0)
                try:
                    schemas[key] = onnx.defs.get_schema(n.op_type, version, domain) if version else None
                except onnx.defs.SchemaError:
                    schemas[key] = None
                if not writing and domain == "" and not onnx.defs.has(n.op_type) and \
                        n.op_type not in RUN_BY_ONNX_RUNTIME and not any(
                        f.domain in ("", "ai.onnx") and f.name == n.op_type for f in graph.functions.values()):
                    # no opset has it (a misspelt or made-up op): loaded, it ran through a whole place or partition
                    # and was refused only as the output was written, naming the output (an outside check)
                    raise ModelLoadError(f"{path}: {n.describe()}: the default ONNX domain has no op "
                                         f"{n.op_type!r} at any opset (onnx's checker and ONNX Runtime refuse "
                                         "such a file)")
                if writing and domain == "" and schemas[key] is None and version and \
                        n.op_type not in RUN_BY_ONNX_RUNTIME:  # read from a file ONNX Runtime runs: written back
                    since = _first_opset(n.op_type)
                    raise ModelLoadError(f"{path}: {n.describe()}: the default ONNX domain has no op {n.op_type!r} "
                                         f"at opset {version}" + (f" (it has since opset {since})" if since else "")
                                         + f"; {_CHECKER_REFUSES}")
            schema = schemas[key]
            if schema is None:
                continue
            if writing:
                for a in n.attrs.values():
                    spec = schema.attributes.get(a.name)
                    if spec is not None and not a.ref_attr_name and int(a.kind) != int(spec.type):
                        raise ModelLoadError(f"{path}: {n.describe()}: attribute {a.name!r} is {a.kind.name}, but "
                                             f"{n.op_type} (opset {schema.since_version}) takes {spec.type.name}")
            for what, count, low, high in (("inputs", len(n.inputs), schema.min_input, schema.max_input),
                                           ("outputs", len(n.outputs), schema.min_output, schema.max_output)):
                if count > high or count < low:
                    allowed = f"{low}" if low == high else f"{low} to {high}" if high < 2**31 - 1 else f"{low} or more"
                    raise ModelLoadError(f"{path}: {n.describe()}: {count} {what}, but {n.op_type} (opset "
                                         f"{schema.since_version}) takes {allowed}")
            unknown = [a for a in n.attrs if a not in schema.attributes]
            if unknown:  # onnx's checker and ONNX Runtime refuse it ("Unrecognized attribute"), after the work
                known = ", ".join(sorted(schema.attributes)) or "none"
                raise ModelLoadError(f"{path}: {n.describe()}: attribute {unknown[0]!r}"
                                     f"{did_you_mean(unknown[0], list(schema.attributes))} is not one of "
                                     f"{n.op_type}'s (opset {schema.since_version}): {known}")
            single = onnx.defs.OpSchema.FormalParameterOption.Single
            for i, formal in enumerate(schema.inputs[:len(n.inputs)]):
                if formal.option == single and n.inputs[i] is None:  # '' marks an omitted optional input only
                    raise ModelLoadError(f"{path}: {n.describe()}: input {i} ({formal.name}) is required, but the "
                                         "model leaves it empty ('')")


_CHECKER_REFUSES = "not written (onnx's checker and ONNX Runtime refuse such a file)"

#: experimental ops onnx removed from its op list (onnx 1.5) that ONNX Runtime still runs in the default domain:
#: the model zoo's tinyyolov2-8 uses ImageScaler. They load (a review found them refused as made-up ops)
ONNX_RUNTIME_LEGACY_OPS = frozenset({"ImageScaler", "Crop", "Scale", "ScaledTanh", "ParametricSoftplus", "Affine"})
#: ops ONNX Runtime defines in the default domain itself, where ONNX has none at the model's opset: its transformer
#: optimizer writes LayerNormalization below opset 17 and SimplifiedLayerNormalization (an RMSNorm), which it runs;
#: they were read, optimized and then refused when written (an outside check)
ONNX_RUNTIME_OWN_OPS = frozenset({"LayerNormalization", "SimplifiedLayerNormalization"})
RUN_BY_ONNX_RUNTIME = ONNX_RUNTIME_LEGACY_OPS | ONNX_RUNTIME_OWN_OPS


def check_structure(graph: Graph, path: str) -> None:
    """Refuse to write ``graph`` where ``verify`` finds a problem (a value of another graph was written and, matched
    by name, computed something else; a cycle or a dangling output was written and not loadable: outside checks).
    On the caller's graph, before any copy: a copy of a malformed graph can differ from it (an unsorted one's
    message did)."""
    problems = find_problems(graph)
    if problems:
        raise UserInputError(f"{path}: {_first_problem(problems)}; not written (graphmill.verify(graph) lists every "
                             "problem)")


def _bodies(graph: Graph):
    """Every graph whose nodes ONNX Runtime names: ``graph``, its subgraphs, and model-local function bodies."""
    yield from graph.all_graphs()
    for f in graph.functions.values():
        yield from f.graph.all_graphs()


def _node_names_unique(graph: Graph) -> Graph:
    """``graph``, or a copy where a node repeating the name of an earlier node of its graph is renamed
    (``NAME__1``): ONNX Runtime refuses a file with two nodes of one name in one graph (nothing else reads node
    names from the file); such a graph, built by hand or loaded from a file ONNX Runtime would not run, was
    written as it was (an outside check)."""
    if all(len({n.name for n in g.nodes if n.name}) == sum(1 for n in g.nodes if n.name) for g in _bodies(graph)):
        return graph
    graph = graph.copy()
    for g in _bodies(graph):
        taken = {n.name for n in g.nodes}
        seen: set[str] = set()
        for n in g.nodes:
            if n.name and n.name in seen:
                k = 1
                while f"{n.name}__{k}" in taken:
                    k += 1
                n.name = f"{n.name}__{k}"
                taken.add(n.name)
            seen.add(n.name)
    return graph


def _outputs_typed(graph: Graph) -> Graph:
    """``graph``, or where an output has no type a copy with types inferred: an If's output that the builder's
    inference left open was written untyped, and onnx's checker refuses that file ("Field 'type' of 'value_info' is
    required"; an outside check). One inference cannot type (a custom op's, a graphmill op kept by
    ``lower=False``) is written as it is: such a file is for graphmill or the op's own runtime."""
    if all(v.type is not None for v in graph.outputs):
        return graph
    from .onnx_shape_inference import infer_shapes

    inferred = graph.copy()
    infer_shapes(inferred)
    typed = graph.copy()  # the untyped outputs take the inferred types; every declared type is written as declared
    for v, w in zip(typed.outputs, inferred.outputs):
        if v.type is None:
            v.type = w.type
    return typed


def _first_opset(op_type: str) -> int | None:
    """The first opset of the default domain that has ``op_type``, or None (a refusal's path only)."""
    versions = [s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.name == op_type
                and s.domain == ""]
    return min(versions) if versions else None


#: (op type, input index) of operands whose length becomes the rank of the op's output
SHAPE_OPERANDS = {("ConstantOfShape", 0), ("Expand", 1), ("Reshape", 1), ("Resize", 3), ("Upsample", 1)}


def check_sizes(graph: Graph, path: str) -> None:
    """ModelLoadError naming the value (or node) when a declared size is beyond ``graphmill.util.limits``.

    Every later step allocates from declared shapes (onnx's shape inference per dimension, random
    inputs per element), so an untrusted file declaring a 2^40-element tensor, or a shape operand of
    2^24 entries (an output of rank 2^24), is refused here, before anything is allocated from it.
    """
    from graphmill.ir import TensorType
    from graphmill.util.limits import max_rank, shape_problem

    for g in graph.all_graphs():
        for v in [*g.inputs, *g.values(), *g.outputs]:
            t = v.type
            if isinstance(t, TensorType):
                problem = shape_problem(t.shape)
                if problem:
                    raise ModelLoadError(f"{path}: value {v.name!r} declares shape {_short_shape(t.shape)}: "
                                         f"{problem}")
        for n in g.nodes:
            for i, v in enumerate(n.inputs):
                if v is None or (n.op_type, i) not in SHAPE_OPERANDS or not isinstance(v.type, TensorType):
                    continue
                shape = v.type.shape
                if shape is not None and len(shape) == 1 and isinstance(shape[0], int) and shape[0] > max_rank():
                    raise ModelLoadError(
                        f"{path}: {n.describe()}: its shape input {v.name!r} has {shape[0]} entries, an output "
                        f"rank over the limit of {max_rank()} (GRAPHMILL_MAX_RANK)")


def _short_shape(shape) -> str:
    dims = [str(d) if d is not None else "?" for d in shape]
    return "[" + ", ".join(dims if len(dims) <= 8 else dims[:8] + [f"... {len(dims)} dims"]) + "]"


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
                check_parsed(model, path)
                return model, raw
    except (ValueError, DecodeError, RuntimeError):
        pass
    return _parse_model(path, data), None


def writable(graph: Graph, path: str) -> Graph:
    """What ``save`` writes for ``graph`` (repeated node names renamed, untyped outputs typed: a copy when either
    changes anything), or the ``UserInputError`` that refuses it naming ``path``: a graph graphmill writes, it
    loads (an empty required input verified, was written, and was refused on load). The corpus test checks every
    optimized case with it, as a save would."""
    check_structure(graph, path)
    graph = _node_names_unique(_outputs_typed(graph))
    try:
        check_schema(graph, path, writing=True)
        check_declared_dims(graph, path)
        check_opset_versions(list(graph.opset_imports.items()), path)
    except ModelLoadError as e:  # UnsupportedModelError (a newer opset) included
        said = str(e).endswith(_CHECKER_REFUSES)
        raise UserInputError(str(e) if said else f"{e}; not written (loading it would be refused)") from None
    return graph


@collector_paused()
def save(graph: Graph, path: str | os.PathLike, *, external_data: str | None = None,
         size_threshold: int = 1024, force: bool = False) -> None:
    """Save ``graph`` as an ONNX file, atomically.

    With ``external_data`` (a file name, relative to the model's folder), tensors
    of at least ``size_threshold`` bytes go to that file instead of the model;
    models over protobuf's 2 GiB limit need it (CLI: ``--external-data NAME``).
    The model and its data file are replaced together or not at all. Neither may be a file ``graph`` reads its
    weights from (``external_data_files``) unless ``force``: that file belongs to the model ``graph`` was
    loaded from, which would no longer load (every weight is read into the new file first, so the new model is
    whole either way; with ``force`` ``graph`` itself still reads its weights lazily from the replaced file: load
    the saved model to go on).
    """
    path = os.fspath(path)
    check_target(path)
    graph = writable(graph, path)
    lands = written_path(path)  # a link's target: external data goes beside the model it is written in
    if not force:
        folder = os.path.dirname(os.path.abspath(lands))
        targets = [("the model", lands)] + ([("external data", os.path.join(folder, external_data))]
                                           if external_data else [])
        for src in external_data_files(graph):
            for what, target in targets:
                if os.path.exists(target) and os.path.exists(src) and os.path.samefile(src, target):
                    raise UserInputError(f"{path}: {what} would be written to {target}, which the graph reads its "
                                         "weights from (the model it was loaded from would no longer load); pick "
                                         "another name (force=True, the CLI's --force, replaces it)")
    if external_data is not None:
        model = to_proto(graph)
        data = _move_to_external(model, lands, external_data, size_threshold)
        # no tensor reached the threshold: no data file (an empty one that nothing references was written)
        atomic_write_many(([data] if data[1] else []) + [(path, model.SerializeToString())])
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



__all__ = ["load", "save", "writable", "clear_default_presence", "read_model_proto", "atomic_write_bytes",
           "atomic_write_many", "external_data_files", "from_proto", "to_proto"]
