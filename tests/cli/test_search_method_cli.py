"""``graphmill search --method NAME``: the plumbing from the command line to a method module's ``run``.

Reference: the contract in ``graphmill.search.methods`` (written by hand there); a stand-in method module (this
file's ``run``) records what it is given, so these tests check the plumbing, not any method.
"""

from __future__ import annotations

import json

import pytest

from graphmill.cli import main
from graphmill.errors import UserInputError
from graphmill.search import methods

CALLS: list[dict] = []


def run(out, *, budget, seed, workers, executor, ray_address, accel, options, progress):
    """A stand-in method: records its arguments, reports one trial through ``progress``."""
    CALLS.append(dict(out=out, budget=budget, seed=seed, workers=workers, executor=executor,
                      ray_address=ray_address, accel=accel, options=options))
    if progress is not None:
        progress("trial 1/1  best 0.5")
    return {"method": "stand-in", "task": "nothing", "out": out, "files": ["report.json"], "interrupted": False,
            "checkpoint": f"{out}/checkpoint.json", "best": {"accuracy": 0.5}, "trials": 1}


@pytest.fixture()
def stand_in(monkeypatch):
    CALLS.clear()
    monkeypatch.setitem(methods.METHODS, "nahas", __name__)
    return CALLS


def test_method_gets_every_flag_and_its_options_as_strings(stand_in, tmp_path, capsys):
    rc = main(["search", "--method", "nahas", "--out", str(tmp_path / "o"), "--budget", "7", "--seed", "3",
               "--workers", "2", "--executor", "ray", "--ray-address", "auto", "--accel", "a.toml",
               "--option", "area_mm2=4.5", "--option", "strategy=evolution", "--json"])
    assert rc == 0
    assert stand_in == [dict(out=str(tmp_path / "o"), budget=7, seed=3, workers=2, executor="ray",
                             ray_address="auto", accel="a.toml",
                             options={"area_mm2": "4.5", "strategy": "evolution"})]
    out = capsys.readouterr().out
    assert json.loads(out)["best"] == {"accuracy": 0.5} and "trial 1/1" not in out  # --json: no progress lines


def test_method_progress_and_default_budget(stand_in, tmp_path, capsys):
    assert main(["search", "--method", "nahas", "--out", str(tmp_path / "o")]) == 0
    assert stand_in[0]["budget"] is None and stand_in[0]["workers"] == 1 and stand_in[0]["options"] == {}
    out = capsys.readouterr().out
    assert "trial 1/1  best 0.5" in out and "stand-in on nothing: 1 trial(s)" in out


