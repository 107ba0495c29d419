"""``graphmill.optimize()``: run a schedule with the instruments a user asked for, and report.

This is where the parts meet (passes, the ONNX Runtime reference, file I/O for
reproducers), so it sits at the top of the package like the CLI.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence, TextIO

import numpy as np

from graphmill.backends import onnxruntime as ortb
from graphmill.backends.onnxruntime import check_tolerances
from graphmill.frontend import save
from graphmill.frontend.onnx_shape_inference import infer_shapes
from graphmill.util.files import (MODEL_FILE_LIMIT, atomic_write_bytes, check_out_folder, check_output_paths,
                                  read_user_file)
from graphmill.util.errors import naming_file
from graphmill.util.limits import check_flags, check_seed
from graphmill.util.suggest import closest, did_you_mean
from graphmill.passes.builtin_schedules import BUILTIN_SCHEDULES, builtin_schedule, default_schedule
from graphmill.passes.dsl import load_schedule
from graphmill.passes.plugins import plugin_files
from graphmill.ir import ExecutionError, Graph, GraphmillError, TensorType, UserInputError, find_problems
from graphmill.ir.graph import DECISIONS, drop_decisions
from graphmill.ir.summary import bind_symbols, loose_symbols, summarize, symbols
from graphmill.ir.gc_pause import collector_paused
from graphmill.providers import pass_context
from graphmill.passes.instruments import ChangeClaimCheck, input_change, output_change, type_error
from graphmill.passes import (
    EXACT,
    REASSOCIATING,
    PassFailure,
    PassManager,
    PrintIR,
    Schedule,
    TimePasses,
    as_schedule,
    registered_passes,
)

# The built-in passes load with this module, as imports do, not inside the first optimize() call.
registered_passes()


def resolve_schedule(schedule: Schedule | str | None = None, schedule_file: str | None = None) -> Schedule:
    """``schedule_file`` is a .mill path (``FILE.mill:NAME`` picks one of its schedules) or, when no
    such file exists, the name of a built-in schedule (``-s ort``)."""
    if schedule is not None and schedule_file is not None:
        raise GraphmillError("give a schedule file or an inline schedule, not both")
    if schedule_file is not None:
        if schedule_file in BUILTIN_SCHEDULES and not os.path.exists(schedule_file):
            return builtin_schedule(schedule_file)
        if not os.path.exists(schedule_file.rsplit(":", 1)[0]) and not os.path.exists(schedule_file):
            raise UserInputError(f"{schedule_file}: no such schedule file, and not a built-in schedule"
                                 f"{did_you_mean(schedule_file, BUILTIN_SCHEDULES)} (the built-in ones: "
                                 f"{', '.join(BUILTIN_SCHEDULES)})")
        return load_schedule(schedule_file)
    if schedule is None:
        return default_schedule()
    if isinstance(schedule, os.PathLike):  # a pathlib path of a .mill file: "'PosixPath' object is not iterable"
        schedule = os.fspath(schedule)
    if not isinstance(schedule, (Schedule, str, list, tuple)):
        raise UserInputError(f"schedule {schedule!r:.40}: give a built-in schedule's name, inline text, a .mill "
                             "file, a Schedule or a list of passes")
    if isinstance(schedule, str) and re.fullmatch(r"[^\n{}(),;]+\.mill(:[\w.\-]+)?", schedule.strip()):
        return load_schedule(schedule.strip())  # graphmill.optimize(g, "my.mill"): a file, as the API says
    return as_schedule(schedule)  # inline text; a built-in schedule's name ("ort") is a one-step schedule


def check_print_ir_after(names: Iterable[str], schedule: Schedule) -> None:
    """``--print-ir-after PASS`` must name a pass the schedule runs: a typo would print nothing, silently."""

    running = sorted({r.name for r in schedule.runs()})
    for name in sorted(set(names) - {"all"} - set(running)):
        if name in registered_passes():
            raise UserInputError(f"--print-ir-after {name}: the schedule does not run {name!r} "
                                 f"(it runs {', '.join(running) or 'no pass'})")
        called, todo = {schedule.name}, list(schedule.callees())
        while todo:  # the schedules it calls, at any depth: "unknown pass 'tidy'" of a schedule the file defines
            sub = todo.pop()
            if sub.name not in called:
                called.add(sub.name)
                todo.extend(sub.callees())
        if name in called:
            raise UserInputError(f"--print-ir-after {name}: {name!r} is a schedule, not a pass; name one of the "
                                 f"passes it runs, or use --print-ir-after-all")
        raise UserInputError(f"--print-ir-after {name}: unknown pass {name!r}"
                             f"{did_you_mean(name, running) or did_you_mean(name, registered_passes())}")


@dataclass
class OptimizeReport:
    schedule: str
    schedule_inline: str
    seed: int
    before: dict
    after: dict
    passes: list[dict]
    stats: dict
    notes: list[str] = field(default_factory=list)
    time_passes: list[dict] | None = None
    numerics: dict | None = None
    comparison: dict | None = None
    explain: str | None = None
    learned: dict | None = None  # the learned passes' decisions (api.optimize: ``learned_replay(decisions=True)``)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def check_dims(graph: Graph, dims: dict[str, int] | None) -> None:
    """UserInputError when ``dims`` binds a name that is no symbolic dimension of ``graph``: a typo
    (``--dim n=8`` for ``N``) would otherwise leave the figures per sample without a word; and when a size is
    no integer >= 0, as the CLI's ``--dim NAME=SIZE`` takes them (the Python API counted -2,892,800 MACs for
    ``dims={"N": -1}``, and 2.5 as a size)."""
    if dims is not None and not isinstance(dims, dict):
        raise UserInputError(f"dims must be a dict of symbol names to sizes, got {type(dims).__name__}")
    for k, v in (dims or {}).items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise UserInputError(f"--dim {k}={v!r}: a size is an integer >= 0")
    from graphmill.ir.summary import graph_computed_symbols, with_computed_sizes

    computed = graph_computed_symbols(graph)
    follows = with_computed_sizes({s: (dims or {}).get(s, 1) for s in symbols(graph) if s not in computed}, computed)
    given = sorted(s for s in set(dims or {}) & set(computed) if s in follows)  # one that comes out below 0, or
    # undefined (N - 5 at N = 1), stays a size to give
    if given:
        import ast

        calls = {n.func.id for n in ast.walk(computed[given[0]]) if isinstance(n, ast.Call)}  # Min, Max
        sources = sorted({n.id for n in ast.walk(computed[given[0]]) if isinstance(n, ast.Name)} - calls)
        asked = " ".join(f"--dim {s}=SIZE" for s in sources)  # every one (it asked for the first alone: a review)
        raise UserInputError(f"--dim {given[0]}: a size graph {graph.name!r} computes from {', '.join(sources)}; "
                             f"give {asked} and {given[0]} follows")
    unknown = sorted(set(dims or {}) - set(symbols(graph)))
    if unknown:
        have = [s for s in symbols(graph) if s not in computed]  # Min(512, seq) is seq's, no size to give
        why = "" if closest(unknown[0], have) else (" (a name the file gives a size the graph computes takes that "
                                                    "size, or the name of the size it is computed from)")
        raise UserInputError(f"--dim {unknown[0]}: graph {graph.name!r} has no symbolic dimension named "
                             f"{unknown[0]!r}; its symbols: {', '.join(have) if have else 'none (all sizes fixed)'}"
                             + why)


def model_summary(graph: Graph, *, infer: bool = True, dims: dict[str, int] | None = None) -> dict:
    """What ``graphmill inspect`` reports (``GraphSummary``'s fields plus ``problems``), and the
    before/after figures of ``optimize``: one function, so the two never disagree on a file.

    Types are inferred first (registry, then onnx's inference for the rest) on the graph itself,
    which gains type information (and an exporter's names for computed sizes yield to them: ``ir.ops.infer``):
    an exporter's file often declares no intermediate shapes, and
    without them MACs and the sizes of computed weights are unknown. Symbolic dimensions are bound to
    ``dims`` (default 1). ``problems`` lists what inference found wrong.
    """
    problems: list[str] = []
    if infer:
        report = infer_shapes(graph)
        problems = report.errors + report.conflicts
    check_dims(graph, dims)
    out = summarize(graph, dims).to_dict()
    loose = loose_symbols(graph, dims)
    if infer and out["symbols"] and (out["cost_unknown_nodes"] or loose):
        # sizes inference could not carry as symbols (a Reshape to [L*N, E] from Shape -> Gather -> Mul ->
        # Concat, as torch's MultiheadAttention exports) follow once the symbols are numbers, as the simulator
        # infers them: its out-projection counted there and not here (an outside check); so does an exporter's
        # loose name for a size the graph computes (a Conv1d output's L, bound to 1 above: ``loose_symbols``)
        bound = bind_symbols(graph, {s: v for s, v in out["symbols"].items() if s not in loose})
        named = [(v, i, d) for g in bound.all_graphs() for v in [*g.values(), *g.outputs]
                 if isinstance(v.type, TensorType) and v.type.shape for i, d in enumerate(v.type.shape) if d in loose]
        infer_shapes(bound)
        again = summarize(bound).to_dict()
        out.update({k: again[k] for k in ("macs", "flops", "cost_unknown_nodes", "ops_without_cost")})
        # a loose name computed once the others were numbers: its value, where inference put one in its place
        computed = {d: v.type.shape[i] for v, i, d in named if isinstance(v.type.shape[i], int)}
        out["symbols"] = {s: computed.get(s, v) for s, v in out["symbols"].items() if s in computed or s not in loose
                          or s in again["symbols"]}
        out["defaulted"] = [s for s in out["defaulted"] if s not in computed]
    out["problems"] = problems
    return out


#: the keys of ``model_summary`` an ``OptimizeReport`` keeps for before and after
BRIEF_KEYS = ("nodes", "params", "macs", "flops", "ops", "symbols", "unknown_params", "cost_unknown_nodes")


def _changed_after(records, names) -> bool:
    """Whether a pass changed the graph after the last run of any of ``names`` (a note about "the passes after
    it" said so when compound-scale was the last)."""
    last = max((i for i, r in enumerate(records) if r.name in names and r.changed), default=len(records))
    return any(r.changed for r in records[last + 1:])


def _brief(g: Graph, dims: dict[str, int] | None = None) -> dict:
    s = model_summary(g, dims=dims)
    return {k: s[k] for k in BRIEF_KEYS}


def rerun_command(folder: str, *, rtol: float, atol: float, seed: int, allow: Iterable[str],
                  dims: dict[str, int] | None, load_passes: Iterable[str] = (), verify_each: bool = False,
                  check_numerics: bool = True, model: str | None = None, extra: Sequence[str] = ()) -> str:
    """The command line that reruns a reproducer with every option that decides its outcome (``--verify-each``
    too: without it a pass that broke the graph's interface or its typing reruns without complaint): the failing
    pass on ``before.onnx``, or with ``model`` (the input file) the whole schedule on it, which also reproduces a
    failure that built up over several passes (numbers drifting from the original's, an analysis an earlier pass
    cached: the one-pass rerun passed both; an outside check). ``--check-numerics`` only where the run had it:
    the whole run with it added stopped at an earlier pass that changed the numbers, with another error (an
    outside check). ``extra``: more options of the run that decide it (the devices of a schedule that places ops:
    without them the rerun was refused for want of devices)."""
    folder = os.path.abspath(folder)  # a relative --reproducer-dir failed from any other folder (an outside check)
    start = (os.path.abspath(model), "schedule.mill") if model is not None else (os.path.join(folder, "before.onnx"),
                                                                                "repro.mill")
    args = ["graphmill", "optimize", start[0], "-s", os.path.join(folder, start[1]),
            *(["--check-numerics"] if check_numerics else []), *(["--verify-each"] if verify_each else []),
            "--rtol", repr(rtol), "--atol", repr(atol), "--seed", str(seed)]
    for plugin in load_passes:
        args += ["--load-passes", os.path.abspath(plugin)]
    for level in sorted(set(allow) - {EXACT, REASSOCIATING}):
        args += ["--allow", level]
    for name, size in sorted((dims or {}).items()):
        args += ["--dim", f"{name}={size}"]
    args += [*extra, "-o", os.path.join(folder, "after.onnx")]
    return " ".join(shlex.quote(a) for a in args)


class ReproducerError(GraphmillError):
    """A pass failed or broke the numbers; a reproducer was written to ``folder``."""

    def __init__(self, failure: PassFailure, folder: str, rerun: str | None = None,
                 rerun_all: str | None = None) -> None:
        self.failure = failure
        self.folder = folder
        self.rerun = rerun or rerun_command(folder, rtol=1e-4, atol=1e-5, seed=0, allow=(), dims=None)
        self.rerun_all = rerun_all
        whole = f"; the whole run, for a failure built up over several passes: {rerun_all}" if rerun_all else ""
        super().__init__(f"{failure}; reproducer in {folder} (rerun: {self.rerun}{whole})")


REPRODUCER_FILES = ("before.onnx", "repro.mill", "schedule.mill", "README.txt")


def reproducer_paths(folder: str) -> dict[str, str]:
    """What a reproducer in ``folder`` would write, labelled for messages (``--reproducer-dir DIR (before.onnx)``
    -> path): the files that must not be one of the run's inputs."""
    return {f"--reproducer-dir {folder} ({name})": os.path.join(folder, name) for name in REPRODUCER_FILES}


def check_reproducer_dir(folder: str, inputs: dict[str, Any]) -> None:
    """Refuse, before any work, a reproducer folder that cannot be made or whose files would replace one of the
    ``inputs`` (flag -> path). Why: ``--reproducer-dir .`` beside ``schedule.mill`` replaced the user's schedule
    (comments and all) with its printed form when a pass failed, and a model named ``before.onnx`` with the
    model as it was before the failing pass."""
    # not locked: written only when a pass fails, so parallel runs may share one (a review: the lock refused them)
    check_out_folder(folder, "optimize", "a failing pass's reproducer: " + ", ".join(REPRODUCER_FILES),
                     flag="--reproducer-dir", lock=False)
    check_output_paths(inputs, reproducer_paths(folder), made=folder)
    # a folder of the user's files is not a reproducer's: its README.txt (or a before.onnx) was replaced when a pass
    # failed. An earlier reproducer, which its README.txt's first line names, is replaced as a rerun expects
    there = [n for n in REPRODUCER_FILES if os.path.lexists(os.path.join(folder, n))]
    if there and not _is_reproducer(os.path.join(folder, "README.txt")):
        raise UserInputError(f"--reproducer-dir {folder}: holds {there[0]}, which a reproducer would replace, and no "
                             "earlier reproducer; give a new or empty folder")


def _is_reproducer(readme: str) -> bool:
    try:
        with open(readme, "rb") as f:
            return f.read(len(_README_HEAD)) == _README_HEAD
    except OSError:
        return False


_README_HEAD = b"graphmill reproducer\n"


def write_reproducer(failure: PassFailure, schedule: Schedule, seed: int, folder: str | None,
                     rerun: Callable[[str], str] | None = None,
                     rerun_all: Callable[[str], str] | None = None) -> str:
    """The model before the failing pass, a schedule with just that pass, the full schedule, the seed, and
    (``rerun``: folder -> the command) the command that reruns it, which the error message also prints but a
    folder found later, or shared, must carry itself."""
    folder = folder or tempfile.mkdtemp(prefix="graphmill-repro-")
    os.makedirs(folder, exist_ok=True)
    before, repro, full, readme = (os.path.join(folder, name) for name in REPRODUCER_FILES)
    if failure.before is not None:
        save(failure.before, before)
    p = failure.step.pass_obj
    run_one = Schedule("repro", as_schedule([p]).body)
    atomic_write_bytes(repro, run_one.to_text().encode())
    atomic_write_bytes(full, schedule.to_text().encode())
    atomic_write_bytes(readme, (
        _README_HEAD.decode() + f"failing step: {failure.step}\nseed: {seed}\nerror: {failure}\n"
        f"passes run before it: {', '.join(failure.history) or 'none'}\n"
        + (f"rerun: {rerun(folder)}\n" if rerun is not None else "")
        + (f"the whole run (a failure built up over several passes): {rerun_all(folder)}\n"
           if rerun_all is not None else "")).encode())
    return folder


@collector_paused()
def optimize(graph: Graph, schedule: Schedule | str | None = None, *, schedule_file: str | None = None,
             check_numerics: bool = False, rtol: float = 1e-4, atol: float = 1e-5, seed: int = 0,
             verify_each: bool = False, time_passes: bool = False, print_ir_after: str | Iterable[str] | None = None,
             print_ir_diff: bool = False, allow: Iterable[str] = (EXACT, REASSOCIATING),
             reproducer_dir: str | None = None, compare: bool = False, explain_rule: str | None = None,
             dims: dict[str, int] | None = None, stream: TextIO | None = None,
             load_passes: Iterable[str] = (), cost_model: Any = None, source: str | None = None,
             rerun_options: Sequence[str] = (), source_options: Sequence[str] = ()) -> OptimizeReport:
    """Optimize ``graph`` in place with ``schedule`` (default: the embedded one) and report what happened.

    ``check_numerics`` compares ONNX Runtime outputs with the original's after every
    pass that changed the graph and stops at the first pass that breaks them;
    on any failing pass a reproducer is written (to ``reproducer_dir`` or a new
    temporary folder) and ``ReproducerError`` says where, with the command that reruns it. ``graph`` is then left
    as the failing pass left it (in place, no copy kept: models are large); the reproducer's ``before.onnx`` is
    the graph before that pass.
    ``dims`` sizes symbolic dimensions for the figures and the random inputs (default 1);
    ``load_passes`` (the files the user's passes came from) only goes into that command.
    ``cost_model``: the ``PassContext``'s (the device cost model ``place`` and the learned passes need);
    ``rerun_options``: the command-line options that made it (``--devices 2``), for a reproducer's rerun commands;
    ``source_options``: those that only the rerun of the whole schedule on ``source`` needs (the sizes ``--dim``
    bound in ``graph`` before the run, which ``before.onnx`` holds bound).
    ``source``: the file ``graph`` was read from; a refusal of its contents (inference, sizes, a pass that cannot
    take it) then names it (``util.errors.naming_file``), as a load error does.
    ``allow``: the exactness levels rules may have besides exact (exact rules always run): float-reassociating
    by default. A list replaces that default, so the CLI's ``--allow L`` is ``allow=["float-reassociating", L]``
    (``allow=["approximate"]`` leaves the float-reassociating fusions out: 69 nodes of ResNet-18 where the CLI's
    ``--allow approximate`` leaves 39); one level may be given as a string.
    """
    check_tolerances(rtol, atol)
    seed = check_seed(seed)
    check_flags("graphmill.optimize", check_numerics=check_numerics, verify_each=verify_each, time_passes=time_passes,
                print_ir_diff=print_ir_diff, compare=compare)
    if isinstance(allow, str):  # one level: it was split into its letters ("unknown exactness level(s) ['a', ...")
        allow = (allow,)
    allow = tuple(dict.fromkeys((EXACT, *allow)))  # exact rules always run: allow=["approximate"] skipped them (an
    # outside check), where the CLI's --allow adds to the default
    sched = resolve_schedule(schedule, schedule_file)
    if explain_rule:  # an unknown rule is refused before the schedule runs, not after
        from graphmill.passes.rewrite_pass import find_rule

        find_rule(explain_rule)
    if reproducer_dir is not None:  # refused before any work, not when a pass fails and the reproducer is written
        check_reproducer_dir(reproducer_dir, {**{f"the schedule file {f}": f for f in sched.sources},
                                              **{f"--load-passes {f}": f for f in load_passes}})
    if (compare or check_numerics) and dims and any(v < 1 for v in dims.values()):
        # the comparisons then run on empty tensors: "max |diff| 0, within tolerance" checked nothing
        given = ", ".join(f"--dim {k}={v}" for k, v in dims.items() if v < 1)
        raise UserInputError(f"{given}: the outputs are compared at these sizes, and an empty tensor compares "
                             f"nothing; give a size >= 1{'' if check_numerics else ' (or --no-compare)'}")
    with naming_file(source):
        if (compare or check_numerics) and not graph.outputs:  # ONNX Runtime refused it with a C++ assertion
            flags = (("--no-compare", compare), ("without --check-numerics", check_numerics))
            anyway = " and ".join(f for f, on in flags if on)
            raise UserInputError(f"graph {graph.name!r} has no outputs: nothing to compare under ONNX Runtime, "
                                 f"which runs no such model ({anyway} optimizes it anyway)")
        before = _brief(graph, dims)  # first: it checks dims, and inference only adds type information
    original = graph.copy() if compare else None
    instruments: list[Any] = []
    timer = TimePasses() if time_passes else None
    if timer:
        instruments.append(timer)
    if print_ir_after is not None or print_ir_diff:
        if print_ir_after is None or print_ir_after == "all":
            after: str | set[str] = "all"
        else:
            after = {print_ir_after} if isinstance(print_ir_after, str) else set(print_ir_after)
            check_print_ir_after(after, sched)
        instruments.append(PrintIR(after, diff=print_ir_diff, stream=stream or sys.stderr))
    numerics = ortb.NumericsCheck(rtol=rtol, atol=atol, seed=seed, dims=dims) if check_numerics else None
    if numerics:  # it skips a pass that reports no change: that report is checked too
        instruments += [ChangeClaimCheck(), numerics]
    # with ONNX Runtime's node evaluator and onnx's shape inference
    ctx = pass_context(seed=seed, allow=allow, cost_model=cost_model)
    # One copy of the input instead of a snapshot before every pass: on a failure, the passes that ran
    # are replayed on it (they are deterministic for a seed) to rebuild the model before the failing one.
    start = original.copy() if original is not None else graph.copy()
    pm = PassManager(sched, instruments, verify_each=verify_each, ctx=ctx)
    try:
        with naming_file(source):
            result = pm.run(graph)
    except PassFailure as f:
        unbuilt = _rebuild_before(f, start, seed, allow, cost_model) if f.before is None else None
        plugins = {os.path.realpath(p): p for p in [*load_passes, *plugin_files(r.name for r in sched.runs())]}

        def command(folder: str, model: str | None = None) -> str:
            return rerun_command(folder, rtol=rtol, atol=atol, seed=seed, allow=allow, dims=dims,
                                 load_passes=list(plugins.values()), verify_each=verify_each,
                                 check_numerics=check_numerics, model=model,
                                 extra=[*rerun_options, *(source_options if model is not None else ())])

        whole = (lambda folder: command(folder, source)) if source is not None and f.history else None
        rerun = command
        unnamed = sorted({r.name for r in sched.runs() if r.instance is not None
                          and registered_passes().get(r.name) is not type(r.instance)})
        if unnamed:  # its rerun said "unknown pass or schedule" (a review): the text names passes by name only
            def rerun(folder: str) -> str:  # noqa: F811 -- no command can rerun it
                return (f"none: {', '.join(unnamed)} ran as Pass objects whose class is not registered by that name "
                        "(register_pass, or --load-passes FILE, for a rerun)")

            whole = None
        elif unbuilt:  # no before.onnx for the one-pass rerun to read
            def rerun(folder: str) -> str:  # noqa: F811
                return f"none: {unbuilt}"

        folder = write_reproducer(f, sched, seed, reproducer_dir, rerun, whole)
        raise ReproducerError(f, folder, rerun(folder), whole(folder) if whole is not None else None) from f
    # the output must be a graph that verifies, keeps its interface and is well-typed; --verify-each checked each
    # pass that reported a change, so under it only a pass that reported none can have broken it (one retyped a
    # value and --verify-each wrote what the plain run refused: a review)
    problems = find_problems(graph)
    if problems:
        given = find_problems(start)  # a graph built by hand may not verify to begin with: not a pass's doing
        if given:
            raise GraphmillError(f"the input graph does not verify: {given[0]}")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        broken: str | None = f"the optimized graph does not verify: {problems[0]}{more}"
    else:  # its interface as callers see it (a renamed output passed the comparison, which goes by position;
        # sizes may change on purpose: compound-scale's resolution), and its types where the input's were right
        # (ONNX Runtime then refused to load the output)
        broken = (output_change([(v.name, v.type) for v in start.outputs], graph, sizes=False)
                  or input_change([(v.name, v.type) for v in start.inputs if not v.is_initializer], graph))
        if broken is None:
            wrong = type_error(graph, ctx)
            if wrong is not None and type_error(start, ctx) is None:
                broken = f"the optimized graph is ill-typed: {wrong}"
    if broken:
        hint = ("a pass that reported no change broke it (--verify-each checks the passes that report one)"
                if verify_each else "a pass of the schedule broke it (rerun with --verify-each, in Python "
                "verify_each=True, to name the pass and write its reproducer)")
        raise GraphmillError(f"{broken}; {hint}; nothing written")
    report = OptimizeReport(
        schedule=sched.to_text(), schedule_inline=sched.to_inline(), seed=seed, before=before, after=_brief(graph, dims),
        passes=[r.__dict__ for r in result.records], stats=result.stats(),
        # once each: a pass in a repeat or a fixpoint said the same note on every run ("rule 'conv-add' disabled")
        notes=list(dict.fromkeys(result.notes + [f"{r.name}: {n}" for r in result.records for n in r.notes])),
    )
    if result.changed:
        report.notes += drop_stale_decisions(graph)
    if timer:
        report.time_passes = timer.rows()
    if numerics:
        report.numerics = {"checks": numerics.checks, "rtol": rtol, "atol": atol, "seed": seed,
                           "max_abs_diff_by_pass": numerics.worst}
    resized = sorted({r.name for r in result.records if r.changed and
                      getattr(registered_passes().get(r.name), "resizes_interface", False)})
    if resized and (original is not None or numerics):  # compound-scale: another network, other input sizes
        report.notes.append(f"outputs not compared with the input's: {', '.join(resized)} made another network "
                            "(its sizes and weights change on purpose)" +
                            ("; --check-numerics compared each pass after it with its output"
                             if numerics and _changed_after(result.records, resized) else ""))
    if original is not None and not resized:
        with naming_file(source):  # a run over the memory budget named no file (an outside check)
            report.comparison = _compare(original, graph, source, seed=seed, rtol=rtol, atol=atol, dims=dims,
                                         notes=report.notes)
    if explain_rule:
        report.explain = explain(graph, explain_rule, stats=result.stats(), allow=allow, schedule=sched)
    return report


def drop_stale_decisions(graph: Graph) -> list[str]:
    """Drop the per-node decisions ``graph`` carries (``DECISIONS``: an earlier command's, or a pass's of this
    schedule) once a top-level node has no device: a rewrite after them made it, and ``simulate`` refused the model,
    or replayed learned decisions with defaults for it, without a word (an outside check); or, for a training step,
    once a computed node's name is not in the decisions' table (a lowering copies the node's meta, device included,
    to new names). A placed graph's nodes all have a device (a constant its first reader's), so a rewrite that keeps
    the nodes (``fuse-activation``'s meta, ``dce``'s removals) keeps the decisions. Both the graph's meta and the
    nodes' go: ``check_placement`` ran a placement the nodes still held. Returns the notes that say so."""
    from graphmill.ir.summary import constant_values

    meta = [k for k in DECISIONS if graph.meta.get(k) is not None]
    if not meta:
        return []
    bare = next((n for n in graph.nodes if isinstance(n.meta.get("device"), bool)
                 or not isinstance(n.meta.get("device"), int)), None)
    tables = [m["decisions"] for m in map(graph.meta.get, meta) if isinstance(m, dict) and m.get("training")
              and isinstance(m.get("decisions"), dict)]
    if bare is None and tables:  # a training step's decisions go by op name (its backward ops are in no node): a
        # rewrite that copied a node's meta to new nodes (a lowering) left names the table lacks (a review)
        constant = constant_values(graph)
        bare = next((n for n in graph.nodes if not all(id(o) in constant for o in n.outputs if o is not None)
                     and any(n.name not in t for t in tables)), None)
    if bare is None:
        return []
    why = "has no device" if not isinstance(bare.meta.get("device"), int) else "is not in the training step's table"
    drop_decisions(graph)
    return [f"the decisions {DECISIONS[key]} made (graph.meta[{key!r}]) were dropped: {bare.describe()} {why} "
            "after the schedule's rewrites; decide again on the optimized model" for key in meta]


def _compare(original: Graph, graph: Graph, source: str | None, *, seed: int, rtol: float, atol: float,
             dims: dict[str, int] | None, notes: list[str] | None = None) -> dict:
    """The optimized model against the input under ONNX Runtime, on seeded random inputs (the report's
    ``comparison``). Where they differ and the input as graphmill read it already differs from the file, that is
    said in ``notes``: the difference is in the reading, not in the passes."""
    try:  # an input random data cannot be made for (an optional, a sequence): not "pass inputs explicitly",
        inputs = ortb.random_inputs(original, seed=seed, dims=dims, advice=None)  # which optimize cannot take
    except UserInputError as e:
        if "--no-compare" in str(e):  # the budget's refusal says it already
            raise
        raise UserInputError(f"{e} (to compare the optimized model with the input under ONNX Runtime; "
                             "--no-compare skips the comparison)") from None
    given = _as_given(source)
    if given is not None:
        # the reference is the file as given, so that a reading of it that changed what it computes is caught too
        # (an If branch's initializer named as an outer value was bound the other way: roundtrip and optimize
        # changed the model and the comparison, against graphmill's own re-export, said 0; an outside check)
        checks = dict(seed=seed, rtol=rtol, atol=atol, options=ortb.checking_options(), scale_atol=True,
                      reference_bytes=given)
        try:
            cmp = ortb.compare(original, graph, inputs, names=(source, "the optimized model"), **checks)
            if not cmp.ok and notes is not None:
                reading = ortb.compare(original, original, inputs, names=(source, "graphmill's reading"), **checks)
                if not reading.ok:
                    passes = ortb.compare(original, graph, inputs, names=("graphmill's reading", "the optimized model"),
                                          **{**checks, "reference_bytes": None})
                    where = ("the reading (the optimized model and graphmill's reading agree on these inputs)"
                             if passes.ok else "the reading, and the optimized model also differs from graphmill's "
                             f"reading (max |diff| {passes.max_abs:.3g})")
                    notes.append(f"the input as graphmill read it already differs from {source} under ONNX Runtime "
                                 f"(max |diff| {reading.max_abs:.3g}): the difference is in {where}")
            return cmp.to_dict()
        except ExecutionError as e:
            if not str(e).startswith(f"{source}: "):
                raise _compare_failed(e, original, dims) from e
            # ONNX Runtime cannot run the file as given (an op its export spells otherwise): compared below with
            # graphmill's reading of it, as before
    try:
        return ortb.compare(original, graph, inputs, seed=seed, rtol=rtol, atol=atol,
                            options=ortb.checking_options(), scale_atol=True,
                            names=(source or "the input model", "the optimized model")).to_dict()
    except ExecutionError as e:  # an op ONNX Runtime lacks, a size it refuses: say what the check is and its knobs
        raise _compare_failed(e, original, dims) from e


def _compare_failed(e: ExecutionError, original: Graph, dims: dict[str, int] | None) -> ExecutionError:
    sized = "" if dims or not symbols(original) else "; symbolic sizes were 1: --dim NAME=SIZE sets them"
    return ExecutionError(f"{e} (while comparing the optimized model with the input under ONNX Runtime; "
                          f"--no-compare skips the comparison{sized})")


def _as_given(source: str | None) -> bytes | None:
    """The bytes of the input file, for ONNX Runtime to run as the comparison's reference, where that is safe: a
    regular file all of whose tensors are inline (ONNX Runtime resolves external data paths itself, unconfined,
    and the file may have changed since graphmill checked its paths) and with no node that names none of its
    outputs (ONNX Runtime 1.32 crashes on some: ``backends.onnxruntime.without_unread_nodes``). Else None."""
    import onnx

    if not source or not os.path.isfile(source):
        return None
    try:
        data = read_user_file(source, MODEL_FILE_LIMIT, "an ONNX model file")
        model = onnx.ModelProto.FromString(data)
    except Exception:  # noqa: BLE001 -- changed or unreadable since it was loaded: graphmill's reading is the reference
        return None
    graphs = [model.graph, *(f for f in model.functions)]
    tensors = []

    def attributes(attrs) -> None:
        for a in attrs:
            tensors.extend([a.t, *a.tensors])
            sparse = [*a.sparse_tensors, *([a.sparse_tensor] if a.HasField("sparse_tensor") else [])]
            tensors.extend(t for sp in sparse for t in (sp.values, sp.indices))
            graphs.extend([*([a.g] if a.HasField("g") else []), *a.graphs])

    while graphs:
        g = graphs.pop()
        if isinstance(g, onnx.GraphProto):
            tensors.extend(g.initializer)
            tensors.extend(t for sp in g.sparse_initializer for t in (sp.values, sp.indices))
        else:  # a FunctionProto: its attributes' defaults may hold tensors too
            attributes(g.attribute_proto)
        for n in g.node:
            if n.output and not any(n.output):
                return None
            attributes(n.attribute)
    if any(t.data_location == onnx.TensorProto.EXTERNAL or t.external_data for t in tensors):
        return None
    return data


def _replay(start: Graph, ran: list, seed: int, allow: Iterable[str], cost_model: Any = None) -> Graph:
    """``start`` after the given pass steps: the model as it was before the step that failed."""
    ctx = pass_context(seed=seed, allow=allow, cost_model=cost_model)
    PassManager(Schedule("replay", list(ran)), ctx=ctx).run(start)
    return start


def _rebuild_before(failure: PassFailure, start: Graph, seed: int, allow: Iterable[str],
                    cost_model: Any = None) -> str | None:
    """Set ``failure.before`` to the model the failing step was given, rebuilt by replaying the steps before it on
    ``start`` (a copy of the input); returns why there is none when the replay itself fails. Passes must be
    deterministic for a seed for the replay to rebuild that model: one that failed only on its second run in the
    process failed again in the replay, and that error replaced the run's own, with no reproducer (an outside
    check). The run's failure is what the user is told about, whatever the replay does."""
    try:
        failure.before = _replay(start, failure.ran, seed, allow, cost_model)
    except Exception as e:  # noqa: BLE001 -- a user's pass may raise anything; the run's own error must survive
        return (f"the model before it could not be rebuilt (replaying the {len(failure.ran)} steps before it on the "
                f"input failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}; a pass that is not "
                "deterministic for its seed?), so the reproducer holds no before.onnx: rerun the whole schedule")
    return None


def explain(graph: Graph, rule_name: str, *, stats: dict[str, dict[str, float]] | None = None,
            allow: Iterable[str] | None = None, schedule: Schedule | None = None) -> str:
    """Why ``rule_name`` does not fire on ``graph`` (the optimized model); with the run's pass ``stats``, first how
    often it fired during the run: a rule that rewrote every match leaves none, and "does not fire" alone read as
    if it had never run. With the run's ``allow``, an approximate rule that did not fire because it was not
    allowed says so (its "matches at ..." read as if the rule were broken); with its ``schedule``, so does a rule
    whose pass the schedule does not run, or runs with the rule in ``disable`` (an outside check)."""
    from graphmill.ir.rewrite import explain as explain_rule
    from graphmill.passes.rewrite_pass import find_rule

    rule, owner = find_rule(rule_name)
    now = explain_rule(rule, graph)
    fired = int((stats or {}).get(owner, {}).get(rule.name, 0))
    runs = [r for r in schedule.runs() if r.name == owner] if schedule is not None else None
    if fired:
        now = f"rule {rule.name!r} fired {fired} time(s) during the schedule; in the optimized model: {now}"
    elif runs is not None and not runs:
        now += f"; its pass {owner!r} is not in the schedule"
    elif runs is not None and all(rule.name in (r.options.get("disable") or ()) for r in runs):
        now += f"; the schedule runs {owner!r} with it disabled (disable=[{rule.name}])"
    elif allow is not None and rule.exactness not in set(allow):
        article = "an" if rule.exactness[0] in "aeiou" else "a"
        now += (f"; {article} {rule.exactness} rule runs only when allowed (--allow {rule.exactness}, or the pass's "
                f"own allow=[{rule.exactness}])")
    return f"{now} [rule of pass {owner!r}, {rule.exactness}]"

