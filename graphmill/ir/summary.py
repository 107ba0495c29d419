"""Whole-graph facts for reports: constness, parameter counts, MACs, the summary `inspect` prints.

Parameters are counted the way model papers count them: the constant tensors
that feed the computation. A tensor counts when it is constant (an
initializer, a Constant, or computed only from constants, as the light models
of the onnx test data build their weights with ConstantOfShape) and it is read
by a node that is not itself constant-only, or is a graph output. Integer
tensors wider than 8 bits and booleans are shapes, axes and indices, not
weights, and are not counted; 8- and 4-bit integers are (quantized weights). Nor are 0-d scalars
(Clip's bounds, GELU's 0.5, an attention scale), nor Resize's scales, nor a float computed from such constants
alone (an MoE lowering's ``Cast(Max(token count, 1))``): constants of the formula, not learned weights. A
weight looked up by constant indices (a ``Gather``, e.g. a relative-position bias expanded from its
table), broadcast by ``Expand``/``Tile`` (an LSTM's initial state to the batch) or viewed (``Reshape``,
``Transpose``...) counts as what it copies, once, not as the copy. Zeros read only as a recurrent op's initial
state are the op's default state, not a parameter.
"""

from __future__ import annotations

import ast
import operator
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterator

from .attrs import AttrKind
from .control_flow import if_branch, loop_runs
from .graph import Graph, Node, Value
from .ops import Cost, lookup
from .ops.common import is_weight_dtype
from .types import TensorType, format_shape, num_elements
from graphmill.util.errors import UserInputError

_NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                               "Multinomial", "Bernoulli"})


def is_constant_node(node: Node, constant: set[int]) -> bool:
    """A node whose outputs are the same on every run: all inputs constant, deterministic, no subgraph."""
    if node.op_type in _NONDETERMINISTIC:
        return False
    if not (node.op_type == "Constant" and node.domain in ("", "ai.onnx")):
        ins = [v for v in node.inputs if v is not None]
        if not ins or not all(id(v) in constant for v in ins):
            return False
    return not node.subgraphs()  # last: the rarest reason, and the dearest to check


def constant_values(graph: Graph) -> set[int]:
    """ids of the values of ``graph`` (top level) that are constant."""
    constant = {id(v) for v in graph.initializers.values()}
    for n in graph.nodes:
        if is_constant_node(n, constant):
            constant.update(id(v) for v in n.outputs if v is not None)
    return constant


def reads_shape_only(node: Node) -> bool:
    """Shape and Size: their value is their input's shape, which the host knows; they read none of its data."""
    return node.op_type in ("Shape", "Size") and node.domain in ("", "ai.onnx")


def computed_from_shapes(graph: Graph, constant: set[int], *, data_ops: frozenset[str] = frozenset(),
                         counts: Callable[[Value], bool] | None = None) -> tuple[set[int], set[int]]:
    """(values, nodes): ids of the values (top level) computed from tensor shapes alone, a Shape or Size then ops
    on such values and constants, and of the nodes computing them after the Shape/Size: arithmetic the host does
    on sizes, reading no tensor's data (the simulator costs none of it; a pipeline cannot send such a size between
    stages). ``data_ops``: op types whose output is data even when computed from sizes (ConstantOfShape fills a
    tensor); ``counts``: which outputs carry the property on (a caller wanting sizes keeps integers)."""
    values: set[int] = set()
    nodes: set[int] = set()
    for n in graph.nodes:
        outs = [v for v in n.outputs if v is not None and (counts is None or counts(v))]
        if reads_shape_only(n):
            values.update(id(v) for v in outs)
            continue
        ins = [v for v in n.inputs if v is not None]
        if n.op_type not in data_ops and any(id(v) in values for v in ins) \
                and all(id(v) in values or id(v) in constant for v in ins) and not n.subgraphs():
            values.update(id(v) for v in outs)
            nodes.add(id(n))
    return values, nodes


def _elements(v: Value) -> int | None:
    if v.const is not None and hasattr(v.const, "shape"):
        return num_elements(tuple(v.const.shape))
    if isinstance(v.type, TensorType):
        return num_elements(v.type.shape)
    return None


