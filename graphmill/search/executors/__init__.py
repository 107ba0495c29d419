"""Executors run evaluations: ``inprocess`` (tests, one worker), ``local`` (a process pool, asynchronous; the
default with ``workers > 1``) and ``ray`` (a local Ray or an existing cluster)."""

from __future__ import annotations

from typing import Any, Callable

from graphmill.search.executors.base import Executor, call
from graphmill.util.errors import UserInputError

EXECUTORS = ("inprocess", "local", "ray")

__all__ = ["Executor", "EXECUTORS", "make", "call"]


def make(name: str, evaluate: Callable[[dict], Any], *, workers: int, timeout: float | None,
         ray_address: str | None = None) -> Executor:
    """The executor called ``name`` with ``workers`` concurrent evaluations."""
    if name == "inprocess":
        if workers != 1:
            raise UserInputError(f"executor 'inprocess' runs one evaluation at a time; workers={workers} needs "
                                 "executor 'local' or 'ray'")
        from graphmill.search.executors.inprocess import InProcessExecutor

        return InProcessExecutor(evaluate, timeout=timeout)
    if name == "local":
        from graphmill.search.executors.pool import ProcessPoolExecutor

        return ProcessPoolExecutor(evaluate, workers, timeout=timeout)
    if name == "ray":
        from graphmill.search.executors.ray import RayExecutor

        return RayExecutor(evaluate, workers, timeout=timeout, address=ray_address)
    from graphmill.util.suggest import did_you_mean

    raise UserInputError(f"unknown executor {name!r}{did_you_mean(name, EXECUTORS)}; known: {', '.join(EXECUTORS)}")
