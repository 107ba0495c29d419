"""The forked CLI processes the tests use behave as ``python -m graphmill.cli`` does (reference: the real
interpreter start, ``fresh=True``): the same stdout, stderr and exit status, in the given working directory and
environment, running the tree under test, waiting for the command's threads, honouring start-up settings, and
killing the command on a timeout."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import graphmill
from tests.support.cli_process import run_graphmill
from tests.support.models import save_relu_model


def _optimize_with_plugin(tmp_path, plugin_source: str, **kw) -> subprocess.CompletedProcess:
    """``graphmill optimize`` loading a plugin file, which runs ``plugin_source`` in the command's process."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(plugin_source)
    return run_graphmill("optimize", save_relu_model(tmp_path), "-o", str(tmp_path / "o.onnx"), "--load-passes",
                         str(plugin), **kw)


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


def test_environment_is_the_commands_own(tmp_path):
    model = save_relu_model(tmp_path)
    env = {**os.environ, "GRAPHMILL_MAX_RANK": "zero"}
    r = run_graphmill("inspect", model, cwd=tmp_path, env=env)
    fresh = run_graphmill("inspect", model, cwd=tmp_path, env=env, fresh=True)
    assert r.returncode == 2 and "GRAPHMILL_MAX_RANK='zero'" in r.stderr, r.stderr
    assert (r.returncode, r.stderr) == (fresh.returncode, fresh.stderr)
    # the next command, without the variable, does not inherit it
    assert run_graphmill("inspect", model, cwd=tmp_path).returncode == 0


def test_commands_run_the_tree_under_test_from_any_folder(tmp_path):
    mark = tmp_path / "which"
    for fresh in (False, True):
        r = _optimize_with_plugin(tmp_path, f"import graphmill, pathlib\npathlib.Path({str(mark)!r}).write_text("
                                  "graphmill.__file__)\n", cwd=tmp_path, fresh=fresh)
        assert r.returncode == 0, r.stderr
        assert mark.read_text() == graphmill.__file__
        mark.unlink()


def test_the_command_ends_after_its_threads_as_an_interpreter_does(tmp_path):
    mark = tmp_path / "thread-done"
    r = _optimize_with_plugin(tmp_path, "import pathlib, threading, time\n"
                              "def late():\n    time.sleep(1.0)\n"
                              f"    pathlib.Path({str(mark)!r}).write_text('done')\n"
                              "threading.Thread(target=late).start()\n")
    assert r.returncode == 0, r.stderr
    assert mark.read_text() == "done"  # written before the process ended, not cut off by it


def test_start_up_settings_in_the_environment_take_effect(tmp_path):
    mark = tmp_path / "hash"
    source = f"import pathlib\npathlib.Path({str(mark)!r}).write_text(str(hash('graphmill')))\n"
    seen = {}
    for seed in ("1", "2"):
        for fresh in (False, True):
            r = _optimize_with_plugin(tmp_path, source, env={**os.environ, "PYTHONHASHSEED": seed}, fresh=fresh)
            assert r.returncode == 0, r.stderr
            seen[seed, fresh] = mark.read_text()
    assert seen["1", False] == seen["1", True] and seen["2", False] == seen["2", True]
    assert seen["1", False] != seen["2", False]



def test_the_kernels_torch_picks_follow_the_commands_environment(tmp_path):
    """The variables of search.learned.PORTABLE_ENV are read as torch loads its kernels: a command given them gets
    the kernels they name, as a fresh interpreter does (cli_process counts them as start-up settings; the shipped
    policy's retraining test relies on it). Reference: torch's own report of the kernels it picked."""
    mark = tmp_path / "capability"
    source = f"import pathlib, torch\npathlib.Path({str(mark)!r}).write_text(torch.backends.cpu.get_cpu_capability())\n"
    r = _optimize_with_plugin(tmp_path, source, env={**os.environ, "ATEN_CPU_CAPABILITY": "default"})
    assert r.returncode == 0, r.stderr
    assert mark.read_text() == "DEFAULT"

def test_timeout_kills_the_command_and_the_next_one_runs(tmp_path):
    mark = tmp_path / "survived"
    with pytest.raises(subprocess.TimeoutExpired):
        _optimize_with_plugin(tmp_path, f"import pathlib, time\ntime.sleep(3)\npathlib.Path({str(mark)!r}).touch()\n",
                              timeout=1)
    time.sleep(3.5)
    assert not mark.exists()  # killed, not left running
    assert run_graphmill("--help").returncode == 0


def test_python_dash_m_graphmill_is_the_command(tmp_path):
    """``python -m graphmill`` said "No module named graphmill.__main__" (two outside checks tried it first).
    Reference: the fresh ``python -m graphmill.cli`` process, stdout, stderr and status alike."""
    import sys

    from tests.support.cli_process import tree_under_test

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"),
                                                                      tree_under_test()]))}
    for args in (["--version"], ["inspect", "missing.onnx"]):
        mine = subprocess.run([sys.executable, "-m", "graphmill", *args], capture_output=True, text=True, cwd=tmp_path,
                              env=env, timeout=120)
        fresh = run_graphmill(*args, cwd=tmp_path, fresh=True)
        assert (mine.returncode, mine.stdout, mine.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
        assert mine.returncode == (0 if args == ["--version"] else 2) and (mine.stdout + mine.stderr).strip()
