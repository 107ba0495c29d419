"""Search strategies behind ask/tell: registry errors, determinism, JSON state round trips, regularized evolution
against Algorithm 1 of Real et al. 2019, conditional spaces for the RL controllers, TPE through Optuna."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from graphmill import search
from graphmill.search import strategies
from graphmill.util.errors import UserInputError

ALL = ["random", "evolution", "reinforce", "ppo", "tpe", "default"]


def space() -> search.Space:
    return search.Space({
        "op": search.Choice(["conv", "dwconv", "mbconv"]),
        "expand": search.Choice([1, 3, 6], when={"op": "mbconv"}),
        "k": search.Choice([3, 5]),
        "depth": search.Int(1, 4),
        "lr": search.Float(1e-3, 1e-1, log=True),
        "blk": search.Space({"w": search.Choice([8, 16, 32]), "se": search.Choice([0, 0.25], when={"w": 32})}),
    })


def reward(c: dict) -> float:
    # a known optimum: mbconv, expand 6, k 5, depth 3, lr 1e-2, w 32, se 0.25
    r = {"conv": 0.0, "dwconv": 0.3, "mbconv": 0.6}[c["op"]] + 0.1 * (c.get("expand", 0) == 6)
    r += 0.2 * (c["k"] == 5) - 0.1 * abs(c["depth"] - 3) - 0.1 * abs(np.log10(c["lr"]) + 2)
    r += 0.1 * (c["blk"]["w"] == 32) + 0.05 * (c["blk"].get("se") == 0.25)
    return float(r)


def drive(strategy, n: int, fail_every: int = 0) -> list[dict]:
    out = []
    for i in range(n):
        c = strategy.ask()
        out.append(c)
        strategy.tell(c, None if fail_every and i % fail_every == fail_every - 1 else reward(c))
    return out


def test_registry_names_and_nearest_errors():
    assert set(ALL) <= set(strategies.names())
    with pytest.raises(UserInputError, match=r"unknown strategy 'evolutoin' \(did you mean 'evolution'\?\)"):
        strategies.get("evolutoin", space())
    with pytest.raises(UserInputError, match=r"unknown option 'popluation' \(did you mean 'population'\?\)"):
        strategies.get("evolution", space(), popluation=10)
    with pytest.raises(UserInputError, match="must be an integer"):
        strategies.get("evolution", space(), population="ten")


@pytest.mark.parametrize("name", ALL)
def test_seeded_deterministic_and_valid(name):
    if name == "tpe":
        pytest.importorskip("optuna")
    sp = space()
    a = drive(strategies.get(name, sp, seed=3), 25, fail_every=7)
    b = drive(strategies.get(name, sp, seed=3), 25, fail_every=7)
    assert a == b
    for c in a:
        assert sp.validate(c) == c
    if name != "random":
        c = drive(strategies.get(name, sp, seed=4), 25)
        assert c != a


def reward_dict(c: dict) -> dict:
    return {"reward": reward(c), "latency_ms": 1.5, "note": "x"}


@pytest.mark.parametrize("name", ALL)
def test_tell_takes_what_evaluate_returns(name):
    """Reference: the same loop told floats (and None for failures). A dict result ('reward' plus metrics, what
    evaluate may return) and a non-finite number (failed, as search.run counts it) steer every strategy exactly
    as the float and None do; other results are refused in one line."""
    if name == "tpe":
        pytest.importorskip("optuna")
    sp = space()

    def loop(result_of) -> list[dict]:
        st = strategies.get(name, sp, seed=5)
        out = []
        for i in range(18):
            c = st.ask()
            out.append(c)
            st.tell(c, result_of(i, c))
        return out

    floats = loop(lambda i, c: None if i % 5 == 4 else reward(c))
    assert loop(lambda i, c: float("nan") if i % 5 == 4 else reward_dict(c)) == floats
    assert loop(lambda i, c: None if i % 5 == 4 else np.array(reward(c))) == floats  # a 0-d array
    st = strategies.get(name, sp, seed=5)
    with pytest.raises(UserInputError, match="a dict result needs a 'reward' key"):
        st.tell(st.ask(), {"accuracy": 0.9})
    with pytest.raises(UserInputError, match="must be a number, None .* not str"):
        st.tell(st.ask(), "0.9")
    # a configuration outside the space and metrics that are no dict: refused at tell, by every strategy (default,
    # evolution and random took them, and a later ask() failed; reference: space.validate's own message)
    c = st.ask()
    bad = {**c, next(iter(c)): "not a choice of the space"}
    with pytest.raises(UserInputError) as ei:
        sp.validate(bad)
    with pytest.raises(UserInputError, match=rf"^strategy '{name}': tell\(config, \.\.\.\): the configuration is "
                                             rf"not in the space: {re.escape(str(ei.value))}$"):
        st.tell(bad, 0.5)
    with pytest.raises(UserInputError, match="metrics must be a dict, not int"):
        st.tell(c, 0.5, 3)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_json_round_trip_continues_identically(name):
    if name == "tpe":
        pytest.importorskip("optuna")
    sp = space()
    s1 = strategies.get(name, sp, seed=1)
    drive(s1, 23, fail_every=5)
    pending = s1.ask()  # asked, not yet told: must survive the round trip
    state = json.loads(json.dumps(s1.state_dict()))
    s2 = strategies.get(name, sp, seed=99)  # a different seed: everything must come from the state
    s2.load_state_dict(state)
    for s in (s1, s2):
        s.tell(pending, reward(pending))
    assert drive(s1, 12) == drive(s2, 12)


def test_regularized_evolution_follows_algorithm_1():
    # reference: Real et al. 2019, Algorithm 1 (aging evolution) with population P and sample size S
    sp = search.Space({"x": search.Int(0, 1000)})
    ev = strategies.get("evolution", sp, seed=0, population=4, sample=4)
    first = [ev.ask() for _ in range(4)]  # the first P proposals are random samples
    for c in first:
        ev.tell(c, float(c["x"]))
    assert [c for c, _ in ev.population] == first
    # with S = P = 4 and sampling with replacement, the parent is the best of up to 4 sampled members;
    # the child differs from some population member in exactly the one parameter
    child = ev.ask()
    assert child not in first
    ev.tell(child, 5000.0)
    # aging: the oldest left, not the worst
    assert [c for c, _ in ev.population] == first[1:] + [child]
    # failed evaluations never join the population
    ev.tell({"x": 7}, None)
    assert len(ev.population) == 4 and {"x": 7} not in [c for c, _ in ev.population]


def test_evolution_children_are_single_mutations_of_population_members():
    sp = space()
    ev = strategies.get("evolution", sp, seed=2, population=5, sample=2)
    drive(ev, 5)
    for _ in range(20):
        members = [c for c, _ in ev.population]
        child = ev.ask()
        flat = json.dumps(child, sort_keys=True)
        assert any(_one_param_apart(m, child) for m in members) or flat in {json.dumps(m, sort_keys=True)
                                                                            for m in members}
        ev.tell(child, reward(child))


def _leaves(c, p=""):
    out = {}
    for k, v in c.items():
        out.update(_leaves(v, p + k + ".") if isinstance(v, dict) else {p + k: v})
    return out


def _one_param_apart(a, b):
    la, lb = _leaves(a), _leaves(b)
    return sum(la[k] != lb[k] for k in set(la) & set(lb)) == 1


@pytest.mark.parametrize("name", ["reinforce", "ppo"])
def test_controller_learns_on_a_conditional_space(name):
    # the controller decides choice by choice; inactive params are never decided, so every config validates
    sp = space()
    ctl = strategies.get(name, sp, seed=0, lr=0.01)
    early = [reward(c) for c in drive(ctl, 40)]
    late = [reward(c) for c in drive(ctl, 40)]
    assert np.mean(late) > np.mean(early) + 0.05  # it learned (reference: random sampling's mean stays flat)


def test_controller_scores_configs_it_did_not_ask():
    sp = space()
    ctl = strategies.get("reinforce", sp, seed=0)
    c = sp.sample(np.random.default_rng(5))
    traj = ctl.trajectory(c)
    paths = [ctl.paths[d] for d, _ in traj]
    assert paths == [p for p in ctl.paths if _leaf_present(c, p)]
    ctl.tell(c, 1.0)
    ctl.tell(c, None)  # a failure counts as the worst reward seen


def _leaf_present(c, path):
    d = c
    for n in path.split("."):
        if not isinstance(d, dict) or n not in d:
            return False
        d = d[n]
    return True


def test_default_beats_random_search_on_a_known_function():
    # reference: random search on the same space and budget (mean best-so-far regret over seeds)
    sp = space()
    opt = 0.6 + 0.1 + 0.2 + 0.1 + 0.05

    def best_after(name, seed, n=40):
        s = strategies.get(name, sp, seed=seed)
        seen: dict = {}
        best = -np.inf
        while len(seen) < n:
            c = s.ask()
            k = sp.key(c)
            r = seen.get(k, reward(c))
            seen[k] = r
            s.tell(c, r)
            best = max(best, r)
        return best

    d = np.mean([opt - best_after("default", s) for s in range(4)])
    r = np.mean([opt - best_after("random", s) for s in range(4)])
    assert d < 0.5 * r


def test_tpe_clear_error_without_optuna(monkeypatch):
    from graphmill.search.strategies import tpe

    monkeypatch.setattr(tpe, "optuna", None)
    with pytest.raises(UserInputError, match="needs optuna.*pip install optuna"):
        strategies.get("tpe", space())


def test_tpe_options_are_tpesamplers():
    pytest.importorskip("optuna")
    s = strategies.get("tpe", space(), seed=0, n_startup_trials=3)
    drive(s, 6)
    with pytest.raises(UserInputError, match=r"unknown option 'n_startup' \(did you mean 'n_startup_trials'\?\)"):
        strategies.get("tpe", space(), n_startup=3)


@pytest.mark.parametrize("name, option, value, message", [
    ("ppo", "lr", -1.0, "option lr=-1.0 must be > 0.0"),
    ("reinforce", "hidden", -1, "option hidden=-1 must be >= 1"),
    ("reinforce", "bins", 0, "option bins=0 must be >= 1"),
    ("reinforce", "baseline_decay", 1.5, "option baseline_decay=1.5 must be >= 0.0 and <= 1.0"),
    ("ppo", "clip", 0.0, "option clip=0.0 must be > 0.0"),
    ("ppo", "epochs", 0, "option epochs=0 must be >= 1"),
    ("tpe", "gamma", "abc", "option gamma='abc' must be a function"),
    ("tpe", "weights", 1, "option weights=1 must be a function"),
    ("tpe", "n_startup_trials", -1, "option n_startup_trials=-1 must be an integer >= 0"),
    ("tpe", "n_ei_candidates", 0, "option n_ei_candidates=0 must be an integer >= 1"),
    ("tpe", "multivariate", 1, "option multivariate=1 must be true or false"),
    ("default", "gamma", -1.0, "option gamma=-1.0 must be > 0.0 and <= 1.0"),  # these three ran (an outside check)
    ("default", "ard_min", -5, "option ard_min=-5 must be >= 0"),
    ("default", "niche", -1, "option niche=-1 must be >= 0"),
    ("default", "init_pool", 0, "option init_pool=0 must be >= 1"),
])
def test_option_values_out_of_range_are_refused_when_the_strategy_is_built(name, option, value, message):
    """An outside check: these reached torch's "Invalid learning rate", a ZeroDivisionError, or (tpe, whose
    options go to optuna's TPESampler unchecked) a TypeError at the first model-based ask, after ten evaluations
    had run and been written."""
    if name == "tpe":
        pytest.importorskip("optuna")
    with pytest.raises(UserInputError, match=f"strategy '{name}': " + re.escape(message)):
        strategies.get(name, space(), seed=0, **{option: value})


def test_default_local_step_proposes_an_unseen_neighbour_of_the_incumbent():
    # reference: Space.mutate's definition of a neighbour (exactly one parameter active in both differs);
    # with local_every=1 every model-based proposal after n_init is such a neighbour of the best so far
    sp = search.Space({"a": search.Choice([0, 1, 2, 3]), "b": search.Choice(["x", "y", "z"]),
                       "c": search.Choice([1, 2, 4, 8])})
    s = strategies.get("default", sp, seed=0, n_init=4, local_every=1)
    seen = {}
    for _ in range(12):
        c = s.ask()
        if len(seen) >= 4:
            best = max(seen.values(), key=lambda t: t[1])[0]
            assert sp.key(c) not in seen
            assert sum(c[k] != best[k] for k in c) == 1, (c, best)
        r = c["a"] + ["x", "y", "z"].index(c["b"]) * 0.5 + c["c"] / 8
        seen[sp.key(c)] = (c, r)
        s.tell(c, r)


def test_default_ordinal_feature_orders_numeric_choices():
    # reference: hand computation: lr 0.003/0.01/0.03/0.1 ranks 0, 1/3, 2/3, 1 appended after Space.encode
    sp = search.Space({"lr": search.Choice([0.1, 0.003, 0.03, 0.01]), "act": search.Choice(["relu", "tanh", "elu"])})
    s = strategies.get("default", sp, seed=0)
    c = {"lr": 0.03, "act": "tanh"}
    e = s.features(c)
    assert e.shape == (sp.dimension + 1,)
    assert e[-1] == pytest.approx(2 / 3)
    assert np.array_equal(e[:-1], sp.encode(c).astype(np.float64))
    off = strategies.get("default", sp, seed=0, ordinal=False)
    assert off.features(c).shape == (sp.dimension,)


def test_default_rejects_bad_linear_weights():
    with pytest.raises(UserInputError, match="linear"):
        strategies.get("default", space(), linear=[1.5])


def test_grid_enumerates_in_order_resumes_and_takes_a_point_list():
    """Reference: ``Space.enumerate()``'s order (every configuration once) and the given list itself."""
    sp = search.Space({"a": search.Choice([1, 2, 3]), "b": search.Choice(["x", "y"], when={"a": [2, 3]})})
    every = list(sp.enumerate())
    g = strategies.get("grid", sp)
    got = [g.ask() for _ in range(2)]
    g2 = strategies.get("grid", sp)
    g2.load_state_dict(json.loads(json.dumps(g.state_dict())))
    got += [g2.ask() for _ in range(len(every) - 2)]
    assert got == every
    r = search.run(sp, lambda c: c["a"], strategy="grid", budget=len(every), progress=False)
    assert [t.config for t in r.history] == every
    points = [{"a": 3, "b": "y"}, {"a": 1}]
    g = strategies.get("grid", sp, configs=points)
    assert [g.ask() for _ in range(2)] == points
    with pytest.raises(UserInputError, match="a: 4 is not one of"):
        strategies.get("grid", sp, configs=[{"a": 4}])
    with pytest.raises(UserInputError, match=r"configs\[2\]: a: 4 is not one of"):  # which point (an outside check)
        strategies.get("grid", sp, configs=points + [{"a": 4}])
    with pytest.raises(UserInputError, match="non-empty list"):
        strategies.get("grid", sp, configs=[])
    with pytest.raises(UserInputError, match="continuous"):
        strategies.get("grid", search.Space({"x": search.Float(0, 1)}))


