"""The learned passes' environment and the fused-group cost (graphmill/passes/learned/env.py,
graphmill/backends/simulator/fusion_cost.py).

References: hand computations on a 4x4-array chip with 8 vector lanes, 4 DRAM words per cycle per stream and
1 KB buffers (word = 1 byte), from the rule in fusion_cost.py's docstring; the placement package's own schedule
(the unfused, graph-ordered case must be the placement report exactly); a schedule worked out by hand for the
priority rule.
"""

from __future__ import annotations

import numpy as np
import pytest

from graphmill.backends.simulator.config import from_dict
from graphmill.backends.simulator.devices import PlacementCostModel, device_set
from graphmill.ir.builder import GraphBuilder
from graphmill.passes.learned import Decisions, JointProblem, OptimizationEnv
from graphmill.passes.learned.baselines import best_baseline, memory_order, schedule_baseline
from graphmill.passes.learned.env import combine
from graphmill.passes.placement import build_problem, place_graph

ACC = {"name": "tiny", "array": {"rows": 4, "cols": 4, "dataflow": "ws"},
       "memory": {"ifmap_kb": 1, "filter_kb": 1, "ofmap_kb": 1, "word_bytes": 1, "dram_bw_words": 4},
       "clock": {"mhz": 1000}, "vector": {"lanes": 8},
       "system": {"chips": 1, "link_bw_bytes_per_cycle": 8, "link_latency_cycles": 10}}


def tiny(devices: int = 2) -> PlacementCostModel:
    return PlacementCostModel(device_set(devices=devices, accel=from_dict(ACC)))


def add_relu():
    b = GraphBuilder("add_relu")
    x = b.input("x", "float32", [1, 256])
    y = b.input("y", "float32", [1, 256])
    b.output(b.Relu(b.Add(x, y)))
    return b.build()


def conv_relu():
    b = GraphBuilder("conv_relu")
    x = b.input("x", "float32", [1, 2, 4, 4])
    b.output(b.Relu(b.Conv(x, np.ones((4, 2, 1, 1), np.float32))))
    return b.build()


def chain(width: int = 600):
    b = GraphBuilder("chain")
    v = b.input("x", "float32", [1, width])
    for op in ("Relu", "Tanh", "Sigmoid"):
        v = getattr(b, op)(v)
    b.output(v)
    return b.build()


def test_two_elementwise_ops_fused_by_hand():
    # Add alone: max(256/8 lanes, 512 read words / 4, 256 written / 4) = 128; Relu alone: max(32, 64, 64) = 64.
    # Fused: compute 32 + 32 = 64, reads x and y only (512 / 4 = 128), writes the Relu's 256 words (64):
    # 128 cycles, the Add's output never leaves the chip (256 bytes on chip).
    g = add_relu()
    cm = tiny()
    assert [cm.op_time(n) for n in g.nodes] == [128.0, 64.0]
    gc = cm.group_cost(list(g.nodes), 0)
    assert gc.fits and gc.time == 128.0
    assert (gc.read_bytes, gc.write_bytes, gc.onchip_bytes, gc.capacity_bytes) == (512, 256, 256, 1024)
    jp = JointProblem(build_problem(g, cm), cm)
    fused = jp.evaluate(Decisions(np.array([0, 1]), np.array([False, True]), np.array([0.0, 1.0])))
    assert fused.makespan == 128.0 and fused.groups == [[0, 1]]
    assert list(fused.device) == [0, 0]  # the fused op follows its producer's device whatever it asked
    unfused = jp.evaluate(Decisions.default(2))
    assert unfused.makespan == 192.0


def test_conv_activation_fused_by_hand():
    # Conv 1x1, 2 -> 4 channels on 4x4 pixels: 128 MACs / 16 PEs = 8 cycles of compute; alone the roofline
    # gives max(8, (32 + 8) / 8, 64 / 4) = 16; Relu alone max(64 / 8, 64 / 4, 64 / 4) = 16. Fused: compute 16,
    # reads 32 + 8 words at 4 + 4 per cycle = 5, writes 64 / 4 = 16: 16 cycles instead of 32.
    g = conv_relu()
    cm = tiny()
    assert [cm.op_time(n) for n in g.nodes] == [16.0, 16.0]
    gc = cm.group_cost(list(g.nodes), 0)
    assert gc.fits and gc.time == 16.0 and gc.read_bytes == 40 and gc.write_bytes == 64 and gc.onchip_bytes == 64


