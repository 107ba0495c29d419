"""Shape inference: graphmill's registry first, onnx's own inference for the ops it lacks.

The registry knows the ops graphmill transforms and costs, and carries shape
values (symbolic ones too) through exporters' shape subgraphs as onnx's data
propagation does; onnx knows every standard op. When an op without a registry
entry leaves an output open, onnx's inference runs on the exported model and
its answers are merged (never overriding a more precise type, or a symbol with
a number), then the registry runs again so that what follows that op gains
from them. A graph of registry ops only is never exported: no protobuf round
trip for the zoo's models or for TorchScript/dynamo exports of CNNs and
transformers.

``OnnxShapeInferencer`` is that second step alone: the ``ShapeInferencer`` the
passes get through their ``PassContext`` (passes do not import the frontend).
"""

from __future__ import annotations

import dataclasses

import onnx

import re

from graphmill.ir import Graph, OptionalType, SequenceType, TensorType, require_graph
from graphmill.util.limits import check_flags
from graphmill.ir.ops import InferenceReport, has_inference, infer_types, merge_types, unregistered_open_values
from graphmill.ir.rewrite import constant_value

from .onnx_export import to_proto
from .onnx_import import type_from_proto
from .onnx_io import RUN_BY_ONNX_RUNTIME


def _needs_more(t) -> bool:
    if t is None:
        return True
    if isinstance(t, TensorType):
        return not t.dtype or t.shape is None or any(d is None for d in t.shape)
    return False


# Floating weights bigger than this reach onnx's inference as typed inputs without data. The float
# inputs whose values onnx's inference reads (Resize/Upsample scales, Range and OneHot scalars) hold at
# most one element per dimension, and data propagation reads integers only.
WEIGHT_DATA_LIMIT = 1024

_ONNX_PLACEHOLDER = re.compile(r"^unk__\d+$")


def _drop_placeholders(t):
    """onnx names dims it could not determine ``unk__N``; they are unknown, not symbols. A negative size is
    unknown too: onnx's inference gives one where no run reaches (a Split of 5 into 4, -1 for the last chunk, in
    an If branch no run takes: the onnx corpus's affine_grid_3d_expanded, where graphmill's own inference leaves
    those sizes open), and copied into the IR it made the model unsavable, blamed on the user's file (an
    outside check)."""
    def unknown(d) -> bool:
        return (isinstance(d, str) and _ONNX_PLACEHOLDER.match(d) is not None) or (isinstance(d, int) and d < 0)

    if isinstance(t, TensorType) and t.shape is not None and any(unknown(d) for d in t.shape):
        return t.with_shape([None if unknown(d) else d for d in t.shape])
    if isinstance(t, (SequenceType, OptionalType)) and t.elem_type is not None:  # seq<float32[N,unk__0]>
        elem = _drop_placeholders(t.elem_type)
        return t if elem is t.elem_type else dataclasses.replace(t, elem_type=elem)
    return t


def _rank_only(t):
    """A tensor type with its sizes unknown, its rank and element type kept."""
    return t.with_shape([None] * len(t.shape)) if isinstance(t, TensorType) and t.shape is not None else t


def _onnx_sizes_wrong(node, index: int) -> bool:
    """Whether onnx's inference is known to give output ``index`` of ``node`` wrong sizes (its rank and type are
    right), which graphmill, having no entry of its own for the op, would take as fact (an outside check's fuzzer
    against ONNX Runtime, onnx 1.20): Attention's ``qk_matmul_output`` (the last dim is the total key length, past
    included; onnx gave K's, or 0 for a symbolic one) and DFT's output with a ``dft_length`` computed at run time
    (onnx kept the signal's length, and optimize dropped an Expand back to it)."""
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Attention":
        return index == 3
    if node.op_type == "DFT":
        length = node.inputs[1] if len(node.inputs) > 1 else None
        return length is not None and constant_value(length) is None
    return False


def infer_shapes(graph: Graph, *, use_onnx: bool = True, strict: bool = False) -> InferenceReport:
    """Fill in value types in place; returns what was inferred and what could not be.

    onnx's inference (``use_onnx``) is asked only when an op without a registry entry leaves an
    output open (``graphmill.ir.ops.unregistered_open_values``)."""
    require_graph(graph, "infer_shapes")
    check_flags("graphmill.infer_shapes", use_onnx=use_onnx, strict=strict)
    report = infer_types(graph, strict=strict)
    if use_onnx and next(unregistered_open_values(graph), None) is not None:
        before = report.inferred
        refine_with_onnx(graph, report)
        if report.inferred > before:  # what follows the unknown ops gains from onnx's answers
            again = infer_types(graph, strict=strict)
            report.inferred += again.inferred
    return report


