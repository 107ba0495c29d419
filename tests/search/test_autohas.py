"""AutoHAS (graphmill.search.methods.autohas): joint architecture x hyper-parameter search with shared weights.

References: ONNX Runtime (the exported pick's accuracy on the test images equals the reported one), an
uninterrupted run (a run stopped by Ctrl-C and resumed ends with the same history and pick), hand-computed
optima (the controller's argmax on a reward that only one choice earns; a learning rate of 1e-6 cannot beat
0.1 after the temporary updates), and the nearest-name rule for bad options.
"""

from __future__ import annotations

import json
import re
import os
import warnings

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

from graphmill.errors import UserInputError
from graphmill.search import Choice, Space
from graphmill.search.methods import autohas

TINY = {"space": "tiny", "log_every": "5", "final_steps": "10", "batch": "16", "val_batch": "32"}


def _run(out, budget=20, progress=None, **options):
    return autohas.run(str(out), budget=budget, seed=0, workers=1, executor=None, ray_address=None, accel=None,
                       options={**TINY, **options}, progress=progress)


def test_shared_weights_diverging_on_most_steps_is_warned_and_counted(tmp_path):
    """Reference: the history's own rows. A learning-rate candidate of 1e3 made most shared steps diverge; the run
    reported its pick (at chance) without a word (an outside check). A sane run is not warned."""
    from graphmill.errors import SearchWarning

    with pytest.warns(SearchWarning, match=r"autohas: (\d+) of 20 steps of the shared weights diverged"):
        _run(tmp_path / "bad", lr="0.1,1e5")
    rep = json.load(open(tmp_path / "bad" / "report.json"))
    rows = [json.loads(line) for line in open(tmp_path / "bad" / "history.jsonl")]
    assert rep["shared_diverged"] == sum(bool(r.get("shared_diverged")) for r in rows) > 10
    with warnings.catch_warnings():
        warnings.simplefilter("error", SearchWarning)
        _run(tmp_path / "good")
    assert json.load(open(tmp_path / "good" / "report.json"))["shared_diverged"] <= 10


def test_a_pick_whose_training_diverged_is_warned(tmp_path):
    """Reference: the pick's weights in best.onnx. A learning rate of 1e4 left the shared weights huge but finite
    (no step counted as diverged) and the pick's training ran to NaN: best.onnx held NaN weights without a word (a
    review)."""
    from graphmill.errors import SearchWarning

    with pytest.warns(SearchWarning, match="the pick's weights are not finite"):
        autohas.run(str(tmp_path / "x"), budget=16, seed=2, workers=1, executor=None, ray_address=None, accel=None,
                    options={"space": "tiny", "lr": "0.01,0.03,0.1,1e4", "screen": "2"}, progress=None)
    assert json.load(open(tmp_path / "x" / "report.json"))["pick_finite"] is False
    weights = onnx.load(str(tmp_path / "x" / "best.onnx")).graph.initializer
    assert not all(np.isfinite(onnx.numpy_helper.to_array(t)).all() for t in weights if t.data_type == 1)