def test_chain_that_overflows_the_buffers_is_refused_with_the_reason():
    # Buffers: (1024 + 1024) / 2 = 1024 words of active halves. Relu+Tanh keeps 600 words on chip (fits);
    # adding Sigmoid needs 1200 (refused); the env keeps [Relu, Tanh] and starts Sigmoid on its own.
    g = chain()
    cm = tiny()
    three = cm.group_cost(list(g.nodes), 0)
    assert not three.fits and three.time == float("inf")
    assert "1,200 bytes" in three.reason and "1,024" in three.reason
    assert cm.group_cost(list(g.nodes)[:2], 0).fits
    env = OptimizationEnv(JointProblem(build_problem(g, cm), cm))
    obs, info = env.reset()
    assert obs["x"].shape[0] == 3 and info["ops"] == 3
    _, reward, terminated, truncated, info = env.step(
        {"device": [0, 0, 0], "fuse": [False, True, True], "priority": [0, 1, 2]})
    assert terminated and not truncated
    assert info["groups"] == 2 and len(info["refused"]) == 1 and "1,200 bytes" in info["refused"][0]
    # Relu: 600 flops / 8 = 75 compute, 600 / 4 = 150 each way -> 150 alone; Tanh and Sigmoid: 4 flops per
    # element (the op registry's cost) -> 300 each. Relu+Tanh fused: compute 75 + 300 = 375 against 150 of
    # traffic each way: 375; Sigmoid alone 300 -> 675 (unfused: 150 + 300 + 300 = 750)
    assert info["makespan"] == 675.0 and reward == pytest.approx(-675.0 / env.reference)
    assert env.reference == 750.0


def test_a_graph_output_read_inside_its_group_still_counts_in_the_peak():
    # Reference: a hand count. x -> Relu (a) -> Tanh (y), a and y graph outputs, 256 float32 each (1,024 bytes). By the
    # placement schedule's memory rule on one device (a value held from its producer's start until its last local
    # reader ends): unfused, x is resident (1,024) and a and y overlap while Tanh runs (2,048): 3,072. Fused into
    # one kernel a is still written out (the group's cost pays it), so the peak is the same 3,072; it was 2,048, a
    # dropped as an intermediate kept on chip (an outside check).
    b = GraphBuilder("two_outputs")
    x = b.input("x", "float32", [1, 256])
    a = b.Relu(x)
    b.output(a)
    b.output(b.Tanh(a))
    g = b.build()
    cm = PlacementCostModel(device_set(devices=1))
    jp = JointProblem(build_problem(g, cm), cm)
    unfused = jp.evaluate(Decisions.default(2))
    fused = jp.evaluate(Decisions(np.zeros(2, np.int64), np.array([False, True]), np.array([0.0, 1.0])))
    assert fused.groups == [[0, 1]] and unfused.groups == [[0], [1]]
    assert unfused.peak.tolist() == [3072.0] and fused.peak.tolist() == [3072.0]


@pytest.mark.parametrize("action, named", [
    ({"device": [0, 0], "priority": [0, 1]}, "fuse is missing"),  # a bare KeyError
    ({"device": [0, 1.7], "fuse": [False, False], "priority": [0, 1]}, "whole number"),  # ran on device 1
    ({"device": [0, 1], "fuse": [False, False], "priority": [0, float("nan")]}, "NaN"),  # ordered nothing
])
def test_a_malformed_action_is_refused_in_one_line(action, named):
    """An outside check drove ``step`` with its own agent. Reference: the documented action (a device index per
    op, a fusion flag, a priority: lower runs first)."""
    from graphmill.ir import UserInputError

    env = OptimizationEnv(JointProblem(build_problem(add_relu(), tiny()), tiny()))
    env.reset()
    with pytest.raises(UserInputError, match=named):
        env.step(action)
    assert env.step({"device": [0, 1.0], "fuse": [False, False], "priority": [0, 1]})[4]["valid"]


def test_backward_ops_are_not_fused():
    from graphmill.passes.placement import training_graph

    tg = training_graph(conv_relu())
    cm = tiny()
    jp = JointProblem(build_problem(tg, cm), cm)
    bw = [i for i, n in enumerate(jp.prob.nodes) if n.domain == "graphmill"]
    members = tuple(sorted(bw[:2]))
    _, why = jp.group_cost(members, 0)
    assert "not a kernel op" in why


def test_unfused_graph_order_is_the_placement_schedule():
    g = chain(64)
    from tests.passes.test_placement import random_dag  # noqa: F401 -- public test helper

    for graph in (random_dag(3, n=30), g):
        cm = tiny(3)
        r = place_graph(graph.copy(), cm, method="heft")
        jp = JointProblem(build_problem(graph, cm), cm)
        pl = np.array([r.report["placement"][name] for name in jp.prob.names])
        out = jp.evaluate(Decisions(pl, np.zeros(jp.n, bool), np.arange(jp.n, dtype=float)))
        assert out.makespan == r.report["makespan"]
        assert out.peak.tolist() == r.report["memory"]["peak"]


