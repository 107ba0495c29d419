"""No command writes an output over a file it reads, or two outputs to one file (``util.files.check_output_paths``).

Found by new users' walk-throughs, each exit 0 before: ``train-policy -o p.npz --json p.npz`` left the report as
the policy, ``--checkpoint p.npz`` deleted the policy with the finished checkpoint, ``--checkpoint p.json``
deleted its metadata; ``place --json myedge.toml --accel myedge.toml`` replaced the accelerator with a report
(``--policy`` likewise); ``supernet select -o myedge.toml --accel myedge.toml`` wrote the child over it; ``optimize
-o m.onnx --json m.onnx`` left the report as the model; ``simulate --plot`` over the model, the accelerator or a
SCALE-Sim file; ``partition`` over its accelerator or devices file, or two outputs on one path; ``train`` over an
input model in its ``--out`` folder, ``--json`` over the trained model; ``scale-search --checkpoint`` over its
results (the resume then failed) or over the input model. Reference: the files' bytes before and after, and the
message written out by hand here. Every refusal is one line, exit 2, before any work.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

import graphmill
from graphmill.cli import main
from graphmill.frontend import zoo

EDGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples",
                    "accelerators", "edge.toml")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(EDGE, "myedge.toml")
    graphmill.save(zoo.build("resnet18", width=0.25, resolution=32, batch=1), "m.onnx")
    (tmp_path / "pol.npz").write_bytes(b"not read: refused first")
    (tmp_path / "pol.json").write_text("{}")
    return tmp_path


def _refused(capsys, argv, says):
    before = {f: open(f, "rb").read() for f in os.listdir(".") if os.path.isfile(f)}
    try:
        code = main(argv)
    except SystemExit as e:  # a usage error: argparse exits with the line said
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert {f: open(f, "rb").read() for f in os.listdir(".") if os.path.isfile(f)} == before


@pytest.mark.parametrize("argv, says", [
    (["train-policy", "-o", "a.npz", "--quick", "--steps", "1", "--json", "a.npz"],
     "argument --json: 'a.npz': the name of a .npz file, for a JSON report"),  # refused by its name before the collision
    (["train-policy", "-o", "b.npz", "--quick", "--steps", "1", "--checkpoint", "b.npz"],
     "-o b.npz and --checkpoint b.npz name the same file"),
    (["train-policy", "-o", "c.npz", "--quick", "--steps", "1", "--checkpoint", "c.json"],
     "c.json and --checkpoint c.json name the same file"),
    (["place", "m.onnx", "--devices", "2", "--accel", "myedge.toml", "-o", "p.onnx", "--json", "myedge.toml"],
     "argument --json: 'myedge.toml': the name of a .toml file, for a JSON report"),
    (["place", "m.onnx", "--devices", "2", "--method", "learned", "--policy", "pol.npz", "-o", "p.onnx",
      "--json", "pol.npz"], "argument --json: 'pol.npz': the name of a .npz file, for a JSON report"),
    (["place", "m.onnx", "--devices", "2", "--method", "learned", "--policy", "pol.npz", "-o", "p.onnx",
      "--plot", "pol.json"], "--plot pol.json: is the input pol.json (--policy's metadata)"),
    (["place", "m.onnx", "--devices", "2", "--method", "rl", "-o", "p.onnx", "--checkpoint", "p.onnx"],
     "-o p.onnx and --checkpoint p.onnx name the same file"),
    # the checkpoint over the model: it said "not a placement checkpoint ...; remove it" of the user's model
    (["place", "m.onnx", "--devices", "2", "--method", "rl", "--budget", "4", "-o", "p.onnx", "--checkpoint",
      "m.onnx"], "--checkpoint m.onnx: is the input m.onnx (MODEL)"),
    (["optimize", "m.onnx", "-o", "o.onnx", "--json", "o.onnx"], "argument --json: 'o.onnx': the name of a .onnx file, for a JSON report"),
    # a second walk-through: simulate, partition, train and scale-search
    (["simulate", "m.onnx", "--accel", "myedge.toml", "--plot", "m.onnx"], "--plot m.onnx: is the input m.onnx (MODEL)"),
    (["simulate", "m.onnx", "--accel", "myedge.toml", "--plot", "myedge.toml"],
     "--plot myedge.toml: is the input myedge.toml (--accel)"),
    (["partition", "m.onnx", "--stages", "2", "--microbatches", "2", "--batch", "4", "-o", "q.onnx", "--json", "q.onnx"],
     "argument --json: 'q.onnx': the name of a .onnx file, for a JSON report"),
    (["partition", "m.onnx", "--stages", "2", "--microbatches", "2", "--batch", "4", "-o", "q.onnx", "--accel",
      "myedge.toml", "--plot", "myedge.toml"], "--plot myedge.toml: is the input myedge.toml (--accel)"),
    (["train", "resnet18", "--steps", "1", "--out", "t", "--json", "t/model.onnx"],
     "argument --json: 't/model.onnx': the name of a .onnx file, for a JSON report"),
    (["scale-search", "--stub", "--limit", "1", "--out", "s", "--checkpoint", "s/results.json"],
     "--out's results.json s/results.json and --checkpoint s/results.json name the same file"),
    (["scale-search", "m.onnx", "--stub", "--limit", "1", "--out", "s", "--checkpoint", "m.onnx"],
     "--checkpoint m.onnx: is the input m.onnx (MODEL)"),
    # a third walk-through: a learned pass's policy named in the schedule, supernet select's --config file,
    # and chip place's own resume checkpoint (each written over, exit 0)
    (["optimize", "m.onnx", "--dim", "N=1", "-p", "learned-place{policy=pol.npz}", "--devices", "2", "-o", "o.onnx",
      "--json", "pol.json"], "--json pol.json: is the input pol.json (learned-place's policy metadata)"),
    (["supernet", "select", "sn", "--config", "pol.json", "-o", "child.onnx", "--json", "pol.json"],
     "--json pol.json: is the input pol.json (--config)"),
    (["chip", "place", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "chip",
                                    "sample_clustered", "netlist.pb.txt"),
      "--init", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "chip",
                             "sample_clustered", "initial.plc"),
      "--method", "rl", "-o", "c.plc", "--budget-s", "1", "--json", "c.plc.rl-checkpoint"],
     "--json c.plc.rl-checkpoint and the rl checkpoint c.plc.rl-checkpoint name the same file"),
])
def test_an_output_over_an_input_or_another_output_is_refused(folder, capsys, argv, says):
    _refused(capsys, argv, says)


def test_train_does_not_write_over_an_input_model_in_its_out_folder(folder, capsys):
    os.makedirs("tin")
    shutil.copy("m.onnx", os.path.join("tin", "model.onnx"))
    before = open(os.path.join("tin", "model.onnx"), "rb").read()
    assert main(["train", os.path.join("tin", "model.onnx"), "--steps", "1", "--out", "tin"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the input tin/model.onnx (MODEL)" in err[0], err
    assert open(os.path.join("tin", "model.onnx"), "rb").read() == before and os.listdir("tin") == ["model.onnx"]


@pytest.mark.parametrize("argv", [
    ["place", "m.onnx", "--devices", "2", "--accel", "myedge.toml", "-o", "myedge.toml"],
    ["optimize", "m.onnx", "-o", "myedge.toml", "--devices", "2", "--accel", "myedge.toml"],
    ["optimize", "m.onnx", "--dim", "N=1", "-p", "learned-place{policy=pol.npz}", "--devices", "2", "-o", "pol.npz"],
    ["supernet", "select", "sn", "--max-latency-ms", "1", "--accel", "myedge.toml", "-o", "myedge.toml"],
])
def test_a_model_output_over_an_input_of_another_format_is_refused(folder, capsys, argv):
    """A model written over the accelerator TOML or a policy (exit 0, each replaced) is refused: such a name is
    another format's, refused from the argument itself (before, by the inputs' check: "-o myedge.toml: is the
    input myedge.toml (--accel)"). Reference: the inputs' bytes, unchanged."""
    os.makedirs("sn")
    before = {f: open(f, "rb").read() for f in os.listdir(".") if os.path.isfile(f)}
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1 and "file, for an ONNX model; give it a .onnx name" in err[0], err
    assert {f: open(f, "rb").read() for f in os.listdir(".") if os.path.isfile(f)} == before


