"""Declarative rewrite rules: a source pattern, a check, a replacement.

A fusion is data, not a traversal::

    Rule(
        name="matmul-add",
        pattern=Op("Add", Op("MatMul", Var("a", rank=2), Const("b", rank=2), name="mm"), Const("c"),
                   commutative=True, name="add"),
        check=lambda m: None if broadcasts(m) else "bias does not broadcast to the MatMul output",
        replace=lambda m, r: r.op("Gemm", m["a"], m["b"], m["c"]),
        exactness=EXACT,
    )

Patterns:
- ``Op(types, *inputs, name=, attrs=, where=, single_use=True, commutative=False, domain="")`` matches
  the node producing a value. ``types`` is an op type or a tuple of them. Inner ops must feed only
  the match (``single_use``), so fusing never duplicates work. ``attrs`` maps attribute names to a
  required value or a predicate; ``where`` is a predicate on the node returning True, or a reason.
- ``Var(name, dtype=, rank=, where=)`` matches any value; a name used twice must bind the same value.
- ``Const(name, ...)`` matches a constant (initializer or Constant output); ``m.const(name)`` is its array.
- ``Opt(p)`` matches ``p`` or an omitted input.

``check(match)`` returns None to accept or a reason to reject. ``replace(match, builder)``
builds new nodes with ``builder.op(...)`` and returns the value(s) that replace the root's outputs.
Every rule says how exact it is (``exact``, ``float-reassociating``, ``approximate``);
``explain`` reports, for a rule that did not fire, the closest partial match and what failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .attrs import Attr, AttrKind
from .graph import Graph, Node, Value
from .ops.infer import InferenceReport, merge_types
from .tensor import Tensor
from graphmill.util.errors import IRError

EXACT = "exact"
REASSOCIATING = "float-reassociating"
APPROXIMATE = "approximate"

#: a matcher's bound, at one root, on the second input orders of commutative ops it explores and on the matches it
#: offers the check (each commutative op doubles the ways of matching)
MAX_ALTERNATIVE_MATCHES = 64


class Pattern:
    """Base of pattern elements."""

    def describe(self) -> str:  # pragma: no cover - overridden
        return type(self).__name__


@dataclass
class Var(Pattern):
    name: str
    dtype: Any = None
    rank: int | None = None
    where: Callable[[Value], Any] | None = None

    def describe(self) -> str:
        return f"%{self.name}"


@dataclass
class Const(Var):
    def describe(self) -> str:
        return f"const %{self.name}"


@dataclass
class Opt(Pattern):
    inner: Pattern

    def describe(self) -> str:
        return f"optional {self.inner.describe()}"


class Op(Pattern):
    def __init__(self, types: str | tuple[str, ...], *inputs: Pattern, name: str = "", domain: str = "",
                 attrs: dict[str, Any] | None = None, where: Callable[[Node], Any] | None = None,
                 single_use: bool = True, commutative: bool = False, allow_extra_inputs: bool = False) -> None:
        self.types = (types,) if isinstance(types, str) else tuple(types)
        self.inputs = list(inputs)
        self.name = name or self.types[0].lower()
        self.name_given = bool(name)  # a default name is made unique within its rule (Rule.__post_init__)
        self.domain = domain
        self.attrs = dict(attrs or {})
        self.where = where
        self.single_use = single_use
        self.commutative = commutative
        self.allow_extra_inputs = allow_extra_inputs
        if commutative and len(inputs) != 2:
            raise ValueError("commutative patterns take exactly two inputs")

    def describe(self) -> str:
        return "|".join(self.types) + (f" {self.name!r}" if self.name else "")


class Match:
    """What a pattern bound: ``m["x"]`` is a captured value, ``m.node("conv")`` a matched node."""

    def __init__(self, graph: Graph, root: Node) -> None:
        self.graph = graph
        self.root = root
        self.values: dict[str, Value | None] = {}
        self.nodes: dict[str, Node] = {}
        self.order: list[Node] = []  # matched nodes, root first

    def __getitem__(self, name: str) -> Value | None:
        return self.values[name]

    def __contains__(self, name: str) -> bool:
        return self.values.get(name) is not None

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def const(self, name: str) -> np.ndarray | None:
        v = self.values.get(name)
        return None if v is None else constant_value(v)

    def copy(self) -> "Match":
        m = object.__new__(Match)  # the matcher copies at every binding: skip __init__'s empty containers
        m.graph, m.root = self.graph, self.root
        m.values, m.nodes, m.order = self.values.copy(), self.nodes.copy(), self.order.copy()
        return m


def constant_value(v: Value) -> np.ndarray | None:
    """The data of an initializer or of a Constant node's output (``value`` forms only). An initializer also
    listed as a graph input is a default its caller may override from IR version 4 on (ONNX Runtime feeds what it
    is given): no constant there (a rule folded x + c with c's default, and feeding c changed nothing: an outside
    check), as ``fold-constants`` and ``dce`` read it (``input_initializers=auto``)."""
    if isinstance(v.const, Tensor):
        if overridable_default(v) and v.is_graph_input:  # the cheap test first: IR-3 models list every weight
            return None
        return v.const.numpy()
    p = v.producer
    if p is not None and p.op_type == "Constant" and p.domain in ("", "ai.onnx"):
        for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            a = p.attrs.get(key)
            if a is None:
                continue
            if a.kind == AttrKind.TENSOR:
                return a.value.numpy()
            dtype = np.float32 if "float" in key else np.int64
            return np.asarray(a.value, dtype=dtype)
    return None


def overridable_default(v: Value) -> bool:
    """Whether initializer ``v``, listed as a graph input, may be overridden by a caller (``inputs_overridable``)."""
    return v.graph is not None and inputs_overridable(v.graph)


def inputs_overridable(graph: Graph) -> bool:
    """Whether initializers listed as ``graph``'s inputs are defaults a caller may override: from IR version 4 on
    (below it every initializer had to be listed as an input, and ONNX Runtime treats those as weights)."""
    model = graph.root.model
    return (model.ir_version if model is not None else 10) >= 4


#: ops whose output holds their first input's values (a dtype or a shape changed at most): a constant read
#: through them is still that constant (a trip count behind an Identity, a condition behind a Cast)
VALUE_VIEWS = frozenset({"Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})


def constant_through_views(v: Value | None) -> np.ndarray | None:
    """``v``'s value when it is an initializer or a Constant node's (``constant_value``), read through
    ``VALUE_VIEWS`` (the values beneath them, before any Cast); else None."""
    while v is not None and v.const is None and v.producer is not None and v.producer.op_type in VALUE_VIEWS \
            and v.producer.domain in ("", "ai.onnx"):
        v = v.producer.input_at(0)
    return constant_value(v) if v is not None else None


@dataclass
class _Fail:
    depth: int
    reason: str
    node: Node | None


class _Matcher:
    """Backtracking matcher; with ``explain`` it remembers its deepest failure.

    Failure reasons are written only when explaining: rewrite passes try every rule at every node,
    and formatting a reason for each failed attempt cost as much as the matching itself. A reason is
    passed as a function for that, and ``where`` (which input of which node) is kept as (node, index).
    """

    def __init__(self, graph: Graph, *, explain: bool = False) -> None:
        self.graph = graph
        self.explain = explain
        self.best: _Fail | None = None
        self.alternatives = 0  # second orders of commutative ops tried (MAX_ALTERNATIVE_MATCHES)

    def fail(self, depth: int, reason: Callable[[], str], node: Node | None) -> None:
        if self.explain and (self.best is None or depth > self.best.depth):
            self.best = _Fail(depth, reason(), node)

    def iter_value(self, pat: Pattern, v: Value | None, m: Match, depth: int, where: Any) -> Iterator[Match]:
        """Every way ``pat`` matches ``v``, extending ``m``."""
        if isinstance(pat, Opt):
            if v is None:
                if isinstance(pat.inner, Var):
                    m = m.copy()
                    m.values[pat.inner.name] = None
                yield m
                return
            yield from self.iter_value(pat.inner, v, m, depth, where)
            return
        if v is None:
            self.fail(depth, lambda: f"{_at(where)} is omitted but the pattern needs {pat.describe()}", None)
            return
        if isinstance(pat, Var):
            bound = m.values.get(pat.name, ...)
            if bound is not ...:
                if bound is not v:
                    self.fail(depth, lambda: f"{_at(where)} (%{v.name}) is not the same value as %{pat.name}", None)
                    return
                yield m
                return
            if isinstance(pat, Const) and constant_value(v) is None:
                self.fail(depth, lambda: f"{_at(where)} (%{v.name}) is " + (
                    "an initializer listed as a graph input: from IR version 4 a default its caller may override "
                    "(fold-constants{input_initializers=constant} makes such initializers weights)"
                    if v.is_initializer and v.is_graph_input else "not a constant"), v.producer)
                return
            if pat.dtype is not None and v.dtype != pat.dtype:
                self.fail(depth, lambda: f"{_at(where)} (%{v.name}) has element type "
                          f"{getattr(v.dtype, 'short_name', '?')}", None)
                return
            if pat.rank is not None and (v.shape is None or len(v.shape) != pat.rank):
                self.fail(depth, lambda: f"{_at(where)} (%{v.name}) is not of rank {pat.rank} (type {v.type})", None)
                return
            if pat.where is not None:
                ok = pat.where(v)
                if ok is not True:
                    self.fail(depth, lambda: f"{_at(where)} (%{v.name}): {ok or 'constraint failed'}", None)
                    return
            m = m.copy()
            m.values[pat.name] = v
            yield m
            return
        assert isinstance(pat, Op)
        node = v.producer
        if node is None or node.graph is not self.graph:
            self.fail(depth, lambda: f"{_at(where)} (%{v.name}) is not produced by a node in this graph", None)
            return
        yield from self.iter_node(pat, node, m, depth, where, is_root=False)

    def iter_node(self, pat: Op, node: Node, m: Match, depth: int, where: Any, *, is_root: bool) -> Iterator[Match]:
        """Every way ``pat`` matches at ``node``: a commutative op's two input orders each, so that a choice made
        inside it can be undone when the pattern around it fails (``Mul(Add(a, b, commutative), b)`` on
        ``Mul(Add(p, q), p)`` failed: the Add bound a = p and never tried b = p; an outside check)."""
        if node.op_type not in pat.types or (node.domain or "") != pat.domain and not (
                pat.domain == "" and node.domain == "ai.onnx"):
            self.fail(depth, lambda: f"{_at(where)} is produced by {node.describe()}, not {'|'.join(pat.types)}", node)
            return
        if pat.name in m.nodes and m.nodes[pat.name] is not node:
            self.fail(depth, lambda: f"{node.describe()} is not the node already matched as {pat.name!r}", node)
            return
        if not is_root and pat.single_use:
            outs = [o for o in node.outputs if o is not None]
            if any(o.is_graph_output for o in outs) or sum(o.num_uses for o in outs) != 1:
                self.fail(depth + 1, lambda: f"{node.describe()} " + (
                    "is a graph output" if any(o.is_graph_output for o in outs) else
                    f"has {sum(o.num_uses for o in outs)} uses") + "; fusing it would duplicate its work", node)
                return
        for k, want in pat.attrs.items():
            have = node.attr(k)
            ok = want(have) if callable(want) else have == want
            if not ok:
                self.fail(depth + 1, lambda: f"{node.describe()} attribute {k}={have!r} does not satisfy the pattern",
                          node)
                return
        n_in = len(node.inputs)
        if n_in > len(pat.inputs) and not pat.allow_extra_inputs and any(
                x is not None for x in node.inputs[len(pat.inputs):]):
            self.fail(depth + 1, lambda: f"{node.describe()} has {n_in} inputs, the pattern expects {len(pat.inputs)}",
                      node)
            return
        m = m.copy()
        m.nodes[pat.name] = node
        m.order.append(node)
        orders = [pat.inputs]
        if pat.commutative:
            orders.append(list(reversed(pat.inputs)))
        for k, order in enumerate(orders):
            if k:  # a second order: bounded per root, since a pattern that fails late tries every combination
                self.alternatives += 1  # (2^31 for 31 commutative ops: a hang; a review)
                if self.alternatives > MAX_ALTERNATIVE_MATCHES:
                    return
            for cur in self._iter_inputs(order, node, 0, m, depth):
                if pat.where is not None:
                    ok = pat.where(node)
                    if ok is not True:
                        self.fail(depth + 1 + len(order), lambda: f"{node.describe()}: {ok or 'constraint failed'}",
                                  node)
                        continue
                yield cur

    def _iter_inputs(self, order: Sequence[Pattern], node: Node, i: int, m: Match, depth: int) -> Iterator[Match]:
        if i == len(order):
            yield m
            return
        v = node.inputs[i] if i < len(node.inputs) else None
        for cur in self.iter_value(order[i], v, m, depth + 1 + i, (node, i)):
            yield from self._iter_inputs(order, node, i + 1, cur, depth)


def _at(where: Any) -> str:
    """The text of a ``where``: "root", or (node, input index)."""
    if isinstance(where, tuple):
        node, i = where
        return f"{node.describe()} input {i}"
    return where


class ReplacementBuilder:
    """Creates the replacement's nodes, inserted just before the matched root."""

    def __init__(self, match: Match, rule_name: str) -> None:
        self.match = match
        self.rule_name = rule_name
        self.graph = match.graph
        self.new_nodes: list[Node] = []
        self.new_consts: list[Value] = []

    def const(self, array: np.ndarray, name: str = "") -> Value:
        base = name or f"{self.rule_name}_const"
        v = self.graph.add_initializer(Tensor(np.asarray(array)), self.graph.unique_name(base))
        self.new_consts.append(v)
        return v

    def rollback(self) -> None:
        """Undo what the builder created (the nodes were never inserted)."""
        for n in self.new_nodes:
            n.detach_inputs()
        for v in self.new_consts:
            if v.num_uses == 0:
                self.graph.remove_initializer(v)
        self.new_nodes, self.new_consts = [], []

    def op(self, op_type: str, *inputs: Any, outputs: int = 1, domain: str = "", name: str = "",
           attrs: dict[str, Any] | None = None, **kw_attrs: Any) -> Any:
        merged: dict[str, Any] = {}
        for k, a in (attrs or {}).items():
            merged[k] = a if isinstance(a, Attr) else a
        merged.update({k: v for k, v in kw_attrs.items() if v is not None})
        # an array or a number is a constant, as GraphBuilder.op takes it (it crashed the rule: "'numpy.float32'
        # object has no attribute '_uses'"; an outside check); a str is a mistake there as here (a Value's name)
        bad = next((x for x in inputs if isinstance(x, (str, bytes))), None)
        if bad is not None:
            raise IRError(f"rule {self.rule_name!r}: {bad!r:.40} is not a Value: pass the match's Value (m[NAME]) or "
                          "np.array([...]) for a string constant")
        ins = [x if x is None or isinstance(x, Value) else self.const(np.asarray(x)) for x in inputs]
        node = Node(op_type, ins, merged, outputs=outputs, domain=domain,
                    name=name or self.graph.unique_name(f"{self.rule_name}/{op_type}"))
        self.new_nodes.append(node)
        return node.outputs[0] if outputs == 1 else node.outputs


