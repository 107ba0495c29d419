"""Chip macro placement on ``graphmill.chip`` netlist graphs (issue 17).

``problem`` flattens a netlist graph into arrays, ``cost`` is Circuit Training's proxy cost (numba, incremental),
``legality`` checks and legalizes hard macros, ``fd`` places soft macros force-directed, ``sa`` anneals hard
macros, ``rl`` is the RL placer (torch, imported on use), ``generate`` makes random netlists, ``plot`` draws a
placement. ``graphmill.api.chip_place`` ties them to the files (``graphmill chip place``).
"""

from .cost import DEFAULT_WEIGHTS, CostReport, ProxyCost, proxy_cost
from .problem import ChipPlacementError, ChipProblem, problem_from_graph

__all__ = ["DEFAULT_WEIGHTS", "CostReport", "ProxyCost", "proxy_cost", "ChipPlacementError", "ChipProblem",
           "problem_from_graph"]
