"""The learned passes' policy, its PPO trainer and the passes (graphmill/passes/learned, graphmill/search/learned.py).

References: the environment's own baselines (an untrained policy's greedy decisions are the best baseline's,
by construction of the hint features); the mask rules written out here from the policy's docstring; an
uninterrupted training run (a resumed one must equal it bit for bit); the placement package's list scheduler
(the learned metas replayed must give the pass's makespan).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from graphmill.backends.simulator.devices import PlacementCostModel, device_set
from graphmill.ir import UserInputError
from graphmill.passes import PassContext, run_passes
from graphmill.passes.learned import Decisions, JointProblem
from graphmill.passes.learned.baselines import best_baseline
from graphmill.passes.learned.features import node_features
from graphmill.passes.learned.infer import propose, state_key
from graphmill.passes.learned.passes import LearnedOptimize, LearnedPlace, LearnedSchedule, replay
from graphmill.passes.learned.policy import GraphPolicy, load_policy, obs_tensors, save_policy
from graphmill.passes.placement import build_problem
from graphmill.search.learned import fine_tune, make_task, random_graph, train


def cost(devices: int = 4) -> PlacementCostModel:
    return PlacementCostModel(device_set(devices=devices))


def small_tasks():
    return [make_task(f"t{k}", random_graph(k, kind, n), cost(D))
            for k, (kind, n, D) in enumerate([("mlp", 30, 2), ("cnn", 16, 4), ("mlp", 24, 4)])]


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory):
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("pol") / "p.npz")
    save_policy(GraphPolicy(hidden=16, layers=2), path, {"training_set": [], "seed": 0})
    return path


def test_untrained_greedy_is_the_best_baseline_and_masks_hold():
    task = make_task("cnn", random_graph(3, "cnn", 30), cost(4))
    bb = best_baseline(task.jp)
    assert task.reference == bb.outcome.makespan
    torch.manual_seed(1)
    pol = GraphPolicy(hidden=16, layers=2)
    g = pol.act(task.t, greedy=True)
    assert task.jp.evaluate(g.decisions).makespan == pytest.approx(bb.outcome.makespan)
    gen = torch.Generator().manual_seed(0)
    fp = task.jp.fuse_producer
    ok = task.obs["fuse_ok"]
    for _ in range(5):
        s = pol.act(task.t, gen=gen)
        d = s.decisions
        assert not np.any(d.fuse & ~ok)  # an op that cannot fuse never does
        for i in np.flatnonzero(d.fuse):
            assert d.device[i] == d.device[fp[i]]  # a fusion never crosses devices
        lp, ent = pol.log_prob(task.t, s)
        assert lp.shape[0] == int(ok.sum()) + int((~s.fuse).sum()) + task.jp.n
        assert torch.allclose(lp, s.logp, atol=1e-5)


def test_device_logits_start_from_the_hint_and_the_one_step_move_estimate():
    """An untrained policy's device MLP outputs 0 (its last layer starts at zero), so its device logits are the
    two direct terms: hint_gain x "the state places it here" + move_gain x the log-scaled one-step estimate of moving
    it there (``features.move_estimates``: gain > 0 when the move would finish the step sooner). Reference: that sum
    written here from the features; and the estimate, with ``move_gain`` 0, no longer moves the logits."""
    from graphmill.passes.learned.features import move_estimates, state_features

    task = make_task("m", random_graph(8, "mlp", 60), cost(4))
    obs = state_features(task.jp, task.obs, task.obs["decisions"], task.obs["outcome"])
    t = obs_tensors(obs)
    pol = GraphPolicy(hidden=16, layers=2)
    gain = move_estimates(task.jp, task.obs["outcome"])
    scaled = np.sign(gain) * np.log1p(np.abs(gain) / obs["mean_time"])
    here = np.zeros_like(gain)
    here[np.arange(len(gain)), np.asarray(obs["decisions"].device)] = 1.0
    with torch.no_grad():
        dev_logits = pol.heads(t)[0].numpy()
        assert np.allclose(dev_logits, 5.0 * here + 1.0 * scaled, atol=1e-5)
        assert np.any(scaled > 0)  # some move is estimated to pay on this graph: the term is not vacuous
        pol.move_gain.fill_(0.0)
        assert np.allclose(pol.heads(t)[0].numpy(), 5.0 * here, atol=1e-5)


def test_a_policy_of_an_older_format_says_so_and_how_to_get_a_new_one(tmp_path, policy_file):
    """A policy written by an older graphmill (format /2, before ``move_gain``) was refused as "not a graphmill
    policy" (an outside check). Reference: the message written out here; other formats keep the old refusal."""
    import shutil

    for fmt, says in (("graphmill-learned-policy/2", "a graphmill policy of format 'graphmill-learned-policy/2', "
                       "which this graphmill no longer reads ('graphmill-learned-policy/3'); retrain it with "
                       "`graphmill train-policy`"),
                      ("graphmill-learned-policy/9", "a graphmill policy of format 'graphmill-learned-policy/9', "
                       "written by a newer graphmill (this one reads 'graphmill-learned-policy/3')"),
                      ("something-else/1", "not a graphmill policy (format 'something-else/1', expected")):
        path = tmp_path / f"{fmt.replace('/', '_')}.npz"
        shutil.copy(policy_file, path)
        meta = json.loads(open(policy_file[:-4] + ".json").read())
        (tmp_path / f"{path.stem}.json").write_text(json.dumps({**meta, "format": fmt}))
        with pytest.raises(UserInputError) as e:
            load_policy(str(path))
        assert says in str(e.value) and str(e.value).startswith(str(path))


