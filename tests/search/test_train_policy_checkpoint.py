"""``graphmill train-policy --checkpoint``: an interrupted run keeps its checkpoint and the same call resumes it; a
finished run removes it, so that rerunning the command trains afresh instead of silently 'resuming' a finished run
(reference: the convention of chip place's OUT.plc.rl-checkpoint, asserted gone after a finished run in
tests/cli/test_chip_cli.py)."""

from __future__ import annotations

import pytest

from graphmill import api

OPTIONS = {"graphs": 1, "samples": 2, "epochs": 1}


def interrupted_after_step_1(out: str, ck) -> None:
    """A 2-step training Ctrl-C'd at its first progress line: its checkpoint holds step 1."""
    def stop_after_first_step(line: str) -> None:
        if "step 1/2" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.train_policy(out, steps=2, quick=True, options=OPTIONS, checkpoint=str(ck), progress=stop_after_first_step)


@pytest.mark.slow  # ~7 s: three short trainings
def test_finished_run_removes_its_checkpoint_interrupted_run_resumes(tmp_path):
    out, ck = str(tmp_path / "p.npz"), tmp_path / "train.ckpt"
    interrupted_after_step_1(out, ck)
    assert ck.exists()  # interrupted: the training state stands
    lines: list[str] = []
    r = api.train_policy(out, steps=2, quick=True, options=OPTIONS, checkpoint=str(ck), progress=lines.append)
    assert r["resumed"] and r["steps"] == 2 and sum("step 2/2" in x for x in lines) == 1
    assert not any("step 1/2" in x for x in lines)  # resumed after step 1, not from scratch
    assert f"train-policy: resumed from {ck}: 1 of 2 steps done" in lines  # and says so (it went on without a word)
    assert not ck.exists()  # finished: removed
    lines.clear()
    r = api.train_policy(out, steps=2, quick=True, options=OPTIONS, checkpoint=str(ck), progress=lines.append)
    assert not r["resumed"] and any("step 1/2" in x for x in lines)  # the rerun trained again
    assert not ck.exists()


@pytest.mark.parametrize("options, named", [
    ({"lr": -1.0}, "--option lr=-1.0: must be a number > 0"),  # was torch's ValueError traceback, exit 1
    ({"epochs": 0}, "--option epochs=0: must be a whole number >= 1"),
    ({"reset": 1.5}, "--option reset=1.5: must be a number >= 0 and <= 1"),
    # advantages normalized within one sample are all 0: it trained on the entropy term alone (an outside check)
    ({"samples": 1}, "--option samples=1: must be a whole number >= 2"),
])
def test_bad_option_values_are_refused_before_any_work(tmp_path, options, named, monkeypatch):
    """Reference: the project's bad-input rule (one line naming the option and value, before any work, nothing
    written); ``training_set`` is replaced by a trap, so a refusal after building it fails the test."""
    from graphmill.errors import UserInputError
    from graphmill.search import learned

    monkeypatch.setattr(learned, "training_set", lambda **k: pytest.fail("built the training set first"))
    with pytest.raises(UserInputError) as e:
        api.train_policy(tmp_path / "p.npz", options=options, quick=True, checkpoint=str(tmp_path / "ck"))
    assert str(e.value) == named
    with pytest.raises(UserInputError, match="does not exist"):  # --checkpoint's folder, also checked first
        api.train_policy(tmp_path / "p.npz", quick=True, checkpoint=str(tmp_path / "nodir" / "ck"))
    assert list(tmp_path.iterdir()) == []


def test_steps_the_checkpoint_already_holds_train_nothing_and_say_so(tmp_path):
    """An interrupted run's checkpoint at step 1, rerun with --steps 1, wrote its 1-step policy without a word (a
    checkpoint at step 25 rerun with --steps 10 wrote a 25-step policy). Reference: the step the run stopped at."""
    out, ck = str(tmp_path / "p.npz"), tmp_path / "train.ckpt"
    interrupted_after_step_1(out, ck)
    lines: list[str] = []
    r = api.train_policy(out, steps=1, quick=True, options=OPTIONS, checkpoint=str(ck), progress=lines.append)
    assert r["resumed"] and r["steps"] == 1
    assert any("already holds 1 steps, --steps 1: nothing trained" in x for x in lines), lines


def test_a_checkpoint_of_an_older_policy_format_is_refused_in_one_line(tmp_path, monkeypatch):
    """A training checkpoint written under an older policy architecture (format /2, before ``move_gain``) passed
    the signature check and failed in ``load_state_dict`` with a traceback, exit 1 (a review). Reference: the
    checkpoint's signature rewritten here as that older format's, the project's one-line refusal."""
    import torch

    from graphmill.errors import UserInputError
    from graphmill.passes.learned.policy import POLICY_FORMAT

    out, ck = str(tmp_path / "p.npz"), tmp_path / "train.ckpt"
    interrupted_after_step_1(out, ck)
    state = torch.load(ck, weights_only=True)
    assert state["signature"].startswith(POLICY_FORMAT + "|")
    state["signature"] = state["signature"].replace(POLICY_FORMAT, "graphmill-learned-policy/2", 1)
    del state["policy"]["move_gain"]
    torch.save(state, ck)
    with pytest.raises(UserInputError, match="training set, options, seed or policy format"):
        api.train_policy(out, steps=2, quick=True, options=OPTIONS, checkpoint=str(ck))