def _proposals(sp, f, n, **options):
    s = strategies.get("default", sp, seed=3, n_init=4, **options)
    out = []
    for _ in range(n):
        c = s.ask()
        out.append(sp.key(c))
        s.tell(c, f(c))
    return out, s


def test_default_depends_only_on_the_order_of_rewards():
    """Reference: a monotone transform of the reward (exp(8 r), and one failure-like outlier floor) keeps every
    comparison between results, so the rank-warped model makes the same proposals; without the warp it does not."""
    sp = search.Space({"a": search.Choice([0, 1, 2, 3]), "b": search.Choice(["x", "y", "z"]),
                       "c": search.Choice([1, 2, 4, 8])})

    def f(c):
        return c["a"] * 0.3 - abs(["x", "y", "z"].index(c["b"]) - 1) + np.log2(c["c"]) * 0.2

    def g(c):  # monotone in f, with the low results squashed together like failed trainings
        return float(np.exp(8 * max(f(c), -0.5)) + f(c))

    plain, _ = _proposals(sp, f, 16)
    warped, _ = _proposals(sp, g, 16)
    assert plain == warped
    off_f, _ = _proposals(sp, f, 16, warp=False)
    off_g, _ = _proposals(sp, g, 16, warp=False)
    assert off_f != off_g