@pytest.mark.parametrize("argv", [
    ["zoo", "resnet18"], ["roundtrip", "m.onnx"], ["optimize", "m.onnx"], ["scale", "m.onnx", "--phi", "1"],
    ["place", "m.onnx", "--devices", "2"], ["partition", "m.onnx", "--stages", "2"],
    ["train-policy", "--steps", "1"], ["supernet", "select", "sn", "--max-macs", "1e9"],
    ["chip", "place", "n.pb", "--init", "i.plc"],
])
def test_o_dash_is_refused_not_a_file_named_dash(tmp_path, monkeypatch, capsys, argv):
    """``-o -`` wrote a file called ``-`` (exit 0): '-' is standard output for --json only. The inputs named here
    need not exist: the refusal comes from the argument itself, before any of them is read."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:  # argparse's usage error, as for any malformed argument
        main(argv + ["-o", "-"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1, err
    assert "argument -o/--output: '-': give a file name (only --json reports go to standard output)" in err[0], err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("argv, name", [
    (["roundtrip", "m.onnx"], "m.plc"), (["optimize", "m.onnx"], "o.txt"), (["zoo", "resnet18"], "r.json"),
    (["scale", "m.onnx", "--phi", "1"], "s.png"), (["place", "m.onnx", "--devices", "2"], "p.toml"),
    (["partition", "m.onnx", "--stages", "2"], "pp.plc"), (["supernet", "select", "sn", "--max-macs", "1e9"], "c.npz"),
])
def test_a_model_named_as_another_format_is_refused(tmp_path, monkeypatch, capsys, argv, name):
    """`partition ... -o pp.plc` wrote an ONNX model into a placement's name, exit 0 (a new user's check), as
    `chip place -o x.onnx` once wrote a placement into a model's name. The inputs need not exist: the refusal
    comes from the argument, before any of them is read."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(argv + ["-o", name])
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1, err
    assert f"'{name}': the name of a {os.path.splitext(name)[1]} file, for an ONNX model" in err[0], err
    assert os.listdir(tmp_path) == []


