"""pipeline-partition: optimality, contiguity, skip connections, memory model and cap, bad input.

References: an independent brute force over every set of cut points (written here from the graph's edges,
not from the pass's helpers) for optimality; hand computations for the memory model and the transfers of a
skip connection; torchgpipe's own tests of its block partition (tests/test_balance.py:
``solve([1, 2, 3, 4, 5, 6], 2) == [[1, 2, 3, 4], [5, 6]]``, ``solve([0, 0], 2) == [[0], [0]]``).
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from graphmill.ir import UserInputError
from graphmill.ir.builder import GraphBuilder
from graphmill.passes import PassContext, run_passes
from graphmill.passes.pipeline import PipelinePartition, block_partition, equal_split, partition_graph

BW, LAT = 4.0, 10.0
F32 = 4


class TableCost:
    """Times from a table (by node name); transfers latency + bytes / bandwidth."""

    units = "cycles"

    def __init__(self, fwd: dict[str, float], bwd: dict[str, float] | None = None) -> None:
        self.fwd, self.bwd = fwd, bwd
        if bwd is not None:
            self.backward_time = lambda node, device=0: self.bwd[node.name]

    def op_time(self, node, device=0):
        return self.fwd[node.name]

    def transfer_time(self, nbytes, src, dst):
        return 0.0 if src == dst or nbytes <= 0 else LAT + nbytes / BW

    def memory(self, node):
        return 0


def random_dag(seed: int, n: int, tied: bool = False):
    """A random DAG of n compute nodes on [N, w] tensors: Relu, Add (skip connections), MatMul with weights
    (``tied``: every MatMul reads one weight, as tied embeddings do; each stage holding one keeps a copy)."""
    rng = random.Random(seed)
    b = GraphBuilder(f"dag{seed}")
    vals = [b.input("x", "float32", ["N", 4])]
    shared = b.const(np.full((4, 4), 0.1, np.float32), name="w_tied") if tied else None
    for i in range(n):
        kind = rng.choice(["relu", "add", "matmul", "add"])
        a = vals[rng.randrange(len(vals))]
        if kind == "relu" or (kind == "add" and len(vals) < 2):
            v = b.Relu(a, name=f"n{i}")
        elif kind == "add":
            c = vals[rng.randrange(len(vals))]
            v = b.Add(a, c, name=f"n{i}")
        else:
            v = b.MatMul(a, shared if tied else np.full((4, 4), 0.1, np.float32), name=f"n{i}")
        vals.append(v)
    b.output(vals[-1], name="y")
    if n > 3:
        b.output(vals[2], name="aux")  # a graph output produced early: it crosses every later cut
    g = b.build()
    fwd = {f"n{i}": float(rng.randint(1, 40)) for i in range(n)}
    bwd = {f"n{i}": float(rng.randint(0, 60)) for i in range(n)}
    return g, fwd, bwd


def brute_force(g, fwd, bwd, k, m, batch, cap=0.0, objective="time", schedule="gpipe"):
    """Every choice of k-1 cut points of the graph's order; stage cost and memory computed from the edges
    (``schedule``: GPipe holds all m micro-batches' stage inputs, 1F1B min(k - s, m) on stage s)."""
    nodes = list(g.nodes)
    n = len(nodes)
    micro = batch // m
    pos = {id(x): i for i, x in enumerate(nodes)}

    def nbytes(v):
        return micro * v.type.shape[1] * F32

    def crossing(cut):  # values produced before position `cut` and read at or after it (or a graph output)
        total = 0
        cands = [(-1, v) for v in g.inputs] + [(i, o) for i, x in enumerate(nodes) for o in x.outputs]
        for p, v in cands:
            if p >= cut:
                continue
            later = any(pos[id(u)] >= cut for u in v.users) or any(v is o for o in g.outputs)
            if later:
                total += nbytes(v)
        return total

    def link(cut):  # the link after the stage ending at `cut`: each direction LAT + bytes / BW
        return LAT + crossing(cut) / BW

    def stage(i, j, s):
        # the chip's work (re-materialized, the default: the backward recomputes the forward) against the link
        # after the stage (each direction LAT + bytes / BW), whichever is slower: both run at once
        t = sum(2 * fwd[x.name] + bwd[x.name] for x in nodes[i:j])
        if j < n:
            t = max(t, link(j))
        consts = {id(v): v for x in nodes[i:j] for v in x.inputs if v is not None and v.const is not None}
        weights = sum(int(np.prod(v.const.shape)) * F32 for v in consts.values())
        inputs = micro * 4 * F32 if i == 0 else crossing(i)
        internal = sum(nbytes(o) for x in nodes[i:j] for o in x.outputs)
        held = m if schedule == "gpipe" else min(k - s, m)
        memory = 4 * weights + held * inputs + internal  # adam: weights + gradients + 2 moments; re-materialized
        return t, memory

    best = None
    for cuts in itertools.combinations(range(1, n), k - 1):
        ends = list(cuts) + [n]
        starts = [0] + list(cuts)
        st = [stage(i, j, s) for s, (i, j) in enumerate(zip(starts, ends))]
        if cap and any(mem > cap for _, mem in st):
            continue
        value = max(t for t, _ in st) if objective == "time" else max(mem for _, mem in st)
        if best is None or value < best:
            best = value
    stage.link = link
    return best, stage


@pytest.mark.parametrize("seed", range(12))
def test_optimal_matches_brute_force(seed):
    n = 7 + seed % 4
    k = 2 + seed % 3
    g, fwd, bwd = random_dag(seed, n)
    plan = partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=2, batch=4)
    best, stage = brute_force(g, fwd, bwd, k, 2, 4)
    assert plan["bottleneck"] == pytest.approx(best, rel=1e-12)
    # the reported stages, re-costed independently, give the reported times and memory
    start = 0
    for st in plan["stages"]:
        j = start + len(st["nodes"])
        t, mem = stage(start, j, st["index"])
        assert st["time"] == pytest.approx(t, rel=1e-12)
        assert st["memory"] == mem
        start = j


