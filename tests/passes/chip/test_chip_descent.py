"""Coordinate descent over hard macros (passes/chip/descent.py, the RL placer's finale as Circuit Training's
``cd_finetune``). References: the proxy cost re-evaluated from scratch (``cost.proxy_cost``, a full evaluation, not
the descent's incremental one) at every candidate the test enumerates itself from the grid geometry (cells within
Manhattan distance k, 3 x 3 offsets, the four orientations of a footprint, exchanges of identical macros), and
test_chip_placers' independent legality check."""

from __future__ import annotations

import os

import numpy as np
import pytest

from graphmill.passes.chip.cost import ProxyCost, proxy_cost
from graphmill.passes.chip.descent import coordinate_descent
from graphmill.passes.chip.generate import generate_netlist
from graphmill.passes.chip.legality import legalize
from graphmill.passes.chip.problem import problem_from_graph
from graphmill.passes.chip.rl import rl_place

from .test_chip_placers import independent_legal

K, REFINE = 2, 3


def _legal_problem(seed=4, hard=8):
    """A generated netlist, legalized, whose hard macros come in identical pairs (two macros of consecutive areas
    both shrunk around their centres to the smaller width and the smaller height: still legal), as Ariane133's
    few SRAM shapes are."""
    p = problem_from_graph(generate_netlist(hard=hard, soft=12, seed=seed))
    legalize(p)
    by_area = sorted((int(i) for i in p.hard), key=lambda i: p.w[i] * p.h[i])
    for a, b in zip(by_area[0::2], by_area[1::2]):
        assert p.orient[a] == p.orient[b] == 0
        p.w[a] = p.w[b] = min(p.w[a], p.w[b])
        p.h[a] = p.h[b] = min(p.h[a], p.h[b])
    assert independent_legal(p)
    return p


def _cheaper_neighbour(p, best, k=K, refine=REFINE):
    """The first (macro, what) whose single move, turn or exchange with an identical macro gives a lower proxy
    than ``best`` by a from-scratch evaluation; None at a local optimum."""
    c = p.canvas
    gw, gh = c.width / c.columns, c.height / c.rows
    offs = np.linspace(-0.5, 0.5, refine)
    hard = [int(i) for i in p.hard]
    for m in hard:
        x0, y0, o0 = p.x[m], p.y[m], p.orient[m]
        col, row = int(x0 / gw), int(y0 / gh)
        fam = (0, 1, 4, 5) if o0 in (0, 1, 4, 5) else (2, 3, 6, 7)
        try:
            for dc in range(-k, k + 1):
                for dr in range(-k, k + 1):
                    if abs(dc) + abs(dr) > k or not (0 <= col + dc < c.columns and 0 <= row + dr < c.rows):
                        continue
                    for ox in offs:
                        for oy in offs:
                            for o in fam:
                                p.x[m], p.y[m], p.orient[m] = (col + dc + 0.5 + ox) * gw, (row + dr + 0.5 + oy) * gh, o
                                if independent_legal(p) and proxy_cost(p).proxy < best - 1e-9:
                                    return m, ("move", p.x[m], p.y[m], o)
        finally:
            p.x[m], p.y[m], p.orient[m] = x0, y0, o0
        for q in hard:
            if q == m or abs(p.w[q] - p.w[m]) > 1e-9 or abs(p.h[q] - p.h[m]) > 1e-9 or p.orient[q] != p.orient[m]:
                continue
            if abs(p.x[q] - x0) / gw + abs(p.y[q] - y0) / gh > k:
                continue
            qx, qy = p.x[q], p.y[q]
            p.x[m], p.y[m], p.x[q], p.y[q] = qx, qy, x0, y0
            try:
                if proxy_cost(p).proxy < best - 1e-9:
                    return m, ("swap", q)
            finally:
                p.x[m], p.y[m], p.x[q], p.y[q] = x0, y0, qx, qy
    return None