CHIP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "chip", "sample_clustered")


@pytest.mark.parametrize("argv", [
    ["simulate", "m.onnx", "--accel", "myedge.toml", "--plot", "e.txt"],
    ["place", "m.onnx", "--devices", "2", "-o", "p.onnx", "--plot", "e.txt"],
    ["partition", "m.onnx", "--stages", "2", "--microbatches", "2", "--batch", "4", "-o", "q.onnx", "--plot", "e.txt"],
    ["chip", "place", os.path.join(CHIP, "netlist.pb.txt"), "--init", os.path.join(CHIP, "initial.plc"),
     "--method", "sa", "-o", "c.plc", "--budget-s", "1", "--plot", "e.txt"],
    ["supernet", "select", "sn", "--max-macs", "1e9", "-o", "child.onnx", "--plot", "e.txt"],
])
def test_a_plot_named_as_another_format_is_refused(folder, capsys, argv):
    """`place --plot e.txt` wrote PNG bytes into e.txt, exit 0 (every plot is PNG whatever its name).
    Reference: the message written out by hand; nothing written, before any work."""
    os.makedirs("sn")
    _refused(capsys, argv, "--plot e.txt: plots are written as PNG; give a name ending in .png")
    assert not os.path.exists("e.txt")


@pytest.fixture
def external(tmp_path, monkeypatch):
    """ok.onnx with its weights in ok.bin, written by onnx's own saver (not graphmill)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["a"]), helper.make_node("Add", ["a", "B"], ["y"])],
                          "ext", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])],
                          [numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "W"),
                           numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "B")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), "ok.onnx",
              save_as_external_data=True, location="ok.bin", size_threshold=0)
    return tmp_path


@pytest.mark.parametrize("argv, says", [
    (["optimize", "ok.onnx", "-o", "o.onnx", "--json", "ok.bin"], "--json ok.bin: is the input"),
    (["place", "ok.onnx", "--devices", "2", "-o", "p.onnx", "--json", "ok.bin"], "--json ok.bin: is the input"),
    (["optimize", "ok.onnx", "-o", "o.onnx", "--external-data", "ok.bin"], "(or --force to replace the input's)"),
    (["roundtrip", "ok.onnx", "-o", "ok.bin"], "-o ok.bin: is the input"),
    (["optimize", "ok.onnx", "-o", "o.onnx", "--external-data", "r.json", "--json", "r.json"],
     "and --json r.json name the same file"),
    (["optimize", "ok.onnx", "-o", "o.onnx", "--json", "o.onnx.data"],
     "the output's weights"),
    (["partition", "ok.onnx", "--stages", "2", "-o", "q.onnx", "--json", "q.onnx.data"], "the output's weights"),
    # the output's weights over the input model itself, or over another file the command reads: exit 0, the input
    # no longer loaded (an outside check); --force does not allow it
    (["roundtrip", "ok.onnx", "-o", "o.onnx", "--external-data", "ok.onnx"], "is the input ok.onnx (MODEL)"),
    (["optimize", "ok.onnx", "-o", "o.onnx", "--force", "--external-data", "ok.onnx"], "is the input ok.onnx (MODEL)"),
    (["place", "ok.onnx", "--devices", "2", "-o", "p.onnx", "--external-data", "ok.onnx"], "(MODEL)"),
    (["partition", "ok.onnx", "--stages", "2", "-o", "q.onnx", "--external-data", "ok.onnx"], "(MODEL)"),
])
def test_no_output_lands_on_a_weights_file(external, capsys, argv, says):
    """`optimize -o o.onnx --json ok.bin` replaced the input's weights with the report (the input no longer
    loaded), `--json o.onnx.data` (the output's default weights name) and `--external-data r.json --json r.json`
    wrote a report over the output's weights; all exit 0. Reference: onnx's own loader of the input afterwards."""
    import onnx

    _refused(capsys, argv, says)
    onnx.load("ok.onnx")  # the external data still loads, by onnx's reader
    assert os.path.getsize("ok.bin") == 64 * 64 * 4 + 64 * 4


def test_the_outputs_weights_are_no_other_input_file(external, capsys):
    """`optimize ... --accel edge.toml --cost simulator --external-data edge.toml` replaced the accelerator file
    with weights, exit 0; and an input model named like the automatic OUT.data (`roundtrip o.onnx.data -o o.onnx`,
    its weights external) with the output's weights (an outside check)."""
    import shutil

    import onnx

    root = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "accelerators", "edge.toml")
    shutil.copy(root, "edge.toml")
    _refused(capsys, ["optimize", "ok.onnx", "-o", "o.onnx", "--accel", "edge.toml", "--cost", "simulator",
                      "--external-data", "edge.toml"], "is the input edge.toml (--accel)")
    with open(root, "rb") as a, open("edge.toml", "rb") as b:
        assert a.read() == b.read()
    shutil.copy("ok.onnx", "o.onnx.data")  # reads its weights from ok.bin
    _refused(capsys, ["roundtrip", "o.onnx.data", "-o", "o.onnx"], "the output's weights")
    assert onnx.load("o.onnx.data").graph.node  # the input model still loads, by onnx's reader


