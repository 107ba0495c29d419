"""Coordinate descent over the hard macros: the RL placer's final fine-tuning, as Circuit Training's evaluation
runs it (``CircuitEnv(cd_finetune=True)``, its ``CoordinateDescentPlacer``).

One epoch visits every movable hard macro in a seeded random order and puts it where the exact proxy cost is
lowest among: the positions of the grid cells within Manhattan distance ``k`` (default 5, Circuit Training's
``k_distance_bound``) of the cell it is in, each at the ``refine`` x ``refine`` sub-cell offsets the RL placer
uses (``rl.Episode.refine_position``), in every orientation of its family (N/S/FN/FS or E/W/FE/FW: the same
footprint), legal positions only (inside the canvas, clear of every other hard macro), its current position
included; then (``swaps``, not in Circuit Training) an exchange with the macro of identical footprint within
the same distance whose exchange lowers the cost most. The soft macros are re-placed by force-directed rounds
every ``soft_every`` macros and at the end of each epoch, a worse result never kept (Circuit Training:
``stdcell_place_every_n_macros`` 32, bad stdcell moves reverted). Epochs repeat until one lowers the cost by
less than ``tol`` of it (Circuit Training: 1e-3, 2 epochs).

Why in the RL placer: its policy chooses among grid cells, placing macros one at a time; every macro placed
before the last sees only part of the netlist. Descending from the policy's best placement, every macro
knowing all the others, is the step Circuit Training takes after the policy. It never raises the proxy cost and
keeps the placement legal. Why the swaps: Ariane133's 133 macros are all one SRAM shape, and moving one of two
identical macros into the other's place is, one at a time, two illegal moves (measured on a 200-s rl placement of
seed 0: 0.6583 -> 0.6530 without swaps after 5 epochs, 0.6509 with them, 28 s at load ~1).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from graphmill.util.errors import UserInputError

from .cost import ProxyCost
from .fd import ForceDirected
from .legality import EPS
from .positions import offsets_fit
from .problem import ChipProblem
from .sa import FLIPS

FAMILIES = (FLIPS, np.array([2, 3, 6, 7], dtype=np.int64))  # N S FN FS (SA's flips), E W FE FW


def family(orient: int) -> np.ndarray:
    """The orientations sharing ``orient``'s footprint (codes into ``ir.ops.chip.ORIENTATIONS``)."""
    return FAMILIES[0] if int(orient) in FAMILIES[0] else FAMILIES[1]


def check_options(epochs: object, k: object, swaps: object) -> None:
    """Refuse, in one line, descent settings that would otherwise be read silently as something else (a negative
    ``epochs`` as 0, a negative ``k`` as no candidate at all, the string "no" as swaps on) or fail deep inside
    with a TypeError after the whole training budget: ``epochs`` and ``k`` whole numbers >= 0, ``swaps`` a bool.
    Called by ``rl.rl_place`` before it trains."""
    for name, v in (("descent_epochs", epochs), ("descent_k", k)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
            raise UserInputError(f"rl option {name}={v!r}: a whole number >= 0 "
                                 f"({'0 turns the descent off' if name == 'descent_epochs' else '0: own cell only'})")
    if not isinstance(swaps, (bool, np.bool_)):
        raise UserInputError(f"rl option descent_swaps={swaps!r}: true or false")


def candidates(problem: ChipProblem, m: int, k: int, refine: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate centres (x, y) for macro m: every ``refine`` x ``refine`` offset (centre, +-1/4, +-1/2 of a cell
    for 5) of every grid cell within Manhattan distance ``k`` of the cell holding m's centre."""
    c = problem.canvas
    gw, gh = c.width / c.columns, c.height / c.rows
    col = min(max(int(problem.x[m] / gw), 0), c.columns - 1)
    row = min(max(int(problem.y[m] / gh), 0), c.rows - 1)
    dc, dr = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1))
    near = np.abs(dc) + np.abs(dr) <= k
    cc, rr = col + dc[near], row + dr[near]
    ok = (cc >= 0) & (cc < c.columns) & (rr >= 0) & (rr < c.rows)
    off = np.linspace(-0.5, 0.5, refine) if refine > 1 else np.zeros(1)
    ox, oy = np.meshgrid(off * gw, off * gh)
    X = ((cc[ok] + 0.5) * gw)[:, None] + ox.ravel()[None, :]
    Y = ((rr[ok] + 0.5) * gh)[:, None] + oy.ravel()[None, :]
    return X.ravel(), Y.ravel()


