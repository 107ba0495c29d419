"""Replay of a placed graph: the device set stored with the placement (``graph.meta["placement"]["device_set"]``)
or given, the cost model over it, and the schedule simulation of ``graphmill.passes.placement`` on the
placement the nodes carry (``node.meta["device"]``). ``graphmill simulate`` uses it for a placed model."""

from __future__ import annotations

import math
from typing import Any

from graphmill.ir import Graph, UserInputError

from .devices import DeviceSet, PlacementCostModel, device_set_from_meta


def placed_device_set(graph: Graph) -> DeviceSet | None:
    """The device set a placement was made for, from the graph's meta (None: the graph is not placed)."""
    meta = graph.meta.get("placement")
    if not isinstance(meta, dict) or not isinstance(meta.get("device_set"), dict):
        return None
    return device_set_from_meta(meta["device_set"], f"graph {graph.name!r}: the device set of its placement")


def replay_placement(graph: Graph, devset: DeviceSet | None = None, *, cost: str = "roofline") -> dict[str, Any]:
    """Simulate the placement on the nodes: ``{"makespan", "units", "devices", "peak", "method"}``. A training
    step's placement (``graph.meta["placement"]["training"]``, ``place --training``) is replayed on the training
    step rebuilt from ``graph`` with every op's device from the meta's ``decisions`` (``training_step``), as
    ``place`` scheduled it, not on the forward graph alone."""
    from graphmill.passes.placement import build_problem, simulate, training_step
    from graphmill.passes.placement.place import memory_excess

    devset = devset or placed_device_set(graph)
    if devset is None:
        raise UserInputError(f"graph {graph.name!r} carries no placement (run graphmill place)")
    meta = graph.meta.get("placement") or {}
    cost = cost if cost else meta.get("cost", "roofline")
    # ort: the forward graph's times as place measured them (re-measured only for a model that lacks them), a
    # backward op costed from its forward op's time (as place does)
    model = PlacementCostModel(devset, (recorded_cost(meta, devset) or measured_cost(graph, devset)) if cost == "ort"
                               else cost)
    if meta.get("training") and isinstance(meta.get("decisions"), dict):
        graph = training_step(graph, meta["decisions"], ("device",))
    prob = build_problem(graph, model)
    place = []
    for n in prob.nodes:
        d = n.meta.get("device")
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < devset.count:
            raise UserInputError(f"{n.describe()}: meta['device'] = {d!r} is not a device of the placement "
                                 f"(0..{devset.count - 1})")
        place.append(d)
    s = simulate(prob, place)
    over = memory_excess(s.peak, prob.capacity, devset.names)
    if over is not None:  # place refuses such a placement; a model that reached simulate with one (a scaled placed
        # model, before scale dropped its decisions) was replayed as a valid step time (an outside check)
        raise UserInputError(f"graph {graph.name!r}: its placement is invalid: {over}; place the model again")
    return {"makespan": s.makespan, "units": prob.units, "devices": list(devset.names), "peak": s.peak.tolist(),
            "method": (graph.meta.get("placement") or {}).get("method")}


def recorded_cost(meta: dict, devset: DeviceSet) -> Any:
    """The node times ``place --cost ort`` measured and saved with the model (``measured_us``: node name ->
    microseconds), as a cost model; None when the model has none. Read from an untrusted file: anything but
    names mapped to finite non-negative numbers is refused in one line."""
    from graphmill.backends.ort_costmodel import OrtCostModel

    times = meta.get("measured_us")
    if times is None:
        return None
    if not isinstance(times, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and v >= 0 for k, v in times.items()):
        raise UserInputError("the model's placement meta 'measured_us' is not a map of node names to "
                             "non-negative times in microseconds")
    return OrtCostModel({k: float(v) for k, v in times.items()}, clock_mhz=devset.ref_mhz)


def measured_cost(graph: Graph, devset: DeviceSet) -> Any:
    """``--cost ort``: the graph's node times measured by ONNX Runtime's profiler (``backends/ort_costmodel.py``),
    in cycles of the device set's reference clock; the machine measured is the reference device."""
    from graphmill.backends.ort_costmodel import OrtCostModel

    return OrtCostModel.measure(graph, clock_mhz=devset.ref_mhz)


def placement_gantt(result: Any, path: str, title: str = "") -> None:
    """A Gantt PNG of a placement's schedule (``PlaceResult``): ops per device, incoming transfers beneath."""
    from graphmill.util.plots import pyplot, save_figure

    prob, s = result.problem, result.schedule
    plt = pyplot()
    D = prob.devices
    fig, ax = plt.subplots(figsize=(12, 1 + 0.6 * D))
    place = [result.report["placement"][n] for n in prob.names]
    for i in range(prob.n):
        if s.finish[i] > s.start[i]:
            ax.barh(place[i], s.finish[i] - s.start[i], left=s.start[i], height=0.5, color="tab:blue",
                    edgecolor="k", linewidth=0.2)
    for _, _, dst, t0, t1 in s.transfers:
        if t1 > t0:
            ax.barh(dst + 0.35, t1 - t0, left=t0, height=0.15, color="tab:orange", linewidth=0)
    ax.set_yticks(range(D))
    ax.set_yticklabels(prob.device_names)
    ax.invert_yaxis()
    ax.set_xlabel(prob.units)
    ax.set_title(title or f"{result.report['method']}: makespan {s.makespan:,.0f} {prob.units} (blue: ops, orange: "
                          "incoming transfers)")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
