"""What the memory kernels share: the demand of an array port, the ports and cycles that carry data, the
read buffers' prefetch swap and its stall, the write buffer, stall bookkeeping and the result layout.

One definition each, so that the reference kernel (reference.py), the fast kernel (fast.py) and the
CALC-bandwidth kernel (calc.py) cannot drift apart. State that the kernels thread through these helpers
lives in small int64 arrays (numba's njit functions cannot return updated scalars in place):

* read buffer (``rb_new``): the active window's first line, the cycle the last prefetch arrives, swaps,
  DRAM words, and the buffer's geometry;
* write buffer (``wb_new``): free words, the open line, closed and drained lines, the drain in flight, DRAM
  words, peak occupancy, and the part-full lines (closed early by a drain) in a (2, n) array ``parts``.

numba's on-disk cache keys a function by its own file only: after editing this file, delete the
``__pycache__/*.nbi`` / ``*.nbc`` files of this package (or set NUMBA_DISABLE_JIT) before timing runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

DF_CODE = {"os": 0, "ws": 1, "is": 2}


# -- demand of the array's edge ports (SCALE-Sim's demand matrices, computed on the fly) ------------------

@njit(cache=True)
def demand(df, which, a, b, o, R, C, fr, fc, t, p):
    """Address demanded at fold (fr, fc), fold cycle t, port p of operand ``which`` (0 ifmap, 1 filter, 2
    ofmap); -1 when the port is idle."""
    M = a.shape[0]
    K = a.shape[1]
    N = b.shape[1]
    if df == 0:  # os: Sr=M, Sc=N, T=K
        T = K
        if which == 0:
            u = t - p
            m = fr * R + p
            if 0 <= u < T and m < M:
                return a[m, u]
        elif which == 1:
            u = t - p
            n = fc * C + p
            if 0 <= u < T and n < N:
                return b[u, n]
        else:
            u = t - p - (T - 1)
            if 0 <= u < R:
                m = fr * R + (R - 1 - u)
                n = fc * C + p
                if m < M and n < N:
                    return o[m, n]
        return -1
    if df == 1:  # ws: Sr=K, Sc=N, T=M
        T = M
        if which == 0:
            u = t - p - R
            k = fr * R + p
            if 0 <= u < T and k < K:
                return a[u, k]
        elif which == 1:
            if t < R:
                k = fr * R + (R - 1 - t)
                n = fc * C + p
                if k < K and n < N:
                    return b[k, n]
        else:
            u = t - p - (2 * R - 1)
            n = fc * C + p
            if 0 <= u < T and n < N:
                return o[u, n]
        return -1
    # is: Sr=K, Sc=M, T=N
    T = N
    if which == 0:
        if t < R:
            k = fr * R + (R - 1 - t)
            m = fc * C + p
            if k < K and m < M:
                return a[m, k]
    elif which == 1:
        u = t - p - R
        k = fr * R + p
        if 0 <= u < T and k < K:
            return b[k, u]
    else:
        u = t - p - (2 * R - 1)
        m = fc * C + p
        if 0 <= u < T and m < M:
            return o[m, u]
    return -1


@njit(cache=True)
def prange(df, which, R, C, M, N, K, fr, fc, t):
    """[lo, hi) of the ports of operand ``which`` that carry data at fold (fr, fc), fold cycle t (the ports
    where ``demand`` is not -1, im2col padding entries counted as busy)."""
    if df == 0:  # os, T = K
        T = K
        if which == 0:
            lo = max(0, t - T + 1)
            hi = min(t + 1, min(R, M - fr * R))
        elif which == 1:
            lo = max(0, t - T + 1)
            hi = min(t + 1, min(C, N - fc * C))
        else:
            lo = max(0, t - T - R + 2)
            hi = min(t - T + 2 - max(0, fr * R + R - M), min(C, N - fc * C))
    elif df == 1:  # ws, T = M
        T = M
        if which == 0:
            lo = max(0, t - R - T + 1)
            hi = min(t - R + 1, min(R, K - fr * R))
        elif which == 1:
            lo = 0
            hi = min(C, N - fc * C) if (t < R and fr * R + R - 1 - t < K) else 0
        else:
            lo = max(0, t - 2 * R - T + 2)
            hi = min(t - 2 * R + 2, min(C, N - fc * C))
    else:  # is, T = N
        T = N
        if which == 0:
            lo = 0
            hi = min(C, M - fc * C) if (t < R and fr * R + R - 1 - t < K) else 0
        elif which == 1:
            lo = max(0, t - R - T + 1)
            hi = min(t - R + 1, min(R, K - fr * R))
        else:
            lo = max(0, t - 2 * R - T + 2)
            hi = min(t - 2 * R + 2, min(C, M - fc * C))
    if hi < lo:
        hi = lo
    return lo, hi


@njit(cache=True)
def trange(df, which, R, C, M, N, K, fr, fc, fold_len):
    """[lo, hi): the fold cycles in which operand ``which`` has a busy port (they are contiguous)."""
    lo = -1
    hi = 0
    for t in range(fold_len):
        a, b = prange(df, which, R, C, M, N, K, fr, fc, t)
        if b > a:
            if lo < 0:
                lo = t
            hi = t + 1
    if lo < 0:
        return 0, 0
    return lo, hi


# -- read buffers (USER bandwidth) ----------------------------------------------------------------------

RB_START, RB_LAST, RB_MISSES, RB_WORDS, RB_ACT, RB_PREF, RB_NLINES, RB_EPS, RB_LEN, RB_ROWS = range(10)


@njit(cache=True)
def lines_words(first, count, eps, nlines, n):
    """Words on the lines first, first+1, ... (count of them, circular over nlines) of a stream of n words."""
    words = 0
    for j in range(count):
        l = (first + j) % nlines
        w = min((l + 1) * eps, n) - l * eps
        if w > 0:
            words += w
    return words


@njit(cache=True)
def rb_new(eps, nlines, act, pref, rows, n, check):
    """A read buffer whose active window holds lines [0, act) of a stream of n words in lines of eps.
    ``check`` False: the window holds the whole stream (no miss can happen; it is not walked)."""
    rb = np.zeros(10, np.int64)
    rb[RB_LAST] = -1
    rb[RB_NLINES] = nlines
    rb[RB_EPS] = eps
    rb[RB_LEN] = n
    rb[RB_ROWS] = rows
    if check:
        rb[RB_ACT] = min(act, nlines)
        rb[RB_PREF] = min(pref, nlines - rb[RB_ACT])
        rb[RB_WORDS] = lines_words(0, rb[RB_ACT], eps, nlines, n)
    else:
        rb[RB_WORDS] = n
    return rb


@njit(cache=True)
def rb_miss(rb, cycle, off, double_count):
    """A demanded word is not in the active window: swap halves (the window advances by the prefetch
    half, whose lines the DRAM fetches after the previous fetch) and wait for it. Returns the new offset
    of the demand row's service cycle. ``double_count``: add a positive wait twice and a negative one
    once, SCALE-Sim 3.0.0's read_buffer.service_reads arithmetic."""
    rb[RB_WORDS] += lines_words(rb[RB_START] + rb[RB_ACT], rb[RB_PREF], rb[RB_EPS], rb[RB_NLINES], rb[RB_LEN])
    rb[RB_START] = (rb[RB_START] + rb[RB_PREF]) % rb[RB_NLINES]
    rb[RB_LAST] += rb[RB_ROWS] + 1
    rb[RB_MISSES] += 1
    pot = rb[RB_LAST] - (cycle + off)
    if double_count:
        off += pot
        if pot > 0:
            off += pot
    elif pot > 0:
        off += pot
    return off


