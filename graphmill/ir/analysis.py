"""Whole-graph analyses that do not change the graph: constness, parameters, MACs.

Parameters are counted the way model papers count them: the constant tensors
that feed the computation. A tensor counts when it is constant (an
initializer, a Constant, or computed only from constants, as the light models
of the onnx test data build their weights with ConstantOfShape) and it is read
by a node that is not itself constant-only, or is a graph output. Integer
tensors wider than 8 bits and booleans are shapes, axes and indices, not
weights, and are not counted; 8- and 4-bit integers are (quantized weights).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from .dtypes import DataType
from .graph import Graph, Node, Value
from .ops import Cost, lookup
from .types import TensorType, format_shape, num_elements

_NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                               "Multinomial", "Bernoulli"})
_WEIGHT_INTS = frozenset({DataType.INT8, DataType.UINT8, DataType.INT4, DataType.UINT4, DataType.INT2,
                          DataType.UINT2})


def is_constant_node(node: Node, constant: set[int]) -> bool:
    """A node whose outputs are the same on every run: all inputs constant, deterministic, no subgraph."""
    if node.op_type in _NONDETERMINISTIC or any(True for _ in node.subgraphs()):
        return False
    if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
        return True
    ins = [v for v in node.inputs if v is not None]
    return bool(ins) and all(id(v) in constant for v in ins)


def constant_values(graph: Graph) -> set[int]:
    """ids of the values of ``graph`` (top level) that are constant."""
    constant = {id(v) for v in graph.initializers.values()}
    for n in graph.nodes:
        if is_constant_node(n, constant):
            constant.update(id(v) for v in n.outputs if v is not None)
    return constant


def _is_weight_dtype(dt: DataType | None) -> bool:
    return dt is not None and (dt.is_floating or dt in _WEIGHT_INTS or dt in (DataType.COMPLEX64, DataType.COMPLEX128))


def _elements(v: Value) -> int | None:
    if v.const is not None and hasattr(v.const, "shape"):
        return num_elements(tuple(v.const.shape))
    if isinstance(v.type, TensorType):
        return num_elements(v.type.shape)
    return None


def parameter_values(graph: Graph) -> list[Value]:
    """The constant tensors that feed the computation (see the module docstring)."""
    constant = constant_values(graph)
    const_nodes = {id(n) for n in graph.nodes if is_constant_node(n, constant)}
    outputs = {id(v) for v in graph.outputs}
    seen: set[int] = set()
    params: list[Value] = []
    candidates = list(graph.initializers.values()) + [v for n in graph.nodes if id(n) in const_nodes
                                                      for v in n.outputs if v is not None]
    for v in candidates:
        if id(v) in seen:
            continue
        seen.add(id(v))
        if not _is_weight_dtype(v.dtype):
            continue
        if id(v) in outputs or any(id(u) not in const_nodes for u in v.users):
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
    flops: int
    inputs: list[dict]
    outputs: list[dict]
    opsets: dict[str, int]
    unknown_params: int = 0  # parameter tensors whose size could not be determined
    cost_unknown_nodes: int = 0  # nodes whose cost the registry could not compute
    ops_without_cost: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


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


def summarize(graph: Graph) -> GraphSummary:
    """Node count, op histogram, parameters and MACs of a graph whose types are inferred."""
    ops: Counter[str] = Counter()
    macs = flops = unknown_cost = 0
    no_cost: Counter[str] = Counter()
    constant = constant_values(graph)
    for n in graph.all_nodes():
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        ops[key] += 1
        if n.graph is graph and is_constant_node(n, constant):
            continue  # weight construction is not inference work
        c = node_cost(n)
        if c is None:
            no_cost[key] += 1
            continue
        macs += c.macs
        flops += c.flops
        if not c.known:
            unknown_cost += 1
    params = 0
    unknown_params = 0
    for v in parameter_values(graph):
        n = _elements(v)
        if n is None:
            unknown_params += 1
        else:
            params += n
    init_ids = {id(v) for v in graph.initializers.values()}
    return GraphSummary(
        name=graph.name,
        nodes=sum(ops.values()),
        ops=dict(ops.most_common()),
        params=params,
        macs=macs,
        flops=flops,
        inputs=[_io(v) for v in graph.inputs if id(v) not in init_ids],
        outputs=[_io(v) for v in graph.outputs],
        opsets={(d or "ai.onnx"): ver for d, ver in graph.opset_imports.items()},
        unknown_params=unknown_params,
        cost_unknown_nodes=unknown_cost,
        ops_without_cost=dict(no_cost.most_common()),
    )
