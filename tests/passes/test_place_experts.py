"""Expert placement (passes/placement/experts.py). Reference: hand-worked LPT (Graham 1969) and GShard's
contiguous expert sharding on small load vectors."""

from __future__ import annotations

import pytest

from graphmill.errors import UserInputError
from graphmill.passes.placement.experts import chip_loads, place_experts


def test_contiguous_is_gshard_sharding():
    assert place_experts([1] * 8, 4, method="contiguous") == [0, 0, 1, 1, 2, 2, 3, 3]
    assert place_experts([1] * 3, 2, method="contiguous") == [0, 0, 1]


def test_balanced_spreads_hot_experts_hand_worked():
    loads = [10, 9, 1, 1]
    # contiguous piles both hot experts on chip 0: 19 vs 2
    assert chip_loads(loads, place_experts(loads, 2, method="contiguous"), 2) == [19, 2]
    # LPT: 10 -> chip 0, 9 -> chip 1, 1 -> chip 1 (9 < 10), 1 -> chip 0 (10 = 10, lower index)
    assert place_experts(loads, 2) == [0, 1, 1, 0]
    assert chip_loads(loads, [0, 1, 1, 0], 2) == [11, 10]


def test_balanced_respects_expert_slots_per_chip():
    p = place_experts([100, 1, 1, 1, 1, 1], 3)
    assert all(p.count(c) == 2 for c in range(3))  # ceil(6 / 3) slots each


@pytest.mark.parametrize("args", [([1, 2], 0), ([], 2)])
def test_bad_input(args):
    with pytest.raises(UserInputError):
        place_experts(*args)
    with pytest.raises(UserInputError, match="unknown expert placement"):
        place_experts([1], 1, method="random")
