"""The RL macro placer (not built yet: see the README's chip placement section)."""

from __future__ import annotations

from .problem import ChipPlacementError


def rl_place(problem, **kw):
    raise ChipPlacementError("--method rl: the RL placer is not built yet; use sa or fd")
