"""Values crossing the cuts of an order of compute nodes (graphmill/ir/partition.py). Reference: the module
docstring's definition, checked by brute force at every cut: a value crosses cut j (between positions j - 1 and
j, 0 < j < n) when it exists before j (made at a position < j, or a graph input) and is needed at or after j
(read at a position >= j, or a graph output)."""

from __future__ import annotations

import pytest

from graphmill.ir.partition import compute_nodes, crossing_values, value_bytes
from graphmill.search.learned import random_graph


@pytest.mark.parametrize("kind,seed", [("mlp", 0), ("cnn", 1), ("rnn", 2)])
def test_crossing_values_at_every_cut_by_definition(kind, seed):
    g = random_graph(seed, kind, 60)
    order = compute_nodes(g)
    n = len(order)
    made = {id(v): i for i, node in enumerate(order) for v in node.outputs if v is not None}
    made.update({id(v): -1 for v in g.inputs if id(v) not in made})
    outputs = {id(v) for v in g.outputs}
    reads: dict[int, list[int]] = {}
    for i, node in enumerate(order):
        for v in node.inputs:
            if v is not None:
                reads.setdefault(id(v), []).append(i)
    values = {id(v): v for node in order for v in [*node.inputs, *node.outputs] if v is not None}
    values.update({id(v): v for v in g.inputs})
    cross = crossing_values(g, order)
    by_cut = cross.bytes()
    assert len(by_cut) == n + 1 and by_cut[0] == by_cut[n] == 0
    crossed_somewhere = 0
    for j in range(1, n):
        expected = {k for k, v in values.items() if k in made and made[k] < j
                    and (k in outputs or any(r >= j for r in reads.get(k, [])))}
        got = cross.at(j)
        assert {id(v) for v in got} == expected, j
        assert by_cut[j] == sum(value_bytes(values[k]) for k in expected), j
        crossed_somewhere += bool(expected)
    assert crossed_somewhere > n // 2


def test_a_value_live_across_every_cut_is_counted_in_every_cut_without_listing_it_there():
    """A graph output made first crosses all n - 1 cuts: the per-cut lists held n^2 entries in all
    (``partition`` of 4,000 Relus that are each an output: 110 s). Reference: the definition, by hand."""
    from graphmill.ir.builder import GraphBuilder

    b = GraphBuilder("wide")
    x = b.input("x", "float32", [1, 4])
    for _ in range(50):
        b.output(b.Relu(x))  # each 16 bytes, made at its position, read by nobody, a graph output
    g = b.build()
    order = compute_nodes(g)
    # cut j: the graph input x (read by the Relus at positions >= j) and the j outputs made before it
    assert crossing_values(g, order).bytes() == [0] + [16 + 16 * j for j in range(1, 50)] + [0]
