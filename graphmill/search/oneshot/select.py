"""Child selection: the most accurate child of a trained supernet under a MACs, parameter or latency budget.

BigNAS's coarse-to-fine search, with no retraining:

1. coarse: the grid of network-wide levels (``SupernetSpec.coarse_grid``: resolution x the i-th depth,
   width, kernel and expansion choice of every stage); the points within the budget are ranked by cost and
   the ``coarse`` most expensive (the most capacity the budget allows) are evaluated;
2. fine: every single stage-level change (one choice one step up or down, ``SupernetSpec.neighbours``) of
   the best child so far that fits the budget is evaluated; the best moves the centre; this repeats until no
   neighbour improves or ``max_evals`` children were evaluated.

A child is evaluated with inherited weights and its BatchNormalization statistics re-estimated on
training images (``train.calibrate``: the one-pass equivalent of
``search.evaluators.training.calibrate_batchnorm``, which the tests use as its reference; that function
runs one forward pass per BatchNormalization, seconds per child here), ranked by validation accuracy; the
reported ``accuracy`` is the chosen child's on the test set (never used for ranking). MACs and parameters
are ``graphmill inspect``'s (``search.evaluators.cost.cost_metrics``) of the extracted child at batch 1;
latency is the simulator's on the given accelerator (``search.evaluators.latency.simulated_latency``,
cycles / clock), the examples' edge accelerator when none is given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from graphmill.ir import Graph
from graphmill.util.errors import UserInputError, at_least, at_most

from .space import SupernetSpec

CONSTRAINTS = {"macs": "--max-macs", "params": "--max-params", "latency_ms": "--max-latency-ms"}
UNITS = {"macs": "MACs", "params": "parameters", "latency_ms": "ms of simulated latency"}


def config_key(config: Mapping[str, Any]) -> str:
    """A child's identity for caches and sets (its JSON with sorted keys)."""
    return json.dumps(config, sort_keys=True)


class ChildEvaluator:
    """Costs, latency and accuracy of the children of one trained supernet, each measured once (cached)."""

    def __init__(self, graph: Graph, spec: SupernetSpec, *, accel: Any = None, calibrate: int = 256) -> None:
        from .graph import graph_weights
        from .torchnet import SupernetModule
        from .train import digits_split

        self.graph, self.spec, self.accel, self.n_calibrate = graph, spec, accel, calibrate
        self.module = SupernetModule(spec, graph_weights(graph))
        self.module.eval()
        self.data = {r: digits_split(r, spec.in_channels) for r in spec.resolutions}
        self._costs: dict[str, dict] = {}
        self._lat: dict[str, float] = {}
        self._acc: dict[str, float] = {}

    def child_graph(self, config: Mapping[str, Any], *, batch: int | str = "N", calibrated: bool = True) -> Graph:
        """The extracted child (standard ONNX ops), with recalibrated statistics unless ``calibrated=False``."""
        from .graph import build_graph
        from .train import calibrate
        from .weights import child_weights

        config = self.spec.check(config)
        if calibrated:
            calibrate(self.module, config, self.data[config["resolution"]], self.n_calibrate)
            full = self.module.weights()
        else:
            from .graph import graph_weights
            full = graph_weights(self.graph)
        return build_graph(self.spec, config, dict(child_weights(self.spec, config, full)), batch=batch,
                           name="supernet_child")

    def costs(self, config: Mapping[str, Any]) -> dict[str, float]:
        from graphmill.search.evaluators.cost import cost_metrics

        k = config_key(config)
        if k not in self._costs:
            self._costs[k] = cost_metrics(self.child_graph(config, batch=1, calibrated=False))
        return self._costs[k]

    def latency_ms(self, config: Mapping[str, Any]) -> float:
        from graphmill.search.evaluators.latency import simulated_latency

        k = config_key(config)
        if k not in self._lat:
            self._lat[k] = float(simulated_latency(self.child_graph(config, batch=1, calibrated=False),
                                                   self.accel)["latency"])
        return self._lat[k]

    def metric(self, kind: str, config: Mapping[str, Any]) -> float:
        return self.latency_ms(config) if kind == "latency_ms" else self.costs(config)[kind]

    def accuracy(self, config: Mapping[str, Any], split: str = "val") -> float:
        """Accuracy with inherited weights and recalibrated statistics on ``split`` ("val" or "test")."""
        from .train import accuracy, calibrate

        k = config_key(config) + split
        if k not in self._acc:
            d = self.data[config["resolution"]]
            calibrate(self.module, config, d, self.n_calibrate)
            x, y = (d.x_val, d.y_val) if split == "val" else (d.x_test, d.y_test)
            # the exact fraction right (train.accuracy's float32 mean is ~1e-8 off what ORT's outputs give)
            self._acc[k] = round(accuracy(self.module, config, x, y) * len(y)) / len(y)
        return self._acc[k]

    def report(self, config: Mapping[str, Any]) -> dict:
        """Exactly ``{"macs", "params", "accuracy", "latency_ms", "config"}`` (accuracy on the test set)."""
        config = self.spec.check(config)
        c = self.costs(config)
        return {"macs": int(c["macs"]), "params": int(c["params"]), "accuracy": self.accuracy(config, "test"),
                "latency_ms": self.latency_ms(config), "config": config}


