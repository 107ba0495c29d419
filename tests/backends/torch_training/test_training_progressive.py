"""Progressive learning (EfficientNetV2, Tan & Le 2021, Algorithm 1), the shared loop's checkpoint/resume
and the regularizers.

References: Algorithm 1's linear interpolation computed by hand; ONNX Runtime for the dropout-carrying
training copy in inference; an uninterrupted run for resume (bit-equal weights).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graphmill.backends.torch import to_torch
from graphmill.backends.torch.training import (Stage, TrainConfig, fixed_schedule, load_checkpoint, mixup,
                                               progressive_schedule, rand_augment, run_training, with_dropout)
from graphmill.errors import UserInputError
from graphmill.frontend import zoo


def test_schedule_is_algorithm_1_by_hand():
    st = progressive_schedule(stages=4, min_size=16, max_size=32, steps=10, dropout=(0.1, 0.4),
                              magnitude=(5, 15), mixup=(0, 0.3))
    # S_i = 16 + 16 i/3 -> 16, 21.33, 26.67, 32; R_i likewise; N/M = 2.5 steps: 2, 2, 3, 3
    assert [s.size for s in st] == [16, 21, 27, 32]
    assert [s.steps for s in st] == [2, 2, 3, 3]
    assert np.allclose([s.dropout for s in st], [0.1, 0.2, 0.3, 0.4])
    assert np.allclose([s.magnitude for s in st], [5, 5 + 10 / 3, 5 + 20 / 3, 15])
    assert np.allclose([s.mixup for s in st], [0, 0.1, 0.2, 0.3])
    one = progressive_schedule(stages=1, min_size=16, max_size=32, steps=5)
    assert [(s.size, s.steps, s.dropout) for s in one] == [(32, 5, 0.3)]  # one stage: the final setting
    assert fixed_schedule(size=32, steps=7) == [Stage(size=32, steps=7, dropout=0.3, magnitude=15.0, mixup=0.2)]


@pytest.mark.parametrize("stages,lo,hi,stage,size", [(15, 1, 22, 9, 14), (11, 16, 341, 7, 244), (15, 8, 183, 9, 120)])
def test_a_size_halfway_between_two_pixels_rounds_half_to_even(stages, lo, hi, stage, size):
    """S_i = S0 + (Se - S0) i/(M-1) rounded half to even, as the README says. By hand: 1 + 21 * 9/14 = 14.5 -> 14,
    16 + 325 * 7/10 = 243.5 -> 244, 8 + 175 * 9/14 = 120.5 -> 120; in floats they landed either side of the half
    (15, 243, 121; an outside check)."""
    st = progressive_schedule(stages=stages, min_size=lo, max_size=hi, steps=100)
    assert st[stage].size == size


@pytest.mark.parametrize("kw,match", [(dict(min_size=40, max_size=32), "sizes shrink"),
                                      (dict(steps=3), "cannot fill"), (dict(steps=0), "--steps"),
                                      (dict(dropout=(0.1, 1.0)), "must be below 1"), (dict(magnitude=(-1, 5)), ">= 0"),
                                      (dict(magnitude=(5, 31)), r"0 \.\. 30")])  # RandAugment's scale (paper)
def test_bad_schedules_are_refused(kw, match):
    args = dict(stages=4, min_size=16, max_size=32, steps=10) | kw
    with pytest.raises(UserInputError, match=match):
        progressive_schedule(**args)


def test_regularizers_off_draw_nothing_and_on_change_the_batch():
    x = torch.randn(6, 1, 8, 8)
    state = torch.get_rng_state()
    assert rand_augment(x, 0) is x
    assert mixup(x, torch.arange(6), 0.0)[3] == 1.0
    assert torch.equal(state, torch.get_rng_state())  # plain training draws only its batch indices
    torch.manual_seed(0)
    y = rand_augment(x, 30)
    assert y.shape == x.shape and not torch.allclose(x, y)
    xm, ya, yb, lam = mixup(x, torch.arange(6), 0.4)
    assert 0 < lam < 1 and torch.allclose(xm, lam * x + (1 - lam) * x[torch.tensor([int(v) for v in yb])])


def _small(resolution=32):
    return zoo.build("efficientnetv2_s", width=0.125, depth=0.2, resolution=resolution, num_classes=10, seed=1)


def test_dropout_copy_trains_with_the_stage_rate_and_infers_as_the_original():
    from graphmill.backends.onnxruntime import run

    g = _small()
    work = with_dropout(g)
    drops = [n for n in work.nodes if n.op_type == "Dropout"]
    assert len(drops) == 1 and drops[0].outputs[0].users[0].op_type in ("Gemm", "MatMul")
    assert not any(n.op_type == "Dropout" for n in g.nodes)  # the user's graph is untouched
    m = to_torch(work)
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    want = list(run(g, {g.inputs[0].name: x}).values())[0]  # ONNX Runtime on the user's graph
    m.eval()
    got = m(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    from graphmill.backends.torch.training.loop import set_dropout
    set_dropout(m, 0.9)
    m.train()
    torch.manual_seed(0)
    assert not torch.allclose(m(torch.tensor(x)), torch.tensor(got), atol=1e-3)


def test_recalibration_at_a_size_change_keeps_the_stages_dropout_rate():
    """Re-estimating BatchNormalization statistics (progressive learning, at each size change) wrote every graph
    initializer back into the module, so the shared Dropout ratio went back to the built 0.0 for the rest of
    every stage after the first. Reference: the rate the stage set, and the statistics of the new input
    computed with torch directly for the first BatchNormalization."""
    from graphmill.backends.torch.training.loop import recalibrate_batchnorm, set_dropout
    from graphmill.backends.torch.training.progressive import DROPOUT_RATIO

    m = to_torch(with_dropout(_small()))
    set_dropout(m, 0.25)
    x = torch.randn(8, 3, 32, 32) * 3 + 1
    assert recalibrate_batchnorm(m, x) > 0
    rate = {v: getattr(m, a) for a, v in m.buffer_names.items()}[DROPOUT_RATIO]
    assert float(rate) == 0.25
    bn = next(n for n in m.graph.nodes if n.op_type == "BatchNormalization")
    mean = {v: getattr(m, a) for a, v in m.buffer_names.items()}[bn.inputs[3].name]
    conv_out = torch.nn.functional.conv2d  # the first BatchNormalization reads the stem convolution of x
    stem = next(n for n in m.graph.nodes if n.op_type == "Conv")
    assert bn.inputs[0].name == stem.outputs[0].name
    w = torch.as_tensor(stem.inputs[1].const.numpy())
    b = torch.as_tensor(stem.inputs[2].const.numpy()) if len(stem.inputs) > 2 and stem.inputs[2] is not None else None
    y = conv_out(x, w, b, stride=stem.attrs["strides"].value, padding=stem.attrs["pads"].value[:2])
    assert torch.allclose(mean, y.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)


def _run(tmp_path, name, resume=False, stop_after=None, **cfg):
    cfg = dict(steps=4, batch=16, stages=2, min_size=16, calibrate=16) | cfg
    lines = []

    def progress(line):
        lines.append(line)
        if stop_after is not None and len(lines) >= stop_after:
            raise KeyboardInterrupt
    g = _small()
    config = TrainConfig(mode="progressive", **cfg)
    run = run_training(g, config, checkpoint=tmp_path / name, resume=resume, progress=progress)
    return g, run, lines


@pytest.mark.slow
def test_interrupted_progressive_run_resumes_to_the_uninterrupted_weights(tmp_path):
    # reference: the same run without interruption; resume must give bit-equal weights and history
    # (the cut is at the stage boundary, where the size changes and BatchNorm statistics are re-estimated)
    ref, ref_run, ref_lines = _run(tmp_path, "ref.pt")
    assert len(ref_lines) == 2 and [r["size"] for r in ref_run.loop.history] == [16, 32]
    assert "stage 2/2 size 32" in ref_lines[1] and "accuracy" in ref_lines[1]
    _, cut, _ = _run(tmp_path, "cut.pt", stop_after=1)
    assert cut.loop.interrupted and cut.loop.checkpoint_step == 2
    assert load_checkpoint(tmp_path / "cut.pt")["step"] == 2
    done, run, lines = _run(tmp_path, "cut.pt", resume=True)
    assert not run.loop.interrupted and run.loop.step == 4
    assert lines[0] == f"resuming from {tmp_path / 'cut.pt'} at step 2/4" and len(lines) == 2  # and one row
    assert [r["loss"] for r in run.loop.history] == [r["loss"] for r in ref_run.loop.history]
    for name, v in ref.initializers.items():
        assert np.array_equal(v.const.numpy(), done.initializers[name].const.numpy()), name
    with pytest.raises(UserInputError, match="lr"):  # other options: refused, naming the first that differs
        _run(tmp_path, "cut.pt", resume=True, lr=1e-2)


@pytest.mark.slow
def test_ctrl_c_inside_a_step_finishes_it_checkpoints_it_and_the_resume_is_exact(tmp_path, monkeypatch):
    """SIGINT arriving in the middle of step 3 of a 6-step row (one history row at the end): the step finishes,
    is checkpointed with its losses, and the resumed run's row and weights equal the uninterrupted run's
    (before, the KeyboardInterrupt left step 3 half done and no checkpoint: the 3 steps were lost).
    Reference: the same run without interruption (bit-equal weights and history)."""
    import signal

    from graphmill.backends.torch.training import loop

    config = dict(steps=6, batch=16, stages=2, min_size=16, calibrate=16)
    ref, ref_run, _ = _run(tmp_path, "ref.pt", **config)
    assert len(ref_run.loop.history) == 2  # rows at steps 3 and 6 (the stage ends): the cut is inside row 2
    real, calls = loop.rand_augment, []

    def ctrl_c_in_step_5(x, magnitude):
        calls.append(1)
        if len(calls) == 5:
            signal.raise_signal(signal.SIGINT)
        return real(x, magnitude)
    monkeypatch.setattr(loop, "rand_augment", ctrl_c_in_step_5)
    _, cut, lines = _run(tmp_path, "cut.pt", **config)
    assert cut.loop.interrupted and cut.loop.step == 5 and cut.loop.checkpoint_step == 5 and len(lines) == 1
    saved = load_checkpoint(tmp_path / "cut.pt")
    assert saved["step"] == 5 and len(saved["pending_losses"]) == 2  # steps 4 and 5, for row 2's mean
    monkeypatch.setattr(loop, "rand_augment", real)
    done, run, lines = _run(tmp_path, "cut.pt", resume=True, **config)
    assert not run.loop.interrupted and run.loop.step == 6
    assert lines[0] == f"resuming from {tmp_path / 'cut.pt'} at step 5/6" and len(lines) == 2  # and one row
    assert [r["loss"] for r in run.loop.history] == [r["loss"] for r in ref_run.loop.history]
    for name, v in ref.initializers.items():
        assert np.array_equal(v.const.numpy(), done.initializers[name].const.numpy()), name


def test_checkpoint_is_loaded_without_running_pickled_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"model": Evil(), "optimizer": {}, "step": 0, "config": {}}))
    with pytest.raises(UserInputError, match="not a graphmill training checkpoint"):
        load_checkpoint(bad)


def test_a_checkpoint_without_an_option_is_said_to_predate_it():
    """Reference: the two configurations. An option added after a checkpoint was written is missing from it;
    the refusal said "made with largest_every=None", naming a value nobody gave."""
    from graphmill.backends.torch.training.loop import check_same_config

    with pytest.raises(UserInputError, match=r"ck.pt: the checkpoint predates option largest_every \(this run has "
                                             r"largest_every=2\)"):
        check_same_config("ck.pt", {"seed": 0}, {"seed": 0, "largest_every": 2})
    with pytest.raises(UserInputError, match="the checkpoint was made with seed=0, this run has seed=1"):
        check_same_config("ck.pt", {"seed": 0}, {"seed": 1})
    check_same_config("ck.pt", {"seed": 0}, {"seed": 0})  # the same: no error
    check_same_config("ck.pt", {"seed": 0}, {"seed": 0, "micro_batch": None})  # a new option left unset: resumes
    with pytest.raises(UserInputError, match="made with option rows=8, which this version no longer has"):
        check_same_config("ck.pt", {"seed": 0, "rows": 8}, {"seed": 0})


def test_a_resume_with_another_mode_or_seed_is_refused_naming_that_option():
    """Reference: the two configurations as api.train writes them (TrainConfig's order). A resume that added
    --progressive was refused naming min_size=None against 16, one with another --seed naming the model's
    description, the first keys alphabetically that differed (an outside check)."""
    from graphmill.backends.torch.training.loop import MODE_OPTIONS, check_same_config
    from graphmill.backends.torch.training.runner import TrainConfig

    fixed = TrainConfig(mode="fixed", steps=30, min_size=None, stages=None, model="zoo m seed=0").to_dict()
    progressive = TrainConfig(mode="progressive", steps=30, stages=2, model="zoo m seed=0").to_dict()
    with pytest.raises(UserInputError, match="made with mode='fixed', this run has mode='progressive'"):
        check_same_config("ck.pt", fixed, progressive, unused=MODE_OPTIONS)
    reseeded = TrainConfig(mode="fixed", steps=30, min_size=None, stages=None, seed=1, model="zoo m seed=1").to_dict()
    with pytest.raises(UserInputError, match="made with seed=0, this run has seed=1"):
        check_same_config("ck.pt", fixed, reseeded, unused=MODE_OPTIONS)


def test_a_checkpoint_holding_the_old_defaults_of_options_the_mode_does_not_use_resumes():
    """Checkpoints before 9543a86 recorded the defaults of options the mode does not use (a fixed run's stages 4
    and min_size 16, a contrastive run's dropout and mixup too); they hold null now, and such a checkpoint was
    refused, the message asking for --min-size 16, which the mode then refused (a review). Reference: the
    configurations the two versions write for `graphmill train MODEL` with no option given."""
    from graphmill.backends.torch.training.loop import MODE_OPTIONS, check_same_config

    new = {"mode": "contrastive", "stages": None, "min_size": None, "dropout": None, "mixup": None, "seed": 0}
    old = {"mode": "contrastive", "stages": 4, "min_size": 16, "dropout": [0.1, 0.3], "mixup": [0.0, 0.2], "seed": 0}
    check_same_config("ck.pt", old, new, unused=MODE_OPTIONS)
    # given then, and ignored by the mode as the default was (a review: --stages 6 in a fixed run)
    check_same_config("ck.pt", {**old, "stages": 6, "dropout": [0.5, 0.5]}, new, unused=MODE_OPTIONS)
    with pytest.raises(UserInputError, match="made with stages=4, this run has stages=3"):
        check_same_config("ck.pt", old, {**new, "stages": 3}, unused=MODE_OPTIONS)  # set now: compared as ever
    with pytest.raises(UserInputError, match="made with mode='contrastive', this run has mode='fixed'"):
        check_same_config("ck.pt", old, {**new, "mode": "fixed"}, unused=MODE_OPTIONS)
    # a fixed run's temperature: recorded before an outside check found --temperature accepted and unused there
    fixed = {"mode": "fixed", "stages": None, "min_size": None, "temperature": None, "seed": 0}
    check_same_config("ck.pt", {**fixed, "stages": 4, "min_size": 16, "temperature": 0.5}, fixed, unused=MODE_OPTIONS)
    with pytest.raises(UserInputError, match=r"made with dropout=\[0.1, 0.3\], this run has dropout=None"):
        check_same_config("ck.pt", old, new)  # other callers (AutoHAS, supernet) name no such options