def test_descent_ends_at_a_local_optimum_of_its_moves():
    # Without the descent the legalized start has a cheaper neighbour (the check below finds one); after it,
    # with the soft macros held still, no single move within k cells, turn or identical-macro exchange is cheaper
    # by the from-scratch proxy, the placement is legal and its proxy lower.
    p = _legal_problem()
    before = proxy_cost(p).proxy
    assert _cheaper_neighbour(p, before) is not None
    out = coordinate_descent(p, ProxyCost(p), k=K, refine=REFINE, epochs=50, soft_rounds=0, seed=0)
    after = proxy_cost(p).proxy
    assert out["proxy"] == pytest.approx(after, abs=1e-9) and out["start"] == pytest.approx(before, abs=1e-9)
    assert after < before - 1e-6 and out["moves"] > 0
    assert independent_legal(p)
    assert _cheaper_neighbour(p, after) is None


def test_descent_exchanges_identical_macros():
    # Two identical macros put in each other's places: one at a time each would have to move onto the other, so
    # single moves cannot undo the exchange, and the exchange move does. From a descended placement, every
    # exchange of an identical pair that costs more is descended from again, with and without exchanges: at least
    # one is left above the optimum without them and brought back to it (or below) with them.
    p = _legal_problem(seed=6)
    coordinate_descent(p, ProxyCost(p), k=K, refine=REFINE, epochs=50, soft_rounds=0, seed=0)
    opt, base = proxy_cost(p).proxy, p.copy_placement()
    hard = [int(i) for i in p.hard]
    pairs = [(a, b) for a in hard for b in hard if a < b and p.w[a] == p.w[b] and p.h[a] == p.h[b]]
    assert len(pairs) == 4
    outcomes = []
    for a, b in pairs:
        p.set_placement(base)
        p.x[a], p.y[a], p.x[b], p.y[b] = p.x[b], p.y[b], p.x[a], p.y[a]
        exchanged = p.copy_placement()
        if proxy_cost(p).proxy <= opt + 1e-6:
            continue
        alone = coordinate_descent(p, ProxyCost(p), k=K, refine=REFINE, epochs=50, soft_rounds=0, swaps=False)
        p.set_placement(exchanged)
        both = coordinate_descent(p, ProxyCost(p), k=K, refine=REFINE, epochs=50, soft_rounds=0, swaps=True)
        assert independent_legal(p)
        outcomes.append((alone["proxy"], both["proxy"]))
    assert any(alone > opt + 1e-6 and both <= opt + 1e-9 for alone, both in outcomes), (opt, outcomes)


@pytest.mark.parametrize("at", [1, 40, 200])
def test_interrupted_descent_leaves_a_legal_placement_no_worse(monkeypatch, at):
    # Ctrl-C inside a macro's candidates (or its exchanges): the macro (and its partner) go back to the best
    # position found, never onto another macro; at the very first evaluation nothing was found yet, so the
    # placement is the start exactly (the first candidate is elsewhere: without the restore it stays there).
    p = _legal_problem()
    before, start = proxy_cost(p).proxy, p.copy_placement()
    calls = [0]
    real = ProxyCost.proxy

    def proxy(self):
        calls[0] += 1
        if calls[0] == at:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(ProxyCost, "proxy", proxy)
    with pytest.raises(KeyboardInterrupt):
        coordinate_descent(p, ProxyCost(p), k=K, refine=REFINE, epochs=5, soft_rounds=0)
    monkeypatch.setattr(ProxyCost, "proxy", real)
    assert independent_legal(p)
    assert proxy_cost(p).proxy <= before + 1e-9
    if at == 1:
        assert all(np.array_equal(a, b) for a, b in zip(p.copy_placement(), start))


@pytest.mark.parametrize("bad", [{"descent_epochs": -1}, {"descent_k": -1}, {"descent_epochs": "3"},
                                 {"descent_k": 2.5}, {"descent_swaps": "no"}, {"descent_epochs": True}])
