"""Cutting a sequence of node costs into K contiguous stages.

* ``block_partition``: torchgpipe's balance (``balance_by_time`` / ``balance_by_size``), the "Block
  Partitions of Sequences" procedure of Bárány, Grinberg et al. (arXiv:1308.2452) as torchgpipe applies
  it: costs normalized to [0, 1], start from equal-length blocks, move one element at a time from the
  block next to the lightest one towards it until the heaviest block is within one (normalized) element of
  the lightest. Not optimal; fast; blind to transfers and memory.
* ``equal_split``: the same number of nodes per stage (the "equal layers" split papers compare with).
* ``optimal_partition``: the partition of the order into K non-empty contiguous stages minimizing the largest
  stage value (bottleneck), every stage under a memory cap: a dynamic program over (stages used, prefix
  length), as PipeDream's planner does, exact for the given order. O(K n^2), vectorized over the split point.
  Many partitions often share the optimal bottleneck (one heavy node sets it), and they are not equally good:
  a pipeline's fill and drain cross every cut, so among them a second program picks the one with the least
  sum of a per-stage ``tiebreak`` (the partition pass gives the stages' link times; the earliest split
  point among equals once more).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

# stage value of stages [i, j) for a vector of i (all < j), for stage index k
StageFn = Callable[[int, np.ndarray, int], np.ndarray]
# memory of stage s holding [i, j), for a vector of i (a 1F1B stage keeps fewer micro-batches the later it is)
MemFn = Callable[[int, np.ndarray, int], np.ndarray]


def block_partition(costs: Sequence[float], k: int) -> list[int]:
    """Stage sizes (numbers of elements, in order) of torchgpipe's balance for ``costs`` in ``k`` blocks."""
    n = len(costs)
    if k < 1 or n < k:
        raise ValueError(f"cannot cut {n} elements into {k} blocks")
    c = np.asarray(costs, dtype=float)
    lo, span = float(c.min()), float(c.max() - c.min())
    norm = ((c - lo) / span if span > 0 else np.zeros(n)).tolist()
    ends = [n // k * (b + 1) for b in range(k - 1)] + [n]  # end of each block (exclusive)

    def size(b: int) -> float:
        # each block summed on its own, in order, as torchgpipe does: a difference of prefix sums weighed a
        # block of exactly 1.0 as 0.9999999999999998, missed the stop test and moved on (an outside check's
        # port of torchgpipe's blockpartition.solve split [3, 3, 3, 4] where graphmill split [3, 4, 2, 4])
        return sum(norm[ends[b - 1] if b else 0:ends[b]])

    sizes = [size(b) for b in range(k)]  # a move changes two blocks: only they are summed again
    seen: set[tuple] = set()  # the procedure is a function of (ends, p, top): a repeat is a cycle
    while True:
        top, p = max((sizes[b], b) for b in range(k))  # (1) a heaviest block p (the last among equals)
        moved_into_p = False
        while not moved_into_p:
            state = (tuple(ends), p, top)
            if state in seen or len(seen) > 10 * n * k + 100:  # torchgpipe's solve never returns from a cycle
                return _non_empty(_sizes(ends), n, k)
            seen.add(state)
            low, q = min((sizes[b], b) for b in range(k))  # a lightest block q (the first among equals)
            if top <= low + 1:  # (2) balanced within one element: done
                return _non_empty(_sizes(ends), n, k)
            # (3) move the element of the neighbour h of q, on p's side, into q
            if p < q:
                h = q - 1
                ends[h] -= 1
            else:
                h = q + 1
                ends[q] += 1
            for b in (min(q, h), max(q, h)):
                sizes[b] = size(b)
            moved_into_p = p == h


def _non_empty(sizes: list[int], n: int, k: int) -> list[int]:
    """torchgpipe's blocks where every one holds an element (a block may pass through empty on the way, as in
    torchgpipe), else equal blocks: a pipeline stage needs a node, where torchgpipe leaves a device idle."""
    return sizes if all(s > 0 for s in sizes) else equal_split(n, k)


def _sizes(ends: list[int]) -> list[int]:
    return [e - s for s, e in zip([0] + ends[:-1], ends)]


def equal_split(n: int, k: int) -> list[int]:
    """``n`` elements in ``k`` blocks of equal size (the first ``n % k`` one larger)."""
    if k < 1 or n < k:
        raise ValueError(f"cannot cut {n} elements into {k} blocks")
    return [n // k + (1 if b < n % k else 0) for b in range(k)]


def optimal_partition(n: int, k: int, value: StageFn, memory: MemFn | None = None,
                      cap: float = 0.0, tiebreak: StageFn | None = None) -> tuple[list[int], float] | None:
    """Stage sizes minimizing ``max_s value(s, i_s, j_s)`` with ``memory(s, i_s, j_s) <= cap`` (no cap when 0),
    and that bottleneck; None when no partition fits the cap. With ``tiebreak``, of the partitions reaching that
    bottleneck the one with the least ``sum_s tiebreak(s, i_s, j_s)``.

    ``dp[s][j]`` is the smallest bottleneck of the first j nodes in s + 1 stages; among split points giving
    the same value the earliest is kept, so the result is deterministic.
    """
    if k < 1 or n < k:
        raise ValueError(f"cannot cut {n} elements into {k} blocks")

    def fits(s: int, i: np.ndarray, j: int) -> np.ndarray:
        return memory(s, i, j) <= cap if memory is not None and cap > 0 else np.ones(len(i), dtype=bool)

    def largest(s: int, i: np.ndarray, j: int, before: np.ndarray | None) -> np.ndarray:
        v = value(s, i, j) if before is None else np.maximum(before, value(s, i, j))
        return np.where(fits(s, i, j), v, np.inf)

    dp, arg = _program(n, k, largest)
    if not np.isfinite(dp[k - 1][n]):
        return None
    if tiebreak is not None:  # the least summed tiebreak under that bottleneck, recomputed by the same arithmetic
        bound = float(dp[k - 1][n])

        def summed(s: int, i: np.ndarray, j: int, before: np.ndarray | None) -> np.ndarray:
            ok = (value(s, i, j) <= bound) & fits(s, i, j)
            return np.where(ok, tiebreak(s, i, j) + (0.0 if before is None else before), np.inf)
        arg = _program(n, k, summed)[1]
    ends = [n]
    for s in range(k - 1, 0, -1):
        ends.append(int(arg[s][ends[-1]]))
    ends = ends[::-1]
    return _sizes(ends), float(dp[k - 1][n])


def _program(n: int, k: int, stage) -> tuple[np.ndarray, np.ndarray]:
    """The dynamic program over (stages used, prefix length): ``dp[s][j]`` is the least ``stage(s, i, j,
    dp[s - 1][i])`` over the split points ``i`` of the first j elements into s + 1 stages (``None`` for the first
    stage), ``arg[s][j]`` the earliest split point reaching it."""
    dp = np.full((k, n + 1), np.inf)
    arg = np.zeros((k, n + 1), dtype=np.int64)
    for s in range(k):
        for j in range(s + 1, n - (k - 1 - s) + 1):
            i = np.arange(s, j) if s else np.zeros(1, dtype=np.int64)
            v = stage(s, i, j, dp[s - 1][i] if s else None)
            best = int(np.argmin(v))
            dp[s][j] = v[best]
            arg[s][j] = i[best]
    return dp, arg
