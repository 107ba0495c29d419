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
        self.init_seconds = 0.0
        if not ray.is_initialized():
            t0 = time.perf_counter()
            # start-up is what costs with Ray (measured in benchmarks/bench_search.py): no dashboard, no log
            # forwarding, and no runtime_env (it goes through Ray's runtime-env agent before the first task)
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = workers
            # local workers import `evaluate` by module name: they inherit this process's import path through
            # the environment of the raylet ray.init starts (set for the call only)
            old = os.environ.get("PYTHONPATH")
            if not address:
                os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
            try:
                ray.init(**kwargs)
            except Exception as e:
                where = f"at {address!r}" if address else "locally"
                raise UserInputError(f"cannot start Ray {where}: {type(e).__name__}: {e}") from None
            finally:
                if not address:
                    if old is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = old
            self.owns = True
            self.init_seconds = time.perf_counter() - t0
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
