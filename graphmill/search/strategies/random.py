"""Random search: every configuration sampled independently and uniformly from the space (the baseline)."""

from __future__ import annotations

from graphmill.search.strategies.base import Strategy


class RandomSearch(Strategy):
    """``space.sample`` on a seeded generator; learns nothing from results."""

    name = "random"
    OPTIONS: dict = {}

    def ask(self) -> dict:
        return self.space.sample(self.rng)

    def tell(self, config: dict, reward: float | None, metrics: dict | None = None) -> None:
        return None