def test_priority_orders_ready_ops_by_hand():
    # x -> Relu (a) and x -> Tanh (b) -> Sigmoid (c) on one device, 64 elements: a max(64/8, 64/4, 64/4) = 16
    # cycles, b and c 4 flops per element: 256 / 8 = 32 each. Graph order runs a 0..16, b 16..48, c 48..80; a
    # priority giving a the last place runs b 0..32, c 32..64, a 64..80.
    b = GraphBuilder("fork")
    x = b.input("x", "float32", [1, 64])
    b.output(b.Relu(x))
    b.output(b.Sigmoid(b.Tanh(x)))
    g = b.build()
    cm = tiny(1)
    jp = JointProblem(build_problem(g, cm), cm)
    names = jp.prob.names
    a = names.index(next(n.name for n in g.nodes if n.op_type == "Relu"))
    out = jp.evaluate(Decisions(np.zeros(3, int), np.zeros(3, bool), np.where(np.arange(3) == a, 9.0, 0.0)))
    assert out.start[a] == 64.0 and out.makespan == 80.0
    assert out.order()[0][-1] == a
    assert jp.evaluate(Decisions.default(3)).start[a] == 0.0


def test_order_of_zero_time_ops_is_the_priorities():
    """Two shape-only ops (0 cycles) start at 0 on one device; the priority runs Unsqueeze first. ``order()``
    listed them in the graph's order (ties of start time), so a report's ``order`` contradicted its priorities.
    Reference: the module's rule (the least priority among ready ops runs first), by hand."""
    b = GraphBuilder("zero_time")
    x = b.input("x", "float32", [2, 32])
    b.output(b.Reshape(x, b.const(np.array([4, 16], np.int64))))
    b.output(b.Unsqueeze(x, b.const(np.array([0], np.int64))))
    g = b.build()
    cm = tiny(1)
    jp = JointProblem(build_problem(g, cm), cm)
    assert jp.prob.op_time.max() == 0.0 and [n.op_type for n in jp.prob.nodes] == ["Reshape", "Unsqueeze"]
    out = jp.evaluate(Decisions(np.zeros(2, int), np.zeros(2, bool), np.array([1.0, 0.0])))
    assert out.start.tolist() == [0.0, 0.0] and out.order() == [[1, 0]]
    assert jp.evaluate(Decisions(np.zeros(2, int), np.zeros(2, bool), np.array([0.0, 1.0]))).order() == [[0, 1]]


def test_baselines_memory_order_is_topological_and_best_is_valid():
    from tests.passes.test_placement import random_dag

    g = random_dag(5, n=40)
    cm = tiny(2)
    jp = JointProblem(build_problem(g, cm), cm)
    pos = memory_order(jp)
    assert sorted(pos.tolist()) == list(range(jp.n))
    for i in range(jp.n):
        assert all(pos[p] < pos[i] for p in jp.prob.preds[i])
    assert len(schedule_baseline(jp, "critical-path")) == jp.n
    bb = best_baseline(jp)
    assert bb.outcome.valid and bb.outcome.makespan == min(bb.table.values())
    assert len(bb.table) >= 30  # 5-6 placements (metis needs pymetis) x 2 fusions x 3 schedules


def test_the_baselines_are_simulated_once_per_problem_and_given_out_as_copies(monkeypatch):
    """learned-optimize asked for the 36 combinations twice (its hint, then the best under each order) and for
    every placement baseline at each part step. Now once per problem and seed; a caller changing what it was
    given changes no later answer. Reference: counting the simulations, and a fresh problem's answers."""
    from graphmill.passes.learned.baselines import best_per_schedule, placement_baselines
    from tests.passes.test_placement import random_dag

    g = random_dag(5, n=40)
    cm = tiny(2)
    jp = JointProblem(build_problem(g, cm), cm)
    calls = []
    evaluate = JointProblem.evaluate
    monkeypatch.setattr(JointProblem, "evaluate", lambda self, dec: calls.append(1) or evaluate(self, dec))
    bb = best_baseline(jp)
    first = len(calls)
    assert first == len(bb.table)
    per = best_per_schedule(jp)
    mine = per[bb.name.split("+")[2]]
    assert len(calls) == first and (mine.name, mine.outcome.makespan) == (bb.name, bb.outcome.makespan)  # not rerun
    bb.decisions.priority[:] = bb.decisions.priority[::-1].copy()  # a caller's own copy (an outside review)
    bb.table["mine"] = 0.0
    again = best_baseline(jp)
    assert len(calls) == first and "mine" not in again.table
    assert len(best_baseline(jp, seed=1).table) == len(calls) - first  # another seed is another set
    assert np.array_equal(again.decisions.priority,
                          best_baseline(JointProblem(build_problem(g, cm), cm)).decisions.priority)
    pl = placement_baselines(jp)
    pl["heft"][:] = 0  # a caller's own arrays
    order = schedule_baseline(jp, "memory")
    order[:] = 0
    fresh = JointProblem(build_problem(g, cm), cm)
    assert all(np.array_equal(a, b) for a, b in zip(placement_baselines(jp).values(),
                                                   placement_baselines(fresh).values()))
    assert np.array_equal(schedule_baseline(jp, "memory"), schedule_baseline(fresh, "memory"))