@pytest.mark.slow  # ~5 s: two short trainings
def test_ctrl_c_finishes_the_step_checkpoints_it_and_says_so_in_the_json_report(tmp_path, capsys, monkeypatch):
    """A real SIGINT while step 1 trains: the step finishes and is checkpointed, no policy is written, and with
    ``--json -`` stdout holds a report saying so (it was empty: the run raised through the command, left alone in
    earlier notes), exit 130; the same command then resumes at step 2. Reference: the operating system's signal
    delivery, the files on disk and the step counts."""
    import json
    import os
    import signal

    from graphmill.cli import main
    from graphmill.search import learned

    real_features, real_policy = learned.obs_tensors, learned.GraphPolicy
    calls: list = []
    training: list = []

    def policy_built(*a, **k):  # the training set is ready (its tasks read features too): the steps begin
        training.append(1)
        return real_policy(*a, **k)

    def ctrl_c_while_the_first_step_trains(*a, **k):  # a graph's features, read as each step begins
        if training:
            calls.append(1)
            if len(calls) == 1:
                os.kill(os.getpid(), signal.SIGINT)
        return real_features(*a, **k)

    monkeypatch.setattr(learned, "GraphPolicy", policy_built)
    monkeypatch.setattr(learned, "obs_tensors", ctrl_c_while_the_first_step_trains)
    out, ck = tmp_path / "p.npz", tmp_path / "train.ckpt"
    argv = ["train-policy", "-o", str(out), "--steps", "2", "--quick", "--checkpoint", str(ck), "--json", "-",
            "--quiet"] + [f"--option={k}={v}" for k, v in OPTIONS.items()]
    assert main(argv) == 130
    assert len(calls) == 1  # one graph a step (OPTIONS): stopped after step 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["interrupted"] is True and report["steps"] == 1 and report["total_steps"] == 2
    assert report["output"] is None and report["checkpoint"] == str(ck)
    assert f"interrupted at step 1/2; {ck} holds step 1; resume: " in captured.err
    assert ck.exists() and not out.exists() and not (tmp_path / "p.json").exists()
    training.clear()
    calls.clear()
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["interrupted"] is False and report["resumed"] and report["steps"] == 2
    assert report["output"] == str(out) and out.exists() and not ck.exists() and len(calls) == 1  # step 2


def test_ctrl_c_while_the_policy_is_built_ends_before_step_1_with_its_report(tmp_path, capsys, monkeypatch):
    """A SIGINT after "training graphs ready", while the policy and its optimizer were built (torch imports for
    seconds), raised through the command: exit 130 and no ``--json`` report at all (an outside check). Now the run
    ends before step 1 with the report saying so. Reference: the operating system's signal delivery and the files
    on disk."""
    import json
    import os
    import signal

    from graphmill.cli import main
    from graphmill.search import learned

    real_policy = learned.GraphPolicy

    def ctrl_c_while_built(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)
        return real_policy(*a, **k)

    monkeypatch.setattr(learned, "GraphPolicy", ctrl_c_while_built)
    out, report = tmp_path / "p.npz", tmp_path / "r.json"
    argv = ["train-policy", "-o", str(out), "--steps", "2", "--quick", "--json", str(report), "--quiet"] + \
        [f"--option={k}={v}" for k, v in OPTIONS.items()]
    assert main(argv) == 130
    got = json.loads(report.read_text())
    assert got["interrupted"] is True and got["steps"] == 0 and got["output"] is None and got["samples"] == 0
    assert "interrupted at step 0/2; no policy written" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize("damage, why", [
    # the time limit fired at once: a 1-step policy written as finished, exit 0 (an outside check)
    (lambda ck: ck["state"].update(seconds=float("inf")), "its seconds inf is not a time"),
    (lambda ck: ck["state"].update(step=10 ** 12), "its history is not one row of numbers per step"),
    (lambda ck: ck["state"].update(step="3"), "its step and samples are not counts"),  # a traceback
    (lambda ck: ck["state"]["history"][0].update(loss=float("nan")), "not one row of numbers per step"),
    (lambda ck: ck["optim"]["param_groups"][0].update(lr=float("nan")), "its optimizer's lr is nan"),
    (lambda ck: [v.__setitem__(0, [99] * len(v[0])) for v in ck["state"]["states"].values()] or
     ck["state"]["states"].update(x=[[0], [False], [0.0]]), "is not one of the training set's"),
])
def test_a_damaged_checkpoint_is_refused_in_one_line(tmp_path, damage, why):
    """A checkpoint of this very training (its signature matches) with a field no run writes. Reference: the fields
    the training writes (counts, a time, one row of numbers per step, decisions of the training set's graphs)."""
    import torch

    from graphmill.ir import UserInputError

    out, ck = str(tmp_path / "p.npz"), tmp_path / "train.ckpt"
    interrupted_after_step_1(out, ck)
    state = torch.load(ck, weights_only=True)
    damage(state)
    torch.save(state, ck)
    with pytest.raises(UserInputError) as e:
        api.train_policy(out, steps=2, quick=True, options=OPTIONS, checkpoint=str(ck))
    assert str(e.value).startswith(f"{ck}: a damaged training checkpoint (") and why in str(e.value), e.value
    assert not (tmp_path / "p.npz").exists()