def _is_scalar(v: Value) -> bool:
    shape = tuple(v.const.shape) if v.const is not None and hasattr(v.const, "shape") else getattr(v.type, "shape", None)
    return shape == ()


def _constant_node_ids(graph: Graph, constant: set[int]) -> set[int]:
    return {id(n) for n in graph.nodes if is_constant_node(n, constant)}


# Not Identity: torch's exporter stores tensors of equal values once and hands each its own Identity (a fresh
# network's zero biases, its BatchNorms' zero means and unit variances), so an Identity of a weight is a tensor of
# its own, as torch counts it (its BatchNorm statistics were counted once, and never as statistics: an outside check)
_VIEWS = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})


_BROADCASTS = frozenset({"Expand", "Tile"})


#: ops that copy elements of their data input (0) by constant indices: what they give holds no values of its own
#: (torch dynamo writes a relative-position bias lookup as GatherND, the TorchScript exporter as Gather: the same
#: module counted 512 one way and 98 the other; an outside check)
_GATHERS = frozenset({"Gather", "GatherND", "GatherElements"})


def _copied_from(v: Value, const_nodes: set[int]) -> Value | None:
    """The weight a constant-only copy ``v`` holds the values of, else None. Such a copy holds no values of its
    own, so what it copies counts instead, once: a relative-position bias [heads, L, L] expanded from its
    (2H-1)(2W-1) x heads table by a constant ``Gather``, ``GatherND`` or ``GatherElements`` (as
    ``graphmill::RelativeAttention``'s lowering writes it), an LSTM's initial state [1, hidden] broadcast to
    [batch, hidden] by ``Expand``/``Tile`` (counted at its broadcast size, the parameter count grew with the batch),
    or a view (``_VIEWS``) of a weight also read as it is (a weight read directly and through Reshape -> Expand
    counted twice). Walked to the root of the chain."""
    start = v
    while (p := v.producer) is not None and id(p) in const_nodes and p.domain in ("", "ai.onnx") and p.inputs:
        if p.op_type in _GATHERS and p.inputs[0] is not None and is_weight_dtype(p.inputs[0].dtype):
            v = p.inputs[0]
            continue
        if p.inputs[0] is None or p.op_type not in _VIEWS | _BROADCASTS:
            break
        v = p.inputs[0]
    return None if v is start else v


def _formula_only(v: Value, const_nodes: set[int], memo: dict[int, bool]) -> bool:
    """Whether constant ``v`` is computed from constants of the formula alone (shapes, counts, scalars), with no
    value of its own: ``Cast(Max(count, 1))`` of an MoE lowering's token count, a float [1] that divides. A node
    holding values in an attribute (``Constant``, ``ConstantOfShape``: the light test models' weights) is a
    source, not a formula."""
    key = id(v)
    if key in memo:
        return memo[key]
    p = v.producer
    if p is None or id(p) not in const_nodes:  # a leaf: an initializer
        found = not is_weight_dtype(v.dtype) or _is_scalar(v)
    elif p.op_type in ("Constant", "ConstantOfShape") or any(a.kind in (AttrKind.TENSOR, AttrKind.TENSORS)
                                                             for a in p.attrs.values()):
        found = False
    else:
        found = all(_formula_only(x, const_nodes, memo) for x in p.inputs if x is not None)
    memo[key] = found
    return found


#: inputs that take a constant of the formula, never a learned weight: Resize's region and scales ([1, 1, 2, 2]
#: for nn.Upsample(scale_factor=2) counted 4 parameters), Upsample's scales
_FORMULA_INPUTS = {"Resize": frozenset({1, 2}), "Upsample": frozenset({1})}


#: a recurrent op's initial states (LSTM's initial_h and initial_c, GRU's and RNN's initial_h): zeros there are the
#: op's default, which torch's exporter writes out at the export's batch ([directions, batch, hidden]): counted,
#: a model's parameters grew with the batch it was exported at (an outside check)
_STATE_INPUTS = {"LSTM": frozenset({5, 6}), "GRU": frozenset({5}), "RNN": frozenset({5})}


def _read_as_weight(v: Value, user: Node) -> bool:
    slots = _FORMULA_INPUTS.get(user.op_type) if user.domain in ("", "ai.onnx") else None
    return not slots or any(x is v and i not in slots for i, x in enumerate(user.inputs))


