"""The default strategy's starting relevance of conditional parameters (option ``cond_relevance``).

Why it exists: a parameter that exists only under some value of another (``w3`` only when ``depth`` is 3) is
inactive in most early results, so a relevance fitted from them is noise; starting such parameters at
``cond_relevance`` (0.01) lets the model learn the parents' effects first, and the marginal likelihood raises a
child's relevance (x3 per fit at most) once its results show it matters.

Reference: the grid of relevances the coordinate search can reach from a start, computed by hand (x{0.1, 0.3, 3},
clipped to [0.01, 100]); the identity with ``cond_relevance`` 1 on a space without conditions (the option must
then be inert); and an objective written here where only a conditional child matters."""

from __future__ import annotations

import numpy as np
import pytest

from graphmill import search
from graphmill.search import strategies
from graphmill.util.errors import UserInputError

# one sweep of the coordinate search from r moves it to one of r x {0.1, 0.3, 1, 3}, clipped to [0.01, 100]
_FROM_001 = {0.01, 0.03}
_FROM_1 = {0.1, 0.3, 1.0, 3.0}


def _cond_space() -> search.Space:
    return search.Space({
        "depth": search.Choice([1, 2, 3]),
        "w1": search.Choice([16, 32, 64]),
        "w3": search.Choice([16, 32, 64], when={"depth": 3}),  # its own condition
        "head": search.Space({"k": search.Choice([3, 5]), "lr": search.Float(1e-3, 1e-1, log=True)},
                             when={"depth": [2, 3]}),  # a conditional sub-space: k and lr inherit it
        "act": search.Choice(["relu", "tanh"]),
    })


def _reward(c: dict) -> float:
    return c["w1"] / 64 + (0.5 if c["act"] == "relu" else 0.0) + 0.1 * c["depth"] + (c.get("w3", 0) / 640)


def _first_fit(space: search.Space, **options) -> list[float]:
    """The relevances of the first fit with ARD (13 random results told, then one model-based ask)."""
    s = strategies.get("default", space, seed=3, n_init=1, **options)
    rng = np.random.default_rng(0)
    for _ in range(12):
        c = space.sample(rng)
        s.tell(c, _reward(c))
    c = s.ask()  # the first ask is random (n_init 1), the second model-based
    s.tell(c, _reward(c))
    s.ask()
    assert s.hyper is not None and len(s.hyper) == 4, "the fit must carry relevances (ARD on, >= ard_min results)"
    return [float(v) for v in s.hyper[3]]


def _leaf_names(space: search.Space) -> list[str]:
    return [path for path, _ in space.params()]


def test_conditional_leaves_start_at_cond_relevance_and_the_others_at_one():
    space = _cond_space()
    rel = dict(zip(_leaf_names(space), _first_fit(space)))
    assert set(rel) == {"depth", "w1", "w3", "head.k", "head.lr", "act"}
    for name in ("w3", "head.k", "head.lr"):  # own condition, and inherited from a conditional sub-space
        assert round(rel[name], 6) in _FROM_001, (name, rel[name])
    for name in ("depth", "w1", "act"):
        assert round(rel[name], 6) in _FROM_1, (name, rel[name])


def test_cond_relevance_one_treats_conditional_leaves_like_the_others():
    space = _cond_space()
    rel = dict(zip(_leaf_names(space), _first_fit(space, cond_relevance=1.0)))
    for name in ("w3", "head.k", "head.lr", "depth", "w1", "act"):
        assert round(rel[name], 6) in _FROM_1, (name, rel[name])


def test_the_option_is_inert_without_conditions():
    space = search.Space({"a": search.Choice([0, 1, 2]), "b": search.Choice(["x", "y", "z"]),
                          "c": search.Int(1, 6), "d": search.Float(0.0, 1.0)})

    def f(c):
        return -abs(c["a"] - 1) - (c["b"] == "z") - abs(c["c"] - 4) / 3 - abs(c["d"] - 0.3)

    runs = [search.run(space, f, budget=25, seed=1, progress=False, strategy_options={"cond_relevance": v})
            for v in (0.01, 0.5, 1.0)]
    assert [t.config for t in runs[0].history] == [t.config for t in runs[1].history] == \
        [t.config for t in runs[2].history]


def test_it_changes_the_search_when_the_space_has_conditions():
    space = _cond_space()
    a = search.run(space, _reward, budget=25, seed=1, progress=False)
    b = search.run(space, _reward, budget=25, seed=1, progress=False, strategy_options={"cond_relevance": 1.0})
    assert [t.config for t in a.history[:10]] == [t.config for t in b.history[:10]]  # the random start
    assert [t.config for t in a.history] != [t.config for t in b.history]


def test_a_child_that_matters_has_its_relevance_raised_by_the_fits():
    # only the conditional child w3 matters (and only depth 3 reaches it): from 0.01 the coordinate search
    # can reach 0.03, 0.09, 0.27 in three fits; a prior that pinned it would leave it at 0.01-0.03
    space = search.Space({"depth": search.Choice([1, 3]),
                          "w3": search.Choice([0, 1, 2, 3], when={"depth": 3}),
                          "x": search.Choice([0, 1, 2]), "y": search.Choice([0, 1, 2])})

    def f(c):
        return float(c.get("w3", -1))

    s = strategies.get("default", space, seed=0, refit_every=1, n_init=1)
    rng = np.random.default_rng(1)
    for _ in range(40):
        c = space.sample(rng)
        s.tell(c, f(c))
    for _ in range(5):  # a random ask (n_init 1), then four fits
        c = s.ask()
        s.tell(c, f(c))
    rel = dict(zip(_leaf_names(space), s.hyper[3]))
    assert rel["w3"] >= 0.27 - 1e-9, rel


@pytest.mark.parametrize("bad", [0.0, 0.005, 1.5, -1.0])
def test_out_of_range_values_are_refused_in_one_line(bad):
    with pytest.raises(UserInputError, match=r"cond_relevance=.* must be in \[0.01, 1\]") as e:
        strategies.get("default", _cond_space(), cond_relevance=bad)
    assert "\n" not in str(e.value)


def test_a_non_number_is_refused():
    with pytest.raises(UserInputError, match="cond_relevance"):
        strategies.get("default", _cond_space(), cond_relevance="low")
