"""EvaNet: weight-inheriting evolution of video modules (issue 15 item 4; graphmill.search.methods.evanet).

References: ONNX Runtime on the saved parent and child graphs (function-preserving inheritance gives the
parent's outputs); the inheritance rules' crop/pad computed by hand; a rank-2 3-D kernel built by hand against
its (2+1)-D split run through ReLU with torch's conv3d; the iTGM layer against torch's conv3d
with the kernel computed in this test from the paper's formula (Gaussian mixture temporal profile); the
method's best.onnx under ONNX Runtime against the accuracy the search reported; an interrupted-and-resumed
run against an uninterrupted one (the runner's contract with one worker).
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch

import graphmill
from graphmill.errors import UserInputError
from graphmill.ir import Tensor
from graphmill.ir.builder import GraphBuilder
from graphmill.search.methods.evanet import (PARENT, VideoTask, build, evanet_space, fit, join_2plus1d,
                                             load_weights, parameters, prepare_graph, run, split_2plus1d, task_arrays)
from graphmill.search.oneshot.video import itgm_conv

TINY = {"steps": "3", "train": "48", "val": "32", "test": "32", "population": "2", "sample": "2",
        "eval_every": "3", "batch": "8"}


def _ort(g, x, tmp_path, name):
    p = tmp_path / f"{name}.onnx"
    graphmill.save(g, p)
    return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"clip": x})[0]


def test_inheritance_keeps_the_function_of_growing_mutations_under_onnxruntime(tmp_path):
    task = VideoTask(seed=0, train=64, val=16, test=16)
    parent_cfg = {"m0": {"layer": "itgm", "kt": 3, "width": 8, "repeat": 1},
                  "m1": {"layer": "2+1d", "kt": 3, "width": 8, "repeat": 1},
                  "m2": {"layer": "3d", "kt": 3, "width": 12, "repeat": 1}}
    g, _ = prepare_graph(parent_cfg, task, modules=3, seed=0, parent=None)
    rng = np.random.default_rng(1)
    for v in g.initializers.values():  # non-trivial trained-like weights: random BN affine too
        if v.name.endswith((".bn.scale", ".bn.bias", ".itgm.mix", ".itgm.center", "fc.b")):
            v.const = Tensor((np.asarray(v.const.numpy()) + rng.normal(0, 0.3, v.const.shape))
                                          .astype(np.float32), name=v.name)
    par = parameters(g)
    x = task_arrays(task)[2][:8]
    ref = _ort(g, x, tmp_path, "parent")
    for label, change in (("widen m0", ("m0", {"width": 16})), ("temporal kernel 3 -> 7 of (2+1)-D", ("m1", {"kt": 7})),
                          ("kernel 3 -> 5 of 3-D", ("m2", {"kt": 5})), ("add a repeat", ("m1", {"repeat": 2})),
                          ("iTGM -> 3-D, same length", ("m0", {"layer": "3d"}))):
        cfg = copy.deepcopy(parent_cfg)
        cfg[change[0]].update(change[1])
        child, _ = prepare_graph(cfg, task, modules=3, seed=5, parent=par)
        np.testing.assert_allclose(_ort(child, x, tmp_path, "child"), ref, rtol=1e-4, atol=1e-4, err_msg=label)
        if label == "widen m0":  # inherited statistics kept; the 8 new channels' calibrated (fresh ones are 0)
            mean = child.initializers["m0.l0.bn.mean"].const.numpy()
            np.testing.assert_array_equal(mean[:8], par["m0.l0.bn.mean"])
            assert np.all(mean[8:] != 0)
    # shrinking is not function-preserving, but a fresh child would differ far more
    cfg = copy.deepcopy(parent_cfg)
    cfg["m2"]["width"] = 8
    child, _ = prepare_graph(cfg, task, modules=3, seed=5, parent=par)
    assert child.initializers["m2.l0.w"].const.numpy().shape == (8, 8, 3, 3, 3)
    np.testing.assert_array_equal(child.initializers["m2.l0.w"].const.numpy(), par["m2.l0.w"][:8])


def test_fit_crops_and_pads_as_documented_by_hand():
    src = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 1, 1)      # [out 2, in 3, kt 3, 1, 1]
    fresh = np.full((3, 2, 5, 1, 1), 7, np.float32)                          # [out 3, in 2, kt 5, 1, 1]
    out = fit(fresh, src, "m0.l0.w")
    # old rows: in-channels cropped to 2, kt 3 centred in 5 with zeros around; the new row keeps its fresh init
    want = np.zeros((3, 2, 5, 1, 1), np.float32)
    want[:2, :, 1:4] = src[:, :2]
    want[2] = 7
    np.testing.assert_array_equal(out, want)
    # kernel 5 -> 3: the centre taps
    np.testing.assert_array_equal(fit(np.zeros((2, 3, 1, 1, 1), np.float32), src, "m0.l0.w")[:, :, 0], src[:, :, 1])
    # per-channel vectors: first rows copied, new ones fresh
    np.testing.assert_array_equal(fit(np.full(4, 9, np.float32), np.array([1, 2], np.float32), "m0.l0.bn.bias"),
                                  [1, 2, 9, 9])


def test_split_2plus1d_through_relu_computes_the_3d_convolution_and_join_inverts_it():
    rng = np.random.default_rng(0)
    # a kernel of rank 2 as a [(cout, kt), (cin, kh, kw)] matrix, built by hand
    k = (rng.normal(size=(5 * 3, 2)) @ rng.normal(size=(2, 4 * 9))).reshape(5, 3, 4, 3, 3).transpose(0, 2, 1, 3, 4)
    k = k.astype(np.float32)
    spatial, temporal = split_2plus1d(k, 5)
    x = torch.from_numpy(rng.normal(size=(2, 4, 6, 7, 7)).astype(np.float32))
    ref = torch.nn.functional.conv3d(x, torch.from_numpy(k), padding=1)
    mid = torch.relu(torch.nn.functional.conv3d(x, torch.from_numpy(spatial), padding=(0, 1, 1)))
    out = torch.nn.functional.conv3d(mid, torch.from_numpy(temporal), padding=(1, 0, 0))
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)
    ident = {"x.spatial.w": spatial, "x.temporal.w": temporal, "x.spatial.bn.scale": np.ones(5, np.float32),
             "x.spatial.bn.bias": np.zeros(5, np.float32), "x.spatial.bn.mean": np.zeros(5, np.float32),
             "x.spatial.bn.var": np.full(5, 1 - 1e-5, np.float32)}
    back, offset = join_2plus1d(ident, "x")
    np.testing.assert_allclose(back, k, atol=1e-5)
    assert np.all(offset == 0)


def test_itgm_layer_under_onnxruntime_equals_the_gaussian_mixture_kernel_by_hand(tmp_path):
    b = GraphBuilder("t")
    x = b.input("clip", "float32", [2, 3, 6, 5, 5])
    rng = np.random.default_rng(0)
    y = itgm_conv(b, rng, x, 3, 4, k=3, length=5, mixtures=2, name="L", relu=False)
    b.output(y, "y")
    g = b.build()
    mix = rng.normal(size=(4, 2)).astype(np.float32)
    g.initializers["L.itgm.mix"].const = Tensor(mix, name="L.itgm.mix")
    w = g.initializers["L.itgm.w"].const.numpy()
    c = g.initializers["L.itgm.center"].const.numpy().astype(np.float64)
    s = g.initializers["L.itgm.width"].const.numpy().astype(np.float64)
    # the paper's temporal profile: softmax-mixed Gaussians N(c_m, exp(s_m)^2) over taps -2..2, normalized
    kernel = np.zeros((4, 3, 5, 3, 3))
    for o in range(4):
        a = np.exp(mix[o]) / np.exp(mix[o]).sum()
        prof = np.zeros(5)
        for m in range(2):
            gm = np.array([np.exp(-(t - 2 - c[m]) ** 2 / (2 * np.exp(s[m]) ** 2)) for t in range(5)])
            prof += a[m] * gm / gm.sum()
        kernel[o] = w[o] * prof[None, :, None, None]
    xv = rng.normal(size=(2, 3, 6, 5, 5)).astype(np.float32)
    ref = torch.nn.functional.conv3d(torch.from_numpy(xv).double(), torch.from_numpy(kernel), padding=(2, 1, 1))
    ref = (ref / np.sqrt(1 + 1e-5)).numpy()  # BatchNormalization with mean 0, var 1, scale 1, bias 0
    np.testing.assert_allclose(_ort(g, xv, tmp_path, "itgm"), ref, rtol=1e-4, atol=1e-4)
    # MACs by hand: the 5x3x3 convolution, N*cout*T*H*W*cin*5*9 (its kernel is computed from weights only)
    assert graphmill.inspect(g)["macs"] == 2 * 4 * 6 * 5 * 5 * 3 * 5 * 9
    # learned parameters: 4*3*9 + 2 + 2 + 4*2, whatever the length (the point of iTGM)
    assert sum(g.initializers[n].const.numpy().size for n in g.initializers if ".itgm." in n) == 108 + 4 + 8


def test_lineage_space_carries_the_parent_and_keys_ignore_it():
    space = evanet_space(3)
    rng = np.random.default_rng(0)
    parent = space.sample(rng)
    child = space.mutate(parent, rng)
    assert child[PARENT] == space.key(parent)
    bare = {k: v for k, v in child.items() if k != PARENT}
    assert space.key(child) == space.key(bare) != space.key(parent)
    assert sum(parent[m] != bare[m] for m in ("m0", "m1", "m2")) == 1
    grand = space.mutate(child, rng)
    assert grand[PARENT] == space.key(bare)


@pytest.mark.slow
def test_run_ctrl_c_then_resume_writes_outputs_and_children_inherit(tmp_path):
    lines = []
    live = []

    def stop_at_one(line):
        lines.append(line)
        live.append(sum(1 for _ in open(out / "history.jsonl")))  # it follows the run (was written at the end)
        if line.startswith("[evanet] trial 1/") and len(lines) == 1:
            raise KeyboardInterrupt

    out = tmp_path / "a"
    part = run(str(out), budget=3, seed=0, workers=1, executor=None, ray_address=None, accel=None,
               options=TINY, progress=stop_at_one)
    assert part["interrupted"] and part["trials"] == 1 and os.path.exists(part["checkpoint"])
    first = json.loads(open(out / "history.jsonl").readline())
    full = run(str(out), budget=3, seed=0, workers=1, executor=None, ray_address=None, accel=None,
               options=TINY, progress=stop_at_one)
    # the resumed run says so first (it said nothing of the trial before)
    assert [line.split("  ")[0] for line in lines] == [
        "[evanet] trial 1/3", f"[evanet] resumed from {out / 'checkpoint.json'}: 1 trial(s) recorded before",
        "[evanet] trial 2/3", "[evanet] trial 3/3"]
    assert live == [1, 2, 2, 3]  # the resume line comes with the resumed run's first trial
    assert not full["interrupted"] and full["trials"] == 3 and full["method"] == "evanet"
    assert part["new_trials"] == 1 and full["new_trials"] == 2
    # the budget spent: a rerun says nothing was evaluated (it printed only the old best; an outside check)
    lines.clear()
    again = run(str(out), budget=3, seed=0, workers=1, executor=None, ray_address=None, accel=None, options=TINY,
                progress=lines.append)
    assert again["new_trials"] == 0 and again["trials"] == 3
    assert lines == [f"[evanet] nothing evaluated: {out / 'checkpoint.json'} already holds 3 trial(s) for --budget 3; "
                     "give a larger --budget to continue"]
    assert "moving" in full["task"] and set(full["best"]) >= {"config", "accuracy", "macs", "steps"}
    for f in ("checkpoint.json", "history.jsonl", "evanet.png", "best.onnx", "report.json"):
        assert os.path.getsize(out / f) > 0
    hist = [json.loads(line) for line in open(out / "history.jsonl")]
    assert hist[0] == first  # resumed: the finished trial is kept, not repeated
    keys = [t["key"] for t in hist]
    kids = [t for t in hist if t["metrics"]["inherited"]]
    assert kids, "population 2: the third trial is a mutated child"
    for t in kids:  # the parent is an earlier trial; the child trained steps // 3 = 1 step instead of 3
        assert t["config"][PARENT] in keys[:keys.index(t["key"])]
        assert t["metrics"]["steps"] == 1 and t["metrics"]["tensors"]["copied"] > 0
    assert all(t["metrics"]["steps"] == 3 for t in hist if not t["metrics"]["inherited"])
    arrays, acc, _ = load_weights(str(out / "weights" / f"{hist[0]['key']}.npz"))
    assert acc == hist[0]["reward"] and "m0.l0.bn.scale" in arrays
    # best.onnx carries the trained weights: its validation accuracy under ONNX Runtime is the reported one
    _, _, xv, yv, _, _ = task_arrays(VideoTask(seed=0, train=48, val=32, test=32))
    sess = ort.InferenceSession(str(out / "best.onnx"), providers=["CPUExecutionProvider"])
    pred = sess.run(None, {"clip": xv})[0].argmax(1)
    assert float((pred == yv).mean()) == pytest.approx(full["best"]["accuracy"], abs=1 / 32 + 1e-9)


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "o"
    kw = dict(budget=2, seed=0, workers=1, executor=None, ray_address=None, accel=None, progress=None)
    with pytest.raises(UserInputError, match="did you mean 'child_steps'"):
        run(str(out), options={"child_step": "3"}, **kw)
    with pytest.raises(UserInputError, match="steps=.x.: must be a whole number"):
        run(str(out), options={"steps": "x"}, **kw)
    with pytest.raises(UserInputError, match="executor"):
        run(str(out), options={}, **{**kw, "executor": "rayy"})
    with pytest.raises(UserInputError, match="no such file"):
        run(str(out), options={}, **{**kw, "accel": str(tmp_path / "missing.toml")})
    assert not out.exists()
    out.mkdir()
    (out / "job.json").write_text(json.dumps({"method": "evanet", "seed": 0, "options": {"steps": 1}, "accel": None}))
    with pytest.raises(UserInputError, match="different settings"):
        run(str(out), options={}, **kw)
    assert sorted(os.listdir(out)) == ["job.json"]
    # the same options with another seed: the message names the seed (it said "seed or accelerator")
    from graphmill.search.methods.evanet import check_options

    (out / "job.json").write_text(json.dumps({"method": "evanet", "seed": 5, "options": check_options({}),
                                              "accel": None}))
    with pytest.raises(UserInputError, match="different settings .--seed 5 there, 0 now"):
        run(str(out), options={}, **kw)
    # another steps: the message gives the values, so child_steps (steps // 3 by default) reads as derived
    # (it named child_steps, which was not given, with no values: an outside check)
    opts = check_options({"steps": "21"})
    (out / "job.json").write_text(json.dumps({"method": "evanet", "seed": 0, "options": check_options({"steps": "20"}),
                                              "accel": None}))
    with pytest.raises(UserInputError, match=r"different settings \(options child_steps \(6 there, 7 now\), "
                                             r"steps \(20 there, 21 now\)\)"):
        run(str(out), options={"steps": "21"}, **kw)
    assert opts["child_steps"] == 7


def test_build_is_a_verified_graph_for_every_layer_kind():
    for layer in ("3d", "2+1d", "itgm", "pool"):
        m = {"layer": layer, "width": 8, "repeat": 2, **({} if layer == "pool" else {"kt": 3})}
        g = build({"m0": m, "m1": m, "m2": m}, frames=8, size=16)
        assert g.outputs[0].type.shape[1] == 8


def test_one_frame_is_refused_not_run_into_failed_trials(tmp_path):
    # by hand: one frame holds no motion (the task is unsolvable) and the 2x2x2 pool after module 0 leaves 0
    # frames (every trial failed with a ShapeInferenceError, exit 0); two frames are the least that works
    out = tmp_path / "o"
    with pytest.raises(UserInputError, match="frames=1: must be a whole number >= 2"):
        run(str(out), budget=1, seed=0, workers=1, executor=None, ray_address=None, accel=None, progress=None,
            options={"frames": "1"})
    assert not out.exists()
    g = build({f"m{i}": {"layer": "3d", "kt": 3, "width": 8, "repeat": 1} for i in range(3)}, frames=2, size=8)
    assert g.outputs[0].type.shape[1] == 8


def test_a_checkpoint_without_its_job_file_is_refused_and_nothing_written(tmp_path):
    # the search checkpoint records only the strategy's options, so job.json is the only record of the training
    # settings: with it removed by hand, a rerun with other steps used to resume the old trials silently and write
    # a job.json of the new settings (which then refused the original command)
    out = tmp_path / "o"
    kw = dict(budget=1, seed=0, workers=1, executor=None, ray_address=None, accel=None, progress=None)
    out.mkdir()  # a finished run's folder with job.json removed (the refusal comes before the checkpoint is read)
    (out / "checkpoint.json").write_text("{}")
    before = sorted(os.listdir(out))
    with pytest.raises(UserInputError, match="no job.json"):
        run(str(out), options={**TINY, "steps": "4"}, **kw)
    assert sorted(os.listdir(out)) == before


def test_ctrl_c_in_the_first_evaluation_lists_only_what_it_wrote(tmp_path, monkeypatch):
    """Reference: the folder itself. A Ctrl-C before the first evaluation finished listed ``checkpoint.json``
    among the files written and as the checkpoint to resume from, where none had been written."""
    from graphmill.search.methods import evanet

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evanet, "train_video", interrupted)
    out = tmp_path / "o"
    s = run(str(out), budget=2, seed=0, workers=1, executor=None, ray_address=None, accel=None, options=TINY,
            progress=None)
    assert s["interrupted"] and s["trials"] == 0 and s["checkpoint"] is None
    assert not (out / "checkpoint.json").exists()
    assert sorted(s["files"]) == sorted(f for f in ("job.json", "weights/", "history.jsonl", "report.json"))
    assert all((out / f).exists() for f in s["files"])


@pytest.mark.slow  # one trial trained: ~5-8 s
def test_ctrl_c_while_the_finished_run_writes_its_outputs_waits_for_them(tmp_path, monkeypatch):
    """A Ctrl-C after the last trial, while the plot and best.onnx were written, left no report.json (exit 130,
    nothing on stdout; an outside check). Now the writing finishes first. Reference: the folder itself. The
    signal is real (SIGINT to this process, as a terminal sends it)."""
    import signal

    from graphmill.search.methods import evanet

    real_plot = evanet.plot

    def ctrl_c_then_plot(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real_plot(*args, **kwargs)

    monkeypatch.setattr(evanet, "plot", ctrl_c_then_plot)
    out = tmp_path / "o"
    lines = []
    try:
        s = run(str(out), budget=1, seed=0, workers=1, executor=None, ray_address=None, accel=None, options=TINY,
                progress=lines.append)
    except KeyboardInterrupt:  # as pytest would read it: the whole session interrupted
        pytest.fail("the Ctrl-C escaped while the finished run wrote its outputs")
    assert s["trials"] == 1 and not s["interrupted"]
    for f in ("report.json", "best.onnx", "evanet.png", "history.jsonl"):
        assert (out / f).exists(), f
    assert json.loads((out / "report.json").read_text())["trials"] == 1
    assert lines[-1].startswith("[evanet] Ctrl-C came after the last trial: the outputs were written first")


@pytest.mark.slow  # one trial trained: ~5-8 s
def test_interrupted_run_plots_its_finished_trials_and_keeps_paths_as_given(tmp_path, monkeypatch):
    """Reference: autohas and nahas (their summaries keep ``out`` and ``checkpoint`` as given; an interrupted
    autohas run writes its partial plot) and the folder itself. EvaNet gave absolute paths and wrote evanet.png
    only when the run completed."""
    monkeypatch.chdir(tmp_path)

    def stop_at_one(line):
        if line.startswith("[evanet] trial 1/"):
            raise KeyboardInterrupt

    s = run("a", budget=2, seed=0, workers=1, executor=None, ray_address=None, accel=None, options=TINY,
            progress=stop_at_one)
    assert s["interrupted"] and s["trials"] == 1
    assert s["out"] == "a" and s["checkpoint"] == os.path.join("a", "checkpoint.json")
    assert "evanet.png" in s["files"] and os.path.getsize(tmp_path / "a" / "evanet.png") > 0


def _bn_input_stats(g, bn, x, tmp_path):
    """Mean and variance per channel of what BatchNormalization ``bn`` normalizes, by ONNX Runtime on ``x``."""
    import onnx

    p = tmp_path / "probe.onnx"
    graphmill.save(g, p)
    m = onnx.load(str(p))
    node = next(n for n in m.graph.node if n.op_type == "BatchNormalization" and n.input[3] == f"{bn}.mean")
    m.graph.output.append(onnx.helper.make_empty_tensor_value_info(node.input[0]))
    onnx.save(m, str(p))
    z = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run([node.input[0]], {"clip": x})[0]
    return z.mean((0, 2, 3, 4)), z.var((0, 2, 3, 4))


@pytest.mark.parametrize("before,after", [("pool", "3d"), ("3d", "pool"), ("pool", "itgm"), ("pool", "2+1d"),
                                          ("2+1d", "pool")])
def test_a_max_pool_added_or_removed_re_estimates_that_layers_statistics(tmp_path, before, after):
    # pool <-> a convolution keeps the kernel and the BatchNormalization's scale and bias, but what the
    # BatchNormalization normalizes is no longer the parent's (a 3x3x3 max-pool appears or goes); the torch
    # backend trains on fixed statistics, so the parent's would stay wrong for the whole training (EvaNet seed 7:
    # a pool -> 3-D child never left chance in 360 steps). Reference: the statistics of that input measured by
    # ONNX Runtime on the 256 training clips prepare_graph calibrates on; the untouched module keeps its own.
    task = VideoTask(seed=0, train=64, val=16, test=16)
    slot = lambda layer: {"layer": layer, "width": 8, "repeat": 1, **({} if layer == "pool" else {"kt": 3})}
    parent_cfg = {"m0": slot("3d"), "m1": slot(before), "m2": slot("3d")}
    g, _ = prepare_graph(parent_cfg, task, modules=3, seed=0, parent=None)
    par = parameters(g)
    last = lambda layer: "m1.l0.temporal.bn" if layer == "2+1d" else "m1.l0.bn"  # the layer's last one
    par[f"{last(before)}.mean"] = par[f"{last(before)}.mean"] + 3.0   # trained-like statistics, far from the child's
    par[f"{last(before)}.var"] = par[f"{last(before)}.var"] * 4.0
    par["m2.l0.bn.mean"] = par["m2.l0.bn.mean"] + 3.0  # the next module's too: its input changes with m1's
    child_cfg = copy.deepcopy(parent_cfg)
    child_cfg["m1"] = slot(after)
    child, _ = prepare_graph(child_cfg, task, modules=3, seed=5, parent=par)
    x = task_arrays(task)[0][:256]
    bn = last(after)
    mean, var = _bn_input_stats(child, bn, x, tmp_path)
    np.testing.assert_allclose(child.initializers[f"{bn}.mean"].const.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(child.initializers[f"{bn}.var"].const.numpy(), var, rtol=1e-4, atol=1e-5)
    for name in ("m0.l0.bn.mean", "m0.l0.bn.var"):
        np.testing.assert_array_equal(child.initializers[name].const.numpy(), par[name])
    for k in ("scale", "bias"):  # the parent's, carried over
        np.testing.assert_array_equal(child.initializers[f"{bn}.{k}"].const.numpy(), par[f"{last(before)}.{k}"])
    # every later layer reads what m1 now computes: its statistics are re-estimated too (EvaNet seed 11, an
    # outside check: a 2+1d -> pool first module left modules 1-2 on the parent's statistics; the child started at
    # chance and needed more steps than from scratch, 360 against 320)
    mean, var = _bn_input_stats(child, "m2.l0.bn", x, tmp_path)
    np.testing.assert_allclose(child.initializers["m2.l0.bn.mean"].const.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(child.initializers["m2.l0.bn.var"].const.numpy(), var, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # one trial trained: ~5-8 s
def test_a_damaged_best_weights_file_is_refused_before_anything_is_written(tmp_path):
    """The finished run's best.onnx is built from ``weights/<best>.npz``. A damaged file was a numpy traceback
    (garbage), or, exit 0, a best.onnx with a tensor of the wrong shape (ONNX Runtime cannot run it) or with a
    missing tensor's fresh initialization (an untrained model under the best's name; an outside check).
    Reference: the architecture's own tensors (``parameters`` of its fresh build) and the folder as it was."""
    out = tmp_path / "o"
    kw = dict(budget=1, seed=0, workers=1, executor=None, ray_address=None, accel=None, options=TINY,
              progress=lambda line: None)
    s = run(str(out), **kw)
    path = out / "weights" / f"{s['best']['key']}.npz"
    good = dict(np.load(path))
    before = {f: (out / f).read_bytes() for f in ("best.onnx", "report.json", "evanet.png", "history.jsonl")}
    wrong = dict(good, **{"stem.w": np.zeros(3, np.float32)})
    missing = {k: v for k, v in good.items() if k != "stem.w"}
    for arrays, match in ((wrong, r"tensor 'stem.w' is float32\[3\], the architecture's is float32\[8, 1, 3, 3, 3\]"),
                          (missing, "tensor 'stem.w' is missing"), (None, "not a weights file of this search")):
        if arrays is None:
            path.write_bytes(b"garbage")
        else:
            with open(path, "wb") as f:
                np.savez(f, **arrays)
        with pytest.raises(UserInputError, match=match):
            run(str(out), **kw)
        assert {f: (out / f).read_bytes() for f in before} == before
