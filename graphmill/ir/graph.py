"""The graph IR: ``Value``, ``Node``, ``Graph``, ``Function``.

Use-def chains are kept right by the mutation API and only by it: a ``Value``
knows its producer and every (node, input index) that uses it, including uses
from nodes inside subgraphs (outer-scope references). Passes never edit
``node._inputs`` or ``value._uses`` directly.

Node order in ``Graph`` is a topological order; mutations that could break it
(``append`` of a node whose inputs come later) are allowed, and ``sort()``
restores it. ``verify()`` checks it.
"""

from __future__ import annotations

import copy as _copy
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from .attrs import Attr, AttrKind, infer_attr
from graphmill.util.errors import IRError
from .tensor import SparseTensor, Tensor
from .types import TensorType, Type

if TYPE_CHECKING:  # pragma: no cover
    import networkx


class Value:
    """A named SSA value: a graph input, an initializer, or a node output."""

    __slots__ = (
        "name", "type", "producer", "index", "_uses", "const", "doc_string",
        "metadata_props", "meta", "_owner",
    )

    def __init__(
        self,
        name: str = "",
        type: Type | None = None,
        *,
        const: Tensor | SparseTensor | None = None,
        doc_string: str = "",
    ) -> None:
        self.name = name
        self.type = type
        self.producer: Node | None = None
        self.index: int | None = None  # output index in the producer
        self._uses: list[tuple[Node, int]] = []
        self.const = const
        self.doc_string = doc_string
        self.metadata_props: dict[str, str] = {}
        self.meta: dict[str, Any] = {}
        self._owner: Graph | None = None  # graph holding it as input/initializer

    # -- pickling (a pipeline's stage graphs go to its processes) ------------------------------------------------
    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        """Slots without the uses: a reader's ``__setstate__`` adds itself back (``Node.__setstate__``).
        Followed, the uses led pickle from reader to reader down a whole chain, one recursion level per op: a
        stage of ~500 ops raised RecursionError, ~20,000 crashed Python (an outside check)."""
        return None, {k: getattr(self, k) for k in _VALUE_STATE if hasattr(self, k)}

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        for k, v in state[1].items():
            setattr(self, k, v)
        if not hasattr(self, "_uses"):  # a reader rebuilt before this value may have added itself already
            self._uses = []

    def __copy__(self) -> "Value":
        return _shallow_copy(self)

    # -- queries -------------------------------------------------------------
    def uses(self) -> list[tuple["Node", int]]:
        """Every (node, input index) that reads this value, in no particular order."""
        return list(self._uses)

    @property
    def users(self) -> list["Node"]:
        """Distinct nodes that read this value."""
        seen: dict[int, Node] = {}
        for node, _ in self._uses:
            seen.setdefault(id(node), node)
        return list(seen.values())

    @property
    def num_uses(self) -> int:
        return len(self._uses)

    @property
    def graph(self) -> "Graph | None":
        """The graph that defines this value (producer's graph, or the owning graph)."""
        if self.producer is not None:
            return self.producer.graph
        return self._owner

    @property
    def is_initializer(self) -> bool:
        return self._owner is not None and self._owner.initializers.get(self.name) is self

    @property
    def is_graph_input(self) -> bool:
        return self._owner is not None and any(v is self for v in self._owner.inputs)

    @property
    def is_graph_output(self) -> bool:
        """A property, as ``is_graph_input`` and ``is_initializer`` are: as a method, ``not v.is_graph_output`` was
        always False, and a user's pass that wrote it silently did nothing (an outside check)."""
        g = self.graph
        return g is not None and any(v is self for v in g.outputs)

    @property
    def dtype(self):
        return getattr(self.type, "dtype", None)

    @property
    def shape(self):
        return getattr(self.type, "shape", None)

    # -- mutation --------------------------------------------------------------
    def replace_all_uses_with(self, new: "Value", *, graph_outputs: bool = True) -> None:
        """Make every reader of ``self`` read ``new`` instead.

        The producer of ``new`` keeps reading ``self`` (so wrapping a value --
        ``y = Identity(x); x.replace_all_uses_with(y)`` -- does not make a cycle).
        With ``graph_outputs`` (the default) a graph output slot holding ``self``
        is given ``new`` too, and ``new`` takes over the output's name when it is
        a plain node output, so the model's interface keeps its names.
        """
        if new is self:
            return
        for node, i in list(self._uses):
            if node is new.producer:
                continue  # the node computing ``new`` from ``self`` keeps reading ``self``: no cycle
            node.set_input(i, new)
        if graph_outputs:
            g = self.graph
            if g is not None:
                for i, out in enumerate(g.outputs):
                    if out is self:
                        g.outputs[i] = new
                        if new.type is None:  # the interface keeps its declaration, as a rewrite's merge does
                            new.type = self.type
                        if (
                            new.producer is not None
                            and new.graph is g
                            and not any(o is new for j, o in enumerate(g.outputs) if j != i)
                        ):
                            old_name = self.name
                            self.name = g.unique_name(old_name + "_replaced")
                            new.name = old_name

    def __repr__(self) -> str:
        t = f": {self.type}" if self.type is not None else ""
        return f"Value(%{self.name}{t})"


def qualified_op(op_type: str, domain: str) -> str:
    """How reports, errors and the printer name an op: ``Conv``, or ``my.domain::FooBar`` outside the ONNX
    domain (two domains may each have a ``FooBar``)."""
    return f"{domain}::{op_type}" if domain not in ("", "ai.onnx") else op_type