def test_a_missing_folder_is_not_answered_with_force(external, capsys):
    """`--external-data nodir/w.bin` said "the folder ... does not exist (or --force to replace the input's)":
    --force has nothing to do with it (an outside check). Reference: the folder, absent by construction."""
    assert main(["optimize", "ok.onnx", "-o", "o.onnx", "--external-data", "nodir/w.bin"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "--force" not in err, err


def test_python_save_refuses_the_loaded_models_weights_file_unless_forced(external):
    """`graphmill.save(g, "x.onnx", external_data="ok.bin")` rewrote the weights ok.onnx reads (ok.onnx then
    failed in ONNX Runtime). `force=True` (the CLI's --force) writes it, whole."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from graphmill.errors import UserInputError

    g = graphmill.load("ok.onnx")
    before = open("ok.bin", "rb").read()
    with pytest.raises(UserInputError, match="which the graph reads its weights from"):
        graphmill.save(g, "x.onnx", external_data="ok.bin")
    assert open("ok.bin", "rb").read() == before and not os.path.exists("x.onnx")
    ref = {t.name: numpy_helper.to_array(t, base_dir=".") for t in onnx.load("ok.onnx").graph.initializer}
    graphmill.save(g, "ok.onnx", external_data="ok.bin", force=True)  # in place, as --force does
    got = {t.name: numpy_helper.to_array(t, base_dir=".") for t in onnx.load("ok.onnx").graph.initializer}
    assert ref.keys() == got.keys() and all(np.array_equal(ref[k], got[k]) for k in ref)


@pytest.mark.parametrize("argv", [
    ["search", "--method", "nahas", "--budget", "1", "--accel", "n/best_accel.toml", "--out", "n"],
    ["search", "--space", "accelerator", "--budget", "1", "--accel", "n/best_accel.toml", "--out", "n"],
])
def test_a_search_does_not_read_an_input_from_its_out_folder(folder, capsys, argv):
    """`search --method nahas --accel runs/n/best_accel.toml --out runs/n` replaced the accelerator it read with
    the one it found, exit 0. Reference: the file's bytes, and the message written out here."""
    os.makedirs("n")
    shutil.copy("myedge.toml", os.path.join("n", "best_accel.toml"))
    before = open(os.path.join("n", "best_accel.toml"), "rb").read()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--accel n/best_accel.toml: is a file --out n gets written over by this command" in err[0]
    assert open(os.path.join("n", "best_accel.toml"), "rb").read() == before and os.listdir("n") == ["best_accel.toml"]


def test_an_input_of_another_name_in_the_out_folder_is_read(tmp_path):
    """Only the files the search writes are refused (the first version refused any input under --out, e.g.
    `--accel edge.toml --out .`)."""
    from graphmill.errors import UserInputError
    from graphmill.search.workflow import OUT_FILES
    from graphmill.util.files import check_inputs_outside

    for name in ("edge.toml", "best_accel.toml", os.path.join("weights", "w.npz")):
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        shutil.copy(EDGE, tmp_path / name)
    check_inputs_outside(tmp_path, {"--accel": str(tmp_path / "edge.toml")}, OUT_FILES)
    for name in ("best_accel.toml", os.path.join("weights", "w.npz")):
        with pytest.raises(UserInputError, match="gets written over by this command"):
            check_inputs_outside(tmp_path, {"--accel": str(tmp_path / name)}, OUT_FILES)



def test_a_report_named_as_the_out_folder_is_refused_before_training(folder, capsys):
    """`train --out r2 --json r2` trained, wrote r2/'s files, then failed on the report ("r2: is a folder"); a
    rerun was then refused for the checkpoint left behind. Reference: the folder does not exist afterwards."""
    _refused(capsys, ["train", "resnet18", "--steps", "1", "--out", "r2", "--json", "r2"],
             "--json r2: is the folder the command creates (r2); give a file name")
    assert not os.path.exists("r2")


@pytest.mark.parametrize("argv", [
    ["optimize", "m.onnx", "-o", "o.onnx", "-p", "dce", "--json", "victim.onnx"],
    ["optimize", "m.onnx", "-o", "o.onnx", "-p", "dce", "--json", "victim.mill"],
    ["place", "m.onnx", "--devices", "2", "-o", "p.onnx", "--json", "victim.onnx"],
    ["chip", "cost", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "chip",
                                  "sample_clustered", "netlist.pb.txt"),
     os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "chip", "sample_clustered",
                  "initial.plc"), "--json", "victim.onnx"],
])
def test_a_report_named_as_another_format_is_refused(folder, capsys, argv):
    """`optimize ... --json victim.onnx` replaced the user's model (neither an input nor another output) with the
    report, exit 0, as `--json victim.mill` did a schedule (an outside check); `-o` and `--plot` were checked by
    their suffix already. Reference: the files' bytes before and after, the message written out here."""
    import shutil as sh

    sh.copy("m.onnx", "victim.onnx")
    (folder / "victim.mill").write_text("schedule s { dce }\n")
    suffix = argv[-1].rsplit(".", 1)[1]
    _refused(capsys, argv, f"argument --json: '{argv[-1]}': the name of a .{suffix} file, for a JSON report; name "
                           "it without another format's suffix, e.g. report.json (or '-' for stdout)")


