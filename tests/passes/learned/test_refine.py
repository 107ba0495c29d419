"""Iterative refinement of the learned passes (graphmill/passes/learned/infer.py, features.py's state features).

References: a fork-join schedule worked out by hand from the list-scheduling rule (its slack and the one-step
estimate of moving an op) and the simulator itself (the move actually simulated must give the estimate when the
moved op's reader waits for it alone); the best baseline of the environment's 30 heuristics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graphmill.backends.simulator.devices import PlacementCostModel, device_set
from graphmill.ir.builder import GraphBuilder
from graphmill.passes.learned import Decisions, JointProblem
from graphmill.passes.learned.features import move_estimates, node_features, slack
from graphmill.passes.learned.features import state_features
from graphmill.passes.learned.infer import TOP, moved, refine, state_key, top_moves
from graphmill.passes.learned.policy import GraphPolicy, load_policy, obs_tensors
from graphmill.passes.placement import build_problem
from graphmill.search.learned import (critical_chain, fine_tune, guided_unit_moves, make_task, random_graph, task_units,
                                      unit_moves)
from tests.passes.learned.test_env import tiny


def fork_join():
    b = GraphBuilder("fork_join")
    x = b.input("x", "float32", [1, 256])
    z = b.input("z", "float32", [1, 16])
    b.output(b.Add(b.Tanh(x), b.Sigmoid(x)))  # A = Tanh, B = Sigmoid, C = Add
    b.output(b.Relu(z))  # D, alone on device 1
    return b.build()


def test_slack_and_move_estimate_by_hand_and_by_the_simulator():
    cm = tiny(2)
    jp = JointProblem(build_problem(fork_join(), cm), cm)
    names = [n.op_type for n in jp.prob.nodes]
    A, B, C, D = (names.index(k) for k in ("Tanh", "Sigmoid", "Add", "Relu"))
    t = jp.prob.op_time
    dev = np.zeros(jp.n, np.int64)
    dev[D] = 1
    prio = np.zeros(jp.n)
    prio[[A, B, C, D]] = [1, 2, 3, 0]  # A before B on device 0; D first on device 1
    out = jp.evaluate(Decisions(dev, np.zeros(jp.n, bool), prio))
    M = t[A, 0] + t[B, 0] + t[C, 0]  # by hand: A, B, C back to back on device 0; D alone on device 1
    assert out.makespan == pytest.approx(M)
    sl = slack(jp, out)
    assert sl[[A, B, C]] == pytest.approx([0, 0, 0])  # each delays the next on device 0 or its reader
    assert sl[D] == pytest.approx(M - t[D, 1])  # D could start as late as M - its time
    gain = move_estimates(jp, out)
    assert gain[A, 0] == gain[B, 0] == gain[C, 0] == gain[D, 1] == 0  # own device
    # B on device 1: starts after D (the earliest gap), its output then travels to C on device 0
    tr = jp.prob.transfer(jp.prob.edge_bytes[(B, C)], 1, 0)
    arrival = t[D, 1] + t[B, 1] + tr
    assert gain[B, 1] == pytest.approx(t[A, 0] + t[B, 0] - arrival)
    moved = dev.copy()
    moved[B] = 1
    sim = jp.evaluate(Decisions(moved, np.zeros(jp.n, bool), prio))
    assert arrival > t[A, 0]  # C waits for B's output alone: the estimate is the simulated change
    assert out.makespan - sim.makespan == pytest.approx(gain[B, 1])


def test_refinement_is_one_forward_pass_per_round_and_never_worse_than_its_start():
    cm = tiny(3)
    jp = JointProblem(build_problem(random_graph(5, "mlp", 30, batch=1), cm), cm)
    obs = node_features(jp)
    torch.manual_seed(0)
    pol = GraphPolicy(hidden=16, layers=1)
    with torch.no_grad():  # a policy that moves ops: the learned device scores dominate
        pol.dev[-1].bias.fill_(0.0)
        pol.dev[-1].weight.normal_(0, 1.0)
        pol.hint_gain.fill_(0.5)
    calls = []
    heads = pol.heads
    pol.heads = lambda t: calls.append(1) or heads(t)
    keys = []
    evaluate = jp.evaluate
    jp.evaluate = lambda d: keys.append(state_key(d)) or evaluate(d)
    dec, out, src, times = refine(pol, jp, obs, rounds=3, samples=2, seed=0)
    # 3 forward passes; of their 3 x (greedy + 2 draws) candidates each distinct one simulated once (the
    # greedy decisions repeat while no round improves), the start state not again
    assert len(calls) == 3 and len(times) == len(keys) == len(set(keys)) <= 9
    assert state_key(obs["decisions"]) not in keys
    start = obs["outcome"].makespan
    assert out.makespan <= start and out.makespan == pytest.approx(min(times + [start]))
    assert jp.evaluate(dec).makespan == out.makespan


@pytest.mark.slow
def test_shipped_policy_zero_shot_beats_the_best_baseline_on_a_held_out_graph():
    # Inception-V3 is in no training graph (bench_learned.py's held-out set); the reference is the best of the
    # environment's 36 baseline combinations (6 placements x 2 fusions x 3 schedules), simulated; the refined
    # decisions are re-simulated from scratch
    from graphmill.backends.simulator.devices import PlacementCostModel, device_set
    from graphmill.frontend import zoo
    from graphmill.passes.learned.infer import propose
    from graphmill.passes.learned.policy import load_policy, obs_tensors
    from graphmill.search.learned import make_task

    pol, _ = load_policy()
    cm = PlacementCostModel(device_set(devices=4))
    g = zoo.build("inception_v3", batch=8)
    task = make_task("inception_v3", g, cm)
    p = propose(pol, task.jp, obs=task.obs)
    assert p.source != "hint" and len(p.info["candidates"]) <= 48  # 4 rounds x (greedy + 6 top-k + 5 top units)
    again = JointProblem(build_problem(g, cm), cm).evaluate(p.decisions)
    assert again.makespan == pytest.approx(p.outcome.makespan)
    assert again.makespan < 0.995 * task.reference
    one = task.jp.evaluate(pol.act(obs_tensors(task.obs), greedy=True).decisions)  # one pass, nothing kept
    # the refinement rounds are what holds zero-shot to the hint: one pass alone is 0.989 of the best baseline here
    # (0.971 refined) with the policy retrained under PORTABLE_ENV (README's table, "1 pass"), 1.053 with the one
    # before it, 0.982 with the file shipped before that, which its command does not make (this line held it to 1.05)
    assert one.valid and again.makespan < one.makespan


@pytest.mark.slow
def test_shipped_policy_zero_shot_moves_chain_units_on_the_held_out_nmt_graph():
    # the LSTM NMT is in no training graph (bench_learned.py's held-out set); reference: the best of the 36
    # baseline combinations, simulated, and the refined decisions re-simulated from scratch. The policy's op-wise
    # candidates (greedy, top-k changes) find nothing better than the hint here; its unit candidates
    # (infer.top_unit_moves: chain units moved whole, ranked by the mean of their ops' device scores) do
    from graphmill.frontend import zoo
    from graphmill.passes.learned.infer import propose

    pol, _ = load_policy()
    cm = PlacementCostModel(device_set(devices=4))
    g = zoo.build("nmt", batch=16)
    task = make_task("nmt", g, cm)
    assert propose(pol, task.jp, obs=task.obs, units=()).source == "hint"
    p = propose(pol, task.jp, obs=task.obs)
    assert "units" in p.source
    again = JointProblem(build_problem(g, cm), cm).evaluate(p.decisions)
    assert again.makespan == pytest.approx(p.outcome.makespan) and again.makespan < 0.995 * task.reference


def two_chains(batch: int = 256, h: int = 1024):
    """x -> three MatMuls (chain A) and x -> three MatMuls (chain B), joined by an Add."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("two_chains")
    x = b.input("x", "float32", [batch, h])
    outs = []
    for _ in range(2):
        y = x
        for _ in range(3):
            y = b.MatMul(y, (rng.standard_normal((h, h)) * 0.01).astype(np.float32))
        outs.append(y)
    b.output(b.Add(*outs))
    return b.build()