def describe_node(op_type: str, domain: str, name: str, outputs: Iterable[str]) -> str:
    """How error messages name a node, built or still a file's NodeProto: ``Conv node 'conv1'``; an unnamed one
    by its first output, which a reader can find in the model (``Mul node (unnamed) producing 'y'``: "(unnamed)"
    alone located nothing)."""
    op = qualified_op(op_type, domain)
    if name:
        return f"{op} node {name!r}"
    out = next((o for o in outputs if o), None)
    return f"{op} node (unnamed) producing {out!r}" if out else f"{op} node (unnamed)"


def _shallow_copy(obj: Any) -> Any:
    """``copy.copy`` of a Value or Node as before their pickling state: the same slots, no use list touched (the
    state's ``__setstate__`` registered a shallow copy as a reader of the original's values; a review)."""
    new = type(obj).__new__(type(obj))
    for k in type(obj).__slots__:
        if hasattr(obj, k):
            setattr(new, k, getattr(obj, k))
    return new


# the producer first: a value met before its producer (a graph output) then pickles that node's graph whole, in
# its order, before anything the node reads (``Node.__getstate__``)
_VALUE_STATE = ("producer", "_owner", "name", "type", "index", "const", "doc_string", "metadata_props", "meta")


class Node:
    """One operation. Op semantics are ONNX's for (domain, op_type)."""

    __slots__ = (
        "op_type", "domain", "overload", "name", "_inputs", "_outputs", "attrs",
        "doc_string", "metadata_props", "meta", "graph", "extra",
    )

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        """Slots with the graph first, so that pickle writes the graph's nodes in its order (``Graph.__getstate__``)
        before what this node reads: every producer is then written before its readers, and the recursion stays
        as deep as the nesting of subgraphs, not as long as the graph."""
        return None, {k: getattr(self, k) for k in ("graph",) + Node.__slots__ if hasattr(self, k)}

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        for k, v in state[1].items():
            setattr(self, k, v)
        for i, v in enumerate(self._inputs):  # the uses the values' states leave out
            if v is not None:
                if not hasattr(v, "_uses"):
                    v._uses = []
                v._uses.append((self, i))

    def __copy__(self) -> "Node":
        return _shallow_copy(self)

    def __init__(
        self,
        op_type: str,
        inputs: Sequence[Value | None] = (),
        attrs: dict[str, Any] | Iterable[Attr] | None = None,
        *,
        outputs: Sequence[Value | None] | int = 1,
        domain: str = "",
        name: str = "",
        overload: str = "",
        doc_string: str = "",
    ) -> None:
        self.op_type = op_type
        self.domain = domain
        self.overload = overload
        self.name = name
        self.doc_string = doc_string
        self.metadata_props: dict[str, str] = {}
        self.meta: dict[str, Any] = {}
        self.graph: Graph | None = None
        self.extra: dict[str, Any] = {}  # fields the IR carries but does not model (opaque)
        self.attrs: dict[str, Attr] = {}
        if attrs:
            items = attrs.values() if isinstance(attrs, dict) and all(
                isinstance(a, Attr) for a in attrs.values()) else attrs
            if isinstance(items, dict):
                for k, v in items.items():
                    if v is not None:
                        self.attrs[k] = infer_attr(k, v)
            else:
                for a in items:
                    self.attrs[a.name] = a
        self._inputs: list[Value | None] = []
        for v in inputs:
            self._inputs.append(v)
            if v is not None:
                v._uses.append((self, len(self._inputs) - 1))
        if isinstance(outputs, int):
            outputs = [Value() for _ in range(outputs)]
        self._outputs: list[Value | None] = list(outputs)
        for i, v in enumerate(self._outputs):
            if v is None:
                continue
            if v.producer is not None:
                raise IRError(f"value %{v.name} already has a producer ({v.producer.op_type})")
            v.producer = self
            v.index = i

    # -- queries -------------------------------------------------------------
    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    def input_at(self, index: int) -> Value | None:
        """Input ``index``, or None when the node has fewer inputs: without copying ``inputs``, whose copy per
        index made a loop over a 200,000-input Concat quadratic (minutes for a 600 KB file: an outside check)."""
        return self._inputs[index] if 0 <= index < len(self._inputs) else None

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def outputs(self) -> tuple[Value | None, ...]:
        return tuple(self._outputs)

    @property
    def output(self) -> Value:
        """The single output (error when the node has several)."""
        if len(self._outputs) != 1 or self._outputs[0] is None:
            raise IRError(f"{self.describe()} has {len(self._outputs)} outputs, not one")
        return self._outputs[0]

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's plain value, or ``default`` when absent."""
        a = self.attrs.get(name)
        return default if a is None else a.value

    def subgraphs(self) -> list["Graph"]:
        """The graphs in this node's attributes (If/Loop/Scan bodies), in attribute order. A list,
        not a generator: every pass asks this of every node, and most nodes have none."""
        found: list[Graph] = []
        for a in self.attrs.values():
            if a.kind == AttrKind.GRAPH:
                found.append(a.value)
            elif a.kind == AttrKind.GRAPHS:
                found.extend(a.value)
        return found

    def owned_subgraphs(self) -> list["Graph"]:
        """The subgraphs whose parent is this node (or none yet): a replacement may take over a node's branch
        graphs (``If(Not(c))`` rewritten to ``If(c)`` with them swapped), and what is done to the node it replaced,
        or to one a rule built and dropped, must not touch them (a review)."""
        return [sub for sub in self.subgraphs() if sub.parent is None or sub.parent is self]

    @property
    def qualified_op(self) -> str:
        """``op_type``, with its domain when not ONNX's (``qualified_op``)."""
        return qualified_op(self.op_type, self.domain)

    def describe(self) -> str:
        """How error messages name a node (``describe_node``)."""
        # lazily: only an unnamed node's first output is read (a list of all of them, per message of a
        # 100,000-output Split, made its verification quadratic: an outside check)
        return describe_node(self.op_type, self.domain, self.name,
                             (v.name for v in self._outputs if v is not None))

    # -- mutation --------------------------------------------------------------
    def set_input(self, index: int, value: Value | None) -> None:
        old = self._inputs[index]
        if old is value:
            return
        if old is not None:
            old._uses.remove((self, index))
        self._inputs[index] = value
        if value is not None:
            value._uses.append((self, index))

    def replace_input_with(self, old: Value, new: Value | None) -> None:
        for i, v in enumerate(self._inputs):
            if v is old:
                self.set_input(i, new)

    def append_input(self, value: Value | None) -> None:
        self._inputs.append(value)
        if value is not None:
            value._uses.append((self, len(self._inputs) - 1))

    def resize_inputs(self, n: int) -> None:
        """Drop trailing inputs beyond ``n`` (or pad with omitted ones)."""
        while len(self._inputs) > n:
            i = len(self._inputs) - 1
            v = self._inputs[i]
            if v is not None:
                v._uses.remove((self, i))
            self._inputs.pop()
        while len(self._inputs) < n:
            self._inputs.append(None)

    def set_attr(self, name: str, value: Any) -> None:
        """Set (or, with ``None``, remove) an attribute. A graph it holds becomes this node's, its reads of outer
        values registered; a graph of this node it replaces, and no other attribute holds, stops reading them: left,
        a branch replaced by one reading nothing kept the values the old branch read in use, and dce kept their
        producers (an outside check). Swapping two branches of one node keeps both's reads (a review)."""
        old = self.attrs.get(name)
        before = self.owned_subgraphs() if old is not None and old.kind in (AttrKind.GRAPH, AttrKind.GRAPHS) else ()
        if value is None:
            self.attrs.pop(name, None)
        else:
            a = self.attrs[name] = infer_attr(name, value)
            if a.kind in (AttrKind.GRAPH, AttrKind.GRAPHS):  # the graphs are this node's now (as ``_adopt`` says):
                # taken from another node, they were still its, and removing it cleared their reads (a review)
                for sub in [a.value] if a.kind == AttrKind.GRAPH else a.value:
                    sub.parent = self
                    sub.register_outer_reads()
        if before:
            kept = {id(sub) for sub in self.subgraphs()}
            for sub in before:
                if id(sub) not in kept:
                    sub.unregister_outer_reads()
                    sub.parent = None

    def detach_inputs(self) -> None:
        """Drop every input, with its use record (the slots stay, empty): for a node being discarded,
        e.g. one a rewrite built and then did not insert. Its subgraphs' reads of outer values are dropped too:
        left, an ``If`` removed kept the values its branches read in use, and dce kept their dead producers (an
        outside check)."""
        for i, v in enumerate(self._inputs):
            if v is not None:
                v._uses.remove((self, i))
        self._inputs = [None] * len(self._inputs)
        for sub in self.owned_subgraphs():
            for node, i, v in sub.outer_reads():
                v._uses.remove((node, i))
                node._inputs[i] = None

    def __repr__(self) -> str:
        ins = ", ".join("%" + v.name if v is not None else "_" for v in self._inputs)
        outs = ", ".join("%" + v.name if v is not None else "_" for v in self._outputs)
        return f"Node({outs} = {self.op_type}({ins}))"


