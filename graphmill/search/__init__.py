"""graphmill.search: resumable ask/tell architecture (and any other) search.

``Space`` and its parameter kinds describe what is searched (``space.py``); strategies propose configurations
(``strategies/``, ``STRATEGIES``); ``run`` drives a strategy against an evaluator on an executor with
checkpoints (``runner.py``) and returns a ``SearchResult`` of ``Trial``s; ``objectives`` combines accuracy,
latency and constraints. Importing this package does not import torch (the RL controllers import it when built).
``graphmill.search.scaling`` is the compound-scaling grid search.
"""

from __future__ import annotations

from graphmill.search import objectives, strategies
from graphmill.search.objectives import Constraints, MnasNetObjective, mnasnet_reward, pareto_front
from graphmill.search.runner import SearchResult, Trial, run, write_history_jsonl
from graphmill.search.space import Choice, Float, Int, Param, Space, product
from graphmill.search.strategies import STRATEGIES, Strategy

__all__ = ["Space", "Choice", "Int", "Float", "Param", "product", "run", "SearchResult", "Trial",
           "write_history_jsonl", "STRATEGIES", "Strategy", "strategies", "objectives", "MnasNetObjective",
           "Constraints", "mnasnet_reward", "pareto_front"]
