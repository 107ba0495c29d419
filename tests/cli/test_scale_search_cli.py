"""`graphmill scale-search`: results, plot and checkpoint files; a rerun resumes; bad input is one line.

Reference: the grid and the constraint alpha*beta^2*gamma^2 ~ 2 written out here (EfficientNet, section 3.3).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from tests.support.cli_process import run_graphmill


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_graphmill(*args, timeout=300)


def test_search_writes_results_and_resumes(tmp_path):
    out = tmp_path / "s"
    r = run_cli("scale-search", "--out", str(out), "--stub", "--limit", "2")
    assert r.returncode == 0, r.stderr
    # the stub's stand-in, printed as "accuracy" and "acc" (an outside check), is named for what it is
    assert "stub score (not an accuracy)" in r.stdout and "acc " not in r.stdout + r.stderr, r.stdout + r.stderr
    assert {p.name for p in out.iterdir()} == {"results.json", "accuracy_vs_cost.png", "checkpoint.json"}
    first = json.loads((out / "results.json").read_text())["candidates"]
    assert len(first) == 2
    for c in first:
        assert abs(c["alpha"] * c["beta"] ** 2 * c["gamma"] ** 2 - 2) <= 0.1 + 1e-9
        assert min(c["alpha"], c["beta"], c["gamma"]) >= 1
    r = run_cli("scale-search", "--out", str(out), "--stub", "--limit", "3")
    assert r.returncode == 0 and "resuming: 2 of 3" in r.stderr
    assert r.stderr.count("alpha=") == 1  # only the new candidate was evaluated
    assert len(json.loads((out / "results.json").read_text())["candidates"]) == 3


def test_search_bad_input(tmp_path):
    r = run_cli("scale-search", "--out", str(tmp_path / "s"), "--stub", "--step", "-1")
    # named as the user typed it (it read 'step=-1', the grid's field)
    assert r.returncode == 2 and "--step -1.0: must be a number > 0" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("scale-search", "--out", str(tmp_path / "s"), "--cost", "sim")
    assert r.returncode == 2 and "--accel" in r.stderr


def _conv_model_with(path, extra_op: str | None) -> str:
    """A small conv net (one stage the compound-scale pass can grow), optionally with an op after it."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    out = "y"
    opsets = [helper.make_opsetid("", 17)]
    if extra_op:
        nodes.append(helper.make_node(extra_op, ["y"], ["z"], domain="com.example"))
        opsets.append(helper.make_opsetid("com.example", 1))
        out = "z"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info(out, 1, None)], [w])
    onnx.save(helper.make_model(g, opset_imports=opsets), str(path))
    return str(path)


