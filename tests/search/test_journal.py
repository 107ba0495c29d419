"""search.run's write-ahead journal (issue 11 item 7: after ``kill -9`` no finished evaluation is repeated).

A kill while the checkpoint is being written (megabytes for an RL controller's state) is simulated by a checkpoint
writer that raises ``SystemExit`` instead of writing (the run's memory is lost with it, as with ``kill -9``): the
result just evaluated is then only in the journal. References: an uninterrupted run of the same search (the
history) and an evaluator that counts its calls (each distinct configuration evaluated exactly once, across the
killed and the resumed run)."""

from __future__ import annotations

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import runner_helpers as rh  # noqa: E402

from graphmill import search  # noqa: E402
from graphmill.errors import UserInputError  # noqa: E402
from graphmill.search import checkpoint as ckpt  # noqa: E402

BUDGET = 16


def summary(result):
    return [(t.config, t.reward, t.status) for t in result.history]


@pytest.mark.parametrize("strategy,dies_at", [("default", 6), ("reinforce", 1), ("ppo", 9)])
def test_a_kill_while_the_checkpoint_is_written_repeats_no_evaluation(tmp_path, monkeypatch, strategy, dies_at):
    ref = search.run(rh.small_space(), rh.evaluate, strategy=strategy, budget=BUDGET, seed=3, progress=False)
    ck = str(tmp_path / "run.json")
    calls: list[str] = []

    def counted(c):
        calls.append(json.dumps(c, sort_keys=True))
        return rh.evaluate(c)

    saves = {"n": 0}
    real_save = ckpt.save

    def dying_save(path, state):  # the process dies while this checkpoint is being written
        saves["n"] += 1
        if saves["n"] == dies_at:
            raise SystemExit(9)
        real_save(path, state)

    monkeypatch.setattr(ckpt, "save", dying_save)
    with pytest.raises(SystemExit):
        search.run(rh.small_space(), counted, strategy=strategy, budget=BUDGET, seed=3, progress=False,
                   checkpoint=ck)
    monkeypatch.setattr(ckpt, "save", real_save)
    saved = len(ckpt.load(ck)["history"]) if dies_at > 1 else 0
    assert (saved, len(calls)) == (dies_at - 1, dies_at)  # the last result is in no checkpoint
    with open(ck + ".journal", "a") as f:
        f.write('{"run": "torn by the ki')  # a kill mid-append leaves a torn last line: ignored
    resumed = search.run(rh.small_space(), counted, strategy=strategy, budget=BUDGET, seed=3, progress=False,
                         checkpoint=ck)
    assert summary(resumed) == summary(ref)
    assert sorted(calls) == sorted(json.dumps(t.config, sort_keys=True) for t in ref.history)  # each once
    assert not os.path.exists(ck + ".journal")  # every journaled result is in the final checkpoint


def test_a_journal_of_another_search_is_ignored(tmp_path):
    # reference: the uninterrupted run; a journal line of another seed (same configuration key) must not answer
    ref = search.run(rh.small_space(), rh.evaluate, strategy="evolution", budget=8, seed=4, progress=False)
    ck = str(tmp_path / "run.json")
    other = ckpt.run_digest({"space": rh.small_space().to_json(), "strategy": "evolution", "options": {},
                             "seed": 5, "fingerprint": None})
    first = ref.history[0]
    ckpt.journal_append(ck, other, {**first.to_json(), "reward": 123.0})
    calls = []

    def counted(c):
        calls.append(c)
        return rh.evaluate(c)

    r = search.run(rh.small_space(), counted, strategy="evolution", budget=8, seed=4, progress=False,
                   checkpoint=ck)
    assert summary(r) == summary(ref) and len(calls) == 8
    assert not os.path.exists(ckpt.journal_path(ck))


def test_an_unreadable_checkpoint_is_not_called_damaged(tmp_path, monkeypatch):
    """A good checkpoint without read permission was "not a graphmill search checkpoint ... remove it if it is a
    damaged checkpoint of yours": a user taking the advice deleted the run's progress (an outside check, as a
    user without root). Reference: the OSError the read raises, stood in for here (root reads any file)."""
    path = tmp_path / "checkpoint.json"
    ckpt.save(path, {"history": []})
    assert ckpt.load(path)["history"] == []

    def denied(p, *a, **k):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(ckpt, "read_user_file", denied)
    with pytest.raises(UserInputError) as e:
        ckpt.load(path)
    assert str(e.value) == f"{path}: cannot read the search checkpoint (Permission denied)"


def test_a_checkpoint_nested_too_deep_is_refused_in_one_line_and_such_a_journal_line_skipped(tmp_path):
    """100,000 nested brackets as the checkpoint a search resumes from gave a RecursionError traceback, exit 1
    (an outside check); a journal line like it is a torn line, skipped. Reference: the message written here."""
    path = tmp_path / "checkpoint.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserInputError) as e:
        ckpt.load(path)
    assert str(e.value).startswith(f"{path}: not a graphmill search checkpoint (cannot read it as one: nested too "
                                   "deeply)")
    ckpt.journal_append(path, "run", {"config": {"a": 1}})
    with open(ckpt.journal_path(path), "a") as f:
        f.write("[" * 100_000 + "]" * 100_000 + "\n")
    assert ckpt.journal_read(path, "run") == [{"config": {"a": 1}}]


