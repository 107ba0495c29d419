"""Device placement: put every op of a graph on one of several devices so that a step finishes soonest.

``problem`` turns a graph and a device-aware cost model (``PassContext.cost_model``) into numbers; ``schedule``
simulates a placement (the scheduling rule is stated there and in the README); ``baselines`` holds single,
round-robin, expert, HEFT (per op and per colocation group) and METIS; ``rl`` the learned placers (REINFORCE:
the sequence-to-sequence placer and the hierarchical grouper-placer); ``place`` puts it together and writes the
report; ``training`` builds the training-step (forward + backward) version of a graph.
"""

from .baselines import BASELINES, heft, upward_rank
from .place import LEARNED, METHODS, PlaceResult, check_method, make_report, place_graph
from .placement_pass import Place
from .problem import DeviceCostModel, PlacementProblem, ValueInfo, build_problem
from .schedule import Schedule, simulate
from .training import training_graph, training_step

__all__ = ["BASELINES", "heft", "upward_rank", "LEARNED", "METHODS", "PlaceResult", "check_method", "make_report",
           "place_graph", "Place", "DeviceCostModel", "PlacementProblem", "ValueInfo", "build_problem", "Schedule",
           "simulate", "training_graph", "training_step"]
