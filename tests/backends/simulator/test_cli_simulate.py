"""`graphmill simulate` on the command line: --scalesim-compat against SCALE-Sim 3.0.0 itself (USER and CALC
modes, a user's own .cfg and topology), the model in use stated in table and JSON, and uncosted nodes
reported on stderr and in the JSON with partial totals.

References: SCALE-Sim 3.0.0 run here on the same files; the ONNX model's own nodes (a custom-domain op the
simulator has no cost model for).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from tests.support.cli_process import run_graphmill

TOPO = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
        "c1, 12, 12, 3, 3, 6, 20, 1,\nc2, 9, 9, 1, 1, 24, 12, 2,\n")


def run_cli(*args):
    return run_graphmill(*args, timeout=300)


@pytest.mark.parametrize("mode", ["USER", "CALC"])
def test_cli_scalesim_compat_equals_scalesim(scalesim, scalesim_cfg, tmp_path, mode):
    from graphmill.backends.simulator.scalesim_ref import run_scalesim_files

    cfg, topo = tmp_path / "c.cfg", tmp_path / "t.csv"
    cfg.write_text(scalesim_cfg.format(rows=8, cols=4, kb=1, df="os", mode=mode))
    topo.write_text(TOPO)
    ref = run_scalesim_files(str(cfg), str(topo), ["c1", "c2"])
    r = run_cli("simulate", "--scalesim-topology", str(topo), "--scalesim-config", str(cfg), "--scalesim-compat",
                "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["model"] == "scalesim-compat" and d["bandwidth_mode"] == mode.lower() and d["partial"] is False
    assert [(x["total_cycles"], x["stall_cycles"]) for x in d["layers"]] == [(s.total_cycles, s.stall_cycles)
                                                                            for s in ref]
    if mode == "USER":
        assert sum(s.stall_cycles for s in ref) > 0
        plain = json.loads(run_cli("simulate", "--scalesim-topology", str(topo), "--scalesim-config", str(cfg),
                                   "--json").stdout)
        assert plain["model"] == "graphmill" and plain["total_cycles"] != d["total_cycles"]
    else:
        for x, s in zip(d["layers"], ref):
            assert tuple(x["dram_bw_needed"].values()) == pytest.approx(s.dram_bw, rel=1e-12)
    table = run_cli("simulate", "--scalesim-topology", str(topo), "--scalesim-config", str(cfg), "--scalesim-compat")
    assert "model: scalesim-compat" in table.stdout and table.returncode == 0


def test_cli_uncosted_nodes_on_stderr_and_json(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [16, 8], np.ones(128, np.float32).tolist())
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                           helper.make_node("Mystery", ["h"], ["m"], name="mystery", domain="my.ops"),
                           helper.make_node("Relu", ["m"], ["y"], name="relu")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], [w],
                          value_info=[helper.make_tensor_value_info("m", TensorProto.FLOAT, [4, 8])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)])
    onnx.save(m, tmp_path / "m.onnx")
    r = run_cli("simulate", str(tmp_path / "m.onnx"), "--accel", "examples/accelerators/edge.toml", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["partial"] is True and [(u["name"], u["op"]) for u in d["uncosted"]] == [("mystery", "my.ops::Mystery")]
    assert [x["name"] for x in d["layers"]] == ["mm", "relu"]
    assert r.stderr.strip().splitlines() == ["graphmill simulate: warning: the totals are partial: 1 node(s) not "
                                             "costed: mystery (my.ops::Mystery)"]
    t = run_cli("simulate", str(tmp_path / "m.onnx"), "--accel", "examples/accelerators/edge.toml")
    assert "partial: the totals leave out 1 node(s) the simulator cannot cost: mystery (my.ops::Mystery)" in t.stdout
    assert "model: graphmill" in t.stdout


def test_symbolic_image_sizes_take_dim_and_say_when_they_were_one(tmp_path):
    """Before: an input [N, 3, H, W] was simulated as a 1x1 image (57 cycles) with nothing said, and simulate had
    no --dim. Reference: the same Conv in a model with the sizes fixed, simulated by the same command."""
    def conv_model(path, dims):
        w = onnx.numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
        g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="c")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return str(path)

    accel = "examples/accelerators/edge.toml"
    sym, fixed = conv_model(tmp_path / "s.onnx", ["N", 3, "H", "W"]), conv_model(tmp_path / "f.onnx", [2, 3, 32, 32])
    r = run_cli("simulate", sym, "--accel", accel, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["notes"] == ["symbolic dimension(s) H, N, W simulated at size 1 (--dim NAME=SIZE "
                                             "sets them)"]
    bound = run_cli("simulate", sym, "--accel", accel, "--json", "--dim", "N=2", "--dim", "H=32", "--dim", "W=32")
    ref = run_cli("simulate", fixed, "--accel", accel, "--json")
    assert bound.returncode == 0 and ref.returncode == 0, bound.stderr + ref.stderr
    got, want = json.loads(bound.stdout), json.loads(ref.stdout)
    assert got["notes"] == [] and got["total_cycles"] == want["total_cycles"] > 1000
    bad = run_cli("simulate", sym, "--accel", accel, "--dim", "h=3")
    assert bad.returncode == 2 and "--dim h: graph 'g' has no symbolic dimension named 'h'; its symbols: H, N, W" \
        in bad.stderr


def test_verbose_says_what_it_simulates_and_json_stays_clean(tmp_path):
    """`-v` ("log progress") printed nothing for the 20 s a big model takes (an outside check): it says what it
    lowers and how many layers it simulates (then a line a second while they run). Reference: the model's own
    node count and the report's layer count; stdout holds the JSON alone."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [16, 8], np.ones(128, np.float32).tolist())
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                           helper.make_node("Relu", ["h"], ["y"], name="relu")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    r = run_cli("simulate", str(tmp_path / "m.onnx"), "--accel", "examples/accelerators/edge.toml", "--json", "-v")
    assert r.returncode == 0, r.stderr
    layers = len(json.loads(r.stdout)["layers"])
    assert r.stderr.strip().splitlines()[:2] == ["graphmill.simulator: lowering 2 nodes of graph 'g'",
                                                 f"graphmill.simulator: simulating {layers} layers on edge"]