@dataclass
class ModelInfo:
    """Model-level fields of an ONNX model that a graph carries for lossless export."""

    ir_version: int = 10
    producer_name: str = "graphmill"
    producer_version: str = ""
    domain: str = ""
    model_version: int = 0
    doc_string: str = ""
    metadata_props: dict[str, str] = field(default_factory=dict)
    # Fields carried verbatim (serialized protobuf), e.g. training_info, configuration.
    opaque: dict[str, list[bytes]] = field(default_factory=dict)


#: ``graph.meta`` key where ``graphmill.from_torch`` records which initializers are the module's trainable parameters
#: and which it keeps fixed, its buffers and parameters with requires_grad=False (``{"parameters": [...],
#: "buffers": [...]}``): what the torch backend trains (backends/torch/weights.py)
TORCH_ROLES_KEY = "torch_roles"


def recorded_torch_roles(graph: "Graph") -> tuple[set[str], set[str]]:
    """The names ``from_torch`` recorded (``TORCH_ROLES_KEY``) as trained and as kept fixed, whether or not the graph
    still holds them; two empty sets for a graph without a record."""
    roles = graph.meta.get(TORCH_ROLES_KEY)
    if not isinstance(roles, dict):
        return set(), set()
    return set(roles.get("parameters", ())), set(roles.get("buffers", ()))


