"""graphmill.search.Space: sampling, mutation, encoding, keys, validation, size, JSON (references: hand counts,
the design contract in notes/search_design.md, and sha256 of canonical JSON computed here independently)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from graphmill import search
from graphmill.util.errors import UserInputError


def demo_space() -> search.Space:
    return search.Space({
        "op": search.Choice(["conv", "dwconv", "mbconv"]),
        "expand": search.Choice([1, 3, 6], when={"op": "mbconv"}),
        "se": search.Choice([0, 0.25], when={"op": ["mbconv", "dwconv"]}),
        "lr": search.Float(1e-4, 1e-1, log=True),
        "drop": search.Float(0.0, 0.5),
        "depth": search.Int(1, 8),
        "width": search.Int(8, 256, log=True),
        "block1": search.Space({
            "kernel": search.Choice([3, 5]),
            "dil": search.Choice([1, 2], when={"kernel": 3}),
            "inner": search.Space({"a": search.Choice(["x", "y"]), "b": search.Int(0, 2, when={"a": "y"})}),
        }),
        "tail": search.Space({"n": search.Int(1, 3)}, when={"op": "conv"}),
    })


def discrete_space() -> search.Space:
    return search.Space({
        "op": search.Choice(["conv", "dwconv", "mbconv"]),
        "expand": search.Choice([1, 3, 6], when={"op": "mbconv"}),
        "k": search.Choice([3, 5]),
        "se": search.Choice([0, 0.25], when={"k": 5}),
        "depth": search.Int(1, 4),
        "sub": search.Space({"a": search.Choice([True, False]), "b": search.Choice(["p", "q"], when={"a": True})}),
    })


def leaves(config: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(leaves(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def test_sampled_configs_validate_and_hold_only_active_params():
    s = demo_space()
    rng = np.random.default_rng(0)
    seen_ops = set()
    for _ in range(300):
        c = s.sample(rng)
        assert s.validate(c) == c
        json.dumps(c)  # plain JSON data
        seen_ops.add(c["op"])
        assert ("expand" in c) == (c["op"] == "mbconv")
        assert ("se" in c) == (c["op"] in ("mbconv", "dwconv"))
        assert ("tail" in c) == (c["op"] == "conv")
        assert ("dil" in c["block1"]) == (c["block1"]["kernel"] == 3)
        assert 1e-4 <= c["lr"] <= 1e-1 and 8 <= c["width"] <= 256 and isinstance(c["width"], int)
    assert seen_ops == {"conv", "dwconv", "mbconv"}


def test_sampling_is_seeded():
    s = demo_space()
    a = [s.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [s.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b


def test_log_float_samples_are_log_uniform():
    # reference: for log-uniform on [1e-4, 1e-1], P(x < 1e-2) = 2/3 (two decades of three)
    s = search.Space({"lr": search.Float(1e-4, 1e-1, log=True)})
    rng = np.random.default_rng(1)
    xs = np.array([s.sample(rng)["lr"] for _ in range(3000)])
    assert abs((xs < 1e-2).mean() - 2 / 3) < 0.03


def test_mutate_changes_exactly_one_active_param():
    s = demo_space()
    rng = np.random.default_rng(3)
    changed_names = set()
    for _ in range(500):
        c = s.sample(rng)
        m = s.mutate(c, rng)
        assert s.validate(m) == m
        a, b = leaves(c), leaves(m)
        common = set(a) & set(b)
        diffs = [k for k in common if a[k] != b[k]]
        # exactly one parameter present in both changed value; others only (de)activated as its consequence
        assert len(diffs) == 1, (c, m)
        changed_names.add(diffs[0])
    # every kind of leaf gets mutated sometimes, nested and conditional ones included
    assert {"op", "lr", "depth", "block1.kernel", "block1.inner.a"} <= changed_names


def test_mutate_activates_and_deactivates_conditionals():
    s = search.Space({"op": search.Choice(["a", "b"]), "x": search.Choice([1, 2], when={"op": "b"})})
    rng = np.random.default_rng(0)
    assert s.mutate({"op": "a"}, rng) in ({"op": "b", "x": 1}, {"op": "b", "x": 2})
    outs = {json.dumps(s.mutate({"op": "b", "x": 1}, rng)) for _ in range(50)}
    assert outs == {json.dumps({"op": "a"}), json.dumps({"op": "b", "x": 2})}


@pytest.mark.parametrize("space", [demo_space(), search.Space({
    "op": search.Choice(["a", "b", "c"]), "lr": search.Float(1e-4, 1e-1, log=True), "depth": search.Int(1, 8),
    "inner": search.Space({"k": search.Choice([3, 5]), "w": search.Int(8, 64, log=True)})})],
    ids=["conditional", "flat"])
def test_mutate_of_a_validated_config_skips_nothing_but_the_check(space):
    # reference: the checked path (validated=False) on the same random streams; the mutants are the same, the
    # streams stay in step, and the parent is left as it was
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    c = space.sample(np.random.default_rng(0))
    for _ in range(300):
        before = json.dumps(c)
        m1 = space.mutate(c, a)
        m2 = space.mutate(c, b, validated=True)
        assert m1 == m2 and json.dumps(m1) == json.dumps(m2) and json.dumps(c) == before
        assert space.validate(m2) == m2
        c = m2
    assert a.random() == b.random()


def test_a_partial_configuration_does_not_narrow_later_mutations():
    # reference: the space's own parameters; a misuse (a partial config declared validated) must not be
    # remembered as the list of parameters to mutate
    space = search.Space({"a": search.Choice([1, 2]), "b": search.Choice(["x", "y"]), "c": search.Int(0, 3)})
    rng = np.random.default_rng(0)
    try:
        space.mutate({"a": 1, "b": "x"}, rng, validated=True)
    except KeyError:
        pass
    full = {"a": 1, "b": "x", "c": 0}
    changed = {k for _ in range(200) for k, v in space.mutate(full, rng).items() if v != full[k]}
    assert changed == {"a", "b", "c"}


def test_mutating_a_single_point_space_never_returns_the_callers_dict():
    space = search.Space({"a": search.Choice([1])})
    config = {"a": 1}
    assert space.mutate(config, np.random.default_rng(0), validated=True) is not config


def test_sampling_a_space_without_conditions_draws_what_build_draws():
    # reference: Space.build, which asks parameter by parameter in dependency order
    space = search.Space({"op": search.Choice(["a", "b", "c"]), "lr": search.Float(-1.0, 0.0),
                          "inner": search.Space({"k": search.Choice([3, 5]), "w": search.Int(8, 64, log=True)}),
                          "depth": search.Int(1, 8)})
    a, b = np.random.default_rng(2), np.random.default_rng(2)
    for _ in range(200):
        s1, s2 = space.sample(a), space.build(lambda _path, p: p.sample(b))
        assert json.dumps(s1) == json.dumps(s2)


def test_mutate_of_a_single_point_space_returns_it():
    s = search.Space({"a": search.Choice([1]), "b": search.Int(2, 2)})
    assert s.mutate({"a": 1, "b": 2}, np.random.default_rng(0)) == {"a": 1, "b": 2}


def test_encode_has_fixed_length_and_documented_layout():
    s = demo_space()
    # hand count: op 3, expand 3+1, se 2+1, lr 1, drop 1, depth 1, width 1, kernel 2, dil 2+1, a 2, b 1+1, tail.n 1+1
    assert s.dimension == 3 + 4 + 3 + 1 + 1 + 1 + 1 + 2 + 3 + 2 + 2 + 2
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = s.encode(s.sample(rng))
        assert v.shape == (s.dimension,) and v.dtype == np.float32
        assert v.min() >= 0 and v.max() <= 1
    small = search.Space({"op": search.Choice(["a", "b"]), "x": search.Choice([1, 2], when={"op": "b"}),
                          "lr": search.Float(1e-3, 1e-1, log=True), "n": search.Int(0, 4)})
    np.testing.assert_allclose(small.encode({"op": "a", "lr": 1e-2, "n": 1}), [1, 0, 0, 0, 0, 0.5, 0.25], atol=1e-6)
    np.testing.assert_allclose(small.encode({"op": "b", "x": 2, "lr": 1e-3, "n": 4}), [0, 1, 0, 1, 1, 0, 1])


@pytest.mark.parametrize("config, named", [
    ({"a": 7}, "a: 7 is not one of [0, 1]"),          # set the slot before a's (the vector's last) to 1
    ({"a": 1}, "b: missing (the parameter is active)"),  # encoded b as inactive
])
def test_encode_refuses_a_configuration_not_of_the_space(config, named):
    """An outside check: ``encode`` wrote garbage for a value outside a choice and for a missing active parameter,
    where ``key`` refuses both. Reference: ``validate``'s message for the same configuration."""
    s = search.Space({"a": search.Choice([0, 1]), "b": search.Choice([2, 3], when={"a": 1})})
    with pytest.raises(UserInputError, match=re.escape(named)):
        s.encode(config)
    np.testing.assert_array_equal(s.encode({"a": 1, "b": 3}, validated=True), s.encode({"a": 1, "b": 3}))


