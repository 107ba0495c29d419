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

Departure from SCALE-Sim 3.0.0: its read buffer adds a positive prefetch stall twice and a negative one
once (its GitHub issue #130: ``offset += potential_stall_cycles`` before ``if potential_stall_cycles > 0:
offset += potential_stall_cycles``). graphmill adds a positive stall once and ignores negative ones.
``bug130=True`` reproduces SCALE-Sim's arithmetic (used by the test that shows the difference).

Second departure: when SCALE-Sim's write buffer drains several lines, it credits every line but the last
as a full line of ``bw`` words, even a line that a forced drain closed part-full, so its free space can
exceed what the buffer really holds free. graphmill credits the words actually drained.
``wr_quirk=True`` reproduces SCALE-Sim's accounting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .compute import mapping
from .lowering import ArrayLayer

DF_CODE = {"os": 0, "ws": 1, "is": 2}


# -- operand matrices (SCALE-Sim's operand_matrix, compact address spaces) ---------------------------------

def operand_matrices(layer: ArrayLayer):
    """ifmap (M x K), filter (K x N), ofmap (M x N) word addresses, SCALE-Sim's layout (channel fastest)."""
    eh, ew = layer.out_h, layer.out_w
    M, K, N = layer.M, layer.K, layer.N
    i = np.arange(M, dtype=np.int64)[:, None]
    j = np.arange(K, dtype=np.int64)[None, :]
    orow, ocol = np.divmod(i, ew)
    irow, icol = orow * layer.stride_h, ocol * layer.stride_w
    crow, k = np.divmod(j, layer.S * layer.C)
    ccol, cch = np.divmod(k, layer.C)
    a = ((crow + irow) * layer.W + (ccol + icol)) * layer.C + cch
    valid = (crow + irow < layer.H) & (ccol + icol < layer.W)
    a = np.where(valid, a, -1).astype(np.int32)
    b = (np.arange(N, dtype=np.int32)[None, :] * K + np.arange(K, dtype=np.int32)[:, None]).astype(np.int32)
    o = (np.arange(M, dtype=np.int32)[:, None] * N + np.arange(N, dtype=np.int32)[None, :]).astype(np.int32)
    del eh
    return np.ascontiguousarray(a), np.ascontiguousarray(b), np.ascontiguousarray(o)


@njit(cache=True)
def _diag_order(mat):
    """Flatten ``mat`` in SCALE-Sim's prefetch order: anti-diagonals, bottom row first."""
    m, n = mat.shape
    out = np.empty(m * n, np.int32)
    idx = 0
    for d in range(m + n - 1):
        rmax = min(d, m - 1)
        rmin = max(0, d - n + 1)
        for r in range(rmax, rmin - 1, -1):
            out[idx] = mat[r, d - r]
            idx += 1
    return out


def _pad_cols(x: np.ndarray, width: int) -> np.ndarray:
    if x.shape[1] == width:
        return x
    out = np.full((x.shape[0], width), -1, np.int32)
    out[:, : x.shape[1]] = x
    return out


