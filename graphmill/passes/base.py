"""The pass contract: a registered kebab-case name, typed options, a result, and analyses.

A pass is a class::

    @register_pass
    class DeadCodeElimination(Pass):
        '''Remove nodes whose outputs nobody reads.'''
        name = "dce"
        options = (Option("keep_side_effects", bool, True, "never remove ops with side effects"),)
        preserves = frozenset()          # analyses still valid after a change ("all" = every one)

        def run(self, graph, ctx) -> PassResult: ...

Options are declared once and validated when the pass is built (from Python,
the DSL or the command line), so a typo fails before any pass runs. Analyses
(shapes, costs, use counts) are computed on demand through the context and
cached until a pass that changed the graph does not declare them preserved --
the analysis-manager contract of LLVM and MLIR.

Passes never import ``graphmill.frontend`` or ``graphmill.backends``. What a pass
needs from them arrives through the interfaces below, carried by the
``PassContext``: a ``NodeEvaluator`` (fold-constants asks it to run one node; the
ONNX Runtime backend provides one) and a ``ShapeInferencer`` (onnx's inference,
provided by the frontend's codec) for the outputs of ops the registry has no entry for. A
context built without them uses the process-wide defaults that the top of the
package installs (``set_default_providers``; ``graphmill/__init__.py`` installs
``graphmill.providers.default_providers``), so a ``PassManager`` used directly
from Python behaves like ``graphmill.optimize()``.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, ClassVar, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from graphmill.ir import Graph, Node, UserInputError
from graphmill.ir.ops import InferenceReport
from graphmill.util.suggest import did_you_mean

EXACT = "exact"
REASSOCIATING = "float-reassociating"
APPROXIMATE = "approximate"
EXACTNESS = (EXACT, REASSOCIATING, APPROXIMATE)


@dataclass(frozen=True)
class Option:
    """A typed pass option. ``type`` is int, float, str, bool or list (of str/int/float)."""

    name: str
    type: type
    default: Any
    doc: str
    choices: tuple | None = None
    min: float | None = None  # smallest accepted value (int and float options)
    max: float | None = None  # largest accepted value
    above: float | None = None  # the value must be greater than this (alpha > 0: min cannot say it)

    def accepted_range(self) -> str | None:
        """The accepted values of a bounded number as text (``>= 1``, ``> 0``, ``0 .. 1``), or None."""
        low = f"> {self.above:g}" if self.above is not None else f">= {self.min:g}" if self.min is not None else None
        if self.max is None:
            return low
        if low is None:
            return f"<= {self.max:g}"
        return f"{self.min:g} .. {self.max:g}" if self.min is not None else f"{low} and <= {self.max:g}"

    def coerce(self, value: Any, where: str) -> Any:
        t = self.type
        ok = False
        if t is bool:
            ok = isinstance(value, bool)
        elif t is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif t is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
            if ok and not math.isfinite(value):  # 1e999 reached compound-scale as inf, "alpha=inf: must be > 0"
                raise UserInputError(f"{where}: option {self.name!r} must be a finite number, got {value!r}")
        elif t is str:
            ok = isinstance(value, str)
        elif t is list:
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                value = [value]  # `patterns=conv-bn` means a one-element list
            ok = isinstance(value, (list, tuple))
            value = list(value) if ok else value
        if not ok:
            raise UserInputError(f"{where}: option {self.name!r} must be {_type_name(t)}, got {_show(value)}")
        if self.choices is not None:
            items = value if t is list else [value]
            for item in items:
                if item not in self.choices:
                    hint = did_you_mean(str(item), [str(c) for c in self.choices])
                    raise UserInputError(f"{where}: option {self.name!r} does not accept {item!r}{hint}; "
                                         f"choose from {', '.join(map(str, self.choices))}")
        if t in (int, float) and self.accepted_range() is not None and not (
                (self.min is None or value >= self.min) and (self.max is None or value <= self.max)
                and (self.above is None or value > self.above)):  # written so that NaN is refused too
            raise UserInputError(f"{where}: option {self.name!r} must be {self.accepted_range()}, got {value!r}")
        return value


def _type_name(t: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a list"}.get(t, t.__name__)


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


@dataclass
class PassResult:
    """What a pass did. ``stats`` are counters for reports (e.g. ``{"removed": 3}``).

    A note is text, or a ``GraphNote`` when it describes what the pass left in the graph: those are
    worded (or dropped) against the graph the whole schedule produced.
    """

    changed: bool = False
    stats: dict[str, float] = field(default_factory=dict)
    notes: list["str | GraphNote"] = field(default_factory=list)  # e.g. "skipped Loop body: unsupported"


@dataclass(frozen=True)
class GraphNote:
    """A note about what a pass left undone, decided when the schedule ends.

    A later pass may do what this one could not (fuse-gelu leaves GELU patterns decomposed below
    opset 20; the ``ort`` schedule's fuse-ort-contrib then fuses them into com.microsoft ops), so a
    note written when the pass ran could describe a graph the user never sees. ``describe`` gets the
    final graph and returns the note's text, or None when there is nothing left to say.
    """

    describe: Callable[[Graph], "str | None"]


class Analysis:
    """A cached fact about a graph. Subclasses set ``name`` and implement ``compute``.

    ``verifiable``: whether ``--verify-each`` recomputes it after a changing pass that declares it preserved and
    compares (LLVM's verify-analysis-invalidation); false for an analysis that edits the graph as it computes
    (``shapes`` fills in value types) or whose result has no meaningful ``==``."""

    name: ClassVar[str]
    verifiable: ClassVar[bool] = True

    def compute(self, graph: Graph, ctx: "PassContext") -> Any:  # pragma: no cover - interface
        raise NotImplementedError


_ANALYSES: dict[str, type[Analysis]] = {}


def register_analysis(cls: type[Analysis]) -> type[Analysis]:
    """Class decorator: make ``cls`` computable by its ``name`` through ``PassContext.analysis``. A name is
    registered once (``ValueError``), as a pass's is: a plugin's ``use-counts`` replaced the built-in one for
    every pass of the process."""
    if cls.name in _ANALYSES and _ANALYSES[cls.name] is not cls:
        raise ValueError(f"analysis {cls.name!r} is registered twice{_builtin_hint(_ANALYSES[cls.name])}")
    _ANALYSES[cls.name] = cls
    return cls


def registered_analyses() -> dict[str, type[Analysis]]:
    """Every analysis ``PassContext.analysis`` computes, by name (the built-in ones included)."""
    _load_builtin_passes()  # the built-in passes' modules register the built-in analyses
    return dict(sorted(_ANALYSES.items()))


def unregister(passes: Iterable[str] = (), analyses: Iterable[str] = ()) -> None:
    """Forget the named passes and analyses: a plugin file that fails part-way takes back what it had
    registered, so that the file, once fixed, loads in the same process (``passes.plugins``)."""
    for name in passes:
        _PASSES.pop(name, None)
    for name in analyses:
        _ANALYSES.pop(name, None)


def _builtin_hint(cls: type) -> str:
    """What a clash with one of graphmill's own registrations adds to "registered twice": a plugin reusing
    ``dce`` has not registered anything twice itself."""
    return (f" (a built-in {'pass' if issubclass(cls, Pass) else 'analysis'} of graphmill; choose another name)"
            if cls.__module__.startswith("graphmill.") else "")


@runtime_checkable
class NodeEvaluator(Protocol):
    """Runs one node on constant inputs, as the reference runtime would.

    fold-constants asks it for every op it does not evaluate itself (numpy covers only the ops that
    move elements), so a folded value is what the runtime computes. ``inputs`` holds one numpy array
    per node input (None for an omitted optional one); ``graph`` is the graph holding the node (its
    root carries the opset imports and IR version). Returns one result per node output; raises
    ``graphmill.ir.ExecutionError`` when the node cannot be evaluated on its own (fold-constants then
    leaves it and notes why).
    """

    def evaluate(self, node: Node, inputs: Sequence[Any], graph: Graph) -> list[Any]: ...


@runtime_checkable
class ShapeInferencer(Protocol):
    """A second opinion on types and shapes, for outputs of ops graphmill's op registry has no entry for.

    ``refine`` fills in, in place, the types of values that are still incomplete (unknown element
    type, rank or dimension) after ``graphmill.ir.ops.infer_types``; it only adds information (never
    overrides a declared type or a symbol) and records what it did and what failed in ``report``.
    """

    def refine(self, graph: Graph, report: InferenceReport) -> None: ...

    def type_error(self, graph: Graph) -> str | None:
        """The first place ``graph`` is ill-typed for the op schemas (an Add of float64 and float32, a value
        whose declared type is not what its producer makes), or None: what ``--verify-each`` checks after
        every changing pass beyond the IR's structure. An implementation without schemas returns None."""
        ...


@dataclass
class Providers:
    """The services passes use from the parts they must not import (see the module docstring)."""

    node_evaluator: NodeEvaluator | None = None
    shape_inferencer: ShapeInferencer | None = None


_default_factory: Callable[[], Providers] | None = None
_defaults: Providers | None = None


def set_default_providers(factory: Callable[[], Providers] | None) -> None:
    """Install what a ``PassContext`` built without providers uses (``None`` removes it).

    A factory rather than instances, so nothing heavy (ONNX Runtime) is imported before a pass
    first needs it; it is called once, on first use.
    """
    global _default_factory, _defaults
    _default_factory = factory
    _defaults = None


def default_providers() -> Providers:
    """The installed default providers (empty when none were installed)."""
    global _defaults
    if _defaults is None:
        _defaults = _default_factory() if _default_factory is not None else Providers()
    return _defaults


_UNSET: Any = object()


class PassContext:
    """State shared by the passes of one run: analyses cache, seed, the exactness allowed, providers.

    ``node_evaluator`` / ``shape_inferencer``: the services of ``NodeEvaluator`` and
    ``ShapeInferencer``; left out, the installed defaults (``default_providers()``) are used;
    ``None`` means none (fold-constants then folds only what it evaluates with numpy, and shape
    inference uses the op registry alone). ``cost_model``: a ``graphmill.ir.cost.CostModel`` (op time,
    transfer time, memory) for the passes that weigh costs; no default.
    """

    def __init__(self, *, seed: int = 0, allow: Iterable[str] = (EXACT, REASSOCIATING),
                 node_evaluator: NodeEvaluator | None = _UNSET,
                 shape_inferencer: ShapeInferencer | None = _UNSET, cost_model: Any = None) -> None:
        self._node_evaluator = node_evaluator
        # a graphmill.ir.cost.CostModel, for passes that weigh alternatives (pipeline-partition, placement);
        # None: such a pass asks for one in its error message
        self.cost_model = cost_model
        self._shape_inferencer = shape_inferencer
        self.seed = seed
        self.allow = set(allow)
        bad = self.allow - set(EXACTNESS)
        if bad:
            raise UserInputError(f"unknown exactness level(s) {sorted(bad)}; known: {', '.join(EXACTNESS)}")
        # (analysis name, id(graph)) -> (weak reference to the graph, result): one context may serve several graphs
        # (a PassManager reused on a second model, a pass asking about a subgraph). The reference tells a graph
        # from a later one that got the same id; the entries of a graph go when it does (holding it kept every
        # graph a long-lived context had seen alive, weights included)
        self._cache: dict[tuple[str, int], tuple[weakref.ref, Any]] = {}
        self.computed: dict[str, int] = {}  # analysis name -> times computed (for reports and tests)

    def analysis(self, name: str, graph: Graph) -> Any:
        _load_builtin_passes()
        entry = self._cache.get((name, id(graph)))
        if entry is None or entry[0]() is not graph:
            try:
                cls = _ANALYSES[name]
            except KeyError:
                raise UserInputError(f"unknown analysis {name!r}{did_you_mean(name, _ANALYSES)}") from None
            key = (name, id(graph))
            entry = (weakref.ref(graph, partial(_drop_entry, self._cache, key)), cls().compute(graph, self))
            self._cache[key] = entry
            self.computed[name] = self.computed.get(name, 0) + 1
        return entry[1]

    def cached(self) -> set[str]:
        """The names of the analyses cached for any graph."""
        return {name for name, _ in self._cache}

    def stale_analyses(self, graph: Graph) -> list[str]:
        """The verifiable analyses cached for ``graph`` whose result, computed afresh, differs from the cached one:
        a pass that changed the graph declared them preserved, and they are not."""
        stale = []
        for (name, gid), (ref, cached) in list(self._cache.items()):
            if gid != id(graph) or ref() is not graph or not _ANALYSES[name].verifiable:
                continue
            if not _same(_ANALYSES[name]().compute(graph, self), cached):
                stale.append(name)
        return sorted(stale)

    def invalidate(self, preserved: frozenset[str] | str = frozenset()) -> None:
        """Drop cached analyses a changing pass did not declare preserved."""
        if preserved == "all":
            return
        for key in list(self._cache):
            if key[0] not in preserved:
                self._cache.pop(key, None)  # a dead graph's entry may have gone meanwhile (its weakref callback)

    def allows(self, exactness: str) -> bool:
        return exactness in self.allow

    @property
    def node_evaluator(self) -> NodeEvaluator | None:
        if self._node_evaluator is _UNSET:
            self._node_evaluator = default_providers().node_evaluator
        return self._node_evaluator

    @property
    def shape_inferencer(self) -> ShapeInferencer | None:
        if self._shape_inferencer is _UNSET:
            self._shape_inferencer = default_providers().shape_inferencer
        return self._shape_inferencer


def _same(a: Any, b: Any) -> bool:
    """Equal results of an analysis; numpy arrays (in containers too) compared by value (``!=`` of arrays has no
    truth value: a plugin's array-valued analysis failed its pass under --verify-each, a reviewer found)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a == b)


def _drop_entry(cache: dict, key: tuple, ref: weakref.ref) -> None:
    """A cached analysis's graph died: drop its entry (unless a later graph of the same id has replaced it)."""
    entry = cache.get(key)
    if entry is not None and entry[0] is ref:
        del cache[key]


class Pass:
    """Base of every pass. Subclasses set ``name``, ``options``, ``preserves`` and implement ``run``."""

    name: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    preserves: ClassVar[frozenset[str] | str] = frozenset()
    exactness: ClassVar[str] = EXACT
    #: True for a pass that changes the model's input and output sizes on purpose (compound-scale's resolution):
    #: ``--verify-each`` then holds it to the names, element types and ranks of the interface, not its sizes
    resizes_interface: ClassVar[bool] = False

    def __init__(self, **opts: Any) -> None:
        where = f"pass {self.name!r}"
        known = {o.name: o for o in self.options}
        for k in opts:
            if k not in known:
                raise UserInputError(f"{where} has no option {k!r}{did_you_mean(k, known)}"
                                     + (f"; its options: {', '.join(known)}" if known else "; it takes no options"))
        self.opts: dict[str, Any] = {o.name: o.coerce(opts[o.name], where) if o.name in opts else o.default
                                     for o in self.options}
        self.given = dict(opts)

    def __getattr__(self, item: str) -> Any:
        opts = self.__dict__.get("opts")
        if opts is not None and item in opts:
            return opts[item]
        raise AttributeError(item)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def doc(cls) -> str:
        return (cls.__doc__ or "").strip()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.given.items())
        return f"{self.name}({args})" if args else self.name


_PASSES: dict[str, type[Pass]] = {}


def _rule_names(cls: type) -> list[str]:
    """The names of a pass's rewrite rules (a ``rules`` tuple of ``Rule``: RewritePass's), else none."""
    from graphmill.ir.rewrite import Rule

    rules = getattr(cls, "rules", None)
    if not isinstance(rules, (tuple, list)):
        return []
    return [r.name for r in rules if isinstance(r, Rule)]


def _check_rule_names(cls: type[Pass]) -> None:
    """Rule names are unique across passes: ``--explain-match`` and the reports name a rule alone, so a plugin's
    ``mul-one`` beside simplify's was explained as simplify's, a pass the schedule never ran."""
    mine = _rule_names(cls)
    twice = sorted({n for n in mine if mine.count(n) > 1})
    if twice:
        raise ValueError(f"pass {cls.name!r}: rule {twice[0]!r} is listed twice")
    for other in _PASSES.values():
        if other is cls or other.name == cls.name:
            continue
        clash = set(mine) & set(_rule_names(other))
        if clash:
            raise ValueError(f"pass {cls.name!r}: rule {sorted(clash)[0]!r} has the name of a rule of pass "
                             f"{other.name!r}; rule names are unique (--explain-match and the reports name them)")


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make ``cls`` runnable by its ``name`` in schedules, the DSL, ``run_passes`` and
    ``graphmill optimize -p``. Checked here, where the pass is written, not when a schedule first runs it: a
    kebab-case name registered once, a known exactness, and option defaults their own options accept
    (``ValueError``: a programming error; ``api.load_passes`` turns it into a one-line error naming the file)."""
    if not (isinstance(cls, type) and issubclass(cls, Pass)):  # an AttributeError from deep inside (an outside check)
        raise ValueError(f"register_pass takes a subclass of graphmill.passes.Pass, got {cls!r:.60}")
    if not isinstance(cls.name, str) or not cls.name or cls.name != cls.name.lower() or "_" in cls.name \
            or " " in cls.name:
        raise ValueError(f"pass name {cls.name!r} must be kebab-case")
    if cls.name in _PASSES and _PASSES[cls.name] is not cls:
        raise ValueError(f"pass {cls.name!r} is registered twice{_builtin_hint(_PASSES[cls.name])}")
    if cls.exactness not in EXACTNESS:
        raise ValueError(f"pass {cls.name!r}: exactness must be one of {EXACTNESS}")
    for opt in cls.options:  # a default its own option refuses fails where the pass is written, not when it runs
        if opt.default is not None:
            try:
                opt.coerce(opt.default, f"pass {cls.name!r}")
            except UserInputError as e:
                raise ValueError(f"{e} (its default)") from None
    cls.preserves = _preserved_names(cls)
    _check_rule_names(cls)
    _PASSES[cls.name] = cls
    return cls


def _preserved_names(cls: type[Pass]) -> frozenset[str] | str:
    """``preserves`` as "all" or a frozenset of names. A plain string other than "all" was matched as a substring
    (``preserves = "use-counts"`` kept an analysis named ``counts`` cached: an outside check); it is one name.
    The names are checked against the registered analyses when a pass manager builds the pass
    (``check_preserved``): an analysis may be registered after the pass that preserves it."""
    given = cls.preserves
    if given == "all":
        return "all"
    if isinstance(given, str):
        return frozenset({given})
    if not all(isinstance(n, str) for n in given):
        raise ValueError(f"pass {cls.name!r}: preserves must be 'all' or a set of analysis names, not {given!r}")
    return frozenset(given)


def check_preserved(cls: type[Pass]) -> None:
    """Refuse a pass that declares an analysis preserved that no one registered (a misspelling was accepted, and
    the analysis it meant was then dropped after every change it made). Normalizes ``preserves`` first, as
    ``register_pass`` does: a pass object run unregistered had its one name as a string read letter by letter."""
    _load_builtin_passes()
    cls.preserves = _preserved_names(cls)
    if cls.preserves == "all":
        return
    for name in sorted(cls.preserves):
        if name not in _ANALYSES:
            raise UserInputError(f"pass {cls.name!r} declares unknown analysis {name!r} preserved"
                                 f"{did_you_mean(name, _ANALYSES)} (preserves: 'all' or a set of analysis names: "
                                 f"{', '.join(sorted(_ANALYSES))})")


def pass_class(name: str) -> type[Pass]:
    _load_builtin_passes()
    try:
        return _PASSES[name]
    except KeyError:
        raise UserInputError(f"unknown pass {name!r}{did_you_mean(name, _PASSES)}") from None


def registered_passes() -> dict[str, type[Pass]]:
    _load_builtin_passes()
    return dict(sorted(_PASSES.items()))


_builtin_loaded = False


def _load_builtin_passes() -> None:
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        import graphmill.passes.analyses  # noqa: F401  (registers)
        import graphmill.passes.builtin  # noqa: F401  (registers)

