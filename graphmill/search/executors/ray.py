"""The Ray executor (``executor="ray"``): ``ray.init()`` locally (with ``workers`` CPUs) when no address is
given, else connects to ``ray_address`` (an existing cluster, e.g. ``"auto"`` or ``"ray://host:10001"``). ray is
an optional extra (``pip install ray``).

Each worker is a Ray actor of one CPU, created as soon as the executor is (its process starts and loads
``evaluate`` while the runner asks for the first candidates), that takes one evaluation at a time; a free actor
takes the next candidate at once (asynchronous). Start-up is what costs with Ray (measured in
benchmarks/bench_search.py), so:

* ``ray.init`` runs without the dashboard, log forwarding or a runtime_env (which goes through Ray's runtime-env
  agent before the first task); local workers get the driver's import path through the raylet's environment;
* the worker-side code (the actor and ``executors.base.call``) is sent by value, so a worker imports only
  ``evaluate``'s own module, not graphmill (whose import pulls in onnx: seconds per worker on a loaded machine);
* an actor reports when it is ready, so an evaluation's timeout counts from its start in the worker, not from a
  submission that waited for the actor's process to start.

An actor whose evaluation overran its timeout is killed and replaced; one that died (a crash in native code)
is replaced and its evaluation recorded as failed.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any, Callable

from graphmill.search.executors import base
from graphmill.search.executors.base import Executor, call, evaluate_name
from graphmill.util.errors import UserInputError
from graphmill.util.interrupts import DeferredInterrupt


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """A ``UserInputError`` when ``address`` is ``HOST:PORT`` (or ``ray://HOST:PORT``) and nothing there accepts a
    TCP connection: ``ray.init`` would retry without end (measured: no answer after 400 s for ``127.0.0.1:1``,
    Ray's own warnings every few seconds). Other forms (``auto``, ...) are left to Ray, which answers at once."""
    import socket

    if not address:
        return
    rest = address.split("://", 1)[1] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or "/" in host:
        return
    if int(port) > 65535:
        raise UserInputError(f"ray address {address!r}: port {port} is not a TCP port (1..65535)")
    try:
        conn = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise UserInputError(f"ray address {address!r}: nothing answers at {host}:{port} ({why}); start the "
                             "cluster first (ray start --head) or leave the address out to start Ray "
                             "locally") from None
    if address.startswith("ray://"):  # Ray Client's server: left to Ray
        conn.close()
        return
    # Ray's GCS speaks gRPC (HTTP/2): its first frame answering the client preface is SETTINGS (type 4). Anything
    # else (a web server's "HTTP/1.0 400", silence) is no Ray head, where ray.init retried without end (an outside
    # check: over 450 s at an http.server)
    try:
        with conn:
            conn.settimeout(timeout)
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
            head = b""
            while len(head) < 9:
                got = conn.recv(9 - len(head))
                if not got:
                    break
                head += got
    except OSError:
        head = b""
    if len(head) < 9 or head[3] != 4:
        raise UserInputError(f"ray address {address!r}: what answers at {host}:{port} is not a Ray cluster's head "
                             "(no gRPC answer); give the address `ray start --head` printed (its GCS port, 6379 "
                             "by default)")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _cause(e: BaseException) -> str:
    """The last ``SomethingError: message`` line of a Ray error's text (the worker's own exception, under Ray's
    wrapping), without terminal colour codes."""
    lines = [_ANSI.sub("", x).strip() for x in str(e).splitlines()]
    found = [x for x in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", x)]
    return found[-1] if found else (lines[0] if lines else type(e).__name__)


class _Worker:  # pragma: no cover - runs in a Ray worker process
    """One evaluation at a time; ``evaluate`` unpickled once, when the actor starts."""

    def __init__(self, evaluate: Callable[[dict], Any]) -> None:
        self.evaluate = evaluate

    def ready(self) -> bool:
        return True

    def run(self, config: dict, timeout: float | None) -> tuple[str, Any, float]:
        return call(self.evaluate, config, timeout)


class _Slot:
    def __init__(self) -> None:
        self.actor: Any = None
        self.ready_ref: Any = None  # pending until the actor has started
        self.ready_at: float | None = None
        self.token: int | None = None
        self.ref: Any = None
        self.submitted = 0.0


class RayExecutor(Executor):
    def __init__(self, evaluate: Callable[[dict], Any], workers: int, *, timeout: float | None = None,
                 address: str | None = None) -> None:
        try:
            import ray
            import ray.cloudpickle
        except ImportError:
            raise UserInputError("executor 'ray' needs ray, an optional extra: pip install 'ray[default]'") from None
        self.ray = ray
        self.evaluate = evaluate
        self.workers = workers
        self.timeout = timeout
        self.owns = False
        self.init_seconds = 0.0
        if not ray.is_initialized():
            t0 = time.perf_counter()
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            # Ray's own variable (set on cluster nodes and under `ray job submit`): ray.init joins that cluster, and
            # refused the num_cpus given for a local start (an outside check)
            address = address or os.environ.get("RAY_ADDRESS") or None
            if address:
                check_address(address)
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = workers
            # local workers import `evaluate` by module name: they inherit this process's import path through
            # the environment of the raylet ray.init starts (set for the call only)
            old = os.environ.get("PYTHONPATH")
            if not address:
                os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
            try:
                # a Ctrl-C while Ray starts waits for the start (seconds), then stops with it shut down: raised
                # inside ray.init it left Ray's agent processes running (an outside check: 2 of 4 times)
                with DeferredInterrupt() as deferred:
                    ray.init(**kwargs)
                if deferred.requested:
                    ray.shutdown()
                    raise KeyboardInterrupt
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:
                where = f"at {address!r}" if address else "locally"
                what = "cannot connect to Ray" if address else "cannot start Ray"
                raise UserInputError(f"{what} {where}: {type(e).__name__}: {_cause(e)}") from None
            finally:
                if not address:
                    if old is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = old
            self.owns = True
            self.init_seconds = time.perf_counter() - t0
        for module in (base, sys.modules[__name__]):  # the worker-side code by value: no graphmill import there
            ray.cloudpickle.register_pickle_by_value(module)
        self.actor_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_Worker)
        self.slots = [_Slot() for _ in range(workers)]
        for s in self.slots:  # eagerly: the actors start while the runner asks for the first candidates
            self._start(s)

    def _start(self, slot: _Slot) -> None:
        slot.actor = self.actor_class.remote(self.evaluate)
        slot.ready_ref, slot.ready_at = slot.actor.ready.remote(), None
        slot.token = slot.ref = None

    def _replace(self, slot: _Slot) -> None:
        try:
            self.ray.kill(slot.actor, no_restart=True)
        except Exception:
            pass
        self._start(slot)

    def submit(self, token: int, config: dict) -> None:
        for s in self.slots:
            if s.token is None:
                s.token, s.submitted = token, time.perf_counter()
                s.ref = s.actor.run.remote(config, self.timeout)
                return
        raise RuntimeError("no free worker")  # the runner never submits more than `workers`

    def started(self, token: int) -> float | None:
        for s in self.slots:
            if s.token == token:
                return None if s.ready_at is None else max(s.ready_at, s.submitted)
        return None

    def wait(self, timeout: float | None = None):
        deadline = None if timeout is None else time.perf_counter() + timeout
        out: list = []
        while not out:
            waiting = {s.ready_ref: s for s in self.slots if s.ready_ref is not None}
            running = {s.ref: s for s in self.slots if s.token is not None}
            left = None if deadline is None else deadline - time.perf_counter()
            if not running:
                break
            ready, _ = self.ray.wait(list(waiting) + list(running), num_returns=1,
                                     timeout=None if left is None else max(0.0, left))
            if not ready and left is not None and left <= 0:  # polled once (wait(0): what has already finished)
                break
            if ready:
                more, _ = self.ray.wait(list(waiting) + list(running), num_returns=len(waiting) + len(running),
                                        timeout=0)
                ready = list(dict.fromkeys(ready + more))
            for ref in ready:
                if ref in waiting:
                    s = waiting[ref]
                    s.ready_ref = None
                    try:
                        self.ray.get(ref)
                        s.ready_at = time.perf_counter()
                    except Exception as e:  # the actor could not start: every evaluation would fail alike (an
                        # outside check: 6 of 6 trials failed as "ActorDiedError ... \x1b[36mray::_Worker", the
                        # ModuleNotFoundError unsaid, and the checkpoint then held them as done): a broken setup
                        raise UserInputError(
                            f"a Ray worker could not load evaluate {evaluate_name(self.evaluate)}: {_cause(e)}; "
                            "Ray workers import its module by name, so it must be importable on every node of "
                            "the cluster (its PYTHONPATH, or installed there)") from None
                    continue
                s = running[ref]
                token = s.token
                s.token = s.ref = None
                try:
                    out.append((token, self.ray.get(ref)))
                except Exception as e:  # the actor died (a crash in native code, killed)
                    t0 = s.ready_at if s.ready_at is not None else s.submitted
                    out.append((token, ("failed", f"ray task failed: {type(e).__name__}: {e}".splitlines()[0],
                                        time.perf_counter() - max(t0, s.submitted))))
                    self._replace(s)
        return out

    def abandon(self, token: int) -> None:
        for s in self.slots:
            if s.token == token:
                self._replace(s)

    def close(self) -> None:
        for s in self.slots:
            if s.actor is not None:
                try:
                    self.ray.kill(s.actor, no_restart=True)
                except Exception:
                    pass
            s.actor = s.ready_ref = s.ref = s.token = None
        if self.owns:
            self.ray.shutdown()