def _blocks_of_cols(x: np.ndarray, w: int) -> np.ndarray:
    """Concatenate x[:, f*w:(f+1)*w] (padded to w columns) vertically over f."""
    folds = -(-x.shape[1] // w)
    xp = _pad_cols(x, folds * w)
    return xp.reshape(x.shape[0], folds, w).transpose(1, 0, 2).reshape(folds * x.shape[0], w)


def prefetch_streams(df: str, a, b, rows: int, cols: int):
    """The ifmap and filter DRAM streams (valid addresses in fetch order) of SCALE-Sim's prefetch matrices."""
    if df == "os":
        ifm = _diag_order(np.ascontiguousarray(_blocks_of_cols(np.ascontiguousarray(a.T), rows)))
        fil = _diag_order(np.ascontiguousarray(_blocks_of_cols(b, cols)))
    elif df == "ws":
        ifm = _diag_order(np.ascontiguousarray(_blocks_of_cols(a, rows)))
        fil = _blocks_of_cols(b, cols).ravel()
    else:
        ifm = _blocks_of_cols(np.ascontiguousarray(a.T), cols).ravel()
        fil = _diag_order(np.ascontiguousarray(_blocks_of_cols(np.ascontiguousarray(b.T), rows)))
    return (np.ascontiguousarray(ifm[ifm >= 0]).astype(np.int32),
            np.ascontiguousarray(fil[fil >= 0]).astype(np.int32))


# -- the kernel -------------------------------------------------------------------------------------------

@njit(cache=True)
def _demand(df, which, a, b, o, R, C, fr, fc, t, p):
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
def _init_window(stream, eps, nlines, n_active, cnt):
    words = 0
    n = stream.shape[0]
    for l in range(n_active):
        for q in range(l * eps, min((l + 1) * eps, n)):
            cnt[stream[q]] += 1
            words += 1
    return words


@njit(cache=True)
def _slide(stream, eps, nlines, n_active, n_pref, start, cnt):
    """Swap halves: the window [start, start+A) becomes [start+P, start+P+A). Returns words fetched."""
    n = stream.shape[0]
    for j in range(n_pref):
        l = (start + j) % nlines
        for q in range(l * eps, min((l + 1) * eps, n)):
            cnt[stream[q]] -= 1
    words = 0
    for j in range(n_pref):
        l = (start + n_active + j) % nlines
        for q in range(l * eps, min((l + 1) * eps, n)):
            cnt[stream[q]] += 1
            words += 1
    return words


@njit(cache=True)
def simulate_layer_kernel(df, a, b, o, R, C, row_folds, col_folds, fold_len,
                          if_stream, if_eps, if_nlines, if_act, if_pref, if_rows, if_space,
                          f_stream, f_eps, f_nlines, f_act, f_pref, f_rows, f_space,
                          of_total, of_active, of_drain, of_bw, n_out, bug130, wr_quirk):
    """Returns int64[12]: rows, stall, if_dram_words, f_dram_words, of_dram_words, if_stall_cycles,
    f_stall_cycles, of_stall_cycles, ofmap_dram_stop, if_misses, f_misses, max_ofmap_occupancy."""
    if_ports = C if df == 2 else R
    f_ports = R if df == 2 else C
    of_ports = C
    if_cnt = np.zeros(if_space, np.int32)
    f_cnt = np.zeros(f_space, np.int32)
    if_act_l = min(if_act, if_nlines)
    f_act_l = min(f_act, f_nlines)
    if_pref_l = min(if_pref, if_nlines - if_act_l)
    f_pref_l = min(f_pref, f_nlines - f_act_l)
    if_words = _init_window(if_stream, if_eps, if_nlines, if_act_l, if_cnt)
    f_words = _init_window(f_stream, f_eps, f_nlines, f_act_l, f_cnt)
    if_start = 0
    f_start = 0
    if_last = -1
    f_last = -1
    if_misses = 0
    f_misses = 0
    # write buffer state
    sizes = np.zeros(n_out + 2, np.int64)
    n_closed = 0
    line_idx = 0
    free = of_total
    ds = 0
    drain_end = 0
    of_words = 0
    drain_rows = (of_drain + of_bw - 1) // of_bw
    max_occ = 0
    stall = 0
    if_stall_sum = 0
    f_stall_sum = 0
    of_stall_sum = 0
    i = 0
    last_out = 0
    for fc in range(col_folds):
        for fr in range(row_folds):
            for t in range(fold_len):
                cycle = i + stall
                # ifmap reads
                off = 1
                for p in range(if_ports):
                    ad = _demand(df, 0, a, b, o, R, C, fr, fc, t, p)
                    if ad < 0:
                        continue
                    while if_cnt[ad] == 0:
                        if_words += _slide(if_stream, if_eps, if_nlines, if_act_l, if_pref_l, if_start, if_cnt)
                        if_start = (if_start + if_pref_l) % if_nlines
                        if_last += if_rows + 1
                        if_misses += 1
                        pot = if_last - (cycle + off)
                        if bug130:
                            off += pot
                            if pot > 0:
                                off += pot
                        elif pot > 0:
                            off += pot
                if_st = off - 1
                # filter reads
                off = 1
                for p in range(f_ports):
                    ad = _demand(df, 1, a, b, o, R, C, fr, fc, t, p)
                    if ad < 0:
                        continue
                    while f_cnt[ad] == 0:
                        f_words += _slide(f_stream, f_eps, f_nlines, f_act_l, f_pref_l, f_start, f_cnt)
                        f_start = (f_start + f_pref_l) % f_nlines
                        f_last += f_rows + 1
                        f_misses += 1
                        pot = f_last - (cycle + off)
                        if bug130:
                            off += pot
                            if pot > 0:
                                off += pot
                        elif pot > 0:
                            off += pot
                f_st = off - 1
                # ofmap writes
                cur = cycle
                for p in range(of_ports):
                    ad = _demand(df, 2, a, b, o, R, C, fr, fc, t, p)
                    if ad < 0:
                        continue
                    line_idx += 1
                    free -= 1
                    if line_idx == of_bw:
                        sizes[n_closed] = of_bw
                        n_closed += 1
                        line_idx = 0
                    if of_total - free > max_occ:
                        max_occ = of_total - free
                    if cur < drain_end:
                        if free <= 0:
                            cur = drain_end
                    elif free < of_active:
                        if line_idx > 0:
                            sizes[n_closed] = line_idx
                            n_closed += 1
                            line_idx = 0
                        end = min(ds + drain_rows, n_closed)
                        nl = end - ds
                        data = 0
                        if wr_quirk and nl > 0:  # SCALE-Sim: n lines * bw minus the empty slots of the last
                            data = nl * of_bw - (of_bw - sizes[end - 1])
                        else:
                            for q in range(ds, end):
                                data += sizes[q]
                        free += data
                        of_words += data
                        ds = end
                        if nl > 0:
                            drain_end = cur + nl - 1
                        else:
                            drain_end = cur
                of_st = cur - cycle
                if cur > last_out:
                    last_out = cur
                s = max(if_st, max(f_st, of_st))
                if if_st > 0:
                    if_stall_sum += if_st
                if f_st > 0:
                    f_stall_sum += f_st
                if of_st > 0:
                    of_stall_sum += of_st
                if s > 0:
                    stall += s
                i += 1
    # final drain
    if line_idx > 0:
        sizes[n_closed] = line_idx
        n_closed += 1
        line_idx = 0
    c = last_out
    while ds < n_closed:
        end = min(ds + drain_rows, n_closed)
        nl = end - ds
        for q in range(ds, end):
            of_words += sizes[q]
        ds = end
        drain_end = c + nl - 1
        c = drain_end + 1
    res = np.zeros(12, np.int64)
    res[0] = i
    res[1] = stall
    res[2] = if_words
    res[3] = f_words
    res[4] = of_words
    res[5] = if_stall_sum
    res[6] = f_stall_sum
    res[7] = of_stall_sum
    res[8] = drain_end
    res[9] = if_misses
    res[10] = f_misses
    res[11] = max_occ
    return res


# -- the fast kernel ----------------------------------------------------------------------------------------
#
# Same model, same results (every field of simulate_layer_kernel's result; tests/backends/simulator/
# test_fast_kernel.py checks equality on generated layers, configs, dataflows and both SCALE-Sim quirks),
# computed without a Python-level or per-port step where nothing can happen:
# * the ports of a fold cycle that carry data form one contiguous range (_prange), so idle ports cost nothing
#   and the ofmap words of a cycle are a count, not a list;
# * a read buffer whose active half holds its whole prefetch stream can never miss (every demanded word is
#   in the stream): its demand stream is not walked at all, and its operand matrix is not even built;
# * the write buffer consumes a cycle's words in runs up to the next event (a drain starts, the buffer
#   fills during a drain), with the closed lines kept as a count plus the few part-full lines.


@njit(cache=True)
def _prange(df, which, R, C, M, N, K, fr, fc, t):
    """[lo, hi) of the ports of operand ``which`` that carry data at fold (fr, fc), fold cycle t (the ports
    where _demand is not -1)."""
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
def _drained(ds, end, of_bw, part_idx, part_size, part_n, pp):
    """Words in closed lines [ds, end) (full lines hold of_bw; part-full ones are listed in part_idx /
    part_size, ascending, from pointer pp on), the size of line end-1, and the advanced pointer."""
    data = (end - ds) * of_bw
    last = of_bw
    while pp < part_n and part_idx[pp] < end:
        if part_idx[pp] >= ds:
            data -= of_bw - part_size[pp]
            if part_idx[pp] == end - 1:
                last = part_size[pp]
        pp += 1
    return data, last, pp


@njit(cache=True)
def _occurrences(stream, eps, space):
    """For every address, the prefetch-stream lines it occurs on, ascending (CSR: ptr, lines). The active
    window is always one circular run of lines, so an address is in it iff one of its lines is."""
    ptr = np.zeros(space + 1, np.int64)
    for q in range(stream.shape[0]):
        ptr[stream[q] + 1] += 1
    for x in range(space):
        ptr[x + 1] += ptr[x]
    fill = ptr[:-1].copy()
    lines = np.empty(stream.shape[0], np.int32)
    for q in range(stream.shape[0]):
        ad = stream[q]
        lines[fill[ad]] = q // eps
        fill[ad] += 1
    return ptr, lines


@njit(cache=True)
def _in_window(ptr, lines, ad, nlines, start, act_l):
    for q in range(ptr[ad], ptr[ad + 1]):
        d = lines[q] - start
        if d < 0:
            d += nlines
        if d < act_l:
            return True
    return False


@njit(cache=True)
def _lines_words(first, count, eps, nlines, n):
    """Words on the lines first, first+1, ... (count of them, circular over nlines) of a stream of n words."""
    words = 0
    for j in range(count):
        l = (first + j) % nlines
        w = min((l + 1) * eps, n) - l * eps
        if w > 0:
            words += w
    return words


@njit(cache=True)
def _line_matrix(mat, ptr, lines):
    """Per operand-matrix entry: -1 for an im2col padding entry, the stream line of its address when the
    address occurs once in the stream, else -2 - address (look its lines up in ptr / lines). One lookup
    in the operand's own layout instead of three scattered ones, for most words."""
    m, n = mat.shape
    out = np.empty((m, n), np.int32)
    for r in range(m):
        for c in range(n):
            ad = mat[r, c]
            if ad < 0:
                out[r, c] = -1
            elif ptr[ad + 1] - ptr[ad] == 1:
                out[r, c] = lines[ptr[ad]]
            else:
                out[r, c] = -2 - ad
    return out


@njit(cache=True)
def _hit(lm, ptr, lines, v, nlines, start, act_l):
    """Whether the entry whose _line_matrix value is v (>= 0 or <= -2) is in the active window."""
    if v >= 0:
        d = v - start
        if d < 0:
            d += nlines
        return d < act_l
    return _in_window(ptr, lines, -2 - v, nlines, start, act_l)


@njit(cache=True)
def _trange(df, which, R, C, M, N, K, fr, fc, fold_len):
    """[lo, hi): the fold cycles in which operand ``which`` has a busy port (they are contiguous)."""
    lo = -1
    hi = 0
    for t in range(fold_len):
        a, b = _prange(df, which, R, C, M, N, K, fr, fc, t)
        if b > a:
            if lo < 0:
                lo = t
            hi = t + 1
    if lo < 0:
        return 0, 0
    return lo, hi


@njit(cache=True)
def _build_stream(mat, transpose, w, diag, eps):
    """prefetch_streams for one operand in one pass, without temporaries: the stream of valid addresses
    of Y = mat (or mat.T) cut in blocks of w columns stacked vertically, in anti-diagonal (diag) or row
    order; and, per entry of mat, the stream line of that very entry (-1 for an im2col padding entry)."""
    if transpose:
        m, n = mat.shape[1], mat.shape[0]
    else:
        m, n = mat.shape[0], mat.shape[1]
    folds = (n + w - 1) // w
    xm = folds * m
    stream = np.empty(mat.shape[0] * mat.shape[1], np.int32)
    own = np.full(mat.shape, -1, np.int32)
    q = 0
    if diag:
        for d in range(xm + w - 1):
            rmax = min(d, xm - 1)
            rmin = max(0, d - w + 1)
            for r in range(rmax, rmin - 1, -1):
                c = d - r
                f = r // m
                j = f * w + c
                if j >= n:
                    continue
                rr = r - f * m
                if transpose:
                    ad = mat[j, rr]
                else:
                    ad = mat[rr, j]
                if ad < 0:
                    continue
                stream[q] = ad
                if transpose:
                    own[j, rr] = q // eps
                else:
                    own[rr, j] = q // eps
                q += 1
    else:
        for r in range(xm):
            f = r // m
            rr = r - f * m
            for c in range(w):
                j = f * w + c
                if j >= n:
                    continue
                if transpose:
                    ad = mat[j, rr]
                else:
                    ad = mat[rr, j]
                if ad < 0:
                    continue
                stream[q] = ad
                if transpose:
                    own[j, rr] = q // eps
                else:
                    own[rr, j] = q // eps
                q += 1
    return stream[:q].copy(), own


# (transpose, block width: 0 rows / 1 cols, diag) of the ifmap and filter streams per dataflow
_STREAM_FORM = {"os": ((True, 0, True), (False, 1, True)), "ws": ((False, 0, True), (False, 1, False)),
                "is": ((True, 1, False), (True, 0, True))}


def streams_and_own_lines(dataflow: str, a, b, rows: int, cols: int, i_eps: int, f_eps: int):
    """prefetch_streams(dataflow, a, b, rows, cols) and, per entry of a and b, its own stream line."""
    (ta, wa, da), (tb, wb, db) = _STREAM_FORM[dataflow]
    ifs, own_a = _build_stream(a, ta, (rows, cols)[wa], da, i_eps)
    fis, own_b = _build_stream(b, tb, (rows, cols)[wb], db, f_eps)
    return ifs, fis, own_a, own_b


@njit(cache=True)
def _own_line(df, which, own, R, C, fr, fc, t, p):
    if which == 0:
        if df == 0:
            return own[fr * R + p, t - p]
        if df == 1:
            return own[t - p - R, fr * R + p]
        return own[fc * C + p, fr * R + R - 1 - t]
    if df == 0:
        return own[t - p, fc * C + p]
    if df == 1:
        return own[fr * R + R - 1 - t, fc * C + p]
    return own[fr * R + p, t - p - R]


@njit(cache=True)
def _fill_spans(df, which, own, R, C, M, N, K, fr, fc, fold_len, slo, shi):
    """Per fold cycle, the lowest and highest stream line of the entries the operand's ports demand (the
    line of that very entry of the prefetch stream; -1 / -1 when none)."""
    for t in range(fold_len):
        lo, hi = _prange(df, which, R, C, M, N, K, fr, fc, t)
        mn = -1
        mx = -1
        for p in range(lo, hi):
            v = _own_line(df, which, own, R, C, fr, fc, t, p)
            if v < 0:
                continue
            if mn < 0 or v < mn:
                mn = v
            if v > mx:
                mx = v
        slo[t] = mn
        shi[t] = mx


@njit(cache=True)
def _span_in_window(lo, hi, nlines, start, act_l):
    """Whether every line of lo..hi is in the window (then every word demanded in that cycle hits)."""
    if hi < 0:
        return True
    dl = lo - start
    if dl < 0:
        dl += nlines
    dh = hi - start
    if dh < 0:
        dh += nlines
    return dl <= dh and dh < act_l


@njit(cache=True)
def _grow(x):
    """x with its length doubled (zeros after)."""
    out = np.zeros(2 * x.shape[0], np.int64)
    for q in range(x.shape[0]):
        out[q] = x[q]
    return out


@njit(cache=True)
def simulate_layer_fast(df, a, b, M, N, K, R, C, row_folds, col_folds, fold_len,
                        check_if, if_stream, if_eps, if_nlines, if_act, if_pref, if_rows, if_space, if_len,
                        check_f, f_stream, f_eps, f_nlines, f_act, f_pref, f_rows, f_space, f_len,
                        of_total, of_active, of_drain, of_bw, n_out, bug130, wr_quirk, own_a, own_b):
    """simulate_layer_kernel's result, computed faster (see above). With check_if False the ifmap's active
    window must hold its whole stream (if_len words); likewise check_f."""
    # run-time (not literal) constants: literal arguments would make numba compile every callee once per
    # literal value (a cold compile several seconds longer)
    zero = R - R
    one = zero + 1
    two = zero + 2
    if check_if:
        if_ptr, if_lines = _occurrences(if_stream, if_eps, if_space)
        la = _line_matrix(a, if_ptr, if_lines)
        if_act_l = min(if_act, if_nlines)
        if_pref_l = min(if_pref, if_nlines - if_act_l)
        if_words = _lines_words(zero, if_act_l, if_eps, if_nlines, if_len)
    else:
        if_ptr, if_lines = _occurrences(if_stream[:0], 1, 0)
        la = a
        if_act_l = 0
        if_pref_l = 0
        if_words = if_len
    if check_f:
        f_ptr, f_lines = _occurrences(f_stream, f_eps, f_space)
        lb = _line_matrix(b, f_ptr, f_lines)
        f_act_l = min(f_act, f_nlines)
        f_pref_l = min(f_pref, f_nlines - f_act_l)
        f_words = _lines_words(zero, f_act_l, f_eps, f_nlines, f_len)
    else:
        f_ptr, f_lines = _occurrences(f_stream[:0], 1, 0)
        lb = b
        f_act_l = 0
        f_pref_l = 0
        f_words = f_len
    if_start = zero
    f_start = zero
    if_last = -1
    f_last = -1
    if_misses = 0
    f_misses = 0
    # write buffer: closed lines are counted; the part-full ones (closed by a drain) are listed
    part_idx = np.zeros(64, np.int64)
    part_size = np.zeros(64, np.int64)
    part_n = 0
    pp = 0
    n_closed = 0
    line_idx = 0
    free = of_total
    ds = 0
    drain_end = 0
    of_words = 0
    drain_rows = (of_drain + of_bw - 1) // of_bw
    max_occ = 0
    stall = 0
    if_stall_sum = 0
    f_stall_sum = 0
    of_stall_sum = 0
    i = 0
    last_out = 0
    # ofmap words per fold cycle depend on the fold only through the two bounds below: prefix sums of at
    # most four distinct patterns, used to step over cycles where nothing can happen (no write-buffer
    # event, no demand on a read buffer that can miss)
    # A fold's demands on a read operand repeat in later folds that use the same block of it (os: ifmap
    # by row fold, filter by column fold; ws: ifmap by row fold; is: filter by row fold). Per block and
    # fold cycle, the span of stream lines of the demanded entries: a cycle whose span lies in the active
    # window cannot miss, so its ports are not checked one by one.
    if_key = 1 if df < 2 else 0  # 1: by row fold, 2: by column fold, 0: no reuse
    f_key = 2 if df == 0 else (0 if df == 1 else 1)
    if_nb = (row_folds if if_key == 1 else col_folds) if (check_if and if_key > 0) else 0
    f_nb = (row_folds if f_key == 1 else col_folds) if (check_f and f_key > 0) else 0
    if_slo = np.empty((if_nb, fold_len), np.int32)
    if_shi = np.empty((if_nb, fold_len), np.int32)
    if_done = np.zeros(if_nb, np.bool_)
    f_slo = np.empty((f_nb, fold_len), np.int32)
    f_shi = np.empty((f_nb, fold_len), np.int32)
    f_done = np.zeros(f_nb, np.bool_)
    pat_key = np.full((4, 2), -1, np.int64)
    pat = np.zeros((4, fold_len + 1), np.int64)
    n_pat = 0
    for fc in range(col_folds):
        for fr in range(row_folds):
            # fold cycles [lo, hi) in which a checked read buffer sees demands: no jump over them
            if_tlo, if_thi = _trange(df, zero, R, C, M, N, K, fr, fc, fold_len) if check_if else (0, 0)
            f_tlo, f_thi = _trange(df, one, R, C, M, N, K, fr, fc, fold_len) if check_f else (0, 0)
            if_b = (fr if if_key == 1 else fc) if if_nb > 0 else -1
            if if_b >= 0 and not if_done[if_b]:
                _fill_spans(df, zero, own_a, R, C, M, N, K, fr, fc, fold_len, if_slo[if_b], if_shi[if_b])
                if_done[if_b] = True
            f_b = (fr if f_key == 1 else fc) if f_nb > 0 else -1
            if f_b >= 0 and not f_done[f_b]:
                _fill_spans(df, one, own_b, R, C, M, N, K, fr, fc, fold_len, f_slo[f_b], f_shi[f_b])
                f_done[f_b] = True
            P = pat[0]
            kr = min(R, M - fr * R) if df == 0 else 0
            kc = min(C, (N if df < 2 else M) - fc * C)
            q = 0
            while q < n_pat and not (pat_key[q, 0] == kr and pat_key[q, 1] == kc):
                q += 1
            if q == n_pat:
                pat_key[q, 0] = kr
                pat_key[q, 1] = kc
                acc = 0
                for t in range(fold_len):
                    lo, hi = _prange(df, two, R, C, M, N, K, fr, fc, t)
                    pat[q, t] = acc
                    acc += hi - lo
                pat[q, fold_len] = acc
                n_pat += 1
            P = pat[q]
            t = zero
            while t < fold_len:
                cycle = i + stall
                tend = fold_len
                if if_tlo < if_thi:
                    if t >= if_tlo and t < if_thi:
                        tend = t
                    elif t < if_tlo:
                        tend = min(tend, if_tlo)
                if f_tlo < f_thi:
                    if t >= f_tlo and t < f_thi:
                        tend = t
                    elif t < f_tlo:
                        tend = min(tend, f_tlo)
                if tend > t:
                    # the longest run of cycles t .. t+k-1 in which no write-buffer event can happen
                    if cycle < drain_end:
                        kmax = min(drain_end - cycle, tend - t)
                        room = free - 1  # words that keep free > 0
                    else:
                        kmax = tend - t
                        room = free - of_active  # words that keep free >= of_active
                    k = 0
                    if room >= 0:
                        base = P[t]
                        if P[t + kmax] - base <= room:
                            k = kmax
                        else:
                            lo_k = 0  # P[t+lo_k]-base <= room < P[t+hi_k]-base
                            hi_k = kmax
                            while hi_k - lo_k > 1:
                                mid = (lo_k + hi_k) // 2
                                if P[t + mid] - base <= room:
                                    lo_k = mid
                                else:
                                    hi_k = mid
                            k = lo_k
                    if k > 0:
                        words = P[t + k] - P[t]
                        line_idx += words
                        free -= words
                        n_closed += line_idx // of_bw
                        line_idx = line_idx % of_bw
                        if of_total - free > max_occ:
                            max_occ = of_total - free
                        if cycle + k - 1 > last_out:
                            last_out = cycle + k - 1
                        i += k
                        t += k
                        continue
                if_st = 0
                f_st = 0
                if check_if and not (if_b >= 0 and _span_in_window(if_slo[if_b, t], if_shi[if_b, t], if_nlines,
                                                                   if_start, if_act_l)):
                    lo, hi = _prange(df, zero, R, C, M, N, K, fr, fc, t)
                    off = 1
                    for p in range(lo, hi):
                        if df == 0:
                            v = la[fr * R + p, t - p]
                        elif df == 1:
                            v = la[t - p - R, fr * R + p]
                        else:
                            v = la[fc * C + p, fr * R + R - 1 - t]
                        if v == -1:
                            continue
                        while not _hit(la, if_ptr, if_lines, v, if_nlines, if_start, if_act_l):
                            if_words += _lines_words(if_start + if_act_l, if_pref_l, if_eps, if_nlines, if_len)
                            if_start = (if_start + if_pref_l) % if_nlines
                            if_last += if_rows + 1
                            if_misses += 1
                            pot = if_last - (cycle + off)
                            if bug130:
                                off += pot
                                if pot > 0:
                                    off += pot
                            elif pot > 0:
                                off += pot
                    if_st = off - 1
                if check_f and not (f_b >= 0 and _span_in_window(f_slo[f_b, t], f_shi[f_b, t], f_nlines,
                                                                f_start, f_act_l)):
                    lo, hi = _prange(df, one, R, C, M, N, K, fr, fc, t)
                    off = 1
                    for p in range(lo, hi):
                        if df == 0:
                            v = lb[t - p, fc * C + p]
                        elif df == 1:
                            v = lb[fr * R + R - 1 - t, fc * C + p]
                        else:
                            v = lb[fr * R + p, t - p - R]
                        while not _hit(lb, f_ptr, f_lines, v, f_nlines, f_start, f_act_l):
                            f_words += _lines_words(f_start + f_act_l, f_pref_l, f_eps, f_nlines, f_len)
                            f_start = (f_start + f_pref_l) % f_nlines
                            f_last += f_rows + 1
                            f_misses += 1
                            pot = f_last - (cycle + off)
                            if bug130:
                                off += pot
                                if pot > 0:
                                    off += pot
                            elif pot > 0:
                                off += pot
                    f_st = off - 1
                # ofmap writes: rem words, consumed in runs up to the next write-buffer event
                lo, hi = _prange(df, two, R, C, M, N, K, fr, fc, t)
                rem = hi - lo
                cur = cycle
                while rem > 0:
                    if cur < drain_end:
                        j = free if free > 1 else 1  # the word that leaves the buffer full
                    else:
                        j = free - of_active + 1  # the word that leaves less than the active half free
                        if j < 1:
                            j = 1
                    hit = j <= rem
                    if not hit:
                        j = rem
                    rem -= j
                    line_idx += j
                    free -= j
                    n_closed += line_idx // of_bw
                    line_idx = line_idx % of_bw
                    if of_total - free > max_occ:
                        max_occ = of_total - free
                    if not hit:
                        break
                    if cur < drain_end:
                        cur = drain_end
                    else:
                        if line_idx > 0:
                            if part_n == part_idx.shape[0]:
                                part_idx = _grow(part_idx)
                                part_size = _grow(part_size)
                            part_idx[part_n] = n_closed
                            part_size[part_n] = line_idx
                            part_n += 1
                            n_closed += 1
                            line_idx = 0
                        end = min(ds + drain_rows, n_closed)
                        nl = end - ds
                        data, lastsz, pp = _drained(ds, end, of_bw, part_idx, part_size, part_n, pp)
                        if wr_quirk and nl > 0:
                            data = nl * of_bw - (of_bw - lastsz)
                        free += data
                        of_words += data
                        ds = end
                        if nl > 0:
                            drain_end = cur + nl - 1
                        else:
                            drain_end = cur
                of_st = cur - cycle
                if cur > last_out:
                    last_out = cur
                s = max(if_st, max(f_st, of_st))
                if if_st > 0:
                    if_stall_sum += if_st
                if f_st > 0:
                    f_stall_sum += f_st
                if of_st > 0:
                    of_stall_sum += of_st
                if s > 0:
                    stall += s
                i += 1
                t += 1
    # final drain
    if line_idx > 0:
        if part_n == part_idx.shape[0]:
            part_idx = _grow(part_idx)
            part_size = _grow(part_size)
        part_idx[part_n] = n_closed
        part_size[part_n] = line_idx
        part_n += 1
        n_closed += 1
        line_idx = 0
    c = last_out
    while ds < n_closed:
        end = min(ds + drain_rows, n_closed)
        nl = end - ds
        data, lastsz, pp = _drained(ds, end, of_bw, part_idx, part_size, part_n, pp)
        of_words += data
        ds = end
        drain_end = c + nl - 1
        c = drain_end + 1
    res = np.zeros(12, np.int64)
    res[0] = i
    res[1] = stall
    res[2] = if_words
    res[3] = f_words
    res[4] = of_words
    res[5] = if_stall_sum
    res[6] = f_stall_sum
    res[7] = of_stall_sum
    res[8] = drain_end
    res[9] = if_misses
    res[10] = f_misses
    res[11] = max_occ
    return res


@dataclass
class MemoryResult:
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

    @property
    def total_cycles(self) -> int:
        return self.compute_cycles + self.stall_cycles


def _buffer_params(words: int, bw: int, stream_len: int):
    """SCALE-Sim's read_buffer geometry: line size, line count, active / prefetch lines, rows per fetch."""
    active = int(math.ceil(words * 0.5))
    pref = words - active
    eps = int(math.ceil(words / 100))
    nlines = stream_len // eps + 1
    return eps, nlines, int(math.ceil(active / eps)), int(math.ceil(pref / eps)), int(math.ceil(pref / bw))


def _ifmap_stream_len(layer: ArrayLayer) -> int:
    """Valid entries of the im2col ifmap matrix (the length of its prefetch stream), without building it."""
    def axis(n_out, win, stride, size):
        return sum(max(0, min(win, size - o * stride)) for o in range(n_out))
    return axis(layer.out_h, layer.R, layer.stride_h, layer.H) * axis(layer.out_w, layer.S, layer.stride_w,
                                                                     layer.W) * layer.C


_EMPTY2 = np.zeros((1, 1), np.int32)
_EMPTY1 = np.zeros(1, np.int32)


def simulate_memory(layer: ArrayLayer, rows: int, cols: int, dataflow: str, ifmap_words: int,
                    filter_words: int, ofmap_words: int, ifmap_bw: int, filter_bw: int, ofmap_bw: int,
                    *, bug130: bool = False, wr_quirk: bool = False, reference: bool = False) -> MemoryResult:
    """Simulate one instance of ``layer`` (repeat not applied) cycle by cycle. ``reference=True`` runs the
    plain kernel (simulate_layer_kernel: every port of every cycle) instead of the fast one; both give
    the same result."""
    if reference:
        return _simulate_memory_reference(layer, rows, cols, dataflow, ifmap_words, filter_words, ofmap_words,
                                          ifmap_bw, filter_bw, ofmap_bw, bug130=bug130, wr_quirk=wr_quirk)
    mp = mapping(layer.M, layer.N, layer.K, rows, cols, dataflow)
    if_len = _ifmap_stream_len(layer)
    f_len = layer.K * layer.N
    i_eps, i_nl, i_act, i_pref, i_rows = _buffer_params(ifmap_words, ifmap_bw, if_len)
    f_eps, f_nl, f_act, f_pref, f_rows = _buffer_params(filter_words, filter_bw, f_len)
    check_if = i_act < i_nl  # else the active half holds the whole stream: no miss can happen
    check_f = f_act < f_nl
    a = b = _EMPTY2
    ifs = fis = _EMPTY1
    if_space = f_space = 1
    own_a = own_b = _EMPTY2
    if check_if or check_f:
        a, b, _ = operand_matrices(layer)
        ifs, fis, own_a, own_b = streams_and_own_lines(dataflow, a, b, rows, cols, i_eps, f_eps)
        if_space, f_space = int(a.max()) + 1, int(b.max()) + 1
        if not check_if:
            a, ifs, own_a = _EMPTY2, _EMPTY1, _EMPTY2
        if not check_f:
            b, fis, own_b = _EMPTY2, _EMPTY1, _EMPTY2
    of_active = int(math.ceil(ofmap_words * 0.5))
    of_drain = ofmap_words - of_active
    n_out = layer.M * layer.N * (1 if dataflow == "os" else mp.row_folds)
    res = simulate_layer_fast(DF_CODE[dataflow], a, b, layer.M, layer.N, layer.K, rows, cols, mp.row_folds,
                              mp.col_folds, mp.fold_cycles,
                              check_if, ifs, i_eps, i_nl, i_act, i_pref, i_rows, if_space, if_len,
                              check_f, fis, f_eps, f_nl, f_act, f_pref, f_rows, f_space, f_len,
                              ofmap_words, of_active, of_drain, ofmap_bw, n_out, bug130, wr_quirk, own_a, own_b)
    r = [int(x) for x in res]
    return MemoryResult(r[0] - 1, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9] + r[10], r[11])


