"""Constant folding: evaluate nodes whose inputs are all constant, once, at compile time.

Legal cases (folded):
- a node of the ONNX default domain whose every present input is constant -- an initializer
  that is not also a graph input (an initializer listed as an input is only a default the
  caller may override), a ``Constant`` output, or an earlier folded result, from this graph
  or an enclosing one;
- evaluated with numpy for the ops that only move or describe elements (Shape, Size, Identity,
  Concat, Unsqueeze, Squeeze, Reshape, Gather; any element type, every opset), for
  ConstantOfShape, and by the context's node evaluator for everything else
  (``PassContext.node_evaluator``: ONNX Runtime on a one-node model, provided by
  ``graphmill.backends.onnxruntime.OrtNodeEvaluator``), so the folded value is what ORT would have
  computed; without an evaluator only the numpy cases fold;
- ``Constant`` nodes (tensor / float(s) / int(s) forms) become initializers.

Results become initializers named after the values they replace. A value that is a graph
output keeps its name: it is produced by a ``Constant`` node instead (an initializer cannot
take the output's place without renaming it).

Refused (left unchanged; the reason is counted in the result's notes):
- non-deterministic ops (RandomNormal/Uniform[Like], Multinomial, Bernoulli), ops with
  subgraphs (If/Loop/Scan), ops of any other domain (their semantics are not ONNX's);
- outputs larger than ``size_limit`` elements (estimated before evaluation for
  ConstantOfShape, Expand, Tile and Range, so huge tensors are never materialized), unless
  folding does not grow the model: the outputs hold no more elements than the constant inputs
  that only this node reads (and that therefore die with it) -- a Transpose, Reshape, Cast,
  Slice or Split of a big weight folds, a ConstantOfShape, Expand, Tile or Range that would
  materialize a big tensor from a small one does not. The default limit (128 Mi elements) is
  high on purpose: ONNX Runtime and onnxsim fold without one, and an unfolded ConstantOfShape
  weight is recomputed on every run; lower it to keep files small;
- outputs that are not plain tensors (sequences, optionals), or of element types numpy cannot
  hold (bfloat16, float8, 4-bit...), or strings;
- results that disagree with the declared type (element type or static shape): the graph's
  declaration wins and the node stays;
- nodes the evaluator cannot evaluate on their own (the error is noted);
- a ``DequantizeLinear`` of a constant integer tensor (a QDQ model's quantized weight or bias), unless
  ``keep_quantized`` is off: ONNX Runtime fuses it with the op it feeds into a quantized kernel, and its own
  constant folding leaves it for that reason. Folded, the weight is stored as float32 (a 3.8x bigger file on a
  quantized CNN), which ONNX Runtime then quantizes again with parameters of its own: 19-22% of a quantized
  CNN's outputs moved by one quantization step (an outside check).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from graphmill.ir import DataType, ExecutionError, Graph, Node, Tensor, TensorType, Value
from graphmill.ir.graph import TORCH_ROLES_KEY, recorded_torch_roles
from graphmill.ir.ops.nn import einsum_labels
from graphmill.ir.ops.resize import scaled_dim
from graphmill.ir.rewrite import constant_value, nested_output_ids

from ..base import NodeEvaluator, Option, Pass, PassContext, PassResult, register_pass
from .common import (INPUT_INITIALIZERS, INPUT_INITIALIZERS_DOC, NONDETERMINISTIC, ONNX_DOMAINS,
                     input_initializers_are_constant, opset)

_NUMPY_TYPES = frozenset({DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.INT8, DataType.INT16,
                          DataType.INT32, DataType.INT64, DataType.UINT8, DataType.UINT16, DataType.UINT32,
                          DataType.UINT64, DataType.BOOL})
_CONST_ATTRS = ("value", "value_float", "value_floats", "value_int", "value_ints")


@register_pass
class FoldConstants(Pass):
    """Evaluate constant subgraphs (numpy for shape arithmetic, the context's node evaluator otherwise)."""

    name = "fold-constants"
    options = (
        Option("size_limit", int, 1 << 27, "largest folded output, in elements (default 128 Mi: 512 MiB of "
               "float32, a quarter of protobuf's 2 GiB); bigger results stay computed unless they are no bigger "
               "than the constant inputs they replace (which then die). Lower it to keep files small: a folded "
               "ConstantOfShape/Expand/Tile/Range stores its whole result in the model",
               min=0),
        Option("constants_to_initializers", bool, True, "turn Constant nodes into initializers"),
        Option("keep_quantized", bool, True, "leave a DequantizeLinear of a constant integer tensor (a quantized "
               "model's weight) unfolded, as ONNX Runtime does: folded, the weight becomes float32"),
        Option("input_initializers", str, "auto", INPUT_INITIALIZERS_DOC, choices=INPUT_INITIALIZERS),
    )
    preserves = frozenset()

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        refused: Counter[str] = Counter()
        folded = converted = dequantized = 0
        known: dict[int, np.ndarray] = {}  # id(value) -> data, for constants of the whole tree
        fold_inputs = input_initializers_are_constant(graph, self.input_initializers)
        unlisted = 0
        if self.input_initializers == "constant":  # asked for: weights, no longer inputs a caller could override, so
            # that every rule after it reads them as constants (from IR 4 on, rewrite rules do not: ONNX Runtime
            # feeds what it is given; a Conv + BatchNormalization of keep_initializers_as_inputs did not fold)
            weights = [v for v in graph.inputs if v.is_initializer]
            if weights:
                graph.inputs[:] = [v for v in graph.inputs if not v.is_initializer]
                unlisted = len(weights)
        evaluator = ctx.node_evaluator
        for g in list(graph.all_graphs()):
            inputs = {id(v) for v in g.inputs}
            for v in g.initializers.values():
                if ((id(v) not in inputs or fold_inputs) and isinstance(v.const, Tensor)
                        and v.const.dtype in _NUMPY_TYPES):
                    known[id(v)] = _Lazy(v)  # type: ignore[assignment]
            nested = nested_output_ids(g)
            outputs = {id(v) for v in g.outputs}
            for node in list(g.nodes):
                if node.graph is not g:
                    continue
                if node.op_type == "Constant" and node.domain in ONNX_DOMAINS:
                    arr = _constant_node_value(node)
                    if arr is None:
                        continue
                    out = node.outputs[0]
                    known[id(out)] = arr
                    if (self.constants_to_initializers and id(out) not in outputs and id(out) not in nested
                            and not node.meta):
                        # its readers now read the initializer: constant for the folds later in this run too
                        known[id(_to_initializer(g, node, arr))] = arr
                        converted += 1
                    continue
                reason = self._refuse(node, known, nested) or _more_nodes(node, outputs)
                if reason:
                    if reason != "-":
                        refused[reason] += 1
                    continue
                args = [None if v is None else _get(known, v) for v in node.inputs]
                freed = _freed_elements(node, args)
                estimate = _estimate_size(node, args)
                if estimate is not None and estimate > max(self.size_limit, freed):
                    refused[f"{node.op_type}: output over size_limit ({self.size_limit} elements)"] += 1
                    continue
                try:
                    results = _evaluate(node, args, graph, evaluator)
                except _CannotFold as e:
                    refused[f"{node.op_type}: {e}"] += 1
                    continue
                why = _check_results(node, results, self.size_limit, freed) or \
                    _constant_cannot_hold(node, results, outputs, opset(graph))
                if why:
                    refused[f"{node.op_type}: {why}"] += 1
                    continue
                dequantized += _dequantizes(node)
                for v, arr in _replace_with_constants(g, node, results, outputs):
                    known[id(v)] = arr
                folded += 1
        notes = [f"not folded ({n}x): {r}" for r, n in refused.most_common(20)]
        if dequantized:  # keep_quantized off: the check (ORT's optimizations off) cannot see what this changes
            notes.append(f"{dequantized} quantized constant(s) folded to float: ONNX Runtime, its optimizations on, "
                         "quantizes them again with parameters of its own, and outputs may move by a quantization step")
        stats = {"folded": folded, "constants_to_initializers": converted}
        if unlisted:
            stats["inputs_made_weights"] = unlisted
        return PassResult(bool(folded or converted or unlisted), stats, notes)

    def _refuse(self, node: Node, known: dict, nested: set[int]) -> str:
        ins = [v for v in node.inputs if v is not None]
        if not ins or not all(id(v) in known for v in ins):
            return "-"  # not constant: nothing to say
        if all(v is None for v in node.outputs):
            return "-"  # every output omitted: nothing to fold into (ONNX Runtime refuses to evaluate it alone)
        if node.domain not in ONNX_DOMAINS:
            return f"{node.domain}::{node.op_type}: op of a non-ONNX domain"
        if node.op_type in NONDETERMINISTIC:
            return f"{node.op_type}: non-deterministic"
        if node.subgraphs():
            return f"{node.op_type}: has a subgraph"
        if self.keep_quantized and _dequantizes(node):
            return "DequantizeLinear: a quantized constant stays quantized (keep_quantized)"
        if any(v is not None and id(v) in nested for v in node.outputs):
            return f"{node.op_type}: output returned by a subgraph"
        for v in node.outputs:
            if v is None:
                continue
            t = v.type
            if t is not None and not isinstance(t, TensorType):
                return f"{node.op_type}: output is not a tensor ({t})"
            if isinstance(t, TensorType) and t.dtype and t.dtype not in _NUMPY_TYPES:
                return f"{node.op_type}: output element type {t.dtype.short_name} not foldable"
        return ""


def _more_nodes(node: Node, outputs: set[int]) -> str:
    """Why folding ``node`` would add nodes, or "": each of its outputs that is a graph output becomes a Constant
    node of its own (a TopK returning values and indices was 1 node, folded 2: an outside check)."""
    returned = sum(1 for v in node.outputs if v is not None and id(v) in outputs)
    return f"{node.op_type}: {returned} of its outputs are graph outputs, a Constant node each" if returned > 1 else ""


def _constant_cannot_hold(node: Node, results: list, outputs: set[int], version: int) -> str:
    """Why a result that is a graph output cannot be a ``Constant`` node at opset ``version``, or "": before
    opset 9 a Constant holds float16, float and double only (a folded int64 Shape, ArgMax or TopK index output
    made the written model ill-typed, and optimize refused a valid opset-7/8 model: an outside check)."""
    if version >= 9:
        return ""
    for v, arr in zip(node.outputs, results):
        if v is not None and id(v) in outputs and np.asarray(arr).dtype not in (np.float16, np.float32, np.float64):
            return (f"{node.op_type}: output %{v.name} is a graph output of element type {np.asarray(arr).dtype}, "
                    "which a Constant holds only from opset 9")
    return ""


def _dequantizes(node: Node) -> bool:
    """Whether ``node`` is a DequantizeLinear of an integer tensor (a quantized weight, when it is constant)."""
    v = node.inputs[0] if node.op_type == "DequantizeLinear" and node.inputs else None
    t = v.type if v is not None else None
    return isinstance(t, TensorType) and t.dtype is not None and t.dtype.is_integer


class _CannotFold(Exception):
    pass


class _Lazy:
    """An initializer's data, decoded only when a fold reads it."""

    __slots__ = ("v",)

    def __init__(self, v: Value) -> None:
        self.v = v


def _get(known: dict, v: Value) -> np.ndarray:
    a = known[id(v)]
    if isinstance(a, _Lazy):
        a = v.const.numpy()
        known[id(v)] = a
    return a


def _constant_node_value(node: Node) -> np.ndarray | None:
    if not any(k in node.attrs for k in _CONST_ATTRS):
        return None
    arr = constant_value(node.outputs[0]) if node.outputs and node.outputs[0] is not None else None
    if arr is None or not isinstance(arr, np.ndarray):
        return None
    try:
        if DataType.from_numpy(arr.dtype) not in _NUMPY_TYPES:
            return None
    except TypeError:
        return None
    return arr


def _to_initializer(g: Graph, node: Node, arr: np.ndarray) -> Value:
    """Replace a Constant node by an initializer of its name; returns the initializer."""
    out = node.outputs[0]
    name = out.name
    init = g.add_initializer(Tensor(arr), g.unique_name(name + "_folded"))
    out.replace_all_uses_with(init, graph_outputs=False)
    g.remove_node(node)
    _rename_initializer(g, init, name)
    return init


def _rename_initializer(g: Graph, init: Value, name: str) -> None:
    if name in g.initializers:
        return
    del g.initializers[init.name]
    init.name = name
    init.const.name = name
    g.initializers[name] = init


def _fixed_inputs(g: Graph, node: Node) -> bool:
    """Whether every floating initializer ``node`` reads is one ``from_torch`` recorded as fixed (a buffer, a frozen
    parameter: ``TORCH_ROLES_KEY``), and it reads one: what it folds into is fixed too."""
    fixed = recorded_torch_roles(g)[1]
    floats = [v for v in node.inputs if v is not None and v.is_initializer and v.dtype is not None
              and v.dtype.is_floating]
    return bool(floats) and all(v.name in fixed for v in floats)


def _replace_with_constants(g: Graph, node: Node, results: list, outputs: set[int]) -> list:
    """Replace the node by its results; returns (new value, data) pairs. A fold of fixed tensors is recorded as
    fixed (``TORCH_ROLES_KEY``): a frozen LSTM's folded gates had no role and trained (a review)."""
    fixed = _fixed_inputs(g, node)
    renames, made = [], []
    for v, arr in zip(node.outputs, results):
        if v is None:
            continue
        arr = np.asarray(arr)
        if id(v) in outputs:
            c = Node("Constant", [], {"value": Tensor(arr)}, name=g.unique_name(f"{node.name or node.op_type}_folded"))
            g.insert_before(node, [c])
            c.outputs[0].type = TensorType(DataType.from_numpy(arr.dtype), arr.shape)
            v.replace_all_uses_with(c.outputs[0])  # the Constant's output takes the graph output's name
            made.append((c.outputs[0], arr))
        else:
            init = g.add_initializer(Tensor(arr), g.unique_name(v.name + "_folded"))
            v.replace_all_uses_with(init, graph_outputs=False)
            renames.append((init, v.name))
            made.append((init, arr))
    g.remove_node(node)
    for init, name in renames:  # the folded initializers take the names of the values they replace
        _rename_initializer(g, init, name)
    if fixed:  # a new dict: graph copies share their meta's values
        g.meta[TORCH_ROLES_KEY] = {**g.meta[TORCH_ROLES_KEY], "buffers": sorted(
            recorded_torch_roles(g)[1] | {init.name for init, _ in renames})}
    return made


#: ops whose output is the broadcast of their inputs' shapes: two small constants can make a huge one
_BROADCASTING = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "Where", "And",
                           "Or", "Xor", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "BitShift",
                           "BitwiseAnd", "BitwiseOr", "BitwiseXor", "PRelu"})