@dataclass
class Selection:
    """The chosen child, its report, and every child evaluated (config, cost, validation accuracy) in order."""

    config: dict
    report: dict
    evaluated: list[dict] = field(default_factory=list)


def check_constraint(kind: str, limit: Any) -> float:
    if kind not in CONSTRAINTS:
        raise UserInputError(f"unknown constraint {kind!r}: use one of {', '.join(CONSTRAINTS)}")
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0 or limit != limit \
            or limit == float("inf"):
        shown = f"{limit:g}" if isinstance(limit, float) else repr(limit)  # as typed: 0, not 0.0
        raise UserInputError(f"{CONSTRAINTS[kind]} {shown}: must be a positive finite number")
    return float(limit)


def check_outputs(supernet: str | os.PathLike, output: str | os.PathLike,
                  report: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
                  accel: str | os.PathLike | None = None) -> None:
    """Refuse, before any work, a child path (``-o``), report path (``--json``) or plot path (``--plot``) that
    cannot be written, two that name the same file (the report would replace the child just written), the
    ``--accel`` file the latency is read from, or a file of the supernet folder being read (the child would
    replace ``supernet.onnx``, the supernet it came from)."""
    from graphmill.util.files import check_output_paths
    from graphmill.util.plots import check_png_path

    paths = {flag: os.fspath(p) for flag, p in (("-o", output), ("--json", report), ("--plot", plot))
             if p is not None}
    check_output_paths({"--accel": accel}, paths)
    check_png_path(plot)
    real = {flag: os.path.realpath(p) for flag, p in paths.items()}
    from .train import SUPERNET_FILES

    own = {os.path.realpath(os.path.join(os.fspath(supernet), n)): n for n in SUPERNET_FILES}
    for flag, p in real.items():
        if p in own:
            raise UserInputError(f"{flag} {paths[flag]}: is the trained supernet's {own[p]}, which it would overwrite; "
                                 "write the child elsewhere")


def select_child(ev: ChildEvaluator, kind: str, limit: float, *, coarse: int = 6, max_evals: int = 30,
                 progress: Callable[[str], None] | None = None) -> Selection:
    """Coarse-to-fine search for the most accurate child with ``metric(kind) <= limit`` (module docstring)."""
    limit = check_constraint(kind, limit)
    spec = ev.spec
    grid = list(spec.coarse_grid())
    fits = [(ev.metric(kind, c), c) for c in grid]
    feasible = [(v, c) for v, c in fits if v <= limit]
    if not feasible:
        low = min(v for v, _ in fits)
        raise UserInputError(f"no child satisfies {CONSTRAINTS[kind]} {at_most(limit)}: the cheapest child of the "
                             f"supernet needs {at_least(low)} {UNITS[kind]}")
    feasible.sort(key=lambda vc: -vc[0])
    evaluated: list[dict] = []
    seen: set[str] = set()

    def evaluate(c: dict, phase: str) -> float:
        seen.add(config_key(c))
        acc = ev.accuracy(c)
        evaluated.append({"phase": phase, "config": c, kind: ev.metric(kind, c), "val_accuracy": acc})
        if progress is not None:
            progress(f"{phase} {len(evaluated)}/{max_evals}  {kind} {ev.metric(kind, c):.6g}  val acc {acc:.4f}  "
                     f"best {max(e['val_accuracy'] for e in evaluated):.4f}")
        return acc

    best, best_acc = None, -1.0
    for _, c in feasible[:max(1, min(coarse, max_evals))]:
        a = evaluate(c, "coarse")
        if a > best_acc:
            best, best_acc = c, a
    improved = True
    while improved and len(evaluated) < max_evals:
        improved = False
        centre = best
        for c in spec.neighbours(centre):
            if len(evaluated) >= max_evals:
                break
            if config_key(c) in seen or ev.metric(kind, c) > limit:
                continue
            a = evaluate(c, "fine")
            if a > best_acc:
                best, best_acc, improved = c, a, True
    return Selection(best, ev.report(best), evaluated)