def test_json_layers_of_unnamed_and_repeated_nodes_have_distinct_names(tmp_path):
    """Unnamed layers were named by their op and a repeated node name was kept, so `--json` listed two layers
    "Relu" that a script keying by name merged (an outside check). They take `place`'s and `partition`'s unique
    names. Reference: the model's own nodes, four of them, each one layer."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 8], np.ones(64, np.float32).tolist())
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["a"]),
                           helper.make_node("Relu", ["a"], ["b"]),
                           helper.make_node("MatMul", ["b", "w"], ["c"], name="mm"),
                           helper.make_node("MatMul", ["c", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    r = run_cli("simulate", str(tmp_path / "m.onnx"), "--accel", "examples/accelerators/edge.toml", "--json")
    assert r.returncode == 0, r.stderr
    layers = json.loads(r.stdout)["layers"]
    assert [x["op"] for x in layers] == ["Relu", "Relu", "MatMul", "MatMul"]
    assert len({x["name"] for x in layers}) == 4 and layers[2]["name"] == "mm"


def test_a_replayed_step_time_of_half_a_cycle_is_printed_as_it_is(tmp_path, capsys, monkeypatch):
    """A replayed step of 20.5 cycles printed as "20" (Python's half-to-even rounding; an outside check).
    Reference: the replay's own number, here 20.5 by construction."""
    from graphmill import api
    from graphmill.cli import main
    from tests.support.models import save_relu_model

    model = save_relu_model(tmp_path)
    monkeypatch.setattr(api, "replay_placement", lambda graph: {"makespan": 20.5, "units": "cycles at 1000 MHz",
                                                                "devices": ["a", "b"], "method": "heft"})
    assert main(["simulate", model, "--accel", "examples/accelerators/edge.toml"]) == 0
    assert "placement (heft) replayed on 2 devices: step time 20.50 cycles at 1000 MHz" in capsys.readouterr().out