def test_policy_file_roundtrip_and_refusals(tmp_path, policy_file):
    pol, meta = load_policy(policy_file)
    assert meta["config"]["hidden"] == 16 and meta["seed"] == 0
    task = make_task("m", random_graph(4, "mlp", 20), cost(2))
    torch.manual_seed(0)
    ref = GraphPolicy(hidden=16, layers=2)
    a, b = pol.heads(task.t), ref.heads(task.t)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # a pickle inside the npz is never loaded
    bad = tmp_path / "bad.npz"
    np.savez(bad, w=np.array([{"x": 1}], dtype=object))
    (tmp_path / "bad.json").write_text(json.dumps({"format": meta["format"], "config": meta["config"]}))
    with pytest.raises(UserInputError, match="not a graphmill policy"):
        load_policy(str(bad))
    with pytest.raises(UserInputError, match="no policy there"):
        load_policy(str(tmp_path / "none.npz"))
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")  # an existing file that is no policy: not "no policy there"
    with pytest.raises(UserInputError, match=r"model\.onnx: not a graphmill policy \(a policy is NAME\.npz"):
        load_policy(str(tmp_path / "model.onnx"))
    # a file that is no zip at all: numpy's own message called it pickled data and suggested unpickling it
    (tmp_path / "text.npz").write_text("not an archive\n")
    (tmp_path / "text.json").write_text(json.dumps({"format": meta["format"], "config": meta["config"]}))
    with pytest.raises(UserInputError, match=r"not a graphmill policy \(not an \.npz archive\)$") as e:
        load_policy(str(tmp_path / "text.npz"))
    assert "pickle" not in str(e.value)
    (tmp_path / "lone.npz").write_bytes(bad.read_bytes())  # an archive without its .json
    with pytest.raises(UserInputError, match="its metadata .*lone.json is missing"):
        load_policy(str(tmp_path / "lone.npz"))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_policy_with_nan_or_infinite_weights_is_refused(tmp_path, policy_file, value):
    """Sampling from it ended in torch.multinomial's traceback ('probability tensor contains either inf, nan'),
    and learned-place without samples accepted it silently (an outside check)."""
    import shutil

    with np.load(policy_file, allow_pickle=False) as z:
        arrays = {k: z[k].copy() for k in z.files}
    first = sorted(arrays)[0]
    arrays[first].reshape(-1)[0] = value
    np.savez(tmp_path / "broken.npz", **arrays)
    shutil.copy(policy_file[:-4] + ".json", tmp_path / "broken.json")
    with pytest.raises(UserInputError, match=f"not a graphmill policy \\(tensor '{first}' holds NaN or infinite "
                                             "values\\)"):
        load_policy(str(tmp_path / "broken.npz"))


