"""graphmill.search: resumable ask/tell architecture (and any other) search.

``Space`` and its parameter kinds describe what is searched (``space.py``); strategies propose configurations
(``strategies/``); ``run`` drives a strategy against an evaluator on an executor with checkpoints (``runner.py``);
``objectives`` combines accuracy, latency and constraints. Importing this package does not import torch (the
RL controllers import it when built). ``graphmill.search.scaling`` is the compound-scaling grid search.
"""

from __future__ import annotations

from graphmill.search.space import Choice, Float, Int, Param, Space, product

__all__ = ["Space", "Choice", "Int", "Float", "Param", "product"]
