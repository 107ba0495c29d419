"""Expert placement (passes/placement/experts.py). Reference: hand-worked LPT (Graham 1969) and GShard's
contiguous expert sharding on small load vectors."""

from __future__ import annotations

import pytest

from graphmill.errors import UserInputError
from graphmill.passes.placement.experts import chip_loads, place_experts


def test_contiguous_is_gshard_sharding():
    assert place_experts([1] * 8, 4, method="contiguous") == [0, 0, 1, 1, 2, 2, 3, 3]
    assert place_experts([1] * 3, 2, method="contiguous") == [0, 0, 1]


def test_balanced_spreads_hot_experts_hand_worked():
    loads = [10, 9, 1, 1]
    # contiguous piles both hot experts on chip 0: 19 vs 2
    assert chip_loads(loads, place_experts(loads, 2, method="contiguous"), 2) == [19, 2]
    # LPT: 10 -> chip 0, 9 -> chip 1, 1 -> chip 1 (9 < 10), 1 -> chip 0 (10 = 10, lower index)
    assert place_experts(loads, 2) == [0, 1, 1, 0]
    assert chip_loads(loads, [0, 1, 1, 0], 2) == [11, 10]


def test_balanced_respects_expert_slots_per_chip():
    p = place_experts([100, 1, 1, 1, 1, 1], 3)
    assert all(p.count(c) == 2 for c in range(3))  # ceil(6 / 3) slots each


@pytest.mark.parametrize("load", [-3, float("nan"), float("inf"), "many"])
def test_a_load_that_is_no_work_measure_is_refused_naming_the_expert(load):
    """A negative or NaN load was sorted as work and put its expert on the busier chip (an outside check)."""
    for method in ("balanced", "contiguous"):
        with pytest.raises(UserInputError, match=r"expert 1's load .*: each load must be a finite number >= 0"):
            place_experts([5, load, 2, 1], 2, method=method)


@pytest.mark.parametrize("args", [([1, 2], 0), ([], 2)])
def test_bad_input(args):
    with pytest.raises(UserInputError):
        place_experts(*args)
    with pytest.raises(UserInputError, match="unknown expert placement"):
        place_experts([1], 1, method="random")


def test_place_experts_pass_writes_meta_that_the_simulator_uses():
    from graphmill.backends.simulator.expert_parallel import moe_report
    from graphmill.frontend import zoo
    from graphmill.passes import run_passes

    from graphmill.backends.simulator import AccelConfig

    g = zoo.build("switch_transformer", layers=2, batch=1, seq=8, vocab=20, hidden=16, heads=2, ffn=24, experts=4)
    (node,) = [n for n in g.nodes if n.op_type == "MoE"]
    node.meta["moe_routing"] = {"counts": [6, 1, 0, 1]}
    run_passes(g, "place-experts{chips=2, method=contiguous}")
    assert node.meta["expert_placement"] == [0, 0, 1, 1] and node.meta["expert_chips"] == 2
    run_passes(g, "place-experts{chips=2}")
    # LPT: e0 (6) -> chip 0, e1 (1) -> chip 1, e3 (1) -> chip 1, e2 (0) -> chip 0 (chip 1's 2 slots are full)
    assert node.meta["expert_placement"] == [0, 1, 0, 1]
    (row,) = moe_report(g, AccelConfig(8, 8, "os", 4, 4, 2, 4, 4, 4), chips=[2])
    assert row["expert_parallel"][0]["placement"] == [0, 1, 0, 1]  # the pass's, not re-placed on measured load


