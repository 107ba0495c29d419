"""A per-evaluation time limit: ``WithTimeout(evaluate, seconds)`` is itself a picklable evaluator.

An evaluation that runs past ``seconds`` raises ``EvaluationTimeout``, which the search records as a
failed trial (as it does any exception), and the search goes on. Three ways to stop it:

* ``"signal"``: ``SIGALRM`` (``setitimer``) in the calling thread; no extra process, but it can only
  interrupt Python code (a long call into C -- one big torch op -- ends first). Needs the main thread. An
  enclosing timer (``search.run(timeout=)`` on the same thread) is kept: the shorter limit wins.
* ``"process"``: the evaluation runs in a fresh child process (``spawn``), killed at the deadline; it
  stops anything, at the cost of a process start (and of importing torch again) per evaluation. The
  clock starts once the child has loaded the evaluator, so the start does not count against the limit.
  Not available inside a daemonic process (multiprocessing.Pool workers).
* ``"thread"``: a daemon thread, abandoned at the deadline: the trial fails on time but the abandoned
  work runs on in the background until it ends. The last resort.

``"auto"`` (default) takes ``"signal"`` in a main thread, else ``"process"`` where a child process is
allowed, else ``"thread"``.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from graphmill.util.errors import UserInputError

MODES = ("auto", "signal", "process", "thread")


class EvaluationTimeout(TimeoutError):
    """An evaluation ran past its time limit."""


class EvaluationFailed(RuntimeError):
    """An evaluation raised in the child process of ``mode="process"`` (the message is the child's error)."""


def _child(evaluate: Callable[[dict], Any], config: dict, conn) -> None:  # runs in the child process
    try:
        conn.send(("started", None))  # the evaluator is unpickled (its modules imported): the clock starts
        conn.send(("ok", evaluate(config)))
    except BaseException as e:  # noqa: BLE001 -- reported to the parent, which raises
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


@dataclass
class WithTimeout:
    """``evaluate`` with a limit of ``seconds`` per call (see the module docstring for ``mode``)."""

    evaluate: Callable[[dict], Any]
    seconds: float
    mode: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserInputError(f"timeout mode {self.mode!r}: use one of {', '.join(MODES)}")
        if not (isinstance(self.seconds, (int, float)) and self.seconds > 0):
            raise UserInputError(f"timeout {self.seconds!r}: must be a number of seconds > 0")

    @property
    def starts_processes(self) -> bool:
        """Whether every call starts a child process, which a daemonic process (the local pool's workers) may not:
        executors that run evaluations there refuse such an evaluator up front (every trial failed with an
        AssertionError; an outside check)."""
        return self.mode == "process"

    def resolved_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            return "signal"
        return "thread" if multiprocessing.current_process().daemon else "process"

    def _expired(self) -> EvaluationTimeout:
        return EvaluationTimeout(f"evaluation ran past its limit of {self.seconds:g} s")

    def __call__(self, config: dict) -> Any:
        mode = self.resolved_mode()
        if mode == "signal":
            return self._by_signal(config)
        if mode == "process":
            return self._by_process(config)
        return self._by_thread(config)

    def _by_signal(self, config: dict) -> Any:
        def expire(signum, frame):
            raise self._expired()

        # an enclosing limit (search.run(timeout=) sets one with the same timer) must still hold: one that ends
        # first stays in charge; else this one runs and the enclosing one is re-armed with what it had left
        enclosing = signal.getitimer(signal.ITIMER_REAL)[0]
        if 0 < enclosing <= self.seconds:
            return self.evaluate(config)
        previous = signal.signal(signal.SIGALRM, expire)
        start = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, float(self.seconds))
        try:
            return self.evaluate(config)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if enclosing > 0:
                signal.setitimer(signal.ITIMER_REAL, max(1e-3, enclosing - (time.monotonic() - start)))

    def _by_process(self, config: dict) -> Any:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(self.evaluate, config, child), daemon=True)
        proc.start()
        child.close()
        try:
            try:
                status, value = parent.recv()  # "started": the process start is not the evaluation's time
                if status == "started":
                    if not parent.poll(self.seconds):
                        raise self._expired()
                    status, value = parent.recv()
            except EOFError:
                proc.join()
                raise EvaluationFailed(f"the evaluation's process died (exit code {proc.exitcode})") from None
        finally:
            if proc.is_alive():
                proc.kill()
            proc.join()
            parent.close()
        if status != "ok":
            raise EvaluationFailed(value)
        return value

    def _by_thread(self, config: dict) -> Any:
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["value"] = self.evaluate(config)
            except BaseException as e:  # noqa: BLE001 -- re-raised in the caller
                box["error"] = e

        t = threading.Thread(target=work, daemon=True, name="graphmill-evaluation")
        t.start()
        t.join(self.seconds)
        if t.is_alive():
            raise self._expired()
        if "error" in box:
            raise box["error"]
        return box["value"]
