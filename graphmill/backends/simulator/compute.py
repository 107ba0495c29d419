"""Compute model of the systolic array: folds and cycles per dataflow (SCALE-Sim's mapping).

The operand matrices of a layer are ifmap M x K (im2col), filter K x N, ofmap M x N. A dataflow maps them
onto an R x C array as (Sr, Sc, T): os (M, N, K), ws (K, N, M), is (K, M, N). The array holds an R x C
block of the stationary operand per fold; folds = ceil(Sr/R) * ceil(Sc/C); a fold lasts
L = T + R + C - 2 (os) or 2R + C + T - 2 (ws, is) cycles (fill, stream T, drain). Compute cycles are
folds * L - 1, exactly SCALE-Sim's count. This closed form is the fast path; the memory simulation
(memory.py) steps through the same folds cycle by cycle and its stall-free length equals it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mapping:
    Sr: int
    Sc: int
    T: int
    row_folds: int
    col_folds: int
    fold_cycles: int

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds

    @property
    def compute_cycles(self) -> int:
        return self.folds * self.fold_cycles - 1


def mapping(M: int, N: int, K: int, rows: int, cols: int, dataflow: str) -> Mapping:
    if dataflow == "os":
        sr, sc, t = M, N, K
        fold = t + rows + cols - 2
    elif dataflow == "ws":
        sr, sc, t = K, N, M
        fold = 2 * rows + cols + t - 2
    elif dataflow == "is":
        sr, sc, t = K, M, N
        fold = 2 * rows + cols + t - 2
    else:
        raise ValueError(f"unknown dataflow {dataflow!r}")
    return Mapping(sr, sc, t, -(-sr // rows), -(-sc // cols), fold)


def compute_cycles(M: int, N: int, K: int, rows: int, cols: int, dataflow: str) -> int:
    """SCALE-Sim's compute cycles for one (M, N, K) layer on a rows x cols array."""
    return mapping(M, N, K, rows, cols, dataflow).compute_cycles


def mapping_efficiency(M: int, N: int, K: int, rows: int, cols: int, dataflow: str) -> float:
    """Average fraction of the array's PEs holding a stationary element, over folds."""
    mp = mapping(M, N, K, rows, cols, dataflow)
    used = 0
    for fr in range(mp.row_folds):
        r = min(rows, mp.Sr - fr * rows)
        for fc in range(mp.col_folds):
            used += r * min(cols, mp.Sc - fc * cols)
    return used / (mp.folds * rows * cols)