def test_key_is_sha256_of_canonical_json_and_normalizes_numbers():
    s = search.Space({"a": search.Choice([1, 3]), "b": search.Float(0, 2), "c": search.Int(0, 9)})
    k = s.key({"c": 3, "b": 1, "a": 1})
    ref = hashlib.sha256(json.dumps({"a": 1, "b": 1.0, "c": 3}, sort_keys=True, separators=(",", ":")).encode())
    assert k == ref.hexdigest()
    assert s.key({"a": 1.0, "b": 1.0, "c": 3.0}) == k
    assert s.key({"a": np.int64(1), "b": np.float32(1.0), "c": np.int32(3)}) == k
    assert s.key({"a": 3, "b": 1.0, "c": 3}) != k
    bools = search.Space({"f": search.Choice([True, 1])})
    assert bools.key({"f": True}) != bools.key({"f": 1})


KEY_SCRIPT = """
import json, sys
import numpy as np
from graphmill import search
sys.path.insert(0, sys.argv[1])
from test_space import demo_space
s = demo_space()
rng = np.random.default_rng(11)
print(json.dumps([s.key(s.sample(rng)) for _ in range(20)]))
"""


def test_key_is_stable_across_processes():
    s = demo_space()
    rng = np.random.default_rng(11)
    here = [s.key(s.sample(rng)) for _ in range(20)]
    assert len(set(here)) == 20
    for hashseed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        out = subprocess.run([sys.executable, "-c", KEY_SCRIPT, os.path.dirname(__file__)], env=env,
                             capture_output=True, text=True, timeout=120, check=True)
        assert json.loads(out.stdout) == here