# -- write buffer ---------------------------------------------------------------------------------------

(WB_TOTAL, WB_ACTIVE, WB_BW, WB_DRAIN_ROWS, WB_SCALESIM, WB_FREE, WB_LINE, WB_CLOSED, WB_DS, WB_DRAIN_END,
 WB_WORDS, WB_MAXOCC, WB_PP, WB_PARTN, WB_FIRST_DRAIN, WB_LAST_DRAIN) = range(16)


@njit(cache=True)
def wb_new(total, active, drain, bw, scalesim_accounting):
    """An empty write buffer of ``total`` words; a drain starts when fewer than ``active`` are free and
    empties ceil(drain / bw) lines of bw words, one line per cycle."""
    wb = np.zeros(16, np.int64)
    wb[WB_TOTAL] = total
    wb[WB_ACTIVE] = active
    wb[WB_BW] = bw
    wb[WB_DRAIN_ROWS] = (drain + bw - 1) // bw
    wb[WB_SCALESIM] = scalesim_accounting
    wb[WB_FREE] = total
    wb[WB_FIRST_DRAIN] = -1
    return wb


@njit(cache=True)
def wb_parts():
    """The part-full lines' (index, size), ascending; grown by wb_drain."""
    return np.zeros((2, 64), np.int64)


@njit(cache=True)
def wb_add(wb, words):
    """``words`` enter the buffer (no event checked)."""
    line = wb[WB_LINE] + words
    wb[WB_FREE] -= words
    wb[WB_CLOSED] += line // wb[WB_BW]
    wb[WB_LINE] = line % wb[WB_BW]
    occ = wb[WB_TOTAL] - wb[WB_FREE]
    if occ > wb[WB_MAXOCC]:
        wb[WB_MAXOCC] = occ


