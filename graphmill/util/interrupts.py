"""Ctrl-C between steps, not inside one: the one way long loops (supernet training, AutoHAS) stop and checkpoint;
and SIGTERM handled as Ctrl-C, so that ``kill`` cleans up as Ctrl-C does."""
from __future__ import annotations

import os
import signal
import threading


class DeferredInterrupt:
    """While active (in the main thread, where Ctrl-C raises KeyboardInterrupt), a first Ctrl-C only sets
    ``requested``: the loop finishes the step under way, checkpoints it and stops, so the resumed run repeats no
    step (a KeyboardInterrupt inside a step would leave its weights half-updated, and the steps since the last
    checkpoint would be trained again). A second Ctrl-C raises at once (the last checkpoint stands)."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


class TerminateAsInterrupt:
    """While active (in the main thread), SIGTERM is handled as Ctrl-C is at that moment: ``kill PID``, a job
    scheduler's stop or a CI timeout then cleans up as Ctrl-C does (a save's temporary file removed, a training
    loop's step finished and checkpointed) instead of the interpreter dying at once and leaving a hidden
    ``.OUT.tmp`` beside the output. ``terminated`` says whether one came (``graphmill`` then exits 143).

    A process forked while this is active inherits the handler; there it restores the default and ends as a
    SIGTERM would, so a pool's ``terminate()`` still ends its workers."""

    def __init__(self) -> None:
        self.terminated = False
        self._old = None
        self._pid = os.getpid()

    def _handler(self, signum, frame) -> None:
        if os.getpid() != self._pid:  # a forked worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self.terminated = True
        on_interrupt = signal.getsignal(signal.SIGINT)
        if callable(on_interrupt):  # Python's own (raises KeyboardInterrupt) or DeferredInterrupt's
            on_interrupt(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> "TerminateAsInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None