@pytest.mark.parametrize("seed", range(10))
def test_optimal_breaks_bottleneck_ties_by_least_link_time(seed):
    """One heavy node sets the bottleneck and leaves every other cut free: the earliest split points among the
    tied partitions sent the most bytes, and the pipeline's fill and drain cross every cut (an outside check:
    MobileNetV2's simulated GPipe step 1.075x torchgpipe's balance). Reference: the brute force over every set
    of cut points, each cut's link time computed from the graph's edges (LAT + bytes / BW): of the partitions
    reaching the least bottleneck, the least summed link time (objective memory: the least memory, then the
    least bottleneck, then that)."""
    n, k = 10, 3 + seed % 2
    g, fwd, bwd = random_dag(400 + seed, n)
    heavy = "n0" if seed % 2 else f"n{n - 1}"  # alone in the first or the last stage; the other cuts free
    fwd[heavy], bwd[heavy] = 500.0, 900.0
    _, stage = brute_force(g, fwd, bwd, k, 2, 4)
    rows = []
    for cuts in itertools.combinations(range(1, n), k - 1):
        starts, ends = [0, *cuts], [*cuts, n]
        st = [stage(i, j, s) for s, (i, j) in enumerate(zip(starts, ends))]
        rows.append((max(t for t, _ in st), max(m for _, m in st), sum(stage.link(j) for j in cuts)))
    plan = partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=2, batch=4)
    tied = [r for r in rows if r[0] == pytest.approx(plan["bottleneck"], rel=1e-12)]
    assert plan["bottleneck"] == pytest.approx(min(r[0] for r in rows), rel=1e-12)
    assert len(tied) > 1  # the case this test is about: several partitions share the bottleneck
    got = sum(st["transfer"] for st in plan["stages"][:-1])
    assert got == pytest.approx(min(r[2] for r in tied), rel=1e-12)
    plan_m = partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=2, batch=4, objective="memory")
    least = min(r[1] for r in rows)
    tied_m = [r for r in rows if r[1] == least]
    assert max(st["memory"] for st in plan_m["stages"]) == least
    assert plan_m["bottleneck"] == pytest.approx(min(r[0] for r in tied_m), rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_optimal_under_memory_cap_matches_brute_force(seed):
    g, fwd, bwd = random_dag(100 + seed, 9)
    k = 3
    free, _ = brute_force(g, fwd, bwd, k, 2, 4, objective="memory")
    cap = free * 1.15  # tight: some partitions are out
    plan = partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=2, batch=4, memory_cap=cap)
    best, _ = brute_force(g, fwd, bwd, k, 2, 4, cap=cap)
    assert plan["bottleneck"] == pytest.approx(best, rel=1e-12)
    assert max(st["memory"] for st in plan["stages"]) <= cap
    # the memory objective finds the least-memory partition
    plan_m = partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=2, batch=4, objective="memory")
    assert max(st["memory"] for st in plan_m["stages"]) == free