def _pattern_ops(pattern: Pattern) -> list["Op"]:
    """The distinct ``Op``s of a pattern, depth first, root first."""
    ops: list[Op] = []
    seen: set[int] = set()

    def walk(p: Pattern) -> None:
        if isinstance(p, Opt):
            walk(p.inner)
        elif isinstance(p, Op) and id(p) not in seen:
            seen.add(id(p))
            ops.append(p)
            for q in p.inputs:
                walk(q)

    walk(pattern)
    return ops


@dataclass
class Rule:
    name: str
    pattern: Op
    replace: Callable[[Match, ReplacementBuilder], Value | Sequence[Value]]
    check: Callable[[Match], str | None] | None = None
    exactness: str = EXACT
    doc: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        """Two ops of one type and no ``name=`` (``Op("Relu", Op("Relu", Var("x")))``) had one default name,
        which the matcher reads as "the same node": the rule never matched. Default names are made unique in
        depth-first order, root first (``relu``, ``relu_2``), on this rule's own copy of the pattern (patterns
        are shared between rules: the GELU ones by fuse-gelu and fuse-ort-contrib); a name given twice still
        means one node."""
        if self.exactness not in (EXACT, REASSOCIATING, APPROXIMATE):  # a typo ran nowhere, or failed to load with
            # "tuple.index(x): x not in tuple" (an outside check)
            raise ValueError(f"rule {self.name!r}: exactness {self.exactness!r} is not one of {EXACT!r}, "
                             f"{REASSOCIATING!r}, {APPROXIMATE!r}")
        ops = _pattern_ops(self.pattern)
        taken = {op.name for op in ops if op.name_given}
        plan: list[tuple[int, str]] = []
        for i, op in enumerate(ops):
            if op.name_given:
                continue
            base = op.types[0].lower()
            name, k = base, 1
            while name in taken:
                k += 1
                name = f"{base}_{k}"
            taken.add(name)
            if name != op.name:
                plan.append((i, name))
        if plan:
            import copy

            self.pattern = copy.deepcopy(self.pattern)  # keeps the sharing within the pattern (one memo)
            mine = _pattern_ops(self.pattern)
            for i, name in plan:
                mine[i].name = name

    def match(self, graph: Graph, node: Node) -> Match | None:
        """The first match at ``node`` that passes the check (the first match when every one fails it), or None."""
        return self.checked_match(_Matcher(graph), node)[0]

    def checked_match(self, matcher: "_Matcher", node: Node) -> tuple[Match | None, str | None]:
        """``match``, with the check's reason for refusing it (None when it passed): each match is checked once."""
        first: tuple[Match | None, str | None] = (None, None)
        matches = matcher.iter_node(self.pattern, node, Match(matcher.graph, node), 0, "root", is_root=True)
        for i, m in enumerate(matches):
            reason = self.check(m) if self.check is not None else None
            if reason is None:
                return m, None
            if first[0] is None:
                first = (m, reason)
            if i + 1 == MAX_ALTERNATIVE_MATCHES:
                break
        return first

    def try_rewrite(self, graph: Graph, node: Node, nested_outputs: "NestedOutputs | None" = None) -> bool:
        """Match at ``node``, check, replace; True when the graph changed.

        ``nested_outputs``: a ``NestedOutputs`` of ``graph`` that a caller keeps across its rewrites."""
        m, refused = self.checked_match(_Matcher(graph), node)
        if m is None or refused is not None:
            return False
        tracker = nested_outputs if nested_outputs is not None else NestedOutputs(graph)
        nested = tracker.ids()
        if nested and any(o is not None and id(o) in nested for n in m.order for o in n.outputs):
            return False  # a subgraph returns one of these values directly: it must stay
        rb = ReplacementBuilder(m, self.name)
        new = self.replace(m, rb)
        if new is None:
            rb.rollback()
            return False
        new_values = _replacement_values(self.name, new, rb)
        root_outs = [o for o in node.outputs if o is not None]
        if len(new_values) < len(root_outs):
            rb.rollback()
            raise ValueError(f"rule {self.name!r} returned {len(new_values)} values for {len(root_outs)} outputs")
        if _breaks_graph_outputs(graph, node, new_values, rb):
            rb.rollback()
            return False
        graph.insert_before(node, rb.new_nodes)
        for old, nv in zip(node.outputs, new_values):
            if old is not None and nv is not None and nv is not old:
                if old.is_graph_output and nv.producer is not None and nv.graph is graph:
                    # nv takes over the output's name and slot: what the output's declared type knew and nv's does
                    # not carries over (Identity(Loop output) -> output declared [2, 2], the Loop output typed
                    # float32 alone: the written model's output lost its shape). Only there: a graph input or
                    # weight keeps its own type (an intermediate's stale value_info narrowed an input [N, ?] to
                    # [N, 4], and ONNX Runtime then refused inputs the model took: a review). The declared type
                    # comes first: where it names a size or a symbol, that stays (Identity(Sqrt(x: [N])) -> output
                    # declared [3] was written as [N], a number become a symbol: an outside check's fuzzing);
                    # only what it leaves unknown is nv's
                    nv.type = merge_types(old.type, nv.type, "", InferenceReport())
                elif nv.type is None:
                    nv.type = old.type
                old.replace_all_uses_with(nv)
        removed = _remove_dead(graph, m.order, nested)
        tracker.touched(rb.new_nodes + removed)
        return True


