"""Grid search: every configuration of a finite space in ``Space.enumerate``'s fixed order, or the list given as
the ``configs`` option (in that order) -- for sweeps whose feasible points are not a product of choices, such as
the compound-scaling coefficients under EfficientNet's FLOPs constraint (``graphmill.search.scaling``).

Deterministic and seed-independent; its state is the number of configurations asked, so a checkpointed run
resumes at the next grid point. With ``configs``, give a ``budget`` of at most ``len(configs)``: past the end
the grid proposes repeats and the runner then fills the budget with random unseen configurations of the space.
``label`` is any JSON value that identifies what the grid's points are evaluated with (settings of the
evaluator): it is stored with the options, so resuming a checkpoint made with another label is refused.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from graphmill.search.space import Space
from graphmill.search.strategies.base import Strategy
from graphmill.util.errors import UserInputError


class Grid(Strategy):
    name = "grid"
    OPTIONS: dict[str, Any] = {"configs": None, "label": None}

    def __init__(self, space: Space, *, seed: int = 0, **options: Any) -> None:
        super().__init__(space, seed=seed, **options)
        configs = self.options["configs"]
        if configs is None:
            if space.size() == math.inf:
                raise UserInputError("strategy 'grid': the space has a continuous parameter; give the points as "
                                     "the configs option")
        else:
            if not isinstance(configs, list) or not configs:
                raise UserInputError("strategy 'grid': option configs must be a non-empty list of configurations")
            checked = []
            for k, c in enumerate(configs):
                try:
                    checked.append(space.validate(c))
                except UserInputError as e:  # which one: "y: missing" did not say it was the first of the list
                    raise UserInputError(f"strategy 'grid': option configs[{k}]: {e}") from None
            configs = checked
        self._configs = configs
        self._iter = None
        self.asked = 0

    def ask(self) -> dict:
        i = self.asked
        self.asked += 1
        if self._configs is not None:
            return self._configs[i % len(self._configs)]
        if self._iter is None:  # (re)start the enumeration at the next point (after a resume too)
            self._iter = itertools.islice(itertools.cycle(self.space.enumerate()), i, None)
        return next(self._iter)

    def tell(self, config: dict, reward: float | None, metrics: dict | None = None) -> None:
        pass  # a grid does not learn

    def state_dict(self) -> dict:
        return {**super().state_dict(), "asked": self.asked}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.asked = int(state["asked"])
        self._iter = None