def recorded_fixed_rows(graph: "Graph") -> dict[str, list[int]]:
    """Rows of trained initializers that ``from_torch`` recorded as getting no gradient (``TORCH_ROLES_KEY``'s
    ``"fixed_rows"``: an ``nn.Embedding``'s ``padding_idx`` row, which ONNX's Gather cannot say), by name."""
    roles = graph.meta.get(TORCH_ROLES_KEY)
    rows = roles.get("fixed_rows") if isinstance(roles, dict) else None
    if not isinstance(rows, dict):
        return {}
    return {str(k): [int(r) for r in v] for k, v in rows.items() if isinstance(v, (list, tuple))}


class Graph:
    """A dataflow graph: inputs, nodes in topological order, outputs, initializers.

    The top-level graph of a model also carries the model's opset imports,
    functions and ``model`` info; a subgraph (If/Loop/Scan body) has ``parent``
    set to the node that owns it and resolves outer names through it.
    """

    def __init__(
        self,
        name: str = "main",
        *,
        inputs: Sequence[Value] = (),
        outputs: Sequence[Value] = (),
        nodes: Sequence[Node] = (),
        initializers: Sequence[Value] = (),
        opset_imports: dict[str, int] | None = None,
        doc_string: str = "",
    ) -> None:
        self.name = name
        self.doc_string = doc_string
        self.metadata_props: dict[str, str] = {}
        self.meta: dict[str, Any] = {}
        self.opset_imports: dict[str, int] = dict(opset_imports or {})
        self.functions: dict[tuple[str, str, str], Function] = {}
        self.model: ModelInfo | None = None
        self.parent: Node | None = None
        self.extra: dict[str, Any] = {}  # opaque fields carried for export
        self.inputs: list[Value] = []
        self.outputs: list[Value] = list(outputs)
        self.initializers: dict[str, Value] = {}
        self._nodes: list[Node] = []
        self._name_counter = itertools.count()
        self._names: set[str] | None = None
        for v in inputs:
            self.add_input(v)
        for v in initializers:
            self.add_initializer(v)
        for n in nodes:
            self.append(n)

    def __getstate__(self) -> dict[str, Any]:
        """Its fields with the nodes first, in the graph's order: pickle then meets each producer before its
        readers, so the recursion does not follow the graph's length (``Value.__getstate__``)."""
        return {"_nodes": self._nodes, **{k: v for k, v in self.__dict__.items() if k != "_nodes"}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- structure -------------------------------------------------------------
    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(tuple(self._nodes))

    @property
    def root(self) -> "Graph":
        g = self
        while g.parent is not None and g.parent.graph is not None:
            g = g.parent.graph
        return g

    def outer_reads(self) -> list[tuple[Node, int, Value]]:
        """(node, input index, value) of every read, in this graph or one nested in it, of a value defined outside
        it: what ties a subgraph to the graphs around it."""
        inner = {id(v) for g in self.all_graphs() for v in g.values()}
        return [(node, i, v) for node in self.all_nodes() for i, v in enumerate(node._inputs)
                if v is not None and id(v) not in inner]

    def register_outer_reads(self) -> None:
        """Record each outer read in its value's uses again after ``unregister_outer_reads``: a subgraph taken off
        its node stopped being a reader and reads again when a node takes it. A no-op otherwise (its nodes
        registered their reads when built), so adopting a node does not walk its subgraphs."""
        if not self.__dict__.get("_outer_reads_dropped"):
            return
        for node, i, v in self.outer_reads():
            if (node, i) not in v._uses:
                v._uses.append((node, i))
        self._outer_reads_dropped = False

    def unregister_outer_reads(self) -> None:
        """Drop the outer reads from their values' uses, the reads themselves kept (unlike ``detach_inputs``): the
        graph may be given to a node again."""
        for node, i, v in self.outer_reads():
            if (node, i) in v._uses:
                v._uses.remove((node, i))
        self._outer_reads_dropped = True

    def all_graphs(self) -> Iterator["Graph"]:
        """This graph and every nested subgraph, depth first (function bodies excluded)."""
        yield self
        for node in self._nodes:
            for sub in node.subgraphs():
                yield from sub.all_graphs()

    def all_nodes(self) -> Iterator[Node]:
        """Every node here and in nested subgraphs."""
        for g in self.all_graphs():
            yield from g._nodes

    def values(self) -> Iterator[Value]:
        """Values defined in this graph (not subgraphs): inputs, initializers, node outputs."""
        seen: set[int] = set()
        for v in itertools.chain(self.inputs, self.initializers.values()):
            if id(v) not in seen:
                seen.add(id(v))
                yield v
        for n in self._nodes:
            for v in n._outputs:
                if v is not None:
                    yield v

    def value_map(self) -> dict[str, Value]:
        return {v.name: v for v in self.values()}

    # -- names -------------------------------------------------------------------
    def _name_set(self) -> set[str]:
        root = self.root
        if root._names is None:
            names: set[str] = set()
            for g in root.all_graphs():
                names.update(v.name for v in g.values())
            root._names = names
        return root._names

    def unique_name(self, base: str = "v") -> str:
        """A value name not used anywhere in this graph tree."""
        names = self._name_set()
        if base and base not in names:
            names.add(base)
            return base
        root = self.root
        while True:
            cand = f"{base or 'v'}_{next(root._name_counter)}"
            if cand not in names:
                names.add(cand)
                return cand

    def _claim(self, value: Value, hint: str) -> None:
        if not value.name:
            value.name = self.unique_name(hint)
        elif self.root._names is not None:
            self.root._names.add(value.name)

    def separate_sibling_names(self) -> int:
        """Rename subgraph values whose name another subgraph of the tree already defines; returns how many.

        ONNX lets sibling subgraphs reuse a name (an If's then and else branches both defining ``o``), while
        this IR keeps every name unique in the graph tree (passes key values by name; ``verify`` checks it).
        The root's names are kept (they are the model's interface); a subgraph's outputs bind to its node's
        by position, so renaming inside it changes nothing the model computes. The frontend calls it on
        import."""
        claimed = {v.name for v in self.values()}
        taken = self._name_set()
        renamed = 0
        # the suffix last given to each name: the first free one is never below it (``taken`` only grows), and
        # searching from 1 again made 8,000 branches defining one name quadratic (an outside check)
        last: dict[str, int] = {}

        def visit(g: "Graph") -> None:
            nonlocal renamed
            for node in g._nodes:
                for sub in node.subgraphs():
                    for v in list(sub.values()):
                        if v.name in claimed:
                            k = last.get(v.name, 0) + 1
                            while f"{v.name}__{k}" in taken:
                                k += 1
                            last[v.name] = k
                            new = f"{v.name}__{k}"
                            if sub.initializers.get(v.name) is v:
                                del sub.initializers[v.name]
                                sub.initializers[new] = v
                            v.name = new
                            taken.add(new)
                            renamed += 1
                        claimed.add(v.name)
                    visit(sub)

        visit(self)
        return renamed

    def rename(self, value: Value, name: str) -> None:
        """Give ``value`` (of this graph tree) a new name, keeping ``unique_name``'s record of taken names; a name
        another value of the tree has is refused (it was taken silently, and only ``verify()`` said so later: an
        outside check). Assign ``value.name`` directly and nothing checks it until ``verify()``."""
        names = self._name_set()
        if name != value.name and name in names:  # the record keeps removed values' names: look for a live one
            other = next((v for g in self.root.all_graphs() for v in g.values() if v.name == name and v is not value),
                         None)
            if other is not None:
                raise IRError(f"cannot rename %{value.name} to %{name}: another value of the graph has that name")
        owner = value._owner
        if owner is not None and owner.initializers.get(value.name) is value:  # keyed by name: follow it
            del owner.initializers[value.name]
            owner.initializers[name] = value
        names.discard(value.name)
        value.name = name
        names.add(name)

    # -- mutation: inputs, outputs, initializers ---------------------------------
    def add_input(self, value: Value) -> Value:
        if value.producer is not None:
            raise IRError(f"%{value.name} is produced by a node; it cannot be a graph input")
        self._claim(value, "input")
        value._owner = self
        self.inputs.append(value)
        return value

    def remove_inputs(self, values: Iterable[Value]) -> None:
        """Drop unused graph inputs, with their initializers when they have one (an IR < 4 weight)."""
        values = list(values)
        inputs, outputs = {id(v) for v in self.inputs}, {id(v) for v in self.outputs}  # one scan, not one per value
        for value in values:
            if value._owner is not self or id(value) not in inputs:
                raise IRError(f"%{value.name} is not an input of graph {self.name!r}")
            if value._uses:
                raise IRError(f"graph input %{value.name} still has {len(value._uses)} use(s)")
            if id(value) in outputs:
                raise IRError(f"graph input %{value.name} is also a graph output")
        gone = {id(v) for v in values}
        self.inputs[:] = [v for v in self.inputs if id(v) not in gone]
        for value in values:
            self._drop_initializer(value, False)

    def add_initializer(self, value: Value | Tensor, name: str = "") -> Value:
        """Register a constant. A ``Tensor`` is wrapped in a new ``Value``; anything else is refused naming its
        type (a numpy array failed with "'ndarray' object has no attribute 'const'": an outside check)."""
        if not isinstance(value, (Value, Tensor, SparseTensor)):
            raise IRError(f"add_initializer takes a Tensor or a Value holding one, not {type(value).__name__} (wrap "
                          "an array: graph.add_initializer(Tensor(array), name))")
        if isinstance(value, (Tensor, SparseTensor)):
            t = value
            v = Value(name or t.name, TensorType(t.dtype, t.shape), const=t)
            value = v
        if value.const is None:
            raise IRError(f"initializer %{value.name} has no constant data")
        self._claim(value, "const")
        if value.name in self.initializers and self.initializers[value.name] is not value:
            raise IRError(f"initializer name {value.name!r} is already taken in graph {self.name!r}")
        value._owner = self
        if isinstance(value.const, Tensor) and not value.const.name:
            value.const.name = value.name
        self.initializers[value.name] = value
        return value

    def remove_initializer(self, value: Value) -> None:
        self._check_unused(value)
        self._drop_initializer(value, value.is_graph_input)

    def remove_initializers(self, values: Iterable[Value]) -> None:
        """Remove many unused initializers with one pass over the graph inputs (the light models
        list every weight as an input too, and a scan per initializer was quadratic)."""
        values = list(values)
        for value in values:
            self._check_unused(value)
        inputs = {id(v) for v in self.inputs}
        for value in values:
            self._drop_initializer(value, id(value) in inputs if value._owner is self else value.is_graph_input)

    @staticmethod
    def _check_unused(value: Value) -> None:
        if value._uses:
            raise IRError(f"initializer %{value.name} still has {len(value._uses)} use(s)")

    def _drop_initializer(self, value: Value, is_input: bool) -> None:
        if self.initializers.get(value.name) is value:
            del self.initializers[value.name]
        if not is_input:
            value._owner = None

    # -- mutation: nodes ---------------------------------------------------------
    def _adopt(self, node: Node) -> None:
        self._check_free([node])
        node.graph = self
        for v in node._outputs:
            if v is not None:
                self._claim(v, (node.name or node.op_type.lower()) + "_out")
        for sub in node.subgraphs():
            sub.parent = node
            sub.register_outer_reads()  # a graph a set_attr took off a node, given to this one

    @staticmethod
    def _check_free(nodes: Sequence[Node]) -> None:
        """Refuse before adopting any: checked one at a time, a list holding a node of a graph left the nodes
        before it claimed by this graph and in none (an outside check)."""
        seen: set[int] = set()
        for node in nodes:
            if node.graph is not None:
                raise IRError(f"{node.describe()} already belongs to graph {node.graph.name!r}")
            if id(node) in seen:
                raise IRError(f"{node.describe()} is given twice")
            seen.add(id(node))

    def append(self, node: Node) -> Node:
        self._adopt(node)
        self._nodes.append(node)
        return node

    def extend(self, nodes: Iterable[Node]) -> None:
        for n in nodes:
            self.append(n)

    def insert_before(self, anchor: Node, nodes: Node | Sequence[Node]) -> None:
        new = [nodes] if isinstance(nodes, Node) else list(nodes)
        i = self._index_of(anchor)
        self._check_free(new)
        for n in new:
            self._adopt(n)
        self._nodes[i:i] = new

    def insert_after(self, anchor: Node, nodes: Node | Sequence[Node]) -> None:
        new = [nodes] if isinstance(nodes, Node) else list(nodes)
        i = self._index_of(anchor) + 1
        self._check_free(new)
        for n in new:
            self._adopt(n)
        self._nodes[i:i] = new

    def _index_of(self, node: Node) -> int:
        if node.graph is not self:
            raise IRError(f"{node.describe()} is not in graph {self.name!r}")
        try:
            return self._nodes.index(node)  # Node has identity equality: list.index finds this very node, in C
        except ValueError:
            raise IRError(f"{node.describe()} is not in graph {self.name!r}") from None

    def remove_node(self, node: Node, *, force: bool = False) -> None:
        """Remove ``node``; its outputs must be unused (and not graph outputs) unless ``force``.

        With ``force`` the remaining uses keep dangling values that ``verify`` reports,
        which is only useful while a pass is mid-rewrite.
        """
        if not force:
            for v in node._outputs:
                if v is None:
                    continue
                if v._uses:
                    users = ", ".join(sorted({u.describe() for u, _ in v._uses}))
                    raise IRError(f"cannot remove {node.describe()}: output %{v.name} is used by {users}")
                if any(o is v for o in self.outputs):
                    raise IRError(f"cannot remove {node.describe()}: output %{v.name} is a graph output")
        i = self._index_of(node)
        del self._nodes[i]
        node.detach_inputs()
        node.graph = None

    def remove_nodes(self, nodes: Iterable[Node]) -> None:
        """Remove many nodes at once (linear time); their outputs must be unused outside the set."""
        doomed = {id(n): n for n in nodes}
        # a read by a node inside a doomed node's subgraph goes with it
        going = doomed.keys() | {id(m) for n in doomed.values() for sub in n.owned_subgraphs() for m in sub.all_nodes()}
        for n in doomed.values():
            if n.graph is not self:
                raise IRError(f"{n.describe()} is not in graph {self.name!r}")
            for v in n._outputs:
                if v is None:
                    continue
                outside = [u for u, _ in v._uses if id(u) not in going]
                if outside:
                    raise IRError(f"cannot remove {n.describe()}: %{v.name} is used by {outside[0].describe()}")
                if any(o is v for o in self.outputs):
                    raise IRError(f"cannot remove {n.describe()}: output %{v.name} is a graph output")
        self._nodes = [n for n in self._nodes if id(n) not in doomed]
        for n in doomed.values():
            n.detach_inputs()
            n.graph = None

    def replace_node(self, old: Node, new: Node | Sequence[Node], outputs: Sequence[Value | None] | None = None) -> None:
        """Insert ``new`` in place of ``old`` and reroute ``old``'s outputs.

        ``outputs`` gives, for each output of ``old``, the value that replaces it
        (default: the outputs of the last new node, in order).
        """
        new_nodes = [new] if isinstance(new, Node) else list(new)
        if outputs is None:
            outputs = new_nodes[-1].outputs if new_nodes else []
        needed = sum(1 for v in old._outputs if v is not None)
        if len(outputs) < len(old._outputs) and any(v is not None for v in old._outputs[len(outputs):]):
            raise IRError(f"replace_node: {old.describe()} has {needed} output(s) in use, "
                          f"got {len(outputs)} replacement(s)")
        for v_old, v_new in zip(old._outputs, outputs):
            if v_old is not None and v_new is None and (v_old._uses or v_old.is_graph_output):
                raise IRError(f"replace_node: output %{v_old.name} of {old.describe()} is in use and has no "
                              "replacement")
        olds = {id(v) for v in old._outputs if v is not None}
        for v_old, v_new in zip(old._outputs, outputs):
            if v_old is not None and v_new is not None and id(v_new) in olds:
                raise IRError(f"replace_node: the replacement of %{v_old.name} is %{v_new.name}, an output of "
                              f"{old.describe()}, which goes with it")
        # what each new node reads, its subgraphs' captures included: checked before anything is inserted (it was
        # refused after: a review)
        reads = [(n, [v for v in (*n._inputs, *(v for sub in n.subgraphs() for v in captured_values(sub)))
                      if v is not None]) for n in new_nodes]
        for n, vs in reads:
            if any(id(v) in olds for v in vs):
                raise IRError(f"replace_node: {n.describe()} reads an output of {old.describe()}, the node it "
                              "replaces; insert it after that node and reroute the readers instead")
        at = self._index_of(old)  # fail before changing anything when old is not here
        self._check_free(new_nodes)
        # the new nodes go where old is: what they read, and what replaces old's outputs, must be ready there (a
        # value made later was read before it was computed, or in a cycle, and refused only after the insertion)
        later = {id(v): n for n in self._nodes[at + 1:] for v in n._outputs if v is not None}
        for v in [*(v for _, vs in reads for v in vs), *outputs]:
            if v is not None and id(v) in later:
                raise IRError(f"replace_node: %{v.name} comes after {old.describe()} (from {later[id(v)].describe()}), "
                              "so the replacement would read or give it before it is computed")
        self.insert_before(old, new_nodes)
        for v_old, v_new in zip(old._outputs, outputs):
            if v_old is not None and v_new is not None:
                v_old.replace_all_uses_with(v_new)
        self.remove_node(old)

    # -- ordering -----------------------------------------------------------------
    def is_sorted(self) -> bool:
        """Whether every node comes after the producers of what it reads in this graph (outer-scope
        values and graph inputs are always available). Readers of files check it before ``sort()``."""
        local = {id(v) for n in self._nodes for v in n._outputs if v is not None}
        seen: set[int] = set()
        for n in self._nodes:
            for v in n._inputs:
                if v is not None and id(v) in local and id(v) not in seen:
                    return False
            for v in n._outputs:
                if v is not None:
                    seen.add(id(v))
        return True

    def sort(self) -> None:
        """Reorder nodes topologically, keeping the current order where it is already valid.

        Raises ``IRError`` naming a node on a cycle when there is one.
        """
        order = topological_order(self)
        self._nodes = order

    # -- views ---------------------------------------------------------------------
    def to_networkx(self) -> "networkx.MultiDiGraph":
        """A networkx view: one vertex per node (keyed by position), one edge per value use.

        Vertices carry ``node`` (the IR node); edges carry ``value`` (the value's name).
        Graph inputs/initializers are not vertices. The IR is not stored in networkx.
        """
        import networkx as nx

        g = nx.MultiDiGraph(name=self.name)
        pos = {id(n): i for i, n in enumerate(self._nodes)}
        for i, n in enumerate(self._nodes):
            g.add_node(i, node=n, op_type=n.op_type, name=n.name)
        for i, n in enumerate(self._nodes):
            for v in node_reads(n):
                if v.producer is not None and id(v.producer) in pos:
                    g.add_edge(pos[id(v.producer)], i, value=v.name)
        return g

    def copy(self) -> "Graph":
        """A deep copy: new Values/Nodes; constant tensors are shared (they are immutable)."""
        memo: dict[int, Any] = {}
        return _clone_graph(self, memo, parent=None)

    def __str__(self) -> str:
        from .printer import format_model

        return format_model(self)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self._nodes)} nodes, {len(self.inputs)} inputs, {len(self.outputs)} outputs)"


