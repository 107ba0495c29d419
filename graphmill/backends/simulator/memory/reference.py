"""The reference memory kernel: every port of every cycle, one word at a time.

The plain statement of the model (see the package docstring): each read buffer keeps a count per address
of the words in its active window, and a demanded address whose count is zero swaps the halves. The fast
kernel (fast.py) must give exactly this kernel's result; tests/backends/simulator/test_fast_kernel.py
checks that on generated layers, and test_vs_scalesim.py checks this model against SCALE-Sim itself.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..compute import mapping
from ..lowering import ArrayLayer
from .shared import (DF_CODE, RB_ACT, RB_EPS, RB_MISSES, RB_NLINES, RB_PREF, RB_START, RB_WORDS, MemoryResult,
                     buffer_params, demand, end_row, finish, kernel_state, rb_miss, rb_new, row_cycle, wb_write,
                     write_buffer_params)
from .streams import operand_matrices, prefetch_streams


@njit(cache=True)
def _window_counts(stream, rb, space):
    """Per address, how many of the active window's words hold it (lines [0, act) of the stream)."""
    cnt = np.zeros(space, np.int32)
    eps = rb[RB_EPS]
    n = stream.shape[0]
    for l in range(rb[RB_ACT]):
        for q in range(l * eps, min((l + 1) * eps, n)):
            cnt[stream[q]] += 1
    return cnt


@njit(cache=True)
def _slide_counts(stream, rb, cnt):
    """Before a swap: the prefetch half's lines leave the window's counts, the next ones enter."""
    n = stream.shape[0]
    eps = rb[RB_EPS]
    nlines = rb[RB_NLINES]
    start = rb[RB_START]
    for j in range(rb[RB_PREF]):
        l = (start + j) % nlines
        for q in range(l * eps, min((l + 1) * eps, n)):
            cnt[stream[q]] -= 1
    for j in range(rb[RB_PREF]):
        l = (start + rb[RB_ACT] + j) % nlines
        for q in range(l * eps, min((l + 1) * eps, n)):
            cnt[stream[q]] += 1


@njit(cache=True)
def _read_row(df, which, a, b, o, R, C, fr, fc, t, ports, stream, cnt, rb, cycle, double_count):
    """Serve one demand row of a read operand port by port; returns its stall."""
    off = 1
    for p in range(ports):
        ad = demand(df, which, a, b, o, R, C, fr, fc, t, p)
        if ad < 0:
            continue
        while cnt[ad] == 0:
            _slide_counts(stream, rb, cnt)
            off = rb_miss(rb, cycle, off, double_count)
    return off - 1


@njit(cache=True)
def simulate_layer_kernel(df, a, b, o, R, C, row_folds, col_folds, fold_len,
                          if_stream, if_eps, if_nlines, if_act, if_pref, if_rows, if_space,
                          f_stream, f_eps, f_nlines, f_act, f_pref, f_rows, f_space,
                          of_total, of_active, of_drain, of_bw, double_count, scalesim_accounting):
    """The memory simulation of one layer instance; the result's layout is MemoryResult.from_kernel's."""
    if_ports = C if df == 2 else R
    f_ports = R if df == 2 else C
    if_rb = rb_new(if_eps, if_nlines, if_act, if_pref, if_rows, if_stream.shape[0], True)
    f_rb = rb_new(f_eps, f_nlines, f_act, f_pref, f_rows, f_stream.shape[0], True)
    if_cnt = _window_counts(if_stream, if_rb, if_space)
    f_cnt = _window_counts(f_stream, f_rb, f_space)
    wb, parts, acc = kernel_state(of_total, of_active, of_drain, of_bw, scalesim_accounting)
    for fc in range(col_folds):
        for fr in range(row_folds):
            for t in range(fold_len):
                cycle = row_cycle(acc)
                if_st = _read_row(df, 0, a, b, o, R, C, fr, fc, t, if_ports, if_stream, if_cnt, if_rb, cycle,
                                  double_count)
                f_st = _read_row(df, 1, a, b, o, R, C, fr, fc, t, f_ports, f_stream, f_cnt, f_rb, cycle,
                                 double_count)
                cur = cycle
                for p in range(C):
                    if demand(df, 2, a, b, o, R, C, fr, fc, t, p) >= 0:
                        cur, parts = wb_write(wb, parts, 1, cur)
                end_row(acc, cycle, cur, if_st, f_st)
    return finish(acc, wb, parts, if_rb[RB_WORDS], f_rb[RB_WORDS], if_rb[RB_MISSES], f_rb[RB_MISSES])


def simulate_memory_reference(layer: ArrayLayer, rows: int, cols: int, dataflow: str, ifmap_words: int,
                              filter_words: int, ofmap_words: int, ifmap_bw: int, filter_bw: int, ofmap_bw: int,
                              *, double_count_prefetch_stall: bool = False,
                              scalesim_write_accounting: bool = False) -> MemoryResult:
    """One instance of ``layer`` through the reference kernel (USER bandwidth)."""
    a, b, o = operand_matrices(layer)
    ifs, fis = prefetch_streams(dataflow, a, b, rows, cols)
    mp = mapping(layer.M, layer.N, layer.K, rows, cols, dataflow)
    i_eps, i_nl, i_act, i_pref, i_rows = buffer_params(ifmap_words, ifmap_bw, ifs.shape[0])
    f_eps, f_nl, f_act, f_pref, f_rows = buffer_params(filter_words, filter_bw, fis.shape[0])
    of_active, of_drain = write_buffer_params(ofmap_words)
    res = simulate_layer_kernel(DF_CODE[dataflow], a, b, o, rows, cols, mp.row_folds, mp.col_folds,
                                mp.fold_cycles,
                                ifs, i_eps, i_nl, i_act, i_pref, i_rows, int(a.max()) + 1,
                                fis, f_eps, f_nl, f_act, f_pref, f_rows, int(b.max()) + 1,
                                ofmap_words, of_active, of_drain, ofmap_bw, double_count_prefetch_stall,
                                scalesim_write_accounting)
    return MemoryResult.from_kernel(res)