def _estimate_size(node: Node, args: list) -> int | None:
    """The elements ``node`` would output, when known before evaluating it: an outer product by broadcasting or
    MatMul of two small constants ([30000, 1] + [1, 30000]) took 3.7 GB before the size_limit refused the
    result (an outside check). None when unknown (the result is then checked after evaluation)."""
    sizes = [_estimate_by_op(node, args), _static_output_elements(node)]
    known = [n for n in sizes if n is not None]
    return max(known) if known else None


def _static_output_elements(node: Node) -> int | None:
    """The elements of the largest output by the outputs' static types (declared or inferred), None if any is
    open: size_limit holds for each output (a Split's halves are not summed)."""
    largest = 0
    for v in node.outputs:
        if v is None:
            continue
        shape = v.shape
        if shape is None or not all(isinstance(d, int) and d >= 0 for d in shape):
            return None
        largest = max(largest, math.prod(shape))
    return largest


def _estimate_by_op(node: Node, args: list) -> int | None:
    op = node.op_type
    shapes = [tuple(a.shape) if isinstance(a, np.ndarray) else None for a in args]
    try:
        if op in _BROADCASTING and all(s is not None for s in shapes) and shapes:
            return math.prod(np.broadcast_shapes(*shapes))
        if op == "MatMul" and len(shapes) == 2 and all(s is not None and len(s) >= 1 for s in shapes):
            a, b = shapes
            rows = a[-2] if len(a) >= 2 else 1
            cols = b[-1] if len(b) >= 2 else 1
            return math.prod(np.broadcast_shapes(a[:-2], b[:-2])) * rows * cols
        if op == "Gemm" and len(shapes) >= 2 and all(s is not None and len(s) == 2 for s in shapes[:2]):
            a, b = shapes[:2]
            return (a[1] if node.attr("transA", 0) else a[0]) * (b[0] if node.attr("transB", 0) else b[1])
        if op == "Gather" and len(shapes) == 2 and all(s is not None for s in shapes) and shapes[0]:
            axis = int(node.attr("axis", 0)) % len(shapes[0])
            return math.prod(shapes[0][:axis]) * math.prod(shapes[1]) * math.prod(shapes[0][axis + 1:])
        if op == "Einsum" and all(sh is not None for sh in shapes):
            return _einsum_elements(str(node.attr("equation", "")), shapes)
        if op in ("Resize", "Upsample") and shapes and shapes[0] is not None and not node.attr("axes"):
            return _resize_elements(shapes[0], args)
        if op == "ConstantOfShape" and args and args[0] is not None:
            return int(np.prod(args[0].astype(np.int64))) if args[0].size else 1
        if op == "Expand" and len(args) > 1 and args[1] is not None:
            return int(np.prod(np.broadcast_shapes(args[0].shape, tuple(int(x) for x in args[1].reshape(-1)))))
        if op == "Tile" and len(args) > 1 and args[1] is not None:
            return int(args[0].size * np.prod(args[1].astype(np.int64)))
        if op == "Range" and len(args) == 3 and all(a is not None for a in args):
            start, limit, delta = (float(a.reshape(-1)[0]) for a in args)
            return max(int(np.ceil((limit - start) / delta)), 0) if delta else None
    except (ValueError, OverflowError, ZeroDivisionError, TypeError, KeyError, IndexError):
        return None  # a malformed node: no estimate; its evaluation reports what is wrong
    return None


