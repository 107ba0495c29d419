"""The fast memory kernel (memory.simulate_layer_fast, the default) against the plain cycle-by-cycle kernel
(memory.simulate_layer_kernel: every port of every cycle, reference=True): every field of the result equal
(cycles, stalls per operand, DRAM words, prefetch swaps, drain end, peak ofmap occupancy), on generated
layers, arrays, buffer sizes and bandwidths (with and without stalls), all dataflows, and both SCALE-Sim
departures (double_count_prefetch_stall, scalesim_write_accounting). Reference: the plain kernel, itself checked against SCALE-Sim 3.0.0 in
test_vs_scalesim.py."""

from __future__ import annotations

import numpy as np
import pytest

from graphmill.backends.simulator.lowering import ArrayLayer
from graphmill.backends.simulator.memory import demand, ifmap_stream_len, operand_matrices, prange, \
    prefetch_streams, simulate_memory, streams_and_own_lines, trange


def _cases(seed: int, n: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        r = int(rng.integers(1, 4))
        s = int(rng.integers(1, 4))
        st = int(rng.integers(1, 3))
        h = int(rng.integers(r, r + 9))
        w = int(rng.integers(s, s + 9))
        lay = ArrayLayer("x", "Conv", h, w, r, s, int(rng.integers(1, 10)), int(rng.integers(1, 24)), st, st)
        rows, cols = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        words = [int(rng.choice([8, 24, 64, 100, 300, 1024, 100000])) for _ in range(3)]
        words[2] = max(words[2], 2)
        bws = [int(rng.integers(1, 12)) for _ in range(3)]
        yield lay, rows, cols, words, bws


@pytest.mark.parametrize("df", ["os", "ws", "is"])
@pytest.mark.parametrize("dc,wa", [(False, False), (True, False), (False, True), (True, True)])
def test_fast_equals_plain_kernel(df, dc, wa):
    seed = {"os": 1, "ws": 2, "is": 3}[df] * 10 + 2 * dc + wa
    stalled = 0
    for lay, rows, cols, words, bws in _cases(seed, 60):
        args = (lay, rows, cols, df, *words, *bws)
        fast = simulate_memory(*args, double_count_prefetch_stall=dc, scalesim_write_accounting=wa)
        plain = simulate_memory(*args, double_count_prefetch_stall=dc, scalesim_write_accounting=wa, reference=True)
        assert fast == plain, (lay, rows, cols, words, bws)
        stalled += fast.stall_cycles > 0
    assert stalled > 10, "the cases must exercise stalls"


def test_fast_equals_plain_kernel_resnet_like():
    """Bigger layers: a strided 7x7 stem-like conv and a 3x3 conv, buffers too small and big enough."""
    for lay in (ArrayLayer("stem", "Conv", 37, 37, 7, 7, 3, 16, 2, 2), ArrayLayer("c3", "Conv", 16, 16, 3, 3, 16, 40)):
        for df in ("os", "ws", "is"):
            for words, bws in (((2048, 2048, 1024), (4, 4, 4)), ((10 ** 6, 10 ** 6, 4096), (10, 10, 10))):
                args = (lay, 16, 8, df, *words, *bws)
                assert simulate_memory(*args) == simulate_memory(*args, reference=True), (lay, df, words)


def test_port_ranges_and_stream_length():
    """prange is exactly the set of ports where demand is not -1, trange the cycles where a read
    operand has one; ifmap_stream_len counts the valid im2col entries."""
    for lay, rows, cols, _, _ in _cases(7, 25):
        a, b, o = operand_matrices(lay)
        a2 = np.where(a < 0, 0, a)  # im2col padding entries (-1, skipped by the kernels) count as busy ports
        assert ifmap_stream_len(lay) == int((a >= 0).sum())
        M, K, N = lay.M, lay.K, lay.N
        for dfc, df in enumerate(("os", "ws", "is")):
            assert prefetch_streams(df, a, b, rows, cols)[0].shape[0] == ifmap_stream_len(lay)
            T = {0: K, 1: M, 2: N}[dfc]
            Sr, Sc = {0: (M, N), 1: (K, N), 2: (K, M)}[dfc]
            L = T + rows + cols - 2 if dfc == 0 else 2 * rows + cols + T - 2
            ports = (cols if dfc == 2 else rows, rows if dfc == 2 else cols, cols)
            for fr in range(-(-Sr // rows)):
                for fc in range(-(-Sc // cols)):
                    for which in range(2):  # the busy cycles of a read operand are one run: trange
                        busy_t = [t for t in range(L) if prange(dfc, which, rows, cols, M, N, K, fr, fc, t)[1]
                                  > prange(dfc, which, rows, cols, M, N, K, fr, fc, t)[0]]
                        lo, hi = trange(dfc, which, rows, cols, M, N, K, fr, fc, L)
                        assert busy_t == list(range(lo, hi)), (lay, df, which, fr, fc)
                    for t in range(L):
                        for which in range(3):
                            lo, hi = prange(dfc, which, rows, cols, M, N, K, fr, fc, t)
                            busy = [p for p in range(ports[which]) if demand(dfc, which, a2, b, o, rows, cols,
                                                                              fr, fc, t, p) >= 0]
                            assert busy == list(range(lo, hi)), (lay, df, which, fr, fc, t)



def test_one_pass_streams_equal_prefetch_streams():
    """The fast path's one-pass stream builder gives prefetch_streams' streams, and each entry's own line."""
    for lay, rows, cols, _, _ in _cases(11, 25):
        a, b, _ = operand_matrices(lay)
        for df in ("os", "ws", "is"):
            ifs, fis = prefetch_streams(df, a, b, rows, cols)
            ifs2, fis2, own_a, own_b = streams_and_own_lines(df, a, b, rows, cols, 3, 5)
            assert np.array_equal(ifs, ifs2) and np.array_equal(fis, fis2), (lay, df)
            for mat, st, own, eps in ((a, ifs2, own_a, 3), (b, fis2, own_b, 5)):
                assert np.all((own < 0) == (mat < 0))
                for idx in zip(*np.nonzero(mat >= 0)):  # the entry's address is on its line
                    assert mat[idx] in st[own[idx] * eps:(own[idx] + 1) * eps]
                assert np.array_equal(np.sort(own[mat >= 0]), np.arange(st.shape[0]) // eps)
