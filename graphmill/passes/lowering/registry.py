"""Lowerings: how a graphmill-domain op is written in standard ONNX.

graphmill's own ops (``graphmill::MoE``, ``graphmill::RelativeAttention``, ...) exist so that passes,
the cost model and the simulator see a layer as one thing; ONNX Runtime and other ONNX consumers do
not know them. Each such op registers one function here that rewrites *one node* into standard
ONNX nodes, and the ``lower-graphmill`` pass (``passes/lowering/lower.py``) applies them. The ONNX
export (``api.save``) and ONNX Runtime execution (``backends.onnxruntime``) run that pass on a copy of
any graph holding graphmill-domain ops, so the graphs users save and the sessions graphmill runs are
standard ONNX while the in-memory IR keeps the ops.

A lowering function receives the node and a ``LoweringBuilder`` and returns, for each of the node's
outputs in order, the value that replaces it (``None`` where that output is unused)::

    def lower_my_op(node, b):
        y = b.op("MatMul", node.inputs[0], node.inputs[1])
        return [b.op("Relu", y)]

    register_lowering("graphmill", "MyOp", lower_my_op, min_opset=13)

Built-in lowerings live as modules of this package; every module in it is imported when the package
is, so adding one is adding a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from graphmill.ir import Graph, Node, Tensor, Value
from graphmill.ir.rewrite import Match, ReplacementBuilder
from graphmill.util.errors import IRError


class LoweringBuilder(ReplacementBuilder):
    """Builds the standard ONNX nodes that replace one node, through the IR's public construction API: the
    rewrite rules' ``ReplacementBuilder`` (nodes collected, not inserted; ``rollback`` undoes the initializers)
    with the lowered node's ``meta`` on every new node and Python scalars as ONNX-typed constants.

    ``lower-graphmill`` puts the collected nodes in place of the node with ``Graph.replace_node`` once the
    function returns, so a failing lowering leaves the graph as it was.
    """

    def __init__(self, graph: Graph, node: Node, opset: int) -> None:
        super().__init__(Match(graph, node), node.name or node.op_type)
        self.node = node
        #: the default-domain opset the new nodes must be valid in
        self.opset = opset
        #: extra meta every new node gets (a lowering may record the op's configuration here, so that the
        #: lowered layer stays recognizable in a saved file)
        self.meta: dict[str, Any] = {}

    @property
    def nodes(self) -> list[Node]:
        return self.new_nodes

    def op(self, op_type: str, *inputs: Any, outputs: int = 1, domain: str = "", **attrs: Any) -> Any:
        """Append ``op_type(*inputs, **attrs)``; returns its output value, or a tuple when ``outputs > 1``.
        Inputs may be numpy arrays or Python scalars (they become initializers)."""
        out = super().op(op_type, *[self.as_value(x) for x in inputs], outputs=outputs, domain=domain, **attrs)
        n = self.new_nodes[-1]
        n.meta.update(self.node.meta)
        n.meta["lowered_from"] = f"{self.node.domain}::{self.node.op_type}"
        n.meta["lowered_node"] = self.node.name
        n.meta.update(self.meta)
        return out

    def const(self, value: Any, name: str = "") -> Value:
        """An initializer holding ``value`` (numpy array or scalar; a Python float becomes float32, an
        int int64, as ONNX's standard ops expect)."""
        if isinstance(value, float):
            value = np.asarray(value, dtype=np.float32)
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = np.asarray(value, dtype=np.int64)
        if isinstance(value, Tensor):
            v = self.graph.add_initializer(value, self.graph.unique_name(name or f"{self.rule_name}/const"))
            self.new_consts.append(v)
            return v
        return super().const(np.asarray(value), name or f"{self.rule_name}/const")

    def ints(self, *values: int) -> Value:
        """A 1-D int64 initializer (axes, shapes, starts/ends)."""
        return self.const(np.asarray(values, dtype=np.int64))

    def as_value(self, x: Any) -> Value | None:
        if x is None or isinstance(x, Value):
            return x
        return self.const(x)


LoweringFn = Callable[[Node, LoweringBuilder], Sequence["Value | None"]]


@dataclass(frozen=True)
class Lowering:
    domain: str
    op_type: str
    fn: LoweringFn
    #: the default-domain opset the emitted nodes need; graphs importing less are refused, not upgraded
    min_opset: int = 13
    doc: str = ""


_LOWERINGS: dict[tuple[str, str], Lowering] = {}


def register_lowering(domain: str, op_type: str, fn: LoweringFn, *, min_opset: int = 13, doc: str = "") -> LoweringFn:
    """Declare how ``domain::op_type`` is written in standard ONNX. Registering twice for the same op is
    an error (two modules disagreeing on an op's meaning is a bug, not an override)."""
    key = (domain, op_type)
    old = _LOWERINGS.get(key)
    if old is not None and old.fn is not fn:
        raise IRError(f"a lowering for {domain}::{op_type} is already registered ({old.fn.__module__})")
    _LOWERINGS[key] = Lowering(domain, op_type, fn, min_opset, doc or (fn.__doc__ or "").strip().split("\n")[0])
    return fn


def lowering_for(domain: str, op_type: str) -> Lowering | None:
    return _LOWERINGS.get((domain, op_type))


def registered_lowerings() -> dict[tuple[str, str], Lowering]:
    return dict(_LOWERINGS)


__all__ = ["Lowering", "LoweringBuilder", "LoweringFn", "lowering_for", "register_lowering", "registered_lowerings"]