@pytest.mark.parametrize("seed", range(8))
def test_tied_weights_memory_objective_and_cap_match_brute_force(seed):
    """One weight read by every MatMul: the planner counted it at its first reader only, so a later stage reading
    it looked lighter than it is; `--objective memory` then missed the least-memory partition and a cap that
    a partition meets was refused (an outside check, on a torch model using one Linear twice). Reference: the
    brute force above, which counts every constant a stage reads."""
    g, fwd, bwd = random_dag(201 + seed, 11, tied=True)
    assert sum(1 for x in g.nodes if x.op_type == "MatMul") >= 2
    k = 2 + seed % 2
    free, _ = brute_force(g, fwd, bwd, k, 2, 4, objective="memory")
    plan_m = partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=2, batch=4, objective="memory")
    assert max(st["memory"] for st in plan_m["stages"]) == free
    cap = free * 1.05
    plan = partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=2, batch=4, memory_cap=cap)
    best, _ = brute_force(g, fwd, bwd, k, 2, 4, cap=cap)
    assert plan["bottleneck"] == pytest.approx(best, rel=1e-12)
    assert max(st["memory"] for st in plan["stages"]) <= cap
    plan = partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=2, batch=4, memory_cap=free)
    assert max(st["memory"] for st in plan["stages"]) == free  # the least-memory partition meets a cap of its own


@pytest.mark.parametrize("seed", range(6))
def test_1f1b_memory_objective_and_cap_match_brute_force_and_the_simulated_peak(seed):
    """Under 1F1B stage s holds at most min(K - s, M) micro-batches, not GPipe's M: the cap and the memory
    objective used GPipe's figure whatever the schedule, so a 1F1B partition that fit was refused (an outside
    check: `--schedule 1f1b --memory-cap 3MB` refused a cut whose simulated peaks were all under 3 MB).
    References: the brute force above with 1F1B's count, and the simulated schedule's peak memory."""
    g, fwd, bwd = random_dag(300 + seed, 10)
    k, m = 3, 4
    free, _ = brute_force(g, fwd, bwd, k, m, 8, objective="memory", schedule="1f1b")
    gpipe_free, _ = brute_force(g, fwd, bwd, k, m, 8, objective="memory")
    assert free < gpipe_free
    plan_m = partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=m, batch=8, objective="memory",
                             schedule="1f1b")
    assert max(st["memory"] for st in plan_m["stages"]) == free
    plan = partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=m, batch=8, memory_cap=free,
                           schedule="1f1b")  # under GPipe's figure nothing fits this cap
    best, stage = brute_force(g, fwd, bwd, k, m, 8, cap=free, schedule="1f1b")
    assert plan["bottleneck"] == pytest.approx(best, rel=1e-12)
    with pytest.raises(UserInputError, match="no partition into 3 stages fits"):
        partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=m, batch=8, memory_cap=free)
    start = 0
    for st in plan["stages"]:
        j = start + len(st["nodes"])
        assert st["memory"] == stage(start, j, st["index"])[1] <= free
        start = j
    from graphmill.backends.simulator.pipeline import simulate_pipeline

    sim = simulate_pipeline(plan, TableCost(fwd, bwd), schedule="1f1b")
    assert sim.peak_memory == [st["memory"] for st in plan["stages"]] and plan["schedule"] == "1f1b"
    for schedule in ("gpipe", "1f1b"):  # without re-materialization too
        plain = partition_graph(g, TableCost(fwd, bwd), stages=k, microbatches=m, batch=8, schedule=schedule,
                                remat=False)
        sim = simulate_pipeline(plain, TableCost(fwd, bwd), schedule=schedule)
        assert sim.peak_memory == [st["memory"] for st in plain["stages"]], schedule


