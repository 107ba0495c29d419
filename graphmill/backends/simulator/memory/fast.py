"""The fast memory kernel: the reference kernel's model and result (every field), computed without a step
where nothing can happen.

* The ports of a fold cycle that carry data form one contiguous range (``prange``), so idle ports cost
  nothing and the ofmap words of a cycle are a count, not a list.
* A read buffer whose active half holds its whole prefetch stream can never miss (every demanded word is in
  the stream): its demand stream is not walked at all, and its operand matrix is not even built.
* The write buffer consumes a cycle's words in runs up to the next event (``wb_write``), and runs of cycles
  in which no event can happen are stepped over at once (ofmap words per fold cycle as prefix sums).
* A read operand's demands repeat in later folds that use the same block of it; per block and fold cycle,
  the span of stream lines of the demanded entries is kept, and a cycle whose span lies in the active
  window cannot miss, so its ports are not checked one by one.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..compute import mapping
from ..lowering import ArrayLayer
from .shared import (A_LAST, A_ROWS, DF_CODE, RB_ACT, RB_MISSES, RB_NLINES, RB_START, RB_WORDS, WB_ACTIVE,
                     WB_DRAIN_END, WB_FREE, MemoryResult, buffer_params, end_row, finish, kernel_state, prange,
                     rb_miss, rb_new, row_cycle, trange, wb_add, wb_write, write_buffer_params)
from .streams import ifmap_stream_len, operand_matrices, streams_and_own_lines


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
def _lines_of(check, stream, eps, space, mat):
    """A checked read operand's occurrence lists and line matrix (empty / the matrix itself otherwise)."""
    if check:
        ptr, lines = _occurrences(stream, eps, space)
        return ptr, lines, _line_matrix(mat, ptr, lines)
    ptr, lines = _occurrences(stream[:0], 1, 0)
    return ptr, lines, mat


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
def _hit(ptr, lines, v, nlines, start, act_l):
    """Whether the entry whose _line_matrix value is v (>= 0 or <= -2) is in the active window."""
    if v >= 0:
        d = v - start
        if d < 0:
            d += nlines
        return d < act_l
    return _in_window(ptr, lines, -2 - v, nlines, start, act_l)


@njit(cache=True)
def _entry(df, which, mat, R, C, fr, fc, t, p):
    """The entry of operand ``which`` (0 ifmap M x K, 1 filter K x N) that port p demands at fold (fr, fc),
    fold cycle t (the port must be busy), read from a matrix in the operand's layout."""
    if which == 0:
        if df == 0:
            return mat[fr * R + p, t - p]
        if df == 1:
            return mat[t - p - R, fr * R + p]
        return mat[fc * C + p, fr * R + R - 1 - t]
    if df == 0:
        return mat[t - p, fc * C + p]
    if df == 1:
        return mat[fr * R + R - 1 - t, fc * C + p]
    return mat[fr * R + p, t - p - R]


@njit(cache=True)
def _fill_spans(df, which, own, R, C, M, N, K, fr, fc, fold_len, slo, shi):
    """Per fold cycle, the lowest and highest stream line of the entries the operand's ports demand (the
    line of that very entry of the prefetch stream; -1 / -1 when none)."""
    for t in range(fold_len):
        lo, hi = prange(df, which, R, C, M, N, K, fr, fc, t)
        mn = -1
        mx = -1
        for p in range(lo, hi):
            v = _entry(df, which, own, R, C, fr, fc, t, p)
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
def _read_row(df, which, lm, ptr, lines, rb, R, C, M, N, K, fr, fc, t, cycle, double_count):
    """Serve one demand row of a read operand (its busy ports only); returns its stall."""
    lo, hi = prange(df, which, R, C, M, N, K, fr, fc, t)
    off = 1
    for p in range(lo, hi):
        v = _entry(df, which, lm, R, C, fr, fc, t, p)
        if v == -1:
            continue
        while not _hit(ptr, lines, v, rb[RB_NLINES], rb[RB_START], rb[RB_ACT]):
            off = rb_miss(rb, cycle, off, double_count)
    return off - 1