def test_the_fused_feature_is_a_fusion_that_happened_not_one_refused():
    """features.state_features' per-op "fused" column (hint_fuse): whether the op runs in its fusion producer's
    group. The chain above with all three fusions asked keeps [Relu, Tanh] and runs Sigmoid alone (refused: by
    hand, above); the column read the decisions (1 for Sigmoid) and told the policy a fusion that did not happen."""
    from graphmill.passes.learned.features import NUMERIC, OP_VOCAB, node_features, state_features

    cm = tiny()
    jp = JointProblem(build_problem(chain(), cm), cm)
    dec = Decisions(np.zeros(3, np.int64), np.array([False, True, True]), np.arange(3.0))
    out = jp.evaluate(dec)
    assert out.groups == [[0, 1], [2]] and len(out.refused) == 1
    state = state_features(jp, node_features(jp), dec, out)
    assert state["x"][:, len(OP_VOCAB) + NUMERIC.index("hint_fuse")].tolist() == [0, 1, 0]
    # the state's decisions are what ran: the same outcome, under the key a greedy decision of them would have
    ran = state["decisions"]
    assert ran.fuse.tolist() == [False, True, False] and ran.device.tolist() == [0, 0, 0]
    again = jp.evaluate(ran)
    assert again.makespan == out.makespan == 675.0 and again.groups == out.groups
    import torch

    from graphmill.passes.learned.infer import state_key
    from graphmill.passes.learned.policy import GraphPolicy, obs_tensors

    torch.manual_seed(0)  # an untrained policy's greedy decisions are the state itself (README), refused fusion or not
    assert state_key(GraphPolicy().act(obs_tensors(state), greedy=True).decisions) == state_key(ran)


def test_combine_drops_a_kept_fusion_across_the_learned_devices():
    """env.combine: the learned devices with the base's fusions (learned-place after a fusion pass) drop every
    fusion across the resulting devices, as its docstring says. Kept, the fused ops ran on their producer's device
    whatever the policy chose (the env's rule, test above), so a move proposed for them changed nothing simulated."""
    g = chain()
    cm = tiny()
    jp = JointProblem(build_problem(g, cm), cm)
    base = Decisions(np.zeros(3, np.int64), np.array([False, True, False]), np.arange(3.0))
    learned = Decisions(np.array([0, 1, 1]), np.zeros(3, bool), np.arange(3.0))
    both = combine(learned, base, {"place"}, jp)
    assert both.device.tolist() == [0, 1, 1] and both.fuse.tolist() == [False, False, False]
    assert jp.evaluate(both).device.tolist() == [0, 1, 1]
    same = combine(Decisions(np.zeros(3, np.int64), np.zeros(3, bool), np.arange(3.0)), base, {"place"}, jp)
    assert same.fuse.tolist() == [False, True, False]  # a fusion on one device is kept


def test_a_fused_group_takes_its_least_member_priority_by_hand():
    # x -> Relu (a) -> Tanh (b), x -> Sigmoid (c), one device, 64 elements. a+b fused: compute 64/8 + 256/8 = 40,
    # reads x (64 / 4 = 16), writes b (16): 40 cycles; c alone 256/8 = 32. Priorities a 0, b 9, c 5: the group
    # takes 0 (its least) and runs 0..40, then c 40..72; had it taken b's 9, c would run first (0..32).
    b = GraphBuilder("fused_prio")
    x = b.input("x", "float32", [1, 64])
    b.output(b.Tanh(b.Relu(x)))
    b.output(b.Sigmoid(x))
    g = b.build()
    cm = tiny(1)
    jp = JointProblem(build_problem(g, cm), cm)
    ops = {n.op_type: i for i, n in enumerate(jp.prob.nodes)}
    fuse = np.zeros(3, bool)
    fuse[ops["Tanh"]] = True
    prio = np.zeros(3)
    prio[ops["Tanh"]], prio[ops["Sigmoid"]] = 9.0, 5.0
    out = jp.evaluate(Decisions(np.zeros(3, int), fuse, prio))
    assert sorted(map(sorted, out.groups)) == sorted([sorted([ops["Relu"], ops["Tanh"]]), [ops["Sigmoid"]]])
    assert out.start[ops["Relu"]] == 0.0 and out.finish[ops["Tanh"]] == 40.0
    assert out.start[ops["Sigmoid"]] == 40.0 and out.makespan == 72.0


