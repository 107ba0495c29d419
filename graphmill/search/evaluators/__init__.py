"""Ready-made evaluators: ``evaluate(config) -> dict`` callables (picklable classes) for process and Ray workers.

* ``training``: accuracy after a short training through the torch backend on scikit-learn's digits;
* ``latency``: simulated (cycles -> ms at the accelerator's clock) or ONNX Runtime latency;
* ``cost``: MACs and parameters as ``graphmill inspect`` counts them;
* ``timeout``: ``WithTimeout(evaluate, seconds)``, a per-evaluation limit (a timeout is a failed trial);
* ``mnasnet``: the built-in ``MnasNetEvaluator`` (proxy accuracy x simulated latency, MnasNet's reward) and
  ``AcceleratorEvaluator`` for the accelerator space.

Each returns a dict with ``"reward"`` (higher is better) and its metrics.
"""

from __future__ import annotations

from .cost import CostEvaluator, cost_metrics
from .latency import DEFAULT_ACCEL, LatencyEvaluator, ort_latency, simulated_latency
from .mnasnet import OBJECTIVES, AcceleratorEvaluator, MnasNetEvaluator
from .timeout import EvaluationFailed, EvaluationTimeout, WithTimeout
from .training import AccuracyEvaluator, calibrate_batchnorm, digits_data, train_graph

__all__ = ["AcceleratorEvaluator", "AccuracyEvaluator", "CostEvaluator", "DEFAULT_ACCEL", "EvaluationFailed",
           "EvaluationTimeout", "LatencyEvaluator", "MnasNetEvaluator", "OBJECTIVES", "WithTimeout",
           "calibrate_batchnorm", "cost_metrics", "digits_data", "ort_latency", "simulated_latency", "train_graph"]
