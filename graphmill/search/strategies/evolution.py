"""Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image Classifier Architecture Search".

Algorithm 1 of the paper, asynchronous as in its parallel setup: the first ``population`` proposals are random;
after that each proposal takes ``sample`` members of the population uniformly at random (with replacement, as the
paper's pseudocode), picks the best of them as the parent, and proposes ``space.mutate(parent)``. Every result
joins the population at its young end and the oldest member leaves it (aging, not the worst: the
regularization). Failed evaluations never join the population.
"""

from __future__ import annotations

from collections import deque

from graphmill.search.strategies.base import Strategy


class RegularizedEvolution(Strategy):
    name = "evolution"
    OPTIONS = {"population": 20, "sample": 5}
    RANGES = {"population": (1, True, None), "sample": (1, True, None)}

    def __init__(self, space, *, seed: int = 0, **options) -> None:
        super().__init__(space, seed=seed, **options)
        self.population: deque = deque()  # (config, reward), oldest first
        self.asked = 0

    def ask(self) -> dict:
        self.asked += 1
        pop = self.population
        if self.asked <= self.options["population"] or not pop:
            return self.space.sample(self.rng)
        idx = self.rng.integers(len(pop), size=self.options["sample"])
        best = max(idx.tolist(), key=lambda i: (pop[i][1], -i))  # ties: the oldest sampled
        return self.space.mutate(pop[best][0], self.rng)

    def tell(self, config: dict, reward: float | None, metrics: dict | None = None) -> None:
        if reward is None:
            return
        self.population.append((config, float(reward)))
        if len(self.population) > self.options["population"]:
            self.population.popleft()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "asked": self.asked, "population": [[c, r] for c, r in self.population]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.asked = int(state["asked"])
        self.population = deque((c, float(r)) for c, r in state["population"])