def test_validate_names_the_path():
    s = demo_space()
    good = {"op": "conv", "lr": 0.01, "drop": 0.1, "depth": 2, "width": 16,
            "block1": {"kernel": 5, "inner": {"a": "x"}}, "tail": {"n": 2}}
    assert s.validate(good) == good
    cases = [
        ({**good, "block1": {"kernel": 4, "inner": {"a": "x"}}}, "block1.kernel: 4 is not one of [3, 5]"),
        ({**good, "block1": {"kernel": 3, "inner": {"a": "x"}}}, "block1.dil: missing"),
        ({**good, "expand": 3}, "expand: present but inactive"),
        ({**good, "depht": 3}, "depht: no such parameter (did you mean 'depth'?)"),
        ({**good, "depth": 2.5}, "depth: 2.5 is not an integer"),
        ({**good, "depth": 9}, "depth: 9 is outside [1, 8]"),
        ({**good, "lr": 1.0}, "lr: 1.0 is outside"),
        ({**good, "block1": {"kernel": 5, "inner": {"a": "y"}}}, "block1.inner.b: missing"),
        ({**good, "tail": 3}, "tail: expected a dict"),
    ]
    for cfg, msg in cases:
        with pytest.raises(UserInputError, match=re.escape(msg)):
            s.validate(cfg)


def test_size_counts_conditionals_exactly():
    s = discrete_space()
    # hand count: op (conv 1 + dwconv 1 + mbconv 3) = 5; k (3: 1, 5: 2) = 3; depth 4; sub (True: 2, False: 1) = 3
    assert s.size() == 5 * 3 * 4 * 3
    configs = list(s.enumerate())
    assert len(configs) == s.size()
    assert len({s.key(c) for c in configs}) == len(configs)
    assert all(s.validate(c) == c for c in configs)
    assert demo_space().size() == math.inf


def test_params_iterates_leaf_paths():
    paths = [p for p, _ in demo_space().params()]
    assert paths == ["op", "expand", "se", "lr", "drop", "depth", "width", "block1.kernel", "block1.dil",
                     "block1.inner.a", "block1.inner.b", "tail.n"]


def test_json_round_trip():
    for s in (demo_space(), discrete_space()):
        j = s.to_json()
        text = json.dumps(j)
        back = search.Space.from_json(json.loads(text))
        assert back == s
        assert back.to_json() == j
        rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
        assert [s.sample(rng1) for _ in range(5)] == [back.sample(rng2) for _ in range(5)]
    assert demo_space().to_json()["params"]["expand"] == {"type": "choice", "values": [1, 3, 6],
                                                          "when": {"op": "mbconv"}}
    assert demo_space().to_json()["params"]["lr"] == {"type": "float", "low": 1e-4, "high": 0.1, "log": True}


