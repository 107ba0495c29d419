"""TPE: a thin wrapper over Optuna's ``TPESampler`` through Optuna's ask/tell interface (a peer to compare with).

Conditional parameters use Optuna's define-by-run: ``Space.build`` asks ``trial.suggest_*`` only for active
parameters. A choice is suggested by index (Optuna's categorical needs scalar values), an ``Int``/``Float`` with
``suggest_int``/``suggest_float`` (``log`` passed through). Options go to ``TPESampler`` unchanged
(``n_startup_trials``, ``multivariate``, ``group``, ``consider_endpoints``, ...).

Determinism and resume: the sampler is re-created before every ask with the seed ``(seed, number of asks)``, so
the state to save is only the list of finished trials (re-added to a fresh study on load), the pending ones and
the ask counter; no Optuna-internal RNG has to be captured. optuna is an optional extra (``pip install optuna``).
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from typing import Any

from graphmill.search.space import Choice, Float, Int, Param, Space
from graphmill.search.strategies.base import Strategy
from graphmill.util.suggest import did_you_mean
from graphmill.util.errors import UserInputError

try:
    import optuna
except ImportError:  # pragma: no cover - the error is raised when the strategy is built
    optuna = None


def _wrong_value(name: str, value: Any, annotation: str) -> str | None:
    """Why ``value`` cannot be TPESampler's ``name`` (typed ``annotation``), or None: optuna checks few values
    when the sampler is built, so gamma='abc' failed at the first model-based ask, after ten evaluations and
    with their results written (an outside check)."""
    if value is None:
        return None if "None" in annotation else "must be given"
    if annotation.startswith("Callable"):  # not a dict of callables (categorical_distance_func in optuna 4)
        return None if callable(value) else "must be a function (a Python callable: give it through the API)"
    if annotation.startswith("bool"):
        return None if isinstance(value, bool) else "must be true or false"
    if annotation.startswith("int"):
        low = 1 if name == "n_ei_candidates" else 0
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        return None if ok else f"must be an integer >= {low}"
    if annotation.startswith("float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        return None if ok else "must be a number > 0"
    return None


class TPE(Strategy):
    name = "tpe"
    OPTIONS: dict = {}

    def __init__(self, space: Space, *, seed: int = 0, **options: Any) -> None:
        if optuna is None:
            raise UserInputError("strategy 'tpe' needs optuna, an optional extra: pip install optuna")
        params = {k: p for k, p in inspect.signature(optuna.samplers.TPESampler).parameters.items() if k != "seed"}
        allowed = list(params)
        for k, v in options.items():
            if k not in allowed:
                raise UserInputError(f"strategy 'tpe': unknown option {k!r}{did_you_mean(k, allowed)}; its options "
                                     f"(those of optuna's TPESampler): {', '.join(allowed)}")
            wrong = _wrong_value(k, v, str(params[k].annotation))
            if wrong:
                raise UserInputError(f"strategy 'tpe': option {k}={v!r} {wrong}")
        super().__init__(space, seed=seed)
        self.options = dict(options)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.asked = 0
        self.finished: list[tuple[dict, float | None]] = []
        self._new_study()

    def _new_study(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study = optuna.create_study(direction="maximize", sampler=self._sampler())
        self.pending: dict[str, list] = {}  # key -> [optuna trial, config]

    def _sampler(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning for multivariate/group
            return optuna.samplers.TPESampler(seed=(self.seed * 1_000_003 + self.asked) % 2**32, **self.options)

    @staticmethod
    def _suggest(trial, path: str, p: Param) -> Any:
        if isinstance(p, Choice):
            return p.values[trial.suggest_categorical(path, list(range(len(p.values))))]
        if isinstance(p, Int):
            return trial.suggest_int(path, p.low, p.high, log=p.log)
        if isinstance(p, Float):
            return trial.suggest_float(path, p.low, p.high, log=p.log)
        raise TypeError(f"{path}: unsupported parameter {p!r}")

    def _params(self, config: dict) -> dict:
        """Optuna's flat parameter dict for ``config`` (choice indices, numbers as they are)."""
        out: dict = {}

        def lookup(path: str, p: Param) -> Any:
            d: Any = config
            for n in path.split("."):
                d = d[n]
            out[path] = p.index(d) if isinstance(p, Choice) else d
            return d

        self.space.build(lookup)
        return out

    def _ask_trial(self):
        self.study.sampler = self._sampler()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask()
            config = self.space.build(lambda path, p: self._suggest(trial, path, p))
        return trial, config

    def ask(self) -> dict:
        trial, config = self._ask_trial()
        self.asked += 1
        self.pending.setdefault(self.space.key(config), []).append([trial, config])
        return config

    def tell(self, config: dict, reward: float | None, metrics: dict | None = None) -> None:
        key = self.space.key(config)
        entry = self.pending.get(key)
        state = optuna.trial.TrialState.COMPLETE if reward is not None else optuna.trial.TrialState.FAIL
        value = float(reward) if reward is not None else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if entry:
                trial, _ = entry.pop(0)
                if not entry:
                    del self.pending[key]
                self.study.tell(trial, value, state=state)
            else:
                self._add_finished(config, value)
        self.finished.append((config, value))

    def _add_finished(self, config: dict, value: float | None) -> None:
        dists = {}

        def dist(path: str, p: Param) -> Any:
            if isinstance(p, Choice):
                dists[path] = optuna.distributions.CategoricalDistribution(list(range(len(p.values))))
            elif isinstance(p, Int):
                dists[path] = optuna.distributions.IntDistribution(p.low, p.high, log=p.log)
            else:
                dists[path] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
            d: Any = config
            for n in path.split("."):
                d = d[n]
            return d

        self.space.build(dist)
        state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
        self.study.add_trial(optuna.trial.create_trial(params=self._params(config), distributions=dists,
                                                       value=value, state=state))

    def state_dict(self) -> dict:
        pending = [c for entries in self.pending.values() for _, c in entries]
        return {**super().state_dict(), "options": json.loads(json.dumps(self.options)), "asked": self.asked,
                "finished": [[c, v] for c, v in self.finished], "pending": pending}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.asked = 0
        self.finished = [(c, v) for c, v in state["finished"]]
        self._new_study()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for c, v in self.finished:
                self._add_finished(c, v)
            for c in state["pending"]:
                self.study.enqueue_trial(self._params(c))
                trial, config = self._ask_trial()
                self.pending.setdefault(self.space.key(config), []).append([trial, config])
        self.asked = int(state["asked"])
