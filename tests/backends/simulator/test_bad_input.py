"""Bad input to the simulator: a clear error naming the field or file:line; exit 2 from the CLI, nothing written.

Reference: the issue's list (zero/negative sizes, unknown dataflow, buffer too small for one tile,
malformed topology line).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from graphmill.backends.simulator import load_accel, read_topology
from graphmill.backends.simulator.topology import read_scalesim_config
from graphmill.ir import UserInputError

GOOD = """name = "t"
[array]
rows = 8
cols = 8
dataflow = "ws"
[memory]
ifmap_kb = 64
filter_kb = 64
ofmap_kb = 64
dram_bw_words = 8
"""

BAD_CONFIGS = [
    ("rows = 8", "rows = 0", "array.rows"),
    ("cols = 8", "cols = -4", "array.cols"),
    ('dataflow = "ws"', 'dataflow = "rs"', "array.dataflow"),
    ("ifmap_kb = 64", "ifmap_kb = 0.005", "memory.ifmap_kb is too small for one tile"),
    ("filter_kb = 64", "filter_kb = -1", "memory.filter_kb"),
    ("dram_bw_words = 8", "dram_bw_words = 0", "memory.ifmap_bw_words"),
    ("rows = 8", "rows = 8.5", "array.rows"),
]


@pytest.mark.parametrize("old,new,expect", BAD_CONFIGS)
def test_bad_config_names_field(tmp_path, old, new, expect):
    p = tmp_path / "a.toml"
    p.write_text(GOOD.replace(old, new))
    with pytest.raises(UserInputError, match=expect.replace(".", r"\.")):
        load_accel(p)


def test_good_config_and_presets_load():
    load_accel_text = load_accel
    root = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "accelerators")
    for f in ("edge.toml", "tpu-v1-like.toml", "scalesim-default.toml"):
        cfg = load_accel_text(os.path.join(root, f))
        assert cfg.rows > 0
    assert load_accel(os.path.join(root, "tpu-v1-like.toml")).rows == 256


TOPO_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


@pytest.mark.parametrize("line,expect", [
    ("conv1, 10, 10, 3, 3, 4,\n", ":2: expected 8 fields"),
    ("conv1, 10, ten, 3, 3, 4, 8, 1,\n", ":2: IFMAP Width must be an integer"),
    ("conv1, 10, 10, 3, 3, 0, 8, 1,\n", ":2: Channels must be positive"),
    ("conv1, 4, 4, 5, 5, 4, 8, 1,\n", ":2: filter 5x5 is larger"),
])
def test_malformed_topology_line_names_file_and_line(tmp_path, line, expect):
    p = tmp_path / "t.csv"
    p.write_text(TOPO_HEADER + line)
    with pytest.raises(UserInputError, match=expect):
        read_topology(p)


def test_topology_reads_conv_gemm_and_depthwise(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(TOPO_HEADER + "c1, 10, 10, 3, 3, 4, 8, 1,\nDP2, 6, 6, 3, 3, 3, 1, 1,\n")
    layers = read_topology(p)
    assert [x.name for x in layers] == ["c1", "DP2Channel_0", "DP2Channel_1", "DP2Channel_2"]
    assert (layers[0].M, layers[0].N, layers[0].K) == (64, 8, 36)
    q = tmp_path / "g.csv"
    q.write_text("Layer, M, N, K,\ng1, 9, 7, 5,\n")
    g = read_topology(q)[0]
    assert (g.M, g.N, g.K) == (9, 7, 5)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "graphmill.cli", *args], capture_output=True, text=True,
                          timeout=120)


CFG = """[general]
run_name = t
[architecture_presets]
ArrayHeight: 8
ArrayWidth: 8
IfmapSramSzkB: 64
FilterSramSzkB: 64
OfmapSramSzkB: 64
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth : 8
Dataflow : ws
[layout]
IfmapSRAMBankBandwidth: 8
FilterSRAMBankBandwidth: 8
[run_presets]
InterfaceBandwidth: USER
"""


@pytest.mark.parametrize("topo,cfg,expect", [
    (TOPO_HEADER + "c1, 10, 10, 3, 3, 4,\n", CFG, "t.csv:2: expected 8 fields"),
    (TOPO_HEADER + "c1, 10, 10, 3, 3, 4, 8, 1,\n", CFG.replace("Dataflow : ws", "Dataflow : xs"), "Dataflow"),
    (TOPO_HEADER + "c1, 10, 10, 3, 3, 4, 8, 1,\n", CFG.replace("ArrayHeight: 8", "ArrayHeight: 0"), "array.rows"),
    (TOPO_HEADER + "c1, 10, 10, 3, 3, 4, 8, 1,\n", CFG.replace("OfmapSramSzkB: 64", "OfmapSramSzkB: -2"),
     "memory.ofmap_kb"),
])
def test_cli_scalesim_bad_input_exit_2_nothing_written(tmp_path, topo, cfg, expect):
    (tmp_path / "t.csv").write_text(topo)
    (tmp_path / "c.cfg").write_text(cfg)
    out = tmp_path / "plot.png"
    r = run_cli("simulate", "--scalesim-topology", str(tmp_path / "t.csv"), "--scalesim-config",
                str(tmp_path / "c.cfg"), "--plot", str(out))
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists() and r.stdout == ""


def test_cli_scalesim_good_json(tmp_path):
    import json

    (tmp_path / "t.csv").write_text(TOPO_HEADER + "c1, 10, 10, 3, 3, 4, 8, 1,\n")
    (tmp_path / "c.cfg").write_text(CFG)
    r = run_cli("simulate", "--scalesim-topology", str(tmp_path / "t.csv"), "--scalesim-config",
                str(tmp_path / "c.cfg"), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    # compute cycles: ws, K=36, N=8, M=64 on 8x8: folds ceil(36/8)*ceil(8/8) = 5, L = 2*8+8+64-2 = 86
    assert d["layers"][0]["compute_cycles"] == 5 * 86 - 1
    assert read_scalesim_config(tmp_path / "c.cfg").rows == 8


def test_cli_model_bad_accel_exit_2(tmp_path):
    (tmp_path / "a.toml").write_text(GOOD.replace('dataflow = "ws"', 'dataflow = "rs"'))
    out = tmp_path / "p.png"
    r = run_cli("simulate", str(tmp_path / "missing.onnx"), "--accel", str(tmp_path / "a.toml"), "--plot", str(out))
    assert r.returncode == 2 and "array.dataflow" in r.stderr and not out.exists()
