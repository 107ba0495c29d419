"""The proxy cost's wirelength and density against an independent plain-Python evaluator written here from the
TILOS MacroPlacement notes on Circuit Training's evaluator (Docs/ProxyCost, CodeElements/Plc_client README):
net HPWL weighted by the driver pin's weight over (canvas width + height) x net count; pins at the macro centre
plus the offset turned by the orientation; grid-cell density = area of hard and soft macros overlapping the cell
over the cell's area (overlaps counted twice), cost = 0.5 x the mean of the densest 10% of cells (a grid of
fewer than 10 cells: the mean of the occupied ones). Placements are generated here (random positions and
N/S/FN/FS orientations the tests elsewhere have not seen) and written as ``.plc`` text by this file, so the
reading of the file is checked too. Anchors: the density and the raw wirelength Circuit Training wrote in Ariane133's
``legalized.plc`` header (sample_clustered's header density, 0.2305, is not that of its own node lines)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from graphmill.frontend.chip.netlist import read_netlist
from graphmill.frontend.chip.plc import apply_plc, modules_by_index, parse_plc_text, read_plc
from graphmill.passes.chip.cost import proxy_cost
from graphmill.passes.chip.problem import problem_from_graph

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "chip")
TINY = ["sample_clustered", "toy_macro_stdcell", "simple_with_coords"]
# LEF/DEF orientations a macro may take in Circuit Training, as (sx, sy) sign flips of a pin offset
TURN = {"N": (1, 1), "S": (-1, -1), "FN": (-1, 1), "FS": (1, -1)}


def _header(path: str) -> tuple[list[str], dict[str, float]]:
    lines = [ln for ln in open(path).read().splitlines() if ln.startswith("#")]
    vals: dict[str, float] = {}
    for ln in lines:
        body = ln[1:].strip()
        if body.startswith("Columns"):
            parts = body.replace(":", " ").split()
            vals["cols"], vals["rows"] = float(parts[1]), float(parts[3])
        elif body.startswith("Width"):
            parts = body.replace(":", " ").split()
            vals["W"], vals["H"] = float(parts[1]), float(parts[3])
        elif body.startswith("Wirelength :"):
            vals["raw_wl"] = float(body.split(":")[1])
        elif body.startswith("Density cost"):
            vals["density"] = float(body.split(":")[1])
    return lines, vals


def _evaluate(graph, place: dict[str, tuple[float, float, str]], W: float, H: float, cols: int, rows: int):
    """(raw HPWL, wirelength cost, density cost) of ``place`` (node name -> x, y, orientation)."""
    by = {n.name: n for n in graph}

    def pin_xy(n):
        if n.op_type in ("Port", "StdCell", "HardMacro", "SoftMacro"):
            return place[n.name][0], place[n.name][1]
        mx, my, o = place[n.attr("macro")]
        sx, sy = TURN[o if o in TURN else "N"]
        return mx + sx * n.attr("x_offset"), my + sy * n.attr("y_offset")

    raw = count = 0.0
    for n in graph:
        if n.op_type not in ("Port", "HardMacroPin", "SoftMacroPin", "StdCell") or not n.outputs:
            continue
        sinks = n.outputs[0].users
        if not sinks:
            continue
        w = 1.0 if n.op_type == "Port" else float(n.attr("weight") or 1.0)
        pts = [pin_xy(n)] + [pin_xy(by[u.name]) for u in sinks]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        raw += w * (max(xs) - min(xs) + max(ys) - min(ys))
        count += w
    gw, gh = W / cols, H / rows
    dens = [0.0] * (cols * rows)
    for n in graph:
        if n.op_type not in ("HardMacro", "SoftMacro"):
            continue
        x, y, _ = place[n.name]
        w, h = n.attr("width"), n.attr("height")  # N/S/FN/FS keep width and height
        x0, x1, y0, y1 = x - w / 2, x + w / 2, y - h / 2, y + h / 2
        for r in range(rows):
            oy = min(y1, (r + 1) * gh) - max(y0, r * gh)
            if oy <= 0:
                continue
            for c in range(cols):
                ox = min(x1, (c + 1) * gw) - max(x0, c * gw)
                if ox > 0:
                    dens[r * cols + c] += ox * oy / (gw * gh)
    if cols * rows < 10:
        occ = [d for d in dens if d > 0]
        density = 0.5 * sum(occ) / len(occ) if occ else 0.0
    else:
        k = math.floor(cols * rows * 0.1)
        density = 0.5 * sum(sorted(dens, reverse=True)[:k]) / k
    return raw, raw / ((W + H) * count), density


def _initial(graph, plc_path):
    plc = read_plc(plc_path)
    place = {}
    for idx, node in modules_by_index(graph).items():
        line = plc.nodes.get(idx)
        if line is None:  # a node the file leaves out stays where the netlist puts it
            place[node.name] = (node.attr("x"), node.attr("y"), node.attr("orientation") or "N")
        else:
            place[node.name] = (line.x, line.y, line.orientation)
    return place


def _perturbed(graph, place, W, H, rng):
    """Every macro at a random position inside the canvas (overlaps allowed: the cost must not care), hard
    macros in a random N/S/FN/FS orientation, soft macros N; ports where they were."""
    out = dict(place)
    for n in graph:
        if n.op_type in ("HardMacro", "SoftMacro"):
            w, h = n.attr("width"), n.attr("height")
            o = str(rng.choice(list(TURN))) if n.op_type == "HardMacro" else "N"
            out[n.name] = (float(rng.uniform(w / 2, W - w / 2)), float(rng.uniform(h / 2, H - h / 2)), o)
    return out


def _graphmill(graph, header_lines, place):
    """graphmill's cost of ``place``, read from a .plc written here."""
    body = []
    for idx, node in sorted(modules_by_index(graph).items()):
        x, y, o = place[node.name]
        body.append(f"{idx} {x!r} {y!r} {o if node.op_type != 'Port' else '-'} 0")
    apply_plc(graph, parse_plc_text("\n".join(header_lines + body) + "\n"))
    return proxy_cost(problem_from_graph(graph))


