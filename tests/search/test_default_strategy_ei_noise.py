"""The default strategy's last phase: expected improvement of a new *observation* (options ``ei_noise``,
``exploit_from``).

Why it exists: a search is scored by the best value observed, and a new configuration's observation carries its
own noise. Expected improvement over the latent mean alone (the fitted noise left out) undervalues the
configurations next to the best ones, whose latent mean is a little under the best *observation* (itself often a
lucky draw) but whose own draw may well beat it. That is exploitation, so it runs only in the last quarter of a
budget the strategy knows (``search.run`` tells it).

Reference: the identity var(observation) = var(latent posterior) + weight x noise, the noise being the one the
strategy's own marginal-likelihood fit chose (read from its state), checked on the standard deviations the
acquisition receives with the option off and on for the same history; the phase's start computed by hand from
the budget; and a bare ask/tell loop told the budget by hand, against ``search.run``."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from graphmill import search
from graphmill.search import strategies
from graphmill.util.errors import UserInputError


def _space() -> search.Space:
    return search.Space({"a": search.Choice(["x", "y", "z", "w"]), "b": search.Choice([1, 2, 4, 8]),
                         "c": search.Float(0.0, 1.0)})


def _reward(c: dict, rng: np.random.Generator) -> float:
    return {"x": 0.0, "y": 0.3, "z": 0.5, "w": 0.1}[c["a"]] - (c["b"] - 4) ** 2 / 40 - (c["c"] - 0.3) ** 2 \
        + float(rng.normal(0, 0.2))  # noisy: the fit picks a noise above its smallest


def _acquisition_inputs(ei_noise: float, budget: int | None = 30, told: int = 24,
                        **options) -> tuple[np.ndarray, np.ndarray, float]:
    space = _space()
    s = strategies.get("default", space, seed=5, ei_noise=ei_noise, **options)
    s.budget = budget
    rng, noise_rng = np.random.default_rng(1), np.random.default_rng(2)
    for _ in range(told):
        c = space.sample(rng)
        s.tell(c, _reward(c, noise_rng))
    seen = {}

    def capture(mean, std, best):
        seen.update(mean=mean.copy(), std=std.copy())
        return np.where(std > 1e-12, mean - best, 0.0)

    s.expected_improvement = capture  # the instance's: the acquisition's inputs, not its choice
    s.asked = told + 6  # past the random initial design
    s.ask()
    return seen["mean"], seen["std"], float(s.hyper[1])


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_the_acquisition_sees_the_observation_variance_latent_plus_fitted_noise(weight):
    mean0, std0, noise0 = _acquisition_inputs(0.0)
    mean1, std1, noise1 = _acquisition_inputs(weight)
    assert noise0 == noise1 and noise0 > 1e-4  # same fit, and a noise the option can show up in
    np.testing.assert_allclose(mean1, mean0)  # the mean is the latent one either way
    np.testing.assert_allclose(std1 ** 2, std0 ** 2 + weight * noise0, rtol=1e-9)


@pytest.mark.parametrize("value", ["yes", True, None, -0.1, 1.5])
def test_an_ei_noise_outside_0_1_is_one_line(value):
    with pytest.raises(UserInputError, match=r"option ei_noise=.* must be a number"):
        strategies.get("default", _space(), seed=0, ei_noise=value)


@pytest.mark.parametrize("budget, told, exploit_from, on", [
    (None, 24, 0.75, False),  # budget unknown (a bare ask/tell loop): never
    (32, 24, 0.75, True),     # 24 >= 0.75 x 32
    (33, 24, 0.75, False),    # 24 < 24.75
    (48, 24, 0.5, True),
    (49, 24, 0.5, False),
])
def test_the_observation_variance_starts_at_exploit_from_of_the_budget(budget, told, exploit_from, on):
    _, std0, noise = _acquisition_inputs(0.0, budget, told, exploit_from=exploit_from)
    _, std1, _ = _acquisition_inputs(1.0, budget, told, exploit_from=exploit_from)
    np.testing.assert_allclose(std1 ** 2, std0 ** 2 + (noise if on else 0.0), rtol=1e-9)


def _noisy_objective(c: dict) -> float:
    """A table: each configuration's noise is fixed (seeded by its digest, the same in every process)."""
    digest = hashlib.md5(f"{c['a']} {c['b']} {c['c']:.12g}".encode()).hexdigest()
    return _reward(c, np.random.default_rng(int(digest[:8], 16)))


