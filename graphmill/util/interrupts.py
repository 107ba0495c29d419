"""Ctrl-C between steps, not inside one: the one way long loops (supernet training, AutoHAS) stop and checkpoint."""
from __future__ import annotations

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