def test_ops_without_primitives_stay_free_in_a_group():
    """Shape-only and layout ops cost 0 cycles alone; in a group they paid its boundary like any op, so a group of
    them cost up to 1,154 cycles where its members cost 0, and the greedy fusion baseline and the learned passes
    kept such groups (an outside check on a torch-exported encoder). Reference: hand computations on the tiny chip
    (fusion_cost.py's rule)."""
    b = GraphBuilder("views")
    x = b.input("x", "float32", [1, 256])
    t = b.Reshape(x, np.array([16, 16], np.int64))
    t = b.Transpose(t, perm=[1, 0])
    r = b.Relu(t)                                   # Relu alone: max(256 / 8, 256 / 4, 256 / 4) = 64
    h = b.Slice(r, np.array([0], np.int64), np.array([8], np.int64), np.array([0], np.int64))
    b.output(b.Reshape(h, np.array([128], np.int64)))
    g = b.build()
    cm = tiny()
    nodes = list(g.nodes)
    assert [n.op_type for n in nodes] == ["Reshape", "Transpose", "Relu", "Slice", "Reshape"]
    assert [cm.op_time(n) for n in nodes] == [0.0, 0.0, 64.0, 0.0, 0.0]
    views = cm.group_cost(nodes[:2], 0)  # free alone, free together: nothing read, nothing written
    assert views.fits and views.time == 0.0 and (views.read_bytes, views.write_bytes, views.onchip_bytes) == (0, 0, 0)
    # Reshape -> Transpose -> Relu: the Relu reads x's 256 words through the views (as it reads the view alone),
    # writes its 256: 64 cycles, the Relu's own time
    head = cm.group_cost(nodes[:3], 0)
    assert head.time == 64.0 and (head.read_bytes, head.write_bytes, head.onchip_bytes) == (256, 256, 0)
    # Relu -> Slice -> Reshape, the last read outside: the kernel writes what leaves it, the slice's 128 words
    # (unfused, the Relu writes its 256 and the Slice is free); the time is the read's, 64
    tail = cm.group_cost(nodes[2:], 0)
    assert tail.time == 64.0 and (tail.read_bytes, tail.write_bytes, tail.onchip_bytes) == (256, 128, 0)
    # all five: no op other than the Relu moves data
    every = cm.group_cost(nodes, 0)
    assert every.time == 64.0 and (every.read_bytes, every.write_bytes) == (256, 128)
    jp = JointProblem(build_problem(g, cm), cm)
    fused = jp.evaluate(Decisions(np.zeros(5, int), np.array([False, True, True, True, True]), np.arange(5.0)))
    assert fused.groups == [[0, 1, 2, 3, 4]] and fused.makespan == 64.0 == jp.evaluate(Decisions.default(5)).makespan


def test_a_view_of_an_outside_tensor_is_read_at_its_own_size():
    # Slice of a graph input read by a Relu in the group: the slice's 128 words (as the Relu alone reads them), not
    # the input's 256; Concat of an intermediate and an outside tensor: the outside one's 128 words only.
    b = GraphBuilder("slice_concat")
    x = b.input("x", "float32", [1, 256])
    y = b.input("y", "float32", [1, 128])
    s = b.Slice(x, np.array([0], np.int64), np.array([128], np.int64), np.array([1], np.int64))
    r = b.Relu(s)
    c = b.Concat(r, y, axis=1)
    b.output(b.Tanh(c))
    g = b.build()
    cm = tiny()
    nodes = list(g.nodes)
    assert [n.op_type for n in nodes] == ["Slice", "Relu", "Concat", "Tanh"]
    gc = cm.group_cost(nodes, 0)
    # reads 128 (slice) + 128 (y); writes Tanh's 256; on chip the Relu's 128; compute 128/8 + 256*4/8 = 144
    assert (gc.read_bytes, gc.write_bytes, gc.onchip_bytes) == (256, 256, 128)
    assert gc.time == 144.0


@pytest.mark.parametrize("name, kw", [("bert", {}), ("vit", {}), ("nmt", {}),
                                      ("resnet18", {"width": 0.25, "resolution": 32}),
                                      ("mobilenet_v2", {"width": 0.25, "resolution": 32})])
