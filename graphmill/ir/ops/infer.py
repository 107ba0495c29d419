"""Type and shape inference over a graph with the op registry.

Inference only adds information: an unknown type is filled, an unknown
dimension is refined, and a declared type is never contradicted silently
(conflicts are reported). A symbolic dimension that a graph input carries (the
model's free sizes: a batch ``N``) stays where inference computes it as a symbol;
where the graph computes a number, the declaration contradicts the graph: the
number wins, as it is what runs, and the conflict is reported. A symbol no graph
input carries is an exporter's name for a size the graph computes (torch names
an output dim ``ReduceMeany_dim_0``): when inference computes it as a number,
the number replaces it, as onnx's own inference does, so that it can neither
block static-shape work nor be bound by ``--dim`` to a size the graph cannot have;
computed as another symbol (an input's, or a data-dependent count such as
NonZero's), that symbol replaces it, for the same reason.
Ops the registry does not know keep whatever types they had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from graphmill.util.errors import ShapeInferenceError, UserInputError
from graphmill.util.limits import shape_problem, tensor_limits
from ..graph import Graph, Node, Value
from ..types import TensorType, Type
from .branch import known_condition
from .registry import InferenceContext, lookup
from .type_constraints import mismatched_input_types


class ModelTooLargeError(UserInputError):
    """Inference found a tensor beyond graphmill's size limits (graphmill/util/limits.py)."""


@dataclass
class InferenceReport:
    inferred: int = 0  # outputs whose type became known or more precise
    unknown_ops: dict[str, int] = field(default_factory=dict)  # "domain::op" -> count
    conflicts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def merge_types(old: Type | None, new: Type | None, where: object, report: InferenceReport,
                free: frozenset[str] | None = None) -> Type | None:
    """Combine a declared type with an inferred one, keeping the more precise of each part. ``where``: what
    names the value in a conflict's message (its ``str()``, only taken when there is one). ``free``: the
    symbols graph inputs carry; a declared symbol outside them yields to an inferred number or free symbol
    (module docstring).
    None: every symbol stays."""
    if new is None:
        return old
    if old is None:
        return new
    if not isinstance(old, TensorType) or not isinstance(new, TensorType):
        return old
    dtype = old.dtype or new.dtype
    if old.dtype and new.dtype and old.dtype != new.dtype:
        report.conflicts.append(f"{where}: declared {old.dtype.short_name}, inferred {new.dtype.short_name}")
    if old.shape is None:
        shape = new.shape
    elif new.shape is None:
        shape = old.shape
    elif len(old.shape) != len(new.shape):
        report.conflicts.append(f"{where}: declared rank {len(old.shape)}, inferred rank {len(new.shape)}")
        shape = old.shape
    else:
        dims = []
        for a, b in zip(old.shape, new.shape):
            if a is None:
                dims.append(b)
            elif isinstance(a, int) and isinstance(b, int) and a != b:
                report.conflicts.append(f"{where}: declared {old}, inferred {new}")
                dims.append(a)
            elif isinstance(a, str) and isinstance(b, int) and free is not None:
                # a derived size the exporter named: the graph computes it. A free size declared there (torch's
                # exporter declared a conv tap [batch, 12, batch, ..] that is [batch, 12, 3, 5]) contradicts the
                # graph: the number is what runs (ONNX Runtime merges leniently to it), the symbol carried on sized
                # the ops after it wrongly (an outside check: a Gemm's K of 240 for 180), and it is reported
                if a in free:
                    report.conflicts.append(f"{where}: declared {old}, inferred {new}")
                dims.append(b)
            elif isinstance(a, str) and isinstance(b, str) and free is not None and a not in free and b in free:
                dims.append(b)  # the same, computed as a free size (torch's Addy_dim_0 is the input's N)
            elif isinstance(a, str) and isinstance(b, str) and free is not None and a not in free:
                # the same, computed as a size the data decides (NonZero's count): one name for one size, or
                # --dim could give the exporter's u3 and the count two values (contradictory shapes; a review)
                dims.append(b)
            else:
                dims.append(a)  # a symbol stays a symbol; a known int stays
        shape = tuple(dims)
    if dtype == old.dtype and shape == old.shape:
        return old
    return TensorType(dtype, shape, old.denotation, old.dim_denotations)


