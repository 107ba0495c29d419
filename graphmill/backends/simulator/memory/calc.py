"""SCALE-Sim's CALC interface-bandwidth mode (``InterfaceBandwidth: CALC``, its default): the DRAM is
assumed fast enough that no read ever stalls, and the simulation reports the bandwidth each layer needs.

This follows SCALE-Sim 3.0.0 (memory/read_buffer_estimate_bw.py, double_buffered_scratchpad_mem.py,
single_layer_sim.py) step by step, so that cycles and reported bandwidths are SCALE-Sim's:

* Each read buffer is 100 *sets* of ``floor(words / 100)`` distinct addresses, 50 active. A demanded
  address that is in none of the closed active sets, nor in the set being filled, joins that set (one
  DRAM read). When the set after the last active one starts, the window moves on by 50 sets, and the
  DRAM reads of the sets just filled are spread over the cycles since the previous move: the first 50
  sets before the first demand, at the default 10 words per cycle, ending 2 cycles before it (one cycle
  of latency); each later group over the cycles between the previous two moves. At the end, the sets
  still unfetched are fetched the same way.
* The ofmap write buffer drains ``cols`` words per cycle (SCALE-Sim's CALC ofmap bandwidth) with the same
  write-buffer model as USER mode; its stalls (rare: the array writes at most ``cols`` words a cycle)
  are the layer's only stalls.
* The bandwidth a layer needs, per operand, is its DRAM words over the cycles from its first DRAM
  transfer to its last, inclusive (SCALE-Sim's avg_*_dram_bw, BANDWIDTH_REPORT.csv).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..compute import mapping
from ..lowering import ArrayLayer
from .shared import (DF_CODE, MemoryResult, demand, end_row, finish, kernel_state, prange, row_cycle, wb_write,
                     write_buffer_params)
from .streams import operand_matrices

SETS_ACTIVE = 50  # int(active fraction 0.5 * 100)
SETS_PREFETCH = 50
DRAM_LATENCY = 1  # read_port's latency
(E_ITEMS, E_BW, E_CUR, E_NCUR, E_RSTART, E_REND, E_SEEN, E_FIRST, E_LSTART, E_LEND, E_DONE, E_READS, E_TVALID,
 E_TSTART, E_TEND) = range(15)


@njit(cache=True)
def _est_new(items, bw):
    est = np.zeros(15, np.int64)
    est[E_ITEMS] = items
    est[E_BW] = bw
    est[E_REND] = SETS_ACTIVE - 1
    est[E_LSTART] = -2
    est[E_LEND] = -1
    return est


@njit(cache=True)
def _fetch(est, start, end):
    """A group of DRAM reads requested over cycles start..end, answered one cycle later."""
    if end >= start:
        if not est[E_TVALID]:
            est[E_TSTART] = start + DRAM_LATENCY
            est[E_TVALID] = 1
        est[E_TEND] = end + DRAM_LATENCY


@njit(cache=True)
def _move_window(est, cycle):
    if not est[E_DONE]:
        est[E_LEND] = est[E_FIRST] - 1 - DRAM_LATENCY
        n = SETS_PREFETCH * est[E_ITEMS]
        est[E_LSTART] = est[E_LEND] - (n + est[E_BW] - 1) // est[E_BW] + 1
        est[E_DONE] = 1
    _fetch(est, est[E_LSTART], est[E_LEND])
    est[E_RSTART] += SETS_PREFETCH
    est[E_REND] += SETS_PREFETCH
    est[E_LSTART] = est[E_LEND] + 1
    est[E_LEND] = cycle


@njit(cache=True)
def _est_row(df, which, a, b, o, R, C, M, N, K, fr, fc, t, est, last_set, cycle):
    """One demand row of a read operand: no stall; track which addresses need DRAM reads."""
    lo, hi = prange(df, which, R, C, M, N, K, fr, fc, t)
    for p in range(lo, hi):
        ad = demand(df, which, a, b, o, R, C, fr, fc, t, p)
        if ad < 0:
            continue
        if not est[E_SEEN]:
            est[E_SEEN] = 1
            est[E_FIRST] = cycle
        s = last_set[ad]  # the latest set holding ad (an address is in at most one set of the window)
        cur = est[E_CUR]
        if (s >= est[E_RSTART] and s < min(cur, est[E_REND] + 1)) or s == cur:
            continue
        last_set[ad] = cur
        est[E_READS] += 1
        est[E_NCUR] += 1
        if est[E_NCUR] == est[E_ITEMS]:
            est[E_NCUR] = 0
            est[E_CUR] = cur + 1
            if cur + 1 == est[E_REND] + 1:
                _move_window(est, cycle)


@njit(cache=True)
def _est_finish(est):
    if est[E_NCUR] == 0:
        est[E_CUR] -= 1
    if not est[E_DONE]:
        end = -1 - DRAM_LATENCY
        n = (est[E_CUR] + 1) * est[E_ITEMS]
        _fetch(est, end - (n + est[E_BW] - 1) // est[E_BW] + 1, end)
    else:
        _fetch(est, est[E_LSTART], est[E_LEND])


@njit(cache=True)
def simulate_layer_calc(df, a, b, M, N, K, R, C, row_folds, col_folds, fold_len, if_items, if_bw, f_items, f_bw,
                        of_total, of_active, of_drain, of_bw, scalesim_accounting):
    """The CALC-mode simulation of one layer instance; the result's layout is MemoryResult.from_kernel's."""
    zero = R - R  # run-time constants (see fast.py)
    one = zero + 1
    two = zero + 2
    o = np.zeros((1, 1), np.int32)  # ofmap addresses are not needed: its busy ports are counted
    if_est = _est_new(if_items, if_bw)
    f_est = _est_new(f_items, f_bw)
    if_last = np.full(a.max() + 1, -1, np.int64)
    f_last = np.full(b.max() + 1, -1, np.int64)
    wb, parts, acc = kernel_state(of_total, of_active, of_drain, of_bw, scalesim_accounting)
    for fc in range(col_folds):
        for fr in range(row_folds):
            for t in range(fold_len):
                cycle = row_cycle(acc)
                _est_row(df, zero, a, b, o, R, C, M, N, K, fr, fc, t, if_est, if_last, cycle)
                _est_row(df, one, a, b, o, R, C, M, N, K, fr, fc, t, f_est, f_last, cycle)
                lo, hi = prange(df, two, R, C, M, N, K, fr, fc, t)
                cur, parts = wb_write(wb, parts, hi - lo, cycle)
                end_row(acc, cycle, cur, 0, 0)  # reads never stall in CALC mode
    _est_finish(if_est)
    _est_finish(f_est)
    res = finish(acc, wb, parts, if_est[E_READS], f_est[E_READS], 0, 0)
    res[13] = if_est[E_TSTART]
    res[14] = if_est[E_TEND]
    res[15] = f_est[E_TSTART]
    res[16] = f_est[E_TEND]
    return res


def simulate_memory_calc(layer: ArrayLayer, rows: int, cols: int, dataflow: str, ifmap_words: int,
                         filter_words: int, ofmap_words: int, ifmap_bw: int, filter_bw: int, ofmap_bw: int,
                         *, scalesim_write_accounting: bool = False) -> MemoryResult:
    """One instance of ``layer`` in CALC bandwidth mode. ``ifmap_bw`` / ``filter_bw``: the read buffers'
    default fetch rate (SCALE-Sim: 10 words per cycle); ``ofmap_bw``: the drain rate (SCALE-Sim: cols)."""
    a, b, _ = operand_matrices(layer)
    mp = mapping(layer.M, layer.N, layer.K, rows, cols, dataflow)
    of_active, of_drain = write_buffer_params(ofmap_words)
    res = simulate_layer_calc(DF_CODE[dataflow], a, b, layer.M, layer.N, layer.K, rows, cols, mp.row_folds,
                              mp.col_folds, mp.fold_cycles, ifmap_words // 100, ifmap_bw, filter_words // 100,
                              filter_bw, ofmap_words, of_active, of_drain, ofmap_bw, scalesim_write_accounting)
    return MemoryResult.from_kernel(res)