def test_malformed_json_names_the_json_path():
    bad = [
        ({"type": "space", "params": {"a": {"type": "chioce", "values": [1]}}}, r"space\.params\.a\.type: unknown "
                                                                                 r"type 'chioce' \(did you mean 'choice'"),
        ({"type": "space", "params": {"a": {"type": "int", "low": 1}}}, r"space\.params\.a: missing \"high\""),
        ({"type": "space", "params": {"s": {"type": "space", "params": {"k": {"type": "choice", "values": []}}}}},
         r"space\.params\.s\.params\.k: Choice\(\[\]\)"),
        ({"type": "space", "params": {"a": {"type": "float", "low": 1, "high": 2, "lg": True}}},
         r"space\.params\.a\.lg: unknown field"),
        ({"type": "space", "params": {"a": {"type": "choice", "values": [1], "when": {"zz": 1}}}},
         r"^space\.params\.a\.when: refers to 'zz', which is not a sibling"),
        ({"type": "space", "params": {"b": {"type": "int", "low": 1, "high": 3},
                                      "a": {"type": "choice", "values": [1], "when": {"b": 7}}}},
         r"^space\.params\.a\.when\.b: "),
        ({"type": "space", "params": []}, r"space\.params: expected an object"),
        # integers past float's range or 2^53: an OverflowError traceback, exit 1 (an outside check)
        ({"type": "space", "params": {"a": {"type": "int", "low": 1, "high": 10 ** 400}}},
         r"^space\.params\.a: Int: high=100000000000\.\.\. \(401 digits\) must be a finite number$"),
        ({"type": "space", "params": {"a": {"type": "float", "low": -10 ** 400, "high": 1}}},
         r"^space\.params\.a: Float: low=-10000000000\.\.\. \(402 digits\) must be a finite number$"),
        ({"type": "space", "params": {"a": {"type": "int", "low": 0, "high": 2 ** 53 + 1}}},
         r"^space\.params\.a: Int: high=9007199254740993 must be within \+-2\^53 \(9007199254740992\)$"),
        # a float-sized integer past 2^53 was quoted whole, 301 digits (an outside check)
        ({"type": "space", "params": {"a": {"type": "int", "low": 0, "high": 10 ** 300}}},
         r"^space\.params\.a: Int: high=100000000000\.\.\. \(301 digits\) must be within \+-2\^53 "
         r"\(9007199254740992\)$"),
        # a top-level "when" conditions on nothing: it was kept and ignored (an outside check)
        ({"type": "space", "params": {"a": {"type": "choice", "values": [1, 2]}}, "when": {"zz": 1}},
         r"^space\.when: the top-level space has no siblings to be conditioned on"),
        ('{"type": "space", "params": {}}',  # it quoted the whole text back
         r"^space: Space.from_json takes the parsed JSON \(json.load\(f\)\), not its text \(31 characters\)$"),
    ]
    for data, msg in bad:
        with pytest.raises(UserInputError, match=msg):
            search.Space.from_json(data)


def test_a_search_over_a_space_with_a_when_of_its_own_is_refused():
    """Reference: the space's own definition (no sibling to condition on); the run never called the evaluator."""
    calls = []
    space = search.Space({"a": search.Choice([1, 2])}, when={"zz": 1})
    with pytest.raises(UserInputError, match=r"^space\.when: the top-level space has no siblings"):
        search.run(space, lambda c: calls.append(c) or 0.0, budget=2, workers=1, executor="inprocess")
    assert calls == []


def test_bad_definitions_are_user_errors():
    with pytest.raises(UserInputError, match="cycle"):
        search.Space({"a": search.Choice([1, 2], when={"b": 1}), "b": search.Choice([1, 2], when={"a": 1})})
    with pytest.raises(UserInputError, match="when.op"):
        search.Space({"op": search.Choice(["x"]), "y": search.Int(1, 2, when={"op": "z"})})
    with pytest.raises(UserInputError, match="low must be > 0"):
        search.Float(0, 1, log=True)
    with pytest.raises(UserInputError, match="appears twice"):
        search.Choice([1, 1.0])


def test_product_nests_two_spaces():
    nn = search.Space({"k": search.Choice([3, 5])})
    accel = search.Space({"rows": search.Choice([8, 16, 32])})
    joint = search.product(nn, accel)
    assert joint.size() == 6
    assert joint.validate({"nn": {"k": 3}, "accel": {"rows": 16}}) == {"nn": {"k": 3}, "accel": {"rows": 16}}
    assert search.Space.from_json(joint.to_json()) == joint


