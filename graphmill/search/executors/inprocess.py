"""The in-process executor: each evaluation runs in the calling thread when submitted (tests, debugging, and
evaluations too cheap to be worth a process hop). One worker by construction."""

from __future__ import annotations

from typing import Any, Callable

from graphmill.search.executors.base import Executor, call


class InProcessExecutor(Executor):
    def __init__(self, evaluate: Callable[[dict], Any], *, timeout: float | None = None) -> None:
        self.evaluate = evaluate
        self.timeout = timeout
        self.workers = 1
        self._done: list = []

    def submit(self, token: int, config: dict) -> None:
        self._done.append((token, call(self.evaluate, config, self.timeout)))

    def wait(self, timeout: float | None = None):
        done, self._done = self._done, []
        return done