def _loop_state(node: Node, i: int) -> bool:
    """Whether input ``i`` of ``node`` is the initial value of a state it carries: a Loop's carried values, a Scan's
    states (its inputs before the scanned ones)."""
    if node.op_type == "Loop":
        return i >= 2
    if node.op_type == "Scan":
        return i < len(node.inputs) - int(node.attr("num_scan_inputs", 0) or 0)
    return False


def _default_state(v: Value) -> bool:
    """Zeros read only as recurrent ops' initial states (``_STATE_INPUTS``) or as what a Loop or Scan starts its
    state at (``_loop_state``), directly or through views and broadcasts: a default state, not a weight."""
    from .rewrite import constant_value

    def state_only(x: Value) -> bool:
        if x.is_graph_output or not x.users:
            return False
        for node, i in x.uses():
            if node.domain not in ("", "ai.onnx"):
                return False
            if node.op_type in _STATE_INPUTS and i in _STATE_INPUTS[node.op_type]:
                continue
            if _loop_state(node, i):  # tf2onnx writes a Keras GRU as a Loop whose state starts at zeros: counted,
                continue  # it grew with the batch as the recurrent ops' did (an outside check)
            if node.op_type not in _VIEWS | _BROADCASTS or i != 0 or not all(state_only(o) for o in node.outputs
                                                                             if o is not None):
                return False
        return True

    if not state_only(v):  # first: the data of every weight would be read (a lazily loaded one from its file)
        return False
    data = constant_value(v)
    return data is not None and data.size > 0 and not data.any()


def parameter_values(graph: Graph, constant: set[int] | None = None,
                     const_nodes: set[int] | None = None) -> list[Value]:
    """The constant tensors that feed the computation (see the module docstring). ``constant`` and
    ``const_nodes``: ``constant_values(graph)`` and the ids of the nodes constant under it, when the
    caller has them."""
    if constant is None:
        constant = constant_values(graph)
    if const_nodes is None:
        const_nodes = _constant_node_ids(graph, constant)
    outputs = {id(v) for v in graph.outputs}
    seen: set[int] = set()
    counted: set[int] = set()
    formula: dict[int, bool] = {}
    params: list[Value] = []
    candidates = list(graph.initializers.values()) + [v for n in graph.nodes if id(n) in const_nodes
                                                      for v in n.outputs if v is not None]
    for v in candidates:
        if id(v) in seen:
            continue
        seen.add(id(v))
        if not is_weight_dtype(v.dtype) or _is_scalar(v) or _formula_only(v, const_nodes, formula):
            continue
        if _default_state(v):
            continue
        if id(v) in outputs or any(id(u) not in const_nodes and _read_as_weight(v, u) for u in v.users):
            v = _copied_from(v, const_nodes) or v
            if _is_scalar(v) or not is_weight_dtype(v.dtype):  # a broadcast 0-d zero state: a formula constant
                continue
            if id(v) not in counted:
                counted.add(id(v))
                params.append(v)
    return params


@dataclass
class GraphSummary:
    """What ``graphmill inspect`` reports (the JSON schema is this dataclass)."""

    name: str
    nodes: int
    ops: dict[str, int]
    params: int
    macs: int
    # of ``params``, the elements of BatchNormalization's running mean and variance: torch, torchvision and the
    # papers count ``params - bn_statistics`` (buffers, not parameters); the ONNX file stores both as tensors
    bn_statistics: int
    flops: int
    inputs: list[dict]
    outputs: list[dict]
    opsets: dict[str, int]
    symbols: dict[str, int] = field(default_factory=dict)  # symbolic dims bound for the cost figures
    unknown_params: int = 0  # parameter tensors whose size could not be determined
    cost_unknown_nodes: int = 0  # nodes whose cost the registry could not compute
    ops_without_cost: dict[str, int] = field(default_factory=dict)
    # of ``symbols``, those taken as 1 for want of a size (not given, not computed from given ones): simulate said
    # so in a note, inspect did not (an outside check)
    defaulted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def is_bn_statistic(v: Value) -> bool:
    """Whether ``v`` is read only as BatchNormalization's running mean or variance (inputs 3 and 4)."""
    uses = v.uses()
    return bool(uses) and all(n.op_type == "BatchNormalization" and n.domain in ("", "ai.onnx") and i in (3, 4)
                              for n, i in uses)