def test_fine_tune_unit_moves_spread_parallel_chains_by_hand():
    """Fine-tuning's chain-unit moves (search.learned.unit_moves, the rl placer's chain units) move a whole branch:
    from everything on device 0, the best state puts one chain on the other device. By hand, with the list
    scheduler's rule: both chains run in parallel (T each; x is an input, on every device at 0), the moved chain's
    output crosses the link (latency 1000 + bytes / 64 cycles) and the Add runs after it, reached in one move
    (the best-so-far curve goes from the start straight to it). Without unit moves (the same budget and seed;
    top-k, top unit and single changes off) the fresh policy's draws stay at the start."""
    g = two_chains()
    cm = PlacementCostModel(device_set(devices=2))
    task = make_task("two_chains", g, cm, hint=np.zeros(7, np.int64))
    jp = task.jp
    names = [n.op_type for n in jp.prob.nodes]
    assert names == ["MatMul"] * 6 + ["Add"]
    unit = task_units(jp)
    assert unit.tolist() == [0, 0, 0, 1, 1, 1, 2]  # chain A, chain B, the Add
    t = jp.prob.op_time[:, 0]
    assert np.allclose(jp.prob.op_time[:, 1], t)
    start = task.obs["decisions"]
    assert np.all(start.device == 0) and task.reference == pytest.approx(t.sum())
    moves = list(unit_moves(jp, lambda: start, unit, np.random.default_rng(0), 6))
    for m in moves:  # one whole unit, to the other device
        ch = np.flatnonzero(m.device != 0)
        assert len(np.unique(unit[ch])) == 1 and len(ch) == np.sum(unit == unit[ch[0]]) and np.all(m.device[ch] == 1)
    T = t[:3].sum()
    assert t[3:6].sum() == pytest.approx(T)
    by_hand = T + 1000 + 256 * 1024 * 4 / 64 + t[6]
    kw = dict(budget=20, seed=0, top=(), unit_top=(), singles=0, options={"epochs": 1})
    with_units = fine_tune(None, task, units=8, **kw)
    assert with_units["outcome"].makespan == pytest.approx(by_hand)
    assert all(c == pytest.approx(t.sum()) or c == pytest.approx(by_hand) for c in with_units["curve"])
    assert by_hand < 0.8 * t.sum()
    without = fine_tune(None, task, units=0, **kw)
    assert without["outcome"].makespan == pytest.approx(t.sum())


def test_top_unit_moves_rank_units_by_the_mean_wish_of_their_ops_by_hand():
    """infer.ranked_unit_moves / top_unit_moves: a unit's score is the mean over its ops of the policy's
    ``logit(op, d) - logit(op, current)``, the best d not holding the whole unit already. By hand on two_chains
    (chain A = ops 0-2, chain B = ops 3-5, the Add = 6, everything on device 0 of 3): op 0 wants device 1 by 2,
    B's ops device 2 by 1 each, nothing else moves; so B to device 2 (mean 1) comes before A to device 1 (mean
    2/3), then the Add to the first other device (mean 0: a tie, the lower device wins). The k-th candidate moves
    the first k units together, whole; op-wise ranking (top_moves) splits chain A instead."""
    from graphmill.passes.learned.infer import ranked_unit_moves, top_unit_moves, unit_members

    jp = make_task("two_chains", two_chains(), PlacementCostModel(device_set(devices=3)),
                   hint=np.zeros(7, np.int64)).jp
    members = unit_members(task_units(jp))
    assert members == [[0, 1, 2], [3, 4, 5], [6]]
    lg = torch.zeros(7, 3)
    lg[0, 1] = 2.0
    lg[3:6, 2] = 1.0
    cur = Decisions(np.zeros(7, np.int64), np.zeros(7, bool), np.arange(7, dtype=np.float64))
    assert ranked_unit_moves(cur, lg, members) == [(1, 2), (0, 1), (2, 1)]
    got = dict(top_unit_moves(jp, cur, lg, members, (1, 2, 3, 4)))
    assert sorted(got) == [1, 2, 3]  # 3 units: no 4th
    assert got[1].device.tolist() == [0, 0, 0, 2, 2, 2, 0]
    assert got[2].device.tolist() == [1, 1, 1, 2, 2, 2, 0]
    assert got[3].device.tolist() == [1, 1, 1, 2, 2, 2, 1]
    assert top_moves(jp, cur, lg, (1,))[0][1].device.tolist() == [1, 0, 0, 0, 0, 0, 0]
    # a unit wholly on the device it would want is not a move: B already on device 2 asks for its next best
    on2 = Decisions(np.array([0, 0, 0, 2, 2, 2, 0]), cur.fuse, cur.priority)
    assert ranked_unit_moves(on2, lg, members)[0] == (0, 1)
    assert (1, 2) not in ranked_unit_moves(on2, lg, members)


