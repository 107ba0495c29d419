"""Instruments: plain classes the pass manager calls around every pass (TVM's PassInstrument idea).

An instrument implements any of::

    enter_pipeline(graph, ctx)                 before the first pass
    before_pass(step, graph, ctx)              ``step`` is a PassStepInfo
    after_pass(step, graph, ctx, result)       after a pass returned
    exit_pipeline(graph, ctx)                  after the last pass

Raising from ``after_pass`` stops the run and names the pass (that is how
``VerifyEach`` and the numerics check fail a pass). Instruments that need a
backend (ONNX Runtime's numerics check) live with that backend and are duck-typed.
"""

from __future__ import annotations

import difflib
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, TextIO

from graphmill.ir import Graph, GraphmillError, TensorType, find_problems
from graphmill.ir.fingerprint import graph_state
from graphmill.ir.ops.infer import input_symbols
from graphmill.ir.printer import format_graph

from .base import PassContext, PassResult


@dataclass
class PassStepInfo:
    """Which pass is running, and where in the schedule (``default > fixpoint#2 > cse``)."""

    name: str
    index: int  # 1-based count of passes run so far in this pipeline
    path: str
    pass_obj: Any = None
    seconds: float | None = None  # the pass's own run time, set once it returned (after_pass reads it)

    def __str__(self) -> str:
        return f"pass {self.name!r} (#{self.index}, {self.path})"


class PassCheckError(GraphmillError):
    """An instrument found that a pass broke the graph (structure, interface or numerics)."""

    def __init__(self, step: PassStepInfo, message: str) -> None:
        self.step = step
        super().__init__(f"after {step}: {message}")