def node_cost(node: Node) -> Cost | None:
    d = lookup(node.domain, node.op_type)
    if d is None or d.cost is None:
        return None
    try:
        return d.cost(node)
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError):
        return Cost(known=False)


def _io(v: Value) -> dict:
    t = v.type
    if isinstance(t, TensorType):
        return {"name": v.name, "dtype": t.dtype.short_name, "shape": list(t.shape) if t.shape is not None else None,
                "text": f"{t.dtype.short_name}{format_shape(t.shape)}"}
    return {"name": v.name, "dtype": None, "shape": None, "text": str(t) if t is not None else "?"}


def check_nonempty_inputs(graph: Graph, what: str) -> None:
    """Refuse a graph whose input has a dimension of size 0 (valid ONNX: an empty tensor) before ``what``:
    costs of ops on no data are 0 or meaningless, and the simulator's layers refused it as
    "Conv node 'Conv_0': repeat must be a positive integer, got 0"."""
    for v in graph.inputs:
        shape = getattr(v.type, "shape", None)
        if shape and any(d == 0 for d in shape):
            raise UserInputError(f"graph {graph.name!r}: input {v.name!r} has shape {format_shape(shape)}, a "
                                 f"dimension of size 0 (an empty tensor): nothing to {what}")


def name_unnamed_input_dims(graph: Graph) -> list[str]:
    """Name each unnamed dimension of ``graph``'s inputs (``[?, 4]``: skl2onnx and onnxmltools write the
    batch so) ``<input>_dim_<axis>``, in place, and return the names. ONNX Runtime runs such a dimension at any size:
    it is a free size like a named one, which ``--dim`` gives and which is 1 where not given. Unnamed, it was no size
    at all: inference could size nothing after it, simulate and place refused the model as "not static", partition
    as having no batch dimension, and inspect counted 0 MACs (an outside check)."""
    taken = set(symbols(graph))
    named: list[str] = []
    for v in graph.inputs:
        t = v.type
        if v.is_initializer or not isinstance(t, TensorType) or t.shape is None or None not in t.shape:
            continue
        shape = list(t.shape)
        for axis, d in enumerate(shape):
            if d is None:
                base = v.name.replace("=", "_")  # --dim NAME=SIZE could not give "a=b_dim_0" (a review)
                name, k = f"{base}_dim_{axis}", 1
                while name in taken:
                    name, k = f"{base}_dim_{axis}_{k}", k + 1
                taken.add(name)
                named.append(name)
                shape[axis] = name
        v.type = replace(t, shape=tuple(shape))
    return named


@contextmanager
def input_dims_named(graph: Graph) -> Iterator[list[str]]:
    """``name_unnamed_input_dims`` for the span of a report on the caller's graph, unnamed again after (wherever
    inference carried the names): a graph inspected, then optimized and saved, declared the invented name (a
    review). ``place`` and ``partition``, which save the model at the sizes given, keep them."""
    names = name_unnamed_input_dims(graph)
    try:
        yield names
    finally:
        if names:
            gone = set(names)
            for g in graph.all_graphs():
                for v in list(g.values()) + list(g.outputs):
                    t = v.type
                    if isinstance(t, TensorType) and t.shape is not None and gone.intersection(t.shape):
                        v.type = replace(t, shape=tuple(None if d in gone else d for d in t.shape))


def symbols(graph: Graph) -> list[str]:
    """Symbolic dimension names used anywhere in the graph's value types, sorted."""
    found: set[str] = set()
    for g in graph.all_graphs():
        for v in list(g.values()) + list(g.outputs):
            shape = getattr(v.type, "shape", None)
            if shape:
                found.update(d for d in shape if isinstance(d, str))
    return sorted(found)


_SIZE_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
               ast.Mod: operator.mod}
_SIZE_CALLS = {"Min": min, "Max": max, "min": min, "max": max}  # torch dynamo (sympy) writes Min and Max


