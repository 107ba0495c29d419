"""The learned passes and ``place --method learned`` used as an outsider uses them, from the README alone.

References: the placement tests' independent list scheduler (``tests.passes.test_placement.resimulate``, the
README's rule written out), fed only what a report holds; the same pass run after an explicit
``shape-inference`` pass; the README's CLI rules for bad input (one line, exit 2, nothing written).
"""

from __future__ import annotations

import json

import pytest

from graphmill import api
from graphmill.backends.simulator.devices import PlacementCostModel, device_set
from graphmill.cli import main
from graphmill.errors import UserInputError
from graphmill.passes import PassContext, run_passes
from graphmill.search.learned import random_graph
from tests.passes.learned.test_learned_cli import torch_onnx  # noqa: F401 (the module's fixture, shared)
from tests.passes.test_placement import resimulate


def test_learned_and_place_passes_run_on_a_loaded_torch_export(torch_onnx):
    # README, "Learned passes": run_passes(graphmill.load("model.onnx"), "learned-place,...", ctx=ctx). A legacy
    # torch.onnx.export file declares no intermediate shapes; the passes refused it before ("output shape None is
    # not static"). Reference: the same passes after an explicit shape-inference pass.
    def run(schedule: str) -> dict:
        g = api.load(torch_onnx)
        run_passes(g, schedule, ctx=PassContext(cost_model=PlacementCostModel(device_set(devices=2))))
        return {n.name: (n.meta.get("device"), n.meta.get("fusion_group")) for n in g.nodes}, g.meta

    for passes in ("learned-place,learned-fuse,learned-schedule", "place{method=heft}"):
        got, meta = run(passes)
        want, want_meta = run("shape-inference," + passes)
        assert got == want
        key = "learned" if "learned" in passes else "placement"
        assert meta[key]["makespan"] == want_meta[key]["makespan"] > 0


@pytest.mark.parametrize("source", ["learned_optimize", "optimize --json"])
def test_learned_optimize_report_replays_from_the_report_alone(source, tmp_path):
    # the check: decisions re-simulated from the JSON report alone. Before, the report had no op times,
    # fusion-group times, values nor links: only graphmill's own cost model could replay it; and `graphmill
    # optimize --json` of a schedule of learned passes reported the step time alone (an outside check). Each group
    # is one op of its group_time on its device at its least member priority (ties: its last member's graph
    # position), values inside a group are neither sent nor held; then the placement tests' independent list
    # scheduler.
    g = random_graph(11, "cnn", 30)
    if source == "learned_optimize":
        rep = json.loads(json.dumps(api.learned_optimize(g, devices=3, samples=4, seed=1)))
    else:
        path = str(tmp_path / "m.onnx")
        api.save(g, path)
        assert main(["optimize", path, "-p", "learned-optimize{samples=4}", "--seed", "1", "--devices", "3",
                     "-o", str(tmp_path / "o.onnx"), "--json", str(tmp_path / "r.json")]) == 0
        with open(tmp_path / "r.json") as f:
            rep = json.load(f)["learned"]
        assert rep["makespan"] == api.learned_replay(api.load(str(tmp_path / "o.onnx")))["makespan"]
    assert rep["fusion_groups"] and len(rep["group_time"]) == len(rep["fusion_groups"])
    names = list(rep["op_time"])
    pos = {n: i for i, n in enumerate(names)}
    group_of = {n: n for n in names}
    gtime = {}
    for grp, t in zip(rep["fusion_groups"], rep["group_time"]):
        assert len({rep["placement"][n] for n in grp}) == 1  # a group never crosses devices
        last = max(grp, key=pos.get)
        gtime[last] = t
        for n in grp:
            group_of[n] = last
    members: dict[str, list[str]] = {}
    for n in names:
        members.setdefault(group_of[n], []).append(n)
    prio = {k: min(rep["priority"][m] for m in ms) for k, ms in members.items()}
    order = sorted(members, key=lambda k: (prio[k], pos[k]))
    D = len(rep["devices"])
    op_time = {k: [gtime[k]] * D if k in gtime else rep["op_time"][k] for k in order}
    values = []
    for v in rep["values"]:
        p = None if v["producer"] is None else group_of[v["producer"]]
        cons = sorted({group_of[c] for c in v["consumers"]} - {p}, key=pos.get)
        if v["consumers"] and not cons and p is not None:
            continue
        values.append(dict(v, producer=p, consumers=cons))
    r = dict(rep, op_time=op_time, values=values, placement={k: rep["placement"][k] for k in order})
    assert resimulate(r) == (rep["makespan"], rep["memory"]["peak"])
    # each device's reported order is its ops, producers before readers
    for d, dev in enumerate(rep["devices"]):
        seq = rep["order"][dev]
        assert sorted(seq) == sorted(n for n in names if rep["placement"][n] == d)
        at = {n: i for i, n in enumerate(seq)}
        for v in rep["values"]:
            for c in v["consumers"]:
                if v["producer"] in at and c in at:
                    assert at[v["producer"]] < at[c]


