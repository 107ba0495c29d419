"""``graphmill train-policy --checkpoint``: an interrupted run keeps its checkpoint and the same call resumes it; a
finished run removes it, so that rerunning the command trains afresh instead of silently 'resuming' a finished run
(reference: the convention of chip place's OUT.plc.rl-checkpoint, asserted gone after a finished run in
tests/cli/test_chip_cli.py)."""

from __future__ import annotations

import pytest

from graphmill import api

OPTIONS = {"graphs": 1, "samples": 2, "epochs": 1}


@pytest.mark.slow  # ~7 s: three short trainings
def test_finished_run_removes_its_checkpoint_interrupted_run_resumes(tmp_path):
    out, ck = str(tmp_path / "p.npz"), tmp_path / "train.ckpt"

    def stop_after_first_step(line: str) -> None:
        if "step 1/2" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.train_policy(out, steps=2, quick=True, options=OPTIONS, checkpoint=str(ck), progress=stop_after_first_step)
    assert ck.exists()  # interrupted: the training state stands
    lines: list[str] = []
    r = api.train_policy(out, steps=2, quick=True, options=OPTIONS, checkpoint=str(ck), progress=lines.append)
    assert r["resumed"] and r["steps"] == 2 and sum("step 2/2" in x for x in lines) == 1
    assert not any("step 1/2" in x for x in lines)  # resumed after step 1, not from scratch
    assert not ck.exists()  # finished: removed
    lines.clear()
    r = api.train_policy(out, steps=2, quick=True, options=OPTIONS, checkpoint=str(ck), progress=lines.append)
    assert not r["resumed"] and any("step 1/2" in x for x in lines)  # the rerun trained again
    assert not ck.exists()