def test_memory_cap_nothing_fits_names_stage_and_excess():
    g, fwd, bwd = random_dag(7, 8)
    free, _ = brute_force(g, fwd, bwd, 2, 2, 4, objective="memory")
    with pytest.raises(UserInputError) as e:
        partition_graph(g, TableCost(fwd, bwd), stages=2, microbatches=2, batch=4, memory_cap=free - 1)
    msg = str(e.value)
    assert "\n" not in msg and "no partition into 2 stages fits the memory cap" in msg and "stage" in msg
    assert "1 B over" in msg  # the least-memory partition exceeds the cap by exactly one byte
    # a balanced method over the cap: the stage and the excess are named too
    with pytest.raises(UserInputError, match=r"stage \d of the equal-layers partition needs .* over the memory cap"):
        partition_graph(g, TableCost(fwd, bwd), stages=2, microbatches=2, batch=4, memory_cap=free - 1,
                        method="equal-layers")


def mlp(batch="N", skip=False):
    b = GraphBuilder("mlp")
    x = b.input("x", "float32", [batch, 8])
    h1 = b.Relu(b.MatMul(x, np.ones((8, 16), np.float32), name="mm1"), name="r1")
    h2 = b.Relu(b.MatMul(h1, np.ones((16, 16), np.float32), name="mm2"), name="r2")
    h3 = b.MatMul(h2, np.ones((16, 16), np.float32), name="mm3")
    if skip:
        h3 = b.Add(h3, h1, name="skip")
    b.output(b.MatMul(h3, np.ones((16, 4), np.float32), name="mm4"), name="y")
    return b.build()


def test_contiguous_topological_and_edges_respected():
    g = mlp(skip=True)
    fwd = {n.name: 5.0 for n in g.nodes}
    plan = partition_graph(g, TableCost(fwd), stages=3, microbatches=2, batch=8)
    stage = {n.name: n.meta["stage"] for n in g.nodes}
    order = [name for st in plan["stages"] for name in st["nodes"]]
    assert sorted(order) == sorted(n.name for n in g.nodes)
    seen = set()
    byname = {n.name: n for n in g.nodes}
    for name in order:  # the concatenated lists are a topological order
        for v in byname[name].inputs:
            assert v.producer is None or v.producer.name in seen
        seen.add(name)
    for n in g.nodes:  # a later stage never feeds an earlier one
        for v in n.inputs:
            if v.producer is not None:
                assert stage[v.producer.name] <= stage[n.name]
    assert [st["index"] for st in plan["stages"]] == [0, 1, 2]
    assert all(st["nodes"] for st in plan["stages"])
    assert g.meta["pipeline"]["stages"][0]["nodes"] == plan["stages"][0]["nodes"]


def test_skip_connection_counted_on_every_cut_it_crosses():
    # equal-layers: 7 compute nodes in 3 stages of 3, 2, 2
    g = mlp(skip=True)
    names = [n.name for n in g.nodes]
    assert names == ["mm1", "r1", "mm2", "r2", "mm3", "skip", "mm4"]
    fwd = {n: 1.0 for n in names}
    plan = partition_graph(g, TableCost(fwd), stages=3, microbatches=1, batch=2, method="equal-layers")
    assert [st["nodes"] for st in plan["stages"]] == [["mm1", "r1", "mm2"], ["r2", "mm3"], ["skip", "mm4"]]
    # hand computation, micro-batch of 2 float32 rows: cut 1 carries mm2's output [2,16] and r1's [2,16]
    # (read by skip, two stages later); cut 2 carries mm3's [2,16] and r1's again
    assert [st["send_bytes"] for st in plan["stages"]] == [2 * 2 * 16 * 4, 2 * 2 * 16 * 4, 0]
    assert plan["stages"][0]["transfer"] == LAT + 256 / BW  # one way; the gradients have the other link


