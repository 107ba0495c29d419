"""One did-you-mean rule for every layer (graphmill.util.suggest).

Reference: difflib's documented ``get_close_matches`` (ratio >= 0.6) for which names are close; the rest is the
project's own rule (case ignored in the comparison, never in the name shown), checked on hand-picked words.
The second test keeps it the only rule: no other module calls difflib's matcher.
"""
from __future__ import annotations

import ast
import os

import graphmill
from graphmill.util.suggest import closest, did_you_mean


def test_a_close_name_is_suggested_and_quoted():
    assert did_you_mean("evolutoin", ["random", "evolution", "tpe"]) == " (did you mean 'evolution'?)"
    assert closest("optimze", ["inspect", "optimize", "place"]) == "optimize"


def test_nothing_is_suggested_when_nothing_is_close():
    assert did_you_mean("zzz", ["random", "evolution"]) == ""
    assert closest("q", []) is None
    # difflib's ratio of 'ppo' and 'tpe' is 1/3: below the cutoff
    assert closest("ppo", ["tpe"]) is None



def test_no_guess_among_names_equally_near():
    """'gpuO' is as near gpu0 as gpu3 (difflib's ratio 0.75 for each): "did you mean 'gpu3'?" was difflib's pick
    among equals (an outside check). Reference: difflib's SequenceMatcher ratios, computed here."""
    import difflib

    names = ["cpu", "gpu0", "gpu1", "gpu2", "gpu3"]
    assert {n: difflib.SequenceMatcher(None, "gpuo", n).ratio() for n in names[1:]} == dict.fromkeys(names[1:], 0.75)
    assert closest("gpuO", names) is None and did_you_mean("gpuO", names) == ""
    assert closest("gpu00", names) == "gpu0"  # one nearest: shown

def test_case_is_ignored_in_the_comparison_not_in_the_name_shown():
    assert closest("SAMPLED", ["sampled", "random"]) == "sampled"
    assert closest("relu", ["ReLU", "Tanh"]) == "ReLU"
    # of names equal but for case, the first one listed is shown
    assert closest("abc", ["ABC", "abc"]) == "ABC"


def test_names_need_not_be_strings():
    assert did_you_mean(3, [1, 2, 13]) == " (did you mean '13'?)"


def test_no_other_module_calls_difflibs_matcher():
    root = os.path.dirname(os.path.abspath(graphmill.__file__))
    found = []
    for dirpath, _, files in os.walk(root):
        for fn in files:
            if not fn.endswith(".py"):
                continue
            path = os.path.join(dirpath, fn)
            rel = os.path.relpath(path, os.path.dirname(root))
            if rel == os.path.join("graphmill", "util", "suggest.py"):
                continue
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
                if name == "get_close_matches":
                    found.append(f"{rel}:{node.lineno}")
    assert not found, "use graphmill.util.suggest instead of difflib.get_close_matches: " + ", ".join(found)