def _einsum_elements(equation: str, shapes: list) -> int | None:
    """The output elements of an einsum, None when it cannot be read (``einsum_labels``). An outer product of
    two small constants is the case (an exporter declares its dims as symbols)."""
    read = einsum_labels(equation, [tuple(int(d) for d in sh) for sh in shapes])
    return None if read is None else math.prod(read[2][c] for c in read[1])


def _resize_elements(shape: tuple, args: list) -> int | None:
    """The output elements of a Resize/Upsample from its constant sizes, or scales (``scaled_dim``, the rule
    shape inference uses)."""
    sizes = args[3] if len(args) > 3 and isinstance(args[3], np.ndarray) and args[3].size else None
    if sizes is not None:
        return int(np.prod(sizes.astype(np.int64)))
    scales = next((a for a in reversed(args[1:3]) if isinstance(a, np.ndarray) and a.size == len(shape)), None)
    if scales is None or not np.all(np.isfinite(scales)):  # ONNX Runtime refuses such a node: it does not fold
        return None
    return math.prod(scaled_dim(int(d), sc) for d, sc in zip(shape, scales.reshape(-1)))


def _freed_elements(node: Node, args: list) -> int:
    """Elements of the constant inputs that folding ``node`` frees: inputs only this node reads (each
    value counted once), which are not graph outputs, so they die once the node is folded."""
    freed, seen = 0, set()
    for v, a in zip(node.inputs, args):
        if v is None or a is None or id(v) in seen:
            continue
        seen.add(id(v))
        if v.is_graph_output:
            continue
        if sum(1 for u in node.inputs if u is v) == v.num_uses:
            freed += int(np.asarray(a).size)
    return freed


