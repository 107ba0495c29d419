"""Latency of a candidate: simulated on the systolic-array simulator, or measured with ONNX Runtime.

* ``simulated_latency(graph, accel)``: the simulator (``simulate_graph``) at batch 1; ``cycles`` is the report's
  total and ``latency = cycles / (clock MHz * 1000)`` milliseconds at the accelerator's configured clock.
* ``ort_latency(graph)``: the median of ``runs`` timed ONNX Runtime inferences (one thread, ORT's own
  optimizations on, as users run it) after ``warmup`` untimed ones; noisy on a loaded machine, which is
  why the simulator is the built-in evaluator's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from graphmill.ir import Graph

METHODS = ("sim", "ort")

#: the accelerator used when none is given: the examples' edge accelerator (16x16 output-stationary, 500 MHz)
DEFAULT_ACCEL: dict = {
    "name": "edge",
    "array": {"rows": 16, "cols": 16, "dataflow": "os"},
    "memory": {"ifmap_kb": 256, "filter_kb": 256, "ofmap_kb": 128, "word_bytes": 1, "dram_bw_words": 8},
    "clock": {"mhz": 500},
}


def _batch_one(graph: Graph) -> Graph:
    from graphmill.ir.summary import bind_symbols, symbols

    names = symbols(graph)
    return bind_symbols(graph, {s: 1 for s in names}) if names else graph


def simulated_latency(graph: Graph, accel: Any = None) -> dict[str, float]:
    """``{"cycles", "latency"}`` (latency in ms) of one inference of ``graph`` on ``accel`` (an AccelConfig,
    a TOML-schema dict or a TOML path; default ``DEFAULT_ACCEL``)."""
    from graphmill.backends.simulator import simulate_graph
    from graphmill.backends.simulator.config import as_accel

    cfg = as_accel(DEFAULT_ACCEL if accel is None else accel)
    report = simulate_graph(_batch_one(graph), cfg)
    cycles = float(report.total_cycles)
    return {"cycles": cycles, "latency": cycles / (cfg.clock_mhz * 1e3)}


def ort_latency(graph: Graph, *, runs: int = 20, warmup: int = 3, threads: int = 1) -> dict[str, float]:
    """``{"latency"}``: median ONNX Runtime latency in ms of one inference (batch 1)."""
    from graphmill.backends import onnxruntime as ortb

    g = _batch_one(graph)
    t = ortb.time_graph(g, runs=runs, warmup=warmup, options=ortb.OrtOptions(intra_op_threads=threads))
    return {"latency": float(t.median_ms)}


@dataclass
class LatencyEvaluator:
    """``evaluate(config)``: latency of ``builder(config)``; reward = -latency in ms (faster is better).

    ``method`` is ``"sim"`` (the simulator on ``accel``) or ``"ort"`` (ONNX Runtime timing).
    """

    builder: Callable[[dict], Graph]
    method: str = "sim"
    accel: Any = None
    runs: int = 20

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            from graphmill.util.errors import UserInputError

            raise UserInputError(f"latency method {self.method!r}: use one of {', '.join(METHODS)}")

    def __call__(self, config: dict) -> dict[str, float]:
        g = self.builder(config)
        m = simulated_latency(g, self.accel) if self.method == "sim" else ort_latency(g, runs=self.runs)
        return {"reward": -m["latency"], **m}