class OnnxShapeInferencer:
    """onnx's shape inference (with data propagation) for the values graphmill's registry left
    open: the ``ShapeInferencer`` (``graphmill.passes.base``) that the shape-inference pass uses."""

    def refine(self, graph: Graph, report: InferenceReport) -> None:
        refine_with_onnx(graph, report)

    def type_error(self, graph: Graph) -> str | None:
        """onnx's inference in strict mode with type checks on the exported graph (big weights without data):
        its first complaint, or None. Ops of domains onnx has no schemas for (com.microsoft, graphmill) are
        not checked; a standard-domain op ONNX defines at no opset is a complaint (``unknown_standard_op``: onnx's
        inference passes it by, and a plugin rule that emitted one was written, exit 0, an outside check)."""
        unknown = unknown_standard_op(graph)
        if unknown is not None:
            return unknown
        try:
            onnx.shape_inference.infer_shapes(to_proto(graph, strip_weights_over=WEIGHT_DATA_LIMIT),
                                              check_type=True, strict_mode=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as e:
            text = str(e).strip().splitlines()
            return re.sub(r"^\[\w+\]\s*", "", text[0]) if text else "onnx's type check failed"
        return None


def unknown_standard_op(graph: Graph) -> str | None:
    """The first node of the standard domain (in ``graph`` or its subgraphs) whose op ONNX defines at no opset,
    described; None when every one is defined. An op ONNX defines only from a later opset is let by: ONNX Runtime
    runs its own default-domain LayerNormalization at opset 13 (a review); so are the ops ONNX Runtime defines in
    the default domain itself (``onnx_io.RUN_BY_ONNX_RUNTIME``: a model holding SimplifiedLayerNormalization
    failed this check before any pass, which then left every pass's result unchecked: a review)."""
    for node in graph.all_nodes():
        if (node.domain or "") in ("", "ai.onnx") and not onnx.defs.has(node.op_type) \
                and node.op_type not in RUN_BY_ONNX_RUNTIME:
            return f"{node.describe()}: ONNX defines no op {node.op_type!r}"
    return None


def refine_with_onnx(graph: Graph, report: InferenceReport) -> None:
    """Merge onnx's inferred types into the values whose type is still incomplete, in place.

    The graph is exported (big float weights without data) only when some value is open. onnx answers first for
    the ops the registry has no entry for; the registry then runs again from those answers, and onnx's answer for
    a registry op's output is taken only where the registry still leaves it open. onnx's data propagation can be
    wrong past an op it answered for (a Slice of a Shape cut to nothing, propagated whole, gave a Reshape seven
    dims for a four-element shape: an outside check on ONNX Runtime's quantized models), and taken first it
    stood against the registry's right answer."""
    open_values = {v.name: v for g in graph.all_graphs() for n in g.nodes for v in n.outputs
                   if v is not None and _needs_more(v.type)}
    if not open_values:
        return
    try:
        inferred = onnx.shape_inference.infer_shapes(to_proto(graph, strip_weights_over=WEIGHT_DATA_LIMIT),
                                                       data_prop=True)
    except Exception as e:  # noqa: BLE001 -- onnx's inference is a helper; its failure is not ours
        report.errors.append(f"onnx shape inference failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return
    found = {}
    stack = [inferred.graph]
    while stack:
        gp = stack.pop()
        for vi in list(gp.value_info) + list(gp.output):
            found[vi.name] = vi
        for n in gp.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    answers = {}
    for name, v in open_values.items():
        vi = found.get(name)
        if vi is None or not vi.HasField("type"):
            continue
        theirs = _drop_placeholders(type_from_proto(vi.type))
        if v.producer is not None and _onnx_sizes_wrong(v.producer, v.index):
            theirs = _rank_only(theirs)
        answers[v] = theirs
    registry_ops = {v: t for v, t in answers.items() if v.producer is not None and has_inference(v.producer)}
    if _merge_answers({v: t for v, t in answers.items() if v not in registry_ops}, report) and registry_ops:
        again = infer_types(graph)
        report.inferred += again.inferred
        report.conflicts += again.conflicts
        report.errors += again.errors
    _merge_answers({v: t for v, t in registry_ops.items() if _needs_more(v.type)}, report)


def _merge_answers(answers: dict, report: InferenceReport) -> bool:
    """Merge onnx's ``answers`` (value -> type) into the values' types; whether any changed."""
    changed = False
    for v, theirs in answers.items():
        merged = merge_types(v.type, theirs, f"%{v.name}", report)
        if merged is not v.type:
            v.type = merged
            report.inferred += 1
            changed = True
    return changed