def test_json_that_parses_but_nests_beyond_the_limit_is_refused_as_too_deep(tmp_path):
    """480 nested sub-spaces parse, then overflowed Space.from_json's recursion with a 1,000-line traceback (a
    review); parse_json refuses nesting beyond JSON_NESTING_LIMIT. Reference: the limit, and a shallow file."""
    from graphmill.util.files import JSON_NESTING_LIMIT, json_nesting, parse_json

    assert parse_json("[" * JSON_NESTING_LIMIT + "]" * JSON_NESTING_LIMIT) is not None
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json("[" * (JSON_NESTING_LIMIT + 1) + "]" * (JSON_NESTING_LIMIT + 1))
    assert json_nesting({"a": [1, {"b": []}]}, 10) == 4  # object, list, object, list


def test_a_result_answered_from_the_journal_does_not_count_in_the_rate(tmp_path, monkeypatch):
    """A resumed run's first progress line, for a result the journal held, said 66 evals/s where evaluations took
    seconds (an outside check on NAHAS): the rate counted a result this run did not evaluate. Reference: the
    evaluations this run made (none at that line)."""
    ck = str(tmp_path / "run.json")
    real_save = ckpt.save

    def dying_save(path, state):
        raise SystemExit(9)

    monkeypatch.setattr(ckpt, "save", dying_save)  # dies writing the first checkpoint: the result is journaled
    with pytest.raises(SystemExit):
        search.run(rh.small_space(), rh.evaluate, strategy="random", budget=3, seed=3, progress=False, checkpoint=ck)
    monkeypatch.setattr(ckpt, "save", real_save)
    infos: list[dict] = []
    search.run(rh.small_space(), rh.evaluate, strategy="random", budget=3, seed=3, progress=infos.append,
               checkpoint=ck)
    assert [i["count"] for i in infos] == [1, 2, 3]
    assert infos[0]["rate"] == 0 and "0 evals/s  ETA ?" in infos[0]["line"]  # the journal's answer
    assert infos[1]["rate"] > 0


@pytest.mark.parametrize("edit, why", [
    (lambda s: s["history"][0].update(reward=float("nan")), "trial 0: reward nan is not a finite number"),
    (lambda s: s["history"][0].update(reward="x"), "trial 0: reward 'x' is not a finite number"),
    (lambda s: s["history"][0].update(reward=10 ** 400), "trial 0: reward 1000"),
    (lambda s: s["history"][0].update(status="done"), "trial 0: status 'done' with reward"),
    # a run writes a non-finite metric as null; NaN reached scale-search's results.json (an outside check)
    (lambda s: s["history"][0].update(metrics={"accuracy": float("nan")}),
     "trial 0: its metrics hold a number that is not finite"),
    (lambda s: s["history"][1].pop("config"), "no 'config'"),
    (lambda s: s["runner"].update(repeats="many"), "invalid literal"),
    # refused when its evaluation came, naming no file (an outside check)
    (lambda s: s.update(pending=[1]), "pending: config: expected a dict of parameters, got 1"),
    (lambda s: s.update(history=5), "history is 5, not a list of trials"),  # "'int' object is not iterable"
    (lambda s: s.update(waiting=[{"op": "conv"}]), "waiting: k: missing (the parameter is active)"),
])
def test_a_damaged_checkpoint_is_refused_before_any_evaluation(tmp_path, edit, why):
    """A checkpoint edited by hand (a NaN, text or 400-digit reward) was resumed: the run evaluated new trials and
    then died with a traceback on the next save or comparison, losing them (an outside check). Reference: an
    evaluator counting its calls (none) and the message written here."""
    path = tmp_path / "checkpoint.json"
    search.run(rh.small_space(), rh.evaluate, strategy="random", budget=3, seed=0, checkpoint=str(path),
               progress=False)
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))  # Python's json writes NaN as NaN, as a hand edit would
    calls = []
    with pytest.raises(UserInputError) as e:
        search.run(rh.small_space(), lambda c: calls.append(c) or 0.5, strategy="random", budget=6, seed=0,
                   checkpoint=str(path), progress=False)
    assert str(e.value).startswith(f"{path}: the checkpoint is damaged (") and why in str(e.value), str(e.value)
    assert str(e.value).endswith("); remove it to start afresh") and calls == []


@pytest.mark.parametrize("hyper", ["x", [0.4], [0.4, "a", 0.0], [0.4, 1e-4, 0.0, [1.0]], [0.4, 1e-4, float("inf")],
                                   [-0.4, 1e-4, 0.0], [0.4, -1e300, 0.0], [0.4, 1e-4, 0.0, [1.0, -3.0, 1.0, 1.0, 1.0]]])