def test_no_fusion_group_of_a_zoo_model_costs_more_than_its_members(name, kw):
    """Under the roofline, one kernel moves at most what its members move apart, so a group may never cost more
    than its members unfused. BERT's embedding Gather + Add cost 45,832 cycles fused against 384 (the whole table
    read at the group's boundary), ViT's Shape/Concat/Expand and the NMT's Unsqueeze/Concat 590 and 2,561 against
    0 (free ops paying the boundary), a strided 1x1 Conv + Relu 130 against 128 (its whole input read, where it
    samples a quarter). Checked on every greedy group, every prefix of one (a connected group too), and every
    producer-consumer pair. Reference: the members' own op times, the roofline's per-op rule."""
    from graphmill.frontend import zoo
    from graphmill.ir.summary import bind_symbols
    from graphmill.passes.learned.baselines import fusion_baseline

    g = zoo.build(name, **kw)
    symbols = {d for v in g.inputs for d in (v.type.shape or []) if isinstance(d, str)}
    g = bind_symbols(g, {s: 2 if s == "N" else 16 for s in symbols})
    cm = PlacementCostModel(device_set(devices=1))
    jp = JointProblem(build_problem(g, cm), cm)
    at = np.zeros(jp.n, int)
    _, _, groups, _, _ = jp.resolve(Decisions(at, fusion_baseline(jp, "greedy", at), np.arange(jp.n, dtype=float)))
    candidates = {tuple(members[:k]) for members in groups for k in range(2, len(members) + 1)}
    candidates |= {(int(p), i) for i, p in enumerate(jp.fuse_producer) if p >= 0}
    assert len(candidates) >= 10
    worse = []
    for members in sorted(candidates):
        gc = cm.group_cost([jp.prob.nodes[i] for i in members], 0)
        apart = sum(jp.prob.op_time[i][0] for i in members)
        if gc.fits and gc.time > apart:
            worse.append(([jp.prob.nodes[i].op_type for i in members], gc.time, apart))
    assert not worse, worse[:3]


def test_a_gather_in_a_group_reads_the_rows_it_gathers_not_its_table():
    # Gather of 4 rows of a 64 x 16 table, + a bias: alone the Gather reads its 64 output words + 4 indices
    # (lowering.py), the Add 64 + 64; fused, the table stays where it is: reads 68 + 64 = 132 words at 4 per
    # cycle = 33, writes 64 / 4 = 16, compute 64/8 + 64/8 = 16 -> 33 cycles (the table read whole: 1,024 + ...).
    b = GraphBuilder("embedding")
    ids = b.input("ids", "int64", [4])
    e = b.Gather(np.ones((64, 16), np.float32), ids)
    b.output(b.Add(e, np.zeros((4, 16), np.float32)))
    g = b.build()
    cm = tiny()
    nodes = list(g.nodes)
    gc = cm.group_cost(nodes, 0)
    assert gc.read_bytes == 132 and gc.write_bytes == 64 and gc.time == 33.0
    assert gc.time <= sum(cm.op_time(n) for n in nodes)


def test_a_group_ending_in_a_gather_costs_its_cycles_not_a_fraction_of_them():
    """kernel_cost's read fraction of a member (a Gather reads its rows, not its table) reused the name of its
    `scale` parameter, which converts the group's cycles: a group whose last member was a Gather cost its cycles
    times that fraction (0.13 cycles for a Gather the roofline times at 33; found reading the change). Reference:
    the roofline's time of the op alone, and by hand: 4 rows of a 64 x 16 table read 64 + 4 words at 4 per
    cycle = 17, written 64 / 4 = 16, computed 64 / 8 = 8 -> 17 cycles."""
    b = GraphBuilder("embedding_last")
    ids = b.input("ids", "int64", [4])
    e = b.Gather(np.ones((64, 16), np.float32), b.Relu(ids))
    b.output(e)
    g = b.build()
    cm = tiny()
    relu, gather = g.nodes
    assert cm.group_cost([gather], 0).time == cm.op_time(gather) == 17.0
    assert cm.group_cost([relu, gather], 0).time == cm.group_cost([gather, relu], 0).time >= 17.0


def test_a_tensor_read_by_a_gather_and_another_member_is_read_whole_in_any_order():
    # a 64 x 16 table read by a Gather (4 rows) and by a ReduceSum (all of it): the group reads the table once, at
    # the most a member needs (1,024 words) plus the indices, whichever member comes first (the Gather's 4 rows
    # alone were charged when it came first: an outside check)
    b = GraphBuilder("tied")
    t = b.input("t", "float32", [64, 16])
    ids = b.input("ids", "int64", [4])
    e = b.Gather(t, ids)
    r = b.ReduceSum(t, np.array([0], np.int64), keepdims=1)
    b.output(b.Add(e, r))
    g = b.build()
    cm = tiny()
    gather, reduce_, add = g.nodes
    first = cm.group_cost([gather, reduce_, add], 0)
    second = cm.group_cost([reduce_, gather, add], 0)
    assert (first.time, first.read_bytes) == (second.time, second.read_bytes)
    assert first.read_bytes >= 64 * 16
    assert first.time <= sum(cm.op_time(n) for n in g.nodes)