def size_expression(name: str, others: set[str] | frozenset[str]) -> ast.expr | None:
    """An exporter's name for a size computed from other sizes (torch dynamo's ``10*N``, ``s0*s1``, ``2*s0 + 1``,
    ``Min(64, s27)``): its parsed expression when it is integer arithmetic (+, -, *, //, %, Min, Max) over names in
    ``others``, naming at least one; else None. Such a name is no size of its own: bound to 1 beside ``N=2``, a Gemm of ``[10*N, 64]`` was
    costed at M = 1, and ``--dim 10*N=20`` could contradict ``N`` (an outside check)."""
    try:
        tree = ast.parse(name, mode="eval").body
    except (SyntaxError, ValueError):
        return None
    named: set[str] = set()

    def arithmetic(n: ast.AST) -> bool:
        if isinstance(n, ast.BinOp) and type(n.op) in _SIZE_ARITH:
            return arithmetic(n.left) and arithmetic(n.right)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return arithmetic(n.operand)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _SIZE_CALLS and n.args \
                and not n.keywords:  # dynamo's Min(64, s27): a table sliced to the sequence length
            return all(arithmetic(a) for a in n.args)
        if isinstance(n, ast.Constant):
            return type(n.value) is int
        if isinstance(n, ast.Name):
            named.add(n.id)
            return n.id in others and n.id != name
        return False

    return tree if arithmetic(tree) and named else None


def _evaluate_size(tree: ast.expr, sizes: dict[str, int]) -> int | None:
    if isinstance(tree, ast.BinOp):
        a, b = _evaluate_size(tree.left, sizes), _evaluate_size(tree.right, sizes)
        if a is None or b is None or isinstance(tree.op, (ast.FloorDiv, ast.Mod)) and b == 0:
            return None
        return _SIZE_ARITH[type(tree.op)](a, b)
    if isinstance(tree, ast.UnaryOp):
        a = _evaluate_size(tree.operand, sizes)
        return None if a is None else -a
    if isinstance(tree, ast.Constant):
        return tree.value
    if isinstance(tree, ast.Call):
        args = [_evaluate_size(a, sizes) for a in tree.args]
        return None if any(a is None for a in args) else _SIZE_CALLS[tree.func.id](args)
    return sizes.get(tree.id)


def computed_symbols(names: list[str], carried: frozenset[str] = frozenset()) -> dict[str, ast.expr]:
    """The names among ``names`` that are sizes computed from the others (``size_expression``), over the plain
    ones only. A name a graph input carries (``carried``) is a free size whatever it reads like: ONNX gives a
    dim_param no arithmetic, and inputs [N, 4] and [N+1, 4] are two independent sizes (a review)."""
    candidates = {n for n in names if n not in carried and size_expression(n, frozenset(names)) is not None}
    plain = frozenset(n for n in names if n not in candidates)
    return {n: e for n in candidates if (e := size_expression(n, plain)) is not None}


def graph_computed_symbols(graph: Graph) -> dict[str, ast.expr]:
    """``computed_symbols`` of ``graph``'s symbols, its inputs' sizes free."""
    from .ops.infer import input_symbols

    return computed_symbols(symbols(graph), input_symbols(graph))


def with_computed_sizes(sizes: dict[str, int], computed: dict[str, ast.expr]) -> dict[str, int]:
    """``sizes`` plus the size of every ``computed`` name whose symbols ``sizes`` gives (``10*N`` is 20 where N is
    2), unless ``sizes`` gives it; a result below 0 or undefined (``N//M`` at M = 0) is left out."""
    out = dict(sizes)
    for n, tree in computed.items():
        if n not in out:
            v = _evaluate_size(tree, sizes)
            if v is not None and v >= 0:
                out[n] = v
    return out


def bound_sizes(graph: Graph, dims: dict[str, int] | None) -> tuple[dict[str, int], list[str]]:
    """The size of every symbol of ``graph`` for costing it: ``dims``'s, a computed name's from the sizes it names
    (``10*N``), else 1; and the names taken as 1 for want of a size (a computed one below 0 or undefined too).
    ``summarize`` and the simulator bind the same sizes."""
    names = symbols(graph)
    computed = graph_computed_symbols(graph)
    given = {s: int(v) for s, v in (dims or {}).items()}
    sizes = with_computed_sizes({s: given.get(s, 1) for s in names if s not in computed} | given, computed)
    defaulted = [s for s in names if s not in given and (s not in computed or s not in sizes)]
    sizes.update({s: 1 for s in names if s not in sizes})
    return sizes, defaulted


