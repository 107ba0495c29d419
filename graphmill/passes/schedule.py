"""Schedules: what to run, as data. The DSL, the inline form and Python all build these.

    Schedule("default", [Run("fold-constants"),
                         Fixpoint([Run("simplify"), Run("cse"), Run("dce")], max_iters=8),
                         Run("fuse-conv-bn")])

``to_text()`` prints the file form (named schedules it calls included) and
``to_inline()`` the one-line command-line form; parsing either gives back an
equal schedule, which is how reports and reproducers record what ran.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Union

from graphmill.ir import UserInputError

WORD = r"[A-Za-z_][A-Za-z0-9_.\-]*"
"""A bare word of the DSL: a pass or schedule name, an option name, or an unquoted string value."""

KEYWORDS = ("schedule", "include", "fixpoint", "repeat")
"""Words the DSL reads as syntax, never as a name or an unquoted value."""

MAX_ITERATIONS = 10_000
"""Largest ``repeat`` count, ``fixpoint`` ``max_iters``, and product of the repeat counts around a step.

Built-in schedules iterate at most 8 times; the bound turns a typo or a generated ``repeat(1000000000)``,
which would run for days, into a one-line error when the schedule is parsed (the DSL, with the line and
column) or built in Python (``Fixpoint``, ``Repeat``)."""


MAX_NESTING = 64
"""Deepest nesting of steps (each fixpoint, repeat and call of a named schedule is a level) and of includes.

Real schedules use 3 or 4 levels (the built-in ``ort``: ort > default > cleanup > fixpoint); the limit
keeps a generated or hostile file from reaching Python's recursion limit (a traceback of thousands of
lines) in the parser, the printer or the pass manager."""


def _check_count(what: str, n: Any, low: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or not low <= n <= MAX_ITERATIONS:
        raise UserInputError(f"{what} must be an integer from {low} to {MAX_ITERATIONS:,}, got {n!r}")


@dataclass(frozen=True)
class SourceLoc:
    """Where a step was written (for errors): file, 1-based line and column, and the line's text."""

    file: str
    line: int
    column: int
    text: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class Run:
    """Run one pass with options; ``instance``: the ``Pass`` object given in Python, which runs as given (its
    class need not be registered, and state its constructor keeps beyond its options is not lost)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    loc: SourceLoc | None = field(default=None, compare=False, repr=False)
    instance: Any = field(default=None, compare=False, repr=False)


@dataclass
class Fixpoint:
    """Run ``body`` until an iteration changes nothing, at most ``max_iters`` times."""

    body: list["Step"]
    max_iters: int = 8
    loc: SourceLoc | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_count("fixpoint: option 'max_iters'", self.max_iters, 1)  # 0 would run nothing, silently


@dataclass
class Repeat:
    """Run ``body`` exactly ``count`` times."""

    body: list["Step"]
    count: int = 1
    loc: SourceLoc | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_count("repeat: count", self.count, 0)


@dataclass(eq=False)
class Call:
    """Run another named schedule (a ``schedule cleanup {...}`` block used by name)."""

    schedule: "Schedule"
    loc: SourceLoc | None = field(default=None, repr=False)

    def __eq__(self, other: object) -> bool:
        """Calls are equal when they run the same steps: the callee's name is a label (``to_text`` may
        rename one of two different schedules that share a name)."""
        return isinstance(other, Call) and self.schedule.body == other.schedule.body


Step = Union[Run, Fixpoint, Repeat, Call]


def nesting_height(steps: list["Step"], memo: dict[int, int]) -> int:
    """Levels of nesting below ``steps`` (fixpoint, repeat and calls each add one); ``memo`` by callee."""
    h = 0
    for s in steps:
        if isinstance(s, (Fixpoint, Repeat)):
            h = max(h, 1 + nesting_height(s.body, memo))
        elif isinstance(s, Call):
            key = id(s.schedule)
            if key not in memo:
                memo[key] = nesting_height(s.schedule.body, memo)
            h = max(h, 1 + memo[key])
    return h


def most_runs(steps: list["Step"], memo: dict[int, int]) -> int:
    """The largest product of the repeat counts and fixpoint iteration limits around any step in ``steps`` (1 with
    neither), through calls of named schedules: how many times the most repeated step can run. A fixpoint counts
    its ``max_iters``: a body that always changes something runs that many times
    (``fixpoint(max_iters=10000) { repeat(10000) { ... } }`` was 10^8 runs, accepted)."""
    most = 1
    for s in steps:
        if isinstance(s, Repeat):
            most = max(most, s.count * most_runs(s.body, memo))
        elif isinstance(s, Fixpoint):
            most = max(most, s.max_iters * most_runs(s.body, memo))
        elif isinstance(s, Call):
            key = id(s.schedule)
            if key not in memo:
                memo[key] = most_runs(s.schedule.body, memo)
            most = max(most, memo[key])
    return most


@dataclass
class Schedule:
    name: str
    body: list[Step] = field(default_factory=list)
    # The .mill files it was read from (the file, then what it includes): outputs must not overwrite them.
    sources: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        # the name is printed by to_text and read back by the DSL: one it cannot read would make a report's or
        # a reproducer's schedule text unparseable
        if not isinstance(self.name, str) or not re.fullmatch(WORD, self.name) or self.name in KEYWORDS:
            raise UserInputError(f"schedule name {self.name!r} is not a word of the schedule language "
                                 f"(letters, digits, '_', '-', '.'; not starting with a digit; not one of "
                                 f"{', '.join(KEYWORDS)})")

    # -- printing ---------------------------------------------------------------
    def to_inline(self) -> str:
        """The one-line form: ``fold-constants,fixpoint{simplify,cse,dce},fuse-conv-bn``."""
        return _inline_steps(self.body)

    def to_text(self) -> str:
        """The file form, with every schedule it calls defined before it; parsed, it selects this schedule.

        Two different schedules of one name (a user's ``cleanup`` and the one the built-in ``default``
        calls) are printed as ``cleanup`` and ``cleanup.2``, so the text parses back to an equal schedule.
        """
        out: list[str] = []
        names: dict[int, str] = {}
        # a file's entry is its schedule named `default` when it has one (dsl._entry): a callee of that name
        # (the built-in `default` under `schedule mine { default; my-pass }`) is printed as `default.2`, or the
        # text would run it, not this schedule (a reproducer's schedule.mill then did not reproduce)
        taken: dict[str, object] = {} if self.name == "default" else {"default": object()}
        _define(self, out, names, taken)
        return "\n".join(out) + "\n"

    def check_limits(self) -> None:
        """Refuse a schedule nested deeper than ``MAX_NESTING`` or running a step more than ``MAX_ITERATIONS``
        times, as the DSL refuses its text: one built in Python ran 40,000 times, and the reproducer of its
        failure held a ``schedule.mill`` the parser refused, so its rerun could not start (an outside check)."""
        try:
            height = nesting_height(self.body, {})
            runs = most_runs(self.body, {}) if height <= MAX_NESTING else 0
        except RecursionError:
            height, runs = MAX_NESTING + 1, 0
        if height > MAX_NESTING:
            raise UserInputError(f"schedule {self.name!r}: steps nest deeper than {MAX_NESTING} levels (the limit; "
                                 "each fixpoint, repeat and call of a named schedule is a level)")
        if runs > MAX_ITERATIONS:
            raise UserInputError(f"schedule {self.name!r}: the repeat counts and fixpoint limits around a step "
                                 f"could run it {runs:,} times (at most {MAX_ITERATIONS:,})")

    def callees(self) -> list["Schedule"]:
        """The schedules this one calls directly (inside fixpoint and repeat blocks too)."""
        return _callees(self.body)

    def runs(self) -> list[Run]:
        """Every pass step, depth first (for validation and listing)."""
        found: list[Run] = []
        _collect(self.body, found)
        return found


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        # bare only where the DSL reads the word back as this string: not '-3' (a number), 'é' (no word),
        # 'true' (a bool) or 'repeat' (a keyword)
        if re.fullmatch(WORD, v) and v not in ("true", "false") + KEYWORDS:
            return v
        # the DSL's escapes: a newline or tab written raw made the one-line form two lines, and a carriage return
        # came back as a newline
        escaped = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        return '"' + escaped.replace("\t", "\\t") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    raise TypeError(f"cannot print option value {v!r}")


def _opts(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in options.items())


def _inline_steps(steps: list[Step]) -> str:
    """Steps joined by commas, a called empty schedule left out: 'dce,,cse' is text the DSL refuses (an empty
    step), and the report's schedule_inline is meant to be rerun (an outside check)."""
    return ",".join(part for part in map(_inline, steps) if part)