def test_optimal_is_the_fastest_simulated_split_of_a_chain_with_a_slow_link():
    """8 equal nodes (forward 10, backward 20: 40 a node re-materialized) into 2 stages, a link of 100 + 8 cycles
    a way. Charging the sending stage twice the transfer over forward + backward, as the rule was, gave stage 0
    one node and stage 1 seven (max(30 + 216, 210) = 246): the slowest simulated step of every split, where the
    link works beside the chips. Reference: the simulated step (backends/simulator/pipeline.py, GPipe and 1F1B)
    of every split."""
    from graphmill.backends.simulator.pipeline import simulate_pipeline

    class SlowLink(TableCost):
        def transfer_time(self, nbytes, src, dst):
            return 0.0 if src == dst or nbytes <= 0 else 100.0 + nbytes / BW

    b = GraphBuilder("chain")
    v = b.input("x", "float32", ["N", 4])
    for i in range(8):
        v = b.Relu(v, name=f"n{i}")
    b.output(v, name="y")
    g = b.build()
    cost = SlowLink({f"n{i}": 10.0 for i in range(8)}, {f"n{i}": 20.0 for i in range(8)})
    plan = partition_graph(g, cost, stages=2, microbatches=4, batch=8)
    assert [len(st["nodes"]) for st in plan["stages"]] == [4, 4] and plan["bottleneck"] == 160.0
    for schedule in ("gpipe", "1f1b"):
        steps = {}
        for a in range(1, 8):  # every split, as a plan the simulator replays
            st = [{"forward": 10.0 * a, "backward": 20.0 * a, "send_bytes": 2 * 4 * F32},
                  {"forward": 10.0 * (8 - a), "backward": 20.0 * (8 - a), "send_bytes": 0}]
            steps[a] = simulate_pipeline({"stages": st, "microbatches": 4, "remat": True}, cost,
                                         schedule=schedule).step_time
        assert steps[4] == min(steps.values()) < steps[1] == max(steps.values()), (schedule, steps)


def test_memory_model_by_hand():
    g = mlp()
    fwd = {n.name: 1.0 for n in g.nodes}
    plan = partition_graph(g, TableCost(fwd), stages=2, microbatches=4, batch=8, method="equal-layers",
                           optimizer="momentum")
    s0, s1 = plan["stages"]
    assert s0["nodes"] == ["mm1", "r1", "mm2"] and s1["nodes"] == ["r2", "mm3", "mm4"]
    d = s1["memory_detail"]
    w = (16 * 16 + 16 * 4) * 4
    assert d["weights"] == w and d["gradients"] == w and d["optimizer"] == w  # momentum: one buffer per weight
    micro_in = 2 * 16 * 4  # mm2's output, micro-batch of 2
    internal = 2 * (2 * 16 * 4) + 2 * 4 * 4  # r2, mm3 and mm4 outputs, one micro-batch
    assert d["activations_remat"] == 4 * micro_in + internal
    assert d["activations"] == 4 * (micro_in + internal)
    assert d["activations_1f1b"] == 1 * (micro_in + internal)  # last stage: one micro-batch in flight
    assert d["activations_1f1b_remat"] == 1 * micro_in + internal
    plan3 = partition_graph(g, TableCost(fwd), stages=2, microbatches=4, batch=8, method="equal-layers",
                            optimizer="momentum", schedule="1f1b")
    assert plan3["stages"][1]["memory"] == 3 * w + 1 * micro_in + internal
    assert s1["memory"] == 3 * w + 4 * micro_in + internal
    assert s0["memory_detail"]["activations_remat"] == 4 * (2 * 8 * 4) + 3 * (2 * 16 * 4)  # x; mm1, r1, mm2
    plan2 = partition_graph(g, TableCost(fwd), stages=2, microbatches=4, batch=8, method="equal-layers",
                            optimizer="momentum", remat=False)
    assert plan2["stages"][1]["memory"] == 3 * w + 4 * (micro_in + internal)


def test_backward_rule_and_cost_model_override():
    g = mlp()
    fwd = {n.name: 3.0 for n in g.nodes}
    plan = partition_graph(g, TableCost(fwd), stages=2, microbatches=1, batch=2)
    assert plan["node_times"]["mm1"] == {"forward": 3.0, "backward": 6.0}  # MAC op: twice
    assert plan["node_times"]["r1"] == {"forward": 3.0, "backward": 3.0}  # elementwise: once
    plan = partition_graph(g, TableCost(fwd, {n.name: 7.0 for n in g.nodes}), stages=2, microbatches=1, batch=2)
    assert plan["node_times"]["mm1"]["backward"] == 7.0


def test_torchgpipe_block_partition_reference():
    assert block_partition([1, 2, 3, 4, 5, 6], 2) == [4, 2]
    assert block_partition([0, 0], 2) == [1, 1]
    assert block_partition([5] * 8, 4) == [2, 2, 2, 2]