def loose_symbols(graph: Graph, dims: dict[str, int] | None) -> set[str]:
    """The names among ``graph``'s symbols that no graph input carries, ``dims`` does not give and no given size
    computes (``with_computed_sizes``): an exporter's name for a size the graph computes where inference could not
    relate it (``L`` on a Conv1d's output, T - 2), or a count only the data decides. A costing binds the others,
    infers again, so that what the graph computes from them replaces these names, and takes what is left at 1
    (``bound_sizes``): bound to 1 first, ``L`` stood against the Conv's inferred 20 and the Conv was costed at
    length 1 (an outside check)."""
    from .ops.infer import input_symbols

    carried, computed = input_symbols(graph), graph_computed_symbols(graph)
    return {s for s in symbols(graph) if s not in carried and s not in computed and s not in (dims or {})}


def symbols_to_give(graph: Graph, free: list[str]) -> list[str]:
    """``free`` in the order a refusal asks for them: the inputs' sizes first, then the others where they first
    appear in node order, so that a data-dependent size comes before any later name inference could not relate
    to it (the names it could take the count's own: ``ir.ops.infer``)."""
    from .ops.infer import input_symbols

    carried = input_symbols(graph)
    computed = computed_symbols(free, carried)  # given the sizes they are computed from, they follow
    free = [s for s in free if s not in computed]
    first: dict[str, int] = {}
    for i, v in enumerate(_node_outputs(graph)):
        for d in getattr(v.type, "shape", None) or ():
            if isinstance(d, str):
                first.setdefault(d, i)
    return sorted(free, key=lambda s: (s not in carried, first.get(s, len(first)), s))


def _node_outputs(graph: Graph):
    for g in graph.all_graphs():
        for n in g.nodes:
            yield from (v for v in n.outputs if v is not None)


def data_dependent_note(graph: Graph, free: list[str]) -> str:
    """For a refusal naming ``free`` symbols: where the first one no input carries (in ``symbols_to_give``'s order)
    comes from (an op whose output size depends on the data, Unique or NonZero; an exporter names it), or "". Only
    the inputs' sizes are the model's free sizes, and the README says so; such a size has no value to infer, so
    the user gives an estimate, and the message must say which op it stands for rather than call it an op
    cost's."""
    from .ops.infer import input_symbols

    carried = input_symbols(graph)
    for s in symbols_to_give(graph, free):
        if s in carried:
            continue
        body_input = _body_input_note(graph, s)
        if body_input:
            return body_input
        for v in _node_outputs(graph):
            shape = getattr(v.type, "shape", None)
            if shape and s in shape:
                n = v.producer
                lost = _sizes_lost_at(n)
                if lost is not None and not _sized_by_data(lost, graph):  # a LayerNormalization's output is no
                    # count the data decides (an outside check)
                    return (f"; {s} is the file's name for a size of output {v.name!r} of {n.op_type} node "
                            f"{n.name!r} that shape inference could not compute (sizes are lost at "
                            f"{lost.describe()}): give the size it has")
                at = f" (it follows {lost.describe()})" if lost is not None else ""
                return (f"; {s} is the data-dependent size of output {v.name!r} of {n.op_type} node "
                        f"{n.name!r}{at}: give an estimate (memory and transfers are sized from it)")
    return ""


def _body_input_note(graph: Graph, s: str) -> str:
    """Where a control-flow body's input declares ``s`` (tf2onnx names a Keras GRU's state in its Loop body
    ``[unk__1192, 16]``): the refusal called it the data-dependent size of the first MatMul reading it (an outside
    check); it is a size of what the node feeds its body, given at the node."""
    for g in graph.all_graphs():
        owner = g.parent
        if owner is None:
            continue
        for i, v in enumerate(g.inputs):
            if s in (getattr(v.type, "shape", None) or ()):
                fed = _fed_body_input(owner, i)
                feeds = f" (it feeds it {fed.type})" if fed is not None and fed.type is not None else ""
                return (f"; {s} is the file's name for a size of input {v.name!r} of the body of "
                        f"{owner.describe()}{feeds}: give the size it has")
    return ""