def _simulate_memory_reference(layer: ArrayLayer, rows: int, cols: int, dataflow: str, ifmap_words: int,
                               filter_words: int, ofmap_words: int, ifmap_bw: int, filter_bw: int, ofmap_bw: int,
                               *, bug130: bool = False, wr_quirk: bool = False) -> MemoryResult:
    a, b, o = operand_matrices(layer)
    ifs, fis = prefetch_streams(dataflow, a, b, rows, cols)
    mp = mapping(layer.M, layer.N, layer.K, rows, cols, dataflow)
    i_eps, i_nl, i_act, i_pref, i_rows = _buffer_params(ifmap_words, ifmap_bw, ifs.shape[0])
    f_eps, f_nl, f_act, f_pref, f_rows = _buffer_params(filter_words, filter_bw, fis.shape[0])
    of_active = int(math.ceil(ofmap_words * 0.5))
    of_drain = ofmap_words - of_active
    n_out = layer.M * layer.N * (1 if dataflow == "os" else mp.row_folds)
    res = simulate_layer_kernel(DF_CODE[dataflow], a, b, o, rows, cols, mp.row_folds, mp.col_folds,
                                mp.fold_cycles,
                                ifs, i_eps, i_nl, i_act, i_pref, i_rows, int(a.max()) + 1,
                                fis, f_eps, f_nl, f_act, f_pref, f_rows, int(b.max()) + 1,
                                ofmap_words, of_active, of_drain, ofmap_bw, n_out, bug130, wr_quirk)
    r = [int(x) for x in res]
    return MemoryResult(r[0] - 1, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9] + r[10], r[11])