def test_default_relevance_is_largest_for_the_parameter_that_matters():
    """Reference: the reward below depends on ``b`` alone (hand-written), so the marginal-likelihood fit gives
    ``b`` the largest relevance and the irrelevant parameters less than their start (1)."""
    sp = search.Space({"a": search.Choice([0, 1, 2, 3]), "b": search.Choice(["x", "y", "z", "w"]),
                       "c": search.Choice([1, 2, 4, 8]), "d": search.Choice(["p", "q", "r"])})
    _, s = _proposals(sp, lambda c: ["x", "y", "z", "w"].index(c["b"]) ** 2 / 3.0, 24, ard_min=8, refit_every=4)
    rel = s.state_dict()["hyper"][3]
    assert len(rel) == 4 and rel[1] == max(rel)
    assert rel[1] > 1 > max(rel[0], rel[2], rel[3])


def test_leaf_columns_cover_the_encoding():
    # reference: hand layout: a one-hot of 3, a conditional one-hot of 2 plus its active bit, a nested one-hot of 2
    sp = search.Space({"op": search.Choice(["a", "b", "c"]), "k": search.Choice([3, 5], when={"op": "a"}),
                       "blk": search.Space({"w": search.Choice([8, 16])})})
    assert sp.leaf_columns() == [("op", 0, 3), ("k", 3, 6), ("blk.w", 6, 8)]
    assert sp.dimension == 8