def best_move(problem: ChipProblem, cost: ProxyCost, m: int, cur: float, k: int, refine: int,
              swaps: bool) -> tuple[float, int]:
    """Put macro m at its best candidate (position x orientation; then the best swap) by the exact proxy cost;
    returns (proxy, evaluations). ``cur`` is the cost as the placement stands. m ends where it was when nothing
    is cheaper. An interruption mid-way leaves m (and a swap partner) where they were."""
    p, c = problem, problem.canvas
    w, h = p.sizes()
    hard = p.hard.astype(np.int64)
    X, Y = candidates(p, m, k, refine)
    legal = np.zeros(len(X), dtype=np.bool_)
    offsets_fit(m, X, Y, p.x, p.y, w, h, hard, c.width, c.height, EPS, legal)
    x0, y0, o0 = float(p.x[m]), float(p.y[m]), int(p.orient[m])
    best = (cur, x0, y0, o0)
    n = 0
    try:
        for o in family(o0):
            for j in np.nonzero(legal)[0]:
                cost.move(m, float(X[j]), float(Y[j]), int(o))
                n += 1
                v = cost.proxy()
                if v < best[0] - 1e-12:
                    best = (v, float(X[j]), float(Y[j]), int(o))
    finally:
        cost.move(m, best[1], best[2], best[3])
    cur = best[0]
    if not swaps:
        return cur, n
    gw, gh = c.width / c.columns, c.height / c.rows
    mx, my = float(p.x[m]), float(p.y[m])
    # identical footprints exactly (Ariane133: all 133 are 57.57 x 133): an exchange then leaves both macros legal
    same = hard[(w[hard] == w[m]) & (h[hard] == h[m]) & (hard != m) & (p.fixed[hard] == 0)]
    same = same[np.abs(p.x[same] - mx) / gw + np.abs(p.y[same] - my) / gh <= k]
    partner = -1
    for q in same:
        q = int(q)
        qx, qy = float(p.x[q]), float(p.y[q])
        try:
            cost.move(m, qx, qy)
            cost.move(q, mx, my)
            n += 2
            v = cost.proxy()
            if v < cur - 1e-12:
                cur, partner = v, q
        finally:
            cost.move(q, qx, qy)
            cost.move(m, mx, my)
    if partner >= 0:
        qx, qy = float(p.x[partner]), float(p.y[partner])
        try:
            cost.move(m, qx, qy)
            cost.move(partner, mx, my)
        except BaseException:  # Ctrl-C between the two moves: both back, never two macros on one spot
            cost.move(partner, qx, qy)
            cost.move(m, mx, my)
            raise
    return cur, n


def coordinate_descent(problem: ChipProblem, cost: ProxyCost, *, k: int = 5, refine: int = 5, epochs: int = 8,
                       tol: float = 1e-4, swaps: bool = True, soft_every: int = 32, soft_rounds: int = 4,
                       seed: int = 0, should_stop: Callable[[], bool] | None = None,
                       progress: Callable[[dict], None] | None = None) -> dict:
    """Coordinate descent of ``problem``'s movable hard macros (the module docstring), changed in place; ``cost``
    is ``problem``'s ProxyCost. ``soft_rounds`` 0: the soft macros stay where they are (then the result is a
    local optimum of the moves above once an epoch moves nothing). Returns ``{"start", "proxy", "epochs", "moves",
    "evaluations", "seconds"}`` (moves: macros moved, swapped or turned).
    ``should_stop()`` (a time budget) ends it between macros; Ctrl-C leaves a legal placement, no worse."""
    t0 = time.monotonic()
    p = problem
    rng = np.random.default_rng(seed)
    movable = p.hard[p.fixed[p.hard] == 0].astype(np.int64)
    cur = start = cost.evaluate().proxy
    fd = ForceDirected(p) if p.soft.size and soft_rounds > 0 else None
    done, evals, moves = 0, 0, 0
    stopped = False
    for e in range(max(int(epochs), 0)):
        before, moved = cur, 0
        order = movable.copy()
        rng.shuffle(order)
        for i, m in enumerate(order):
            if should_stop is not None and should_stop():
                stopped = True
                break
            was = (float(p.x[m]), float(p.y[m]), int(p.orient[m]))
            cur, n = best_move(p, cost, int(m), cur, k, refine, swaps)
            evals += n
            moved += was != (float(p.x[m]), float(p.y[m]), int(p.orient[m]))
            if fd is not None and soft_every > 0 and (i + 1) % soft_every == 0:
                cur = fd.run(cost, rounds=soft_rounds, seed=seed + 7919 * e + i, should_stop=should_stop)
        if stopped:
            break
        if fd is not None:
            cur = fd.run(cost, rounds=2 * soft_rounds, seed=seed + 7919 * e + len(order), should_stop=should_stop)
        cur = cost.evaluate().proxy  # drop the incremental updates' float drift
        done += 1
        moves += moved
        if progress is not None:
            progress({"descent_epoch": done, "proxy": round(cur, 6), "moves": moved, "evaluations": evals})
        if not moved or before - cur <= tol * max(abs(before), 1e-12):
            break
    return {"start": start, "proxy": cost.evaluate().proxy, "epochs": done, "moves": moves, "evaluations": evals,
            "seconds": round(time.monotonic() - t0, 3)}


__all__ = ["FAMILIES", "best_move", "candidates", "check_options", "coordinate_descent", "family"]