def _remove_dead(graph: Graph, candidates: list[Node], nested: set[int]) -> list[Node]:
    """Remove the matched nodes that the rewrite left unread, then any producer that thereby lost
    its last reader: a rule whose check looked past its pattern (every input of a Concat, say) leaves
    no dead work behind for a later dce to find. Returns the removed nodes."""
    work = list(candidates)  # root first, then its producers: each becomes dead in turn
    removed = []
    while work:
        n = work.pop(0)
        if n.graph is not graph or not all(o is None or (o.num_uses == 0 and not o.is_graph_output
                                                         and id(o) not in nested) for o in n.outputs):
            continue
        producers = [v.producer for v in n.inputs if v is not None and v.producer is not None]
        graph.remove_node(n)
        removed.append(n)
        work.extend(producers)
    return removed


class NestedOutputs:
    """``nested_output_ids(graph)`` kept across a sweep of rewrites over ``graph``.

    The set changes only when a rewrite inserts or removes a node that has subgraphs (rewrites of
    ``graph`` never edit a nested graph's outputs), and ``try_rewrite`` reports the nodes it
    inserted and removed; recomputing it for every rewrite scanned the whole graph each time.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._ids: set[int] | None = None

    def ids(self) -> set[int]:
        if self._ids is None:
            self._ids = nested_output_ids(self.graph)
        return self._ids

    def touched(self, nodes: list[Node]) -> None:
        """``nodes`` were inserted into or removed from the graph."""
        if self._ids is not None and any(n.subgraphs() for n in nodes):
            self._ids = None


def nested_output_ids(graph: Graph) -> set[int]:
    """ids of values that a subgraph nested in ``graph`` returns directly as one of its outputs."""
    ids: set[int] = set()
    for n in graph.nodes:
        for sub in n.subgraphs():
            for g in sub.all_graphs():
                ids.update(id(v) for v in g.outputs if v is not None)
    return ids


def _breaks_graph_outputs(graph: Graph, root: Node, new_values: list, rb: ReplacementBuilder) -> bool:
    """A root output that is a graph output may only be replaced by a node output of this graph that
    can take over its name (not an input, initializer, outer value, or a value already returned)."""
    for old, nv in zip(root.outputs, new_values):
        if old is None or nv is None or nv is old or not old.is_graph_output:
            continue
        producer = nv.producer
        if producer is None or not (producer.graph is graph or any(producer is n for n in rb.new_nodes)):
            return True
        if any(o is nv for o in graph.outputs):
            return True
    return False


def _replacement_values(rule_name: str, new: Any, rb: "ReplacementBuilder") -> list[Value | None]:
    """What a rule's ``replace`` returned, as the list of values for the root's outputs; a TypeError naming the
    rule and what it returned otherwise (``replace`` returning 7 failed as "'int' object is not iterable", naming
    neither; an outside check). The builder is rolled back first."""
    if isinstance(new, Value):
        return [new]
    if isinstance(new, (list, tuple)) and all(v is None or isinstance(v, Value) for v in new):
        return list(new)
    rb.rollback()
    raise TypeError(f"rule {rule_name!r}: replace returned {type(new).__name__} {new!r:.60}, not a Value, a list of "
                    "Values (None for an output left alone) or None (no rewrite)")


def _blocked(rule: Rule, graph: Graph, node: Node, m: Match) -> str | None:
    """What stops ``try_rewrite`` after a match whose check passes (the same guards, the replacement built and
    rolled back): "matches at" was said of a match whose output is a graph output the replacement cannot
    take over (``Mul(one, x)`` returning ``x``, a graph input)."""
    nested = NestedOutputs(graph).ids()
    if nested and any(o is not None and id(o) in nested for n in m.order for o in n.outputs):
        return "a subgraph returns one of the matched values directly, so they must stay"
    rb = ReplacementBuilder(m, rule.name)
    try:
        new = rule.replace(m, rb)
        if new is None:
            return "the replacement declines it (returns None)"
        values = _replacement_values(rule.name, new, rb)
        if _breaks_graph_outputs(graph, node, values, rb):
            return ("its output is a graph output, which the replacement would hand to a graph input, an "
                    "initializer or another output: the rule leaves it")
        return None
    finally:
        rb.rollback()


def explain(rule: Rule, graph: Graph) -> str:
    """Why ``rule`` does not fire on ``graph``: the closest partial match and what failed."""
    best: tuple[int, str] | None = None
    candidates = 0
    for g in graph.all_graphs():
        for node in g.nodes:
            if node.op_type not in rule.pattern.types:
                continue
            candidates += 1
            matcher = _Matcher(g, explain=True)
            try:
                m, reason = rule.checked_match(matcher, node)
            except Exception as e:  # a plugin rule's check that raises: said, not a traceback (a review)
                return f"rule {rule.name!r}: its check raised at {node.describe()}: {type(e).__name__}: {e}"
            if m is not None:
                if reason is None:
                    blocked = _blocked(rule, g, node, m)
                    if blocked is None:
                        return f"rule {rule.name!r} matches at {node.describe()}"
                    depth = 10_001
                    text = (f"closest match at {node.describe()}: the pattern matches and the check passes, but "
                            f"{blocked}")
                else:
                    depth = 10_000
                    text = f"closest match at {node.describe()}: the pattern matches, but the check fails: {reason}"
            else:
                f = matcher.best
                depth = f.depth if f else 0
                text = f"closest match at {node.describe()} ({depth} pattern element(s) matched): {f.reason if f else '?'}"
            if best is None or depth > best[0]:
                best = (depth, text)
    if best is None:
        return (f"rule {rule.name!r} cannot match: no {'|'.join(rule.pattern.types)} node in the graph "
                f"({len(list(graph.all_nodes()))} nodes)")
    return f"rule {rule.name!r} does not fire ({candidates} candidate root(s)); {best[1]}"
