"""The pass manager: runs a schedule over a graph, in place, with instruments.

A failing pass is reported with where it sat in the schedule and the passes
that ran before it; with ``keep_snapshots`` the manager also keeps the graph as
it was before the failing pass, so the caller can write a reproducer. Without
snapshots (they cost a graph copy per pass) the failure lists the steps that
ran, so a caller holding the input can replay them to the same point.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from graphmill.ir import Graph, GraphmillError, UserInputError, require_graph
from graphmill.util.errors import names_a_file
from graphmill.util.interrupts import is_interrupt
from graphmill.ir.gc_pause import collector_paused

from .base import GraphNote, Pass, PassContext, PassResult, check_preserved, pass_class
from .instruments import ChangeClaimCheck, PassCheckError, PassStepInfo, PreservedAnalysesCheck, VerifyEach
from .schedule import Call, Fixpoint, Repeat, Run, Schedule, Step

log = logging.getLogger("graphmill.passes")


class PassInputError(UserInputError):
    """A pass refused the graph it was given (compound-scale on a graph without stages): the input is the
    user's to change, not a bug in the pass, so it is reported as bad input (exit 2), with no reproducer."""

    def __init__(self, pass_name: str, error: UserInputError) -> None:
        self.pass_name = pass_name
        # a refusal of another file the pass reads (its policy) is about that file: said first, as its loader says
        # it ("m.onnx: pass 'learned-optimize' cannot run on this model: p.npz: no policy there" blamed the model)
        super().__init__(f"{error} (pass {pass_name!r})" if names_a_file(str(error)) else
                         f"pass {pass_name!r} cannot run on this model: {error}")


class PassFailure(GraphmillError):
    """A pass raised, or an instrument rejected what it did.

    ``before`` is the graph as it was before that pass (when snapshots are kept),
    ``history`` the names of the passes that ran before it.
    """

    def __init__(self, step: PassStepInfo, cause: BaseException, before: Graph | None, history: list[str],
                 ran: list[Run] | None = None) -> None:
        self.step = step
        self.cause = cause
        self.before = before
        self.history = history
        self.ran = list(ran or [])  # the pass steps executed before the failing one, in order (for replay)
        ran = ", ".join(history[-8:]) if history else "none"
        if len(history) > 8:
            ran = "..., " + ran
        if isinstance(cause, PassCheckError):
            what = str(cause)
        elif getattr(cause, "pass_check", False):  # an instrument's verdict, e.g. a numerics mismatch
            what = f"after {step}: {cause}"
        else:
            what = f"{step} failed: {type(cause).__name__}: {cause}"
        super().__init__(f"{what} [passes run before it: {ran}]")


@dataclass
class PassRecord:
    name: str
    path: str
    changed: bool
    seconds: float
    stats: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class PipelineResult:
    changed: bool
    records: list[PassRecord]
    notes: list[str] = field(default_factory=list)

    def stats(self) -> dict[str, dict[str, float]]:
        """Statistics summed per pass name."""
        out: dict[str, dict[str, float]] = {}
        for r in self.records:
            agg = out.setdefault(r.name, {"runs": 0, "changed": 0})
            agg["runs"] += 1
            agg["changed"] += int(r.changed)
            for k, v in r.stats.items():
                agg[k] = agg.get(k, 0) + v
        return out