def test_block_partition_equals_torchgpipes_on_random_and_tied_costs():
    """Reference: torchgpipe's own ``balance.blockpartition.solve`` (kakaobrain/torchgpipe 0.0.7). Before, a block
    weighed as a difference of prefix sums (0.9999999999999998 for 1.0) missed the stop test on tied costs: an
    outside check's MLP split [3, 4, 2, 4] (bottleneck 7040) where torchgpipe splits [3, 3, 3, 4] (6784); and a
    block passing through empty on the way made graphmill give up on torchgpipe's answer for equal blocks.
    torchgpipe's solve cycles forever on some tied sequences (20 of 3,000 of these draws) and may leave a block
    empty (91): those draws are skipped here (graphmill stops at the cycle; both give equal blocks then, below)."""
    from torchgpipe.balance import blockpartition

    def reference(costs, k):
        return [len(block) for block in blockpartition.solve(list(costs), k)]

    mlp_times = [1632.0, 256.0, 3264.0, 256.0, 3264.0, 256.0, 3264.0, 256.0, 3264.0, 256.0, 3264.0, 256.0, 432.0]
    assert block_partition(mlp_times, 4) == reference(mlp_times, 4) == [3, 3, 3, 4]
    rng = np.random.default_rng(0)
    compared = 0
    for trial in range(600):
        n = int(rng.integers(1, 40))
        k = int(rng.integers(1, n + 1))
        if trial % 2:  # few distinct values: ties everywhere, as a network's repeated layers give
            costs = rng.choice([256.0, 432.0, 1632.0, 3264.0, 0.1, 0.3], size=n).tolist()
        else:
            costs = rng.exponential(100.0, size=n).tolist()
        if trial in (275, 297, 387):  # torchgpipe's solve never returns on these (found with an alarm)
            assert block_partition(costs, k) == equal_split(n, k)
            continue
        expected = reference(costs, k)
        if min(expected) == 0:  # a stage needs a node: graphmill splits equally instead
            assert block_partition(costs, k) == equal_split(n, k)
            continue
        assert block_partition(costs, k) == expected, (costs, k)
        compared += 1
    assert compared > 550


def test_balanced_methods_never_beat_optimal_on_zoo_graph():
    from graphmill.frontend import zoo

    g = zoo.build("resnet18", resolution=32)
    fwd = {n.name: float(1 + (i * 37) % 11) for i, n in enumerate(g.nodes)}
    res = {}
    for method in ("optimal", "balanced-time", "balanced-params", "equal-layers"):
        res[method] = partition_graph(g, TableCost(fwd), stages=4, microbatches=4, batch=8, method=method)["bottleneck"]
    assert res["optimal"] <= min(res.values())


def test_pass_through_schedule_with_cost_model():
    g = mlp()
    fwd = {n.name: 2.0 for n in g.nodes}
    res = run_passes(g, "pipeline-partition{stages=2, microbatches=2, batch=4}",
                     ctx=PassContext(cost_model=TableCost(fwd)))
    assert res is not None and {n.meta["stage"] for n in g.nodes} == {0, 1}
    with pytest.raises(Exception, match="needs a cost model"):
        run_passes(mlp(), "pipeline-partition{stages=2}", ctx=PassContext())


def test_bad_input():
    fwd = {n: 1.0 for n in ["mm1", "r1", "mm2", "r2", "mm3", "mm4"]}
    with pytest.raises(UserInputError, match="6 compute op.*cannot be cut into 7"):
        partition_graph(mlp(), TableCost(fwd), stages=7, microbatches=1, batch=2)
    with pytest.raises(UserInputError, match="microbatches must be >= 1"):
        partition_graph(mlp(), TableCost(fwd), stages=2, microbatches=0, batch=2)
    for method in ("balanced-time", "balanced-params", "equal-layers"):  # accepted, and it had no effect
        with pytest.raises(UserInputError, match=f"objective 'memory' is what method 'optimal' minimizes; "
                                                 f"method '{method}' balances its own figure"):
            partition_graph(mlp(), TableCost(fwd), stages=2, microbatches=1, batch=2, objective="memory",
                            method=method)
        with pytest.raises(UserInputError, match=f"pass 'pipeline-partition': objective 'memory' .* '{method}'"):
            PipelinePartition(method=method, objective="memory")  # in a schedule: before any pass runs
    with pytest.raises(UserInputError, match="did you mean 'equal-layers'"):  # the name first (a review)
        PipelinePartition(method="equal-layrs", objective="memory")
    from graphmill import api

    with pytest.raises(UserInputError, match="did you mean 'equal-layers'"):  # api.partition checked the pair first
        api.partition(mlp(batch=4), stages=2, microbatches=2, objective="memory", method="equal-layrs")
    with pytest.raises(UserInputError, match="symbolic batch dimension"):
        partition_graph(mlp(), TableCost(fwd), stages=2, microbatches=2)
    with pytest.raises(UserInputError, match="does not split into 3 equal micro-batches"):
        partition_graph(mlp(batch=4), TableCost(fwd), stages=2, microbatches=3)
    b = GraphBuilder("scalar")
    x = b.input("x", "float32", [])
    b.output(b.Relu(b.Relu(x, name="a"), name="b"), name="y")
    with pytest.raises(UserInputError, match="no batch dimension"):
        partition_graph(b.build(), TableCost({"a": 1.0, "b": 1.0}), stages=2, microbatches=1)
    # a sequence-first input: dimension 0 is the sequence, which a constant [6, 4] is sized for. It was blamed on
    # the simulator ("output shape is not static") or shape inference, not on the split (an outside check)
    b = GraphBuilder("seqfirst")
    x = b.input("x", "float32", [6, 4])
    b.output(b.MatMul(b.Add(x, np.ones((6, 4), np.float32), name="pos"), np.ones((4, 4), np.float32), name="mm"))
    with pytest.raises(UserInputError, match=r"micro-batches split the inputs' first dimension \(6 -> 3\), and then "
                                             r"Add node 'pos' has no shape \(inputs \[3, 4\], \[6, 4\]\): dimension 0 "
                                             "is not the batch here"):
        partition_graph(b.build(), TableCost({"pos": 1.0, "mm": 1.0}), stages=2, microbatches=2)


