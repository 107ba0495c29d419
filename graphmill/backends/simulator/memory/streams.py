"""Operand matrices and prefetch streams of one array layer (SCALE-Sim's operand_matrix and prefetch
matrices, in compact address spaces).

Both memory kernels read the same operand matrices; the reference kernel walks the prefetch streams of
``prefetch_streams`` (built with numpy), the fast one builds them in one pass together with each entry's
own stream line (``streams_and_own_lines``); tests check the two builders agree.

Like SCALE-Sim, the kernels materialize these matrices (a word address per operand entry), so one
layer's matrices are bounded by ``GRAPHMILL_MAX_SIM_BYTES`` (graphmill/util/limits.py, default 256 MiB
of 4-byte addresses): a larger layer is refused in one line naming the node and the size, before
anything is allocated (a 32768^3 MatMul would need 12 GiB).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from graphmill.ir import UserInputError
from graphmill.util.limits import max_sim_bytes, size_text

from ..lowering import ArrayLayer


def operand_matrix_bytes(layer: ArrayLayer) -> int:
    """Bytes of ``layer``'s three address matrices (4-byte words: M x K + K x N + M x N)."""
    M, K, N = layer.M, layer.K, layer.N
    return 4 * (M * K + K * N + M * N)


def check_operand_matrices(layer: ArrayLayer) -> None:
    """Refuse ``layer`` in one line when its address matrices exceed ``GRAPHMILL_MAX_SIM_BYTES``."""
    need, budget = operand_matrix_bytes(layer), max_sim_bytes()
    if need > budget:
        raise UserInputError(f"node {layer.name!r} ({layer.op}, {layer.shape_text()}): the memory simulation "
                             f"builds {size_text(need)} of operand address matrices, more than the "
                             f"{size_text(budget)} budget (GRAPHMILL_MAX_SIM_BYTES); raise it if the machine "
                             "has the memory (about 6x at the peak)")


def operand_matrices(layer: ArrayLayer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ifmap (M x K), filter (K x N), ofmap (M x N) word addresses, SCALE-Sim's layout (channel fastest);
    -1 marks an im2col entry outside the (padded) input.

    Refused (``check_operand_matrices``) beyond the ``GRAPHMILL_MAX_SIM_BYTES`` budget; the ifmap matrix
    is built in row blocks straight into int32, so the int64 arithmetic never spans the whole matrix."""
    check_operand_matrices(layer)
    ew = layer.out_w
    M, K, N = layer.M, layer.K, layer.N
    a = np.empty((M, K), np.int32)
    j = np.arange(K, dtype=np.int64)[None, :]
    crow, k = np.divmod(j, layer.S * layer.C)
    ccol, cch = np.divmod(k, layer.C)
    block = max(1, 2**22 // max(K, 1))
    for r0 in range(0, M, block):
        i = np.arange(r0, min(M, r0 + block), dtype=np.int64)[:, None]
        orow, ocol = np.divmod(i, ew)
        irow, icol = orow * layer.stride_h, ocol * layer.stride_w
        blk = ((crow + irow) * layer.W + (ccol + icol)) * layer.C + cch
        valid = (crow + irow < layer.H) & (ccol + icol < layer.W)
        a[r0:r0 + i.shape[0]] = np.where(valid, blk, -1)
    b = np.arange(N, dtype=np.int32)[None, :] * K + np.arange(K, dtype=np.int32)[:, None]
    o = np.arange(M, dtype=np.int32)[:, None] * N + np.arange(N, dtype=np.int32)[None, :]
    return a, b, o


def ifmap_stream_len(layer: ArrayLayer) -> int:
    """Valid entries of the im2col ifmap matrix (the length of its prefetch stream), without building it."""
    def axis(n_out, win, stride, size):
        return sum(max(0, min(win, size - o * stride)) for o in range(n_out))
    return axis(layer.out_h, layer.R, layer.stride_h, layer.H) * axis(layer.out_w, layer.S, layer.stride_w,
                                                                     layer.W) * layer.C


def prefetch_matrix_entries(dataflow: str, M: int, N: int, K: int, rows: int, cols: int) -> tuple[int, int]:
    """Entries of SCALE-Sim's ifmap and filter prefetch matrices, padding (-1) included: the operand matrix
    cut in blocks of array rows or columns (the last padded to full width) stacked vertically. SCALE-Sim's
    read buffer sizes its fetch matrix by these (memory.shared.scalesim_read_words)."""
    def blocks(height: int, width: int, w: int) -> int:
        return -(-width // w) * w * height
    if dataflow == "os":
        return blocks(K, M, rows), blocks(K, N, cols)
    if dataflow == "ws":
        return blocks(M, K, rows), blocks(K, N, cols)
    return blocks(K, M, cols), blocks(N, K, rows)


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


def prefetch_streams(df: str, a: np.ndarray, b: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
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


@njit(cache=True)
def _take(mat, transpose, j, rr, stream, own, q, eps):
    """Append entry (rr, j) of Y (mat or mat.T) to the stream unless it is padding; returns the new length."""
    ad = mat[j, rr] if transpose else mat[rr, j]
    if ad < 0:
        return q
    stream[q] = ad
    if transpose:
        own[j, rr] = q // eps
    else:
        own[rr, j] = q // eps
    return q + 1


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
            for r in range(min(d, xm - 1), max(0, d - w + 1) - 1, -1):
                f = r // m
                j = f * w + d - r
                if j < n:
                    q = _take(mat, transpose, j, r - f * m, stream, own, q, eps)
    else:
        for r in range(xm):
            f = r // m
            for c in range(w):
                j = f * w + c
                if j < n:
                    q = _take(mat, transpose, j, r - f * m, stream, own, q, eps)
    return stream[:q].copy(), own


# (transpose, block width: 0 rows / 1 cols, diag) of the ifmap and filter streams per dataflow
_STREAM_FORM = {"os": ((True, 0, True), (False, 1, True)), "ws": ((False, 0, True), (False, 1, False)),
                "is": ((True, 1, False), (True, 0, True))}


def streams_and_own_lines(dataflow: str, a: np.ndarray, b: np.ndarray, rows: int, cols: int, i_eps: int,
                          f_eps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """prefetch_streams(dataflow, a, b, rows, cols) and, per entry of a and b, its own stream line."""
    (ta, wa, da), (tb, wb, db) = _STREAM_FORM[dataflow]
    ifs, own_a = _build_stream(a, ta, (rows, cols)[wa], da, i_eps)
    fis, own_b = _build_stream(b, tb, (rows, cols)[wb], db, f_eps)
    return ifs, fis, own_a, own_b