def _check_results(node: Node, results: list, limit: int, freed: int = 0) -> str:
    if len(results) < sum(1 for v in node.outputs if v is not None):
        return "evaluation returned fewer outputs than the node has"
    total = sum(int(np.asarray(a).size) for v, a in zip(node.outputs, results) if v is not None
                and isinstance(a, np.ndarray))
    if total <= freed:
        limit = max(limit, total)  # folding does not grow the model: the inputs it replaces die
    for v, arr in zip(node.outputs, results):
        if v is None:
            continue
        if not isinstance(arr, np.ndarray):
            return f"output %{v.name} is not a tensor"
        try:
            dt = DataType.from_numpy(arr.dtype)
        except TypeError:
            return f"output %{v.name} has numpy type {arr.dtype}"
        if dt not in _NUMPY_TYPES:
            return f"output %{v.name} of element type {dt.short_name}"
        if arr.size > limit:
            return f"output over size_limit ({limit} elements)"
        t = v.type
        if isinstance(t, TensorType):
            if t.dtype and t.dtype != dt:
                return f"evaluated type {dt.short_name} differs from the declared {t.dtype.short_name}"
            if t.shape is not None:
                if len(t.shape) != arr.ndim or any(isinstance(d, int) and d != s for d, s in zip(t.shape, arr.shape)):
                    return f"evaluated shape {list(arr.shape)} differs from the declared {t}"
    return ""