def test_search_run_tells_the_strategy_its_budget():
    # reference: the same ask/tell loop written out, told the budget by hand, and not told it
    space, budget = _space(), 40

    def loop(tell_budget: bool) -> list[dict]:
        s = strategies.get("default", space, seed=3)
        if tell_budget:
            s.budget = budget
        out = []
        for _ in range(budget):
            c = s.ask()
            s.tell(c, _noisy_objective(c))
            out.append(c)
        return out

    ran = [t.config for t in search.run(space, _noisy_objective, budget=budget, seed=3, progress=False).history]
    assert ran == loop(True)
    assert ran != loop(False)  # the last phase changed a proposal here: the comparison above can fail


@pytest.mark.parametrize("value", [-0.1, 1.5, "late"])
def test_an_exploit_from_outside_0_1_is_one_line(value):
    with pytest.raises(UserInputError, match=r"option exploit_from=.* must be"):
        strategies.get("default", _space(), seed=0, exploit_from=value)


def test_repeats_told_again_do_not_move_the_phase_on():
    # reference: the runner answers a repeated configuration from its history and tells it again, at no cost to
    # the budget; the phase counts distinct configurations (24 here, under 0.75 x 40 = 30, with 34 tells)
    space = _space()
    s = strategies.get("default", space, seed=0)
    s.budget = 40
    rng, noise_rng = np.random.default_rng(1), np.random.default_rng(2)
    told = []
    for _ in range(24):
        c = space.sample(rng)
        s.tell(c, _reward(c, noise_rng))
        told.append(c)
    for c in told[:10]:
        s.tell(c, _reward(c, noise_rng))
    assert not s.exploiting()
    for _ in range(6):
        c = space.sample(rng)
        s.tell(c, _reward(c, noise_rng))
    assert s.exploiting()  # 30 distinct


@pytest.mark.parametrize("value", ["x", -5, 2.5, True])
def test_a_bad_budget_is_one_line(value):
    # before the check, "x" failed at ask() with a TypeError and -5 put the strategy in its last phase at once
    s = strategies.get("default", _space(), seed=0)
    with pytest.raises(UserInputError, match=r"budget=.* must be a whole number of evaluations >= 0, or None"):
        s.budget = value


def test_get_takes_the_budget_as_search_run_tells_it():
    s = strategies.get("default", _space(), seed=0, budget=40)
    assert s.budget == 40 and strategies.get("evolution", _space(), seed=0).budget is None


def test_asks_in_flight_count_towards_the_phase():
    # reference: the budget's arithmetic. With several workers, configurations asked and not yet told are
    # evaluations already spent: 21 told + 3 new in flight = 24 = 0.75 x 32 starts the phase, 21 + 2 does not
    space = _space()
    s = strategies.get("default", space, seed=0)
    s.budget = 32
    rng, noise_rng = np.random.default_rng(1), np.random.default_rng(2)
    for _ in range(21):
        c = space.sample(rng)
        s.tell(c, _reward(c, noise_rng))
    s.ask(), s.ask()
    assert not s.exploiting()
    s.ask()
    assert s.exploiting()


def test_repeated_asks_in_flight_cost_no_budget():
    # reference: the budget's arithmetic. A three-configuration space, two told: the asks after the one new
    # configuration must repeat (told ones, and the same one twice in flight); the runner answers or waits for
    # those at no cost, so 3 distinct configurations have started, under 0.5 x 8 = 4
    space = search.Space({"a": search.Choice([0, 1, 2])})
    s = strategies.get("default", space, seed=0, exploit_from=0.5)
    s.budget = 8
    s.tell({"a": 0}, 0.5)
    s.tell({"a": 1}, 0.4)
    asked = [s.ask() for _ in range(4)]
    assert {c["a"] for c in asked} == {0, 1, 2} and len(asked) == 4  # repeats of told and in-flight ones
    assert not s.exploiting()
