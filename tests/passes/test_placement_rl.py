"""The learned placers (graphmill/passes/placement/rl.py): never worse than the best baseline (reference: the
baselines' own makespans in the same run), seeded, checkpoint/resume equal to an uninterrupted run, progress."""

from __future__ import annotations

import json

import pytest

from graphmill.backends.simulator.devices import PlacementCostModel, device_set
from graphmill.frontend import zoo
from graphmill.passes.placement import place_graph, simulate


def small_nmt():
    return zoo.build("nmt", layers=2, hidden=64, vocab=50, src_len=4, tgt_len=4, batch=16)


@pytest.mark.parametrize("method", ["rl", "hierarchical"])
def test_never_worse_than_best_baseline_and_seeded(method):
    cm = PlacementCostModel(device_set(devices=3))
    lines = []
    r = place_graph(small_nmt(), cm, method=method, budget=24, seed=1,
                    options={"samples": 4, "progress_every": 2}, progress=lines.append)
    best = min(r.report["baselines"].values())
    assert r.report["makespan"] <= best
    # the reported makespan is the schedule of the reported placement
    pl = [r.report["placement"][n] for n in r.problem.names]
    assert simulate(r.problem, pl).makespan == r.report["makespan"]
    assert lines and "best step time" in lines[-1] and "baseline" in lines[-1] and "24/24 placements" in lines[-1]
    again = place_graph(small_nmt(), PlacementCostModel(device_set(devices=3)), method=method, budget=24, seed=1,
                        options={"samples": 4})
    assert again.report["placement"] == r.report["placement"]


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    opts = {"samples": 4}
    full = place_graph(small_nmt(), PlacementCostModel(device_set(devices=2)), method="rl", budget=32, seed=2,
                       options=opts)
    ck = str(tmp_path / "ck.pt")
    place_graph(small_nmt(), PlacementCostModel(device_set(devices=2)), method="rl", budget=16, seed=2,
                options=opts, checkpoint=ck)  # "interrupted" after 16 placements
    resumed = place_graph(small_nmt(), PlacementCostModel(device_set(devices=2)), method="rl", budget=32, seed=2,
                          options=opts, checkpoint=ck)
    assert resumed.info["learned"]["resumed"] and resumed.info["learned"]["samples"] == 32
    assert resumed.report["placement"] == full.report["placement"]
    assert resumed.report["makespan"] == full.report["makespan"]


def test_checkpoint_of_another_run_refused(tmp_path):
    from graphmill.ir import UserInputError

    ck = str(tmp_path / "ck.pt")
    place_graph(small_nmt(), PlacementCostModel(device_set(devices=2)), method="rl", budget=4, seed=0,
                options={"samples": 4}, checkpoint=ck)
    with pytest.raises(UserInputError, match="a checkpoint of another placement run"):
        place_graph(small_nmt(), PlacementCostModel(device_set(devices=3)), method="rl", budget=8, seed=0,
                    options={"samples": 4}, checkpoint=ck)


def test_unknown_option_named():
    from graphmill.ir import UserInputError

    with pytest.raises(UserInputError, match="unknown rl option 'sample' \\(did you mean 'samples'\\?\\)"):
        place_graph(small_nmt(), PlacementCostModel(device_set(devices=2)), method="rl", options={"sample": 3})


class _Payload:
    """Any class: unpickling it would run attacker-chosen code paths (reference: torch.load's weights_only rule)."""


def test_checkpoint_holding_pickled_objects_refused_not_unpickled(tmp_path):
    import torch

    from graphmill.ir import UserInputError

    ck = str(tmp_path / "ck.pt")
    torch.save({"signature": "x", "payload": _Payload()}, ck)
    with pytest.raises(UserInputError, match="cannot read the placement checkpoint"):
        place_graph(small_nmt(), PlacementCostModel(device_set(devices=2)), method="rl", budget=4, seed=0,
                    options={"samples": 4}, checkpoint=ck)
