"""The schedules shipped with graphmill (graphmill/passes/default.mill), callable by name.

``default`` (standard ONNX ops), ``ort`` (default plus ONNX Runtime's com.microsoft fusions) and
``cleanup``: the names work after ``-s`` on the command line, as ``graphmill.optimize(g, "ort")``,
and as a step inside a user's own ``.mill`` file.
"""

from __future__ import annotations

from importlib import resources

from graphmill.passes.schedule import Schedule

BUILTIN_SCHEDULES = ("default", "ort", "cleanup")  # the named schedules of graphmill/passes/default.mill


def builtin_schedule(name: str = "default") -> Schedule:
    """A schedule embedded in the package (graphmill/passes/default.mill): ``default`` (standard ONNX
    ops), ``ort`` (default plus ONNX Runtime's com.microsoft fusions), ``cleanup``."""
    text = resources.files("graphmill.passes").joinpath("default.mill").read_text(encoding="utf-8")
    from graphmill.passes.dsl import parse_schedule

    return parse_schedule(text, source="<default.mill>", entry=name)


def default_schedule() -> Schedule:
    """The embedded default schedule (graphmill/passes/default.mill)."""
    return builtin_schedule("default")
