"""What every executor shares: the evaluation wrapper that runs in a worker, and the executor interface.

``call(evaluate, config, timeout)`` never raises: it returns ``("ok", result, seconds)`` or
``("failed", "ErrorType: message", seconds)``; a ``timeout`` (seconds) is enforced with ``SIGALRM`` where the
evaluation runs in a process's main thread (process-pool and Ray workers, the in-process executor when called from
the main thread); the runner also abandons an evaluation that overruns its timeout by ``grace`` seconds (the pool
kills and replaces that worker, Ray cancels the task). Where no alarm can be set (the in-process executor run
from another thread) an evaluation that overran is still a failed trial, when it returns.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import traceback
from typing import Any, Callable

from graphmill.util.interrupts import is_interrupt


class EvaluationTimeout(BaseException):
    """The alarm of an evaluation's timeout. Not an ``Exception``: an evaluator's own ``except Exception`` (a retry
    loop) swallowed it, and the in-process executor, which has no worker to kill, then waited for ever (an outside
    check)."""


def call(evaluate: Callable[[dict], Any], config: dict, timeout: float | None) -> tuple[str, Any, float]:
    """Run one evaluation; the outcome as ``(status, result or error text, seconds)``."""
    use_alarm = bool(timeout) and threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")
    t0 = time.perf_counter()
    old = None
    armed = [False]

    def alarm(signum, frame):  # pragma: no cover - runs in the evaluating process
        # only while the evaluation runs: an alarm due just as it ended raised while its outcome was written,
        # out of call() (a review: about half the evaluations failing within 75 us of the deadline)
        if armed[0]:
            armed[0] = False
            raise EvaluationTimeout()

    try:
        if use_alarm:
            old = signal.signal(signal.SIGALRM, alarm)
            armed[0] = True
            signal.setitimer(signal.ITIMER_REAL, float(timeout))
        try:
            result = evaluate(config)
        finally:
            armed[0] = False
        seconds = time.perf_counter() - t0
        if timeout and not use_alarm and seconds > timeout:  # it could not be stopped: still not a success
            return "failed", (f"timeout: the evaluation took {seconds:.3g} s, more than {timeout:g} s (outside "
                              "the main thread it could not be stopped: use executor 'local' for that)"), seconds
        return "ok", result, seconds
    except EvaluationTimeout:
        return "failed", f"timeout: the evaluation took more than {timeout:g} s", time.perf_counter() - t0
    except (Exception, SystemExit) as e:  # the evaluator's own failure: recorded, the search goes on
        if is_interrupt(e):  # a Ctrl-C numba wrapped (util.interrupts.INTERRUPTS) stops the search, as one does
            raise KeyboardInterrupt from e
        # sys.exit() in an evaluator ended the whole in-process search (exit 1, no word, and the same on every
        # rerun) where a pool worker's exit is a failed trial: one worker, the same results on every executor.
        # But a SystemExit raised by a signal handler of the user's (SIGTERM -> sys.exit, as job schedulers'
        # scripts do) is the process being told to stop, as a pool's main process would be: it goes on up
        if isinstance(e, SystemExit) and raised_by_a_signal_handler(e):
            raise
        tb = traceback.extract_tb(e.__traceback__)
        where = f" ({tb[-1].filename}:{tb[-1].lineno})" if tb else ""
        what = f"SystemExit: the evaluator called sys.exit({e.code!r})" if isinstance(e, SystemExit) else \
            f"{type(e).__name__}: {e}"
        return "failed", f"{what}{where}", time.perf_counter() - t0
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old if old is not None else signal.SIG_DFL)


def raised_by_a_signal_handler(e: BaseException) -> bool:
    """Whether ``e`` came through a Python signal handler installed now (for a signal that stops a process)."""
    codes = set()
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
        handler = signal.getsignal(getattr(signal, name)) if hasattr(signal, name) else None
        code = getattr(handler, "__code__", None) or getattr(getattr(handler, "__func__", None), "__code__", None)
        if code is not None:
            codes.add(code)
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False


class Executor:
    """Runs evaluations: ``submit(token, config)`` then ``wait(deadline)`` returns finished
    ``[(token, (status, result, seconds))]`` (at least one unless the deadline passed; ``wait(0)``: what has finished
    already, without blocking, which the runner keeps on Ctrl-C); ``started(token)`` says
    when an evaluation began in its worker; ``abandon(token)`` gives up an overrunning evaluation; ``close()``
    stops the workers. ``workers`` evaluations run at once."""

    workers: int = 1

    def submit(self, token: int, config: dict) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> list[tuple[int, tuple[str, Any, float]]]:
        raise NotImplementedError

    def started(self, token: int) -> float | None:
        """When ``token``'s evaluation began in its worker (``time.perf_counter()``), as the worker reported it;
        None while it waits for a worker (still spawning or importing): the runner counts an evaluation's timeout
        from this moment, so a slow worker start is not charged to the evaluation."""
        raise NotImplementedError

    def abandon(self, token: int) -> None:
        """Stop waiting for ``token`` (overran its timeout); the default cannot stop it and just forgets it."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def evaluate_name(evaluate: Any) -> str:
    """``MODULE:FUNCTION``, as ``--evaluator`` takes it: what a worker that cannot load ``evaluate`` names."""
    return f"{getattr(evaluate, '__module__', '?')}:{getattr(evaluate, '__qualname__', type(evaluate).__name__)}"


def not_a_number(x: Any) -> bool:
    """Text or a truth value (``str``, ``bytes``, a Python, numpy or torch bool): ``float()`` takes them (``"0.9"``,
    ``acc > 0.5`` as 1.0), so a reward that is one would steer a search silently."""
    if isinstance(x, (str, bytes, bool)):
        return True
    return str(getattr(x, "dtype", "")) in ("bool", "torch.bool")


def finite_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int past float's range (10**400)
        return None
    return v if math.isfinite(v) else None