def test_two_views_of_one_intermediate_read_outside_write_it_once():
    # Relu -> Transpose and Relu -> Reshape, both read outside: the Relu's 256 words are written once (twice, 512,
    # made the group cost 128 against 64 apart: an outside check)
    b = GraphBuilder("two_views")
    r = b.Relu(b.input("x", "float32", [16, 16]))
    b.output(b.Transpose(r, perm=[1, 0]))
    b.output(b.Reshape(r, np.array([256], np.int64)))
    g = b.build()
    cm = tiny()
    gc = cm.group_cost(list(g.nodes), 0)
    assert gc.write_bytes == 256 and gc.time == 64.0 == sum(cm.op_time(n) for n in g.nodes)


def test_a_long_chain_of_views_in_a_group_costs_what_its_one_real_op_costs():
    # 3,000 Identity ops (free) then a Relu: the views are followed without recursion (Python's limit is 1,000)
    b = GraphBuilder("views")
    v = b.input("x", "float32", [1, 256])
    for _ in range(3000):
        v = b.Identity(v)
    b.output(b.Relu(v))
    g = b.build()
    cm = tiny()
    nodes = list(g.nodes)
    gc = cm.group_cost(nodes, 0)
    assert gc.time == cm.op_time(nodes[-1]) == 64.0 and (gc.read_bytes, gc.write_bytes) == (256, 256)


def test_a_tensor_read_only_through_shape_is_neither_kept_nor_read():
    """Add(Expand(y, Shape(h)), z) in a group with h's producer: Shape reads h's shape, not its data, but h counted
    as an intermediate kept on chip, so a group that fits was refused (left alone in earlier notes). Reference:
    hand computations on the tiny chip (fusion_cost.py's rule; 1,024 words of active buffer halves)."""
    b = GraphBuilder("shape_of")
    x = b.input("x", "float32", [1, 1100])
    y = b.input("y", "float32", [1, 1])
    z = b.input("z", "float32", [1, 1100])
    h = b.Relu(x)                                   # 1,100 words: more than the 1,024 the buffers hold
    b.output(b.Add(b.Expand(y, b.Shape(h)), z))
    g = b.build()
    cm = tiny()
    nodes = list(g.nodes)
    assert [n.op_type for n in nodes] == ["Relu", "Shape", "Expand", "Add"]
    gc = cm.group_cost(nodes, 0)
    # reads x (1,100), y through the Expand (1) and z (1,100); writes the Add's 1,100; keeps nothing on chip: h is
    # computed and dropped, the shape is host-side (free alone, as the simulator counts all shape arithmetic).
    # Compute: ceil(1,100 / 8) = 138 for the Relu and for the Add; traffic ceil(2,201 / 4) = 551 read,
    # 1,100 / 4 = 275 written: 551 cycles
    assert gc.fits, gc.reason
    assert (gc.read_bytes, gc.write_bytes, gc.onchip_bytes) == (2201, 1100, 0)
    assert gc.time == 551.0
    # Shape or Size read outside the group, through a view: host-side, written at no words (free alone too), and
    # never at the tensor it measures; a Shape of an outside tensor reads none of it
    for measure in ("Shape", "Size"):
        b = GraphBuilder("measured_outside")
        x = b.input("x", "float32", [1, 1100])
        r = b.Relu(x)
        b.output(r)
        b.output(b.Reshape(getattr(b, measure)(r), np.array([-1], np.int64)))
        g = b.build()
        group = [n for n in g.nodes if n.op_type in ("Relu", measure, "Reshape")]
        assert [cm.op_time(n) for n in group][1:] == [0.0, 0.0]
        out = cm.group_cost(group, 0)
        assert out.fits and (out.read_bytes, out.write_bytes, out.onchip_bytes) == (1100, 1100, 0), measure
    b = GraphBuilder("shape_of_outside")
    x = b.input("x", "float32", [1, 1100])
    y = b.input("y", "float32", [1, 1])
    b.output(b.Relu(b.Expand(y, b.Shape(x))))
    g = b.build()
    out = cm.group_cost(list(g.nodes), 0)
    # the Relu reads y through the Expand (1 word), not x; writes its 1,100
    assert out.fits and (out.read_bytes, out.write_bytes, out.onchip_bytes) == (1, 1100, 0)


