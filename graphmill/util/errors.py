"""The one error hierarchy of graphmill.

It lives in ``util`` because every layer (``ir`` included) may import ``util`` and
nothing below it; ``graphmill.errors`` and ``graphmill.ir`` re-export it. Messages say what went wrong, where (file,
node, op, line/column as applicable) and, where we can tell, what to do.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class GraphmillError(Exception):
    """Base of every error graphmill raises on purpose.

    The CLI turns any ``GraphmillError`` into a one-line message and exit status 2;
    anything else escaping is a bug in graphmill.
    """

    exit_code = 2


class UserInputError(GraphmillError):
    """The user's input (file, option, config) is wrong; nothing was written."""


class ModelLoadError(UserInputError):
    """A model file could not be read as a valid model."""


class UnsafeModelError(ModelLoadError):
    """A model file asks for something it may not do (e.g. read outside its folder)."""


class UnsupportedModelError(ModelLoadError):
    """A model file is valid but uses something this build does not support (e.g. a newer opset)."""


class IRError(GraphmillError):
    """Misuse of the IR mutation API (a programming error in a pass or a builder)."""


class VerificationError(GraphmillError):
    """``verify(graph)`` found the graph malformed; ``problems`` lists every finding."""

    def __init__(self, problems: list[str], graph_name: str = "") -> None:
        self.problems = list(problems)
        first = problems[0] if problems else "unknown problem"
        where = f"graph {graph_name!r}: " if graph_name else ""
        if first.startswith(where) or f"in graph {graph_name!r}" in first:  # it names the graph already (said twice)
            where = ""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{where}{first}{more}")


class ShapeInferenceError(GraphmillError):
    """An op's inputs do not satisfy the op's shape contract."""


class ExecutionError(GraphmillError):
    """A backend failed to run a graph."""


class SimulationWarning(UserWarning):
    """Part of a graph could not be costed: the figures leave it out (``SimReport.uncosted``, a cost model's
    ``uncosted``). Here, not in the simulator, so that the CLI can gather them into its own lines."""


class TracingWarning(UserWarning):
    """An import froze something the source model computes at run time (e.g. torch's tracer kept one branch
    of data-dependent Python control flow); the graph may be right only for the example inputs."""


class ModelWarning(UserWarning):
    """A model is legal but means different things to different readers (ONNX Runtime, onnx's reference
    evaluator, graphmill): it is loaded as graphmill reads it, and the CLI says so in a line of its own."""


class SearchWarning(UserWarning):
    """A search finished but its result is suspect (e.g. AutoHAS's shared weights diverged on most steps): the
    result is reported, and the CLI says why it should not be trusted in a line of its own."""


def at_least(value: float) -> str:
    """``value`` in 6 significant digits, or exactly (repr) where that rounding fell under it: a message naming the
    least a thing needs must not quote a figure that would pass (0.0984157 ms was quoted for 0.09841571..., and
    refused as a limit; "budget 0.9294 mm^2 ... the smallest is 0.929 mm^2" read as within it: outside checks)."""
    text = f"{value:g}"
    return text if float(text) >= value else repr(value)


def at_most(value: float) -> str:
    """A limit as a refusal quotes it: ``value`` in 6 significant digits, or exactly (repr) where that rounding rose
    above it, so that a limit just under what a thing needs does not read as equal to it ("no child satisfies
    --max-macs 28128: the cheapest child needs 28128 MACs" for --max-macs 27127.9999: an outside check)."""
    text = f"{value:g}"
    return text if float(text) <= value else repr(value)


def names_a_file(text: str) -> bool:
    """Whether ``text`` starts with a file's path (``FILE: ...`` or ``FILE:LINE:COL: ...``): an existing file, or a
    word without spaces with a folder or an extension in it (``my_policy.npz: no policy there``); what a refusal
    of a model's contents starts with (``graph 'g' ...``, ``Range node 'r' ...``) has spaces."""
    import os
    import re

    m = re.match(r"(\S+?)(?::\d+)*: ", text)
    if not m:
        return False
    first = m.group(1)
    return os.path.isfile(first) or "/" in first or re.search(r"\.[A-Za-z][A-Za-z0-9]{0,4}$", first) is not None


@contextmanager
def naming_file(path: str | None) -> Iterator[None]:
    """A refusal of a file's contents raised past its loader (inference, size limits, a node a pass cannot take)
    names the file, as a load error does: such lines named only a node (``Range node 'range': output ... would
    have 8589934592 elements``), which in a script over many models says nothing of which one. A message that
    starts with a flag (``--dim N=0: ...``), with the file, or with another file it names (``policy.npz: ...``,
    ``devices.toml:3:5: ...``: about that file, not the model) is left as it is."""
    try:
        yield
    except UserInputError as e:
        text = str(e)
        if path is None or text.startswith(("-", f"{path}:")) or names_a_file(text):
            raise
        named = type(e).__new__(type(e))  # not type(e)(...): PassInputError's constructor takes other arguments
        named.__dict__.update(e.__dict__)
        named.args = (f"{path}: {text}",)
        raise named from None