@pytest.mark.parametrize("samples", [0, 4])
def test_a_policy_whose_outputs_overflow_is_refused(tmp_path, samples):
    """The shipped policy with every weight x 1e6: finite weights, so the loader took it; its logits overflow to
    inf/NaN, and sampling ended in torch.multinomial's traceback ('probability tensor contains either inf, nan')
    while greedy decoding (samples=0) took NaN's argmax without a word (an outside check). Reference: the same
    graph with the shipped policy itself, which runs."""
    import shutil

    from graphmill.passes.learned.policy import default_policy_path

    shipped = default_policy_path()
    with np.load(shipped, allow_pickle=False) as z:
        arrays = {k: z[k] * 1e6 if z[k].dtype.kind == "f" else z[k] for k in z.files}
    np.savez(tmp_path / "big.npz", **arrays)
    shutil.copy(shipped[:-4] + ".json", tmp_path / "big.json")
    g = random_graph(11, "mlp", 40)
    run_passes(g, [LearnedOptimize(policy=shipped, samples=samples)], ctx=PassContext(cost_model=cost(4)))
    assert g.meta["learned"]["pass"] == "learned-optimize"
    g = random_graph(11, "mlp", 40)
    with pytest.raises(UserInputError, match=r"big\.npz: its outputs on this graph are not finite numbers"):
        run_passes(g, [LearnedOptimize(policy=str(tmp_path / "big.npz"), samples=samples)],
                   ctx=PassContext(cost_model=cost(4)))
    assert "learned" not in g.meta


def test_training_that_diverges_says_so_not_that_a_policy_file_is_bad(tmp_path):
    """With the refusal above, a PPO run whose weights overflowed (lr 1e6) was told "the policy: ... not a usable
    policy; retrain it with `graphmill train-policy`", circular advice from train-policy itself (a review).
    Reference: the message written here; the run diverges (it did, with torch.multinomial's traceback, before)."""
    from graphmill import api

    with pytest.raises(UserInputError, match=r"^training diverged: .* a smaller learning rate"):
        api.train_policy(str(tmp_path / "p.npz"), steps=6, quick=True, options={"lr": 1e6, "time_limit": 200})
    assert not (tmp_path / "p.npz").exists()


@pytest.mark.slow
def test_training_checkpoint_resume_equals_uninterrupted(tmp_path):
    tasks = small_tasks()
    opts = {"steps": 2, "graphs": 2, "samples": 4, "epochs": 1, "hidden": 16, "layers": 1}
    straight, info = train(tasks, seed=3, options=opts)
    assert info["steps"] == 2 and info["samples"] == 16
    ck = str(tmp_path / "ck.pt")

    def interrupt(line: str) -> None:  # Ctrl-C after the first step (its checkpoint written): a finished run
        if "step 1/" in line:  # removes its checkpoint, an interrupted one keeps it
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tasks, seed=3, options=opts, checkpoint=ck, progress=interrupt)
    with pytest.raises(UserInputError, match="another training run"):
        train(tasks, seed=4, options=dict(opts, steps=2), checkpoint=ck)
    out = str(tmp_path / "p.npz")
    resumed, info2 = train(tasks, seed=3, options=opts, checkpoint=ck, output=out)
    assert info2["resumed"] and info2["steps"] == 2 and [h["step"] for h in info2["history"]] == [1, 2]
    for (k, v), (_, w) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(v, w), k
    meta = json.loads((tmp_path / "p.json").read_text())
    assert meta["seed"] == 3 and [t["name"] for t in meta["training_set"]] == ["t0", "t1", "t2"]