@dataclass
class Function:
    """A model-local function (ONNX ``FunctionProto``): a body graph plus attribute names."""

    domain: str
    name: str
    graph: Graph
    attributes: list[str] = field(default_factory=list)
    attribute_defaults: dict[str, Attr] = field(default_factory=dict)
    overload: str = ""
    doc_string: str = ""
    metadata_props: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.domain, self.name, self.overload)


def node_reads(node: Node) -> Iterator[Value]:
    """Values a node reads: its inputs plus outer values its subgraphs capture."""
    for v in node._inputs:
        if v is not None:
            yield v
    for sub in node.subgraphs():
        yield from captured_values(sub)


def depends_on(value: Value, test: Callable[[Value], bool]) -> bool:
    """Whether ``test`` holds for ``value`` or for any value it is computed from, through its producers' inputs and
    what their subgraphs capture (``node_reads``)."""
    todo, seen = [value], set()
    while todo:
        v = todo.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if test(v):
            return True
        if v.producer is not None:
            todo.extend(node_reads(v.producer))
    return False


def captured_values(graph: Graph) -> list[Value]:
    """Values used inside ``graph`` (or deeper) but defined outside it."""
    defined: set[int] = set()
    out: dict[int, Value] = {}
    for g in graph.all_graphs():
        for v in g.values():
            defined.add(id(v))
    for g in graph.all_graphs():
        for n in g._nodes:
            for v in n._inputs:
                if v is not None and id(v) not in defined:
                    out.setdefault(id(v), v)
        for v in g.outputs:
            if id(v) not in defined:
                out.setdefault(id(v), v)
    return list(out.values())