def test_place_cli_refusals_name_learned_and_checkpoint(torch_onnx, tmp_path, capsys):
    # `--method learnd` listed every method but learned (and suggested nothing); `--checkpoint` with a method
    # that keeps no state was silently ignored (a rerun then "resumed" nothing). One line each, exit 2, no files.
    out = str(tmp_path / "o.onnx")
    assert main(["place", torch_onnx, "--devices", "2", "--method", "learnd", "-o", out]) == 2
    # learned checkpoints its fine-tuning, so only with --budget
    assert main(["place", torch_onnx, "--devices", "2", "--method", "learned", "--checkpoint",
                 str(tmp_path / "c.ckpt"), "-o", out]) == 2
    assert main(["place", torch_onnx, "--devices", "2", "--method", "heft", "--checkpoint",
                 str(tmp_path / "c.ckpt"), "-o", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert "did you mean 'learned'?" in err[0] and err[0].endswith("hierarchical, learned")
    assert "--checkpoint" in err[1] and "only --method rl, hierarchical, or learned with --budget" in err[1]
    assert "learned run without --budget keeps no state" in err[1]
    assert "a heft run keeps no state" in err[2]
    assert not list(tmp_path.iterdir())
    # the Python API refuses the same (it ignored a learned checkpoint without a budget)
    with pytest.raises(UserInputError, match="learned run without --budget keeps no state"):
        api.place(api.load(torch_onnx), devices=2, method="learned", checkpoint=str(tmp_path / "c.ckpt"))


def test_place_learned_budget_checkpoint_is_written_and_resumed(torch_onnx, tmp_path):
    """--method learned --budget N --checkpoint: written after each fine-tuning iteration; the same command again
    resumes from it (here: a finished one, so nothing is simulated again) and reports the same placement.
    Interrupted runs: tests/passes/learned/test_policy.py (resume equals an uninterrupted run)."""
    ck = tmp_path / "ft.ckpt"
    reps = []
    for k in range(2):
        rep = tmp_path / f"r{k}.json"
        assert main(["place", torch_onnx, "--devices", "2", "--method", "learned", "--budget", "20", "--checkpoint",
                     str(ck), "-o", str(tmp_path / f"o{k}.onnx"), "--json", str(rep), "--quiet"]) == 0
        assert ck.exists()
        reps.append(json.loads(rep.read_text()))
    assert reps[0]["placement"] == reps[1]["placement"] and reps[0]["makespan"] == reps[1]["makespan"]


def test_place_learned_fine_tune_progress_compares_with_the_placement_baseline(torch_onnx):
    # `place --method learned --budget B` fine-tunes devices alone (graph order, no fusion) against the best
    # *placement* baseline; its progress lines divided by the joint task's best baseline (which may fuse) and
    # named it, so a fine-tune that matched the best placement read "1.115 of the best baseline
    # given+greedy+graph". Reference: the report's own best baseline.
    lines: list[str] = []
    rep = api.place(api.load(torch_onnx), method="learned", devices=2, budget=8, progress=lines.append)
    ref = min(rep["baselines"].values())
    ft = [x for x in lines if x.startswith("fine-tune")]
    assert ft and all(f"of the reference {ref:,.0f})" in x for x in ft)
    best = float(ft[-1].split("best ")[1].split(" ")[0].replace(",", ""))
    assert f"({best / ref:.3f} of" in ft[-1]


def test_place_refuses_two_outputs_on_one_path(torch_onnx, tmp_path, capsys):
    # `-o r.out --json r.out` wrote the model, then the report over it ("wrote r.out" twice, exit 0); `--plot`
    # on the -o path was replaced by the model. Reference: the README's bad-input rule (one line, exit 2, nothing
    # written).
    same = str(tmp_path / "r.out")
    assert main(["place", torch_onnx, "--devices", "2", "--method", "single", "-o", same, "--json", same]) == 2
    assert main(["place", torch_onnx, "--devices", "2", "--method", "single", "-o", same, "--json", "-",
                 "--plot", str(tmp_path / "." / "r.out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("the same file as -o" in line for line in err), err
    assert not list(tmp_path.iterdir())


def test_learned_training_step_replays_after_save_and_load(torch_onnx, tmp_path):
    # learned_optimize(training=True) decides for the training step, but the replay (learned_replay, `graphmill
    # simulate`) re-simulated the forward graph alone: 80,885 for a reported 230,695 on a U-Net. Reference: the
    # report's makespan, itself re-simulated from the report alone above (same scheduler, same tables).
    g = api.load(torch_onnx)
    rep = api.learned_optimize(g, devices=2, training=True, samples=2)
    assert any(n.endswith("_grad") for n in rep["placement"])
    path = str(tmp_path / "t.onnx")
    api.save(g, path)
    for graph in (g, api.load(path)):
        assert api.learned_replay(graph)["makespan"] == rep["makespan"]


def test_train_policy_ctrl_c_says_whether_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    # Ctrl-C printed only "interrupted", whether or not a checkpoint was there to resume. Reference: the README
    # ("Ctrl-C, rerun: resumes") and the file system (the checkpoint exists or not).
    ckpt = tmp_path / "t.ckpt"

    def interrupted(*a, **k):
        if k.get("checkpoint"):
            ckpt.write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "train_policy", interrupted)
    assert main(["train-policy", "-o", str(tmp_path / "p.npz"), "--checkpoint", str(ckpt)]) == 130
    assert main(["train-policy", "-o", str(tmp_path / "p.npz")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert "rerun the same command to resume" in err[0] and err[1].endswith("interrupted")
    assert "a rerun starts over" in err[2] and err[3].endswith("interrupted")
    # --json too: the report was written only once the training graphs were ready (an outside check)
    report = tmp_path / "r.json"
    assert main(["train-policy", "-o", str(tmp_path / "p.npz"), "--checkpoint", str(ckpt),
                 "--json", str(report)]) == 130
    got = json.loads(report.read_text())
    assert got["interrupted"] is True and got["output"] is None and got["checkpoint"] == str(ckpt)
    assert set(got) == {"output", "steps", "total_steps", "samples", "seconds", "resumed", "final", "interrupted",
                        "checkpoint"}  # the README's keys


def test_place_ctrl_c_says_whether_a_rerun_resumes(torch_onnx, tmp_path, capsys, monkeypatch):
    # Ctrl-C of `place --method rl/learned --checkpoint F` before its first save printed only "interrupted", where
    # the two other cases say what a rerun does (an outside check). Reference: the file system (F exists or not).
    ckpt = tmp_path / "p.ckpt"
    saves = iter([False, True, False])

    def interrupted(*a, **k):
        if k.get("checkpoint") and next(saves):
            ckpt.write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "place", interrupted)
    for extra in (["--checkpoint", str(ckpt)], ["--checkpoint", str(ckpt)], []):
        assert main(["place", torch_onnx, "--devices", "2", "--method", "rl", "-o", str(tmp_path / "o.onnx"),
                     *extra]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert f"stopped before the first save to {ckpt}, so a rerun starts over" in err[0], err
    assert "run the same command again to resume" in err[2] and "(--checkpoint PATH saves" in err[4], err
    assert [e.endswith("interrupted") for e in err] == [False, True] * 3


def test_place_ctrl_c_after_the_search_says_what_a_rerun_does(torch_onnx, tmp_path, capsys, monkeypatch):
    # Ctrl-C after the search, during `--run`'s execution check or the writes, printed only "interrupted" (an
    # outside check). Reference: the rerun itself, which finds the checkpoint's search done and samples nothing.
    ckpt, out = tmp_path / "p.ckpt", tmp_path / "o.onnx"

    def interrupted(graph):
        raise KeyboardInterrupt

    args = ["place", torch_onnx, "--devices", "2", "--method", "rl", "--budget", "8", "-o", str(out)]
    with monkeypatch.context() as m:
        m.setattr(api, "check_placement", interrupted)
        assert main([*args, "--run", "--checkpoint", str(ckpt)]) == 130
        assert main([*args, "--run"]) == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("graphmill place:")]
    said = ("graphmill place: stopped after the search, before all of its outputs were written; run the same "
            "command again")
    assert err == [f"{said} (it resumes from {ckpt}, whose search is done)", "graphmill place: interrupted",
                   f"{said} (it places the model again)", "graphmill place: interrupted"], err
    assert not out.exists()
    assert main([*args, "--checkpoint", str(ckpt)]) == 0 and out.exists()
    assert f"{ckpt} already holds 8 placements, --budget 8: nothing sampled" in capsys.readouterr().err


def test_a_zero_time_op_is_not_refused_for_bytes_it_never_holds(tmp_path):
    # place refused "fits on no device: op 'concat' alone needs 32.8 KB" though the whole graph on one device
    # peaks at 20,484 bytes under the README's memory rule: a Concat costs no time, so its inputs are freed as its
    # output is allocated (frees first at equal times). Hand computation: x (4,096 B) is resident; the four
    # activations (4,096 B each) are live together until concat, then its output (16,384 B) until sum finishes,
    # with sum's 4-byte output: 4,096 + 16,384 + 4 = 20,484 <= 25,000. One op over every device is still refused.
    import onnx
    from onnx import TensorProto, helper

    acts = [helper.make_node(op, ["x"], [f"r{i}"], name=f"a{i}") for i, op in enumerate(("Relu", "Sigmoid",
                                                                                         "Tanh", "Sigmoid"))]
    nodes = acts + [helper.make_node("Concat", [f"r{i}" for i in range(4)], ["c"], axis=1, name="concat"),
                    helper.make_node("ReduceSum", ["c"], ["y"], keepdims=1, name="sum")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1024])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])])
    path = str(tmp_path / "cat.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    r = api.place(api.load(path), method="single", devices=1, memory_gb=25000 / 1e9)
    assert r["op_time"]["concat"] == [0.0] and r["memory"]["peak"] == [20484.0]
    with pytest.raises(UserInputError, match="fits on no device: op 'sum' alone needs 16.4 KB"):  # 16,384 + 4
        api.place(api.load(path), method="single", devices=1, memory_gb=16000 / 1e9)


def test_learned_optimize_refuses_finetune_it_would_ignore():
    # README: learned_optimize(g, ..., finetune=100)  # also passes=[...] in sequence. With a sequence the budget
    # was silently dropped (report "finetune": None). Reference: the docstring ("joint pass only").
    g = random_graph(5, "mlp", 12)
    with pytest.raises(UserInputError, match="only the joint pass learned-optimize fine-tunes"):
        api.learned_optimize(g, passes=["learned-place", "learned-fuse"], devices=2, finetune=10)
    assert api.learned_optimize(g, passes=["learned-place"], devices=2, samples=1)["finetune"] is None


def test_passes_name_a_symbolic_dimension_they_cannot_size(tmp_path):
    # `graphmill optimize m.onnx -p learned-place --devices 2 --dim N=4` on a dynamic-batch model: the simulator
    # answered "input shape ('N', 3, 224, 224) is not static ... build the model with batch=1" (optimize's --dim
    # sizes only its random inputs). Reference: the README's bad-input rule: one line naming the dimension.
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])])
    path = str(tmp_path / "dyn.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    for schedule in ("learned-place", "place"):
        with pytest.raises(Exception, match=r"has symbolic dimension\(s\) N; op costs need sizes"):
            run_passes(api.load(path), schedule,
                       ctx=PassContext(cost_model=PlacementCostModel(device_set(devices=2))))
