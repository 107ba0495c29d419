"""Search strategies behind one ask/tell interface (``base.Strategy``) and their registry.

``get(name, space, seed=0, **options)`` builds one: ``default`` (predictor-guided evolution, ours), ``random``,
``evolution`` (regularized evolution, Real et al. 2019), ``reinforce`` and ``ppo`` (an LSTM controller),
``tpe`` (Optuna's TPE, optional extra).
"""

from __future__ import annotations

from graphmill.search.strategies.base import STRATEGIES, Strategy, get, register, strategy_class

__all__ = ["Strategy", "STRATEGIES", "get", "register", "strategy_class", "names"]


def names() -> tuple[str, ...]:
    """The registered strategy names."""
    from graphmill.search.strategies import base

    return base.STRATEGIES