def test_zero_shot_unit_candidates_reach_the_parallel_chains_a_split_chain_misses_by_hand():
    """Zero-shot refinement (infer.refine) with the policy's unit candidates (units=UNIT_TOP): a policy whose
    device scores are op 0 to device 1 by 2 and chain B's ops by 1 each (op-wise, chain A's first op is its
    strongest wish) moves chain B whole in one round, the state worked out by hand in
    test_fine_tune_unit_moves_spread_parallel_chains_by_hand (both chains in parallel, B's output over the link to
    the Add). Without unit candidates the same round (greedy and top-k changes, each op-wise) ends elsewhere,
    slower: op 0 moved alone pays two transfers. Only devices are decided (the start's fusions and order kept)."""
    from graphmill.passes.learned.infer import UNIT_TOP

    cm = PlacementCostModel(device_set(devices=2))
    task = make_task("two_chains", two_chains(), cm, hint=np.zeros(7, np.int64))
    jp = task.jp
    t = jp.prob.op_time[:, 0]
    by_hand = t[:3].sum() + 1000 + 256 * 1024 * 4 / 64 + t[6]
    start = task.obs["decisions"]
    assert np.all(start.device == 0)
    torch.manual_seed(0)
    pol = GraphPolicy(hidden=16, layers=1)
    heads = pol.heads
    lg = torch.zeros(7, 2)
    lg[0, 1] = 2.0
    lg[3:6, 1] = 1.0
    pol.heads = lambda tt: (lg, *heads(tt)[1:])
    keep = lambda d: Decisions(d.device, start.fuse, start.priority)  # noqa: E731
    dec, out, src, _ = refine(pol, jp, task.obs, rounds=1, transform=keep, top=TOP, units=UNIT_TOP)
    assert src == "round 1 units 1" and out.makespan == pytest.approx(by_hand)
    assert dec.device.tolist() == [0, 0, 0, 1, 1, 1, 0]
    _, without, src2, _ = refine(pol, jp, task.obs, rounds=1, transform=keep, top=TOP)
    assert "units" not in src2 and without.makespan > by_hand * 1.01



def test_a_unit_moved_whole_keeps_its_own_fusions_and_loses_those_across_devices():
    """``infer.moved`` (unit moves, top-k changes): a fusion joins an op to its fusion producer on one device (the
    environment's rule: a group never crosses devices), so moving chain B whole keeps its two inner fusions and
    drops the Add's with B's last MatMul; moving B's middle op alone drops both fusions it takes part in. Before,
    every fusion of a moved op was dropped, and a unit move of a fused state paid for fusions it still had.
    Reference: that rule, applied by hand to the fusion producers read from the graph."""
    jp = make_task("two_chains", two_chains(), PlacementCostModel(device_set(devices=2)),
                   hint=np.zeros(7, np.int64)).jp
    fp = jp.fuse_producer.tolist()
    assert fp[:6] == [-1, 0, 1, -1, 3, 4] and fp[6] in (2, 5)
    add_from_b = fp[6] == 5
    start = Decisions(np.zeros(7, np.int64), np.array([f >= 0 for f in fp]), np.arange(7, dtype=np.float64))
    whole = moved(jp, start, np.array([3, 4, 5]), np.ones(3, np.int64))
    assert whole.device.tolist() == [0, 0, 0, 1, 1, 1, 0]
    assert whole.fuse.tolist() == [False, True, True, False, True, True, not add_from_b]
    alone = moved(jp, start, np.array([4]), np.ones(1, np.int64))
    assert alone.fuse.tolist() == [False, True, True, False, False, False, True]
    assert whole.priority.tolist() == alone.priority.tolist() == list(range(7))