@pytest.mark.parametrize("folder", TINY)
def test_tiny_netlists_against_independent_evaluator(folder):
    graph = read_netlist(os.path.join(DATA, folder, "netlist.pb.txt"))
    plc_path = os.path.join(DATA, folder, "initial.plc")
    header, hv = _header(plc_path)
    W, H, cols, rows = hv["W"], hv["H"], int(hv["cols"]), int(hv["rows"])
    place = _initial(graph, plc_path)
    rng = np.random.default_rng(17)
    for trial in range(6):
        if trial:
            place = _perturbed(graph, place, W, H, rng)
        _, wl, den = _evaluate(graph, place, W, H, cols, rows)
        r = _graphmill(graph, header, place)
        assert r.wirelength == pytest.approx(wl, rel=1e-9, abs=1e-12), (folder, trial)
        assert r.density == pytest.approx(den, rel=1e-9, abs=1e-12), (folder, trial)


@pytest.mark.slow
def test_ariane_perturbed_against_independent_evaluator():
    graph = read_netlist(os.path.join(DATA, "ariane133_ng45", "netlist.pb.txt.gz"))
    plc_path = os.path.join(DATA, "ariane133_ng45", "legalized.plc")
    header, hv = _header(plc_path)
    W, H, cols, rows = hv["W"], hv["H"], int(hv["cols"]), int(hv["rows"])
    place = _initial(graph, plc_path)
    raw, wl, den = _evaluate(graph, place, W, H, cols, rows)
    # Circuit Training's own numbers in legalized.plc: Wirelength : 4763106.815, density cost 0.4988
    assert raw == pytest.approx(hv["raw_wl"], rel=1e-6)
    assert round(den, 4) == hv["density"]
    rng = np.random.default_rng(5)
    for _ in range(2):
        place = _perturbed(graph, place, W, H, rng)
        _, wl, den = _evaluate(graph, place, W, H, cols, rows)
        r = _graphmill(graph, header, place)
        assert r.wirelength == pytest.approx(wl, rel=1e-9)
        assert r.density == pytest.approx(den, rel=1e-9)