def _inline(step: Step) -> str:
    if isinstance(step, Run):
        return f"{step.name}{{{_opts(step.options)}}}" if step.options else step.name
    if isinstance(step, Fixpoint):
        return f"fixpoint(max_iters={step.max_iters}){{{_inline_steps(step.body)}}}"
    if isinstance(step, Repeat):
        return f"repeat({step.count}){{{_inline_steps(step.body)}}}"
    return _inline_steps(step.schedule.body)  # Call: inline the callee


def _lines(step: Step, indent: str, names: dict[int, str]) -> list[str]:
    if isinstance(step, Run):
        return [f"{indent}{step.name}({_opts(step.options)})" if step.options else f"{indent}{step.name}"]
    if isinstance(step, Call):
        return [f"{indent}{names[id(step.schedule)]}"]
    head = f"fixpoint(max_iters={step.max_iters})" if isinstance(step, Fixpoint) else f"repeat({step.count})"
    out = [f"{indent}{head} {{"]
    for s in step.body:
        out.extend(_lines(s, indent + "    ", names))
    out.append(f"{indent}}}")
    return out


def _define(sched: Schedule, out: list[str], names: dict[int, str], taken: dict[str, object]) -> None:
    """Print ``sched`` after its callees; ``names`` maps each printed schedule (by identity) to its name."""
    if id(sched) in names:
        return
    name, n = sched.name, 1
    while name in taken and taken[name] != sched:  # another schedule of the same name: a new name
        n += 1
        name = f"{sched.name}.{n}"
    if name in taken:  # an equal schedule of that name is already printed
        names[id(sched)] = name
        return
    taken[name] = sched
    names[id(sched)] = name
    for callee in _callees(sched.body):
        _define(callee, out, names, taken)
    if out:
        out.append("")
    out.append(f"schedule {name} {{")
    for s in sched.body:
        out.extend(_lines(s, "    ", names))
    out.append("}")


def _callees(body: list[Step]) -> list[Schedule]:
    found: list[Schedule] = []
    for s in body:
        if isinstance(s, Call):
            found.append(s.schedule)
        elif isinstance(s, (Fixpoint, Repeat)):
            found.extend(_callees(s.body))
    return found


def _collect(body: list[Step], found: list[Run]) -> None:
    for s in body:
        if isinstance(s, Run):
            found.append(s)
        elif isinstance(s, Call):
            _collect(s.schedule.body, found)
        else:
            _collect(s.body, found)
