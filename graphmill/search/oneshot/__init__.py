"""graphmill.search.oneshot: a weight-sharing supernet (BigNAS) and the selection of its children.

``space.py`` (the elastic ranges, ``SupernetSpec``), ``weights.py`` (shared weights: names, shapes,
initialization, slicing), ``graph.py`` (the supernet as one ``ir.Graph``; ``child`` extracts a standard-ONNX
child), ``torchnet.py`` (the same weights as a torch module that runs any child), ``train.py`` (sandwich rule,
in-place distillation, checkpoint/resume), ``select.py`` (coarse-to-fine child selection under a budget),
``plot.py`` (the children's accuracy / cost Pareto fronts, ``supernet select --plot``).
Importing this package does not import torch.
"""

from __future__ import annotations

from .graph import build_graph, child, graph_weights, set_graph_weights, spec_of, supernet_graph
from .select import ChildEvaluator, Selection, check_constraint, check_outputs, select_child
from .space import DIGITS_SPEC, TINY_SPEC, StageSpec, SupernetSpec
from .train import TASK, TrainOptions, TrainResult, check_report_path, digits_split, load_supernet, train_supernet
from .weights import child_slices, init_weights, weight_shapes

__all__ = ["SupernetSpec", "StageSpec", "DIGITS_SPEC", "TINY_SPEC", "build_graph", "child", "graph_weights",
           "set_graph_weights", "spec_of", "supernet_graph", "ChildEvaluator", "Selection", "check_constraint",
           "check_outputs", "select_child", "TASK", "TrainOptions", "TrainResult", "check_report_path", "digits_split",
           "load_supernet", "train_supernet", "child_slices", "init_weights", "weight_shapes"]
