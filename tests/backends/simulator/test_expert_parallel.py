"""Expert parallelism and per-expert load in the simulator (backends/simulator/expert_parallel.py).

References: hand computations of the all-to-all bytes and link time (multichip's link model:
latency + ceil(bytes / bandwidth)), the per-chip GEMM cycles of the cycle-level array simulation itself
(the phase is the slowest chip's sum), ONNX Runtime's own run of the layer for the measured counts, and
the `graphmill simulate --json` schema.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from graphmill.backends import onnxruntime as ortb
from graphmill.backends.simulator import load_accel
from graphmill.backends.simulator.engine import simulate_array_layer
from graphmill.backends.simulator.expert_parallel import (MoELayer, measure_routing, moe_layers, moe_report,
                                                          simulate_expert_parallel)
from graphmill.backends.simulator.lowering import gemm_layer, lower
from graphmill.frontend import zoo
from graphmill.passes.lowering import lowered_copy

from .conftest import accel

EDGE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "accelerators", "edge.toml")


def _layer(counts):
    return MoELayer("moe", experts=len(counts), k=1, capacity_factor=2.0, gate="switch", tokens=sum(counts), d=16,
                    expert_hidden=32, noisy=False, counts=list(counts), dropped=0)


def test_all_to_all_and_phases_hand_computed():
    cfg = accel(8, 8, "os", chips=4, link_bw_bytes_per_cycle=8.0, link_latency_cycles=100, word_bytes=2)
    layer = _layer([40, 8, 8, 8])  # capacity min(64, ceil(64 * 2 / 4)) = 32: expert 0 keeps 32
    assert layer.capacity == 32 and layer.kept == [32, 8, 8, 8]
    r = simulate_expert_parallel(layer, cfg, 4, placement=[0, 1, 2, 3])
    # chip 0 receives 32/4 assignments from each other chip: ceil(8 * 16 * 2) = 256 bytes per link
    assert r.dispatch_cycles == 100 + math.ceil(256 / 8.0)
    assert r.all_to_all_bytes == 2 * 3 * (256 + 3 * 64)  # dispatch + combine, 3 senders per chip
    gemm = lambda m, n, k: simulate_array_layer(gemm_layer("g", "MatMul", m, n, k), cfg).total_cycles  # noqa: E731
    hot = gemm(32, 32, 16) + gemm(32, 16, 32) + math.ceil(32 * (2 * 32 + 3 * 16) / cfg.lanes)
    assert r.expert_cycles == hot  # the hot expert's chip is the slowest
    assert r.step_cycles == r.gate_cycles + 2 * r.dispatch_cycles + r.expert_cycles
    one = simulate_expert_parallel(layer, cfg, 1)
    assert one.dispatch_cycles == 0 and one.all_to_all_bytes == 0
    assert one.expert_cycles > r.expert_cycles


def test_slow_interconnect_makes_expert_parallel_lose_to_one_chip():
    layer = _layer([16, 16, 16, 16])
    fast = accel(8, 8, "os", link_bw_bytes_per_cycle=64.0, link_latency_cycles=0)
    slow = accel(8, 8, "os", link_bw_bytes_per_cycle=0.01, link_latency_cycles=10 ** 6)
    assert simulate_expert_parallel(layer, fast, 4).step_cycles < simulate_expert_parallel(layer, fast, 1).step_cycles
    assert simulate_expert_parallel(layer, slow, 4).step_cycles > simulate_expert_parallel(layer, slow, 1).step_cycles


def test_balanced_placement_beats_contiguous_on_skewed_load():
    layer = _layer([30, 30, 2, 2, 2, 2, 2, 2])
    layer.capacity_factor = 8.0
    cfg = accel(8, 8, "os")
    bal = simulate_expert_parallel(layer, cfg, 4, method="balanced")
    con = simulate_expert_parallel(layer, cfg, 4, method="contiguous")
    assert con.placement[:2] == [0, 0] and bal.placement[0] != bal.placement[1]
    assert bal.expert_cycles < con.expert_cycles


def test_routing_measured_on_native_and_lowered_graphs_equals_ort():
    g = zoo.build("moe_lstm_lm", batch=2, steps=4, vocab=30, hidden=8, expert_hidden=8, experts=4, k=2,
                  capacity_factor=0.75)
    tokens = np.random.default_rng(1).integers(0, 30, size=(2, 4))
    ort = ortb.run(g, {"tokens": tokens})
    native = measure_routing(g, {"tokens": tokens})
    lowered = measure_routing(lowered_copy(g), {"tokens": tokens})
    want = ([int(c) for c in ort["moe0_expert_counts"]], int(ort["moe0_dropped"]))
    assert native == {"moe0": want} and lowered == {"moe0": want}
    assert sum(want[0]) == 2 * 4 * 2
    (layer,) = moe_layers(lowered_copy(g))
    assert (layer.experts, layer.k, layer.tokens, layer.d) == (4, 2, 8, 8)


def test_simulator_costs_the_native_op_per_expert():
    g = zoo.build("switch_transformer", layers=2, batch=1, seq=8, vocab=20, hidden=16, heads=2, ffn=24, experts=4)
    items = {n.name: prims for n, prims in lower(g) if n.op_type == "MoE"}
    prims = items["moe1"]
    names = [p.name for p in prims]
    assert names[0] == "moe1/gate" and sum("expert" in n for n in names) == 2 * 4
    assert not lower(g).uncosted


def test_report_and_cli_json(tmp_path, capsys):
    from graphmill import api
    from graphmill.cli import main

    g = zoo.build("switch_transformer", layers=2, batch=2, seq=8, vocab=20, hidden=16, heads=2, ffn=24, experts=4)
    rows = moe_report(g, load_accel(EDGE), chips=[2, 4])
    (r,) = rows
    assert r["layer"] == "moe1" and sum(r["expert_load"]) == 16 and len(r["expert_parallel"]) == 2
    path = tmp_path / "s.onnx"
    api.save(g, path)
    cfg = EDGE
    assert main(["simulate", str(path), "--accel", str(cfg), "--json", "--expert-chips", "4,8"]) == 0
    out = json.loads(capsys.readouterr().out)
    (m,) = out["moe"]
    assert m["expert_load"] == r["expert_load"] and m["dropped"] == r["dropped"]
    assert [p["chips"] for p in m["expert_parallel"]] == [4, 8]
    assert main(["simulate", str(path), "--accel", str(cfg), "--expert-chips", "0"]) == 2


def test_chip_counts_beyond_the_config_limit_are_one_line_errors():
    """--expert-chips 1000000 (or 10^9, which would build 10^9-entry lists) is refused like an accelerator
    config's chips beyond 4096, before any routing run."""
    import pytest

    from graphmill.errors import UserInputError

    cfg = accel(8, 8, "os")
    for bad in (10 ** 6, 0, 4097):
        with pytest.raises(UserInputError, match=r"number of chips in 1\.\.4096"):
            simulate_expert_parallel(_layer([4, 4]), cfg, bad)
    assert simulate_expert_parallel(_layer([4, 4]), cfg, 4096).chips == 4096


def test_expert_chips_on_a_model_without_moe_layers_says_so(tmp_path, capsys):
    """--expert-chips on a dense model did nothing, silently; now one warning line (the table stands)."""
    from graphmill import api
    from graphmill.cli import main

    path = tmp_path / "c.onnx"
    api.save(zoo.build("coatnet_0", resolution=32, width=0.125, depth=0.2, batch=1, num_classes=2), path)
    assert main(["simulate", str(path), "--accel", EDGE, "--expert-chips", "4"]) == 0
    err = capsys.readouterr().err
    assert "--expert-chips: the model has no mixture-of-experts layer" in err and len(err.strip().splitlines()) == 1
