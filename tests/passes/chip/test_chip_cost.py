"""The proxy cost. References: the cost components Circuit Training's evaluator wrote in the header of the
Ariane133 flow's legalized.plc (TILOS MacroPlacement), hand computations on a three-node netlist, and an
independent plain-Python wirelength written here."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from graphmill.frontend.chip.netlist import parse_netlist_text, read_netlist
from graphmill.frontend.chip.plc import apply_plc, parse_plc_text, read_plc
from graphmill.passes.chip.cost import ProxyCost, proxy_cost
from graphmill.passes.chip.problem import problem_from_graph

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "chip")

HAND = """
node { name: "P0" input: "M0/P" attr { key: "type" value { placeholder: "PORT" } }
  attr { key: "x" value { f: 0 } } attr { key: "y" value { f: 10 } } }
node { name: "M0" attr { key: "type" value { placeholder: "MACRO" } } attr { key: "width" value { f: 20 } }
  attr { key: "height" value { f: 20 } } attr { key: "x" value { f: 70 } } attr { key: "y" value { f: 70 } }
  attr { key: "orientation" value { placeholder: "N" } } }
node { name: "M0/P" attr { key: "type" value { placeholder: "MACRO_PIN" } }
  attr { key: "macro_name" value { placeholder: "M0" } } attr { key: "x_offset" value { f: 5 } }
  attr { key: "y_offset" value { f: 5 } } }
"""
HAND_PLC = """# Columns : 2  Rows : 2
# Width : 100  Height : 100
# Routes per micron, hor : 10  ver : 10
# Routes used by macros, hor : 5  ver : 5
# Smoothing factor : {sm}
"""


def _hand(smoothing=0, orient="N"):
    g = parse_netlist_text(HAND)
    apply_plc(g, parse_plc_text(HAND_PLC.format(sm=smoothing) + f"1 70 70 {orient} 0\n"))
    return problem_from_graph(g)


def test_hand_computed_three_nodes():
    # pin at (75, 75), port at (0, 10): HPWL 75 + 65 = 140 over (100 + 100) x 1 net = 0.7.
    # density: the 20x20 macro lies in cell (1, 1) of 50x50 cells: 400 / 2500 = 0.16; a grid of fewer than 10
    # cells averages the occupied ones: 0.16 x 0.5 = 0.08.
    # congestion: the port's cell (0,0) -> the pin's (1,1): H at (0,0) and V at (0,1), 1 / (50 x 10) each;
    # the macro blocks 20 x 5 tracks of (1,1) both ways: 100 / 500 = 0.2; 8 values, 5% of 8 is 0 -> the max.
    r = proxy_cost(_hand())
    assert r.wirelength == pytest.approx(0.7)
    assert r.density == pytest.approx(0.08)
    assert r.congestion == pytest.approx(0.2)
    assert r.proxy == pytest.approx(0.7 + 0.5 * 0.08 + 0.5 * 0.2)
    # orientation S turns the pin offset: pin at (65, 65) -> HPWL 65 + 55
    assert proxy_cost(_hand(orient="S")).wirelength == pytest.approx(120 / 200)


def test_hand_computed_congestion_grid_and_smoothing():
    pc = ProxyCost(_hand())
    g = pc.congestion_grid()  # max of H and V per cell, rows x cols
    assert g[0, 0] == pytest.approx(0.002) and g[0, 1] == pytest.approx(0.002) and g[1, 1] == pytest.approx(0.2)
    pc = ProxyCost(_hand(smoothing=1))
    g = pc.congestion_grid()
    # smoothing 1: V at (0,1) spreads over its row (cols 0..1), H at (0,0) over its column (rows 0..1)
    assert g[0, 0] == pytest.approx(0.001) and g[0, 1] == pytest.approx(0.001) and g[1, 0] == pytest.approx(0.001)
    assert pc.density_grid()[1, 1] == pytest.approx(0.16)


def _plain_wirelength(graph, canvas):
    """An independent HPWL: pins placed from the graph's attributes, nets from values' producers/users."""
    from graphmill.ir.ops.chip import oriented_offset
    by = {n.name: n for n in graph}

    def pos(n):
        if n.op_type in ("Port", "StdCell"):
            return n.attr("x"), n.attr("y")
        m = by[n.attr("macro")]
        dx, dy = oriented_offset(n.attr("x_offset"), n.attr("y_offset"), m.attr("orientation"))
        return m.attr("x") + dx, m.attr("y") + dy

    total = count = 0.0
    for n in graph:
        if n.outputs and n.outputs[0].users:
            w = 1.0 if n.op_type == "Port" else (n.attr("weight") or 1.0)
            pts = [pos(n)] + [pos(u) for u in n.outputs[0].users]
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            total += w * (max(xs) - min(xs) + max(ys) - min(ys))
            count += w
    return total / ((canvas.width + canvas.height) * count)


@pytest.mark.parametrize("folder", ["sample_clustered", "toy_macro_stdcell", "simple_with_coords"])
def test_tiny_netlists_wirelength_independent(folder):
    g = read_netlist(os.path.join(DATA, folder, "netlist.pb.txt"))
    canvas = apply_plc(g, read_plc(os.path.join(DATA, folder, "initial.plc")))
    assert proxy_cost(problem_from_graph(g)).wirelength == pytest.approx(_plain_wirelength(g, canvas), rel=1e-12)


@pytest.fixture(scope="module")
def ariane():
    g = read_netlist(os.path.join(DATA, "ariane133_ng45", "netlist.pb.txt.gz"))
    apply_plc(g, read_plc(os.path.join(DATA, "ariane133_ng45", "legalized.plc")))
    return g


@pytest.mark.slow
def test_ariane_matches_circuit_training(ariane):
    kinds = Counter(n.op_type for n in ariane)
    # legalized.plc's header: 133 hard macros, 7847 hard macro pins, 782 soft macros, 10630 soft pins, 495 ports
    assert kinds == {"HardMacro": 133, "HardMacroPin": 7847, "SoftMacro": 782, "SoftMacroPin": 10630, "Port": 495}
    p = problem_from_graph(ariane)
    r = proxy_cost(p)
    # Circuit Training's evaluator, legalized.plc header: wirelength 0.0736, congestion 0.7259, density 0.4988
    assert round(r.wirelength, 4) == 0.0736
    assert round(r.density, 4) == 0.4988
    assert round(r.congestion, 4) == 0.7259
    assert round(r.proxy, 4) == 0.6859  # 1 / 0.5 / 0.5 (the anchor)
    assert r.wirelength == pytest.approx(_plain_wirelength(ariane, p.canvas), rel=1e-9)


@pytest.mark.slow
def test_incremental_equals_full(ariane):
    p = problem_from_graph(ariane)
    pc = ProxyCost(p)
    rng = np.random.default_rng(0)
    hard, soft = p.hard, p.soft
    for i in range(300):
        m = int(rng.choice(hard if i % 2 else soft))
        pc.move(m, rng.uniform(0, p.canvas.width), rng.uniform(0, p.canvas.height), int(rng.integers(0, 8)))
    inc = pc.report()
    full = ProxyCost(p).report()
    for k in ("wirelength", "density", "congestion"):
        assert getattr(inc, k) == pytest.approx(getattr(full, k), rel=1e-9, abs=1e-12)