def test_fine_tune_spends_its_budget_and_never_loses_the_zero_shot():
    task = make_task("m", random_graph(8, "mlp", 40), cost(4))
    torch.manual_seed(0)
    pol = GraphPolicy(hidden=16, layers=1)
    zero = task.jp.evaluate(pol.act(task.t, greedy=True).decisions).makespan
    lines: list[str] = []
    r = fine_tune(pol, task, budget=12, samples=4, seed=0, options={"epochs": 1}, progress=lines.append)
    assert r["samples"] == 12 and len(r["curve"]) == 12
    assert lines and lines[-1].startswith("fine-tune m: 12/12 samples, best "), lines
    # the last line counts every sample: there was none when zero-shot's rounds spent the budget, and it said
    # 19/20 when the loop ended on samples after its line (an outside check, place --budget 20)
    lines.clear()
    torch.manual_seed(0)
    assert fine_tune(GraphPolicy(hidden=16, layers=1), task, budget=8, samples=4, seed=0, options={"epochs": 1},
                     progress=lines.append)["samples"] == 8
    assert len(lines) == 1 and lines[0].startswith("fine-tune m: 8/8 samples, best "), lines
    assert r["outcome"].makespan <= zero and np.all(np.diff(r["curve"]) <= 0)
    assert r["samples_to_reference"] == 0  # refinement starts from the hint: the best baseline already


@pytest.mark.parametrize("pick", ["guided", "uniform"])  # uniform: the unit moves' generator state matters at once
def test_fine_tune_checkpoint_resume_equals_uninterrupted(tmp_path, pick):
    """Reference: the same call without a checkpoint; Ctrl-C after the first iteration, then the same call
    resumes and returns the same curve, decisions, counters and policy updates."""
    task = make_task("m", random_graph(8, "mlp", 40), cost(4))
    torch.manual_seed(0)
    pol = GraphPolicy(hidden=16, layers=1)
    kw = dict(budget=60, samples=4, seed=2, units=6, pick=pick, options={"epochs": 1})
    simulated: list[bytes] = []  # every state simulated, in order (the best-so-far curve alone hides a change)
    evaluate = task.jp.evaluate

    def logged(dec, **k):
        simulated.append(state_key(dec))
        return evaluate(dec, **k)

    task.jp.evaluate = logged
    straight = fine_tune(pol, task, **kw)
    straight_log = list(simulated)
    assert straight["steps"] >= 3  # several iterations, so that the interruption falls inside the run
    ck = str(tmp_path / "ft.ck")
    lines: list[str] = []

    def interrupt(line: str) -> None:  # after the first iteration's checkpoint
        lines.append(line)
        raise KeyboardInterrupt

    simulated.clear()
    with pytest.raises(KeyboardInterrupt):
        fine_tune(pol, task, checkpoint=ck, progress=interrupt, **kw)
    before = list(simulated)
    assert len(lines) == 1 and f"/{kw['budget']} samples" in lines[0]
    with pytest.raises(UserInputError, match="another fine-tuning run"):
        fine_tune(pol, task, checkpoint=ck, **dict(kw, seed=3))
    other = GraphPolicy(hidden=16, layers=1)  # another starting policy: refused too
    with pytest.raises(UserInputError, match="another fine-tuning run"):
        fine_tune(other, task, checkpoint=ck, **kw)
    simulated.clear()
    said: list[str] = []
    resumed = fine_tune(pol, task, checkpoint=ck, progress=said.append, **kw)
    # it says it resumed, as rl and train-policy do (it went on without a word; an outside check)
    assert said[0].startswith(f"fine-tune m: resumed from {ck}: ") and said[0].endswith(f"/{kw['budget']} samples done")
    # the start state, the best state simulated again (not counted), then exactly the rest of the straight run
    assert before + simulated[2:] == straight_log and len(before) < len(straight_log)
    assert resumed["curve"] == straight["curve"]
    assert (resumed["samples"], resumed["steps"], resumed["samples_to_reference"], resumed["samples_to_beat"]) == (
        straight["samples"], straight["steps"], straight["samples_to_reference"], straight["samples_to_beat"])
    assert resumed["outcome"].makespan == straight["outcome"].makespan
    assert np.array_equal(resumed["decisions"].device, straight["decisions"].device)
    assert np.array_equal(resumed["decisions"].priority, straight["decisions"].priority)