def long_short_and_sides(batch: int = 256, h: int = 1024):
    """Four tiny independent Relus (T1..T4), then x -> four MatMuls (chain L) and x -> one MatMul (S), joined by an
    Add."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("long_short")
    for k in range(4):
        b.output(b.Relu(b.input(f"z{k}", "float32", [1, 16])))
    x = b.input("x", "float32", [batch, h])
    y = x
    for _ in range(4):
        y = b.MatMul(y, (rng.standard_normal((h, h)) * 0.01).astype(np.float32))
    s = b.MatMul(x, (rng.standard_normal((h, h)) * 0.01).astype(np.float32))
    b.output(b.Add(y, s))
    return b.build()


def test_guided_unit_moves_first_move_is_the_critical_unit_to_the_idle_device_by_hand():
    """Fine-tuning's chain-unit moves are chosen from the current state's simulated schedule (search.learned
    guided_unit_moves: the chain of waits that sets the step time, critical_chain, and the units it blames).
    By hand, with the list scheduler's rule, everything on device 0 of 2 in the graph's order: the Relus (R in all),
    L (4 t), S (t: ready at 0, it waits R + 4 t for the device), the Add; step time R + 5 t + a. Of the 7 single
    unit moves, S to device 1 is the best (R + 4 t + a: S's output arrives at t + transfer, before L ends); L to
    device 1 gives 4 t + transfer + a (the transfer is longer than R), the Add or a Relu at most r. Reference: the
    hand values and every unit move simulated. The guided first move is that one for every seed; the uniform
    draws it replaced (unit_moves) pick it only by chance (not for all of seeds 0-4), so this test fails with them."""
    g = long_short_and_sides()
    cm = PlacementCostModel(device_set(devices=2))
    task = make_task("long_short", g, cm, hint=np.zeros(10, np.int64))
    jp = task.jp
    names = [n.op_type for n in jp.prob.nodes]
    assert names == ["Relu"] * 4 + ["MatMul"] * 5 + ["Add"]
    L, S, A = [4, 5, 6, 7], 8, 9
    unit = task_units(jp)
    assert unit.tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 5, 6]  # four Relus, chain L, S, the Add
    t = jp.prob.op_time[:, 0]
    assert np.allclose(jp.prob.op_time[:, 1], t) and np.allclose(t[L + [S]], t[S])
    start = Decisions.default(jp.n, 0)
    out = jp.evaluate(start)
    R, T, a = t[:4].sum(), t[S], t[A]
    tr = jp.prob.transfer(jp.prob.edge_bytes[(S, A)], 1, 0)
    assert out.makespan == pytest.approx(R + 5 * T + a) and tr > R and t[:4].max() < 0.01 * T
    assert ("device", L[-1], S, pytest.approx(R + 4 * T)) in critical_chain(jp, out)
    # every single unit move, simulated: S to device 1 is the unique best, as by hand
    sims = {}
    for u in range(7):
        dev = np.zeros(jp.n, np.int64)
        dev[unit == u] = 1
        sims[u] = jp.evaluate(Decisions(dev, np.zeros(jp.n, bool), start.priority)).makespan
    assert sims[5] == pytest.approx(R + 4 * T + a) and sims[4] == pytest.approx(4 * T + tr + a)
    assert min(sims, key=sims.get) == 5 and sorted(sims.values())[1] > sims[5] + 0.5 * T
    best = np.zeros(jp.n, np.int64)
    best[S] = 1
    for seed in range(5):
        first = next(guided_unit_moves(jp, lambda: (start, out), unit, np.random.default_rng(seed), 1))
        assert first.device.tolist() == best.tolist()
    uniform = [next(unit_moves(jp, lambda: start, unit, np.random.default_rng(seed), 1)).device.tolist()
               for seed in range(5)]
    assert any(m != best.tolist() for m in uniform)


@pytest.mark.parametrize("fusion_elsewhere", [False, True])
def test_critical_chain_sees_a_transfer_waiting_for_its_link_by_hand(fusion_elsewhere):
    """critical_chain (search.learned) reads link contention that slack does not. By hand, with the list
    scheduler's rule: P1 and P2 (small MatMuls with 1 MB outputs) run on device 0 (t each), their readers C1, C2
    on device 1; the link 0 -> 1 carries one transfer at a time (tr each: latency + bytes / bandwidth, tr > t), so
    P2's output, ready at 2 t, waits tr - t behind P1's and reaches C2 at t + 2 tr, which ends the step. The chain
    holds that send (2 tr - t after P2's finish) and the link wait behind P1 (tr - t); features.slack, blind to
    links, gives P1 slack, and its unit moved to device 1 (the transfer ahead's destination) is blamed. With a
    fusion elsewhere (a Tanh -> Exp group on device 0, after the rest) the schedule is the contracted problem's,
    whose value list drops the group's intermediate: the chain read no transfers of a fused state then (it
    estimated each arrival without the link's queue) and must read the same chain as without it."""
    from graphmill.search.learned import blame_unit_moves

    rng = np.random.default_rng(0)
    b = GraphBuilder("link_wait")
    x = b.input("x", "float32", [256, 64])
    for _ in range(2):
        b.output(b.Relu(b.MatMul(x, (rng.standard_normal((64, 1024)) * 0.1).astype(np.float32))))
    if fusion_elsewhere:
        b.output(b.Exp(b.Tanh(b.input("w", "float32", [4, 4]))))
    cm = PlacementCostModel(device_set(devices=2))
    jp = JointProblem(build_problem(b.build(), cm), cm)
    assert [n.op_type for n in jp.prob.nodes] == ["MatMul", "Relu", "MatMul", "Relu"] + ["Tanh", "Exp"] * fusion_elsewhere
    P1, C1, P2, C2 = range(4)
    dev = np.zeros(jp.n, np.int64)
    dev[[C1, C2]] = 1
    prio = np.array([0.0, 2, 1, 3, 4, 5][: jp.n])
    fuse = np.zeros(jp.n, bool)
    fuse[4:] = [False, True][: jp.n - 4]
    out = jp.evaluate(Decisions(dev, fuse, prio))
    assert len(out.groups) == jp.n - fusion_elsewhere
    t = jp.prob.op_time[P1, 0]
    tr = jp.prob.transfer(jp.prob.edge_bytes[(P1, C1)], 0, 1)
    assert jp.prob.op_time[P2, 0] == pytest.approx(t) and tr > t
    assert out.finish[P2] == pytest.approx(2 * t) and out.start[C2] == pytest.approx(t + 2 * tr)
    assert out.makespan == pytest.approx(t + 2 * tr + jp.prob.op_time[C2, 1])
    chain = critical_chain(jp, out)
    assert chain[:2] == [("send", P2, C2, pytest.approx(2 * tr - t)), ("link", P1, 1, pytest.approx(tr - t))]
    assert slack(jp, out)[P1] > 0
    unit = task_units(jp)
    members = [np.flatnonzero(unit == u).tolist() for u in range(unit.max() + 1)]
    assert (int(unit[P1]), 1) in blame_unit_moves(jp, out, members)


def test_critical_chain_of_a_fused_group_waits_for_its_latest_member_input_by_hand():
    """A fusion group starts once every member's outside input is there (the list scheduler's rule on the
    contracted problem), so the chain through a group follows the latest input of any member. By hand: S
    (Sigmoid) and the group [A = Tanh, F = Add] on device 0, L (a MatMul whose output F adds) on device 1; the
    group waits for L's output (t_L + transfer), not for S. Read from A alone (its only input is the graph's, there
    at 0), the chain blamed device 0's queue ("device", S, A) and moved S away, which gains nothing (simulated: S then delays L);
    the group's wait is the send from L, and the blamed moves are L to device 0 or F to device 1."""
    from graphmill.search.learned import blame_unit_moves

    rng = np.random.default_rng(0)
    b = GraphBuilder("late_member_input")
    x, z = b.input("x", "float32", [256, 1024]), b.input("z", "float32", [256, 64])
    s = b.Sigmoid(b.input("w", "float32", [256, 1024]))
    a = b.Tanh(x)
    b.output(b.Add(a, b.MatMul(z, (rng.standard_normal((64, 1024)) * 0.1).astype(np.float32))))
    b.output(s)
    cm = PlacementCostModel(device_set(devices=2))
    jp = JointProblem(build_problem(b.build(), cm), cm)
    names = [n.op_type for n in jp.prob.nodes]
    S, A, L, F = (names.index(k) for k in ("Sigmoid", "Tanh", "MatMul", "Add"))
    assert jp.fuse_producer[F] == A
    dev = np.zeros(jp.n, np.int64)
    dev[L] = 1
    fuse = np.zeros(jp.n, bool)
    fuse[F] = True
    prio = np.zeros(jp.n)
    prio[[S, A, L, F]] = [0, 1, 0, 2]
    out = jp.evaluate(Decisions(dev, fuse, prio))
    t = jp.prob.op_time
    tr = jp.prob.transfer(jp.prob.edge_bytes[(L, F)], 1, 0)
    assert sorted(map(sorted, out.groups)) == sorted([[S], [L], sorted([A, F])])
    assert out.start[A] == out.start[F] == pytest.approx(t[L, 1] + tr)  # by hand: L's output, not S
    assert t[L, 1] + tr > t[S, 0]
    assert critical_chain(jp, out) == [("send", L, F, pytest.approx(tr))]
    unit = task_units(jp)
    members = [np.flatnonzero(unit == u).tolist() for u in range(unit.max() + 1)]
    assert blame_unit_moves(jp, out, members)[:2] == [(int(unit[L]), 0), (int(unit[F]), 1)]

    def with_moved(op: int, d: int) -> float:
        moved_dev = dev.copy()
        moved_dev[op] = d
        return jp.evaluate(Decisions(moved_dev, fuse, prio)).makespan

    assert with_moved(L, 0) < out.makespan <= with_moved(S, 1)


def test_blamed_move_goes_to_the_device_least_busy_counting_a_fused_group_once():
    """blame_unit_moves sends a unit that waited for its device to the other device least busy while it runs. By
    hand on 3 devices: W (a long Tanh) waits on device 0 behind P; device 1 runs a fused group of three short ops,
    device 2 one longer op, both within W's window: device 1 is the less busy (the group's time once), and W moved
    there finishes sooner (simulated). Each member carries the group's start and finish, so counting per op
    charged device 1 three times its group and sent W to device 2."""
    from graphmill.search.learned import blame_unit_moves

    b = GraphBuilder("idle")
    x = b.input("x", "float32", [1, 4096])
    b.output(b.Sigmoid(b.Tanh(b.Relu(x))))  # 0-2: one group on device 1
    b.output(b.Tanh(b.input("mid", "float32", [1, 4 * 4096])))  # 3: device 2
    b.output(b.Tanh(x))  # 4 (P): device 0, first
    b.output(b.Tanh(b.input("big", "float32", [1, 8 * 4096])))  # 5 (W): device 0, waits for P
    cm = PlacementCostModel(device_set(devices=3))
    jp = JointProblem(build_problem(b.build(), cm), cm)
    dec = Decisions(np.array([1, 1, 1, 2, 0, 0]), np.array([False, True, True, False, False, False]), np.arange(6.0))
    out = jp.evaluate(dec)
    assert out.groups[out.group[0]] == [0, 1, 2]
    assert critical_chain(jp, out)[0][:3] == ("device", 4, 5)
    lo, hi = out.start[5], out.finish[5]

    def busy(ops):
        return sum(max(0.0, min(out.finish[i], hi) - max(out.start[i], lo)) for i in ops)

    assert 0 < busy([0]) < busy([3]) < 3 * busy([0])  # the group (counted once) is the lighter load
    assert blame_unit_moves(jp, out, [[i] for i in range(6)])[0] == (5, 1)
    assert jp.evaluate(moved(jp, dec, np.array([5]), np.array([1]))).makespan < \
        jp.evaluate(moved(jp, dec, np.array([5]), np.array([2]))).makespan


def test_fine_tune_starts_with_the_zero_shot_rounds_counted():
    """Fine-tuning first runs zero-shot refinement (infer.refine, reached here through propose), each simulation
    counted: given as many samples as zero-shot simulates, its best-so-far curve is zero-shot's running minimum,
    so fine-tuning is never worse than zero-shot (without those rounds it is not on this graph)."""
    from graphmill.passes.learned.infer import propose
    from graphmill.passes.learned.policy import load_policy

    # a graph where the shipped policy improves in round 2 (seed 8 before the policy of /3, 10 before the policy
    # retrained with its recorded command, 2026-12-06, 4 before the fused-feature fix, 2026-12-07)
    task = make_task("m", random_graph(9, "mlp", 60), PlacementCostModel(device_set(devices=4)))
    pol, _ = load_policy()
    zs = propose(pol, task.jp, obs=task.obs)
    assert zs.outcome.makespan < task.reference and zs.source.startswith("round 2")
    running = np.minimum.accumulate(np.minimum(zs.info["candidates"], task.reference))
    r = fine_tune(pol, task, budget=len(running), units=0, singles=0)
    assert np.allclose(r["curve"], running) and r["outcome"].makespan == zs.outcome.makespan


def every_candidate(pol, jp, obs, rounds):
    """refine's rounds (greedy + top-k) without memory, as refine ran before it kept a seen-set: every candidate
    simulated, the state moved to the best so far after an improving round. (best outcome, keys simulated)."""
    best, best_dec, sims = obs["outcome"], obs["decisions"], []
    for _ in range(rounds):
        t = obs_tensors(obs)
        with torch.no_grad():
            heads = pol.heads(t)
        before = best
        for d in [pol.act(t, greedy=True, heads=heads).decisions] + [
                d for _, d in top_moves(jp, obs["decisions"], heads[0], TOP)]:
            o = jp.evaluate(d)
            sims.append(state_key(d))
            if (not o.valid, o.makespan) < (not best.valid, best.makespan):
                best, best_dec = o, d
        if best is not before:
            obs = state_features(jp, obs, best_dec, best)
    return best, sims


def small_task(seed: int = 0):
    # 40 ops on 2 chips: with seed 0 the shipped policy improves on the hint in round 2, and its rounds repeat
    # candidates (graph seeds chosen for these properties, which the tests need: 8 before the policy of /3, 0
    # before the policy retrained with its recorded command, 2026-12-06, 3 before the fused-feature fix, 2026-12-07)
    return make_task("m", random_graph(seed, "mlp", 40), PlacementCostModel(device_set(devices=2)))


def test_refinement_simulates_each_decision_set_once_within_its_budget():
    """Reference: the same rounds without memory, written here (``every_candidate``): refine reaches the same best
    step time from exactly the distinct decision sets that simulates (fewer simulations: it repeats some), and
    never the start state again (the task's setup simulated it). ``seen`` comes back holding them all; a
    ``budget`` stops at that many simulations, a prefix of the unbounded run's."""
    pol, _ = load_policy()
    task = small_task()
    jp = task.jp
    start = state_key(task.obs["decisions"])
    ref, ref_keys = every_candidate(pol, jp, task.obs, 4)
    keys = []
    evaluate = jp.evaluate
    jp.evaluate = lambda d: keys.append(state_key(d)) or evaluate(d)
    seen = set()
    dec, out, src, times = refine(pol, jp, task.obs, top=TOP, seen=seen)
    assert len(keys) == len(set(keys)) == len(times) < len(ref_keys)
    assert set(keys) == set(ref_keys) - {start} and seen == set(keys) | {start}
    assert out.makespan == ref.makespan < task.reference and src.startswith("round 2")
    keys.clear()
    _, _, _, first = refine(pol, jp, task.obs, top=TOP, budget=5)
    assert len(keys) == 5 and first == times[:5]


def test_fine_tune_starts_with_refine_itself_and_its_memory(monkeypatch):
    """One implementation of the zero-shot rounds: fine_tune calls infer.refine (reference: the call, seen through
    the module's name) once, with its budget, and counts exactly refine's simulations first (its curve starts
    with their running minimum); its memory is refine's: refine's simulations are distinct and not its start
    state, and the set refine filled is the one fine-tuning then adds to (it ends holding every state simulated)."""
    from graphmill.search import learned

    pol, _ = load_policy()
    task = small_task()
    calls = []
    real = learned.refine
    monkeypatch.setattr(learned, "refine", lambda *a, **k: calls.append((k, real(*a, **k))) or calls[-1][1])
    keys = []
    evaluate = task.jp.evaluate
    task.jp.evaluate = lambda d: keys.append(state_key(d)) or evaluate(d)
    r = fine_tune(pol, task, budget=24, samples=4, units=0, singles=0, options={"epochs": 1})
    assert len(calls) == 1 and calls[0][0]["budget"] == 24 and calls[0][0]["seen"] is not None
    times = calls[0][1][3]
    n = len(times)
    assert 0 < n < 24 and r["samples"] == 24
    assert np.allclose(r["curve"][:n], np.minimum.accumulate(np.minimum(times, task.reference)))
    zero_shot = keys[:1 + n]  # fine_tune's start state, then refine's simulations
    assert len(set(zero_shot)) == 1 + n and set(keys) <= calls[0][0]["seen"]


def test_fine_tune_from_a_callers_start_counts_samples_to_reference_from_new_simulations_only():
    """A caller's ``start`` (zero-shot's best, here the hint, at the reference itself) is no sample:
    ``samples_to_reference`` is 1 + the index of the first new simulation at or under the reference, or None
    (reference: the simulator calls themselves, recorded in order; every one inside fine_tune is a counted sample)."""
    task = small_task(1)  # a graph where a fresh policy's first candidates are worse than the hint
    dec0 = task.obs["decisions"]
    out0 = task.jp.evaluate(dec0)
    ref = out0.makespan  # the start is exactly at the reference: the old count said 0 here
    times = []
    evaluate = task.jp.evaluate
    task.jp.evaluate = lambda d: (lambda o: times.append(o.makespan if o.valid else np.inf) or o)(evaluate(d))
    r = fine_tune(None, task, budget=12, samples=4, seed=0, reference=ref, start=(dec0, out0), rounds=0,
                  options={"epochs": 1})  # a fresh policy: its first candidates are worse than the hint here
    assert len(times) == r["samples"] == 12 and times[0] > ref
    first = next((k + 1 for k, t in enumerate(times) if t <= ref), None)
    assert r["samples_to_reference"] == first


def test_fine_tune_unit_moves_count_new_states_on_a_state_that_does_not_improve(monkeypatch):
    """``units`` is the number of new states each iteration's chain-unit moves simulate: a move to a state
    simulated already is skipped and not counted, so while the state does not change (here nothing beats it:
    every state but the start is answered twice as slow) each iteration goes on past the moves of the ones
    before. Before, the guided list restarted at its top each iteration, all of it seen, and the unit moves of
    every iteration after the first simulated nothing. Reference: the moves counted as generated and simulated."""
    import dataclasses

    import graphmill.search.learned as learned

    task = make_task("m", random_graph(5, "mlp", 30), PlacementCostModel(device_set(devices=3)))
    jp = task.jp
    start = task.obs["decisions"]
    unit = task_units(jp)
    members = [np.flatnonzero(unit == u).tolist() for u in range(unit.max() + 1)]
    from graphmill.search.learned import blame_unit_moves

    assert len(blame_unit_moves(jp, task.obs["outcome"], members)) >= 3  # the old code's repeat would fill k = 3
    evaluate = jp.evaluate
    start_key = state_key(start)

    def slower(d):
        o = evaluate(d)
        return o if state_key(d) == start_key else dataclasses.replace(o, makespan=2 * task.reference)

    monkeypatch.setattr(jp, "evaluate", slower)
    made = {}  # id -> the move itself (kept alive, so that no other object takes its id)
    guided = learned.guided_unit_moves

    def tagged(*a, **k):
        for d in guided(*a, **k):
            made[id(d)] = d
            yield d

    monkeypatch.setattr(learned, "guided_unit_moves", tagged)
    sims = []
    inner = jp.evaluate
    monkeypatch.setattr(jp, "evaluate", lambda d: sims.append((id(d) in made, state_key(d))) or inner(d))
    r = fine_tune(None, task, budget=60, rounds=0, top=(), singles=0, samples=3, units=3, seed=0,
                  options={"epochs": 1})
    assert r["outcome"].makespan == pytest.approx(task.reference)  # nothing beat the start
    unit_sims = [k for is_unit, k in sims if is_unit]
    assert len(unit_sims) == len(set(unit_sims))  # no state simulated twice
    assert r["steps"] >= 5 and len(unit_sims) >= 3 * (r["steps"] - 1)


def test_a_pass_deciding_one_part_is_never_worse_than_that_parts_baselines():
    """learned-place started from the devices of the best joint combination, whose worth may lie in a fusion the
    pass cannot make, and kept the graph's own fusion (none) and order: on this random CNN it ended 27% slower
    than a placement baseline in the same environment (an outside check found 1.3% on a transformer encoder;
    14 of 120 random graphs here). Reference: `graphmill place`'s list scheduler (placement.schedule.simulate,
    graph order) on every placement baseline; then, for learned-schedule on the placed graph, the environment's
    simulation of each schedule baseline with the devices and fusion the graph holds."""
    from graphmill.passes import PassContext, run_passes
    from graphmill.passes.learned.baselines import SCHEDULES, placement_baselines, schedule_baseline
    from graphmill.passes.learned.passes import LearnedPlace, LearnedSchedule, decisions_from_graph
    from graphmill.passes.placement.schedule import simulate

    g = random_graph(20, "cnn", 40)
    cm = PlacementCostModel(device_set(devices=2))
    prob = build_problem(g, cm)
    jp = JointProblem(prob, cm)
    graph_order = np.arange(prob.n, dtype=np.float64)
    best_placement = min(simulate(prob, pl, priority=graph_order).makespan for pl in placement_baselines(jp).values())
    run_passes(g, [LearnedPlace()], ctx=PassContext(cost_model=cm))
    assert g.meta["learned"]["makespan"] <= best_placement
    kept = decisions_from_graph(g, JointProblem(build_problem(g, cm), cm))
    best_schedule = min(jp.evaluate(Decisions(kept.device, kept.fuse, schedule_baseline(jp, s))).makespan
                        for s in SCHEDULES)
    placed = [n.meta["device"] for n in g.nodes]
    run_passes(g, [LearnedSchedule()], ctx=PassContext(cost_model=cm))
    assert g.meta["learned"]["makespan"] <= best_schedule
    assert [n.meta["device"] for n in g.nodes] == placed  # the schedule pass keeps the devices
    # the API's report names that start: the last pass's, which its result is never worse than
    from graphmill import api

    for passes, name in (("learned-place", "+kept+kept"), ("learned-optimize", None)):
        r = api.learned_optimize(random_graph(20, "cnn", 40), passes=passes, devices=2)
        assert r["makespan"] <= r["held_to"]["makespan"]
        if name:
            assert name in r["held_to"]["name"] and r["held_to"]["makespan"] <= best_placement
        else:
            assert r["held_to"] == r["best_baseline"]
    # a one-part pass's start names only its part: the whole best combination's name (with one makespan beside
    # best_baseline's same name and another) was given when the hint won (a review)
    import re

    for passes, pattern in (("learned-fuse", r"kept\+(none|greedy)\+kept"),
                            ("learned-schedule", r"kept\+kept\+(graph|critical-path|memory)")):
        r = api.learned_optimize(random_graph(20, "cnn", 40), passes=passes, devices=2)
        part = passes.split("-")[1]
        assert re.fullmatch(pattern + rf"( \(the best combination's {part}\))?", r["held_to"]["name"]), r["held_to"]


def _inception_stack_onnx(path: str) -> None:
    """Four Inception-style blocks (1x1, 1x1-3x3, 1x1-5x5 and pool-1x1 branches, concatenated, plus a scaled
    skip) written with torch.nn, as an outside check wrote them, exported by torch.onnx."""
    import warnings

    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.b1 = nn.Conv2d(c, c // 4, 1)
            self.b2 = nn.Sequential(nn.Conv2d(c, c // 2, 1), nn.ReLU(), nn.Conv2d(c // 2, c // 4, 3, padding=1))
            self.b3 = nn.Sequential(nn.Conv2d(c, c // 4, 1), nn.ReLU(), nn.Conv2d(c // 4, c // 4, 5, padding=2))
            self.b4 = nn.Conv2d(c, c // 4, 1)

        def forward(self, x):
            branches = [self.b1(x), self.b2(x), self.b3(x), self.b4(F.max_pool2d(x, 3, 1, 1))]
            return F.relu(torch.cat(branches, 1) + x * 0.5)

    class Net(nn.Module):
        def __init__(self, c: int = 16, n: int = 4) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, c, 3, padding=1)
            self.blocks = nn.Sequential(*[Block(c) for _ in range(n)])
            self.fc = nn.Linear(c, 10)

        def forward(self, x):
            return self.fc(self.blocks(F.relu(self.stem(x))).mean((2, 3)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), (torch.randn(2, 3, 12, 12),), path, input_names=["x"], output_names=["y"],
                          opset_version=17, dynamo=False)


def test_learned_optimize_takes_each_parts_baselines_on_its_own_refined_decisions(tmp_path):
    """learned-optimize refined the best baseline combination a few ops at a time and ended 6% slower than the
    three learned passes run one after another on an Inception-style stack written independently (2 chips of
    8 KB activation buffers; an outside check). It now takes block-coordinate steps (``part_steps``).
    References: the environment's simulation of every baseline of each part with the other two decisions of
    the result kept (none is faster: the result is a fixed point of those steps), and the three passes in a row
    (the joint pass is now faster)."""
    from graphmill import api
    from graphmill.frontend.onnx_shape_inference import infer_shapes
    from graphmill.passes.learned.baselines import best_baseline
    from graphmill.passes.learned.passes import apply_decisions, run_learned

    path = str(tmp_path / "incep.onnx")
    _inception_stack_onnx(path)
    accel = tmp_path / "small.toml"
    accel.write_text('name = "small-buffers"\n[array]\nrows = 256\ncols = 256\ndataflow = "ws"\n[memory]\n'
                     'ifmap_kb = 8\nfilter_kb = 4096\nofmap_kb = 8\nword_bytes = 1\ndram_bw_words = 2\n'
                     '[clock]\nmhz = 700\n')
    cm = PlacementCostModel(device_set(devices=2, accel=str(accel)))

    def loaded():  # a legacy torch export declares no intermediate shapes; the passes infer them first
        g = api.load(path)
        infer_shapes(g)
        return g

    jp, dec, out, stats = run_learned(loaded(), cm, "learned-optimize")
    assert out.valid and out.makespan < stats["held_to"]["makespan"]
    for part in ("place", "fuse", "schedule"):
        assert best_baseline(jp, parts=frozenset({part}), keep=dec).outcome.makespan >= out.makespan, part
    g = loaded()
    for p in ("learned-place", "learned-fuse", "learned-schedule"):
        jps, ds, os_, _ = run_learned(g, cm, p)
        apply_decisions(g, jps, ds, os_, p)
    assert out.makespan < os_.makespan


def test_learned_optimize_refines_from_the_best_combination_of_each_order(monkeypatch):
    """The policy's moves keep the order, so learned-optimize refining the best combination alone searched devices
    under that combination's order only, and the three passes in a row (learned-place under the graph's order)
    could end faster. It now refines, then takes its part steps, from the best combination under each schedule
    baseline too (baselines.best_per_schedule). On CoAtNet-0 at 4 chips (a validation graph of bench_learned.py,
    neither trained on nor held out) that beats the three passes in a row, which the joint pass from the best
    combination alone only ties. References: the three passes in a row (the benchmark's sequential column) and the
    returned decisions re-simulated from scratch."""
    from graphmill.frontend import zoo
    from graphmill.passes.learned import passes as learned_passes
    from graphmill.passes.learned.passes import apply_decisions, run_learned

    cm = PlacementCostModel(device_set(devices=4))
    g = zoo.build("coatnet_0", batch=8)
    gs = g.copy()
    for p in ("learned-place", "learned-fuse", "learned-schedule"):
        jps, ds, chain, _ = run_learned(gs, cm, p)
        apply_decisions(gs, jps, ds, chain, p)
    jp, dec, out, stats = run_learned(g.copy(), cm, "learned-optimize")
    assert out.valid and out.makespan < chain.makespan < stats["held_to"]["makespan"]
    assert JointProblem(build_problem(g, cm), cm).evaluate(dec).makespan == pytest.approx(out.makespan)
    monkeypatch.setattr(learned_passes, "best_per_schedule", lambda jp, seed=0: {})
    _, _, alone, _ = run_learned(g.copy(), cm, "learned-optimize")
    assert alone.makespan >= chain.makespan > out.makespan


def test_learned_optimize_without_draws_does_not_depend_on_the_seed():
    """The seed only drives the policy's random draws (``samples``) and fine-tuning: with ``samples=0`` the joint
    pass is the same for every seed. Its starts under each order came from baselines of the pass's seed (METIS
    seeded) while the hint and the reported best baseline were seed 0's: seed 2 gave 836,176 cycles against seed
    0's 848,720 here, from a METIS start the report did not name (a review). Reference: the simulator on the two
    results, and the best baseline the report names (the pass is never worse than it)."""
    from graphmill.passes.learned.passes import run_learned

    cm = PlacementCostModel(device_set(devices=3))
    got = {}
    for seed in (0, 2):
        jp, dec, out, stats = run_learned(random_graph(0, "cnn", n=60), cm, "learned-optimize", seed=seed, rounds=1)
        assert out.makespan <= stats["held_to"]["makespan"] and jp.evaluate(dec).makespan == out.makespan
        got[seed] = out.makespan
    assert got[0] == got[2]


@pytest.mark.parametrize("then", ["learned-fuse", "learned-place", "learned-schedule", "learned-optimize"])
def test_a_learned_pass_appended_never_undoes_an_earlier_one(then):
    """learned-optimize, then another learned pass on its result: the second pass starts from the graph's own
    decisions where they beat its baselines, so it is never slower than the graph it is given. Before, a pass
    deciding one part started from the best of its part's baselines with the rest kept, and learned-fuse after
    learned-optimize ended 8% slower (105,912 against 97,768 cycles; 2 chips where fusion pays, DRAM 32 words per
    cycle: a review). Reference: the simulator on the decisions the graph holds after each pass."""
    import copy

    from graphmill.backends.simulator.config import from_dict
    from graphmill.backends.simulator.devices import DEFAULT_PLACEMENT_ACCEL
    from graphmill.passes.learned.passes import apply_decisions, decisions_from_graph, run_learned

    acc = copy.deepcopy(DEFAULT_PLACEMENT_ACCEL)
    acc["memory"]["dram_bw_words"] = 32
    cm = PlacementCostModel(device_set(devices=2, accel=from_dict(acc)))
    g = random_graph(1, "mlp", n=60)
    jp, dec, out, _ = run_learned(g, cm, "learned-optimize")
    apply_decisions(g, jp, dec, out, "learned-optimize")
    given = JointProblem(build_problem(g, cm), cm)
    before = given.evaluate(decisions_from_graph(g, given)).makespan
    assert before == pytest.approx(out.makespan)
    jp2, dec2, out2, stats = run_learned(g, cm, then)
    apply_decisions(g, jp2, dec2, out2, then)
    after = JointProblem(build_problem(g, cm), cm)
    assert after.evaluate(decisions_from_graph(g, after)).makespan == pytest.approx(out2.makespan)
    assert out2.makespan <= before
