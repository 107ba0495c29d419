"""Legality of a macro placement and a greedy legalizer.

Legal (as Circuit Training's placer requires of hard macros): every hard macro inside the canvas and no two
hard macros overlapping (by more than ``EPS`` microns in either direction, for coordinates that went through a
text file). Soft macros (standard-cell clusters) may overlap: the density cost accounts for them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .problem import ChipProblem

EPS = 1e-6


@njit(cache=True)
def fits(m, nx, ny, mw, mh, x, y, w, h, idx, skip, cw, ch, eps):
    """Would hard macro m with centre (nx, ny) and size mw x mh lie inside the canvas and clear of every
    macro in ``idx`` other than m and ``skip`` (``w``, ``h``: sizes as oriented, ``ChipProblem.sizes``)?
    The one position test of the placers: SA's moves and swaps, the RL placer's offset sweep."""
    if nx - mw / 2 < -eps or nx + mw / 2 > cw + eps or ny - mh / 2 < -eps or ny + mh / 2 > ch + eps:
        return False
    for j in idx:
        if j == m or j == skip:
            continue
        if abs(nx - x[j]) < (mw + w[j]) / 2 - eps and abs(ny - y[j]) < (mh + h[j]) / 2 - eps:
            return False
    return True


@njit(cache=True)
def _overlaps_any(m, x, y, w, h, idx, skip, eps):
    """Does hard macro m (centre x[m], y[m], size w[m] x h[m]) overlap any macro in ``idx`` except ``skip``?"""
    for j in idx:
        if j == m or j == skip:
            continue
        if abs(x[m] - x[j]) < (w[m] + w[j]) / 2 - eps and abs(y[m] - y[j]) < (h[m] + h[j]) / 2 - eps:
            return True
    return False


@njit(cache=True)
def _count_overlaps(x, y, w, h, idx, eps):
    n = 0
    for a in range(len(idx)):
        i = idx[a]
        for b in range(a + 1, len(idx)):
            j = idx[b]
            if abs(x[i] - x[j]) < (w[i] + w[j]) / 2 - eps and abs(y[i] - y[j]) < (h[i] + h[j]) / 2 - eps:
                n += 1
    return n


def inside(problem: ChipProblem, m: int, x: float, y: float, w: float, h: float) -> bool:
    c = problem.canvas
    return x - w / 2 >= -EPS and x + w / 2 <= c.width + EPS and y - h / 2 >= -EPS and y + h / 2 <= c.height + EPS


def legality(problem: ChipProblem, macros: np.ndarray | None = None) -> tuple[bool, str]:
    """(legal, why not): hard macros (``macros``: those of them, e.g. the fixed ones) inside the canvas and
    pairwise disjoint."""
    hard = problem.hard if macros is None else np.asarray(macros, dtype=problem.hard.dtype)
    w, h = problem.sizes()
    for m in hard:
        if not inside(problem, int(m), problem.x[m], problem.y[m], w[m], h[m]):
            return False, f"hard macro {problem.names[m]!r} lies outside the canvas"
    n = _count_overlaps(problem.x, problem.y, w, h, hard, EPS)
    if n:
        return False, "1 pair of hard macros overlaps" if n == 1 else f"{n} pairs of hard macros overlap"
    return True, ""


def legalize(problem: ChipProblem, order: np.ndarray | None = None, *, step: float | None = None) -> bool:
    """Move hard macros (largest first, fixed ones kept) to the nearest position where they fit inside the
    canvas without overlapping those already placed, searching rings of candidate positions ``step`` apart;
    where that leaves a macro without a place, ``pack`` instead. Returns True when every macro found a place.
    Why greedy nearest: it keeps the given placement's structure (from a quadratic placement or a previous run)
    and only resolves overlaps."""
    x0, y0 = problem.x.copy(), problem.y.copy()
    if _legalize_nearest(problem, order, step=step):
        return True
    nearest = problem.x.copy(), problem.y.copy()
    problem.x[:], problem.y[:] = x0, y0
    if pack(problem):
        return True
    problem.x[:], problem.y[:] = nearest
    return False


@njit(cache=True)
def _first_fit(m, cx, cy, mw, mh, x, y, w, h, idx, cw, ch, eps):
    """The first (lowest, then leftmost) of the candidate centres ``cx`` x ``cy`` (each ascending) where ``fits``."""
    for a in range(len(cy)):
        for b in range(len(cx)):
            if fits(m, cx[b], cy[a], mw, mh, x, y, w, h, idx, -1, cw, ch, eps):
                return cx[b], cy[a]
    return np.nan, np.nan


def pack(problem: ChipProblem) -> bool:
    """Bottom-left packing of the movable hard macros, largest first, around the fixed ones: each goes to the
    lowest, then leftmost, position where it fits, among the canvas edges and the edges of the macros already
    there. Returns True when every macro found a place (the rest are left where they were). Why: the nearest-
    position legalizer puts the largest macro where the start has it, which on a tight canvas can leave no room
    for the next (sample_clustered on 205 x 125 with every macro at the centre: its 120 x 120 macro in the middle,
    no 80 x 40 gap left, so fd, sa and rl all wrote an illegal placement); packing keeps the free space in one
    piece. The placers then improve on it."""
    c = problem.canvas
    w, h = problem.sizes()
    hard = problem.hard
    movable = np.array([m for m in hard if not problem.fixed[m]], dtype=np.int64)
    order = movable[np.argsort(-(w[movable] * h[movable]), kind="stable")]
    placed = [int(m) for m in hard if problem.fixed[m]]
    for m in order:
        m = int(m)
        done = np.array(placed, dtype=np.int64)
        xs = np.concatenate(([w[m] / 2, c.width - w[m] / 2], problem.x[done] + (w[done] + w[m]) / 2,
                             problem.x[done] - (w[done] + w[m]) / 2))
        ys = np.concatenate(([h[m] / 2, c.height - h[m] / 2], problem.y[done] + (h[done] + h[m]) / 2,
                             problem.y[done] - (h[done] + h[m]) / 2))
        xs = np.unique(xs[(xs >= w[m] / 2 - EPS) & (xs <= c.width - w[m] / 2 + EPS)])
        ys = np.unique(ys[(ys >= h[m] / 2 - EPS) & (ys <= c.height - h[m] / 2 + EPS)])
        nx, ny = _first_fit(m, xs, ys, w[m], h[m], problem.x, problem.y, w, h, done, c.width, c.height, EPS)
        if np.isnan(nx):
            return False
        problem.x[m], problem.y[m] = nx, ny
        placed.append(m)
    return True


def _legalize_nearest(problem: ChipProblem, order: np.ndarray | None = None, *, step: float | None = None) -> bool:
    c = problem.canvas
    w, h = problem.sizes()
    hard = problem.hard
    if order is None:
        order = hard[np.argsort(-(w[hard] * h[hard]), kind="stable")]
    step = step or min(c.width / c.columns, c.height / c.rows) / 4
    placed: list[int] = [int(m) for m in hard if problem.fixed[m]]
    ok = True
    for m in order:
        m = int(m)
        if problem.fixed[m]:
            continue
        ok = place_nearest(problem, m, np.array(placed, dtype=np.int64), step=step) and ok
        placed.append(m)
    return ok


def place_nearest(problem: ChipProblem, m: int, others: np.ndarray, *, step: float | None = None) -> bool:
    """Move hard macro ``m`` to the position nearest its own (on rings ``step`` apart) where it lies inside the
    canvas clear of the macros ``others``; False (left clamped inside the canvas) if there is none."""
    c = problem.canvas
    w, h = problem.sizes()
    step = step or min(c.width / c.columns, c.height / c.rows) / 4
    x, y = problem.x, problem.y
    x0 = float(np.clip(x[m], w[m] / 2, c.width - w[m] / 2))
    y0 = float(np.clip(y[m], h[m] / 2, c.height - h[m] / 2))
    max_ring = int(max(c.width, c.height) / step) + 2
    for ring in range(max_ring):
        if ring == 0:
            cands = [(x0, y0)]
        else:
            cands = []
            for k in range(-ring, ring + 1):
                cands += [(x0 + k * step, y0 - ring * step), (x0 + k * step, y0 + ring * step)]
            for k in range(-ring + 1, ring):
                cands += [(x0 - ring * step, y0 + k * step), (x0 + ring * step, y0 + k * step)]
            cands.sort(key=lambda q: (q[0] - x0) ** 2 + (q[1] - y0) ** 2)
        for cx, cy in cands:
            x[m] = min(max(cx, w[m] / 2), c.width - w[m] / 2)
            y[m] = min(max(cy, h[m] / 2), c.height - h[m] / 2)
            if not _overlaps_any(m, x, y, w, h, others, -1, EPS):
                return True
    x[m], y[m] = x0, y0
    return False
