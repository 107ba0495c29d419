"""The ask/tell interface every strategy speaks, the option checking they share, and the registry.

A strategy proposes configurations (``ask``) and learns from results (``tell``); it never evaluates anything,
so any executor can drive any strategy, and its whole state (RNG included) is a JSON-able dict so that a search
can be checkpointed after every result and resumed exactly.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np

from graphmill.search.executors.base import not_a_number
from graphmill.search.space import Space
from graphmill.util.errors import UserInputError
from graphmill.util.suggest import did_you_mean


def rng_state(rng: np.random.Generator) -> dict:
    """The JSON-able state of a numpy Generator (PCG64's big integers are JSON integers)."""
    return rng.bit_generator.state


def rng_from_state(state: dict) -> np.random.Generator:
    bitgen = getattr(np.random, state["bit_generator"])()
    bitgen.state = state
    return np.random.Generator(bitgen)


class Strategy:
    """Base class: ``ask() -> config``, ``tell(config, reward, metrics)``, ``state_dict()``/``load_state_dict()``.

    ``OPTIONS`` maps each option a strategy accepts to its default; unknown options are a ``UserInputError``
    with the nearest name. ``reward`` is higher-is-better; ``None`` means the evaluation failed.
    ``tell`` may receive configurations in any order (asynchronous workers) and configurations this strategy
    did not ask (a repeat answered from the history, a resumed run).

    ``budget``: the number of evaluations the caller plans, or None when unknown (a bare ask/tell loop).
    ``search.run`` sets it to its ``budget``, so that a strategy may plan phases by it (the default strategy's
    last quarter exploits). It is not an option and not in the state, so that a finished run may be continued
    with a bigger budget (accepted, not identical to a run given that budget from the start: the default
    strategy's phase then starts again later).
    """

    name = "base"
    OPTIONS: dict[str, Any] = {}
    #: option -> (smallest value, whether it may equal it, largest value or None), checked with the types: an
    #: lr of -1 or a bins of 0 reached torch's traceback or a ZeroDivisionError (an outside check)
    RANGES: dict[str, tuple[float, bool, float | None]] = {}
    _budget: int | None = None

    @property
    def budget(self) -> int | None:
        return self._budget

    @budget.setter
    def budget(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise UserInputError(f"{self.name}: budget={value!r} must be a whole number of evaluations >= 0, or None")
        self._budget = None if value is None else int(value)

    def __init__(self, space: Space, *, seed: int = 0, **options: Any) -> None:
        if not isinstance(space, Space):
            raise UserInputError(f"{self.name}: the space must be a graphmill.search.Space, got {type(space).__name__}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise UserInputError(f"seed={seed!r}: must be an integer")
        self.space = space
        self.seed = int(seed)
        self.options = self.check_options(options)
        self.rng = np.random.default_rng(self.seed)

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        out = dict(cls.OPTIONS)
        for k, v in options.items():
            if k not in cls.OPTIONS:
                known = ", ".join(sorted(cls.OPTIONS)) or "none"
                raise UserInputError(f"strategy {cls.name!r}: unknown option {k!r}{did_you_mean(k, cls.OPTIONS)}; "
                                     f"its options: {known}")
            default = cls.OPTIONS[k]
            if isinstance(default, bool):
                if not isinstance(v, bool):
                    raise UserInputError(f"strategy {cls.name!r}: option {k}={v!r} must be true or false")
            elif isinstance(default, int) and default is not None:
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise UserInputError(f"strategy {cls.name!r}: option {k}={v!r} must be an integer")
                v = int(v)
            elif isinstance(default, float):
                if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(float(v)):
                    raise UserInputError(f"strategy {cls.name!r}: option {k}={v!r} must be a number")
                v = float(v)
            if k in cls.RANGES:
                low, equal, high = cls.RANGES[k]
                if v < low or (v == low and not equal) or (high is not None and v > high):
                    within = f">= {low}" if equal else f"> {low}"
                    raise UserInputError(f"strategy {cls.name!r}: option {k}={v!r} must be {within}"
                                         + (f" and <= {high}" if high is not None else ""))
            out[k] = v
        return out

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every strategy's ``tell`` takes what ``evaluate`` returns (a number, ``None`` for a failed trial, or a
        dict of ``"reward"`` and metrics), as ``search.run`` does; each implementation then sees a float or None
        and the metrics, so a bare ask/tell loop can pass ``evaluate(config)`` straight through."""
        super().__init_subclass__(**kwargs)
        if "tell" in cls.__dict__:
            cls.tell = _taking_results(cls.__dict__["tell"])

    def ask(self) -> dict:
        raise NotImplementedError

    def tell(self, config: dict, reward: float | dict | None, metrics: dict | None = None) -> None:
        """Learn ``config``'s result: ``reward`` a number (higher is better), None (failed) or a dict with
        ``"reward"`` and metrics (the other keys; ``metrics`` adds more); a non-finite number counts as failed,
        as in ``search.run``."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this strategy is (JSON-able)."""
        return {"name": self.name, "seed": self.seed, "options": dict(self.options), "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise UserInputError(f"strategy state is for {state.get('name')!r}, not {self.name!r}")
        self.seed = int(state["seed"])
        self.rng = rng_from_state(state["rng"])


def _taking_results(tell: Any) -> Any:
    """``tell`` accepting any result ``Strategy.tell`` documents, calling the implementation with a float or None."""
    import functools

    @functools.wraps(tell)
    def wrapped(self: Strategy, config: dict, reward: Any, metrics: dict | None = None) -> None:
        if isinstance(reward, dict):
            if "reward" not in reward:
                raise UserInputError(f"strategy {self.name!r}: tell(config, result): a dict result needs a 'reward' "
                                     f"key (it has {', '.join(map(repr, sorted(reward, key=str))) or 'none'})")
            extra = {str(k): v for k, v in reward.items() if k != "reward"}
            metrics = {**extra, **(metrics or {})}
            reward = reward["reward"]
        if reward is not None:
            try:  # a number of any kind (numpy, a 0-d array, a torch scalar), not text
                if not_a_number(reward):
                    raise TypeError
                reward = float(reward)
            except (TypeError, ValueError):
                raise UserInputError(f"strategy {self.name!r}: tell(config, result): the result must be a number, "
                                     f"None (failed) or a dict with 'reward', not {type(reward).__name__}") from None
            reward = reward if math.isfinite(reward) else None
        if metrics is not None and not isinstance(metrics, dict):
            raise UserInputError(f"strategy {self.name!r}: tell(config, result, metrics): metrics must be a dict, "
                                 f"not {type(metrics).__name__}")
        # a configuration outside the space is refused here, naming its parameter, as tpe and reinforce did: default,
        # evolution and random took {"a": 99} and the error came from a later ask() (an outside check)
        try:
            self.space.validate(config)
        except UserInputError as e:
            raise UserInputError(f"strategy {self.name!r}: tell(config, ...): the configuration is not in the space: "
                                 f"{e}") from None
        return tell(self, config, reward, metrics)
    return wrapped


# name -> "module:Class"; modules are imported on first use so that torch/optuna load only when needed
_REGISTRY: dict[str, str] = {
    "default": "graphmill.search.strategies.default:PredictorEvolution",
    "random": "graphmill.search.strategies.random:RandomSearch",
    "evolution": "graphmill.search.strategies.evolution:RegularizedEvolution",
    "reinforce": "graphmill.search.strategies.reinforce:Reinforce",
    "ppo": "graphmill.search.strategies.reinforce:PPO",
    "tpe": "graphmill.search.strategies.tpe:TPE",
    "grid": "graphmill.search.strategies.grid:Grid",
}

STRATEGIES: tuple[str, ...] = tuple(_REGISTRY)
_INTERNAL: set[str] = set()


def register(name: str, target: str | type, *, internal: bool = False) -> None:
    """Add a strategy: a ``Strategy`` subclass or a ``"module:Class"`` string. An ``internal`` one (a wrapper a
    search method builds around the user's strategy, such as NAHAS's area filter) is found by name, so that a
    checkpoint naming it resumes, but is not listed in ``STRATEGIES`` nor offered in error messages."""
    global STRATEGIES
    if isinstance(target, type):
        _CLASSES[name] = target
        target = f"{target.__module__}:{target.__qualname__}"
    _REGISTRY[name] = target
    if internal:
        _INTERNAL.add(name)
    STRATEGIES = tuple(n for n in _REGISTRY if n not in _INTERNAL)


_CLASSES: dict[str, type] = {}


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as ``name``; an unknown name is a ``UserInputError`` with the nearest one."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise UserInputError(f"unknown strategy {name!r}{did_you_mean(name, STRATEGIES)}; "
                             f"known: {', '.join(STRATEGIES)}")
    if name not in _CLASSES:
        module, cls = _REGISTRY[name].split(":")
        _CLASSES[name] = getattr(importlib.import_module(module), cls)
    return _CLASSES[name]


def get(name: str, space: Space, *, seed: int = 0, budget: int | None = None, **options: Any) -> Strategy:
    """A new strategy ``name`` on ``space`` (``search.strategies.get("evolution", space, seed=0, population=20)``);
    ``budget``: the evaluations the caller plans (``Strategy.budget``), as ``search.run`` tells it."""
    strategy = strategy_class(name)(space, seed=seed, **options)
    strategy.budget = budget
    return strategy