def test_a_report_needs_no_json_suffix(folder):
    """Only another format's suffix is refused: a report named `report` or `r.txt` is written."""
    assert main(["optimize", "m.onnx", "-o", "o.onnx", "-p", "dce", "--json", "report"]) == 0
    assert json.loads(open("report").read())["output"] == "o.onnx"


@pytest.mark.parametrize("argv", [
    ["optimize", "m.onnx", "-o", "o.onnx", "--json", "m.onnx", "--force", "--no-compare"],
    ["place", "m.onnx", "--devices", "2", "-o", "p.onnx", "--json", "m.onnx", "--force"],
    ["partition", "m.onnx", "--stages", "2", "--microbatches", "2", "--batch", "4", "-o", "q.onnx", "--plot",
     "m.onnx", "--force"],
])
def test_force_lets_no_report_or_plot_replace_the_model(folder, capsys, argv):
    """`--force` is for -o (optimize in place); `optimize -o o.onnx --json m.onnx --force` replaced the model with
    the JSON report, exit 0. Reference: the model's bytes."""
    flag = argv[argv.index("m.onnx", 2) - 1]
    _refused(capsys, argv, f"{flag} m.onnx: is the input m.onnx (MODEL)" if flag != "--json" else
             "argument --json: 'm.onnx': the name of a .onnx file, for a JSON report")  # by its name, first


