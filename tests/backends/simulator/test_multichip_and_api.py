"""Multi-chip makespan against its analytic value; the public API and JSON schema.

References: analytic values written out here from the fold formula (SCALE-Sim's compute model, checked
against SCALE-Sim in test_vs_scalesim.py) and the link model (latency + bytes / bandwidth).
"""

from __future__ import annotations

import json
import math

import numpy as np

import graphmill
from graphmill import GraphBuilder
from graphmill.backends.simulator import RooflineCostModel, SimulatorCostModel, simulate_multichip

ACCEL = {"name": "t", "array": {"rows": 8, "cols": 8, "dataflow": "os"},
         "memory": {"ifmap_kb": 1024, "filter_kb": 1024, "ofmap_kb": 1024, "dram_bw_words": 64},
         "vector": {"lanes": 8}, "system": {"chips": 2, "link_bw_bytes_per_cycle": 16, "link_latency_cycles": 100}}


def _two_branches():
    b = GraphBuilder("two", opset=17)
    x = b.input("x", "float32", [16, 32])
    w1 = b.const(np.ones((32, 24), np.float32))
    w2 = b.const(np.ones((32, 24), np.float32))
    y1 = b.MatMul(x, w1)
    y2 = b.MatMul(x, w2)
    b.output(b.Add(y1, y2), "y")
    g = b.build()
    mm = [n for n in g.nodes if n.op_type == "MatMul"]
    mm[0].meta["device"] = 0
    mm[1].meta["device"] = 1
    add = next(n for n in g.nodes if n.op_type == "Add")
    add.meta["device"] = 0
    return g, mm, add


def test_two_parallel_branches_makespan_is_analytic():
    g, mm, add = _two_branches()
    res = simulate_multichip(g, ACCEL)
    # MatMul 16x32 @ 32x24 on 8x8 os: folds ceil(16/8)*ceil(24/8) = 6, L = K + R + C - 2 = 46, cycles 6*46-1
    t_mm = 6 * (32 + 8 + 8 - 2) - 1
    # y2 (16*24 float32 = 1536 bytes) goes chip 1 -> chip 0: 100 + 1536/16
    t_link = 100 + math.ceil(16 * 24 * 4 / 16)
    # Add: 384 elements on 8 lanes = 48 cycles, vs DRAM 3072 B read at 64 B/cycle = 48, 1536 B written = 24
    t_add = max(math.ceil(384 / 8), math.ceil(2 * 1536 / 64), math.ceil(1536 / 64))
    cost = SimulatorCostModel(ACCEL)
    assert cost.op_time(mm[0]) == t_mm and cost.op_time(add) == t_add  # no stalls with these buffers
    assert res.makespan == t_mm + t_link + t_add
    assert res.busy == {0: t_mm + t_add, 1: t_mm}
    assert res.transfer_bytes == 1536


def test_a_graph_without_intermediate_shapes_is_inferred_first():
    """A file as torch.onnx.export writes it declares no intermediate shapes: simulate_multichip refused it ("shape
    inference could not infer it", though none had run) where simulate infers them (an outside check)."""
    g, mm, add = _two_branches()
    want = simulate_multichip(g, ACCEL).makespan
    for n in g.nodes:
        for v in n.outputs:
            if v is not None and v not in g.outputs:
                v.type = None
    assert simulate_multichip(g, ACCEL).makespan == want


def test_same_chip_serializes(tmp_path):
    g, mm, add = _two_branches()
    mm[1].meta["device"] = 0
    res = simulate_multichip(g, ACCEL)
    t_mm = 6 * 46 - 1
    assert res.makespan == 2 * t_mm + 48 and res.transfer_bytes == 0
    res.gantt(str(tmp_path / "g.png"))
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_roofline_costmodel_same_interface():
    g, mm, add = _two_branches()
    rf = RooflineCostModel(ACCEL)
    # analytic: max(MACs / 64, operand words / (64 + 64), outputs / 64)
    assert rf.op_time(mm[0]) == max(math.ceil(16 * 24 * 32 / 64), math.ceil((16 * 32 + 32 * 24) / 128),
                                    math.ceil(16 * 24 / 64))
    assert rf.transfer_time(1536, 0, 1) == 100 + 96 and rf.transfer_time(1536, 1, 1) == 0
    assert simulate_multichip(g, ACCEL, rf).makespan > 0