# -- evaluation ------------------------------------------------------------------------------

def _evaluate(node: Node, args: list, graph: Graph, evaluator: NodeEvaluator | None) -> list:
    if node.op_type == "ConstantOfShape":  # one meaning since opset 9; the light models build weights with it
        got = _constant_of_shape(node, args)
        if got is not None:
            return got
    got = evaluate_numpy(node, args, opset(graph))
    if got is not None:
        return got
    if evaluator is None:
        raise _CannotFold("no node evaluator in the pass context (only numpy-evaluated ops fold)")
    try:
        return list(evaluator.evaluate(node, args, graph))
    except ExecutionError as e:
        raise _CannotFold(str(e)) from None


def _constant_of_shape(node: Node, args: list) -> list | None:
    shape = args[0] if args else None
    if shape is None or shape.dtype != np.int64 or shape.ndim != 1 or np.any(shape < 0):
        return None
    a = node.attrs.get("value")
    if a is None:
        fill = np.zeros(1, dtype=np.float32)
    elif isinstance(a.value, Tensor) and a.value.size == 1 and a.value.dtype in _NUMPY_TYPES:
        fill = a.value.numpy().reshape(-1)
    else:
        return None
    return [np.full(tuple(int(d) for d in shape), fill[0], dtype=fill.dtype)]