class IdMemoCost(TableCost):
    """Memoizes by id(node), as the simulator's cost models do; time grows with the batch of the output."""

    def __init__(self):
        super().__init__({})
        self.memo = {}

    def op_time(self, node, device=0):
        if id(node) not in self.memo:
            self.memo[id(node)] = float(node.outputs[0].type.shape[0] * 10)
        return self.memo[id(node)]


def test_cost_model_memoizing_by_id_sees_each_microbatch_size():
    # regression: a graph copy per call, freed, let the next call's nodes reuse ids and read stale times
    cost = IdMemoCost()
    g = mlp()
    first = [partition_graph(g, cost, stages=2, microbatches=m, batch=8)["bottleneck"] for m in (1, 2, 4, 2, 1)]
    fresh = [partition_graph(g, IdMemoCost(), stages=2, microbatches=m, batch=8)["bottleneck"] for m in (1, 2, 4, 2, 1)]
    assert first == fresh


@pytest.mark.parametrize("stages", [1, 2])
def test_batchnorm_statistics_and_shapes_hold_no_gradient_or_optimizer_state(stages):
    """Every constant a stage read was counted as a trained weight: BatchNorm's running mean and variance (buffers
    in torch, which no optimizer sees) and a Reshape's int64 shape had gradients and Adam state (an outside check:
    240 of a CNN stage's 256 parameters train). Reference: torch's split of nn.Conv2d/nn.BatchNorm2d into
    parameters and buffers, counted by hand: trained 864 + 64 + 2,304 bytes of the 3,232 + 64 + 16 read."""
    b = GraphBuilder("cnn")
    x = b.input("x", "float32", [4, 3, 8, 8])
    h = b.Conv(x, np.ones((8, 3, 3, 3), np.float32), pads=[1, 1, 1, 1], name="c1")  # 864 bytes
    h = b.BatchNormalization(h, np.ones(8, np.float32), np.zeros(8, np.float32),  # scale, bias: 64 bytes, trained
                             np.zeros(8, np.float32), np.ones(8, np.float32), name="bn")  # mean, var: 64, buffers
    h = b.Conv(b.Relu(h, name="r"), np.ones((8, 8, 3, 3), np.float32), pads=[1, 1, 1, 1], name="c2")  # 2,304 bytes
    b.output(b.Reshape(h, np.array([-1, 512], np.int64), name="flat"), "y")  # the shape: 16 bytes, no gradient
    g = b.build()
    plan = partition_graph(g, TableCost({n.name: 1.0 for n in g.nodes}), stages=stages, microbatches=2,
                           optimizer="adam")
    detail = [st["memory_detail"] for st in plan["stages"]]
    assert sum(d["weights"] for d in detail) == 864 + 128 + 2304 + 16
    assert sum(d["gradients"] for d in detail) == 864 + 64 + 2304
    assert sum(d["optimizer"] for d in detail) == 2 * (864 + 64 + 2304)