@pytest.mark.parametrize("args, expect", [
    (["--method", "nahs"], "did you mean 'nahas'"),
    ([], "exactly one of --space SPACE and --method METHOD"),
    (["--method", "nahas", "--space", "mnasnet"], "exactly one of --space SPACE and --method METHOD"),
    (["--method", "nahas", "--strategy", "ppo"], "--strategy belongs to --space searches"),
    (["--method", "nahas", "--evaluator", "builtin"], "--evaluator belongs to --space searches"),
    (["--method", "nahas", "--option", "area"], "expected KEY=VALUE"),
    (["--method", "nahas", "--budget", "0"], "--budget 0"),
    # ignored by NAHAS and the --space searches (ran locally, as if no cluster was named); EvaNet/AutoHAS refused it
    (["--method", "nahas", "--ray-address", "auto"], "--ray-address needs --executor ray"),
    (["--space", "mnasnet", "--budget", "1", "--ray-address", "auto", "--executor", "local"],
     "--ray-address needs --executor ray"),
])
def test_bad_method_input_is_one_line_exit_2_nothing_run(stand_in, tmp_path, capsys, args, expect):
    assert main(["search", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert stand_in == [] and not (tmp_path / "o").exists()


def test_parse_options_types_values_by_their_defaults():
    # reference: the typing rule stated in parse_options' docstring, applied by hand
    defaults = {"steps": 100, "lr": 0.003, "mode": "joint", "rows": "8,16", "fast": False}
    got = methods.parse_options({"steps": " 7", "lr": "1e-2", "mode": "nn-then-accel ", "rows": "4", "fast": "true"},
                                defaults, "NAHAS", text=("rows",))
    assert got == {"steps": 7, "lr": 0.01, "mode": "nn-then-accel", "rows": "4", "fast": True}
    assert methods.parse_options({"steps": 5.0}, defaults, "X")["steps"] == 5          # typed from Python
    for options, expect in [({"step": "1"}, "unknown NAHAS option (did you mean 'steps'?)"),
                            ({"steps": "1.5"}, "steps='1.5': must be a whole number"),
                            ({"steps": 1.5}, "steps=1.5: must be a whole number"),
                            ({"lr": "inf"}, "lr='inf': must be a finite number"),
                            ({"fast": "maybe"}, "fast='maybe': must be true or false")]:
        with pytest.raises(UserInputError) as e:
            methods.parse_options(options, defaults, "NAHAS")
        assert expect in str(e.value), (options, str(e.value))


def test_a_misspelt_flag_names_the_nearest_one(stand_in, tmp_path, capsys):
    # by hand: --optoin is one transposition from --option; a plain extra word gets no guess
    with pytest.raises(SystemExit) as e:
        main(["search", "--method", "nahas", "--out", str(tmp_path / "o"), "--optoin", "steps=3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "(did you mean --option?)" in err[0], err
    assert stand_in == []


def test_an_empty_out_is_refused_not_the_current_folder(stand_in, capsys):
    # an empty --out used to reach the method, and EvaNet wrote its whole folder into the current directory
    assert main(["search", "--method", "nahas", "--out", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and stand_in == [], err


def test_parse_options_lists_keep_their_items_whole():
    """Reference: the values as given, typed by hand: a list option (``lists``) comes back as a list of its
    kind from comma text or a Python list; a fraction is never truncated into a whole number."""
    import numpy as np

    defaults = {"rows": "8,16", "kb": "32,64", "flow": "os,ws"}
    kinds = {"rows": int, "kb": float, "flow": str}
    assert methods.parse_options({}, defaults, "X", lists=kinds) == {"rows": [8, 16], "kb": [32.0, 64.0],
                                                                       "flow": ["os", "ws"]}
    got = methods.parse_options({"rows": [np.int64(4), 8.0], "kb": " 1.5, 2,", "flow": ("is",)}, defaults, "X",
                                lists=kinds)
    assert got == {"rows": [4, 8], "kb": [1.5, 2.0], "flow": ["is"]}
    for options, expect in [({"rows": "8.5,16"}, "--option rows='8.5,16': '8.5' is not a whole number"),
                            ({"rows": [8.5, 16]}, "--option rows=[8.5, 16]: 8.5 is not a whole number"),
                            ({"rows": [16, False]}, "--option rows=[16, False]: False is not a whole number"),
                            ({"kb": "1,nan"}, "--option kb='1,nan': 'nan' is not a finite number"),
                            ({"rows": " , "}, "--option rows=' , ': give at least one value")]:
        with pytest.raises(UserInputError) as e:
            methods.parse_options(options, defaults, "X", lists=kinds)
        assert str(e.value) == expect, (options, str(e.value))


@pytest.mark.parametrize("method, option, named", [
    ("nahas", "rows=8.5,16", "--option rows='8.5,16': '8.5' is not a whole number"),
    ("nahas", "strategy=foo", "--option strategy='foo': unknown strategy"),
    ("autohas", "augment=0,5,x", "--option augment='0,5,x': 'x' is not a finite number"),
    ("evanet", "population=8.5", "--option population='8.5': must be a whole number"),
    # unbounded, these took 8 GB (batch) or ran for hours (screen)
    ("autohas", "batch=100000", "--option batch=100000: at most 4,096"),
    ("autohas", "screen=100000", "--option screen=100000: at most 1,024"),
])
def test_real_methods_refuse_bad_options_in_one_line_exit_2_nothing_written(tmp_path, capsys, method, option,
                                                                            named):
    """Reference: the contract (one line naming the option and the value, exit 2, nothing written), on the
    real method modules, not the stand-in."""
    assert main(["search", "--method", method, "--out", str(tmp_path / "o"), "--budget", "1", "--option",
                 option, "--json"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and "nahas-area" not in err[0], err
    assert captured.out == "" and not (tmp_path / "o").exists()


@pytest.mark.parametrize("checkpoint, expect", [
    ("o/checkpoint.json", "graphmill search: interrupted: run the same command again to resume from o/checkpoint.json"),
    (None, "graphmill search: interrupted before the first checkpoint: run the same command again to start it over"),
])
def test_an_interrupted_method_says_how_to_resume(stand_in, monkeypatch, tmp_path, capsys, checkpoint, expect):
    """Reference: the summary's checkpoint. A method interrupted before its first checkpoint returns None there,
    which was printed as "resume from None"."""
    import sys

    def interrupted(out, **kwargs):
        return {"method": "stand-in", "task": "nothing", "out": out, "files": [], "interrupted": True,
                "checkpoint": checkpoint, "best": None, "trials": 0}

    monkeypatch.setattr(sys.modules[__name__], "run", interrupted)
    assert main(["search", "--method", "nahas", "--out", str(tmp_path / "o"), "--json"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == [expect]


def test_an_interrupted_method_without_a_best_does_not_say_its_trials_failed(stand_in, monkeypatch, tmp_path,
                                                                            capsys):
    """Reference: the summary (interrupted, trials done, no best yet: a method stopped before its pick). The
    text summary said "best: none: no trial succeeded", which is what every-trial-failed prints."""
    import sys

    def interrupted(out, **kwargs):
        # e.g. AutoHAS in its search phase
        return {"method": "stand-in", "task": "nothing", "out": out, "files": ["history.jsonl"],
                "interrupted": True, "checkpoint": "o/checkpoint.pt", "best": None, "trials": 25}

    monkeypatch.setattr(sys.modules[__name__], "run", interrupted)
    assert main(["search", "--method", "nahas", "--out", str(tmp_path / "o")]) == 130
    out = capsys.readouterr().out
    assert "best: none yet (interrupted before a best was chosen)" in out and "no trial succeeded" not in out


def test_an_infeasible_best_is_said_to_be_infeasible(stand_in, monkeypatch, tmp_path, capsys):
    """Reference: the method's own ``"feasible": false`` (NAHAS, when no design meets the latency target). The
    summary printed that best's numbers like any other, with nothing saying it breaks the constraints."""
    import sys

    module = sys.modules[__name__]
    plain = module.run

    def infeasible(out, **kw):
        s = plain(out, **kw)
        s["best"] = {"accuracy": 0.4, "latency_ms": 1.7, "feasible": False}
        return s

    monkeypatch.setattr(module, "run", infeasible)
    assert main(["search", "--method", "nahas", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "best: accuracy 0.4, latency_ms 1.7\n  (infeasible: no trial met the constraints" in out


def test_a_run_whose_every_trial_failed_says_so(stand_in, monkeypatch, tmp_path, capsys):
    """Reference: the method's summary (trials 2, best None: NAHAS when no accelerator of the space can be
    simulated, e.g. '--option ifmap_kb=0.01 ...'). The summary said '2 trial(s)' and nothing about a best."""
    import sys

    module = sys.modules[__name__]
    plain = module.run

    def failed(out, **kw):
        return {**plain(out, **kw), "best": None, "trials": 2}

    monkeypatch.setattr(module, "run", failed)
    assert main(["search", "--method", "nahas", "--out", str(tmp_path / "o")]) == 0
    assert f"best: none: no trial succeeded (the reasons are in {tmp_path / 'o'})" in capsys.readouterr().out


def test_ctrl_c_before_the_first_checkpoint_promises_no_resume(tmp_path, capsys, monkeypatch):
    """Ctrl-C during a method's setup said "run the same command again to resume from the last checkpoint" where
    none was written, and --json printed nothing (an outside check). Reference: the folder (no checkpoint in it)."""
    from graphmill import api

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "search_method", interrupted)
    assert main(["search", "--method", "autohas", "--out", str(tmp_path / "x"), "--json"]) == 130
    io = capsys.readouterr()
    assert json.loads(io.out) == {"method": "autohas", "out": str(tmp_path / "x"), "interrupted": True,
                                  "checkpoint": None, "trials": 0, "best": None}
    assert io.err.strip() == ("graphmill search: interrupted before the first checkpoint: run the same command "
                              "again to start it over")