# -- numpy evaluation of data movement -------------------------------------------------------
#
# These ops only move, select or describe elements, so numpy gives ONNX Runtime's bits exactly, for
# every element type; each function returns None where its op's inputs fall outside the plain case
# (ORT then decides, and refuses what is invalid). Before opset 11 negative axes and indices were
# not defined: those cases go to ORT too. One-node ORT sessions cost a millisecond each, and
# light_densenet121 alone unsqueezes 242 folded weights.

def evaluate_numpy(node: Node, args: list, opset_version: int = 13) -> list | None:
    """The node's outputs computed with numpy, or None if it is not one of the plain cases
    (simplify's shape arithmetic uses it too)."""
    fn = _NUMPY_OPS.get(node.op_type)
    if fn is None or not args or args[0] is None:
        return None
    try:
        return fn(node, args, opset_version)
    except (ValueError, IndexError, TypeError):
        return None


def _int64(a: np.ndarray | None) -> bool:
    return a is not None and a.dtype == np.int64


def _axes_ok(axes: list[int], rank: int, opset_version: int) -> bool:
    low = -rank if opset_version >= 11 else 0
    return all(low <= a < rank for a in axes)


def _axes(node: Node, args: list, opset_version: int) -> list[int] | None:
    """Unsqueeze/Squeeze axes: the attribute before opset 13, the second (int64) input from 13 on;
    None when absent or not in that form."""
    if opset_version < 13:
        a = node.attrs.get("axes")
        return None if len(args) > 1 or a is None else [int(x) for x in a.value]
    if len(args) != 2 or not _int64(args[1]):
        return None
    return [int(a) for a in args[1].reshape(-1)]