def test_passes_write_metas_that_replay(policy_file):
    g = random_graph(11, "mlp", 40)
    cm = cost(4)
    run_passes(g, [LearnedOptimize(policy=policy_file, samples=2)], ctx=PassContext(cost_model=cm))
    meta = g.meta["learned"]
    assert meta["pass"] == "learned-optimize"
    assert all("device" in n.meta for n in g.nodes)
    assert replay(g, cm).makespan == meta["makespan"]
    assert sum(len(v) for v in meta["order"].values()) == len(build_problem(g, cm).names)
    # sequential: learned-schedule keeps the devices learned-place wrote
    h = random_graph(11, "mlp", 40)
    placed = random_graph(11, "mlp", 40)
    run_passes(placed, [LearnedPlace(policy=policy_file)], ctx=PassContext(cost_model=cm))
    run_passes(h, [LearnedPlace(policy=policy_file), LearnedSchedule(policy=policy_file)],
               ctx=PassContext(cost_model=cm))
    assert [n.meta["device"] for n in h.nodes] == [n.meta["device"] for n in placed.nodes]
    assert h.meta["learned"]["pass"] == "learned-schedule"
    assert replay(h, cm).makespan == h.meta["learned"]["makespan"]
    with pytest.raises(Exception, match="cost model"):
        run_passes(random_graph(1, "mlp", 5), ["learned-fuse"], ctx=PassContext())


def test_zero_shot_proposal_is_valid_and_fast_on_the_shipped_policy():
    import os

    from graphmill.passes.learned.policy import default_policy_path

    path = default_policy_path()
    if not os.path.exists(path):
        pytest.skip("no shipped policy yet")
    assert os.path.getsize(path) < 3 * 2**20
    pol, meta = load_policy()
    assert meta["training_set"] and "seed" in meta and "train_seconds" in meta and meta["command"]
    jp = JointProblem(build_problem(random_graph(21, "cnn", 60), cost(4)), cost(4))
    p = propose(pol, jp, samples=2)
    assert p.outcome.valid and p.seconds < 30


@pytest.mark.slow
def test_the_shipped_policy_is_what_its_recorded_command_trains(tmp_path):
    """Issue 14: the shipped policy is "produced by one documented command". Reference: the command recorded in
    policy.json, rerun here in a fresh interpreter under the environment it records (the training is
    deterministic: one torch thread, seeded; ``PORTABLE_ENV`` makes it round alike on every x86-64 CPU), and the
    shipped weights bit for bit. An outside check found the shipped file 0.876 away from what its command trained
    at its own commit; a later machine (an AVX-512 CPU) trained a policy 0.92 away from the one trained before
    without the environment."""
    import os
    import shlex

    from graphmill.passes.learned.policy import default_policy_path
    from graphmill.search.learned import PORTABLE_ENV
    from tests.support.cli_process import run_graphmill

    _, meta = load_policy()
    argv = shlex.split(meta["command"])
    env = dict(a.split("=", 1) for a in argv[:len(PORTABLE_ENV)])
    assert env == PORTABLE_ENV == meta["environment"]  # recorded in front of the command, as a shell runs it
    argv = argv[len(PORTABLE_ENV):]
    assert argv[:2] == ["graphmill", "train-policy"]
    args = argv[2:]
    args[args.index("-o") + 1] = str(tmp_path / "p.npz")
    if "--checkpoint" in args:
        args[args.index("--checkpoint") + 1] = str(tmp_path / "p.ck")
    run = run_graphmill("train-policy", *args, env={**os.environ, **env, "OMP_NUM_THREADS": "1"}, timeout=900)
    assert run.returncode == 0, run.stderr
    shipped, retrained = np.load(default_policy_path()), np.load(tmp_path / "p.npz")
    assert sorted(shipped.files) == sorted(retrained.files)
    for k in shipped.files:
        np.testing.assert_array_equal(shipped[k], retrained[k], err_msg=k)
    assert os.path.getsize(default_policy_path()) < 3 * 2**20


