"""The Ray executor (``executor="ray"``): ``ray.init()`` locally (with ``workers`` CPUs) when no address is
given, else connects to ``ray_address`` (an existing cluster, e.g. ``"auto"`` or ``"ray://host:10001"``). Each
evaluation is a Ray task of one CPU; at most ``workers`` are in flight, and a free slot takes the next candidate
at once (asynchronous). ray is an optional extra (``pip install ray``)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from graphmill.search.executors.base import Executor, call
from graphmill.util.errors import UserInputError


class RayExecutor(Executor):
    def __init__(self, evaluate: Callable[[dict], Any], workers: int, *, timeout: float | None = None,
                 address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserInputError("executor 'ray' needs ray, an optional extra: pip install 'ray[default]'") from None
        self.ray = ray
        self.workers = workers
        self.timeout = timeout
        self.owns = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": "ERROR"}
            if address:
                kwargs["address"] = address
            else:
                # workers import `evaluate` by module name: give them this process's import path
                path = os.pathsep.join(p for p in sys.path if p)
                kwargs.update(num_cpus=workers, runtime_env={"env_vars": {"PYTHONPATH": path}})
            try:
                ray.init(**kwargs)
            except Exception as e:
                where = f"at {address!r}" if address else "locally"
                raise UserInputError(f"cannot start Ray {where}: {type(e).__name__}: {e}") from None
            self.owns = True
        self.task = ray.remote(num_cpus=1, max_retries=0)(call)
        self.evaluate_ref = ray.put(evaluate)
        self.refs: dict[Any, int] = {}

    def submit(self, token: int, config: dict) -> None:
        ref = self.task.remote(self.evaluate_ref, config, self.timeout)
        self.refs[ref] = token

    def wait(self, timeout: float | None = None):
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        if ready:
            more, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
            ready = list(dict.fromkeys(ready + more))
        out = []
        for ref in ready:
            token = self.refs.pop(ref)
            t0 = time.perf_counter()
            try:
                out.append((token, self.ray.get(ref)))
            except Exception as e:  # the task itself failed (worker crash, cancelled)
                out.append((token, ("failed", f"ray task failed: {type(e).__name__}: {e}".splitlines()[0],
                                    time.perf_counter() - t0)))
        return out

    def abandon(self, token: int) -> None:
        for ref, t in list(self.refs.items()):
            if t == token:
                self.ray.cancel(ref, force=True)
                del self.refs[ref]

    def close(self) -> None:
        for ref in list(self.refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass
        self.refs.clear()
        if self.owns:
            self.ray.shutdown()