CHIP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "chip", "sample_clustered")
UNWRITABLE = "/proc/graphmill-report"  # a folder that exists and refuses new files, for root too (chmod does not)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("argv", [
    ["optimize", "m.onnx", "-o", "o.onnx", "--json", UNWRITABLE + ".json"],
    ["partition", "m.onnx", "--stages", "2", "-o", "o.onnx", "--json", UNWRITABLE + ".json"],
    ["place", "m.onnx", "--devices", "2", "-o", "o.onnx", "--json", UNWRITABLE + ".json"],
    ["train", "resnet18", "--width", "0.25", "--steps", "2", "--out", "t", "--json", UNWRITABLE + ".json"],
    ["supernet", "train", "--out", "s", "--steps", "2", "--json", UNWRITABLE + ".json"],
    ["train-policy", "-o", "p.npz", "--quick", "--steps", "1", "--json", UNWRITABLE + ".json"],
    ["chip", "place", os.path.join(CHIP, "netlist.pb.txt"), "--init", os.path.join(CHIP, "initial.plc"),
     "--method", "fd", "--budget-s", "1", "-o", UNWRITABLE + ".plc"],
], ids=["optimize", "partition", "place", "train", "supernet-train", "train-policy", "chip-place"])
def test_an_output_folder_that_refuses_writes_is_found_before_any_work(folder, capsys, argv):
    """A report path in a folder that exists but refuses writes was found only when the report was written at
    the end: the model, the trained files or the policy beside it were written first, then exit 2 (and `chip
    place` spent its whole budget first; an outside check). Reference: the folder's listing before and after."""
    _refused(capsys, argv, f"{UNWRITABLE}.{argv[-1].rsplit('.', 1)[1]}: cannot write in '/proc'")
    assert not os.path.exists("o.onnx") and not os.path.exists("t") and not os.path.exists("s")


