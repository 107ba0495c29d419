"""A measured cost model: every node's time from ONNX Runtime's per-op profiler.

``OrtCostModel.measure(graph)`` runs the graph in one ONNX Runtime session with profiling on
(``SessionOptions.enable_profiling``) and ORT's graph optimizations off (so that every node of the graph is one
kernel of the profile, under its own name), ``warmup`` untimed runs and ``runs`` timed ones on seeded random
inputs, then reads the profile JSON: each node event (``"cat": "Node"``, name ``<node>_kernel_time``, ``dur`` in
microseconds) is one execution of that node's kernel; a node's time is the median of its timed executions (the
first ``warmup`` executions of each node are dropped; ``reduce="mean"`` averages instead, ``reduce="min"`` takes the
fastest execution: the median is the default because on a shared machine a preempted run takes ten times as long and
would dominate a mean; the minimum is the estimate least disturbed by other load, as timeit advises, when the
machine is busy with other work). ``op_time(node)`` answers in cycles of ``clock_mhz``
(``microseconds * clock_mhz``), so that it serves ``PlacementCostModel`` (``graphmill place --cost ort``) as any
other base model: the measured machine is the reference device; a device of ``speed`` s takes ``time / s``.

Nodes are matched by name (``graphmill.ir.naming.name_nodes`` gives every node one); a node the profile does not
show (ORT ran no kernel for it) costs 0 and is listed in ``uncosted``. A ``graphmill::Backward`` node of a
training-step graph is costed by ``PlacementCostModel``'s rule from its forward node's measured time.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from typing import Any, Mapping

from graphmill.ir import Graph, Node
from graphmill.ir.naming import name_nodes
from graphmill.ir.partition import value_bytes
from graphmill.util.errors import ExecutionError

KERNEL_SUFFIX = "_kernel_time"


def parse_profile(events: list[dict], *, warmup: int = 0) -> dict[str, list[float]]:
    """Node name -> the durations (microseconds) of its kernel executions in profile order, the first
    ``warmup`` of each node dropped."""
    out: dict[str, list[float]] = {}
    for e in sorted((e for e in events if isinstance(e, dict) and e.get("cat") == "Node"),
                    key=lambda e: e.get("ts", 0)):
        name = str(e.get("name", ""))
        if not name.endswith(KERNEL_SUFFIX):
            continue  # fence events (_fence_before/_fence_after) carry no kernel time
        out.setdefault(name[:-len(KERNEL_SUFFIX)], []).append(float(e.get("dur", 0.0)))
    return {k: v[warmup:] for k, v in out.items()}


_REDUCERS = {"median": statistics.median, "mean": statistics.fmean, "min": min}


def profile_node_times(graph: Graph, inputs: Mapping[str, Any] | None = None, *, runs: int = 5, warmup: int = 1,
                       threads: int = 1, seed: int = 0, reduce: str = "median") -> dict[str, float]:
    """Kernel time (microseconds; median, mean or minimum over the timed runs) of every node ORT's profiler shows
    (module docstring)."""
    if reduce not in _REDUCERS:
        raise ValueError(f"reduce must be one of {', '.join(map(repr, _REDUCERS))}, got {reduce!r}")
    import onnxruntime as ort

    from .onnxruntime import OrtOptions, known_crash, random_inputs
    from graphmill.frontend.onnx_export import to_proto

    name_nodes(graph)
    opts = OrtOptions(intra_op_threads=threads, inter_op_threads=1, optimization="disabled")
    so = opts.session_options()
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    with tempfile.TemporaryDirectory(prefix="graphmill-ort-profile-") as tmp:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "profile")
        try:
            sess = ort.InferenceSession(to_proto(graph).SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 -- ORT raises several unrelated types
            raise ExecutionError(f"ONNX Runtime cannot load graph {graph.name!r} for profiling: "
                                 f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
        feeds = dict(inputs) if inputs is not None else random_inputs(graph, seed=seed)
        names = [i.name for i in sess.get_inputs()]
        feeds = {k: feeds[k] for k in names}
        crash = known_crash(graph, feeds)
        if crash:
            raise ExecutionError(f"ONNX Runtime 1.32 would crash the process profiling graph {graph.name!r}: {crash}")
        for _ in range(warmup + max(1, runs)):
            sess.run(None, feeds)
        path = sess.end_profiling()
        with open(path) as f:
            events = json.load(f)
    per_node = parse_profile(events, warmup=warmup)
    pick = _REDUCERS[reduce]
    return {k: float(pick(v)) for k, v in per_node.items() if v}


@dataclass
class OrtCostModel:
    """``CostModel`` of measured node times (module docstring); build it with ``measure``."""

    times_us: dict[str, float]
    clock_mhz: float = 1000.0
    uncosted: list[dict] = field(default_factory=list)

    @classmethod
    def measure(cls, graph: Graph, inputs: Mapping[str, Any] | None = None, *, runs: int = 5, warmup: int = 1,
                threads: int = 1, seed: int = 0, clock_mhz: float = 1000.0, reduce: str = "median") -> "OrtCostModel":
        """Profile ``graph`` (``runs`` timed runs after ``warmup``) and answer in cycles of ``clock_mhz``."""
        return cls(profile_node_times(graph, inputs, runs=runs, warmup=warmup, threads=threads, seed=seed,
                                      reduce=reduce), clock_mhz)

    def op_time(self, node: Node, device: int = 0) -> float:
        t = self.times_us.get(node.name)
        if t is None:
            if not any(u["name"] == node.name for u in self.uncosted):
                self.uncosted.append({"name": node.name, "op": node.qualified_op,
                                      "reason": "no kernel of this node in ONNX Runtime's profile"})
            return 0.0
        return t * self.clock_mhz

    def transfer_time(self, nbytes: int, src: int, dst: int) -> float:
        return 0.0  # links are the device set's (PlacementCostModel); one machine moves nothing

    def memory(self, node: Node) -> int:
        return sum(value_bytes(v) for v in node.inputs if v is not None and v.const is not None)