def test_place_experts_on_a_saved_model_file(tmp_path):
    """A model file holds its MoE layers lowered to standard ONNX: the pass (as `graphmill optimize -p
    place-experts{...}` runs it) must place those layers too, and the simulator must use that placement
    (before, the pass skipped every loaded layer and left nothing for the simulator)."""
    import graphmill
    from graphmill.backends.simulator import AccelConfig
    from graphmill.backends.simulator.expert_parallel import moe_report
    from graphmill.frontend import zoo
    from graphmill.passes import run_passes

    g = zoo.build("switch_transformer", layers=2, batch=1, seq=8, vocab=20, hidden=16, heads=2, ffn=24, experts=4)
    graphmill.save(g, tmp_path / "s.onnx")
    back = graphmill.load(tmp_path / "s.onnx")
    assert not [n for n in back.nodes if n.op_type == "MoE"]
    run_passes(back, "place-experts{chips=2, method=contiguous}")
    layer = [n for n in back.nodes if n.meta.get("lowered_from") == "graphmill::MoE"]
    assert layer and all(n.meta["expert_placement"] == [0, 0, 1, 1] and n.meta["expert_chips"] == 2 for n in layer)
    graphmill.save(back, tmp_path / "p.onnx")  # the meta travels in the file
    (row,) = moe_report(graphmill.load(tmp_path / "p.onnx"), AccelConfig(8, 8, "os", 4, 4, 2, 4, 4, 4), chips=[2, 4])
    assert row["expert_parallel"][0]["placement"] == [0, 0, 1, 1]  # the pass's (balanced would differ on load)
    assert row["expert_parallel"][1]["chips"] == 4 and len(set(row["expert_parallel"][1]["placement"])) == 4


def test_simulate_without_chip_counts_uses_the_pass_chips(tmp_path):
    """`optimize -p 'place-experts{chips=4}'` then `simulate` without --expert-chips simulated the layer at the
    accelerator's chip count (2 here), leaving the pass's 4-chip placement unused. Reference: the pass's own
    contiguous placement (GShard sharding of 8 experts over 4 chips)."""
    from graphmill.backends.simulator import AccelConfig
    from graphmill.backends.simulator.expert_parallel import moe_report
    from graphmill.frontend import zoo
    from graphmill.passes import run_passes

    g = zoo.build("switch_transformer", layers=2, batch=1, seq=8, vocab=20, hidden=16, heads=2, ffn=24, experts=8)
    accel = AccelConfig(8, 8, "os", 4, 4, 2, 4, 4, 4)
    (plain,) = moe_report(g, accel)
    assert [p["chips"] for p in plain["expert_parallel"]] == [2]  # no pass run: the accelerator's, at least 2
    run_passes(g, "place-experts{chips=4, method=contiguous}")
    (row,) = moe_report(g, accel)
    assert [p["chips"] for p in row["expert_parallel"]] == [4]
    assert row["expert_parallel"][0]["placement"] == [0, 0, 1, 1, 2, 2, 3, 3]
    (asked,) = moe_report(g, accel, chips=[2])  # chip counts given: those, re-placed for 2
    assert [p["chips"] for p in asked["expert_parallel"]] == [2]


def test_a_chip_count_past_the_simulators_limit_is_refused_at_once():
    """``place-experts{chips=100000000}`` ran its LPT for minutes (``place_experts(loads, 10**9)`` built lists of
    10^9 entries), and ``chips=100000`` wrote a placement ``simulate`` then refused, blaming the accelerator config
    (an outside check). Reference: the simulator's limit, an accelerator config's ``[system] chips`` (4096)."""
    import time

    import numpy as np

    from graphmill.backends.simulator.config import from_dict
    from graphmill.passes.placement.experts import MAX_CHIPS

    t = time.perf_counter()
    with pytest.raises(UserInputError, match=r"expert placement needs a number of chips in 1\.\.4096, got 1000000000"):
        place_experts([5, 1, 1, 1], 10**9)
    assert time.perf_counter() - t < 1.0
    assert MAX_CHIPS == 4096
    acc = {"name": "x", "array": {"rows": 4, "cols": 4, "dataflow": "ws"},
           "memory": {"ifmap_kb": 1, "filter_kb": 1, "ofmap_kb": 1, "dram_bw_words": 4}}
    from_dict({**acc, "system": {"chips": MAX_CHIPS}})  # the config's own limit, which it accepts
    with pytest.raises(UserInputError, match="chips"):
        from_dict({**acc, "system": {"chips": MAX_CHIPS + 1}})
    assert place_experts([5, 1, 1, 1], np.int64(2)) == place_experts([5, 1, 1, 1], 2)
    with pytest.raises(UserInputError):
        place_experts([5, 1], True)
