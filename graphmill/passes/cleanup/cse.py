"""Common subexpression elimination.

Legal cases (merged, in every graph and subgraph separately):
- two nodes with the same domain, op type, overload, attributes (tensor attributes compared
  by type, shape and bytes) and the very same input values, in order -- or, for the binary
  commutative ops Add, Mul, And, Or, Xor, Equal, the same two inputs in either order (IEEE
  addition and multiplication of two operands are commutative, exactly);
  the later node's outputs are rerouted to the earlier node's;
- identical constant initializers (same element type, shape and bytes) of one graph: the
  later one's readers read the earlier one.

Refused (kept as they are):
- non-deterministic ops (Random*, Multinomial, Bernoulli) and Dropout: two draws are not one;
- ops with subgraphs (If/Loop/Scan): bodies are not compared;
- ops of domains other than the ONNX ones (ai.onnx, ai.onnx.ml): they may have side effects;
- a duplicate whose output is a graph output (merging would make two outputs one value, or
  rename an output), or is returned directly by a nested subgraph;
- a duplicate that produces an output the surviving node leaves omitted;
- initializers that are also graph inputs (callers may override them) or graph outputs.

Merging equal initializers is right for inference but not for training: two independent weights
that happen to be equal (zero-initialized biases, LayerNorm ones) would become one trained
Parameter. So each graph records the floating-point initializers it merged in its
``metadata_props[MERGED_INITIALIZERS]`` (JSON ``{survivor: [merged names]}``, saved with the
model), and ``to_torch`` refuses to train a survivor: train before optimizing, or optimize with a
schedule without ``cse``.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from graphmill.ir import AttrKind, Graph, Node, SparseTensor, Tensor
from graphmill.ir.rewrite import nested_output_ids
from graphmill.util.files import parse_json

from ..base import Pass, PassContext, PassResult, register_pass
from .common import NONDETERMINISTIC

CSE_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
COMMUTATIVE = frozenset({"Add", "Mul", "And", "Or", "Xor", "Equal"})
NEVER = NONDETERMINISTIC | {"Dropout"}
MERGED_INITIALIZERS = "graphmill.cse.merged_initializers"  # graph metadata key: {survivor: [merged names]}


def merged_initializers(graph: Graph) -> dict[str, list[str]]:
    """The floating-point initializers ``cse`` merged in ``graph``: ``{survivor: [names it stands for]}``
    (empty when it merged none, or the record is unreadable)."""
    try:
        rec = parse_json(graph.metadata_props.get(MERGED_INITIALIZERS, "{}"))
    except ValueError:
        return {}
    return {str(k): [str(x) for x in v] for k, v in rec.items() if isinstance(v, list)} if isinstance(rec, dict) \
        else {}


@register_pass
class CommonSubexpressionElimination(Pass):
    """Merge nodes that compute the same thing, and identical constant initializers."""

    name = "cse"
    preserves = frozenset()

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        merged_nodes = merged_inits = 0
        for g in list(graph.all_graphs()):
            protected = nested_output_ids(g) | {id(v) for v in g.outputs}
            merged_inits += _dedupe_initializers(g, protected)
            seen: dict[tuple, Node] = {}
            for node in list(g.nodes):
                key = _key(node)
                if key is None:
                    continue
                first = seen.get(key)
                if first is None:
                    seen[key] = node
                    continue
                if not _can_merge(node, first, protected):
                    continue
                for old, new in zip(node.outputs, first.outputs):
                    if old is not None:
                        old.replace_all_uses_with(new, graph_outputs=False)
                g.remove_node(node)
                merged_nodes += 1
        return PassResult(bool(merged_nodes or merged_inits),
                          {"nodes_merged": merged_nodes, "initializers_merged": merged_inits})


def _can_merge(dup: Node, first: Node, protected: set[int]) -> bool:
    if len(dup.outputs) != len(first.outputs):
        return False
    for a, b in zip(dup.outputs, first.outputs):
        if a is None:
            continue
        if b is None or id(a) in protected:
            return False
    return True


def _key(node: Node) -> tuple | None:
    if node.domain not in CSE_DOMAINS or node.op_type in NEVER:
        return None
    attrs = []
    for name in sorted(node.attrs):
        a = node.attrs[name]
        if a.kind in (AttrKind.GRAPH, AttrKind.GRAPHS):
            return None
        if a.ref_attr_name:
            return None
        attrs.append((name, int(a.kind), _attr_key(a.value)))
    ins = [id(v) if v is not None else None for v in node.inputs]
    if node.op_type in COMMUTATIVE and len(ins) == 2 and None not in ins:
        ins = sorted(ins)  # type: ignore[type-var]
    domain = "" if node.domain == "ai.onnx" else node.domain
    return (domain, node.op_type, node.overload, tuple(ins), tuple(attrs), len(node.outputs))


def _attr_key(v):
    if isinstance(v, Tensor):
        return ("T", int(v.dtype), tuple(v.shape), v.data_digest())
    if isinstance(v, SparseTensor):
        return ("S", id(v))  # not compared: distinct unless the very same object
    if isinstance(v, (list, tuple)):
        return tuple(_attr_key(x) for x in v)
    if isinstance(v, float) and v != v:
        return ("nan",)
    if isinstance(v, (int, float, str, bytes, bool)) or v is None:
        return v
    return ("obj", id(v))


def _sample_key(t: Tensor) -> bytes | None:
    """A few evenly spaced elements' bytes: equal tensors have equal samples, and different weights of
    one shape (a transformer's layers) almost never do, so only tensors whose samples collide need their
    whole data compared. None for object arrays (strings)."""
    arr = t.numpy()
    if arr.dtype == object:
        return None
    flat = arr.reshape(-1)
    step = max(1, flat.size // _SAMPLE)
    return np.ascontiguousarray(flat[::step]).view(np.uint8).tobytes()


_SAMPLE = 64
_MAX_COMPARED = 8  # distinct tensors per sample compared byte for byte; beyond, by cached digest


def _same_data(a: Tensor, b: Tensor) -> bool:
    x, y = a.numpy(), b.numpy()
    if x.dtype == object or y.dtype == object:
        return a.data_digest() == b.data_digest()
    return bool(np.array_equal(np.ascontiguousarray(x).view(np.uint8).reshape(-1),
                               np.ascontiguousarray(y).view(np.uint8).reshape(-1)))


class _Bucket:
    """The distinct tensors met so far that share a sample. A newcomer is compared byte for byte
    with each (a comparison costs a third of hashing, and a duplicate usually meets its original
    first); past ``_MAX_COMPARED`` of them the bucket switches to SHA-1 digests, which the tensors
    keep, so many look-alike tensors (pruned weights) stay linear."""

    def __init__(self) -> None:
        self.reps: list = []
        self.by_digest: dict[str, object] | None = None

    def original_of(self, v) -> object | None:
        """The earlier tensor with ``v``'s data, or None (``v`` is then remembered)."""
        if self.by_digest is None and len(self.reps) >= _MAX_COMPARED:
            self.by_digest = {r.const.data_digest(): r for r in self.reps}
        if self.by_digest is not None:
            first = self.by_digest.setdefault(v.const.data_digest(), v)
            return None if first is v else first
        for r in self.reps:
            if _same_data(r.const, v.const):
                return r
        self.reps.append(v)
        return None


def _dedupe_initializers(g: Graph, protected: set[int]) -> int:
    inputs = {id(v) for v in g.inputs}
    groups: dict[tuple, list] = {}
    for v in g.initializers.values():
        if id(v) in inputs or id(v) in protected or not isinstance(v.const, Tensor):
            continue
        groups.setdefault((int(v.const.dtype), tuple(v.const.shape)), []).append(v)
    doomed: list = []
    merged = merged_initializers(g)
    for (dtype, shape), vs in groups.items():
        if len(vs) < 2:
            continue  # only same type-and-shape candidates are looked at
        samples: dict[int, bytes | None] = {}
        for v in vs:
            try:
                samples[id(v)] = _sample_key(v.const)
            except (TypeError, ValueError):
                continue
        counts = Counter(samples.values())
        buckets: dict[bytes | None, _Bucket] = {}
        for v in vs:  # in initializer order, so the first of equal tensors survives
            if id(v) not in samples or counts[samples[id(v)]] < 2:
                continue  # undecodable, or no other tensor of its sample: no duplicate
            first = buckets.setdefault(samples[id(v)], _Bucket()).original_of(v)
            if first is None:
                continue
            if v.num_uses:
                v.replace_all_uses_with(first, graph_outputs=False)  # type: ignore[arg-type]
            doomed.append(v)
            if v.const.dtype.is_floating:  # trainable: recorded, so that to_torch refuses to tie them
                merged.setdefault(first.name, []).extend([v.name] + merged.pop(v.name, []))  # type: ignore[attr-defined]
    g.remove_initializers(doomed)
    if merged:
        g.metadata_props[MERGED_INITIALIZERS] = json.dumps(merged, sort_keys=True)
    return len(doomed)
