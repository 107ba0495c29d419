"""Lower bounds on the makespan (graphmill/passes/placement/bounds.py). References: a hand computation on a
fork-join graph (where the bound is tight: the best placement, found by enumerating every placement, equals it),
and enumeration of every placement of small random graphs with the schedule simulator (the bound never exceeds
the best makespan found)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from graphmill.backends.simulator.devices import PlacementCostModel, device_set
from graphmill.frontend import zoo
from graphmill.passes.placement import PlacementProblem, ValueInfo, build_problem, simulate, training_graph
from graphmill.passes.placement.bounds import lower_bounds


def problem(times: np.ndarray, edges: list[tuple[int, int, int]], latency: float, bw: float) -> PlacementProblem:
    n, D = times.shape
    values = [ValueInfo(f"v{k}", b, p, [c]) for k, (p, c, b) in enumerate(edges)]
    lat = np.full((D, D), float(latency))
    np.fill_diagonal(lat, 0.0)
    bpu = np.full((D, D), float(bw))
    np.fill_diagonal(bpu, np.inf)
    return PlacementProblem([f"op{i}" for i in range(n)], [None] * n, times, values, lat, bpu,
                            np.full(D, np.inf), "units", [f"d{d}" for d in range(D)]).finish()


def best_makespan(prob: PlacementProblem) -> float:
    return min(simulate(prob, list(pl), memory=False).makespan
               for pl in itertools.product(range(prob.devices), repeat=prob.n))


def test_fork_join_by_hand_and_tight():
    # a -> (b, c) -> d, every op 10 on both devices, every edge 100 bytes, latency 5, 10 bytes per unit:
    # a transfer takes 15. Critical path 30; work 40 / 2 = 20; at the join d either b and c share d's device
    # (one after the other: 10 + 10 + 10 = 30 before d starts) or one arrives remote (20 + 15 = 35): est(d) = 30,
    # so the bound is 40 = all on one device, which enumeration confirms is the best.
    prob = problem(np.full((4, 2), 10.0), [(0, 1, 100), (0, 2, 100), (1, 3, 100), (2, 3, 100)], 5, 10)
    lb = lower_bounds(prob)
    assert lb["critical_path"] == 30
    assert lb["work"] == pytest.approx(20)
    assert lb["join"] == 40
    assert lb["bound"] == 40 == best_makespan(prob)


def test_free_transfers_leave_the_critical_path():
    # the same graph with transfers of 0 bytes: b and c run in parallel, the join costs nothing
    prob = problem(np.full((4, 2), 10.0), [(0, 1, 0), (0, 2, 0), (1, 3, 0), (2, 3, 0)], 0, 10)
    assert lower_bounds(prob)["bound"] == 30 == best_makespan(prob)


@pytest.mark.parametrize("seed", range(6))
def test_bound_never_exceeds_the_best_placement_of_random_graphs(seed):
    rng = np.random.default_rng(seed)
    n, D = 7, 3
    times = rng.uniform(1, 20, size=(n, 1)) * rng.uniform(0.5, 2, size=(1, D))  # devices of different speed
    edges = [(i, j, int(rng.integers(0, 400))) for j in range(1, n) for i in range(j) if rng.random() < 0.4]
    prob = problem(times, edges, float(rng.uniform(0, 10)), float(rng.uniform(5, 50)))
    lb = lower_bounds(prob)
    best = best_makespan(prob)
    assert lb["bound"] <= best + 1e-9
    assert lb["bound"] >= max(lb["critical_path"], lb["work"]) - 1e-9
    # the work bound of devices of different speed: the fractional LP, at least total min time / D
    assert lb["work"] >= times.min(axis=1).sum() / D - 1e-9


def test_bound_below_every_baseline_of_a_training_graph():
    from graphmill.passes.placement import BASELINES

    g = zoo.build("nmt", layers=2, hidden=64, vocab=50, src_len=4, tgt_len=4, batch=16)
    prob = build_problem(training_graph(g), PlacementCostModel(device_set(devices=3)))
    lb = lower_bounds(prob)
    for name, fn in BASELINES.items():
        assert lb["bound"] <= simulate(prob, fn(prob)).makespan, name
    assert lb["join"] >= lb["critical_path"]


def join_by_definition(t: np.ndarray, edges: list[tuple[int, int, float]]) -> float:
    """The module docstring's ``join`` bound with every threshold tried (ops numbered in a topological order;
    ``edges`` (producer, reader, cheapest transfer time))."""
    n = len(t)

    def starts(preds: list[list[tuple[int, float]]], t: np.ndarray) -> list[float]:
        est = [0.0] * n
        for i in range(n):
            if not preds[i]:
                continue
            arrivals = sorted(((est[p] + t[p] + c, est[p], t[p]) for p, c in preds[i]), reverse=True)
            best = float("inf")
            for k in range(len(arrivals) + 1):  # the k latest arrivals share i's device, one at a time
                done = 0.0
                for r, p in sorted((r, p) for _, r, p in arrivals[:k]):
                    done = max(done, r) + p
                best = min(best, max(done, arrivals[k][0] if k < len(arrivals) else 0.0))
            est[i] = best
        return est

    forward: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    backward: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for p, c, cost in edges:
        forward[c].append((p, cost))
        backward[n - 1 - p].append((n - 1 - c, cost))
    est = starts(forward, t)
    tail = starts(backward, t[::-1])[::-1]  # the same on the reversed graph: op k there is op n - 1 - k here
    return max(est[i] + t[i] + tail[i] for i in range(n))


@pytest.mark.parametrize("seed", range(3))
def test_join_bound_of_a_wide_fork_join_tries_every_threshold_in_effect(seed):
    """A fork to 300 ops and a join of them: the bound is found by bisection over the thresholds (trying all
    m + 1 of them cost O(m^2 log m): a Sum of 16,000 inputs took 30 s of every place command). Reference: the
    module docstring's definition by brute force, every threshold tried, Jackson's rule for the shared device."""
    rng = np.random.default_rng(seed)
    m = 300  # op 0 forks to m ops, each feeding one more (so the join's inputs are released at varied times)
    times = np.ones((2 * m + 2, 2))
    times[1:2 * m + 1, :] = rng.uniform(1, 20, size=(2 * m, 1))
    edges = [(0, i, int(rng.integers(0, 400))) for i in range(1, m + 1)]
    edges += [(i, m + i, int(rng.integers(0, 400))) for i in range(1, m + 1)]
    edges += [(m + i, 2 * m + 1, int(rng.integers(0, 400))) for i in range(1, m + 1)]
    latency, bw = 5.0, 10.0
    prob = problem(times, edges, latency, bw)
    cost = [(p, c, latency + b / bw if b > 0 else 0.0) for p, c, b in edges]
    assert lower_bounds(prob)["join"] == pytest.approx(join_by_definition(times.min(axis=1), cost), rel=1e-12)