def test_an_output_that_is_a_fifo_is_refused_not_replaced(folder, capsys):
    """The atomic rename replaced a FIFO or a device named as the output with a regular file (as root, `-o
    /dev/full` replaced the system's node; an outside check). Reference: the file's type before and after."""
    os.mkfifo("pipe")
    _refused(capsys, ["roundtrip", "m.onnx", "-o", "pipe"], "pipe: is not a regular file (a device, FIFO or socket)")
    import stat

    assert stat.S_ISFIFO(os.stat("pipe").st_mode)


def test_an_output_that_is_a_link_is_written_through_and_stays_a_link(folder, capsys):
    """The atomic rename replaced a symbolic link named as the output with a regular file: the link was gone and
    its target stale (an outside check). Written through as ``open()`` and the shell's ``>`` do. Reference: the
    link's type and target before and after, and the target's bytes, read back by ONNX itself."""
    import onnx

    os.mkdir("runs")
    os.symlink("runs/report.json", "latest.json")  # dangling: the target is created
    os.symlink("runs/model.onnx", "latest.onnx")
    assert main(["optimize", "m.onnx", "-o", "latest.onnx", "--json", "latest.json"]) == 0
    assert os.readlink("latest.onnx") == "runs/model.onnx" and os.readlink("latest.json") == "runs/report.json"
    onnx.checker.check_model(onnx.load("runs/model.onnx"))
    assert open("runs/report.json").read().lstrip().startswith("{")
    assert sorted(os.listdir(".")) == sorted(["latest.json", "latest.onnx", "m.onnx", "myedge.toml", "pol.json",
                                              "pol.npz", "runs"])  # nothing beside the link


def test_external_data_goes_beside_the_model_a_link_names(folder):
    """A model written through a link to another folder keeps its external data beside it, where its relative
    location points. Reference: ONNX Runtime loads and runs the target."""
    import numpy as np
    import onnxruntime as ort

    os.mkdir("store")
    os.symlink("store/m2.onnx", "m2.onnx")
    graphmill.save(graphmill.load("m.onnx"), "m2.onnx", external_data="w.data", size_threshold=16)
    assert os.path.islink("m2.onnx") and os.path.exists("store/w.data") and not os.path.exists("w.data")
    sess = ort.InferenceSession("store/m2.onnx", providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    sess.run(None, {inp.name: np.zeros([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)})


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_a_link_to_a_process_file_is_refused_not_replaced(folder, capsys):
    """``--json /dev/stdout`` as root replaced the system's /dev/stdout (a link to /proc/self/fd/1) with a regular
    file (an outside check). A link into /proc is refused before any work. Reference: the link before and after."""
    os.symlink("/proc/self/fd/1", "out.json")
    _refused(capsys, ["optimize", "m.onnx", "-o", "o.onnx", "--json", "out.json"],
             "out.json: is a link to a process's open file (/proc/self/fd/1), not a file to write")
    assert os.readlink("out.json") == "/proc/self/fd/1" and not os.path.exists("o.onnx")
