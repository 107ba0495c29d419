"""The built-in evaluator of MnasNet's space: proxy accuracy x simulated latency, MnasNet's reward.

For a configuration of ``mnasnet_space()`` (or of the joint ``{"nn", "accel"}`` space):

1. **accuracy**: the network at proxy size (``width``, ``resolution``; 10 classes, 1 input channel) trained
   for ``steps`` Adam steps on scikit-learn's digits through the torch backend (``train_graph``);
2. **latency**: the network at its target size (``latency_width``, ``latency_resolution``: MnasNet-A1's
   1.0 / 224 by default, 1000 classes, batch 1) on the systolic-array simulator (``latency="sim"``; cycles
   -> ms at the accelerator's clock) or timed with ONNX Runtime (``latency="ort"``). The accelerator is
   ``accel`` (TOML path, dict or ``AccelConfig``; default ``DEFAULT_ACCEL``) or, for a joint configuration,
   its ``accel`` half over ``accel`` as the base;
3. **reward** (Tan et al. 2019, Eq. 2): ``ACC x (LAT / T)^w`` with ``w = alpha`` when ``LAT <= T`` else
   ``beta``: ``objective="mnasnet"`` is the soft constraint (alpha = beta = -0.07), ``"mnasnet-hard"`` the
   hard one (alpha = 0, beta = -1), ``"accuracy"`` ignores latency. ``target_ms`` is T; by default the
   latency of MnasNet-A1 at the same latency size on the base accelerator (computed once per process).

The result carries ``reward``, ``accuracy``, ``latency`` (ms; and ``cycles`` when simulated), ``macs`` and
``params`` of the target-size network, ``target_ms``, ``loss`` and ``train_seconds``. The reward is
``graphmill.search.objectives.mnasnet_reward``; the metric names are those ``MnasNetObjective`` and
``Constraints`` read (``accuracy``, ``latency``, ``macs``, ``params``, ``cycles``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphmill.frontend.zoo import RESOLUTION_SIZE_THRESHOLD
from graphmill.ir import Graph
from graphmill.search.objectives import mnasnet_reward
from graphmill.search.spaces.accelerator import accel_config
from graphmill.search.spaces.joint import split
from graphmill.search.spaces.mnasnet import MNASNET_A1, MnasNetBuilder
from graphmill.util.errors import UserInputError
from graphmill.util.suggest import did_you_mean

from .cost import cost_metrics
from .latency import DEFAULT_ACCEL, METHODS, ort_latency, simulated_latency
from .training import train_graph

#: objective name -> (alpha, beta) of MnasNet's reward; None: accuracy alone
OBJECTIVES: dict[str, tuple[float, float] | None] = {
    "mnasnet": (-0.07, -0.07),
    "mnasnet-hard": (0.0, -1.0),
    "accuracy": None,
}


#: the proxy and latency settings checked before a search starts (each bad one made every trial fail: an
#: IndexError for 0 steps, and a resolution under 16 was a multiplier of 224, training a 224x224 proxy)
SETTING_KINDS = {"steps": "count", "batch": "count", "threads": "count", "width": "positive", "lr": "positive",
                 "latency_width": "positive", "resolution": "pixels", "latency_resolution": "pixels"}


def settings_problem(settings: dict[str, Any]) -> tuple[str, str] | None:
    """(name, why) of the first setting of ``settings`` the evaluator cannot use, or None."""
    for name, v in settings.items():
        kind = SETTING_KINDS.get(name)
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if kind == "count" and not (number and isinstance(v, int) and v >= 1):
            return name, "must be a whole number >= 1"
        if kind == "positive" and not (number and 0 < v < float("inf")):
            return name, "must be a number > 0"
        if kind == "pixels" and not (number and isinstance(v, int) and v >= RESOLUTION_SIZE_THRESHOLD):
            return name, f"an input size in pixels, a whole number >= {RESOLUTION_SIZE_THRESHOLD}"
    return None


@dataclass
class MnasNetEvaluator:
    """MnasNet's reward of a configuration: proxy accuracy on digits and target-size latency (module doc)."""

    width: float = 0.25
    resolution: int = 16
    steps: int = 100
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0
    threads: int = 1
    latency: str = "sim"
    accel: Any = None
    latency_width: float = 1.0
    latency_resolution: int = 224
    objective: str = "mnasnet"
    target_ms: float | None = None
    alpha: float | None = None
    beta: float | None = None
    _target_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise UserInputError(f"unknown objective {self.objective!r}{did_you_mean(self.objective, OBJECTIVES)}; "
                                 f"known: {', '.join(OBJECTIVES)}")
        if self.latency not in METHODS:
            raise UserInputError(f"latency {self.latency!r}: use one of {', '.join(METHODS)}")
        if self.target_ms is not None and not self.target_ms > 0:
            raise UserInputError(f"target_ms={self.target_ms!r}: must be > 0")
        bad = settings_problem({k: getattr(self, k) for k in SETTING_KINDS})
        if bad:
            raise UserInputError(f"{bad[0]}={getattr(self, bad[0])!r}: {bad[1]}")

    # -- the pieces, public so that the CLI and users can rebuild what was measured
    def proxy_builder(self) -> MnasNetBuilder:
        return MnasNetBuilder(width=self.width, resolution=self.resolution, num_classes=10, in_channels=1,
                              batch="N", seed=self.seed)

    def target_builder(self) -> MnasNetBuilder:
        return MnasNetBuilder(width=self.latency_width, resolution=self.latency_resolution, num_classes=1000,
                              in_channels=3, batch=1, seed=self.seed)

    def accelerator(self, config: dict) -> Any:
        """The accelerator a configuration runs on: its ``accel`` half over the base, or the base."""
        _, acc = split(config)
        base = self.accel if self.accel is not None else DEFAULT_ACCEL
        return accel_config(acc, base) if acc is not None else base

    def measure_latency(self, graph: Graph, accel: Any) -> dict[str, float]:
        return simulated_latency(graph, accel) if self.latency == "sim" else ort_latency(graph)

    def target(self) -> float:
        """T: ``target_ms``, or MnasNet-A1's latency at the latency size on the base accelerator."""
        if self.target_ms is not None:
            return float(self.target_ms)
        if "ms" not in self._target_cache:
            a1 = self.target_builder()(MNASNET_A1)
            self._target_cache["ms"] = self.measure_latency(a1, self.accel if self.accel is not None
                                                            else DEFAULT_ACCEL)["latency"]
        return self._target_cache["ms"]

    def trained_model(self, config: dict) -> tuple[Graph, dict[str, float]]:
        """The proxy network of ``config`` with trained weights (deterministic: the weights that were measured)."""
        graph = self.proxy_builder()(config)
        metrics = train_graph(graph, steps=self.steps, batch=self.batch, lr=self.lr, seed=self.seed,
                              threads=self.threads)
        return graph, metrics

    def __call__(self, config: dict) -> dict[str, float]:
        _, metrics = self.trained_model(config)
        target_graph = self.target_builder()(config)
        out = dict(metrics)
        out.update(cost_metrics(target_graph))
        out.update(self.measure_latency(target_graph, self.accelerator(config)))
        weights = OBJECTIVES[self.objective]
        if weights is None:
            out["reward"] = out["accuracy"]
        else:
            alpha = weights[0] if self.alpha is None else self.alpha
            beta = weights[1] if self.beta is None else self.beta
            out["target_ms"] = self.target()
            out["reward"] = mnasnet_reward(out["accuracy"], out["latency"], out["target_ms"], alpha=alpha, beta=beta)
        return out


@dataclass
class AcceleratorEvaluator:
    """The built-in evaluator of the accelerator space: a fixed network's latency; reward = -latency (ms).

    The network is MnasNet-A1 at ``width`` / ``resolution`` (batch 1); ``base`` supplies the accelerator
    fields the space does not search (clock, word size, ...).
    """

    base: Any = None
    width: float = 1.0
    resolution: int = 224

    def __call__(self, config: dict) -> dict[str, float]:
        graph = MnasNetBuilder(width=self.width, resolution=self.resolution)(MNASNET_A1)
        m = simulated_latency(graph, accel_config(config, self.base))
        return {"reward": -m["latency"], **m}