def stable_order(nodes: Sequence[Node]) -> tuple[list[Node], list[Node]]:
    """Kahn's algorithm over ``nodes`` and the producer edges among them (what their subgraphs capture
    included), stable: among ready nodes, the earlier one in the order given first. Returns (the order, the
    nodes left on a cycle: none when the order holds them all)."""
    import heapq

    nodes = list(nodes)
    pos = {id(n): i for i, n in enumerate(nodes)}
    indeg = [0] * len(nodes)
    succs: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        preds = set()
        for v in node_reads(n):
            p = v.producer
            if p is not None and id(p) in pos:
                preds.add(pos[id(p)])
        for p in preds:
            succs[p].append(i)
        indeg[i] = len(preds)
    ready = [i for i in range(len(nodes)) if indeg[i] == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for s in succs[i]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(ready, s)
    return order, [nodes[i] for i in range(len(nodes)) if indeg[i] > 0]


DECISIONS = {"placement": "graphmill place", "learned": "the learned passes"}
"""The graph meta of decisions made per node, replayed by ``graphmill simulate``, and who writes each."""

NODE_DECISIONS = ("device", "fusion_group", "priority")
"""What those decisions write on each node."""


def drop_decisions(graph: Graph) -> list[str]:
    """Remove the per-node decisions ``graph`` carries, from its meta and its nodes; the ``DECISIONS`` keys it had.
    For a change that makes them stale whatever the nodes still say (a rewrite copies a node's meta, device
    included, to the nodes it makes)."""
    had = [k for k in DECISIONS if graph.meta.get(k) is not None]
    for key in had:
        del graph.meta[key]
    if had:
        for n in graph.nodes:
            for k in NODE_DECISIONS:
                n.meta.pop(k, None)
    return had


def require_graph(graph: object, call: str) -> None:
    """A user error, not an AttributeError from deep inside, for a call given something other than a ``Graph``
    (``graphmill.inspect("model.onnx")`` after reading ``graphmill inspect model.onnx``: an outside check)."""
    if not isinstance(graph, Graph):
        from graphmill.util.errors import UserInputError

        hint = ": graphmill.load(path) reads a model file" if isinstance(graph, (str, bytes)) or hasattr(
            graph, "__fspath__") else ""
        raise UserInputError(f"graphmill.{call}: expected a Graph, got {type(graph).__name__} {graph!r:.60}{hint}")


def topological_order(graph: Graph) -> list[Node]:
    """The graph's nodes in a stable topological order (``stable_order``); an IRError names a cycle."""
    order, stuck = stable_order(graph._nodes)
    if stuck:
        raise IRError(
            f"graph {graph.name!r} has a cycle through {stuck[0].describe()}"
            + (f" and {len(stuck) - 1} other node(s)" if len(stuck) > 1 else "")
        )
    return order


def _clone_graph(graph: Graph, memo: dict[int, Any], parent: Node | None) -> Graph:
    def val(v: Value | None) -> Value | None:
        if v is None:
            return None
        got = memo.get(id(v))
        if got is not None:
            return got
        return v  # outer-scope value outside the copied tree: shared

    def fresh(v: Value) -> Value:
        nv = Value(v.name, v.type, const=v.const, doc_string=v.doc_string)
        nv.metadata_props = dict(v.metadata_props)
        nv.meta = _copy.copy(v.meta)
        memo[id(v)] = nv
        return nv

    g = Graph(graph.name, opset_imports=graph.opset_imports, doc_string=graph.doc_string)
    g.parent = parent
    g.metadata_props = dict(graph.metadata_props)
    g.meta = _copy.copy(graph.meta)
    g.extra = dict(graph.extra)
    g.model = _copy.deepcopy(graph.model)
    for v in graph.inputs:
        nv = fresh(v)
        nv._owner = g
        g.inputs.append(nv)
    for name, v in graph.initializers.items():
        nv = memo.get(id(v)) or fresh(v)
        nv._owner = g
        g.initializers[name] = nv
    # every output first: a graph may be unsorted mid-pass, and a node reading a value made later took the
    # original's (a use by another graph's node; an outside check)
    made = [[fresh(v) if v is not None else None for v in n._outputs] for n in graph._nodes]
    for n, outs in zip(graph._nodes, made):
        attrs = {}
        nn = Node(n.op_type, [val(v) for v in n._inputs], None, outputs=outs, domain=n.domain,
                  name=n.name, overload=n.overload, doc_string=n.doc_string)
        for k, a in n.attrs.items():
            if a.kind == AttrKind.GRAPH:
                attrs[k] = Attr(a.name, a.kind, _clone_graph(a.value, memo, nn), a.ref_attr_name, a.doc_string)
            elif a.kind == AttrKind.GRAPHS:
                attrs[k] = Attr(a.name, a.kind, [_clone_graph(s, memo, nn) for s in a.value],
                                a.ref_attr_name, a.doc_string)
            else:
                attrs[k] = Attr(a.name, a.kind, _copy.copy(a.value), a.ref_attr_name, a.doc_string)
        nn.attrs = attrs
        nn.metadata_props = dict(n.metadata_props)
        nn.meta = _copy.copy(n.meta)
        nn.extra = dict(n.extra)
        nn.graph = g
        g._nodes.append(nn)
    g.outputs = [val(v) for v in graph.outputs]  # type: ignore[misc]
    for key, f in graph.functions.items():
        g.functions[key] = Function(f.domain, f.name, _clone_graph(f.graph, {}, None), list(f.attributes),
                                    dict(f.attribute_defaults), f.overload, f.doc_string, dict(f.metadata_props))
    return g