def _np_shape(node: Node, args: list, opset_version: int) -> list | None:
    shape = np.array(args[0].shape, dtype=np.int64)
    r = len(shape)
    start = node.attr("start", 0)
    end = node.attr("end", r)
    start = min(max(start + r if start < 0 else start, 0), r)
    end = min(max(end + r if end < 0 else end, 0), r)
    return [shape[start:end]]


def _np_size(node: Node, args: list, opset_version: int) -> list | None:
    return [np.array(args[0].size, dtype=np.int64)]


def _np_identity(node: Node, args: list, opset_version: int) -> list | None:
    return [args[0]]


def _np_concat(node: Node, args: list, opset_version: int) -> list | None:
    axis = node.attr("axis")
    if (axis is None or any(a is None or a.ndim == 0 or a.dtype != args[0].dtype for a in args)
            or not _axes_ok([axis], args[0].ndim, opset_version)):
        return None
    return [np.concatenate(args, axis=axis)]


def _np_unsqueeze(node: Node, args: list, opset_version: int) -> list | None:
    x, axes = args[0], _axes(node, args, opset_version)
    if axes is None:
        return None
    r = x.ndim + len(axes)
    if not _axes_ok(axes, r, opset_version):
        return None
    axes = sorted(a % r for a in axes)
    if len(set(axes)) != len(axes):
        return None
    for a in axes:
        x = np.expand_dims(x, a)
    return [x]


def _np_squeeze(node: Node, args: list, opset_version: int) -> list | None:
    x, axes = args[0], _axes(node, args, opset_version)
    if axes is None or not _axes_ok(axes, x.ndim, opset_version) or any(x.shape[a] != 1 for a in axes):
        return None
    if not axes and not (opset_version >= 13 and all(a.dtype == np.int64 for a in args)):
        return None  # ORT removes every 1 then; the int64 shape path has always kept x as it is
    return [np.squeeze(x, axis=tuple(a % x.ndim for a in axes))]


def _np_reshape(node: Node, args: list, opset_version: int) -> list | None:
    if len(args) != 2 or not _int64(args[1]):
        return None
    x, shape = args[0], [int(s) for s in args[1].reshape(-1)]
    if node.attr("allowzero", 0) == 0:
        if any(s == 0 for s in shape) and len(shape) > x.ndim:
            return None
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    elif 0 in shape and -1 in shape:
        return None
    return [x.reshape(shape)]


def _np_gather(node: Node, args: list, opset_version: int) -> list | None:
    if len(args) != 2 or args[1] is None or args[1].dtype not in (np.int64, np.int32):
        return None
    x, idx = args
    axis = node.attr("axis", 0)
    if x.ndim == 0 or not _axes_ok([axis], x.ndim, opset_version):
        return None
    n = x.shape[axis]
    if np.any(idx < (-n if opset_version >= 11 else 0)) or np.any(idx >= n):
        return None
    return [np.take(x, np.where(idx < 0, idx + n, idx), axis=axis)]


_NUMPY_OPS = {"Shape": _np_shape, "Size": _np_size, "Identity": _np_identity, "Concat": _np_concat,
              "Unsqueeze": _np_unsqueeze, "Squeeze": _np_squeeze, "Reshape": _np_reshape, "Gather": _np_gather}
