"""Force-directed placement of soft macros (standard-cell clusters), and of standard cells a netlist leaves
unclustered, with hard macros and ports fixed.

As Circuit Training does after its policy has placed the hard macros: clusters are pulled toward the modules
they share nets with (a spring per star edge of each net, weight / (modules - 1)) and pushed out of the
macros they overlap, in phases of growing repulsion (CT's ``optimize_stdcells`` runs attract-only, then
attract + repel steps). The proxy cost is measured after each phase and the best placement kept, so force
directed steps never make a placement worse by the objective the placers optimize.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cost import ProxyCost
from .problem import KIND_HARD, KIND_SOFT, KIND_STDCELL, ChipProblem


def module_adjacency(problem: ChipProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Module-level springs from the nets, in CSR form (ptr, neighbour, weight): each net links its driver's
    module to every other module on it with weight ``net weight / (modules on the net - 1)``."""
    p = problem
    pairs: dict[tuple[int, int], float] = {}
    for k in range(len(p.net_ptr) - 1):
        mods = []
        for j in range(p.net_ptr[k], p.net_ptr[k + 1]):
            m = int(p.pin_mod[p.net_pins[j]])
            if m not in mods:
                mods.append(m)
        if len(mods) < 2:
            continue
        wt = p.net_weight[k] / (len(mods) - 1)
        d = mods[0]
        for m in mods[1:]:
            for a, b in ((d, m), (m, d)):
                pairs[(a, b)] = pairs.get((a, b), 0.0) + wt
    n = len(p.x)
    keys = sorted(pairs)
    ptr = np.zeros(n + 1, dtype=np.int64)
    for a, _ in keys:
        ptr[a + 1] += 1
    ptr = np.cumsum(ptr)
    nbr = np.array([b for _, b in keys], dtype=np.int64)
    wts = np.array([pairs[k] for k in keys], dtype=np.float64)
    return ptr, nbr, wts


@njit(cache=True)
def _fd_step(movable, x, y, w, h, blockers, ptr, nbr, wts, attract, repel, max_move, cw, ch, dx, dy):
    for a in range(len(movable)):
        i = movable[a]
        sw = 0.0
        sx = 0.0
        sy = 0.0
        for j in range(ptr[i], ptr[i + 1]):
            k = nbr[j]
            sw += wts[j]
            sx += wts[j] * (x[k] - x[i])
            sy += wts[j] * (y[k] - y[i])
        fx = 0.0
        fy = 0.0
        if sw > 0:
            fx = attract * sx / sw
            fy = attract * sy / sw
        if repel > 0:
            rx = 0.0
            ry = 0.0
            for b in range(len(blockers)):
                k = blockers[b]
                if k == i:
                    continue
                ddx = x[i] - x[k]
                ddy = y[i] - y[k]
                ox = (w[i] + w[k]) / 2 - abs(ddx)
                oy = (h[i] + h[k]) / 2 - abs(ddy)
                if ox > 0 and oy > 0:
                    if ox < oy:
                        rx += ox if ddx > 0 else (-ox if ddx < 0 else (ox if (i + k) % 2 else -ox))
                    else:
                        ry += oy if ddy > 0 else (-oy if ddy < 0 else (oy if (i + k) % 2 else -oy))
            fx += repel * rx
            fy += repel * ry
        norm = np.sqrt(fx * fx + fy * fy)
        if norm > max_move:
            fx *= max_move / norm
            fy *= max_move / norm
        dx[a] = fx
        dy[a] = fy
    for a in range(len(movable)):
        i = movable[a]
        x[i] = min(max(x[i] + dx[a], w[i] / 2), cw - w[i] / 2)
        y[i] = min(max(y[i] + dy[a], h[i] / 2), ch - h[i] / 2)


