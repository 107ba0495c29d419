"""The forked CLI processes the tests use behave as ``python -m graphmill.cli`` does (reference: the real
interpreter start, ``fresh=True``): the same stdout, stderr and exit status, in the given working directory and
environment, with a timeout that kills the command."""

from __future__ import annotations

import os
import subprocess

import onnx
import pytest
from onnx import helper

from tests.support.cli_process import run_graphmill


@pytest.mark.parametrize("args", [["--help"], ["inspect", "missing.onnx"], ["inspect", "--no-such-flag"],
                                  ["zoo", "--list"], ["zoo", "mobilenet_v2", "-o", "m.onnx"]],
                         ids=["help", "missing-file", "usage-error", "zoo-list", "zoo-export"])
def test_forked_command_equals_a_fresh_interpreter(tmp_path, args):
    (tmp_path / "forked").mkdir()
    (tmp_path / "fresh").mkdir()
    forked = run_graphmill(*args, cwd=tmp_path / "forked")
    fresh = run_graphmill(*args, cwd=tmp_path / "fresh", fresh=True)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    # a relative output path lands in the command's own working directory, in both
    assert sorted(os.listdir(tmp_path / "forked")) == sorted(os.listdir(tmp_path / "fresh"))


def test_environment_and_streams_are_the_commands_own(tmp_path):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", 1, [2])],
                          [helper.make_tensor_value_info("y", 1, [2])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    env = {**os.environ, "GRAPHMILL_MAX_RANK": "zero"}
    r = run_graphmill("inspect", "m.onnx", cwd=tmp_path, env=env)
    fresh = run_graphmill("inspect", "m.onnx", cwd=tmp_path, env=env, fresh=True)
    assert r.returncode == 2 and "GRAPHMILL_MAX_RANK='zero'" in r.stderr, r.stderr
    assert (r.returncode, r.stderr) == (fresh.returncode, fresh.stderr)
    assert run_graphmill("inspect", "m.onnx", cwd=tmp_path).returncode == 0
    # the next command does not inherit the previous one's environment or directory
    assert run_graphmill("zoo", "--list").returncode == 0
    assert "GRAPHMILL_MAX_RANK" not in os.environ


def test_timeout_kills_the_command_and_the_next_one_runs():
    with pytest.raises(subprocess.TimeoutExpired):
        run_graphmill("zoo", "efficientnet_b7", "-o", os.devnull, timeout=0.01)
    assert run_graphmill("--help").returncode == 0