def test_public_api_json_schema(tmp_path):
    g, _, _ = _two_branches()
    rep = graphmill.simulate(g, ACCEL)
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["total_cycles"] == sum(x["total_cycles"] for x in d["layers"])
    keys = {"name", "op", "compute_cycles", "stall_cycles", "total_cycles", "utilization", "dram_read_bytes",
            "dram_write_bytes"}
    assert all(keys <= set(x) for x in d["layers"])
    assert [x["op"] for x in d["layers"]] == ["MatMul", "MatMul", "Add"]
    rep.plot(str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_fused_activation_costs_nothing():
    b = GraphBuilder("f", opset=17)
    x = b.input("x", "float32", [16, 32])
    y = b.Relu(b.MatMul(x, b.const(np.ones((32, 24), np.float32))))
    b.output(y, "y")
    g = b.build()
    n_before = len(graphmill.simulate(g, ACCEL).layers)
    next(n for n in g.nodes if n.op_type == "Relu").meta["fused_into"] = "MatMul_0"
    rep = graphmill.simulate(g, ACCEL)
    assert n_before == 2 and [x.op for x in rep.layers] == ["MatMul"]


def test_cost_model_protocol_lives_in_ir_and_simulator_implements_it():
    """ARCHITECTURE.md: the CostModel interface is defined in ir (ir/cost.py, importing nothing of graphmill
    outside ir and util); the simulator's two models implement it and the simulator re-exports it."""
    import ast
    import inspect

    import graphmill.backends.simulator as sim
    from graphmill.ir import cost

    assert sim.CostModel is cost.CostModel
    for model in (SimulatorCostModel(ACCEL), RooflineCostModel(ACCEL)):
        assert isinstance(model, cost.CostModel)
    tree = ast.parse(inspect.getsource(cost))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0] + \
        [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert all(not m.startswith("graphmill") or m.startswith(("graphmill.ir", "graphmill.util")) for m in imported)


def test_cost_model_memo_follows_the_node_and_its_shapes():
    """A node re-batched in place (its shapes changed) is costed again, by the fold formula of its new shape
    (the issue's pipeline partitioner saw stale times from a memo keyed on id(node) alone)."""
    from graphmill.ir.types import TensorType

    g, mm, _ = _two_branches()
    cost = SimulatorCostModel(ACCEL)
    assert cost.op_time(mm[0]) == 6 * 46 - 1  # 16x32 @ 32x24: 2 x 3 folds of 32 + 8 + 8 - 2 cycles
    x, y = mm[0].inputs[0], mm[0].outputs[0]
    x.type = TensorType(x.type.dtype, (32, 32))
    y.type = TensorType(y.type.dtype, (32, 24))
    assert cost.op_time(mm[0]) == 12 * 46 - 1  # 32 rows: 4 x 3 folds


def test_plot_of_many_layers_draws_stacked_steps_not_a_bar_each(tmp_path, monkeypatch):
    """A bar is one patch: a 50,000-layer model's plot took over 3 minutes (the bars and the legend's "best"
    placement over them). Beyond ``BARS_UP_TO`` layers the cycles are two stacked step areas. Reference:
    matplotlib's own artists of the figure that is saved."""
    from graphmill.backends.simulator import report as report_module
    from graphmill.util import plots

    figures = []
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, *a, **k: (figures.append(fig), save(fig, *a, **k)))
    g, _, _ = _two_branches()
    rep = graphmill.simulate(g, ACCEL)
    rep.plot(str(tmp_path / "bars.png"))
    monkeypatch.setattr(report_module, "BARS_UP_TO", 2)
    rep.plot(str(tmp_path / "steps.png"))
    bars, steps = (f.axes[0] for f in figures)
    assert len(bars.patches) == 2 * 3 and not bars.collections
    assert not steps.patches and len(steps.collections) == 2
    assert [t.get_text() for t in steps.get_legend().get_texts()] == ["compute", "stall"]
    assert (tmp_path / "steps.png").stat().st_size > 1000