@pytest.mark.parametrize("args,needle", [
    (["--steps", "0"], "--steps 0: must be an integer >= 1"),
    (["--limit", "0"], "--limit 0"),
    (["--phi", "nan"], "--phi nan"),
    (["--cost", "sim", "--accel", "{missing}"], "no such accelerator config"),
    (["--cost", "sim", "--accel", "{bad_toml}"], "not valid TOML"),
    (["--accel", "examples/accelerators/edge.toml"], "--accel is used only with --cost sim"),
    (["{torchless}"], "torch backend, which trains the candidates, lacks op(s) com.example::Mystery"),
    # before: every candidate failed ("multiplier ... at most 16"), exit 1, results written
    (["--phi", "100", "--stub"], "--phi 100: the grid's largest coefficient 2 gives 2**100 = 1.268e+30, over "
                                 "compound-scale's limit of 16"),
    # before: a silent triple loop over 10^9 grid points; an OverflowError traceback
    (["--step", "0.001", "--stub"], "step=0.001, max_value=2: the grid would have 1,001 values per coefficient, "
                                    "at most 1,000"),
    (["--max-value", "1e308", "--step", "1e-300", "--stub"], "the grid would have inf values per coefficient"),
    # before: "max_value=0.5: must be >= 1", the Python keyword, where every other message names the flag
    (["--max-value", "0.5", "--stub"], "--max-value 0.5: must be >= 1 (the grid runs from 1 to it)"),
    # before: trained a 1000-class model on the 10 digits (113 s per candidate, accuracy 0.08)
    (["{thousand_classes}"], "the digits task has 10 classes, the model's first output has 1000"),
    # before: every candidate failed with the scaling pass's error, exit 1
    (["{stageless}", "--stub"], "the base model cannot be scaled by the grid's candidates (tried alpha, beta, "
                                     "gamma 1.4, 1.1, 1.1 at phi 1): no stages found"),
    # before: "remove it to start afresh" about the user's model, and OUT made
    (["--checkpoint", "{stageless}", "--stub"], "not a graphmill search checkpoint (cannot read it as one: "),
])
def test_inputs_are_checked_before_the_first_candidate(tmp_path, args, needle):
    """Each would otherwise fail every candidate in turn (or, for --steps 0, 'train' nothing and rank noise)."""
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("garbage = [\n")
    names = {"missing": str(tmp_path / "none.toml"), "bad_toml": str(bad_toml),
             "torchless": _conv_model_with(tmp_path / "m.onnx", "Mystery"),
             "stageless": _conv_model_with(tmp_path / "plain.onnx", None)}
    if "{thousand_classes}" in args:
        import graphmill

        graphmill.save(graphmill.api.zoo_build("resnet18", width=0.25, resolution=32), tmp_path / "r18.onnx")
        names["thousand_classes"] = str(tmp_path / "r18.onnx")
    args = [a.format(**names) for a in args]
    out = tmp_path / "s"
    r = run_cli("scale-search", "--out", str(out), *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    model = next((a for a in args if a.endswith(".onnx")), None)
    if model is not None:  # a refusal of the base model names its file (it named the graph only)
        assert model in lines[0], lines[0]
    assert "alpha=" not in r.stderr and not out.exists()  # no candidate ran, nothing written


def _main(monkeypatch, capsys, *args):
    from graphmill.cli import main

    code = main(["scale-search", *args])
    return code, capsys.readouterr()


def test_every_candidate_failed_exits_non_zero(tmp_path, monkeypatch, capsys):
    from graphmill.search import scaling

    def broken(self, graph):
        raise RuntimeError("evaluator broke")

    monkeypatch.setattr(scaling.StubEvaluator, "__call__", broken)
    code, cap = _main(monkeypatch, capsys, "--out", str(tmp_path / "s"), "--stub", "--limit", "2")
    assert code == 1
    assert "every candidate failed (2)" in cap.err and "RuntimeError: evaluator broke" in cap.err


def test_no_candidate_within_the_budget_exits_non_zero(tmp_path, monkeypatch, capsys):
    """It printed the cheapest over-budget candidate as "best", exit 0 (an outside check)."""
    code, cap = _main(monkeypatch, capsys, "--out", str(tmp_path / "s"), "--stub", "--step", "0.5", "--max-cost",
                      "1000")
    assert code == 1 and "best:" not in cap.out
    assert "error: no candidate within --max-cost 1000; the cheapest" in cap.err
    assert json.loads((tmp_path / "s" / "results.json").read_text())["best"] is None


def test_ctrl_c_before_any_candidate_lists_only_files_that_exist(tmp_path, monkeypatch, capsys):
    from graphmill.search import scaling

    def interrupted(self, graph):
        raise KeyboardInterrupt

    monkeypatch.setattr(scaling.StubEvaluator, "__call__", interrupted)
    out = tmp_path / "s"
    code, cap = _main(monkeypatch, capsys, "--out", str(out), "--stub", "--limit", "2")
    assert code == 130
    assert "checkpoint.json" not in cap.out and "accuracy_vs_cost.png" not in cap.out and "None" not in cap.out
    for word in cap.out.split():
        if word.rstrip(",").endswith((".json", ".png")):
            assert os.path.exists(word.rstrip(",")), word
    assert "nothing to resume" in cap.err and not (out / "checkpoint.json").exists()


@pytest.mark.parametrize("args, says", [
    (["--step", "5"], "has no alpha, beta, gamma with |alpha*beta^2*gamma^2 - 2| <= 0.1"),
    (["--tolerance", "-1"], "--tolerance -1.0: must be a number >= 0"),
    (["--step", "0"], "--step 0.0: must be a number > 0"),
])
def test_a_grid_with_no_candidate_is_refused(tmp_path, monkeypatch, capsys, args, says):
    """`--step 5` printed '0 candidate(s)', wrote results.json with best null and exited 0. Reference: the grid
    from 1 to 2 in steps of 5 is {1}, and 1*1*1 is 1 away from the target 2, beyond the tolerance 0.1."""
    code, cap = _main(monkeypatch, capsys, "--out", str(tmp_path / "s"), "--stub", "--limit", "1", *args)
    err = cap.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says in err[0], err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("metric, value", [("cost", "cheap"), ("accuracy", None), ("cost", True)])
def test_a_finished_candidate_without_a_number_is_damage(tmp_path, monkeypatch, capsys, metric, value):
    """A checkpoint edited by hand: a cost of "cheap" rewrote results.json, then failed in the plot with a
    traceback, the old PNG left beside it (an outside check). Reference: every evaluation records a finite cost
    and accuracy (the runner refuses a NaN metric itself: tests/search/test_journal.py)."""
    out = tmp_path / "s"
    assert _main(monkeypatch, capsys, "--out", str(out), "--stub", "--limit", "2")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "checkpoint.json"}
    state = json.loads((out / "checkpoint.json").read_text())
    state["history"][1]["metrics"][metric] = value
    (out / "checkpoint.json").write_text(json.dumps(state))
    code, cap = _main(monkeypatch, capsys, "--out", str(out), "--stub", "--limit", "3")
    assert code == 2 and len(cap.err.strip().splitlines()) == 1, cap.err
    assert f"a damaged scale-search checkpoint (trial 1: its {metric} is {value}, not a number)" in cap.err, cap.err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "checkpoint.json"} == before