def test_groups_grown_op_by_op_count_the_boundary_by_the_rule():
    """Reference: the rule of fusion_cost's docstring, computed here from the graph alone for groups of ops that
    all have primitives (random MLP-mix DAGs: MatMul, Add, Mul, Relu, Tanh, Sigmoid, Softmax): DRAM reads are
    the distinct tensors members read that no member makes, writes the members' outputs read outside the group
    or graph outputs, on-chip the members' outputs read inside it, and the group fits when those fit in half
    the activation buffers. Every prefix of every group is checked as the builder grows it (the learned passes'
    path) and as ``group_cost`` of the whole list, given in reverse (any order gives the same answer)."""
    from graphmill.search.learned import random_graph

    acc = {**ACC, "memory": {**ACC["memory"], "ifmap_kb": 48, "ofmap_kb": 48}}
    cm = PlacementCostModel(device_set(devices=1, accel=from_dict(acc)))
    capacity = (48 + 48) * 1024 // 2  # words (one byte each): the active halves of ifmap + ofmap

    def words(v):
        return int(np.prod(v.shape))

    rng = np.random.default_rng(0)
    checked = refused = 0
    for seed in range(3):
        g = random_graph(seed, "mlp", 40, batch=2)
        nodes = list(g.nodes)
        for _ in range(6):
            start = int(rng.integers(0, len(nodes) - 12))
            group = sorted(rng.choice(np.arange(start, start + 12), 8, replace=False))
            builder = cm.group_builder(0)
            members: list = []
            for k in group:
                grown = builder.try_add(nodes[k])
                builder.accept()
                members.append(nodes[k])
                if len(members) < 2:
                    continue  # one op alone is its op time, not a kernel
                ids = {id(n) for n in members}
                read = {id(v): words(v) for n in members for v in n.inputs
                        if v is not None and (v.producer is None or id(v.producer) not in ids)}
                made = [v for n in members for v in n.outputs]
                write = sum(words(v) for v in made if v.is_graph_output or any(id(u) not in ids for u in v.users))
                onchip = sum(words(v) for v in made if any(id(u) in ids for u in v.users))
                expected = (sum(read.values()), write, onchip, onchip <= capacity)
                whole = cm.group_cost(members[::-1], 0)
                for got in (grown, whole):
                    assert (got.read_bytes, got.write_bytes, got.onchip_bytes, got.fits) == expected
                checked += 1
                refused += onchip > capacity
    assert checked == 3 * 6 * 7 and 0 < refused < checked


def test_resolve_costs_each_op_of_a_fused_chain_once_not_each_prefix_anew():
    """A fused chain of L ops was costed prefix by prefix, each from scratch: L^2 / 2 node visits (a 5,000-op
    chain took 78 s to place). Reference: the count of ops the cost model is handed, which must stay linear."""
    b = GraphBuilder("long_chain")
    v = b.input("x", "float32", [1, 64])
    for _ in range(400):
        v = b.Relu(v)
    b.output(v)
    g = b.build()
    cm = tiny(1)
    handed = []

    class Counting:  # the cost model, counting the ops each call is handed
        def __getattr__(self, name):
            return getattr(cm, name)

        def group_cost(self, nodes, device=0):
            handed.append(len(nodes))
            return cm.group_cost(nodes, device)

        def group_builder(self, device=0):
            builder = cm.group_builder(device)
            try_add = builder.try_add

            def counted(node):
                handed.append(1)
                return try_add(node)
            builder.try_add = counted
            return builder

    jp = JointProblem(build_problem(g, cm), Counting())
    assert jp.n == 400
    out = jp.evaluate(Decisions(np.zeros(400, np.int64), np.ones(400, bool), np.arange(400.0)))
    assert len(out.groups) < 400  # it fused
    assert sum(handed) <= 2 * 400, sum(handed)
    jp.evaluate(Decisions(np.zeros(400, np.int64), np.ones(400, bool), np.arange(400.0)))  # answered from the cache
    assert sum(handed) <= 2 * 400, sum(handed)


def test_a_view_that_needs_its_tensor_whole_counts_it_whole_however_the_group_is_listed():
    """Hand computation: Relu makes T (4 x 64 = 256 words); Reshape(Identity(T)) is a graph output (all of T
    leaves the chip) and Slice(T)[:4 words per row] another (16 words). T must be written whole: 256 bytes, in
    every listing of the group. Counting views in the order met, the Slice first wrote its 16 words as T's one
    write and the answer was 16 or 256 by listing (a review)."""
    b = GraphBuilder("views")
    x = b.input("x", "float32", [4, 64])
    t = b.Relu(x)
    b.output(b.Reshape(b.Identity(t), np.array([-1], np.int64)))
    b.output(b.Slice(t, np.array([0], np.int64), np.array([4], np.int64), np.array([1], np.int64)))
    relu, identity, reshape, slice_ = b.build().nodes
    cm = tiny(1)
    for order in ([relu, identity, reshape, slice_], [relu, slice_, identity, reshape],
                  [slice_, reshape, identity, relu]):
        gc = cm.group_cost(order, 0)
        assert (gc.read_bytes, gc.write_bytes, gc.onchip_bytes) == (256, 256, 0), [n.op_type for n in order]
