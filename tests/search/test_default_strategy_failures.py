"""The default strategy's model of failed trials (option ``failed_as_worst``, default true): a trial whose
evaluator raised, timed out or returned NaN enters the Gaussian process as tied with the worst reward observed.

Why: left out of the model, failures taught it nothing, and it kept proposing next to them (an outside check: 7
of 12 trials failed on a small space where a third of the configurations fail; TPE 3).

References: the same history with every failure told, by hand, as the worst reward observed (the model the
acquisition receives must be that one); the failing region written out here."""

from __future__ import annotations

import numpy as np

from graphmill import search
from graphmill.search import strategies


def _space() -> search.Space:
    """480 configurations: small enough that the candidates are every unseen one (not mutants of parents, which
    a failure cannot be), so two histories differing only in how failures are told get the same candidates."""
    return search.Space({"x": search.Choice(list(range(40))), "kind": search.Choice(["a", "b", "c"]),
                         "lr": search.Choice([0.001, 0.003, 0.01, 0.03])})


def _reward(c: dict) -> float | None:
    if c["kind"] == "c":
        return None  # e.g. a training that diverges
    return -((c["x"] - 23) ** 2) / 200 + (0.3 if c["kind"] == "b" else 0.0) - abs(np.log10(c["lr"]) + 2) / 4


def _model_inputs(failures_as: str, **options) -> tuple[np.ndarray, np.ndarray]:
    """The posterior mean and deviation over the candidates that the acquisition receives after 30 results."""
    space = _space()
    s = strategies.get("default", space, seed=3, **options)
    rng = np.random.default_rng(7)
    told = [space.sample(rng) for _ in range(30)]
    rewards = [_reward(c) for c in told]
    worst = min(r for r in rewards if r is not None)
    for c, r in zip(told, rewards):
        s.tell(c, worst if (r is None and failures_as == "worst") else r)
    seen = {}

    def capture(mean, std, best):
        seen.update(mean=mean.copy(), std=std.copy())
        return np.where(std > 1e-12, mean - best, 0.0)

    s.expected_improvement = capture
    s.asked = 30
    s.ask()
    return seen["mean"], seen["std"]


def test_a_failed_trial_is_modelled_as_the_worst_reward_observed():
    mean, std = _model_inputs("failed")
    ref_mean, ref_std = _model_inputs("worst")
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(std, ref_std, rtol=1e-6, atol=1e-9)
    off_mean, _ = _model_inputs("failed", failed_as_worst=False)  # the option off: failures left out
    assert not np.allclose(off_mean, ref_mean, atol=1e-3)


def _failed_model_proposals(seed: int, **options) -> int:
    r = search.run(_space(), _evaluate, budget=30, seed=seed, progress=False, strategy_options=options or None)
    return sum(t.status == "failed" for t in r.history[10:])  # after the 10 random initial ones


def _evaluate(c: dict) -> float:
    r = _reward(c)
    if r is None:
        raise RuntimeError("diverged")
    return r


def test_the_default_stops_proposing_where_evaluations_fail():
    on = sum(_failed_model_proposals(s) for s in range(4))
    off = sum(_failed_model_proposals(s, failed_as_worst=False) for s in range(4))
    # a third of the space fails: 80 model-based proposals over the 4 seeds
    assert on <= 8 and off >= 2 * on, (on, off)


def test_without_failures_the_option_changes_nothing():
    def ok(c):
        return _reward({**c, "kind": "a"})

    a = search.run(_space(), ok, budget=20, seed=1, progress=False)
    b = search.run(_space(), ok, budget=20, seed=1, progress=False, strategy_options={"failed_as_worst": False})
    assert [t.config for t in a.history] == [t.config for t in b.history]
