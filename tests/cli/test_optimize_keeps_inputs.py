"""``graphmill optimize`` never replaces one of the files it reads: the model, the schedule file, a ``.mill`` file
the schedule includes, a ``--load-passes`` plugin. A reproducer folder or an output that would is refused before
any work, in one line naming both, exit 2, every file as it was.

Reference: the files' bytes before the run (compared after it), and messages written out by hand. Before: a pass
failing with ``--reproducer-dir .`` replaced ``schedule.mill`` with its printed form (comments gone) and a model
named ``before.onnx`` with the model as it was before the failing pass; ``-o``/``--json`` replaced an included
``.mill`` file with the model or the report.
"""

from __future__ import annotations

import itertools
import os

import pytest

from graphmill.cli import main
from tests.support.models import save_relu_model

# one pass name per test: the tests share the process's pass registry, where a name is taken once
_NUMBERS = itertools.count()
FAILING_PLUGIN = '''from graphmill.passes import Pass, register_pass

@register_pass
class Explodes(Pass):
    """Fails on every graph, so that the run writes a reproducer."""
    name = "explodes-NUMBER"

    def run(self, graph, ctx):
        raise RuntimeError("boom")
'''

SCHEDULE = "# my schedule: comments a printed schedule would lose\ninclude \"lib.mill\"\nmine\n"
LIBRARY = "# my library\nschedule mine { dce, explodes-NUMBER }\n"


def _folder(tmp_path, model_name: str = "m.onnx") -> dict[str, bytes]:
    """A user's folder: a model, a schedule including a library, a plugin; their bytes."""
    number = str(next(_NUMBERS))
    save_relu_model(tmp_path, model_name)
    (tmp_path / "schedule.mill").write_text(SCHEDULE)
    (tmp_path / "lib.mill").write_text(LIBRARY.replace("NUMBER", number))
    (tmp_path / "plugin.py").write_text(FAILING_PLUGIN.replace("NUMBER", number))
    return {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}


def _unchanged(tmp_path, before: dict[str, bytes]) -> None:
    after = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path) if (tmp_path / name).is_file()}
    assert after == before


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("model_name, clash", [("m.onnx", "schedule.mill"), ("before.onnx", "before.onnx")])
def test_reproducer_dir_whose_files_would_replace_an_input_is_refused(tmp_path, monkeypatch, capsys, model_name,
                                                                      clash):
    monkeypatch.chdir(tmp_path)
    before = _folder(tmp_path, model_name)
    rc = main(["optimize", model_name, "-o", "o.onnx", "-s", "schedule.mill", "--load-passes", "plugin.py",
               "--reproducer-dir", "."])
    line = _one_line(capsys)
    assert rc == 2, line
    assert f"--reproducer-dir . ({clash}) {os.path.join('.', clash)}: is the input {clash}" in line, line
    assert "refusing to overwrite it" in line, line
    _unchanged(tmp_path, before)


def test_reproducer_dir_apart_from_the_inputs_still_gets_the_reproducer(tmp_path, monkeypatch, capsys):
    """The refusal is only of clashes: a separate folder receives the reproducer of the failing pass."""
    monkeypatch.chdir(tmp_path)
    before = _folder(tmp_path)
    rc = main(["optimize", "m.onnx", "-o", "o.onnx", "-s", "schedule.mill", "--load-passes", "plugin.py",
               "--reproducer-dir", "repro"])
    err = capsys.readouterr().err
    assert rc != 0 and "explodes" in err and "boom" in err, err
    assert sorted(os.listdir(tmp_path / "repro")) == ["README.txt", "before.onnx", "repro.mill", "schedule.mill"]
    _unchanged(tmp_path, before)