def test_bad_descent_options_refused_in_one_line_before_training(tmp_path, bad):
    # Reference: the README's documented values (descent_epochs and descent_k whole numbers >= 0, 0 meaning off /
    # own cell; descent_swaps true or false). Before the check, -1 epochs was read as 0, k -1 as no candidate at
    # all, "no" as swaps on, and "3" failed with a TypeError after the whole training budget. Refused now in one
    # line before the policy trains, and api.chip_place writes nothing.
    from graphmill import api
    from graphmill.errors import UserInputError

    p = problem_from_graph(generate_netlist(hard=4, soft=4, seed=1))
    with pytest.raises(UserInputError, match=next(iter(bad))) as e:
        rl_place(p, budget_s=1.0, **bad)
    assert "\n" not in str(e.value)
    data = os.path.join(os.path.dirname(__file__), "..", "..", "data", "chip", "toy_macro_stdcell")
    out = tmp_path / "out.plc"
    with pytest.raises(UserInputError):
        api.chip_place(os.path.join(data, "netlist.pb.txt"), os.path.join(data, "initial.plc"), method="rl",
                       output=out, json_path=tmp_path / "r.json", budget_s=1.0, options=bad)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_the_soft_macro_rounds_keeps_the_best_placement(monkeypatch):
    # Ctrl-C landing in the force-directed rounds the descent runs every soft_every macros, in its first round:
    # the best placement so far is the one that round started from (ForceDirected.run keeps the best of its start
    # and its finished rounds), so the soft macros must be back there, and the cost state evaluated on it. Before,
    # they stayed where the interrupted round had pushed them (here, as a stand-in for any mid-round state, all
    # into one corner), and the placement written was not the best found. Reference: the positions recorded at
    # the interruption, the from-scratch proxy, and the independent legality check.
    from graphmill.passes.chip.fd import ForceDirected

    p = _legal_problem()
    seen = []

    def steps(self, *a, **k):
        seen.append((p.x[p.soft].copy(), p.y[p.soft].copy()))
        p.x[p.soft], p.y[p.soft] = 0.0, 0.0
        raise KeyboardInterrupt

    monkeypatch.setattr(ForceDirected, "steps", steps)
    cost = ProxyCost(p)
    with pytest.raises(KeyboardInterrupt):
        coordinate_descent(p, cost, k=K, refine=REFINE, epochs=5, soft_every=2, soft_rounds=2)
    assert len(seen) == 1
    assert np.array_equal(p.x[p.soft], seen[0][0]) and np.array_equal(p.y[p.soft], seen[0][1])
    assert cost.proxy() == pytest.approx(proxy_cost(p).proxy, abs=1e-9)
    assert independent_legal(p)


def test_ctrl_c_in_the_rl_finale_rounds_keeps_the_last_finished_placement(monkeypatch):
    # Ctrl-C in rl_place's finale (offset sweeps alternating with force-directed rounds, just before the descent):
    # the placement written is the one the interrupted step started from, not the soft macros wherever the
    # interrupted round had pushed them (here all into one corner, as a stand-in for a mid-round state). Before,
    # they stayed there. Reference: the positions recorded at the interruption, the from-scratch proxy, the
    # independent legality check.
    from graphmill.passes.chip import rl
    from graphmill.passes.chip.fd import ForceDirected

    p = problem_from_graph(generate_netlist(hard=4, soft=6, seed=2))
    seen = []

    class Boom(ForceDirected):
        def run(self, cost=None, **kw):
            if self.adj_given:
                return super().run(cost, **kw)
            seen.append((p.x[p.soft].copy(), p.y[p.soft].copy()))
            p.x[p.soft], p.y[p.soft] = 0.0, 0.0
            raise KeyboardInterrupt

        def __init__(self, problem, *a, **kw):
            self.adj_given = bool(a) or bool(kw)  # the episodes' own (adjacency given); the finale's plain one
            super().__init__(problem, *a, **kw)

    monkeypatch.setattr(rl, "ForceDirected", Boom)
    res = rl.rl_place(p, budget_s=8.0, seed=0, finetune_share=0.05)  # the finale at once
    assert res.interrupted and len(seen) == 1
    assert np.array_equal(p.x[p.soft], seen[0][0]) and np.array_equal(p.y[p.soft], seen[0][1])
    assert res.report.proxy == pytest.approx(proxy_cost(p).proxy, abs=1e-9)
    assert independent_legal(p) and res.legal
