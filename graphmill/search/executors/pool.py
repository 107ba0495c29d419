"""The local process pool (``executor="local"``, the default with ``workers > 1``): asynchronous, as in the
regularized-evolution paper's parallel setup: the runner hands the next candidate to whichever worker frees up
first, without waiting for the others.

Each worker is a long-lived process started with ``spawn`` (safe with torch and BLAS threads, unlike ``fork``)
that receives ``evaluate`` once, so ``evaluate`` must be a picklable top-level function. Workers ignore Ctrl-C
(the runner decides when to stop); a worker that dies (a crash in native code, ``kill``) or overruns its timeout
is replaced and its evaluation recorded as failed. A worker dies with the process that started it (Linux). A fresh
worker that dies before it starts its first evaluation could not load ``evaluate`` (an unguarded script's main
module re-imported by ``spawn``, a module the child cannot import): that stops the search with a
``UserInputError``, since every evaluation would fail alike and the failures would be kept in the checkpoint as if
the configurations were bad.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import time
from multiprocessing.connection import wait as wait_connections
from typing import Any, Callable

from graphmill.search.executors.base import Executor, call, evaluate_name
from graphmill.util.errors import UserInputError
from graphmill.util.interrupts import ctrl_c_ignored_by_started_processes
from graphmill.util.processes import die_with_parent


def _worker_main(conn, evaluate: Callable[[dict], Any], search_pid: int) -> None:  # pragma: no cover - a child
    die_with_parent(search_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # spawned ones start so (ProcessPoolExecutor._start); else now
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        token, config, timeout = msg
        try:  # a closed pipe (OSError): the parent is gone (kill -9), so there is no one to report to
            conn.send((token, None))  # started: the parent counts the timeout from here, not from the submission
            out = call(evaluate, config, timeout)
            try:
                conn.send((token, out))
            except OSError:
                raise
            except Exception as e:  # the result could not be pickled
                conn.send((token, ("failed", f"the result cannot be sent back: {type(e).__name__}: {e}", out[2])))
        except OSError:
            return


class _Slot:
    def __init__(self) -> None:
        self.proc = None
        self.conn = None
        self.token: int | None = None
        self.submitted = 0.0
        self.started: float | None = None  # when the worker reported the evaluation's start
        self.ready = False  # the process has reported a start once: it loaded ``evaluate``


class ProcessPoolExecutor(Executor):
    def __init__(self, evaluate: Callable[[dict], Any], workers: int, *, timeout: float | None = None,
                 start_method: str = "spawn") -> None:
        try:
            pickle.dumps(evaluate)
        except Exception as e:
            raise UserInputError(f"evaluate {evaluate!r} cannot be sent to worker processes ({e}); make it a "
                                 "top-level function of an importable module, or use workers=1") from None
        if getattr(evaluate, "starts_processes", False):  # WithTimeout(mode="process"), say
            raise UserInputError(f"evaluate {evaluate!r} starts a child process per call, which the local pool's "
                                 "workers (daemonic processes) may not: use its mode 'auto' (a SIGALRM in each "
                                 "worker), search.run(timeout=...), or executor 'inprocess' or 'ray'")
        self.evaluate = evaluate
        self.workers = workers
        self.timeout = timeout
        self.ctx = mp.get_context(start_method)
        self.slots = [_Slot() for _ in range(workers)]
        for s in self.slots:
            self._start(s)

    def _start(self, slot: _Slot) -> None:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker_main, args=(child, self.evaluate, os.getpid()), daemon=True)
        with ctrl_c_ignored_by_started_processes():  # a Ctrl-C is the search's: it stops the workers itself
            proc.start()
        child.close()
        slot.proc, slot.conn, slot.token, slot.ready = proc, parent, None, False

    def _stop(self, slot: _Slot) -> None:
        if slot.proc is not None:
            if slot.proc.is_alive():
                slot.proc.kill()
            slot.proc.join(5)
            slot.conn.close()
        slot.proc = slot.conn = None
        slot.token = None

    def submit(self, token: int, config: dict) -> None:
        for s in self.slots:
            if s.token is None:
                if s.proc is None or not s.proc.is_alive():
                    self._stop(s)
                    self._start(s)
                s.token, s.submitted, s.started = token, time.perf_counter(), None
                s.conn.send((token, config, self.timeout))
                return
        raise RuntimeError("no free worker")  # the runner never submits more than `workers`

    def started(self, token: int) -> float | None:
        for s in self.slots:
            if s.token == token:
                return s.started
        return None

    def wait(self, timeout: float | None = None):
        deadline = None if timeout is None else time.perf_counter() + timeout
        out: list = []
        while not out:
            busy = {s.conn: s for s in self.slots if s.token is not None}
            left = None if deadline is None else deadline - time.perf_counter()
            if not busy:
                break
            conns = wait_connections(list(busy), None if left is None else max(0.0, left))
            if not conns and left is not None and left <= 0:  # polled once (wait(0): what has already finished)
                break
            for conn in conns:
                s = busy[conn]
                token = s.token
                try:
                    tok, result = conn.recv()
                    if result is None:  # the worker's start report
                        s.started = time.perf_counter()
                        s.ready = True
                        continue
                    s.token = None
                    out.append((tok, result))
                except (EOFError, OSError):
                    s.proc.join(1)
                    code = s.proc.exitcode
                    fresh = not s.ready
                    self._stop(s)
                    if fresh:  # every evaluation would fail the same way: not a failed trial but a broken setup
                        raise UserInputError(
                            f"a worker process exited (exit code {code}) before it could start an evaluation: it "
                            f"could not load evaluate {evaluate_name(self.evaluate)} (its error is printed above); "
                            "in a script, call search.run under 'if __name__ == \"__main__\":' (workers are spawned "
                            "and import the main module again), or use workers=1 or executor='ray'")
                    out.append((token, ("failed", f"the worker process died (exit code {code})",
                                        time.perf_counter() - (s.started or s.submitted))))
        return out

    def abandon(self, token: int) -> None:
        for s in self.slots:
            if s.token == token:
                self._stop(s)

    def close(self) -> None:
        for s in self.slots:
            if s.token is not None:  # an evaluation no one will read (Ctrl-C, an error): stopped now, not in 3 s
                self._stop(s)
        for s in self.slots:
            if s.proc is not None and s.token is None:
                try:
                    s.conn.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + 3
        for s in self.slots:
            if s.proc is not None:
                s.proc.join(max(0.0, deadline - time.monotonic()))
            self._stop(s)
