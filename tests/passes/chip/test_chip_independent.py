"""The proxy cost (wirelength, density and congestion) against ``ct_reference.py``, an evaluator that imports nothing
from graphmill (its own netlist and .plc parsers; the formulas of the public TILOS reimplementation of Circuit
Training's evaluator). Placements are generated here from the reference's own parse of the files (random positions,
overlaps allowed: the cost must not care; hard macros in all eight LEF/DEF orientations, which turn pins and, for
E/W/FE/FW, the footprint) and written as ``.plc`` text, so graphmill's reading of the file is checked too. Anchors:
the component values Circuit Training wrote in Ariane133's ``legalized.plc`` header (sample_clustered's header
density, 0.2305, is not that of its own node lines)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from graphmill import api

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ct_reference  # noqa: E402

DATA = os.path.join(HERE, "..", "..", "data", "chip")
TINY = ["sample_clustered", "toy_macro_stdcell", "simple_with_coords"]
ORIENTATIONS = ["N", "S", "FN", "FS", "E", "W", "FE", "FW"]


def _perturbed_plc(netlist: str, plc: str, out: str, rng) -> None:
    """``plc`` with every movable macro at a random position inside the canvas (hard macros in a random
    orientation, soft macros N), written to ``out`` with ``plc``'s header."""
    nodes = ct_reference.parse_netlist(netlist)
    hdr, place = ct_reference.parse_plc(plc)
    width, height = hdr["size"]
    header = [ln for ln in open(plc).read().splitlines() if ln.startswith("#")]
    body = []
    for i, (x, y, o, fixed) in sorted(place.items()):
        a = nodes[i]["attrs"]
        if not fixed and a.get("type") in ("MACRO", "macro"):
            o = str(rng.choice(ORIENTATIONS)) if a["type"] == "MACRO" else "N"
            w, h = ct_reference.size(nodes[i], o)
            x, y = float(rng.uniform(w / 2, width - w / 2)), float(rng.uniform(h / 2, height - h / 2))
        body.append(f"{i} {x!r} {y!r} {o} {fixed}")
    with open(out, "w") as f:
        f.write("\n".join(header + body) + "\n")


def _agree(netlist: str, plc: str) -> None:
    ref, ours = ct_reference.evaluate(netlist, plc), api.chip_cost(netlist, plc)
    for k in ("wirelength", "density", "congestion", "proxy"):
        assert ours[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-12), (plc, k, ours[k], ref[k])
    assert ours["legal"] == ref["legal"], (plc, ref["why"])


@pytest.mark.parametrize("folder", TINY)
def test_tiny_netlists_against_independent_evaluator(folder, tmp_path):
    netlist, plc = os.path.join(DATA, folder, "netlist.pb.txt"), os.path.join(DATA, folder, "initial.plc")
    _agree(netlist, plc)
    rng = np.random.default_rng(17)
    for trial in range(5):
        out = str(tmp_path / f"p{trial}.plc")
        _perturbed_plc(netlist, plc, out, rng)
        _agree(netlist, out)


@pytest.mark.slow
def test_ariane_against_independent_evaluator_and_circuit_trainings_header(tmp_path):
    netlist = os.path.join(DATA, "ariane133_ng45", "netlist.pb.txt.gz")
    plc = os.path.join(DATA, "ariane133_ng45", "legalized.plc")
    ref = ct_reference.evaluate(netlist, plc)
    # Circuit Training's own numbers in legalized.plc: Wirelength : 4763106.815, costs 0.0736 / 0.4988 / 0.7259
    assert ref["hpwl"] == pytest.approx(4763106.815, rel=1e-6)
    assert (round(ref["wirelength"], 4), round(ref["density"], 4), round(ref["congestion"], 4)) == (0.0736, 0.4988,
                                                                                                   0.7259)
    ours = api.chip_cost(netlist, plc)
    for k in ("wirelength", "density", "congestion", "proxy"):
        assert ours[k] == pytest.approx(ref[k], rel=1e-9), k
    out = str(tmp_path / "perturbed.plc")
    _perturbed_plc(netlist, plc, out, np.random.default_rng(5))
    _agree(netlist, out)
