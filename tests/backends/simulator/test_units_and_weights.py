"""One unit of DRAM traffic for the array and the vector unit (words x word_bytes), the recurrent weights'
DRAM model, and SCALE-Sim .cfg settings graphmill does not model.

References: hand computations from the accelerator's definitions (config.py: bandwidths in words per cycle,
``word_bytes`` bytes per word; the vector unit does ``lanes`` operations per cycle); the simulator's own
cost of a standalone GEMM layer (checked against SCALE-Sim 3.0.0 in test_vs_scalesim.py); SCALE-Sim 3.0.0's
scale_config.py / single_layer_sim.py (it reads only the first ``Bandwidth`` value and models sparsity).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphmill
from graphmill import GraphBuilder
from graphmill.backends.simulator import gemm_layer, read_scalesim_config
from graphmill.backends.simulator.config import from_dict
from graphmill.backends.simulator.engine import simulate_layer_memory
from graphmill.errors import UserInputError
from tests.support.cli_process import run_graphmill


def _accel(word_bytes: int = 1, filter_kb: float = 256, mode: str = "user") -> dict:
    mem = {"ifmap_kb": 256, "filter_kb": filter_kb, "ofmap_kb": 128, "word_bytes": word_bytes}
    if mode == "user":
        mem["dram_bw_words"] = 8
    else:
        mem["interface_bandwidth"] = "calc"
    return {"name": "edge", "array": {"rows": 16, "cols": 16, "dataflow": "os"}, "memory": mem,
            "vector": {"lanes": 16}}


def _add_graph():
    """Add of two [8, 64] float32 activations: 1,024 elements read, 512 written."""
    b = GraphBuilder("add", opset=17)
    x = b.input("x", "float32", [8, 64])
    y = b.input("y", "float32", [8, 64])
    b.output(b.Add(x, y), "z")
    return b.build()


def test_vector_op_counts_words_like_the_array():
    g = _add_graph()
    r1 = graphmill.simulate(g, _accel(1)).layers[0]
    r4 = graphmill.simulate(g, _accel(4)).layers[0]
    # hand count: compute 512 / 16 lanes = 32 cycles; DRAM 1,024 words read at 8 words/cycle = 128 cycles,
    # 512 words written at 8 = 64: the DRAM bounds it at 128 cycles (96 stall), whatever the word size
    assert (r1.compute_cycles, r1.total_cycles, r1.stall_cycles) == (32, 128, 96)
    assert (r1.dram_read_bytes, r1.dram_write_bytes) == (1024, 512)
    assert (r4.dram_read_bytes, r4.dram_write_bytes) == (4 * 1024, 4 * 512)
    assert r4.total_cycles >= r1.total_cycles  # before: 512 cycles at 1 byte/word, 128 at 4 (faster)
    # the array's unit: a MatMul's bytes also scale with word_bytes (words x word_bytes)
    b = GraphBuilder("mm", opset=17)
    x = b.input("x", "float32", [1, 64])
    b.output(b.MatMul(x, b.const(np.ones((64, 512), np.float32))), "y")
    m1, m4 = (graphmill.simulate(b.build(), _accel(w)).layers[0] for w in (1, 4))
    assert m1.dram_read_bytes == 64 + 64 * 512 and m4.dram_read_bytes == 4 * m1.dram_read_bytes


def test_vector_op_calc_mode_needs_words_per_cycle():
    g = _add_graph()
    for wb in (1, 4):
        r = graphmill.simulate(g, _accel(wb, mode="calc")).layers[0]
        # no stall; 1,024 words over 32 cycles = 32 words/cycle read, 512 / 32 = 16 written
        assert r.total_cycles == 32 and r.dram_bw_needed == {"ifmap": 32.0, "filter": 0.0, "ofmap": 16.0}


def _lstm(steps=10, batch=1, inp=16, hidden=32):
    b = GraphBuilder("lstm", opset=17)
    x = b.input("x", "float32", [steps, batch, inp])
    w = b.const(np.zeros((1, 4 * hidden, inp), np.float32))
    r = b.const(np.zeros((1, 4 * hidden, hidden), np.float32))
    outs = b.op("LSTM", x, w, r, outputs=2, hidden_size=hidden, name="lstm")
    b.output(outs[0], "y")
    return b.build(infer=False)


def test_lstm_gate_layer_counts_words():
    # per step and batch row: reads 2 x 4H gate pre-activations + c_{t-1} (H), writes h_t, c_t; H = 32
    for wb in (1, 4):
        gates = graphmill.simulate(_lstm(), _accel(wb)).layers[-1]
        assert gates.name == "lstm/gates"
        assert gates.dram_read_bytes == 10 * (2 * 128 + 32) * wb and gates.dram_write_bytes == 10 * 2 * 32 * wb


def test_recurrent_weights_resident_read_once():
    wb = 4
    cfg = from_dict(_accel(wb))  # filter buffer 65,536 words: R (128 x 32 = 4,096 words) fits its active half
    rep = graphmill.simulate(_lstm(), cfg)
    xw, hr = rep.layers[0], rep.layers[1]
    # X·W for all 10 steps at once: one [10,16]x[16,128] matmul, as the same standalone GEMM costs it
    assert (xw.name, xw.shape, xw.repeat) == ("lstm/XW", "M10 N128 K16", 1)
    one_xw = simulate_layer_memory(gemm_layer("g", "Gemm", 10, 128, 16), cfg)
    assert xw.total_cycles == one_xw.total_cycles and xw.macs == 10 * 128 * 16
    # H·R: 10 steps of [1,32]x[32,128]; R read once (4,096 words), h_{t-1} each step (32 words)
    one = simulate_layer_memory(gemm_layer("g", "Gemm", 1, 128, 32), cfg)
    assert one.filter_dram_words == 4096 and one.ifmap_dram_words == 32
    assert hr.repeat == 10 and hr.total_cycles == 10 * one.total_cycles
    assert hr.dram_read_bytes == (4096 + 10 * 32) * wb  # before: 10 x (4,096 + 32) words


def test_recurrent_weights_not_resident_reread_and_load_charged():
    wb = 1
    cfg = from_dict(_accel(wb, filter_kb=6))  # 6,144 words: active half 3,072 < R's 4,096 words
    hr = graphmill.simulate(_lstm(), cfg).layers[1]
    one = simulate_layer_memory(gemm_layer("g", "Gemm", 1, 128, 32), cfg)
    # every step re-reads R; steps 2..10 also wait for their filter window: min(3,072, filter words) at 8/cycle
    load = -(-min(3072, one.filter_dram_words) // 8)
    assert load == 384
    assert hr.dram_read_bytes == 10 * (one.ifmap_dram_words + one.filter_dram_words) * wb
    assert hr.stall_cycles == 10 * one.stall_cycles + 9 * load
    assert hr.total_cycles == 10 * one.compute_cycles + hr.stall_cycles


@pytest.mark.parametrize("old,new,expect", [
    ("SparsitySupport = false", "SparsitySupport = true",
     r"c\.cfg:\d+: \[sparsity\] SparsitySupport is true: graphmill does not model"),
    ("bandwidth = 8", "bandwidth = 3,4,5",
     r"c\.cfg:\d+: \[architecture_presets\] Bandwidth has 3 values \(3, 4, 5\); SCALE-Sim 3\.0\.0 uses only the first"),
    ("UseRamulatorTrace = False", "UseRamulatorTrace = True", r"c\.cfg:\d+: \[run_presets\] UseRamulatorTrace"),
    ("IfmapCustomLayout = False", "IfmapCustomLayout = True", r"c\.cfg:\d+: \[layout\] IfmapCustomLayout"),
    # misspelled: read as absent (the dense, default numbers, exit 0), where SCALE-Sim 3.0.0 stops on the missing
    # setting (NoOptionError; an outside check)
    ("SparsitySupport = false", "SparsitySuport = true",
     r"c\.cfg:\d+: \[sparsity\] SparsitySuport is not a SCALE-Sim 3\.0\.0 setting \(did you mean 'SparsitySupport'\?\)$"),
    ("UseRamulatorTrace = False", "UseRamulatorTrase = True", r"\[run_presets\] UseRamulatorTrase is not a SCALE-Sim"),
    ("IfmapCustomLayout = False", "IfmapCustomLayot = True", r"\[layout\] IfmapCustomLayot is not a SCALE-Sim"),
])
def test_unmodelled_scalesim_settings_refused(scalesim_cfg, tmp_path, old, new, expect):
    p = tmp_path / "c.cfg"
    text = scalesim_cfg.format(rows=8, cols=4, kb=1, df="os", mode="USER")
    assert old in text
    p.write_text(text.replace(old, new))
    with pytest.raises(UserInputError, match=expect) as e:
        read_scalesim_config(p)
    assert "\n" not in str(e.value)
    line = int(str(e.value).split(":")[1])
    assert new in p.read_text().split("\n")[line - 1]  # the line named is the setting's
    ok = tmp_path / "ok.cfg"
    ok.write_text(text)
    read_scalesim_config(ok)  # the unchanged file is accepted


@pytest.mark.parametrize("mode,compat", [("USER", True), ("USER", False), ("CALC", True)])
def test_no_dram_reads_note_now_compat_reads_are_scalesims(scalesim_cfg, tmp_path, mode, compat):
    """USER-mode compat DRAM reads now equal SCALE-Sim's (test_vs_scalesim.py), so no note says otherwise."""
    cfg, topo = tmp_path / "c.cfg", tmp_path / "t.csv"
    cfg.write_text(scalesim_cfg.format(rows=8, cols=4, kb=1, df="os", mode=mode))
    topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
                    "Strides,\nc1, 12, 12, 3, 3, 6, 20, 1,\n")
    args = ["simulate", "--scalesim-topology", str(topo), "--scalesim-config", str(cfg)] + (
        ["--scalesim-compat"] if compat else [])
    table = run_graphmill(*args, timeout=300)
    js = run_graphmill(*args, "--json", timeout=300)
    assert table.returncode == 0 and js.returncode == 0, table.stderr + js.stderr
    notes = json.loads(js.stdout)["notes"]
    assert notes == [] and "note:" not in table.stdout
