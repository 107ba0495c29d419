"""Lower bounds on the makespan of any placement and schedule of a ``PlacementProblem`` under its cost model
(op times per device, ``latency + bytes / bytes_per_unit`` transfers), so that a benchmark can say how far a
placer is from the best possible, and whether a goal is reachable at all.

Every bound holds for every placement and every schedule that respects the dependencies, runs one op at a time
per device and delivers a value read on another device no earlier than ``latency + bytes / bandwidth`` after
its producer finishes; the simulator's schedule (``schedule.py``) is one of them, so each bound holds for it.
With ``t(i) = min over devices of op i's time``:

* ``critical_path``: the longest path, each op at ``t(i)``, transfers free.
* ``work``: the total work spread perfectly: the least ``T`` such that a fractional assignment of every op to
  devices keeps every device's load within ``T`` (a linear program, solved with scipy's HiGHS when scipy is
  installed; without scipy ``sum t(i) / D``, which is smaller, so still a bound).
* ``join``: the critical path with communication at joins and forks. ``est(i)``, a lower bound on op ``i``'s
  start: whichever predecessors share ``i``'s device run one at a time on it (each no earlier than its own
  ``est``: a single machine with release times, Jackson's rule gives the least completion), and every other
  one delivers its values no earlier than its finish + the cheapest transfer of those bytes; the least over
  which predecessors share the device (only the sets "every predecessor whose remote arrival exceeds a
  threshold" can be optimal, and as the threshold falls the shared device's completion rises while the
  latest remote arrival falls, so the best of the ``m + 1`` sets is found by bisection). ``tail(i)``, a lower
  bound on the time from ``i``'s finish to the end, is the same on the reversed graph (successors sharing
  ``i``'s device run one at a time after it, each followed by its own tail; the others after a transfer). The
  bound is the largest ``est(i) + t(i) + tail(i)``; it is at least ``critical_path``.
* ``bound``: the largest of the three.

These bounds ignore link contention and the interplay of load and communication, so the best placement may lie
well above them; a bound near a placement's makespan proves that placement near-optimal, a bound far below it
proves nothing.
"""

from __future__ import annotations

import numpy as np

from .problem import PlacementProblem


def cheapest_transfer(prob: PlacementProblem) -> tuple[float, float]:
    """(least latency, most bytes per time unit) over ordered pairs of different devices."""
    D = prob.devices
    if D < 2:
        return 0.0, float("inf")
    off = ~np.eye(D, dtype=bool)
    return float(prob.latency[off].min()), float(prob.bytes_per_unit[off].max())


def critical_path(prob: PlacementProblem) -> float:
    t = prob.op_time.min(axis=1)
    finish = np.zeros(prob.n)
    for i in range(prob.n):
        finish[i] = t[i] + max((finish[p] for p in prob.preds[i]), default=0.0)
    return float(finish.max()) if prob.n else 0.0


def work_bound(prob: PlacementProblem) -> float:
    """The least max device load of a fractional assignment (module docstring)."""
    n, D = prob.n, prob.devices
    t = prob.op_time
    simple = float(t.min(axis=1).sum()) / D
    if D == 1 or n == 0:
        return float(t[:, 0].sum()) if n else 0.0
    try:
        from scipy.optimize import linprog
        from scipy.sparse import coo_matrix
    except ImportError:
        return simple
    # variables x[i, d] (n * D, fraction of op i on device d) and T; minimize T
    nv = n * D + 1
    c = np.zeros(nv)
    c[-1] = 1.0
    idx = np.arange(n * D).reshape(n, D)
    # sum_d x[i, d] = 1
    a_eq = coo_matrix((np.ones(n * D), (np.repeat(np.arange(n), D), idx.ravel())), shape=(n, nv))
    # sum_i t[i, d] x[i, d] - T <= 0
    rows = np.concatenate([np.tile(np.arange(D), n), np.arange(D)])
    cols = np.concatenate([idx.ravel(), np.full(D, nv - 1)])
    vals = np.concatenate([t.ravel(), -np.ones(D)])
    a_ub = coo_matrix((vals, (rows, cols)), shape=(D, nv))
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(D), A_eq=a_eq, b_eq=np.ones(n), bounds=(0, None), method="highs")
    if not res.success:
        return simple
    # HiGHS's optimum to its tolerance: shave a relative 1e-7 so that rounding never lifts it above the truth
    return max(simple, float(res.fun) * (1 - 1e-7))


def _join_pass(n: int, t: np.ndarray, preds: list[list[int]], comm: dict[tuple[int, int], float]) -> np.ndarray:
    """est(i) for ops in topological order 0..n-1 (module docstring); ``comm[(p, i)]`` the cheapest transfer."""
    est = np.zeros(n)
    for i in range(n):
        ps = preds[i]
        if not ps:
            continue
        fin = [est[p] + t[p] for p in ps]
        arrival = [f + comm[(p, i)] for p, f in zip(ps, fin)]
        order = sorted(range(len(ps)), key=lambda k: -arrival[k])
        jobs = [(est[ps[k]], t[ps[k]]) for k in order]  # (release, processing), latest arrival first

        def done(k: int) -> float:
            """Jackson's rule: the k latest-arriving predecessors on i's device, one machine, least completion."""
            d = 0.0
            for r, p in sorted(jobs[:k]):
                d = max(d, r) + p
            return d

        def remote(k: int) -> float:  # the latest arrival of the others
            return arrival[order[k]] if k < len(ps) else 0.0

        # est(i) = min over k of max(done(k), remote(k)), done rising with k and remote falling: the least k
        # where done reaches remote, by bisection, and the k before it. Trying every k cost O(d^2 log d) for an
        # op of d inputs (a Sum of 16,000 took 30 s of every place command; an outside check); same answer.
        lo, hi = 0, len(ps)  # done(len(ps)) >= remote(len(ps)) = 0
        while lo < hi:
            mid = (lo + hi) // 2
            if done(mid) >= remote(mid):
                hi = mid
            else:
                lo = mid + 1
        est[i] = min(done(lo), remote(lo - 1)) if lo > 0 else max(done(0), remote(0))
    return est


def join_bound(prob: PlacementProblem) -> float:
    n = prob.n
    if n == 0:
        return 0.0
    t = prob.op_time.min(axis=1)
    lat, bw = cheapest_transfer(prob)
    comm = {}
    for (p, c), b in prob.edge_bytes.items():
        comm[(p, c)] = 0.0 if b <= 0 or prob.devices < 2 else lat + b / bw
    est = _join_pass(n, t, prob.preds, comm)
    # tails: the same pass on the reversed graph (op k there is op n-1-k here)
    rev_preds = [[n - 1 - s for s in prob.succs[n - 1 - k]] for k in range(n)]
    rev_comm = {(n - 1 - c, n - 1 - p): v for (p, c), v in comm.items()}
    tail_rev = _join_pass(n, t[::-1].copy(), rev_preds, rev_comm)
    tail = tail_rev[::-1]
    return float((est + t + tail).max())


def lower_bounds(prob: PlacementProblem) -> dict[str, float]:
    """``{"critical_path", "work", "join", "bound"}`` in the problem's time units (module docstring)."""
    out = {"critical_path": critical_path(prob), "work": work_bound(prob), "join": join_bound(prob)}
    out["bound"] = max(out.values())
    return out
