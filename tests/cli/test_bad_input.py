"""Bad input: one line naming the problem and the file (and node), exit status 2, nothing written.

Each case runs the command as its own process (``tests/support/cli_process.py``: forked from a server that
imported the CLI once), for both ``inspect`` and ``roundtrip -o``.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from tests.support.cli_process import run_graphmill
from tests.support.models import relu_model


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return run_graphmill(*args, cwd=cwd, timeout=120)


def _write(path, model: onnx.ModelProto) -> str:
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return str(path)


def make_missing(d):
    return str(d / "nope.onnx"), ["no such file"]


def make_not_onnx(d):
    p = d / "notes.onnx"
    p.write_text("this is a text file, not a model\n" * 10)
    return str(p), ["not an ONNX model"]


def make_truncated(d):
    full = relu_model(node_name="r", ).SerializeToString()
    p = d / "trunc.onnx"
    p.write_bytes(full[: len(full) // 2])
    return str(p), ["truncated or corrupt"]


def make_cycle(d):
    g = helper.make_graph([helper.make_node("Relu", ["b"], ["a"], name="first"),
                           helper.make_node("Neg", ["a"], ["b"], name="second")], "g",
                          [helper.make_tensor_value_info("x", 1, [2])], [helper.make_tensor_value_info("b", 1, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return _write(d / "cycle.onnx", m), ["cycle through", "node 'first'"]


def make_undefined_input(d):
    g = helper.make_graph([helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")], "g",
                          [helper.make_tensor_value_info("x", 1, [2])], [helper.make_tensor_value_info("y", 1, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return _write(d / "undef.onnx", m), ["'adder'", "'ghost'", "no graph input"]


def make_new_opset(d):
    newest = onnx.defs.onnx_opset_version()
    return _write(d / "future.onnx", relu_model(node_name="r", opset=newest + 5)), [f"opset {newest + 5}", "newer than"]


def make_new_ml_opset(d):
    m = relu_model(node_name="r", )
    m.opset_import.add().CopyFrom(helper.make_opsetid("ai.onnx.ml", 99))
    return _write(d / "ml.onnx", m), ["opset 99 of ai.onnx.ml", "newer than"]


def make_new_ir_version(d):
    m = relu_model(node_name="r", )
    m.ir_version = onnx.IR_VERSION + 3
    return _write(d / "ir.onnx", m), [f"IR version {onnx.IR_VERSION + 3}", "newer than"]


def make_external_escape(d):
    inner = d / "m"
    inner.mkdir()
    (d / "secret.bin").write_bytes(b"\0" * 4096)
    w = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "64")):
        e = w.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", 1, [4, 4])], [helper.make_tensor_value_info("y", 1, [4, 4])],
                          [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return _write(inner / "esc.onnx", m), ["leaves the model's folder", "'w'"]


CASES = [make_missing, make_not_onnx, make_truncated, make_cycle, make_undefined_input, make_new_opset,
         make_new_ml_opset, make_new_ir_version, make_external_escape]


@pytest.mark.parametrize("make", CASES, ids=[c.__name__[5:] for c in CASES])
@pytest.mark.parametrize("command", ["inspect", "roundtrip"])
def test_bad_input_gives_one_located_line_and_exit_2(tmp_path, make, command):
    model, needles = make(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = sorted(os.listdir(tmp_path))
    args = [command, model] + (["-o", str(out_dir / "o.onnx")] if command == "roundtrip" else [])
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert os.path.basename(model) in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert os.listdir(out_dir) == []  # nothing written, no temporary left behind
    assert sorted(os.listdir(tmp_path)) == before


def test_roundtrip_refuses_to_overwrite_its_input(tmp_path):
    p = _write(tmp_path / "m.onnx", relu_model(node_name="r", ))
    before = open(p, "rb").read()
    r = run_cli("roundtrip", p, "-o", p)
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr
    assert open(p, "rb").read() == before
    r = run_cli("roundtrip", p, "-o", p, "--force")
    assert r.returncode == 0, r.stderr


def test_unknown_zoo_name_is_a_clear_error():
    r = run_cli("zoo", "resnet9000", "-o", "x.onnx")
    assert r.returncode == 2 and "unknown zoo model 'resnet9000'" in r.stderr


def _external_model(folder, n: int = 8) -> str:
    w = numpy_helper.from_array(np.arange(n * n, dtype=np.float32).reshape(n, n), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", 1, [n, n])],
                          [helper.make_tensor_value_info("y", 1, [n, n])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = os.path.join(folder, "model.onnx")
    onnx.save(m, path, save_as_external_data=True, location="w.bin", size_threshold=0)
    return path


def test_roundtrip_refuses_to_overwrite_the_inputs_weights(tmp_path):
    path = _external_model(tmp_path)
    before = (tmp_path / "w.bin").read_bytes()
    r = run_cli("roundtrip", path, "-o", str(tmp_path / "w.bin"))
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr and "weights" in r.stderr
    assert (tmp_path / "w.bin").read_bytes() == before


def test_roundtrip_keeps_external_data_layout(tmp_path):
    """Reference: onnx's own loader reads the weights graphmill wrote. A weight of 16 KiB goes to OUT.data; one
    under the 1 KiB threshold stays in the model, and no data file is written (an empty one was, which nothing
    referenced: an outside check)."""
    out = tmp_path / "out"
    out.mkdir()
    for n, external in ((64, True), (8, False)):
        (tmp_path / str(n)).mkdir()
        path = _external_model(tmp_path / str(n), n)
        r = run_cli("roundtrip", path, "-o", str(out / f"m{n}.onnx"))
        assert r.returncode == 0, r.stderr
        assert (out / f"m{n}.onnx.data").exists() == external
        kept = onnx.load(str(out / f"m{n}.onnx"), load_external_data=False).graph.initializer[0]
        assert (kept.data_location == onnx.TensorProto.EXTERNAL) == external
        back = onnx.load(str(out / f"m{n}.onnx"))
        np.testing.assert_array_equal(numpy_helper.to_array(back.graph.initializer[0]),
                                      np.arange(n * n, dtype=np.float32).reshape(n, n))
    path = _external_model(tmp_path / "64", 64)
    r = run_cli("roundtrip", path, "-o", str(out / "n.onnx"), "--external-data", "weights.bin")
    assert r.returncode == 0 and (out / "weights.bin").stat().st_size == 64 * 64 * 4
    path = _external_model(tmp_path)
    r = run_cli("roundtrip", path, "-o", str(out / "k.onnx"), "--external-data", "../escape.bin")
    assert r.returncode == 2 and "plain file name" in r.stderr and not (tmp_path / "escape.bin").exists()


@pytest.mark.parametrize("target, needle", [
    ("{d}", "is a folder"),
    ("{d}/missing/out.onnx", "does not exist"),
    ("{d}/m.onnx/out.onnx", "m.onnx' is a file, not a folder"),  # it said "the folder ... does not exist"
    ("", "output path is empty"),
])
def test_unwritable_outputs_are_one_line_errors(tmp_path, target, needle):
    p = _write(tmp_path / "m.onnx", relu_model(node_name="r", ))
    r = run_cli("roundtrip", p, "-o", target.format(d=tmp_path))
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_outputs_get_ordinary_permissions(tmp_path):
    p = _write(tmp_path / "m.onnx", relu_model(node_name="r", ))
    old = os.umask(0o022)
    try:
        r = run_cli("roundtrip", p, "-o", str(tmp_path / "o.onnx"))
    finally:
        os.umask(old)
    assert r.returncode == 0
    assert (os.stat(tmp_path / "o.onnx").st_mode & 0o777) == 0o644
    # a file written over keeps its permissions: a private 0600 output became 0644 (an outside check)
    os.chmod(tmp_path / "o.onnx", 0o600)
    assert run_cli("roundtrip", p, "-o", str(tmp_path / "o.onnx")).returncode == 0
    assert (os.stat(tmp_path / "o.onnx").st_mode & 0o777) == 0o600
    os.chmod(tmp_path / "o.onnx", 0o4755)  # only the permission bits are kept: no setuid bit on a model (a review)
    assert run_cli("roundtrip", p, "-o", str(tmp_path / "o.onnx")).returncode == 0
    assert (os.stat(tmp_path / "o.onnx").st_mode & 0o7777) == 0o755


@pytest.mark.parametrize("args, line", [
    # before: argparse's whole usage block (8 lines for scale-search), then the error
    (["scale-search", "--steps", "abc"],
     "graphmill scale-search: error: argument --steps: invalid int value: 'abc' (see graphmill scale-search --help)"),
    (["optimize", "m.onnx"],
     "graphmill optimize: error: the following arguments are required: -o/--output (see graphmill optimize --help)"),
    # arguments left over after a command are that command's error, not the top parser's
    (["inspect", "a.onnx", "b", "c"],
     "graphmill inspect: error: unrecognized arguments: b c (see graphmill inspect --help)"),
    ([], "graphmill: error: the following arguments are required: COMMAND (see graphmill --help)"),
    # a negative value argparse takes for a flag: said how to write it (it said only "expected one argument")
    (["partition", "m.onnx", "--memory-cap", "-5GB", "-o", "x.onnx"],
     "graphmill partition: error: argument --memory-cap: expected one argument (a value that starts with '-' is "
     "written --memory-cap=-5GB) (see graphmill partition --help)"),
    (["partition", "m.onnx", "--memory", "-5GB", "-o", "x.onnx"],  # argparse takes the abbreviation too
     "graphmill partition: error: argument --memory-cap: expected one argument (a value that starts with '-' is "
     "written --memory=-5GB) (see graphmill partition --help)"),
    (["partition", "m.onnx", "--stages", "-o", "x.onnx"],  # the next flag: no such advice
     "graphmill partition: error: argument --stages: expected one argument (see graphmill partition --help)"),
])
def test_usage_errors_are_one_line_and_exit_2(args, line):
    r = run_cli(*args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == line + "\n"


def test_a_mistyped_command_is_one_line_with_the_nearest_command():
    # reference: the command names graphmill --help lists
    r = run_cli("optimze", "m.onnx")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "did you mean 'optimize'?" in r.stderr
    r = run_cli("chip", "plase")
    assert r.returncode == 2 and "did you mean 'place'?" in r.stderr, r.stderr
    assert "did you mean" not in run_cli("zzzz").stderr  # nothing close: no guess


def test_simulate_without_an_accelerator_says_which_flag_is_missing(tmp_path, capsys):
    """`graphmill simulate MODEL` (its usage shows --accel in brackets) said only what the command needs in general
    (an outside check). Reference: the message written out here; exit 2."""
    from graphmill.cli import main

    path = _write(tmp_path / "m.onnx", relu_model())
    assert main(["simulate", path]) == 2
    assert capsys.readouterr().err == (f"graphmill simulate: error: {path}: --accel A.toml is required: the "
                                       "accelerator to simulate on (e.g. examples/accelerators/edge.toml)\n")


@pytest.mark.parametrize("nodes", [[], [helper.make_node("Relu", ["x"], ["y"])]])
def test_optimize_of_a_graph_without_outputs_says_so(tmp_path, nodes):
    """A graph with no outputs (valid for onnx's checker) ended optimize with ONNX Runtime's C++ assertion text
    ("ort_value_name_idx_map.MaxIdx() > -1 was false") or "At least one output should be requested" (an outside
    check): nothing can be compared, and the line says so and how to optimize it anyway. Reference: onnx's
    checker, which accepts both models, and the --no-compare run, which writes them."""
    inputs = [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])] if nodes else []
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, []), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    p = _write(tmp_path / "m.onnx", model)
    r = run_cli("optimize", p, "-o", str(tmp_path / "o.onnx"))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"graphmill optimize: error: {p}: graph 'g' has no outputs: nothing to compare under ONNX Runtime, which "
        "runs no such model (--no-compare optimizes it anyway)"), r.stderr
    assert not (tmp_path / "o.onnx").exists()
    assert run_cli("optimize", p, "-o", str(tmp_path / "o.onnx"), "--no-compare").returncode == 0
