"""Pausing Python's cyclic garbage collector while graphs are built, rewritten or written out.

Nodes and values reference each other, so a graph is a web of reference cycles, and building or
rewriting one allocates objects by the thousand. CPython then runs its collector every 700
allocations, and every so often a full collection that traverses every object the process holds
(in a fresh process, mostly what its imports created): a quarter of loading, optimizing and
saving light_densenet121, and half of the first call's overhead on small models. Collection
adds nothing during these phases (what they build survives them), so it waits until they end;
the cycles they drop (removed nodes and their values) are collected afterwards as usual.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Automatic collection is off inside (nested uses are fine); usable as a decorator."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