def test_reproducer_dir_of_the_users_files_is_refused_and_an_earlier_reproducer_replaced(tmp_path, monkeypatch,
                                                                                          capsys):
    """`--reproducer-dir notes` (a folder holding the user's README.txt) replaced that file with the reproducer's
    when a pass failed (an outside check). Refused before any work; a folder holding an earlier reproducer (its
    README.txt says so) is written again, as a rerun expects. Reference: the files' bytes."""
    monkeypatch.chdir(tmp_path)
    before = _folder(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("my notes\n")
    argv = ["optimize", "m.onnx", "-o", "o.onnx", "-s", "schedule.mill", "--load-passes", "plugin.py",
            "--reproducer-dir"]
    assert main(argv + ["notes"]) == 2
    assert _one_line(capsys) == ("graphmill optimize: error: --reproducer-dir notes: holds README.txt, which a "
                                 "reproducer would replace, and no earlier reproducer; give a new or empty folder")
    assert os.listdir(tmp_path / "notes") == ["README.txt"] and (tmp_path / "notes" / "README.txt").read_text() == \
        "my notes\n"
    for _ in range(2):  # the second run replaces the first's reproducer
        assert main(argv + ["repro"]) != 0
        capsys.readouterr()
        assert sorted(os.listdir(tmp_path / "repro")) == ["README.txt", "before.onnx", "repro.mill", "schedule.mill"]
    _unchanged(tmp_path, before)


def test_api_reproducer_dir_may_not_replace_the_schedule_file(tmp_path, monkeypatch):
    """``graphmill.optimize(..., schedule_file=, reproducer_dir=)`` knows the schedule's files and refuses too."""
    import graphmill
    from graphmill import api
    from graphmill.ir import UserInputError

    monkeypatch.chdir(tmp_path)
    before = _folder(tmp_path)
    api.load_passes("plugin.py")
    with pytest.raises(UserInputError, match=r"\(schedule\.mill\) \./schedule\.mill: is the input .*schedule\.mill"):
        graphmill.optimize(graphmill.load("m.onnx"), schedule_file="schedule.mill", reproducer_dir=".")
    _unchanged(tmp_path, before)


@pytest.mark.parametrize("flag", ["-o", "--json"])
def test_output_onto_an_included_schedule_file_is_refused(tmp_path, monkeypatch, capsys, flag):
    monkeypatch.chdir(tmp_path)
    before = _folder(tmp_path)
    (tmp_path / "schedule.mill").write_text('include "lib.mill"\ndce\n')
    (tmp_path / "lib.mill").write_text("schedule mine { dce }\n")
    before.update({"schedule.mill": (tmp_path / "schedule.mill").read_bytes(),
                   "lib.mill": (tmp_path / "lib.mill").read_bytes()})
    argv = ["optimize", "m.onnx", "-s", "schedule.mill"] + (["-o", "lib.mill"] if flag == "-o" else
                                                            ["-o", "o.onnx", "--json", "lib.mill"])
    # a model or a report named .mill is refused from the argument itself, before the inputs are compared (an
    # included schedule is always named .mill)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    line = _one_line(capsys)
    what = "an ONNX model" if flag == "-o" else "a JSON report"
    assert exited.value.code == 2 and f"'lib.mill': the name of a .mill file, for {what}" in line, line
    _unchanged(tmp_path, before)


def test_misspelt_builtin_schedule_suggests_the_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    save_relu_model(tmp_path)
    rc = main(["optimize", "m.onnx", "-o", "o.onnx", "-s", "defualt"])
    line = _one_line(capsys)
    assert rc == 2 and "defualt: no such schedule file, and not a built-in schedule (did you mean 'default'?)" in line
    assert not os.path.exists("o.onnx")


@pytest.mark.parametrize("flag, value", [("--rtol", "-1"), ("--atol", "nan"), ("--atol", "inf")])
def test_tolerance_that_no_comparison_could_mean_is_refused_before_loading(tmp_path, monkeypatch, capsys, flag,
                                                                          value):
    """``--rtol -1`` failed every comparison and ``--atol nan`` passed every one; the model named does not exist,
    so the refusal must come before loading it."""
    monkeypatch.chdir(tmp_path)
    rc = main(["optimize", "missing.onnx", "-o", "o.onnx", flag, value])
    line = _one_line(capsys)
    assert rc == 2 and f"{flag} {float(value)}: a tolerance must be a finite number >= 0" in line, line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_no_generator_takes_is_refused_before_loading(tmp_path, monkeypatch, capsys, seed):
    """``optimize --seed -1`` ended in numpy's SeedSequence traceback (exit 1) after the passes ran. Reference:
    the range ``place`` and ``chip place`` already refused with the same words."""
    monkeypatch.chdir(tmp_path)
    rc = main(["optimize", "missing.onnx", "-o", "o.onnx", "--seed", seed])
    line = _one_line(capsys)
    assert rc == 2 and f"--seed {seed}: must be an integer from 0 to 4294967295" in line, line
    assert os.listdir(tmp_path) == []


def test_train_policy_refuses_a_seed_no_generator_takes(tmp_path, monkeypatch, capsys):
    """`train-policy --seed -1` was numpy's traceback, exit 1 (a third walk-through)."""
    monkeypatch.chdir(tmp_path)
    rc = main(["train-policy", "-o", "p.npz", "--seed", "-1", "--steps", "1", "--quick"])
    line = _one_line(capsys)
    assert rc == 2 and "--seed -1: must be an integer from 0 to 4294967295" in line, line
    assert os.listdir(tmp_path) == []
