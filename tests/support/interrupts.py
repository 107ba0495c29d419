"""The Ctrl-C numba raises when the interrupt lands inside one of its callbacks: an outside check's traceback of a
long `graphmill simulate` showed a SystemError caused by a SystemError caused by the KeyboardInterrupt."""

from __future__ import annotations


def raise_numba_wrapped_interrupt(*args, **kwargs):
    """Raise that chain (any arguments are ignored: it stands in for an evaluator, a pass, a progress callback)."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as k:
            raise SystemError("<function _numba_unpickle> returned a result with an exception set") from k
    except SystemError as inner:
        raise SystemError("CPUDispatcher(<function _build_stream>) returned a result with an exception set") \
            from inner