def is_open(t: Type | None) -> bool:
    """Whether a type still lacks something inference could add (element type, rank, a dim)."""
    if t is None:
        return True
    if isinstance(t, TensorType):
        return not t.dtype or t.shape is None or any(d is None for d in t.shape)
    return False


def has_inference(node: Node) -> bool:
    """Whether the registry has an ``infer`` function for ``node``'s op."""
    d = lookup(node.domain, node.op_type)
    return d is not None and d.infer is not None


def unregistered_open_values(graph: Graph) -> Iterator[Value]:
    """Outputs, over the whole graph tree, of ops without a registry entry whose type is still open.

    These are the only values a second opinion (onnx's inference) is asked about: every other
    op's output is what the registry makes of its inputs, and the registry carries shape values
    (symbolic ones included) as far as onnx's data propagation does, so asking onnx about them
    would cost a protobuf export of the whole graph for nothing."""
    return (v for g in graph.all_graphs() for n in g.nodes if not has_inference(n)
            for v in n.outputs if v is not None and is_open(v.type))


def infer_types(graph: Graph, *, strict: bool = False, recurse: bool = True) -> InferenceReport:
    """Infer output types of every node the registry knows, in place.

    With ``strict`` an op whose inputs break its contract raises
    ``ShapeInferenceError``; otherwise the problem is recorded in the report.
    """
    report = InferenceReport()
    _infer_graph(graph, graph.root.opset_imports, {}, report, strict, recurse, input_symbols(graph.root),
                 tensor_limits())
    return report


def input_symbols(graph: Graph) -> frozenset[str]:
    """The symbolic dims the graph's inputs carry (initializers excluded): the model's free sizes."""
    return frozenset(d for v in graph.inputs if not v.is_initializer and isinstance(v.type, TensorType)
                     and v.type.shape is not None for d in v.type.shape if isinstance(d, str))


def _infer_graph(graph: Graph, opsets: dict[str, int], known: dict[int, np.ndarray], report: InferenceReport,
                 strict: bool, recurse: bool, free: frozenset[str], limits: tuple[int, int]) -> None:
    if graph.parent is not None:  # a body's own inputs (a Loop's iteration) are free sizes too
        free = free | input_symbols(graph)
    for node in graph.nodes:
        if recurse:
            dead = _untaken_branch(node, opsets, known)
            for sub in node.subgraphs():
                if sub is dead:  # it never runs: inferred from its types alone, as onnx's inference (and ONNX
                    # Runtime's, which refuses a model on what that finds) sees it. With the values propagated from
                    # outside, sizes no run gives it were refused: the onnx corpus's affine_grid, which runs (a review)
                    _infer_graph(sub, opsets, {}, report, strict, recurse, free, limits)
                else:
                    _infer_graph(sub, opsets, known, report, strict, recurse, free, limits)
        _infer_node(node, opsets, known, report, strict, free, limits)


def _untaken_branch(node: Node, opsets: dict[str, int], known: dict[int, np.ndarray]) -> Graph | None:
    """The branch of an If that its known condition rules out (a static export's rank test), else None."""
    if node.op_type != "If" or node.domain not in ("", "ai.onnx") or not node.inputs:
        return None
    taken = known_condition(InferenceContext(node, _opset_of(node, opsets), known))
    if taken is None:
        return None
    other = node.attr("else_branch" if taken == "then_branch" else "then_branch")
    return other if isinstance(other, Graph) else None


class _OutputOf:
    """A node's output as a conflict message names it, worded only when there is a conflict: describing every
    node for messages almost never written was a twentieth of type inference."""

    __slots__ = ("node", "value")

    def __init__(self, node: Node, value: Value) -> None:
        self.node, self.value = node, value

    def __str__(self) -> str:
        return f"{self.node.describe()} output %{self.value.name}"


def _negative_dims(t) -> bool:
    """Whether the type ``t`` has a size below 0 (no tensor can)."""
    return isinstance(t, TensorType) and t.shape is not None and any(isinstance(d, int) and d < 0 for d in t.shape)


def _opset_of(node: Node, opsets: dict[str, int]) -> int:
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    return opsets.get(domain, opsets.get("ai.onnx", 0)) if domain == "" else opsets.get(domain, 1)


# Shape arithmetic is a few ops; a cone past this many nodes computes data, not a size.
_MAX_PROPAGATION_CONE = 256


