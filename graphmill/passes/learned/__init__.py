"""Learned compiler-optimization passes (issue 14): one graph policy deciding, per op, its device, whether it
fuses with its producer and its scheduling priority, trained with PPO across graphs (``graphmill.search.learned``)
and shipped as a small file loaded here.

``env`` is the environment (decisions -> simulated step time and peak memory per device), ``baselines`` the
placement / fusion / scheduling baselines, ``features`` what the policy sees, ``policy`` the network (GraphSAGE
message passing + an attention decoder, plain torch) and its safe file format, ``passes`` the passes
``learned-place``, ``learned-fuse``, ``learned-schedule`` and ``learned-optimize``.
"""

from .env import Decisions, JointProblem, OptimizationEnv, Outcome, fusion_producers

__all__ = ["Decisions", "JointProblem", "OptimizationEnv", "Outcome", "fusion_producers"]