class TimePasses:
    """``--time-passes``: wall time per pass name, summed over its runs: the pass's own run, as the pass manager
    measured it (``PassStepInfo.seconds``), not the checks other instruments make around it (``--verify-each``'s
    verification was counted in: dce 5.27 ms with it against 0.19 ms without; an outside check)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self._start = 0.0
        self.wall = 0.0

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        self._start = time.perf_counter()

    def after_pass(self, step: PassStepInfo, graph: Graph, ctx: PassContext, result: PassResult) -> None:
        self.total[step.name] += step.seconds  # set by the PassManager, the one caller of after_pass
        self.count[step.name] += 1

    def exit_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        self.wall = time.perf_counter() - self._start

    def rows(self) -> list[dict]:
        return [{"pass": k, "runs": self.count[k], "seconds": round(v, 6)}
                for k, v in sorted(self.total.items(), key=lambda kv: -kv[1])]

    def table(self) -> str:
        lines = [f"{'pass':<28}{'runs':>6}{'ms':>10}{'%':>7}"]
        total = sum(self.total.values()) or 1e-12
        for r in self.rows():
            ms = r["seconds"] * 1e3
            lines.append(f"{r['pass']:<28}{r['runs']:>6}{ms:>10.2f}{100 * r['seconds'] / total:>6.1f}%")
        lines.append(f"{'total (passes)':<28}{sum(self.count.values()):>6}{total * 1e3:>10.2f}")
        return "\n".join(lines)


class PrintIR:
    """``--print-ir-after=PASS|all`` and ``--print-ir-diff``: the IR text after passes, or its diff."""

    def __init__(self, after: str | set[str] = "all", *, diff: bool = False, only_changed: bool = True,
                 stream: TextIO | None = None) -> None:
        self.after = after if isinstance(after, str) else set(after)
        self.diff = diff
        self.only_changed = only_changed
        self.stream = stream or sys.stderr
        self._before = ""

    def _wants(self, name: str) -> bool:
        if isinstance(self.after, set):
            return "all" in self.after or name in self.after
        return self.after in ("all", name)

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        if self.diff:
            self._before = format_graph(graph)

    def _named(self, name: str) -> bool:
        """Asked for by name, not only through 'all'."""
        return name in self.after if isinstance(self.after, set) else self.after == name

    def after_pass(self, step: PassStepInfo, graph: Graph, ctx: PassContext, result: PassResult) -> None:
        if not self._wants(step.name) or (self.only_changed and not result.changed):
            if self.diff and result.changed:
                self._before = format_graph(graph)
            elif self._named(step.name) and not result.changed:  # silence would read as "never ran"
                print(f"// ----- IR after {step}: unchanged -----", file=self.stream)
            return
        text = format_graph(graph)
        if self.diff:
            body = "".join(difflib.unified_diff(self._before.splitlines(True), text.splitlines(True),
                                                "before", "after", n=1))
            self._before = text
            print(f"// ----- IR diff after {step} -----\n{body}", file=self.stream)
        else:
            print(f"// ----- IR after {step} -----\n{text}", file=self.stream)


class ChangeClaimCheck:
    """A pass that returns ``changed=False`` must have left the graph as it was (``ir.fingerprint``).

    The manager keeps cached analyses and the other checks skip a pass on its word; a pass that edited the
    graph and said it did not was found only at the next pass reporting a change, which was then blamed,
    and whose reproducer (taken after the edit) did not reproduce. ``--verify-each`` and
    ``--check-numerics`` run this check.
    """

    def __init__(self) -> None:
        self._before: tuple | None = None

    def before_pass(self, step: PassStepInfo, graph: Graph, ctx: PassContext) -> None:
        self._before = graph_state(graph)

    def after_pass(self, step: PassStepInfo, graph: Graph, ctx: PassContext, result: PassResult) -> None:
        if not result.changed and self._before is not None and graph_state(graph) != self._before:
            raise PassCheckError(step, "it returned changed=False but changed the graph (a pass must report "
                                       "every edit: cached analyses and the checks after it rely on that)")


class PreservedAnalysesCheck:
    """A pass that changed the graph may declare preserved only the analyses its edits leave true: each one it
    kept cached is computed afresh and compared (LLVM's verify-analysis-invalidation). A pass declaring
    ``preserves = "all"`` while adding nodes left the next pass reading stale use counts, and nothing said so
    (an outside check). ``--verify-each`` runs this check."""

    def after_pass(self, step: PassStepInfo, graph: Graph, ctx: PassContext, result: PassResult) -> None:
        if result.changed:
            stale = ctx.stale_analyses(graph)
            if stale:
                raise PassCheckError(step, f"it declares analysis {stale[0]!r} preserved, but the graph it left gives "
                                           f"another {stale[0]!r} (declare preserved only what its edits keep true)")


class VerifyEach:
    """``--verify-each``: after every pass, the graph must verify and keep its interface.

    Beyond ``verify()``: a graph output must not disappear or change its element
    type, its rank, a symbolic dimension into a number (a pass that silently
    specialises ``N`` to 1 breaks every other batch size) or a number into a
    symbol (a pass that drops a Reshape pinning ``N`` to 1 lets other sizes
    through), and graph inputs must stay as they were. The declared types are
    checked, and so are the types the op registry infers afresh for the outputs
    from the inputs alone: a pass that keeps an output's old declared type while
    computing another shape (a rewrite copies the replaced value's type) shows
    there. An initializer also listed as an input may go only where it is a
    weight rather than an overridable default: below IR version 4, or where the
    pass was told so (``input_initializers=constant``).
    """

    def __init__(self) -> None:
        self._inputs: list[tuple[str, Any]] = []
        self._outputs: list[tuple[str, Any]] = []
        self._inferred: list[Any] = []
        self._typed = False  # whether the input graph passed the schema type check (then every pass must keep it)

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        self._inputs = [(v.name, v.type, v.is_initializer) for v in graph.inputs]
        self._outputs = [(v.name, v.type) for v in graph.outputs]
        problems = find_problems(graph)
        if problems:
            raise GraphmillError(f"the input graph does not verify: {problems[0]}")
        self._inferred = fresh_output_types(graph)
        # A model that is already ill-typed (ONNX Runtime may still run it) is not blamed on the first pass.
        self._typed = type_error(graph, ctx) is None

    def after_pass(self, step: PassStepInfo, graph: Graph, ctx: PassContext, result: PassResult) -> None:
        problems = find_problems(graph)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise PassCheckError(step, f"the graph does not verify: {problems[0]}{more}")
        resizes = bool(getattr(step.pass_obj, "resizes_interface", False))
        changed = output_change(self._outputs, graph, sizes=not resizes) or (
            input_change([(n, t) for n, t, weight in self._inputs if not weight], graph) if resizes else None)
        if changed:
            raise PassCheckError(step, changed)
        if result.changed and self._typed:
            wrong = type_error(graph, ctx)
            if wrong is not None:
                raise PassCheckError(step, f"the graph is ill-typed: {wrong}")
        if resizes:  # new sizes on purpose: they are what the later passes are held to
            self._outputs = [(v.name, v.type) for v in graph.outputs]
            self._inputs = [(v.name, v.type, v.is_initializer) for v in graph.inputs]
            self._inferred = fresh_output_types(graph)
            return
        if result.changed:
            inferred = fresh_output_types(graph)
            for (name, _), before, after in zip(self._outputs, self._inferred, inferred):
                msg = _interface_change(before, after, unknown_ok=True)
                if msg:
                    raise PassCheckError(step, f"graph output {name!r}, its type inferred afresh from the inputs, {msg}")
            self._inferred = inferred
        now = [(v.name, v.type, v.is_initializer) for v in graph.inputs]
        if now != self._inputs:
            from .cleanup.common import input_initializers_are_constant

            opts = getattr(step.pass_obj, "opts", None) or {}
            if not input_initializers_are_constant(graph, opts.get("input_initializers", "auto")):
                raise PassCheckError(step, "the graph's inputs changed")
            kept = [i for i in self._inputs if i in now or not i[2]]  # only weights may go
            if now != kept:
                raise PassCheckError(step, "the graph's inputs changed")
            self._inputs = now


def output_change(before: list[tuple[str, Any]], graph: Graph, *, sizes: bool = True) -> str | None:
    """How ``graph``'s outputs differ, as its callers see them, from ``before`` (``(name, type)`` of each output
    when the schedule began): their number, a type, a name (ONNX Runtime sessions and the comparison look outputs
    up by name); None when they do not. ``sizes=False`` leaves the sizes out (element type and rank stay): a
    whole schedule may change them on purpose (compound-scale's resolution), where a single pass of
    ``--verify-each`` is judged with them."""
    if len(graph.outputs) != len(before):
        return f"the graph had {len(before)} outputs and now has {len(graph.outputs)}"
    bound = input_symbols(graph)
    for (name, was), v in zip(before, graph.outputs):
        msg = _interface_change(was if sizes else _sizeless(was), v.type if sizes else _sizeless(v.type), shown=was,
                                bound=bound)
        if msg:
            return f"graph output {name!r} {msg}"
        if v.name != name:
            return f"graph output {name!r} was renamed to {v.name!r}"
    return None


def input_change(before: list[tuple[str, Any]], graph: Graph) -> str | None:
    """How ``graph``'s inputs that are not weights differ from ``before`` (``(name, type)`` of each when the
    schedule began) in number, name, element type or rank: the comparison feeds inputs by position, so a renamed
    input passed it. Sizes may change (compound-scale's resolution); weights may go (folded)."""
    now = [v for v in graph.inputs if not v.is_initializer]
    if len(now) != len(before):
        return f"the graph had {len(before)} inputs and now has {len(now)}"
    for (name, was), v in zip(before, now):
        if v.name != name:
            return f"graph input {name!r} was renamed to {v.name!r}"
        msg = _interface_change(_sizeless(was), _sizeless(v.type))
        if msg:
            return f"graph input {name!r} {msg}"
    return None


def _sizeless(t: Any) -> Any:
    """``t`` with every dimension unknown (element type and rank kept)."""
    if isinstance(t, TensorType) and t.shape is not None:
        return TensorType(t.dtype, tuple(None for _ in t.shape))
    return t


def type_error(graph: Graph, ctx: PassContext) -> str | None:
    """The context's shape inferencer's schema type check (onnx's, by default), or None without one. graphmill-
    domain ops are checked as every write and ONNX Runtime run sees them, lowered (a copy): a plugin's fused op
    with a registered lowering failed the check, "No opset import for domain graphmill" (an outside check); one
    without a lowering is named."""
    check = getattr(ctx.shape_inferencer, "type_error", None)
    if check is None:
        return None
    from .lowering import lowered_copy, unlowered_node

    graph = lowered_copy(graph)
    left = unlowered_node(graph)
    if left is not None:
        return f"{left.describe()} of domain {left.domain} has no lowering to standard ONNX"
    return check(graph)


def fresh_output_types(graph: Graph) -> list[Any]:
    """The graph outputs' types as the op registry infers them from the graph inputs and constants alone,
    ignoring every type a node output carries (a copy is inferred; the graph is not touched). Outputs of ops
    the registry does not know, and what they feed, come out with an unknown shape."""
    from graphmill.ir.ops import infer_types

    copy = graph.copy()
    for node in copy.nodes:
        for v in node.outputs:
            if v is not None and isinstance(v.type, TensorType):
                v.type = TensorType(v.type.dtype, None)
    infer_types(copy, recurse=False)
    return [v.type for v in copy.outputs]


def _interface_change(before: Any, after: Any, *, unknown_ok: bool = False, shown: Any = None,
                      bound: frozenset[str] | None = None) -> str:
    """Why ``after`` is not compatible with ``before`` as a graph output's type, or "" when it is. A
    dimension may become known, or (``unknown_ok``) unknown; a symbol must not become a number nor a
    number a symbol, and the rank and element type must stay. ``shown``: the type a lost shape is quoted as
    (``before`` with its sizes, where the comparison ignores them). ``bound``: the symbols the graph's inputs
    carry, where one other than those may become a number: no input sizes it, so it names a size the model's
    writer did not work out (the TorchScript exporter's ``Resizey_dim_1``), which inference may prove
    (None: every symbol is held)."""
    if not isinstance(before, TensorType):
        return ""
    if not isinstance(after, TensorType):
        if unknown_ok:
            return ""
        return f"lost its type {before}" if after is None else f"changed type from {before} to {after}"
    if before.dtype and after.dtype and before.dtype != after.dtype:
        return f"changed element type from {before.dtype.short_name} to {after.dtype.short_name}"
    if before.shape is not None and after.shape is None:
        return "" if unknown_ok else f"lost its shape {before if shown is None else shown}"
    if before.shape is not None and after.shape is not None:
        if len(before.shape) != len(after.shape):
            return f"changed rank from {before} to {after}"
        for i, (a, b) in enumerate(zip(before.shape, after.shape)):
            if isinstance(a, str) and isinstance(b, int) and (bound is None or a in bound):
                return f"had symbolic dimension {i} {a!r}, which a pass turned into the constant {b}"
            if isinstance(a, int) and isinstance(b, str):
                return f"had dimension {i} = {a}, which a pass made the symbol {b!r} (other sizes now get through)"
            if isinstance(a, int) and isinstance(b, int) and a != b:
                return f"changed dimension {i} from {a} to {b}"
            if a is not None and b is None and not unknown_ok:
                return f"lost dimension {i} ({a!r}): {before} became {after}"
    return ""