@njit(cache=True)
def _diffuse(movable, x, y, w, h, load, cap, gw, gh, cols, rows, cw, ch, sweeps, radius, order):
    """Move modules out of over-full cells into the least loaded cell within ``radius`` (shifting them by
    whole cells, so sub-cell positions are kept), sweep after sweep, until no cell is over ``cap``."""
    for sweep in range(sweeps):
        moved = 0
        for a in range(len(order)):
            i = movable[order[a]]
            r = min(max(int(y[i] // gh), 0), rows - 1)
            c = min(max(int(x[i] // gw), 0), cols - 1)
            cell = r * cols + c
            if load[cell] <= cap:
                continue
            area = w[i] * h[i]
            best = cell
            best_load = load[cell] - area
            for dr in range(-radius, radius + 1):
                for dc in range(-radius, radius + 1):
                    rr = r + dr
                    cc = c + dc
                    if rr < 0 or rr >= rows or cc < 0 or cc >= cols or (dr == 0 and dc == 0):
                        continue
                    n = rr * cols + cc
                    v = load[n] + (abs(dr) + abs(dc)) * 1e-9 * cap
                    if v < best_load:
                        best_load = v
                        best = n
            if best != cell:
                load[cell] -= area
                load[best] += area
                br = best // cols
                bc = best % cols
                x[i] = min(max(x[i] + (bc - c) * gw, w[i] / 2), cw - w[i] / 2)
                y[i] = min(max(y[i] + (br - r) * gh, h[i] / 2), ch - h[i] / 2)
                moved += 1
        if moved == 0:
            return sweep
    return sweeps


def spread(problem: ChipProblem, movable: np.ndarray, target: float = 1.0, *, sweeps: int = 50, radius: int = 1,
           seed: int = 0) -> None:
    """Spread ``movable`` modules so that no grid cell's load (their areas, counted at their centre's cell,
    plus the area the other macros cover) exceeds ``target`` x the cell area where a nearby cell has room:
    diffusion by whole-cell shifts toward the least loaded neighbour. The force-directed steps decide where
    clusters want to be; this decides how densely they may sit there, keeping them as close as it can."""
    p, c = problem, problem.canvas
    gw, gh = c.width / c.columns, c.height / c.rows
    w, h = p.sizes()
    cells = c.columns * c.rows
    load = np.zeros(cells)
    mov = np.zeros(len(p.x), dtype=np.bool_)
    mov[movable] = True
    fixed_mods = np.nonzero(((p.kind == KIND_HARD) | (p.kind == KIND_SOFT) | (p.kind == KIND_STDCELL)) & ~mov)[0]
    _covered_area(fixed_mods.astype(np.int64), p.x, p.y, w, h, load, gw, gh, c.columns, c.rows)
    _centre_area(np.asarray(movable, dtype=np.int64), p.x, p.y, w, h, load, gw, gh, c.columns, c.rows)
    order = np.random.default_rng(seed).permutation(len(movable)).astype(np.int64)
    for rad in range(radius, max(c.columns, c.rows)):
        _diffuse(np.asarray(movable, dtype=np.int64), p.x, p.y, w, h, load, target * gw * gh, gw, gh, c.columns,
                 c.rows, c.width, c.height, sweeps, rad, order)
        if not np.any(load > target * gw * gh + 1e-9) or rad >= radius + 3:
            break
    _snap(np.asarray(movable, dtype=np.int64), p.x, p.y, w, h, gw, gh, c.columns, c.rows)


@njit(cache=True)
def _covered_area(mods, x, y, w, h, load, gw, gh, cols, rows):
    """Add the area each of ``mods`` covers in every grid cell to ``load`` (numba: called by every spread)."""
    for m in mods:
        x0 = x[m] - w[m] / 2
        x1 = x[m] + w[m] / 2
        y0 = y[m] - h[m] / 2
        y1 = y[m] + h[m] / 2
        c0 = max(int(x0 // gw), 0)
        c1 = min(int(x1 // gw), cols - 1)
        r0 = max(int(y0 // gh), 0)
        r1 = min(int(y1 // gh), rows - 1)
        for r in range(r0, r1 + 1):
            oy = min(y1, (r + 1) * gh) - max(y0, r * gh)
            for q in range(c0, c1 + 1):
                ox = min(x1, (q + 1) * gw) - max(x0, q * gw)
                if ox > 0 and oy > 0:
                    load[r * cols + q] += ox * oy


@njit(cache=True)
def _centre_area(mods, x, y, w, h, load, gw, gh, cols, rows):
    """Add each of ``mods``' whole area to the grid cell of its centre."""
    for m in mods:
        r = min(max(int(y[m] // gh), 0), rows - 1)
        q = min(max(int(x[m] // gw), 0), cols - 1)
        load[r * cols + q] += w[m] * h[m]


@njit(cache=True)
def _snap(movable, x, y, w, h, gw, gh, cols, rows):
    """Keep each module inside its centre's cell where it fits (so its area counts where the spreading
    counted it)."""
    for i in movable:
        r = min(max(int(y[i] // gh), 0), rows - 1)
        c = min(max(int(x[i] // gw), 0), cols - 1)
        if h[i] <= gh:
            y[i] = min(max(y[i], r * gh + h[i] / 2), (r + 1) * gh - h[i] / 2)
        if w[i] <= gw:
            x[i] = min(max(x[i], c * gw + w[i] / 2), (c + 1) * gw - w[i] / 2)


class ForceDirected:
    """Force-directed steps over a set of movable modules (by default the soft macros and the standard cells not in
    a cluster, those not fixed) of a ``ChipProblem``."""

    def __init__(self, problem: ChipProblem, movable: np.ndarray | None = None,
                 adjacency: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        self.p = problem
        self.adj = adjacency or module_adjacency(problem)
        if movable is None:
            movable = np.nonzero(((problem.kind == KIND_SOFT) | (problem.kind == KIND_STDCELL)) & (problem.fixed == 0))[0]
        self.movable = np.asarray(movable, dtype=np.int64)
        self.blockers = np.nonzero((problem.kind == KIND_HARD) | (problem.kind == KIND_SOFT))[0].astype(np.int64)

    def steps(self, n: int, attract: float, repel: float, max_move: float) -> None:
        p = self.p
        w, h = p.sizes()
        dx = np.zeros(len(self.movable))
        dy = np.zeros(len(self.movable))
        ptr, nbr, wts = self.adj
        for _ in range(n):
            _fd_step(self.movable, p.x, p.y, w, h, self.blockers, ptr, nbr, wts, attract, repel, max_move,
                     p.canvas.width, p.canvas.height, dx, dy)

    def run(self, cost: ProxyCost | None = None, *, rounds: int = 20, attract: float = 0.1, steps: int = 1,
            target: float = 0.95, seed: int = 0, should_stop=None) -> float:
        """``rounds`` of (``steps`` attraction steps, then ``spread``); with ``cost``, keep the placement of
        lowest proxy cost among the start and every round (``cost`` is left evaluated on it) and return it, also
        when Ctrl-C interrupts a round (then re-raised). ``should_stop()`` ends early (a time budget)."""
        p = self.p
        max_move = 0.05 * max(p.canvas.width, p.canvas.height)
        best = float("inf")
        best_xy = None
        if cost is not None:
            best = cost.evaluate().proxy
            best_xy = (p.x[self.movable].copy(), p.y[self.movable].copy())
        try:
            for r in range(rounds):
                if should_stop is not None and should_stop():
                    break
                self.steps(steps, attract, 0.0, max_move)
                spread(p, self.movable, target, seed=seed + r)
                if cost is not None:
                    v = cost.evaluate().proxy
                    if v < best:
                        best = v
                        best_xy = (p.x[self.movable].copy(), p.y[self.movable].copy())
        except BaseException:  # Ctrl-C mid-round: the best so far, not the interrupted round's positions
            if cost is not None:
                p.x[self.movable], p.y[self.movable] = best_xy
                cost.evaluate()
            raise
        if cost is not None:
            p.x[self.movable], p.y[self.movable] = best_xy
            return cost.evaluate().proxy
        return float("nan")


def place_soft_macros(problem: ChipProblem, cost: ProxyCost, **kw) -> float:
    """Force-directed placement of the soft macros (hard macros, ports fixed); returns the proxy cost."""
    return ForceDirected(problem).run(cost, **kw)
