"""Writing graphs in Python.

    b = GraphBuilder("mlp", opset=17)
    x = b.input("x", "float32", ["N", 784])
    h = b.Relu(b.Gemm(x, b.const(w1), b.const(b1), transB=1))
    b.output(b.Gemm(h, b.const(w2), b.const(b2), transB=1), name="logits")
    graph = b.build()          # inferred types, verified

Any CamelCase attribute is an op (``b.Conv(...)``); ``b.op("Custom", ..., domain="x")``
reaches the rest (a custom domain the graph does not import yet is imported at version 1; onnx's own, such as
``ai.onnx.ml``, through ``opsets=``). Arrays and scalars passed as
inputs become initializers. Node names are unique: an automatic one skips the names given.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .dtypes import DataType
from graphmill.util.errors import IRError
from .graph import Graph, Node, Value
from .tensor import Tensor
from .types import Dim, TensorType


#: domains onnx defines ops of, whose versions a graph must choose itself (GraphBuilder(opsets={...}))
ONNX_DOMAINS = frozenset({"ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training"})


class GraphBuilder:
    """Writes a ``Graph`` in Python (the module docstring shows how): inputs, ops as CamelCase methods,
    constants, outputs; ``build()`` infers the types and verifies the graph."""

    def __init__(self, name: str = "main", *, opset: int = 17, opsets: dict[str, int] | None = None) -> None:
        for domain, version in {"": opset, **(opsets or {})}.items():  # "17" or None failed later, in save
            if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
                raise IRError(f"GraphBuilder: opset version {version!r}" + (f" of domain {domain!r}" if domain else "")
                              + " must be an integer >= 1")
        self.graph = Graph(name)
        self.graph.opset_imports = {"": int(opset), **{d: int(v) for d, v in (opsets or {}).items()}}
        self._counts: dict[str, int] = {}
        # the graph's node names, kept as nodes are added (reading them per node was quadratic) and read again when
        # the graph's node count says a node came another way (graph.append between builder calls)
        self._node_names: set[str] = set()
        self._named = 0
        self.meta_stack: list[dict[str, Any]] = []

    def input(self, name: str, dtype: Any, shape: Sequence[Dim] | None) -> Value:
        """A graph input; ``shape`` a list of sizes (ints), symbol names and None (unknown), or None."""
        if shape is not None:  # "batch" was a rank-5 shape [b,a,t,c,h], and 2.5 the size 2 (an outside check)
            if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
                raise IRError(f"input {name!r}: shape must be a list of sizes, symbol names and None, got "
                              f"{type(shape).__name__} {shape!r:.40}")
            for d in shape:
                # (a negative size is an integer: save refuses it, naming the value, as load does)
                if not (d is None or (isinstance(d, str) and d) or
                        (isinstance(d, (int, np.integer)) and not isinstance(d, bool))):
                    raise IRError(f"input {name!r}: dimension {d!r} of shape {list(shape)!r:.60} is none of a size "
                                  "(an integer), a symbol name or None")
        return self.graph.add_input(Value(name, TensorType(DataType.parse(dtype), shape)))

    def const(self, value: Any, name: str = "") -> Value:
        """An initializer holding ``value`` (numpy array or scalar)."""
        arr = value if isinstance(value, (np.ndarray, Tensor)) else np.asarray(value)
        t = arr if isinstance(arr, Tensor) else Tensor(arr)
        return self.graph.add_initializer(t, name or self.graph.unique_name("const"))

    def _as_value(self, x: Any) -> Value | None:
        if x is None or isinstance(x, Value):
            return x
        if isinstance(x, (str, bytes)):  # b.Relu("x") was a Relu of a string constant, which save wrote and ONNX
            # Runtime refused (an outside check); a string tensor is still np.array(["x"])
            raise IRError(f"{x!r:.40} is not a Value: pass the Value b.input() or an op returned (for a string "
                          "constant, np.array([...]))")
        return self.const(x)

    def op(self, op_type: str, *inputs: Any, outputs: int = 1, domain: str = "", name: str = "",
           **attrs: Any) -> Any:
        """Append a node; returns its output Value, or a tuple when ``outputs > 1``."""
        ins = [self._as_value(x) for x in inputs]
        if self._named != len(self.graph.nodes):
            self._node_names = {n.name for n in self.graph.nodes}
        taken = self._node_names
        if name and name in taken:  # ONNX Runtime refuses a file with two nodes of one name
            raise IRError(f"node name {name!r} is already used")
        while not name or name in taken:  # an automatic name skips one given by hand: Relu_1 twice (an outside check)
            k = self._counts.get(op_type, 0)
            self._counts[op_type] = k + 1
            name = f"{op_type}_{k}"
        taken.add(name)
        self._named = len(self.graph.nodes) + 1
        if domain and domain not in ONNX_DOMAINS and domain not in self.graph.opset_imports:
            # a domain the file does not import is refused by onnx's checker; onnx's own (ai.onnx.ml, ...) have
            # versions to choose: opsets={...} gives them
            self.graph.opset_imports[domain] = 1
        node = Node(op_type, ins, {k: v for k, v in attrs.items() if v is not None}, outputs=outputs,
                    domain=domain, name=name)
        for m in self.meta_stack:
            node.meta.update(m)
        self.graph.append(node)
        outs = node.outputs
        return outs[0] if outputs == 1 else outs

    def __getattr__(self, op_type: str):
        if not op_type[:1].isupper():
            raise AttributeError(op_type)
        return lambda *inputs, **attrs: self.op(op_type, *inputs, **attrs)

    def output(self, value: Value, name: str = "") -> Value:
        """Make ``value`` a graph output, named ``name`` when given: the value is renamed, except a graph input or
        an initializer, whose name is the model's interface or a weight's (renaming the input changed the names a
        caller feeds; an outside check): the output is then an ``Identity`` of it."""
        if not isinstance(value, Value):
            raise IRError(f"output {name!r}: {type(value).__name__} {value!r:.40} is not a Value")
        if name and value.name != name:
            if any(v.name == name for v in self.graph.values()):
                raise IRError(f"output name {name!r} is already used")
            if value.is_graph_input or value.is_initializer:
                value = self.op("Identity", value)
            self.graph.rename(value, name)
        self.graph.outputs.append(value)
        return value

    def annotate(self, **meta: Any) -> "_MetaScope":
        """``with b.annotate(stage=2): ...`` records ``meta`` on every node built inside."""
        return _MetaScope(self, meta)

    def build(self, *, infer: bool = True, verify: bool = True) -> Graph:
        from .ops import infer_types
        from .verifier import verify as _verify

        g = self.graph
        if infer:
            infer_types(g, strict=True)
        if verify:
            _verify(g)
        return g


class _MetaScope:
    def __init__(self, b: GraphBuilder, meta: dict[str, Any]) -> None:
        self.b, self.meta = b, meta

    def __enter__(self) -> None:
        self.b.meta_stack.append(self.meta)

    def __exit__(self, *exc: object) -> None:
        self.b.meta_stack.pop()


__all__ = ["GraphBuilder"]