@njit(cache=True)
def _close_line(wb, parts):
    if wb[WB_LINE] > 0:
        n = wb[WB_PARTN]
        if n == parts.shape[1]:
            grown = np.zeros((2, 2 * n), np.int64)
            grown[:, :n] = parts
            parts = grown
        parts[0, n] = wb[WB_CLOSED]
        parts[1, n] = wb[WB_LINE]
        wb[WB_PARTN] = n + 1
        wb[WB_CLOSED] += 1
        wb[WB_LINE] = 0
    return parts


@njit(cache=True)
def wb_drain(wb, parts, start):
    """Close the open line and drain up to ceil(drain / bw) closed lines from cycle ``start``, one per cycle.
    Returns ``parts`` (grown when needed). SCALE-Sim's accounting (WB_SCALESIM) credits every drained line
    but the last as a full line of bw words (write_buffer.empty_drain_buf), even one a drain closed
    part-full; graphmill's credits the words drained."""
    parts = _close_line(wb, parts)
    ds = wb[WB_DS]
    end = min(ds + wb[WB_DRAIN_ROWS], wb[WB_CLOSED])
    nl = end - ds
    bw = wb[WB_BW]
    data = nl * bw
    last = bw
    pp = wb[WB_PP]
    while pp < wb[WB_PARTN] and parts[0, pp] < end:
        if parts[0, pp] >= ds:
            data -= bw - parts[1, pp]
            if parts[0, pp] == end - 1:
                last = parts[1, pp]
        pp += 1
    wb[WB_PP] = pp
    if wb[WB_SCALESIM] and nl > 0:
        data = nl * bw - (bw - last)
    wb[WB_FREE] += data
    wb[WB_WORDS] += data
    wb[WB_DS] = end
    if nl > 0:
        wb[WB_DRAIN_END] = start + nl - 1
        if wb[WB_FIRST_DRAIN] < 0:
            wb[WB_FIRST_DRAIN] = start
        if wb[WB_DRAIN_END] > wb[WB_LAST_DRAIN]:  # drains can overlap: the final one starts at the last row
            wb[WB_LAST_DRAIN] = wb[WB_DRAIN_END]
    else:
        wb[WB_DRAIN_END] = start
    return parts


@njit(cache=True)
def wb_write(wb, parts, rem, cycle):
    """``rem`` words enter in one demand row served from ``cycle``, consumed in runs up to the next event:
    a drain starts (fewer than the active half free) or, during a drain, the buffer is full (the row waits
    for the drain's end). Returns the cycle the row is served and ``parts``."""
    cur = cycle
    while rem > 0:
        if cur < wb[WB_DRAIN_END]:
            j = wb[WB_FREE] if wb[WB_FREE] > 1 else 1  # the word that leaves the buffer full
        else:
            j = wb[WB_FREE] - wb[WB_ACTIVE] + 1  # the word that leaves less than the active half free
            if j < 1:
                j = 1
        hit = j <= rem
        if not hit:
            j = rem
        rem -= j
        wb_add(wb, j)
        if not hit:
            break
        if cur < wb[WB_DRAIN_END]:
            cur = wb[WB_DRAIN_END]
        else:
            parts = wb_drain(wb, parts, cur)
    return cur, parts


@njit(cache=True)
def wb_finish(wb, parts, last_out):
    """Drain what is left after the last row (served at ``last_out``), back to back."""
    parts = _close_line(wb, parts)
    c = last_out
    while wb[WB_DS] < wb[WB_CLOSED]:
        parts = wb_drain(wb, parts, c)
        c = wb[WB_DRAIN_END] + 1
    return parts


# -- rows, stalls and results ---------------------------------------------------------------------------

A_STALL, A_IF, A_F, A_OF, A_ROWS, A_LAST = range(6)  # acc: stall sums (total, per buffer), rows, last row


@njit(cache=True)
def kernel_state(of_total, of_active, of_drain, of_bw, scalesim_accounting):
    """What every kernel starts from: the write buffer, its part-full lines, and ``acc``: the stall cycles
    (in all, and per buffer), the demand rows done, and the cycle the latest row was served."""
    return (wb_new(of_total, of_active, of_drain, of_bw, scalesim_accounting), wb_parts(),
            np.zeros(6, np.int64))


@njit(cache=True)
def row_cycle(acc):
    """The cycle the next demand row is issued: one row per cycle, delayed by the stalls so far."""
    return acc[A_ROWS] + acc[A_STALL]


