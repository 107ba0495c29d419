"""Cycle-by-cycle memory system of one array layer (numba).

What is simulated, per layer, in SCALE-Sim's terms (so totals can be compared with it):

* Operand demand streams. For every fold of the dataflow (compute.py) and every cycle of the fold, the
  address each array edge port reads (ifmap, filter) or writes (ofmap) is computed on the fly from the
  layer's operand matrices (ifmap M x K im2col addresses, filter K x N, ofmap M x N), with the skew,
  fill and drain gaps of the systolic array.
* Read buffers (ifmap, filter): double buffered; half (rounded up) is active, the rest is the prefetch
  half. DRAM data enter in the order the dataflow's *prefetch stream* lists them (SCALE-Sim's prefetch
  matrices: per fold, with its anti-diagonal order where SCALE-Sim uses one), grouped in lines of
  ceil(words/100) words. The active window starts filled (the fill before cycle 0 is reported
  separately). A demanded word missing from the active window swaps the halves: the window advances by
  the prefetch half and the DRAM fetches the next ``ceil(prefetch_words / bw)`` rows, one row of ``bw``
  words per cycle plus one cycle of latency, back to back after the previous fetch. The array waits
  (stall) until that fetch has arrived. The stream wraps around when a dataflow re-reads an operand.
* Write buffer (ofmap): words enter as the array produces them; when more than the drain half is
  occupied, a drain of ``ceil(drain_words / bw)`` rows of ``bw`` words starts (one row per cycle); when
  the buffer is full during a drain the array waits for the drain to finish. At the end, the rest drains.
* Each cycle, the array advances by one demand row, delayed by the largest of the three stalls.

Two departures from SCALE-Sim 3.0.0's arithmetic, each reproducible with a flag (both together are what
``scalesim_compat`` turns on in the engine):

* ``double_count_prefetch_stall``: SCALE-Sim's read buffer adds a positive prefetch stall twice and a
  negative one once (``offset += potential_stall_cycles`` before ``if potential_stall_cycles > 0: offset +=
  potential_stall_cycles`` in read_buffer.service_reads). graphmill adds a positive stall once and ignores
  negative ones.
* ``scalesim_write_accounting``: when SCALE-Sim's write buffer drains several lines, it credits every line
  but the last as a full line of ``bw`` words, even a line that a forced drain closed part-full, so its
  free space can exceed what the buffer really holds free. graphmill credits the words actually drained.

A third, in what is reported rather than simulated: SCALE-Sim counts a read buffer's DRAM reads in whole
fetch blocks of ``bw`` words (the initial fill's, every swap's, padding and wrap-around included), graphmill
the operand words fetched. ``scalesim_compat`` counts them SCALE-Sim's way in USER mode from the kernels'
per-buffer swaps (``shared.scalesim_read_words``, applied in engine.array_dram_read_words).

Modules: ``streams`` (operand matrices, prefetch streams), ``shared`` (the njit helpers every kernel uses:
port demands, read-buffer swaps, the write buffer, results), ``reference`` (the plain kernel: every port
of every cycle), ``fast`` (the same result without the idle steps; the default), ``calc`` (SCALE-Sim's
CALC interface-bandwidth mode: no read stalls, the DRAM bandwidth each layer needs).
"""

from __future__ import annotations

from ..lowering import ArrayLayer
from .fast import simulate_memory_fast
from .reference import simulate_memory_reference
from .shared import MemoryResult, demand, prange, trange
from .streams import ifmap_stream_len, operand_matrices, prefetch_streams, streams_and_own_lines

__all__ = ["MemoryResult", "simulate_memory", "demand", "prange", "trange", "ifmap_stream_len",
           "operand_matrices", "prefetch_streams", "streams_and_own_lines"]


def simulate_memory(layer: ArrayLayer, rows: int, cols: int, dataflow: str, ifmap_words: int,
                    filter_words: int, ofmap_words: int, ifmap_bw: int, filter_bw: int, ofmap_bw: int,
                    *, double_count_prefetch_stall: bool = False, scalesim_write_accounting: bool = False,
                    reference: bool = False) -> MemoryResult:
    """Simulate one instance of ``layer`` (repeat not applied) cycle by cycle, USER bandwidth.

    ``reference=True`` runs the plain kernel (every port of every cycle) instead of the fast one; both give
    the same result. The two flags reproduce SCALE-Sim 3.0.0's arithmetic (see the module docstring)."""
    run = simulate_memory_reference if reference else simulate_memory_fast
    return run(layer, rows, cols, dataflow, ifmap_words, filter_words, ofmap_words, ifmap_bw, filter_bw, ofmap_bw,
               double_count_prefetch_stall=double_count_prefetch_stall,
               scalesim_write_accounting=scalesim_write_accounting)