def _fed_body_input(node: Node, i: int) -> Value | None:
    """What a Loop or Scan ``node`` feeds its body's input ``i`` whole (a Loop's carried values, a Scan's states),
    else None (a Loop's iteration number and condition are its own; a Scan's scanned inputs arrive a slice at a
    time; opset 8's Scan takes its sequence lengths first)."""
    if node.op_type == "Loop":
        return node.input_at(i) if i >= 2 else None
    if node.op_type == "Scan":
        imports = node.graph.root.opset_imports if node.graph is not None else {}
        first = 1 if imports.get("", imports.get("ai.onnx", 21)) < 9 else 0
        states = len(node.inputs) - first - int(node.attr("num_scan_inputs", 0) or 0)
        return node.input_at(first + i) if i < states else None
    return None


#: ops whose output size is a count of what their data holds
_COUNTS_OF_DATA = frozenset({"NonZero", "Unique", "Compress", "NonMaxSuppression"})


def _sized_by_data(node: Node, graph: Graph) -> bool:
    """Whether ``node``'s output size is decided by data: it counts its data (NonZero), or an integer input it is
    sized by (a Range's limit, a Reshape's shape) is computed from data, not from constants and shapes alone."""
    if node.op_type in _COUNTS_OF_DATA:
        return True
    constant = constant_values(graph)
    from_shapes = computed_from_shapes(graph, constant)[0]
    return any(v is not None and v.dtype.is_integer and id(v) not in constant and id(v) not in from_shapes
               and v.producer is not None for v in node.inputs)


def _sizes_lost_at(node: Node) -> Node | None:
    """Where inference lost a size before ``node`` (``where_shapes_stop`` over inputs with an unknown size, not a
    symbol: no size at all); None when ``node``'s own inputs have every size (the size it lacks is its own: a count
    the data decides)."""
    def lacks(v: Value) -> bool:
        t = v.type
        return t is None or isinstance(t, TensorType) and (t.shape is None or None in t.shape)

    stop = where_shapes_stop(node, lacks)
    return stop if isinstance(stop, Node) else None


def where_shapes_stop(node: Node, is_open: Callable[[Value], bool]) -> Node | Value | None:
    """Walking back from ``node`` through its first input ``is_open`` calls open: the op whose inputs are not open
    and whose output is (where the shapes stop: an op without shape inference, a size computed from data), or the
    graph input that is open (a symbolic size); None when ``node``'s own inputs are not open."""
    where, seen = node, set()
    while id(where) not in seen:
        seen.add(id(where))
        open_in = next((v for v in where.inputs if v is not None and is_open(v)), None)
        if open_in is None:
            return None if where is node else where
        if open_in.producer is None:
            return open_in
        where = open_in.producer
    return None


def bind_symbols(graph: Graph, dims: dict[str, int], *, in_place: bool = False) -> Graph:
    """A copy of ``graph`` (``in_place``: ``graph`` itself) whose value types have the given symbols replaced by
    sizes.

    Exact for costs: a symbol stands for the same size everywhere it appears. In place serves placement, whose
    device decisions hold for one step size and travel with the model saved at that size.
    """
    g2 = graph if in_place else graph.copy()
    dims = with_computed_sizes(dims, graph_computed_symbols(g2))  # 10*N takes 10 x N's size
    for g in g2.all_graphs():
        for v in list(g.values()) + list(g.outputs):
            t = v.type
            if isinstance(t, TensorType) and t.shape is not None and any(isinstance(d, str) for d in t.shape):
                v.type = t.with_shape([dims.get(d, d) if isinstance(d, str) else d for d in t.shape])
    return g2


def summarize(graph: Graph, dims: dict[str, int] | None = None) -> GraphSummary:
    """Node count, op histogram, parameters and MACs of a graph whose types are inferred.

    Costs need sizes: symbolic dimensions are bound to ``dims`` (default 1, i.e.
    MACs per sample for a batch symbol); the bindings are reported in ``symbols``.
    """
    bound, defaulted = bound_sizes(graph, dims)
    work = bind_symbols(graph, bound) if bound else graph
    summary = _summarize(work)
    summary.symbols, summary.defaulted = bound, defaulted
    summary.inputs = [_io(v) for v in graph.inputs if not v.is_initializer]
    summary.outputs = [_io(v) for v in graph.outputs]
    return summary