def propagated_value(value: Value) -> np.ndarray | None:
    """``value``'s data where the registry's value propagation computes it from constants and the static shapes
    of an inferred graph (an If condition a static export computes from ``Shape``: ``ir.control_flow.if_branch``),
    else None. Only the producers of ``value`` run, back to constants and Shape/Size, on a scratch table: no type
    is written, and code that lowers one node at a time (the simulator) needs no inference run of its own."""
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Value, bool]] = [(value, False)]
    while stack:
        v, done = stack.pop()
        node = v.producer
        if node is None or v.const is not None:
            continue
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        d = lookup(node.domain, node.op_type)
        if d is None or d.infer is None or node.subgraphs() or len(seen) > _MAX_PROPAGATION_CONE:
            return None
        stack.append((v, True))
        if node.op_type not in ("Shape", "Size"):  # they read their input's type, not its data
            stack.extend((i, False) for i in node.inputs if i is not None)
    known: dict[int, np.ndarray] = {}
    opsets = value.graph.root.opset_imports if value.graph is not None else {}
    for node in order:
        ctx = InferenceContext(node, _opset_of(node, opsets), known)
        try:
            lookup(node.domain, node.op_type).infer(ctx)
        except (ShapeInferenceError, ValueError, TypeError, IndexError, KeyError, OverflowError):
            return None
        for i, out in enumerate(node.outputs):
            if out is not None and i in ctx.output_values:
                known[id(out)] = ctx.output_values[i]
    got = known.get(id(value))
    return got if got is not None and got.dtype != object else None


def _infer_node(node: Node, opsets: dict[str, int], known: dict[int, np.ndarray], report: InferenceReport,
                strict: bool, free: frozenset[str], limits: tuple[int, int]) -> None:
    opset = _opset_of(node, opsets)
    mismatch = mismatched_input_types(node, opset)
    if mismatch is not None:
        if strict:
            raise ShapeInferenceError(mismatch)
        report.errors.append(mismatch)
    d = lookup(node.domain, node.op_type)
    if d is None or d.infer is None:
        key = f"{node.domain or 'ai.onnx'}::{node.op_type}"
        report.unknown_ops[key] = report.unknown_ops.get(key, 0) + 1
        return
    ctx = InferenceContext(node, opset, known)
    try:
        types = d.infer(ctx)
    except ShapeInferenceError as e:
        if strict:
            raise
        report.errors.append(str(e))
        return
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as e:
        # A registry function tripping over input it did not expect is a finding, not a crash.
        msg = f"{node.describe()}: inference failed ({type(e).__name__}: {e})"
        if strict:
            raise ShapeInferenceError(msg) from e
        report.errors.append(msg)
        return
    for i, out in enumerate(node.outputs):
        if out is None or i >= len(types):
            continue
        t = types[i]
        if isinstance(t, TensorType) and not t.dtype:
            t = None  # ONNX has no tensor type without an element type; an input was unknown
        if _negative_dims(t) and not any(v is not None and _negative_dims(v.type) for v in node.inputs):
            # (a negative size copied from a declared input is left for verify and save to name) sizes no run can
            # take (ConvTranspose pads past its output, Resize sizes -2, Split [4, -2], TopK k=-1):
            # in an If branch no run takes ONNX Runtime runs the model, and a negative size copied into the IR made
            # it unsavable, blamed on a size the file "declares" (reviews; the onnx corpus's affine_grid_3d):
            # unknown, as onnx's own negative answers are (frontend.onnx_shape_inference); said, for a node that runs
            # (inspect's problems; a review found the live case silent)
            msg = (f"{node.describe()}: output %{out.name} would have size {list(t.shape)}, which no run can have "
                   "(ONNX Runtime refuses the node when it runs); taken as unknown")
            if strict:
                raise ShapeInferenceError(msg)
            report.errors.append(msg)
            t = t.with_shape([None if isinstance(d, int) and d < 0 else d for d in t.shape])
        if isinstance(t, TensorType) and (problem := shape_problem(t.shape, limits)):
            # A size no real model has, computed from the model's own constants (Range(0, 2^33, 1)): refuse
            # it here, before onnx's inference, constant folding or random inputs try to allocate it.
            raise ModelTooLargeError(f"{node.describe()}: output %{out.name} would have {problem}")
        merged = merge_types(out.type, t, _OutputOf(node, out), report, free)
        if merged is not out.type:
            out.type = merged
            report.inferred += 1
        if i in ctx.output_values:
            known[id(out)] = ctx.output_values[i]
