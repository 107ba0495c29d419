"""Objectives: MnasNet's reward, constraints on cost metrics, and the Pareto front of a history.

MnasNet (Tan et al. 2019, Eq. 2): ``reward = ACC(m) * (LAT(m) / T) ** w`` with ``w = alpha`` when
``LAT(m) <= T`` and ``w = beta`` otherwise. The soft form (the paper's choice) is ``alpha = beta = -0.07``; the
hard constraint is ``alpha = 0, beta = -1`` (no reward for being under the target, a sharp penalty above it).

An objective is a callable ``metrics -> reward`` handed to ``search.run(..., objective=...)``: the evaluator
returns metrics (``{"accuracy": .., "latency": .., "macs": ..}``) and the objective turns them into the reward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from graphmill.util.errors import UserInputError, at_least, at_most

#: the cost metrics a constraint may name, and what they mean
CONSTRAINT_METRICS = {"macs": "multiply-accumulates", "params": "parameters", "cycles": "simulated cycles",
                      "latency": "latency in ms (simulated or measured)"}


def mnasnet_reward(accuracy: float, latency: float, target: float, *, alpha: float = -0.07,
                   beta: float = -0.07) -> float:
    """``accuracy * (latency / target) ** (alpha if latency <= target else beta)`` (MnasNet Eq. 2)."""
    if not target > 0:
        raise UserInputError(f"latency target {target!r}: must be > 0")
    if not latency > 0:
        raise ValueError(f"latency {latency!r}: must be > 0")
    w = alpha if latency <= target else beta
    return float(accuracy) * (float(latency) / float(target)) ** w


@dataclass
class MnasNetObjective:
    """MnasNet's reward over metrics: ``MnasNetObjective(target=80.0)`` (soft, w = -0.07) or
    ``MnasNetObjective.hard(80.0)`` (alpha = 0, beta = -1). ``accuracy``/``latency`` name the metrics."""

    target: float
    alpha: float = -0.07
    beta: float = -0.07
    accuracy: str = "accuracy"
    latency: str = "latency"

    def __post_init__(self) -> None:
        """Refused when built: target 0 or nan was accepted and failed only at scoring time (an outside check)."""
        for name in ("target", "alpha", "beta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise UserInputError(f"MnasNetObjective {name}={v!r}: must be a finite number")
        if not self.target > 0:
            raise UserInputError(f"MnasNetObjective target={self.target!r}: must be > 0")

    @classmethod
    def soft(cls, target: float, w: float = -0.07, **kw: Any) -> "MnasNetObjective":
        return cls(target, alpha=w, beta=w, **kw)

    @classmethod
    def hard(cls, target: float, **kw: Any) -> "MnasNetObjective":
        return cls(target, alpha=0.0, beta=-1.0, **kw)

    def __call__(self, metrics: dict) -> float:
        for k in (self.accuracy, self.latency):
            if k not in metrics:
                raise KeyError(f"the evaluator returned no {k!r} metric (has: {', '.join(sorted(metrics))})")
        return mnasnet_reward(metrics[self.accuracy], metrics[self.latency], self.target, alpha=self.alpha,
                              beta=self.beta)


@dataclass
class Constraints:
    """Upper limits on cost metrics (``macs``, ``params``, ``cycles``, ``latency``, or any metric name).

    ``violations(metrics)`` lists what is over; as an objective wrapper (``Constraints(...).apply(base)``) a
    configuration over a limit keeps ``base``'s reward multiplied by ``(value / limit) ** -1`` per violated
    limit (MnasNet's hard-constraint penalty; a negative reward, -loss, by ``value / limit``), so it ranks below
    feasible ones of similar quality without hiding how far over it is.
    """

    limits: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k, v in self.limits.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0 or not math.isfinite(v):
                raise UserInputError(f"constraint {k} <= {v!r}: the limit must be a finite number > 0")

    def violations(self, metrics: dict) -> list[str]:
        out = []
        for k, limit in self.limits.items():
            if k not in metrics:
                raise KeyError(f"constraint on {k!r}: the evaluator returned no such metric")
            if float(metrics[k]) > limit:
                out.append(f"{k} {at_least(float(metrics[k]))} > {at_most(limit)}")  # never "5 > 5"
        return out

    def feasible(self, metrics: dict) -> bool:
        return not self.violations(metrics)

    def apply(self, base: Any = None) -> "ConstrainedObjective":
        return ConstrainedObjective(base, self)


@dataclass
class ConstrainedObjective:
    base: Any  # callable metrics -> reward, or None for metrics["reward"]
    constraints: Constraints

    def __call__(self, metrics: dict) -> float:
        r = float(self.base(metrics) if self.base is not None else metrics["reward"])
        for k, limit in self.constraints.limits.items():
            v = float(metrics[k])
            if v > limit:  # MnasNet's hard penalty (v / limit)^-1 on a reward >= 0; on a negative one (-loss) the
                # same factor would raise it (-0.8 to -0.4: an outside check), so it multiplies by v / limit there
                r *= (v / limit) ** (-1.0 if r >= 0 else 1.0)
        return r


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` is at least as good as ``b`` on both (maximized) coordinates and better on one."""
    return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])


def pareto_front(trials: Iterable[Any], metric_a: str = "accuracy", metric_b: str = "latency", *,
                 maximize: tuple[bool, bool] = (True, False)) -> list[Any]:
    """The successful trials not dominated on (``metric_a``, ``metric_b``); ``"reward"`` names the reward.
    By default ``metric_a`` is maximized and ``metric_b`` minimized. Sorted by ``metric_b`` ascending; among
    trials with identical metrics the earliest is kept."""
    pts, ok, named = [], 0, {metric_a: 0, metric_b: 0}
    for t in trials:
        if getattr(t, "status", "ok") != "ok":
            continue
        ok += 1
        for m in named:
            named[m] += m == "reward" or m in t.metrics
        vals = []
        for m in (metric_a, metric_b):
            v = t.reward if m == "reward" else t.metrics.get(m)
            try:
                v = float(v)
            except (TypeError, ValueError):
                v = math.nan
            vals.append(v)
        if all(math.isfinite(v) for v in vals):
            pts.append((t, (vals[0] if maximize[0] else -vals[0], vals[1] if maximize[1] else -vals[1])))
    missing = [m for m, n in named.items() if ok and not n]
    if missing:  # a misspelt metric gave an empty front without a word
        seen = sorted({k for t in trials if getattr(t, "status", "ok") == "ok" for k in t.metrics})
        raise ValueError(f"no successful trial has the metric {missing[0]!r} (they have: "
                         f"{', '.join(['reward', *seen])})")
    # sort by a desc then b desc; sweep keeping strictly improving b
    order = sorted(range(len(pts)), key=lambda i: (-pts[i][1][0], -pts[i][1][1], i))
    front, best_b = [], -math.inf
    for i in order:
        t, (a, b) = pts[i]
        if b > best_b:
            front.append(t)
            best_b = b
    sign = 1 if not maximize[1] else -1
    return sorted(front, key=lambda t: sign * float(t.reward if metric_b == "reward" else t.metrics[metric_b]))