def _reference_log_prob(model, traj):
    # the controller scored one trajectory decision by decision, as ask() samples it (the pre-batching code)
    import torch

    h = c = torch.zeros(1, model.hidden)
    inp = model.start
    logp, ent = torch.zeros(()), torch.zeros(())
    for d, a in traj:
        h, c = model.cell(inp + model.position.weight[d : d + 1], (h, c))
        lp = torch.log_softmax(model.heads[d](h)[0], dim=-1)
        logp, ent = logp + lp[a], ent - (lp.exp() * lp).sum()
        inp = model.action_emb[d].weight[a : a + 1]
    return logp, ent


def test_controller_batched_scoring_matches_one_trajectory_at_a_time():
    # reference: the per-trajectory, per-decision loop above; trajectories of different lengths and decisions
    # (a conditional space), values and gradients
    import torch

    sp = space()
    ctl = strategies.get("ppo", sp, seed=3)
    rng = np.random.default_rng(0)
    trajs = [ctl.trajectory(sp.sample(rng)) for _ in range(12)]
    assert len({len(t) for t in trajs}) > 1
    w = torch.linspace(-1, 1, len(trajs))
    logp, ent = ctl.model.log_probs(trajs)
    (w @ logp + ent.sum()).backward()
    got = [p.grad.clone() for p in ctl.model.parameters()]
    ctl.model.zero_grad()
    ref = [_reference_log_prob(ctl.model, t) for t in trajs]
    (sum(wi * lp for wi, (lp, _) in zip(w, ref)) + sum(e for _, e in ref)).backward()
    assert torch.allclose(logp, torch.stack([lp for lp, _ in ref]), atol=1e-5)
    assert torch.allclose(ent, torch.stack([e for _, e in ref]), atol=1e-5)
    for g, p in zip(got, ctl.model.parameters()):  # no grad in the reference: unused (last decision's embedding)
        assert torch.allclose(g, torch.zeros_like(g) if p.grad is None else p.grad, atol=1e-5)