@njit(cache=True)
def end_row(acc, cycle, cur, if_st, f_st):
    """A demand row issued at ``cycle`` is done: its ofmap words were served at ``cur``, its reads waited
    ``if_st`` / ``f_st``; the row waits for the slowest of the three buffers."""
    if cur > acc[A_LAST]:
        acc[A_LAST] = cur
    of_st = cur - cycle
    s = max(if_st, max(f_st, of_st))
    if if_st > 0:
        acc[A_IF] += if_st
    if f_st > 0:
        acc[A_F] += f_st
    if of_st > 0:
        acc[A_OF] += of_st
    if s > 0:
        acc[A_STALL] += s
    acc[A_ROWS] += 1


N_RESULT = 18


@njit(cache=True)
def finish(acc, wb, parts, if_words, f_words, if_misses, f_misses):
    """Drain the write buffer after the last row; the kernels' int64 result (MemoryResult.from_kernel)."""
    wb_finish(wb, parts, acc[A_LAST])
    res = np.zeros(N_RESULT, np.int64)
    res[0] = acc[A_ROWS]
    res[1] = acc[A_STALL]
    res[2] = if_words
    res[3] = f_words
    res[4] = wb[WB_WORDS]
    res[5] = acc[A_IF]
    res[6] = acc[A_F]
    res[7] = acc[A_OF]
    res[8] = wb[WB_DRAIN_END]
    res[9] = if_misses
    res[10] = f_misses
    res[11] = wb[WB_MAXOCC]
    res[12] = wb[WB_FIRST_DRAIN]
    res[17] = wb[WB_LAST_DRAIN]
    return res


@dataclass
class MemoryResult:
    """One layer instance's memory simulation. ``*_dram_first`` / ``*_dram_last``: the first and last cycle
    of an operand's DRAM transfers (SCALE-Sim's DRAM trace start and stop); for the read buffers they are
    computed in CALC bandwidth mode only (0 otherwise)."""

    compute_cycles: int  # stall-free cycles (SCALE-Sim's "compute cycles": rows - 1)
    stall_cycles: int
    ifmap_dram_words: int
    filter_dram_words: int
    ofmap_dram_words: int
    ifmap_stall_cycles: int
    filter_stall_cycles: int
    ofmap_stall_cycles: int
    ofmap_drain_end: int
    prefetch_swaps: int
    max_ofmap_occupancy_words: int
    ofmap_dram_first: int = -1
    ofmap_dram_last: int = 0
    ifmap_dram_first: int = 0
    ifmap_dram_last: int = 0
    filter_dram_first: int = 0
    filter_dram_last: int = 0
    ifmap_swaps: int = 0  # prefetch swaps (DRAM block fetches after the initial fill) per read buffer
    filter_swaps: int = 0

    @property
    def total_cycles(self) -> int:
        return self.compute_cycles + self.stall_cycles

    @classmethod
    def from_kernel(cls, res: np.ndarray) -> "MemoryResult":
        r = [int(x) for x in res]
        return cls(r[0] - 1, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9] + r[10], r[11], r[12], r[17],
                   r[13], r[14], r[15], r[16], r[9], r[10])


def buffer_params(words: int, bw: int, stream_len: int) -> tuple[int, int, int, int, int]:
    """SCALE-Sim's read_buffer geometry: line size, line count, active / prefetch lines, rows per fetch."""
    active = int(math.ceil(words * 0.5))
    pref = words - active
    eps = int(math.ceil(words / 100))
    nlines = stream_len // eps + 1
    return eps, nlines, int(math.ceil(active / eps)), int(math.ceil(pref / eps)), int(math.ceil(pref / bw))


def scalesim_read_words(words: int, bw: int, fetch_entries: int, swaps: int) -> int:
    """DRAM words a read buffer reads as SCALE-Sim 3.0.0 counts them (read_buffer.num_access, its
    DETAILED_ACCESS_REPORT / BANDWIDTH_REPORT reads): whole blocks of ``bw`` words. The initial fill reads
    ceil(active half / bw) rows of its fetch matrix (at most all ceil(fetch_entries / bw) of them), every
    prefetch swap ceil(prefetch half / bw) rows, each counted as ``bw`` words even where the row holds
    padding or lies past the operand's end (the fetch wraps around). ``fetch_entries``: the entries of its
    prefetch matrix, padding included (streams.prefetch_matrix_entries)."""
    active = int(math.ceil(words * 0.5))
    pref = words - active
    first = min(-(-active // bw), -(-fetch_entries // bw))
    return (first + swaps * (-(-pref // bw))) * bw


def write_buffer_params(words: int) -> tuple[int, int]:
    """SCALE-Sim's write_buffer geometry: active half (rounded up) and drain half, in words."""
    active = int(math.ceil(words * 0.5))
    return active, words - active
