"""Native libraries that print: their messages must not reach our stdout, where ``--json -`` writes a report.

METIS (through pymetis) prints ``***Cannot bisect a graph with 0 vertices!`` with C's ``printf`` when asked for
more parts than a (sub)graph can give; the partition it returns is still used, and the message, on stdout, made
``graphmill place ... --json -`` unparsable. Python's ``sys.stdout`` cannot catch it: the file descriptor is
swapped instead, and C's buffers are flushed before it is put back.
"""
from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def native_stdout_discarded() -> Iterator[None]:
    """Within the block, whatever native code writes to file descriptor 1 is discarded (Python's own
    ``print`` is flushed first and is unaffected after the block)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1 (a closed stdout): nothing to protect
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # a C library without fflush by that name: nothing buffered we can reach
        pass