def _costs(graph: Graph, skip: set[int]) -> tuple[int, int, int, Counter]:
    """MACs, FLOPs, nodes of unknown cost and the ops without a cost model of ``graph``'s own nodes (``skip``:
    weight construction, not inference work); a control-flow node costs its body as many times as it runs it
    (``_control_flow_runs``), as the simulator does, or, where that is not known, is an op without a cost (its
    body then is not counted: it counted once, whatever the trip count; an outside check)."""
    macs = flops = unknown = 0
    no_cost: Counter[str] = Counter()
    for n in graph.nodes:
        if id(n) in skip:
            continue
        if n.domain in ("", "ai.onnx") and n.op_type in ("Loop", "Scan", "If"):
            runs = _control_flow_runs(n)
            if runs is None:
                no_cost[n.qualified_op] += 1
                continue
            times, body = runs
            m, f, u, nc = _costs(body, set())
            macs, flops, unknown = macs + times * m, flops + times * f, unknown + u
            no_cost.update(nc)
            continue
        c = node_cost(n)
        if c is None:
            no_cost[n.qualified_op] += 1
        elif not c.known:
            unknown += 1  # a partial count would look like a real one: leave it out
        else:
            macs += c.macs
            flops += c.flops
    return macs, flops, unknown, no_cost


def _control_flow_runs(node: Node) -> tuple[int, Graph] | None:
    """(times, body) a control-flow node runs: a Loop's body ``control_flow.loop_runs`` times (a constant trip
    count; its condition may stop it sooner: an upper bound, as the simulator's), a Scan's once per element of
    its first scanned axis, an If's branch its known condition picks (``control_flow.if_branch``); None where that
    is not known from the graph."""

    def body(name: str) -> Graph | None:
        a = node.attrs.get(name)
        return a.value if a is not None and isinstance(a.value, Graph) else None

    if node.op_type == "Loop":
        runs, _ = loop_runs(node)
        return (runs, body("body")) if runs is not None and body("body") is not None else None
    if node.op_type == "Scan":
        n_scan = int(node.attr("num_scan_inputs", 0) or 0)
        if n_scan < 1 or body("body") is None or len(node.inputs) < n_scan:
            return None
        first = node.inputs[len(node.inputs) - n_scan]
        axes = node.attr("scan_input_axes") or [0] * n_scan
        shape = first.type.shape if first is not None and isinstance(first.type, TensorType) else None
        if not shape:
            return None
        length = shape[int(axes[0]) % len(shape)]
        return (length, body("body")) if isinstance(length, int) else None
    taken = if_branch(node)
    branch = body(taken) if taken is not None else None
    return (1, branch) if branch is not None else None


def _summarize(graph: Graph) -> GraphSummary:
    ops: Counter[str] = Counter()
    macs = flops = unknown_cost = 0
    no_cost: Counter[str] = Counter()
    constant = constant_values(graph)
    const_nodes = _constant_node_ids(graph, constant)
    for n in graph.all_nodes():
        ops[n.qualified_op] += 1
    macs, flops, unknown_cost, no_cost = _costs(graph, const_nodes)
    params = 0
    unknown_params = 0
    bn_statistics = 0
    for v in parameter_values(graph, constant, const_nodes):
        n = _elements(v)
        if n is None:
            unknown_params += 1
        else:
            params += n
            if is_bn_statistic(v):
                bn_statistics += n
    init_ids = {id(v) for v in graph.initializers.values()}
    return GraphSummary(
        name=graph.name,
        nodes=sum(ops.values()),
        ops=dict(ops.most_common()),
        params=params,
        macs=macs,
        bn_statistics=bn_statistics,
        flops=flops,
        inputs=[_io(v) for v in graph.inputs if id(v) not in init_ids],
        outputs=[_io(v) for v in graph.outputs],
        opsets={(d or "ai.onnx"): ver for d, ver in graph.opset_imports.items()},
        unknown_params=unknown_params,
        cost_unknown_nodes=unknown_cost,
        ops_without_cost=dict(no_cost.most_common()),
    )