@njit(cache=True)
def simulate_layer_fast(df, a, b, M, N, K, R, C, row_folds, col_folds, fold_len,
                        check_if, if_stream, if_eps, if_nlines, if_act, if_pref, if_rows, if_space, if_len,
                        check_f, f_stream, f_eps, f_nlines, f_act, f_pref, f_rows, f_space, f_len,
                        of_total, of_active, of_drain, of_bw, double_count, scalesim_accounting, own_a, own_b):
    """simulate_layer_kernel's result, computed faster (see above). With check_if False the ifmap's active
    window must hold its whole stream (if_len words); likewise check_f."""
    # run-time (not literal) constants: literal arguments would make numba compile every callee once per
    # literal value (a cold compile several seconds longer)
    zero = R - R
    one = zero + 1
    two = zero + 2
    if_rb = rb_new(if_eps, if_nlines, if_act, if_pref, if_rows, if_len, check_if)
    f_rb = rb_new(f_eps, f_nlines, f_act, f_pref, f_rows, f_len, check_f)
    if_ptr, if_lines, la = _lines_of(check_if, if_stream, if_eps, if_space, a)
    f_ptr, f_lines, lb = _lines_of(check_f, f_stream, f_eps, f_space, b)
    wb, parts, acc = kernel_state(of_total, of_active, of_drain, of_bw, scalesim_accounting)
    # ofmap words per fold cycle depend on the fold only through the two bounds below: prefix sums of at
    # most four distinct patterns, used to step over cycles where nothing can happen (no write-buffer
    # event, no demand on a read buffer that can miss)
    # A fold's demands on a read operand repeat in later folds that use the same block of it (os: ifmap
    # by row fold, filter by column fold; ws: ifmap by row fold; is: filter by row fold).
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
            if_tlo, if_thi = trange(df, zero, R, C, M, N, K, fr, fc, fold_len) if check_if else (0, 0)
            f_tlo, f_thi = trange(df, one, R, C, M, N, K, fr, fc, fold_len) if check_f else (0, 0)
            if_b = (fr if if_key == 1 else fc) if if_nb > 0 else -1
            if if_b >= 0 and not if_done[if_b]:
                _fill_spans(df, zero, own_a, R, C, M, N, K, fr, fc, fold_len, if_slo[if_b], if_shi[if_b])
                if_done[if_b] = True
            f_b = (fr if f_key == 1 else fc) if f_nb > 0 else -1
            if f_b >= 0 and not f_done[f_b]:
                _fill_spans(df, one, own_b, R, C, M, N, K, fr, fc, fold_len, f_slo[f_b], f_shi[f_b])
                f_done[f_b] = True
            kr = min(R, M - fr * R) if df == 0 else 0
            kc = min(C, (N if df < 2 else M) - fc * C)
            q = 0
            while q < n_pat and not (pat_key[q, 0] == kr and pat_key[q, 1] == kc):
                q += 1
            if q == n_pat:
                pat_key[q, 0] = kr
                pat_key[q, 1] = kc
                cum = 0
                for t in range(fold_len):
                    lo, hi = prange(df, two, R, C, M, N, K, fr, fc, t)
                    pat[q, t] = cum
                    cum += hi - lo
                pat[q, fold_len] = cum
                n_pat += 1
            P = pat[q]
            t = zero
            while t < fold_len:
                cycle = row_cycle(acc)
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
                    if cycle < wb[WB_DRAIN_END]:
                        kmax = min(wb[WB_DRAIN_END] - cycle, tend - t)
                        room = wb[WB_FREE] - 1  # words that keep free > 0
                    else:
                        kmax = tend - t
                        room = wb[WB_FREE] - wb[WB_ACTIVE]  # words that keep free >= the active half
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
                        wb_add(wb, P[t + k] - P[t])
                        if cycle + k - 1 > acc[A_LAST]:
                            acc[A_LAST] = cycle + k - 1
                        acc[A_ROWS] += k
                        t += k
                        continue
                if_st = 0
                f_st = 0
                if check_if and not (if_b >= 0 and _span_in_window(if_slo[if_b, t], if_shi[if_b, t],
                                                                   if_rb[RB_NLINES], if_rb[RB_START],
                                                                   if_rb[RB_ACT])):
                    if_st = _read_row(df, zero, la, if_ptr, if_lines, if_rb, R, C, M, N, K, fr, fc, t, cycle,
                                      double_count)
                if check_f and not (f_b >= 0 and _span_in_window(f_slo[f_b, t], f_shi[f_b, t], f_rb[RB_NLINES],
                                                                f_rb[RB_START], f_rb[RB_ACT])):
                    f_st = _read_row(df, one, lb, f_ptr, f_lines, f_rb, R, C, M, N, K, fr, fc, t, cycle,
                                     double_count)
                lo, hi = prange(df, two, R, C, M, N, K, fr, fc, t)
                cur, parts = wb_write(wb, parts, hi - lo, cycle)
                end_row(acc, cycle, cur, if_st, f_st)
                t += 1
    return finish(acc, wb, parts, if_rb[RB_WORDS], f_rb[RB_WORDS], if_rb[RB_MISSES], f_rb[RB_MISSES])


_EMPTY2 = np.zeros((1, 1), np.int32)
_EMPTY1 = np.zeros(1, np.int32)


def simulate_memory_fast(layer: ArrayLayer, rows: int, cols: int, dataflow: str, ifmap_words: int,
                         filter_words: int, ofmap_words: int, ifmap_bw: int, filter_bw: int, ofmap_bw: int,
                         *, double_count_prefetch_stall: bool = False,
                         scalesim_write_accounting: bool = False) -> MemoryResult:
    """One instance of ``layer`` through the fast kernel (USER bandwidth)."""
    mp = mapping(layer.M, layer.N, layer.K, rows, cols, dataflow)
    if_len = ifmap_stream_len(layer)
    f_len = layer.K * layer.N
    i_eps, i_nl, i_act, i_pref, i_rows = buffer_params(ifmap_words, ifmap_bw, if_len)
    f_eps, f_nl, f_act, f_pref, f_rows = buffer_params(filter_words, filter_bw, f_len)
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
    of_active, of_drain = write_buffer_params(ofmap_words)
    res = simulate_layer_fast(DF_CODE[dataflow], a, b, layer.M, layer.N, layer.K, rows, cols, mp.row_folds,
                              mp.col_folds, mp.fold_cycles,
                              check_if, ifs, i_eps, i_nl, i_act, i_pref, i_rows, if_space, if_len,
                              check_f, fis, f_eps, f_nl, f_act, f_pref, f_rows, f_space, f_len,
                              ofmap_words, of_active, of_drain, ofmap_bw, double_count_prefetch_stall,
                              scalesim_write_accounting, own_a, own_b)
    return MemoryResult.from_kernel(res)