@pytest.mark.slow
def test_run_writes_outputs_and_the_onnx_pick_predicts_as_reported(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    lines: list[str] = []
    s = _run(tmp_path / "a", progress=lines.append)
    assert s["method"] == "autohas" and not s["interrupted"] and s["trials"] == 20
    assert "digits" in s["task"]
    assert {"checkpoint.pt", "history.jsonl", "autohas.png", "best.onnx", "report.json"} <= set(s["files"])
    assert sum(line.startswith("[autohas] step") for line in lines) == 4
    assert sum(line.startswith("[autohas] final") for line in lines) == 2
    best = s["best"]
    assert set(best["hyperparameters"]) == {"lr", "weight_decay", "augment"} and best["macs"] > 0 and best["params"] > 0
    rows = [json.loads(x) for x in open(tmp_path / "a" / "history.jsonl")]
    assert [r["step"] for r in rows] == list(range(1, 21))
    json.dumps(s)
    # ONNX Runtime on the exported child, on the test images at the pick's resolution: the reported accuracy
    from graphmill.search.oneshot import digits_split

    d = digits_split(best["config"]["resolution"])
    sess = ort.InferenceSession(str(tmp_path / "a" / "best.onnx"))
    logits = sess.run(None, {sess.get_inputs()[0].name: d.x_test.numpy()})[0]
    acc = float((logits.argmax(1) == d.y_test.numpy()).mean())
    assert abs(acc - best["accuracy"]) <= 1.5 / len(d.y_test)
    assert s["new_trials"] == 20
    # rerunning the finished command returns the same result without training again, and says so (it printed
    # nothing, and its --json had no new_trials, which the --space searches and EvaNet report: an outside check)
    lines.clear()
    again = _run(tmp_path / "a", progress=lines.append)
    assert again["best"] == best and again["new_trials"] == 0 and again["trials"] == 20
    assert lines == [f"[autohas] nothing run: {tmp_path / 'a' / 'checkpoint.pt'} holds the finished run (20 step(s) "
                     f"of --budget 20); its result is {tmp_path / 'a' / 'report.json'}"], lines


@pytest.mark.slow
def test_ctrl_c_then_rerun_resumes_to_the_uninterrupted_result(tmp_path):
    full = _run(tmp_path / "full", budget=10)

    def stop(line: str) -> None:  # at the first progress line: after the checkpoint of step 5
        raise KeyboardInterrupt

    part = _run(tmp_path / "part", budget=10, progress=stop)
    assert part["interrupted"] and part["checkpoint"] and part["trials"] == 5 and part["new_trials"] == 5
    assert not os.path.exists(tmp_path / "part" / "best.onnx")
    lines: list[str] = []
    done = _run(tmp_path / "part", budget=10, progress=lines.append)
    assert not done["interrupted"] and done["trials"] == 10 and done["new_trials"] == 5
    assert done["best"] == full["best"]
    # the resumed run says so first (it said nothing: an outside check)
    assert lines[0] == f"[autohas] resuming from {tmp_path / 'part' / 'checkpoint.pt'} at search step 5/10", lines
    h1 = [json.loads(x) for x in open(tmp_path / "full" / "history.jsonl")]
    h2 = [json.loads(x) for x in open(tmp_path / "part" / "history.jsonl")]
    assert h1 == h2
    # a different option against that checkpoint is refused, naming the option
    with pytest.raises(UserInputError, match="val_batch"):
        _run(tmp_path / "part", budget=10, val_batch="16")


def test_a_rerun_with_another_accelerator_is_refused_naming_it(tmp_path):
    """A finished run rerun with another ``--accel``, or none, returned the first accelerator's latency without a
    word (an outside check): the report's latency is on that accelerator, so another one is refused as every other
    option is. Reference: the README's "other options are refused naming the first that differs"."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    edge, calc = (os.path.join(root, "examples", "accelerators", f) for f in ("edge.toml", "scalesim-calc.toml"))

    def stop(line: str) -> None:  # at the first progress line: after the checkpoint of step 5
        raise KeyboardInterrupt

    part = autohas.run(str(tmp_path / "a"), budget=10, seed=0, workers=1, executor=None, ray_address=None,
                       accel=edge, options=dict(TINY), progress=stop)
    assert part["interrupted"]
    for other, shown in ((calc, r"accel='scalesim-calc \(\w{10}\)'"), (None, "accel=None")):
        with pytest.raises(UserInputError, match=r"made with accel='edge \(\w{10}\)', this run has " + shown):
            autohas.run(str(tmp_path / "a"), budget=10, seed=0, workers=1, executor=None, ray_address=None,
                        accel=other, options=dict(TINY), progress=None)
    # a checkpoint written before the accelerator was recorded cannot say which it had: it resumes with --accel
    from graphmill.backends.torch.training.loop import load_checkpoint, save_checkpoint

    ck = str(tmp_path / "a" / "checkpoint.pt")
    state = load_checkpoint(ck)
    state["config"].pop("accel")
    save_checkpoint(ck, state)
    lines: list[str] = []
    again = autohas.run(str(tmp_path / "a"), budget=10, seed=0, workers=1, executor=None, ray_address=None,
                        accel=edge, options=dict(TINY), progress=lines.append)
    assert not again["interrupted"] and lines[0].startswith("[autohas] resuming from") and "latency_ms" in again["best"]


def test_bad_options_are_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(UserInputError, match="did you mean 'temp_steps'"):
        _run(out, temp_step="2")
    with pytest.raises(UserInputError, match="final_init"):
        _run(out, final_init="warm")
    with pytest.raises(UserInputError, match="augment"):
        _run(out, augment="5,40")
    with pytest.raises(UserInputError, match="budget"):
        _run(out, budget=0)
    with pytest.raises(UserInputError, match="executor"):
        autohas.run(str(out), budget=5, seed=0, workers=1, executor="rey", ray_address=None, accel=None,
                    options=dict(TINY), progress=None)
    with pytest.raises(UserInputError):
        autohas.run(str(out), budget=5, seed=0, workers=1, executor=None, ray_address=None,
                    accel=str(tmp_path / "missing.toml"), options=dict(TINY), progress=None)
    assert not out.exists()


def test_controller_converges_to_the_only_rewarded_choice():
    space = Space({"a": Choice([0, 1, 2, 3]), "b": Space({"c": Choice(["x", "y"])})})
    ctl = autohas.Controller(space, seed=0, lr=0.1)
    for _ in range(400):
        config, actions = ctl.sample()
        ctl.update(actions, 1.0 if (config["a"] == 2 and config["b"]["c"] == "y") else 0.0)
    assert ctl.argmax() == {"a": 2, "b": {"c": "y"}}
    assert ctl.probability({"a": 2, "b": {"c": "y"}}) > 0.5
    # the state round-trips through JSON: the same next sample
    other = autohas.Controller(space, seed=5)
    other.load_state_dict(json.loads(json.dumps(ctl.state_dict())))
    assert other.sample() == ctl.sample()


@pytest.mark.slow
def test_temporary_update_scores_the_sampled_learning_rate(tmp_path):
    """With learning rates 1e-6 and 0.1 as the only hyper-parameter choice, the temporary update with the
    sampled rate decides the reward: the controller must end on 0.1 (1e-6 leaves W* = W at chance)."""
    s = _run(tmp_path / "lr", budget=80, lr="0.000001,0.1", weight_decay="0", augment="0", warmup="0.1",
             controller_lr="0.2", final_steps="5")
    assert s["best"]["hyperparameters"]["lr"] == 0.1
    rep = json.load(open(tmp_path / "lr" / "report.json"))
    assert rep["controller"]["hp.lr"]["0.1"] > 0.8
    assert np.isclose(sum(rep["controller"]["hp.lr"].values()), 1.0)


def test_candidate_lists_from_python_read_like_the_cli_text():
    """Reference: the CLI's comma-separated text. ``options={"lr": [0.1, 0.3]}`` from Python was refused
    ("expected comma-separated numbers"); a list must give what ``--option lr=0.1,0.3`` gives."""
    from_list = autohas.check_options({"lr": [0.1, 0.3]})["lr"]
    assert from_list == autohas.check_options({"lr": "0.1,0.3"})["lr"] == (0.1, 0.3)
    # one bound in both refusals: "-1" was refused as "numbers >= 0" and "0" then as "must be > 0" (an outside check)
    for bad in ([0.0, 0.1], [0.1, -1.0]):
        with pytest.raises(UserInputError, match=r"expected distinct finite numbers > 0 \(learning rates\)"):
            autohas.check_options({"lr": bad})


def _visible_points(ax) -> list[int]:
    """The data marks a reader can see in ``ax``, per artist: a scatter's points when its markers are at least
    10 pt^2, a line's points when it has markers or joins two points or more (a markerless line through one
    point draws nothing); lines in axes coordinates (``axvline``) are not data."""
    seen = [len(c.get_offsets()) for c in ax.collections if len(c.get_offsets()) and min(c.get_sizes()) >= 10]
    for line in ax.get_lines():
        if line.get_transform() != ax.transData:
            continue
        n = len(line.get_xdata())
        if n >= 2 or (n == 1 and line.get_marker() not in (None, "", "None", " ")):
            seen.append(n)
    return seen


def _figure(monkeypatch, draw):
    """The figure ``draw()`` saves (``save_figure`` still writes it)."""
    from graphmill.util import plots

    figures = []
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, **kw: (figures.append(fig), save(fig, path, **kw)))
    draw()
    return figures[-1]


def test_plot_of_a_one_step_history_shows_its_points(tmp_path, monkeypatch):
    """Reference: hand count. What a 1-step run (budget below ``log_every``) recorded: one reward and one
    snapshot of the controller's probabilities; its autohas.png was blank in all four panels (the reward at
    3 pt^2, 25% opaque; the snapshot drawn as markerless lines, which draw nothing through one point)."""
    space = autohas.joint_space(autohas.supernet_spec("tiny"))
    history = [{"step": 1, "config": {}, "reward": 0.0625, "learning": True}]
    probs = [{"step": 1, "probs": {f"hp.{k}": [0.25] * 4 for k in ("lr", "weight_decay", "augment")}}]
    pick = {"hp": {"lr": 0.01, "weight_decay": 0.0, "augment": 0}}
    fig = _figure(monkeypatch, lambda: autohas.plot(str(tmp_path / "a.png"), history, probs, space, pick))
    reward, *hps = fig.axes[:4]
    assert _visible_points(reward) == [1]
    for ax in hps:  # the 4 candidates of lr, weight_decay, augment: one point each
        assert _visible_points(ax) == [1] * 4, ax.get_title()


def test_plot_with_nothing_to_draw_says_so(tmp_path, monkeypatch):
    """Reference: hand count: no step and no snapshot; the image must say so, not be a blank grid."""
    space = autohas.joint_space(autohas.supernet_spec("tiny"))
    fig = _figure(monkeypatch, lambda: autohas.plot(str(tmp_path / "a.png"), [], [], space, None))
    for ax in fig.axes[:4]:
        assert _visible_points(ax) == [] and any(t.get_text().startswith("no ") for t in ax.texts), ax.get_title()


@pytest.mark.slow  # about 1 s once torch, scikit-learn and matplotlib are imported; 12 s cold on a loaded machine
def test_a_one_step_run_plots_the_controllers_start_and_end(tmp_path, monkeypatch):
    """Reference: hand count: a 1-step run has one reward, and the controller's probabilities before (step 0)
    and after its step: a line of two points per candidate."""
    fig = _figure(monkeypatch, lambda: _run(tmp_path / "one", budget=1, final_steps="1"))
    reward, *hps = fig.axes[:4]
    assert _visible_points(reward) == [1]
    for ax in hps:
        assert _visible_points(ax) == [2] * 4, ax.get_title()
        assert list(ax.get_lines()[0].get_xdata()) == [0, 1]


@pytest.mark.slow  # three 4-step runs: about 3 s once torch is imported
def test_ctrl_c_before_the_first_log_step_leaves_a_checkpoint_to_resume(tmp_path, monkeypatch):
    """Reference: the uninterrupted run. A Ctrl-C before the first ``log_every`` steps left no checkpoint (the
    summary said ``checkpoint: None`` and the CLI "resume from None") beside a history of steps no checkpoint
    held; now the step-0 checkpoint is there and the rerun ends as the uninterrupted run does."""
    full = _run(tmp_path / "full", budget=4, final_steps="1")
    real, calls = autohas.search_step, []

    def step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(autohas, "search_step", step)
    part = _run(tmp_path / "part", budget=4, final_steps="1")
    assert part["interrupted"] and part["checkpoint"] == str(tmp_path / "part" / "checkpoint.pt")
    assert os.path.exists(part["checkpoint"]) and not os.path.exists(tmp_path / "part" / "best.onnx")
    # no best before the pick is trained (the CLI printed "best: probability 0.0156" of the untrained pick)
    assert part["best"] is None and set(part["current_pick"]["hyperparameters"]) == {"lr", "weight_decay", "augment"}
    monkeypatch.setattr(autohas, "search_step", real)
    done = _run(tmp_path / "part", budget=4, final_steps="1")
    assert not done["interrupted"] and done["best"] == full["best"]
    assert open(tmp_path / "part" / "history.jsonl").read() == open(tmp_path / "full" / "history.jsonl").read()


class _FixedController:
    """A controller that always samples ``config`` and records its updates (duck-typed ``JointController``)."""

    def __init__(self, config: dict) -> None:
        self.config, self.updates = config, []

    def sample(self):
        return self.config, None

    def update(self, actions, rewards):
        self.updates.append(rewards)
        return {}


def _overflowing_sgd():
    import torch

    class OverflowingSGD(torch.optim.SGD):
        """SGD whose every step overflows one weight to inf (what a huge learning rate does, its loss, computed
        before the update, still finite)."""

        overflow = True

        def step(self, closure=None):
            out = super().step(closure)
            if self.overflow:
                with torch.no_grad():
                    self.param_groups[0]["params"][0].view(-1)[0] = float("inf")
            return out
    return OverflowingSGD


def _one_step(arch: dict, *, update: str, step: int, learn: bool = True, overflow: bool = False,
              largest_every: int = 2):
    """The shared weights before and after one ``search_step`` of the tiny supernet whose controller samples
    ``arch`` (learning rate 0.1, no decay, no augmentation), from the same weights and random state."""
    import torch

    from graphmill.search.oneshot import digits_split, init_weights
    from graphmill.search.oneshot.torchnet import SupernetModule

    spec = autohas.supernet_spec("tiny")
    data = {r: digits_split(r, spec.in_channels) for r in spec.resolutions}
    torch.manual_seed(0)
    module = SupernetModule(spec, init_weights(spec, 0))
    module.train()
    before = module.weights()
    optimizer = (_overflowing_sgd() if overflow else torch.optim.SGD)(module.parameters(), lr=0.1, momentum=0.9)
    ctl = _FixedController({"arch": arch, "hp": {"lr": 0.1, "weight_decay": 0.0, "augment": 0}})
    row = autohas.search_step(module, optimizer, ctl, spec, data, torch.Generator().manual_seed(0), batch=16,
                              val_batch=32, temp_steps=1, learn=learn, update=update, step=step,
                              largest_every=largest_every)
    return before, module.weights(), row, ctl


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_sandwich_update_trains_the_shared_weights_whatever_the_controller_sampled():
    """Reference: the same step with another sampled architecture. Under ``update="sandwich"`` the controller's
    sample is scored on a temporary update that is then undone, and the shared weights take their own step (the
    largest child on odd steps): after a scored step they are identical whether the controller sampled the
    smallest or the largest child (both draw the same batch indices: every resolution has 1,138 training and 300
    validation images). Under ``"sampled"`` (W <- W*, as published) they differ. Both score the sample."""
    spec = autohas.supernet_spec("tiny")
    small, large = spec.smallest(), spec.largest()
    w0, w_small, row_small, ctl_small = _one_step(small, update="sandwich", step=1)
    _, w_large, row_large, _ = _one_step(large, update="sandwich", step=1)
    assert not _same(w0, w_small)  # W did learn
    assert _same(w_small, w_large)
    assert row_small["trained"] == row_large["trained"] == "largest"
    assert row_small["train_steps"] == 2 and row_small["val_forwards"] == 2
    assert row_small["reward"] is not None and ctl_small.updates and set(ctl_small.updates[0]) == {"arch", "hp"}
    # an even step trains a uniformly drawn child instead
    assert _one_step(small, update="sandwich", step=0)[2]["trained"] == "uniform"
    _, s_small, row, _ = _one_step(small, update="sampled", step=1)
    _, s_large, _, _ = _one_step(large, update="sampled", step=1)
    assert row["trained"] == "sampled" and row["train_steps"] == 1
    assert not _same(s_small, s_large)
    assert _same(s_small, w_small) is False  # "sampled" kept W*, the smallest child's update


def test_largest_every_sets_which_shared_steps_train_the_largest_child():
    """Reference: the option's definition (the largest child when ``step % k == k - 1``), read from the rows'
    ``trained`` and from the weights: a largest-child step changes every output channel of the first expansion
    (24 at the largest width and expansion, 8 at the smallest child's) and the 5x5 kernels' outer taps."""
    spec = autohas.supernet_spec("tiny")
    small = spec.smallest()
    for k, pattern in ((1, "LLLL"), (2, "ULUL"), (3, "UULU")):
        got = "".join(_one_step(small, update="sandwich", step=s, largest_every=k)[2]["trained"][0].upper()
                      for s in range(4))
        assert got == pattern, (k, got)
    w0, w1, _, _ = _one_step(small, update="sandwich", step=2, largest_every=3, learn=False)
    assert (np.abs(w1["stage1.l0.expand.w"] - w0["stage1.l0.expand.w"]).reshape(24, -1).max(1) > 0).all()
    assert (w1["stage1.l0.dw.w"][:, :, 0, :] != w0["stage1.l0.dw.w"][:, :, 0, :]).any()
    with pytest.raises(UserInputError, match="largest_every=0"):
        autohas.check_options({"largest_every": "0"})


def test_sandwich_warm_up_steps_train_without_scoring():
    """Reference: the definition of the warm-up (the controller does not learn). Under ``"sandwich"`` a warm-up
    step computes no reward (no validation forward) and does not update the controller, but W takes its step;
    under ``"sampled"`` the warm-up step is scored (the reward is the step's own update) and still not learned."""
    spec = autohas.supernet_spec("tiny")
    w0, w1, row, ctl = _one_step(spec.smallest(), update="sandwich", step=0, learn=False)
    assert row["reward"] is None and row["gain"] is None and row["val_forwards"] == 0 and row["train_steps"] == 1
    assert ctl.updates == [] and not _same(w0, w1)
    _, _, row, ctl = _one_step(spec.smallest(), update="sampled", step=0, learn=False)
    assert row["reward"] is not None and row["val_forwards"] == 2 and ctl.updates == []


def test_update_option_is_checked():
    assert autohas.check_options({})["update"] == "sandwich"
    assert autohas.check_options({"update": "sampled"})["update"] == "sampled"
    with pytest.raises(UserInputError, match="did you mean 'sandwich'"):
        autohas.check_options({"update": "sandwhich"})
    with pytest.raises(UserInputError, match="did you mean 'sampled'"):  # case is ignored in the suggestion
        autohas.check_options({"update": "SAMPLED"})


@pytest.mark.slow  # three 10-step runs of the tiny space: a few seconds
def test_screened_pick_is_the_best_shared_weight_child_and_survives_a_resume(tmp_path):
    """Reference: the report's own list of screened children and the uninterrupted run. With ``screen`` N the
    pick's architecture is the screened child of best validation accuracy with the shared weights (the first,
    the controller's most probable, on a tie), among at most N + 1 distinct ones starting with the controller's
    most probable; its hyper-parameters are the controller's most probable. A Ctrl-C during the pick's
    training must not screen again on resume (the draws would differ): the resumed run ends as the
    uninterrupted one. ``screen=0`` picks the controller's most probable configuration."""
    full = _run(tmp_path / "full", budget=10, screen="6")
    rep = json.load(open(tmp_path / "full" / "report.json"))
    rows = rep["screened"]
    assert 2 <= len(rows) <= 7
    assert len({json.dumps(r["config"], sort_keys=True) for r in rows}) == len(rows)
    top = max(r["shared_val_accuracy"] for r in rows)
    assert full["best"]["config"] == next(r["config"] for r in rows if r["shared_val_accuracy"] == top)
    argmax_hp = {k: max(p, key=p.get) for k, p in rep["controller"].items() if k.startswith("hp.")}
    assert {f"hp.{k}": str(v) for k, v in full["best"]["hyperparameters"].items()} == argmax_hp
    assert rep["compute"]["screen_val_images"] > 0

    def stop(line: str) -> None:
        if line.startswith("[autohas] final"):
            raise KeyboardInterrupt

    part = _run(tmp_path / "part", budget=10, screen="6", progress=stop)
    assert part["interrupted"] and not os.path.exists(tmp_path / "part" / "best.onnx")
    # interrupted while the pick trains: the pick reported is the screened one being trained
    assert part["current_pick"]["config"] == full["best"]["config"]
    assert part["current_pick"]["hyperparameters"] == full["best"]["hyperparameters"]
    done = _run(tmp_path / "part", budget=10, screen="6")
    assert done["best"] == full["best"]
    assert json.load(open(tmp_path / "part" / "report.json"))["screened"] == rows

    plain = _run(tmp_path / "plain", budget=10, screen="0")
    rep0 = json.load(open(tmp_path / "plain" / "report.json"))
    assert rep0["screened"] == []
    arch_argmax = {k: max(p, key=p.get) for k, p in rep0["controller"].items() if k.startswith("arch.")}
    assert arch_argmax["arch.resolution"] == str(plain["best"]["config"]["resolution"])


def test_a_diverged_shared_step_is_undone_and_recorded():
    """Reference: the weights before the step. A warm-up step whose update overflows a weight to inf (its loss,
    computed before the update, is finite): W must be left as it was (the step undone) and the row must say so
    (``shared_diverged``, no ``shared_loss``), where a normal step moves W and records its loss."""
    spec = autohas.supernet_spec("tiny")
    w0, w1, row, _ = _one_step(spec.smallest(), update="sandwich", step=0, learn=False, overflow=True)
    assert row["shared_diverged"] and row["shared_loss"] is None and _same(w0, w1)
    w0, w1, row, _ = _one_step(spec.smallest(), update="sandwich", step=0, learn=False)
    assert not row["shared_diverged"] and row["shared_loss"] > 0 and not _same(w0, w1)


def test_undoing_a_diverged_step_restores_the_momentum_too():
    """Reference: the optimizer's state before the step. A scored step whose temporary update and shared step
    both overflow is undone twice from one copy; the first restore handed SGD the saved momentum tensors, which
    the shared step then updated in place, so the second restore brought back a changed momentum (the weights
    came back right; an outside check)."""
    import torch

    from graphmill.search.oneshot import digits_split, init_weights
    from graphmill.search.oneshot.torchnet import SupernetModule

    spec = autohas.supernet_spec("tiny")
    data = {r: digits_split(r, spec.in_channels) for r in spec.resolutions}
    torch.manual_seed(0)
    module = SupernetModule(spec, init_weights(spec, 0))
    module.train()
    optimizer = _overflowing_sgd()(module.parameters(), lr=0.1, momentum=0.9)
    optimizer.overflow = False
    ctl = _FixedController({"arch": spec.smallest(), "hp": {"lr": 0.1, "weight_decay": 0.0, "augment": 0}})
    step = dict(batch=16, val_batch=32, temp_steps=1, update="sandwich", step=1)
    autohas.search_step(module, optimizer, ctl, spec, data, torch.Generator().manual_seed(0), learn=False, **step)
    momentum = {id(p): s["momentum_buffer"].clone() for p, s in optimizer.state.items()}
    assert any(bool(m.abs().sum() > 0) for m in momentum.values())  # a momentum to lose
    weights = module.weights()
    optimizer.overflow = True
    row = autohas.search_step(module, optimizer, ctl, spec, data, torch.Generator().manual_seed(1), learn=True,
                              **step)
    assert row["diverged"] and row["shared_diverged"] and _same(weights, module.weights())
    assert {id(p) for p in optimizer.state} == set(momentum)
    for p, s in optimizer.state.items():
        assert torch.equal(s["momentum_buffer"], momentum[id(p)])


@pytest.mark.slow
@pytest.mark.parametrize("at", [7, 13])  # a search step between checkpoints (every 5), a step of the final training
def test_ctrl_c_between_checkpoints_keeps_every_finished_step(tmp_path, monkeypatch, at):
    """A real SIGINT while step ``at`` runs: the step finishes and is checkpointed, so the checkpoint holds every
    trial history.jsonl and the summary report (before: the last multiple of log_every, and a resume trained the
    steps since again), and the rerun ends as the uninterrupted run. Reference: the uninterrupted run."""
    import signal

    import torch

    full = _run(tmp_path / "full", budget=10)
    calls = {"n": 0}
    search_step, child_step = autohas.search_step, autohas.ChildTrainer.step

    def count() -> None:
        calls["n"] += 1
        if calls["n"] == at:
            os.kill(os.getpid(), signal.SIGINT)

    def interrupting_search_step(*a, **k):
        count()
        return search_step(*a, **k)

    def interrupting_child_step(self):
        count()
        return child_step(self)

    monkeypatch.setattr(autohas, "search_step", interrupting_search_step)
    monkeypatch.setattr(autohas.ChildTrainer, "step", interrupting_child_step)
    part = _run(tmp_path / "part", budget=10)
    assert part["interrupted"]
    held = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    if at <= 10:
        assert held["step"] == part["trials"] == at == len(open(tmp_path / "part" / "history.jsonl").readlines())
    else:
        assert held["phase"] == "final" and held["final"]["step"] == at - 10
    monkeypatch.undo()
    done = _run(tmp_path / "part", budget=10)
    assert done["best"] == full["best"]
    assert open(tmp_path / "full" / "history.jsonl").read() == open(tmp_path / "part" / "history.jsonl").read()


def test_ctrl_c_while_the_files_are_written_waits_for_them(tmp_path, monkeypatch):
    """A Ctrl-C after the final training, while the report, plot and model were written, raised out of the
    writing: the command printed "interrupted" and no --json, though nothing was left to compute (an outside
    check). Now the run finishes its files. Reference: the same run uninterrupted."""
    import signal

    full = _run(tmp_path / "full", budget=1, final_steps="1")
    real = autohas.plot

    def plot_after_ctrl_c(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler before the next bytecode
        return real(*args, **kwargs)

    monkeypatch.setattr(autohas, "plot", plot_after_ctrl_c)
    try:
        done = _run(tmp_path / "part", budget=1, final_steps="1")
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C raised out of the file writing")
    assert not done["interrupted"] and done["best"] == full["best"]
    assert os.path.exists(tmp_path / "part" / "best.onnx")


def test_history_follows_the_checkpoint_and_a_killed_run_leaves_it(tmp_path):
    """history.jsonl was written only when the run ended or was interrupted: a run killed mid-way left none (an
    outside check). It is now written with every checkpoint. Reference: the checkpoint's own history (steps 1-5 at
    the first progress line, which follows the checkpoint of step 5)."""
    def killed(line: str) -> None:  # SystemExit: nothing of the run's own Ctrl-C handling runs, as with kill -9
        raise SystemExit(9)

    with pytest.raises(SystemExit):
        _run(tmp_path / "k", budget=10, progress=killed)
    rows = [json.loads(x) for x in open(tmp_path / "k" / "history.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]


def test_a_ray_run_interrupted_reports_what_its_folder_holds(tmp_path, monkeypatch):
    """Interrupted under ``--executor ray``, the summary said files [] beside an existing checkpoint, trials null
    and a bare task name (an outside check). The Ray task is stubbed here: it is stopped where it stood, with a
    checkpoint and three history lines in the folder. Reference: the files in the folder; the in-process
    summary's task text."""
    from graphmill.search import executors
    from graphmill.search.oneshot import TASK

    class Stopped:
        def submit(self, token, config):
            pass

        def wait(self, timeout):
            raise KeyboardInterrupt

        def close(self):
            pass

    monkeypatch.setattr(executors, "make", lambda *a, **k: Stopped())
    out = tmp_path / "r"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")
    (out / "history.jsonl").write_text("".join(json.dumps({"step": i}) + "\n" for i in (1, 2, 3)))
    s = autohas.run(str(out), budget=10, seed=0, workers=1, executor="ray", ray_address=None, accel=None,
                    options=dict(TINY), progress=None)
    assert s["interrupted"] and s["files"] == ["checkpoint.pt", "history.jsonl"] and s["trials"] == 3
    assert s["task"] == TASK and s["checkpoint"] == str(out / "checkpoint.pt") and s["budget"] == 10


@pytest.mark.parametrize("key, value, why", [
    ("config", None, "config is not what graphmill writes"),  # a TypeError traceback (a review)
    ("step", "abc", "step is not what graphmill writes"),
    ("step", 10 ** 6, "step 1000000 of a search of 10 steps"),
    ("history", "[1", "history is not what graphmill writes"),
    ("phase", "later", "phase is not what graphmill writes"),
    ("rng", None, "rng is not what graphmill writes"),
    # the right type, other contents: a TypeError or KeyError at the first use (a review)
    ("history", "[1]", "history is not what graphmill writes"),
    ("compute", "{}", "compute is not what graphmill writes"),
    ("pick", "{}", "pick is not what graphmill writes"),
    # the final phase before the search's end skipped the rest of it and reported the run finished (a review)
    ("phase", "final", "phase 'final' at search step 5 of 10"),
])
def test_a_damaged_checkpoint_is_refused_in_one_line(tmp_path, key, value, why):
    """Every field of an AutoHAS checkpoint was used unchecked: a config of None was a TypeError traceback (a
    review). Reference: the types the run's own save writes (an undamaged one resumes: the Ctrl-C test above)."""
    import torch

    def stop(line: str) -> None:  # at the first progress line: after the checkpoint of step 5
        raise KeyboardInterrupt
    part = _run(tmp_path / "part", budget=10, progress=stop)
    assert part["interrupted"]
    path = tmp_path / "part" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state[key] = value
    torch.save(state, path)
    with pytest.raises(UserInputError, match=re.escape(f"{path}: a damaged AutoHAS checkpoint ({why}); remove ")):
        _run(tmp_path / "part", budget=10)
