"""The in-process executor: each evaluation runs in the calling thread when submitted (tests, debugging, and
evaluations too cheap to be worth a process hop). One worker by construction. ``evaluate`` gets a copy of the
configuration, as a worker process gets one, so that an evaluator that edits its argument changes neither the
history nor what the strategy is told (and gives the same search on every executor)."""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

from graphmill.search.executors.base import Executor, call


class InProcessExecutor(Executor):
    def __init__(self, evaluate: Callable[[dict], Any], *, timeout: float | None = None) -> None:
        self.evaluate = evaluate
        self.timeout = timeout
        self.workers = 1
        self._done: list = []
        self._started: dict[int, float] = {}

    def submit(self, token: int, config: dict) -> None:
        self._started[token] = time.perf_counter()
        self._done.append((token, call(self.evaluate, copy.deepcopy(config), self.timeout)))

    def started(self, token: int) -> float | None:
        return self._started.get(token)

    def wait(self, timeout: float | None = None):
        done, self._done = self._done, []
        for token, _ in done:
            self._started.pop(token, None)
        return done