def as_schedule(spec: Schedule | str | Sequence[Pass | str | Step]) -> Schedule:
    """A ``Schedule`` from a schedule, inline text, or a list of passes, pass names and steps (``Run``,
    ``Fixpoint``, ``Repeat``, ``Call``: a schedule's own parts). Anything else is refused naming its type: a
    ``Run`` was read as a pass name, "unknown pass \"Run(name='dce', options={})\"" (an outside check)."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        from graphmill.passes.dsl import parse_schedule

        return parse_schedule(spec)
    body: list[Step] = []
    for p in spec:
        if isinstance(p, Pass):
            body.append(Run(p.name, dict(p.given), instance=p))  # not rebuilt from its name: an unregistered
            # pass was "unknown", and a registered one lost what its constructor kept besides its options
        elif isinstance(p, (Run, Fixpoint, Repeat, Call)):
            body.append(p)
        elif isinstance(p, str):
            body.append(Run(p))
        else:
            raise UserInputError(f"a schedule's list holds passes (Pass objects), pass names and steps (Run, "
                                 f"Fixpoint, Repeat, Call), not {type(p).__name__} {p!r}")
    return Schedule("main", body)


class PassManager:
    """Runs a schedule (a ``Schedule``, DSL text, or a list of passes and names) over a graph, as MLIR's pass
    manager does: ``fixpoint``/``repeat`` steps, instruments around every pass (timing, IR printing, the checks
    of ``verify_each``), a ``PassFailure`` naming the failing pass, its place in the schedule and the passes run
    before it (with ``keep_snapshots``, the graph before it). ``run(graph)`` returns a ``PipelineResult`` (a record
    per pass run)."""

    def __init__(self, schedule: Schedule | str | Sequence[Pass | str], instruments: Iterable[Any] = (), *,
                 verify_each: bool = False, keep_snapshots: bool = False, ctx: PassContext | None = None) -> None:
        self.schedule = as_schedule(schedule)
        self.schedule.check_limits()  # as the DSL checks its text: a schedule built in Python had no limits
        self.instruments = list(instruments)
        # first the graph's verification, then the claims (an analysis recomputed on a broken graph would crash
        # before verify could say what is broken), all before the user's instruments
        checks = [check() for check in ((VerifyEach, ChangeClaimCheck, PreservedAnalysesCheck) if verify_each else ())
                  if not any(isinstance(i, check) for i in self.instruments)]
        self.instruments[:0] = checks
        self.keep_snapshots = keep_snapshots
        if ctx is not None and not isinstance(ctx, PassContext):  # else the first pass that reads it fails, or none
            raise TypeError(f"PassManager: ctx must be a PassContext, got {type(ctx).__name__} {ctx!r:.60}")
        self.ctx = ctx or PassContext()
        # Build every pass now: option errors (and a preserved analysis nobody registered) surface before anything runs.
        self._passes: dict[int, Pass] = {}
        for run in self.schedule.runs():
            cls = type(run.instance) if run.instance is not None else pass_class(run.name)
            check_preserved(cls)
            self._passes[id(run)] = run.instance if run.instance is not None else cls(**run.options)

    def _call(self, hook: str, *args: Any) -> None:
        for inst in self.instruments:
            fn = getattr(inst, hook, None)
            if fn is not None:
                fn(*args)

    @collector_paused()
    def run(self, graph: Graph) -> PipelineResult:
        require_graph(graph, "passes.PassManager(...).run")  # a path was "pass 'dce' failed: AttributeError"
        self._records: list[PassRecord] = []
        self._ran: list[Run] = []
        self._notes: list[str] = []
        self._call("enter_pipeline", graph, self.ctx)
        changed = self._run_steps(self.schedule.body, graph, self.schedule.name)
        self._call("exit_pipeline", graph, self.ctx)
        for record in self._records:  # notes about what a pass left undone, against the final graph
            record.notes = final_notes(record.notes, graph)
        return PipelineResult(changed, self._records, self._notes)

    def _run_steps(self, steps: list[Step], graph: Graph, path: str) -> bool:
        changed = False
        for step in steps:
            if isinstance(step, Run):
                changed |= self._run_pass(step, graph, path)
            elif isinstance(step, Call):
                changed |= self._run_steps(step.schedule.body, graph, f"{path} > {step.schedule.name}")
            elif isinstance(step, Repeat):
                for i in range(step.count):
                    changed |= self._run_steps(step.body, graph, f"{path} > repeat#{i + 1}")
            elif isinstance(step, Fixpoint):
                for i in range(step.max_iters):
                    if not self._run_steps(step.body, graph, f"{path} > fixpoint#{i + 1}"):
                        break
                    changed = True
                else:
                    note = (f"{path}: fixpoint did not converge in {step.max_iters} iteration"
                            + ("s" if step.max_iters != 1 else ""))
                    self._notes.append(note)
                    log.info(note)  # a note of the result (the CLI prints it once, in its summary), not a warning
        return changed

    def _run_pass(self, run: Run, graph: Graph, path: str) -> bool:
        p = self._passes[id(run)]
        info = PassStepInfo(p.name, len(self._records) + 1, f"{path} > {p.name}", p)
        before = graph.copy() if self.keep_snapshots else None
        history = [r.name for r in self._records]
        try:
            self._call("before_pass", info, graph, self.ctx)
            t0 = time.perf_counter()  # the pass alone: the instruments' checks around it are not its time
            try:
                result = p.run(graph, self.ctx)
            except UserInputError as e:
                raise PassInputError(p.name, e) from e
            seconds = info.seconds = time.perf_counter() - t0
            if not isinstance(result, PassResult):
                raise TypeError(f"pass {p.name!r} returned {type(result).__name__}, not PassResult")
            check_stats(p.name, result.stats)
            if result.changed:
                self.ctx.invalidate(p.preserves)
            self._call("after_pass", info, graph, self.ctx, result)
        except (PassFailure, PassInputError):
            raise
        except KeyboardInterrupt:
            raise
        except (Exception, SystemExit) as e:  # noqa: BLE001 -- any crash inside a pass is reported with its context
            if is_interrupt(e):  # a Ctrl-C numba wrapped in a SystemError (util.interrupts.INTERRUPTS)
                raise KeyboardInterrupt from e
            # SystemExit too: a plugin's sys.exit(0) ended `optimize` with exit 0 and nothing written
            raise PassFailure(info, e, before, history, self._ran) from e
        self._ran.append(run)
        stats = {k: int(v) if isinstance(v, numbers.Integral) else float(v) for k, v in result.stats.items()}
        self._records.append(PassRecord(p.name, info.path, result.changed, seconds, stats,
                                        list(result.notes)))
        log.info("%-24s %s %.2f ms %s", p.name, "changed" if result.changed else "       ", seconds * 1e3,
                 result.stats or "")
        return result.changed


def check_stats(name: str, stats: object) -> None:
    """``TypeError`` unless ``stats`` maps names to finite numbers: ``PipelineResult.stats`` sums them, and the
    report writes them as JSON (a plugin's ``{"v": "b"}`` crashed the sum; ``nan`` wrote a file strict parsers
    refuse)."""
    if not isinstance(stats, dict):
        raise TypeError(f"pass {name!r} returned stats of type {type(stats).__name__}, not a dict of numbers")
    for key, value in stats.items():
        if not isinstance(key, str) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise TypeError(f"pass {name!r} returned stat {key!r} = {value!r:.40}: stats map names to finite "
                            "numbers")


def final_notes(notes: Sequence["str | GraphNote"], graph: Graph) -> list[str]:
    """Text notes as they are; ``GraphNote``s worded for ``graph``, dropped when they have nothing left to say."""
    out = []
    for note in notes:
        text = note.describe(graph) if isinstance(note, GraphNote) else note
        if text:
            out.append(text)
    return out


def run_passes(graph: Graph, schedule: Schedule | str | Sequence[Pass | str], **kwargs: Any) -> PipelineResult:
    """Run a schedule on ``graph`` in place (see ``PassManager`` for the keyword arguments)."""
    require_graph(graph, "passes.run_passes")
    return PassManager(schedule, **kwargs).run(graph)
