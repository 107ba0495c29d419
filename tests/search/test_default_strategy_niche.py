"""The default strategy's niche parents (option ``niche``): parents spread over several basins.

Reference: hand computation of the greedy niche rule on five configurations whose pairwise Hamming distances
are written next to them."""

from __future__ import annotations

import pytest

from graphmill import search
from graphmill.search import strategies
from graphmill.util.errors import UserInputError


def _space() -> search.Space:
    return search.Space({f"p{i}": search.Choice([0, 1, 2]) for i in range(4)})


# reward, config; distances by hand: A-B 1, A-C 1, B-C 2, A-D 3, B-D 3, C-D 3, A-E 2, D-E 3
_TOLD = [
    (10.0, {"p0": 0, "p1": 0, "p2": 0, "p3": 0}),  # A, the incumbent
    (9.0, {"p0": 1, "p1": 0, "p2": 0, "p3": 0}),   # B, a neighbour of A
    (8.0, {"p0": 0, "p1": 1, "p2": 0, "p3": 0}),   # C, a neighbour of A
    (7.0, {"p0": 2, "p1": 2, "p2": 2, "p3": 0}),   # D, another basin
    (6.0, {"p0": 1, "p1": 1, "p2": 0, "p3": 0}),   # E, 2 from A, 1 from B, 1 from C, 3 from D
]


def _parents(**options) -> list[dict]:
    s = strategies.get("default", _space(), seed=0, parents=3, **options)
    for r, c in _TOLD:
        s.tell(c, r)
    return s.parents()


def test_without_niches_the_parents_are_the_best_results():
    # niche 0: the best three by reward, whatever their distances
    assert _parents(niche=0) == [c for _, c in _TOLD[:3]]


def test_niche_parents_differ_from_every_better_parent_in_at_least_k_parameters():
    a, b, c, d, e = (c for _, c in _TOLD)
    # niche 2 (the default): A; B and C are 1 from A; D is 3 from A; E is 2 from A and 3 from D
    assert _parents() == _parents(niche=2) == [a, d, e]
    # niche_top 2: A and B unconditionally; C is 1 from A; D is 3 from both; E is 1 from B
    assert _parents(niche=2, niche_top=2) == [a, b, d]
    # niche 3: A, D (3 from A); E is 2 from A
    assert _parents(niche=3) == [a, d]


def test_niche_must_be_an_integer():
    with pytest.raises(UserInputError, match="niche"):
        strategies.get("default", _space(), niche=1.5)


def test_bad_init_and_noise_options_are_refused_in_one_line():
    with pytest.raises(UserInputError, match="did you mean 'spread'"):
        strategies.get("default", _space(), init="sprad")
    with pytest.raises(UserInputError, match="noises"):
        strategies.get("default", _space(), noises=[0.0])


def test_spread_initial_design_is_a_latin_square_on_a_3x3x3_space():
    # reference: by hand, a farthest-first design on 3 parameters of 3 values gives each parameter 3 distinct
    # values in its first 3 points (each next point differs from both in every parameter); random sampling does so
    # with probability (6/9)^3 ~ 0.3
    sp = search.Space({f"p{i}": search.Choice([0, 1, 2]) for i in range(3)})
    for seed in range(3):
        s = strategies.get("default", sp, seed=seed, init="spread", n_init=3)
        asked = [s.ask() for _ in range(3)]
        for i in range(3):
            assert sorted(c[f"p{i}"] for c in asked) == [0, 1, 2]


def test_acquisition_hill_climb_proposes_unseen_valid_configurations_deterministically():
    # ls_starts > 0 on a space too large to enumerate: every proposal valid and new, and the same for the same seed
    sp = search.Space({f"e{i}": search.Choice(["a", "b", "c", "d", "e"]) for i in range(6)})

    def f(c):
        return sum((i + 1) * "abcde".index(c[f"e{i}"]) for i in range(6)) / 10

    runs = []
    for _ in range(2):
        s = strategies.get("default", sp, seed=1, n_init=5, ls_starts=3, enumerate_limit=10)
        seen = []
        for _ in range(12):
            c = s.ask()
            assert sp.validate(c) == c and c not in seen
            seen.append(c)
            s.tell(c, f(c))
        runs.append(seen)
    assert runs[0] == runs[1]