def test_a_damaged_default_strategy_state_is_refused_before_any_evaluation(tmp_path, hyper):
    """The default strategy's fitted Gaussian-process parameters edited ('x', too few, a relevance per parameter
    of the wrong length): an IndexError traceback at the first ask (an outside check). Reference: the state
    the first run wrote, and an evaluator counting its calls (none)."""
    path = tmp_path / "checkpoint.json"
    search.run(rh.small_space(), rh.evaluate, budget=13, seed=0, checkpoint=str(path), progress=False)
    state = json.loads(path.read_text())
    good = state["strategy_state"]["hyper"]
    assert len(good) == 4 and len(good[3]) == len(list(rh.small_space().params()))  # what a fit writes
    state["strategy_state"]["hyper"] = hyper
    path.write_text(json.dumps(state))
    calls = []
    with pytest.raises(UserInputError) as e:
        search.run(rh.small_space(), lambda c: calls.append(c) or 0.5, budget=16, seed=0, checkpoint=str(path),
                   progress=False)
    assert str(e.value).startswith(f"{path}: the checkpoint is damaged (strategy_state.hyper {hyper!r} is not the "
                                   "fitted parameters of a Gaussian process over this space)"), str(e.value)
    assert calls == []


@pytest.mark.parametrize("edit, why", [
    (lambda t: t["config"].update(k=4), "trial 0: k: 4 is not one of [3, 5]"),
    (lambda t: t.update(key="k"), "trial 0: its key is not its configuration's"),
])
def test_a_checkpoint_trial_outside_the_space_is_refused(tmp_path, edit, why):
    """An edited configuration (a value the space does not hold, a key that is not its own) was resumed and could
    be reported as the best (a review). Reference: the space's own validation and key."""
    path = tmp_path / "checkpoint.json"
    search.run(rh.small_space(), rh.evaluate, strategy="random", budget=3, seed=0, checkpoint=str(path),
               progress=False)
    state = json.loads(path.read_text())
    edit(state["history"][0])
    path.write_text(json.dumps(state))
    with pytest.raises(UserInputError, match="the checkpoint is damaged") as e:
        search.run(rh.small_space(), rh.evaluate, strategy="random", budget=6, seed=0, checkpoint=str(path),
                   progress=False)
    assert why in str(e.value), str(e.value)


@pytest.mark.parametrize("stop", [SystemExit, KeyboardInterrupt])
def test_results_arriving_together_repeat_no_evaluation_wherever_the_run_stops(tmp_path, monkeypatch, stop):
    """With several workers, `wait()` returned several results at once; each was journaled only when recorded,
    behind the previous one's checkpoint save, and a `kill -9` during that save made the resumed run evaluate the
    next one again (an outside check: 1 in 5-10 kills with 2 workers and ppo's megabyte checkpoints). The first
    fix journaled them on arrival, but each save's journal rewrite then erased the ones not yet recorded, and a
    Ctrl-C during a save (which had repeated nothing before) re-evaluated them (a review). Three results arriving
    together are made certain by an executor returning them from one `wait()`; the run stops at every one of its
    checkpoint saves in turn. References: an evaluator counting its calls (each configuration once across both
    runs), the uninterrupted run's configurations, and the objective's calls (once per trial)."""
    from graphmill.search import runner
    from graphmill.search.executors.inprocess import InProcessExecutor

    class Together(InProcessExecutor):  # `workers` in flight; their results come back from one wait()
        def __init__(self, evaluate, workers, **kwargs):
            super().__init__(evaluate)
            self.workers = workers

    monkeypatch.setattr(runner, "make", lambda name, evaluate, workers, **kw: Together(evaluate, workers))
    objective_calls = []

    def objective(metrics):
        objective_calls.append(1)
        return metrics["reward"]

    def run(evaluate, **kw):
        return search.run(rh.small_space(), evaluate, strategy="random", budget=9, seed=3, workers=3,
                          objective=objective, progress=False, **kw)

    ref = run(lambda c: {"reward": rh.evaluate(c)})
    assert len(objective_calls) == 9
    real_save = ckpt.save
    for n in range(1, 10):
        calls: list[dict] = []

        def counted(c):
            calls.append(dict(c))
            return {"reward": rh.evaluate(c)}

        saves = []

        def stopping_save(path, state):
            saves.append(1)
            if len(saves) == n:
                raise stop()
            real_save(path, state)

        ck = str(tmp_path / f"run{n}.json")
        monkeypatch.setattr(ckpt, "save", stopping_save)
        objective_calls.clear()
        try:
            run(counted, checkpoint=ck)
        except (SystemExit, KeyboardInterrupt):
            pass
        monkeypatch.setattr(ckpt, "save", real_save)
        r = run(counted, checkpoint=ck)
        keys = [json.dumps(c, sort_keys=True) for c in calls]
        assert len(keys) == len(set(keys)) == 9, (n, calls)  # no finished evaluation run twice
        assert sorted(json.dumps(t.config, sort_keys=True) for t in r.history) == \
            sorted(json.dumps(t.config, sort_keys=True) for t in ref.history), n
        assert len(objective_calls) == 9, n  # once per trial (it ran twice per trial with a checkpoint)