def test_importing_search_does_not_import_torch():
    out = subprocess.run([sys.executable, "-c", "import sys, graphmill.search; print('torch' in sys.modules)"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
    import graphmill.search.scaling  # noqa: F401  (still importable)


def test_sample_and_mutate_take_a_generator_or_a_seed_and_refuse_python_random():
    """Before: ``space.sample(random.Random(0))`` raised AttributeError ('Random' object has no attribute
    'integers'). A seed gives what a Generator of that seed gives (reference: numpy.random.default_rng)."""
    import random

    space = demo_space()
    assert space.sample(7) == space.sample(np.random.default_rng(7))
    config = space.sample(1)
    assert space.mutate(config, 5) == space.mutate(config, np.random.default_rng(5))
    for call in (lambda: space.sample(random.Random(0)), lambda: space.mutate(config, random.Random(0)),
                 lambda: space.sample(-1)):
        with pytest.raises(UserInputError, match=r"^rng: .* is not a numpy\.random\.Generator"):
            call()


def test_search_run_refuses_a_space_without_parameters():
    """Issue 11 item 10 (an empty space is refused, as ``graphmill search`` refuses the file). Before, the API ran
    the one empty configuration and returned it as the best."""
    with pytest.raises(UserInputError, match="the space has no parameters to search"):
        search.run(search.Space({}), _constant_reward, budget=3, seed=0, progress=False)
    with pytest.raises(UserInputError, match="the space has no parameters to search"):
        search.run(search.Space({"inner": search.Space({})}), _constant_reward, budget=3, seed=0, progress=False)


def _constant_reward(config: dict) -> float:
    return 1.0


def test_size_and_enumeration_of_wide_spaces_need_no_recursion_per_parameter():
    """size and enumerate recursed once per parameter: a flat space of ~1,000 choices raised RecursionError (an
    outside check). Reference: arithmetic (2^3000; one configuration of 3,000 single-value choices)."""
    assert search.Space({f"x{i}": search.Choice([0, 1]) for i in range(3000)}).size() == 2 ** 3000
    assert list(search.Space({f"x{i}": search.Choice([7]) for i in range(3000)}).enumerate()) == [
        {f"x{i}": 7 for i in range(3000)}]


def test_size_counts_a_wide_int_controller_and_many_independent_conditions_at_once():
    """An Int controlling a ``when`` was walked value by value (0..10^9: hours before the first trial), and
    controllers declared before all their dependents were held open together (200 such pairs: 2^200 states).
    Reference, by hand: a in 0..10^9, b (2 values) only when a == 3: 10^9 + 2; each pair c in {x, y}, d (10
    values) only when c == x: 11 per pair."""
    s = search.Space({"a": search.Int(0, 10 ** 9), "b": search.Choice([1, 2], when={"a": 3})})
    assert s.size() == 10 ** 9 + 2
    pairs = {**{f"c{i}": search.Choice(["x", "y"]) for i in range(200)},
             **{f"d{i}": search.Int(0, 9, when={f"c{i}": "x"}) for i in range(200)}}
    assert search.Space(pairs).size() == 11 ** 200
    # the counting agrees with enumeration on a small mixed one (two controllers, a value list, an Int)
    small = search.Space({"a": search.Int(-1, 3), "c": search.Choice(["p", "q", "r"]),
                          "b": search.Choice([1, 2], when={"a": [0, 2], "c": "q"}),
                          "d": search.Int(0, 2, when={"c": ["p", "r"]})})
    configs = list(small.enumerate())
    assert len({small.key(c) for c in configs}) == len(configs) == small.size() == 5 * 2 * 3 + 2 * 2 + 3
    # (c = p or r: 5 a x 3 d; c = q: b's 2 values for a in {0, 2}, inactive for the other 3 a)


def test_a_long_chain_of_conditions_declared_last_first_needs_no_recursion_per_link():
    """The dependency order recursed once per link: 1,500 choices, each existing only when the one before it
    takes 1, declared from the last to the first, raised RecursionError. Reference, by hand: a configuration is
    the first k at 1 and the next at 0 (k = 0..1,498: 1,499 of them), or the first 1,499 at 1 and the last at
    either value (2): 1,501."""
    params = {f"p{i}": search.Choice([0, 1], when={f"p{i - 1}": 1}) for i in range(1499, 0, -1)}
    params["p0"] = search.Choice([0, 1])
    assert search.Space(params).size() == 1501