def test_the_recorded_command_carries_the_portable_environment_it_ran_under(tmp_path, monkeypatch):
    """What makes the shipped policy retrainable on another CPU (README, "Shipped policy"): the variables of
    PORTABLE_ENV this process was started with go in front of the recorded command and into the metadata, quoted
    as a shell takes them; a run without them records none. Reference: shlex, the shell's own splitting."""
    import shlex

    import graphmill.api
    from graphmill.search.learned import PORTABLE_ENV

    small = {"graphs": 1, "samples": 2, "epochs": 1}
    for key in PORTABLE_ENV:
        monkeypatch.delenv(key, raising=False)
    graphmill.api.train_policy(tmp_path / "a.npz", steps=1, quick=True, options=small,
                               command="graphmill train-policy -o a.npz")
    plain = json.loads((tmp_path / "a.json").read_text())
    assert plain["command"] == "graphmill train-policy -o a.npz" and plain["environment"] == {}
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE,STRICT")  # a value with a comma still splits as one word
    graphmill.api.train_policy(tmp_path / "b.npz", steps=1, quick=True, options=small,
                               command="graphmill train-policy -o b.npz")
    meta = json.loads((tmp_path / "b.json").read_text())
    words = shlex.split(meta["command"])
    assert words[:2] == ["ATEN_CPU_CAPABILITY=default", "MKL_CBWR=COMPATIBLE,STRICT"]
    assert words[2:] == ["graphmill", "train-policy", "-o", "b.npz"]
    assert meta["environment"] == {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE,STRICT"}


def test_fusion_features_and_masks_match_an_independent_reading_of_the_graph():
    # reference: the rule of the README read straight off the graph here: an op's fusion producer is a producer
    # whose outputs only it reads (the one sending it the most bytes), and the op may fuse when the two run as one
    # kernel that fits the buffers (the hand-checked group cost) on the hint's device of the producer; a sampled
    # policy never fuses elsewhere and a fused op always runs on its producer's device
    from graphmill.ir.types import TensorType, num_elements

    def nbytes(v) -> int:
        t = v.type
        return 4 * int(num_elements(t.shape)) if isinstance(t, TensorType) and t.shape else 0  # float32 only

    from graphmill.ir.builder import GraphBuilder
    from tests.passes.learned.test_env import tiny  # a chip with 1 KB buffers: 1,024 words on chip

    bld = GraphBuilder("fits")
    big = bld.Tanh(bld.Relu(bld.input("x", "float32", [1, 2000])))  # 2,000 words between them: no fit
    b1 = bld.Relu(bld.input("y", "float32", [1, 200]))
    bld.output(big)
    bld.output(bld.Add(bld.Sigmoid(b1), b1))  # Sigmoid's producer has two readers; Add's fusion producer: Sigmoid
    fits = []
    for g, cm in ((random_graph(3, "cnn", 40), cost(3)), (bld.build(), tiny(2))):
        fits += check_fusion_features(g, cm, nbytes)
    assert any(fits) and not all(fits)


def check_fusion_features(g, cm, nbytes) -> list[bool]:
    """The fusion features and masks of ``g`` against the rule read off the graph; each fusion's fit."""
    jp = JointProblem(build_problem(g, cm), cm)
    obs = node_features(jp)
    names = jp.prob.names
    idx = {n: i for i, n in enumerate(names)}
    expect_fp, expect_ok = [], []
    for name in names:
        node = next(n for n in g.nodes if n.name == name)
        cands: dict[str, int] = {}
        for v in node.inputs:
            p = v.producer if v is not None else None
            if p is None or p.name not in idx:
                continue
            if {u.name for o in p.outputs if o is not None for u in o.users} == {name}:
                cands[p.name] = cands.get(p.name, 0) + nbytes(v)
        best = {p for p, b in cands.items() if b == max(cands.values(), default=0)}
        expect_fp.append(best)
        fp = int(obs["fuse_producer"][idx[name]])
        assert (fp < 0) if not best else names[fp] in best, name
        ok = bool(best) and cm.group_cost([jp.prob.nodes[fp], node], int(obs["hint"][fp])).fits
        expect_ok.append(ok)
    assert np.array_equal(obs["fuse_ok"], np.array(expect_ok))
    torch.manual_seed(2)
    pol = GraphPolicy(hidden=16, layers=1)
    t = obs_tensors(obs)
    gen = torch.Generator().manual_seed(1)
    fp = obs["fuse_producer"]
    for _ in range(4):
        d = pol.act(t, gen=gen).decisions
        assert not np.any(d.fuse & ~np.array(expect_ok))
        assert all(d.device[i] == d.device[fp[i]] for i in np.flatnonzero(d.fuse))
    return [ok for ok, best in zip(expect_ok, expect_fp) if best]


def test_an_unreadable_policy_file_says_so(tmp_path, monkeypatch):
    """A policy without read permission was "not a graphmill policy (not an .npz archive)": zipfile.is_zipfile
    says False for a file it cannot read (an outside check, as a user without root). Reference: the OSError
    the read raises, stood in for here (root reads any file)."""
    import builtins

    from graphmill.passes.learned import policy as policy_module

    path = str(tmp_path / "p.npz")
    save_policy(GraphPolicy(hidden=16, layers=2), path, {"training_set": [], "seed": 0})

    def denied(p, *a, **k):
        if str(p) == path:
            raise PermissionError(13, "Permission denied", str(p))
        return builtins.open(p, *a, **k)

    monkeypatch.setattr(policy_module, "open", denied, raising=False)
    with pytest.raises(UserInputError, match=r"p\.npz: cannot read the policy \(Permission denied\)$"):
        load_policy(path)


def test_hostile_policy_files_are_refused_in_one_line_before_anything_is_built(tmp_path, policy_file):
    """A policy file pair a hostile author wrote (an outside check): a member of the .npz that is no .npy file
    (numpy hands back its raw bytes), metadata that is not an object, a config that is not one or asks for a
    network of gigabytes, and metadata nested 100,000 deep. Each gave a traceback (AttributeError, or a
    RecursionError) or began allocating 14 GB; each is now one line naming the file. Reference: the messages
    written here, and the clock (a refusal, not a 14 GB allocation)."""
    import shutil
    import time
    import zipfile

    meta = json.loads(open(policy_file[:-4] + ".json").read())

    def pair(name: str, meta_text: str, npz: str | None = None) -> str:
        path = tmp_path / f"{name}.npz"
        if npz is None:
            shutil.copy(policy_file, path)
        else:
            with zipfile.ZipFile(path, "w") as z:
                z.writestr(npz, b"\x80\x04K\x01.")  # a pickle's bytes, under a name that is no .npy
        (tmp_path / f"{name}.json").write_text(meta_text)
        return str(path)

    cases = [
        (pair("raw", json.dumps(meta), npz="w"), "member 'w' is not a numeric array"),
        (pair("list", "[1, 2]"), "is not a JSON object"),
        (pair("cfgstr", json.dumps({**meta, "config": "abc"})), "its config is not a JSON object"),
        (pair("wide", json.dumps({**meta, "config": {**meta["config"], "hidden": 60000}})),
         "config hidden = 60000: expected an integer in [1, 1024]"),
        (pair("deep", json.dumps({**meta, "config": {**meta["config"], "layers": 10**8}})),
         "config layers = 100000000: expected an integer in [0, 16]"),
        (pair("heads", json.dumps({**meta, "config": {**meta["config"], "hidden": 18, "heads": 4}})),
         "config hidden = 18 is not a multiple of heads = 4"),
        (pair("nested", "[" * 100_000 + "]" * 100_000), "nested too deeply"),
    ]
    for path, says in cases:
        t0 = time.monotonic()
        with pytest.raises(UserInputError) as e:
            load_policy(path)
        assert str(e.value).startswith(f"{path}: not a graphmill policy (") and says in str(e.value), str(e.value)
        assert "\n" not in str(e.value) and time.monotonic() - t0 < 10


def test_a_hostile_chip_policy_is_refused_in_one_line(tmp_path):
    """The chip placer's policy file (Python API): a member that is no .npy file gave a TypeError traceback, and
    its architecture sizes were built unchecked (an outside check). Reference: the messages written here."""
    import zipfile

    from graphmill.passes.chip.rl import load_policy as load_chip_policy

    raw = tmp_path / "raw.npz"
    with zipfile.ZipFile(raw, "w") as z:
        z.writestr("__config__", b"\x80\x04K\x01.")
    huge = tmp_path / "huge.npz"
    np.savez(huge, __config__=np.array([60000, 2]))
    for path, says in ((raw, "member '__config__' is not a numeric array"),
                       (huge, "hidden 60000, layers 2: expected hidden in [1, 1024], layers in [0, 16]")):
        with pytest.raises(UserInputError) as e:
            load_chip_policy(path)
        assert str(e.value) == f"{path}: not a chip placement policy of this version ({says})"


@pytest.mark.parametrize("option, says", [({"layers": 17}, "config layers = 17: expected an integer in [0, 16]"),
                                          ({"hidden": 2048}, "config hidden = 2048: expected an integer in [1, 1024]"),
                                          ({"hidden": 18}, "config hidden = 18 is not a multiple of heads = 4")])
def test_train_policy_refuses_sizes_the_policy_loader_would_refuse(tmp_path, option, says):
    """Review: train-policy took hidden and layers without bound, trained for its full length and wrote a file
    load_policy refuses. Reference: POLICY_SIZES's ranges, in the message; nothing written."""
    from graphmill import api

    out = tmp_path / "p.npz"
    with pytest.raises(UserInputError) as e:
        api.train_policy(str(out), steps=1, quick=True, options=option)
    assert str(e.value) == f"--option: {says} (the sizes a policy file may have)"
    assert not out.exists()


def _forged_best(ck):
    ck["best"]["t"] = 0.0


@pytest.mark.parametrize("damage, why", [
    # a forged best step time: its state was the answer, exit 0 (an outside check)
    (_forged_best, "its best state does not take the step time it records (0.0)"),
    (lambda ck: ck["best"].update(device=torch.full_like(ck["best"]["device"], 99)), "devices are not one in 0..3"),
    (lambda ck: ck["best"].update(n=10 ** 12), "not counts within the budget"),  # every sample skipped
    (lambda ck: ck["best"].update(n=-1000), "not counts within the budget"),  # 1,080 samples drawn for 80
    (lambda ck: ck.update(gen=torch.zeros(3, dtype=torch.uint8)), "its random generator states"),  # a traceback
    (lambda ck: ck.update(seen="abc"), "its simulated states are not what graphmill writes"),
    (lambda ck: ck["optim"]["param_groups"][0].update(lr="fast"), "its optimizer's lr is fast"),
])
def test_a_damaged_fine_tuning_checkpoint_is_refused_in_one_line(tmp_path, damage, why):
    """A checkpoint of this very fine-tuning (its signature matches) with a field no run writes. Reference: the
    best state simulated again, and the fields fine_tune writes."""
    task = make_task("m", random_graph(8, "mlp", 40), cost(4))
    torch.manual_seed(0)
    pol = GraphPolicy(hidden=16, layers=1)
    kw = dict(budget=60, samples=4, seed=2, units=6, options={"epochs": 1})
    ck = str(tmp_path / "ft.ck")

    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fine_tune(pol, task, checkpoint=ck, progress=interrupt, **kw)
    state = torch.load(ck, weights_only=True)
    damage(state)
    torch.save(state, ck)
    with pytest.raises(UserInputError) as e:
        fine_tune(pol, task, checkpoint=ck, **kw)
    assert str(e.value).startswith(f"{ck}: a damaged fine-tuning checkpoint (") and why in str(e.value), e.value
