"""``place``: put every compute op of a graph on a device (``node.meta["device"]``), then schedule the placement
(``schedule.py``) and report it.

Methods: the baselines of ``baselines.py`` and the learned placers of ``rl.py`` (``rl``: the sequence-to-
sequence placer over colocation groups; ``hierarchical``: the grouper-placer). Every baseline is computed and
scheduled in every run (they are the report's ``baselines``); the learned placers start from them and return
the best placement they evaluated, baselines included, so they are never worse than the best valid baseline.

The report (``report``), the issue's schema exactly::

    {"method", "devices": [names], "units", "makespan", "baselines": {method: makespan},
     "placement": {op: device index}, "op_time": {op: [time on each device]},
     "values": [{"name", "bytes", "producer": op | null, "consumers": [op]}],
     "link": {"latency", "bytes_per_unit"}  (every pair alike) | {"latency": [[..]], "bytes_per_unit": [[..]]}
             (per ordered pair, null on the diagonal),
     "memory": {"capacity": [bytes per device], "peak": [bytes per device]}}

plus ``"uncosted": [{"name", "op", "reason"}]`` only when the cost model could not cost some op (it counts 0,
so the step time is partial), as ``simulate``'s report lists them.

Ops (``placement``, ``op_time``) are listed in the graph's order, which is the schedule's priority.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from graphmill.ir import Graph, UserInputError
from graphmill.ir.summary import constant_values, is_constant_node
from graphmill.util.suggest import did_you_mean

from .baselines import BASELINES
from .bounds import lower_bounds
from .problem import PlacementProblem, build_problem
from .schedule import Schedule, simulate

METHODS = ("single", "round-robin", "expert", "heft", "heft-colocated", "metis", "rl", "hierarchical")
LEARNED = ("rl", "hierarchical")


def fmt_bytes(b: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(b) >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{int(b)} B"


def memory_excess(peak, capacity, names) -> str | None:
    """``device D (NAME) needs X, Y over its memory of Z`` for the device most over its memory, None when every one
    fits: the one wording of place's refusal of a placement and of the replays' refusals of a saved one."""
    excess = np.asarray(peak, dtype=float) - np.asarray(capacity, dtype=float)
    d = int(np.argmax(excess))
    if excess[d] <= 0:
        return None
    return (f"device {d} ({names[d]}) needs {fmt_bytes(peak[d])}, {fmt_bytes(excess[d])} over its memory of "
            f"{fmt_bytes(capacity[d])}")


@dataclass
class Candidate:
    method: str
    placement: list[int]
    schedule: Schedule
    valid: bool
    seconds: float


@dataclass
class PlaceResult:
    report: dict
    problem: PlacementProblem
    schedule: Schedule
    candidates: dict[str, Candidate] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # wall times, learned-placer statistics (not part of the report)


def check_method(method: str, known: tuple[str, ...] = METHODS + ("learned",)) -> None:
    """Refuse an unknown method in one line, listing ``known``: by default every method of ``graphmill place``,
    ``learned`` (the learned passes' policy, ``api.place``) included, so that a typo of it is answered with it."""
    if method not in known:
        raise UserInputError(f"unknown placement method {method!r}{did_you_mean(method, known)}; "
                             f"choose from {', '.join(known)}")


def check_fits(prob: PlacementProblem, graph_name: str) -> None:
    """Refuse a graph no placement can hold: its weights exceed all devices' memory together, or one op's own
    weights and tensors exceed every device's memory."""
    weights = sum(v.bytes for v in prob.values if v.producer is None and v.consumers)
    total = float(prob.capacity.sum())
    if weights > total:
        raise UserInputError(f"graph {graph_name!r} fits on no device: its weights and inputs need {fmt_bytes(weights)}, "
                             f"{fmt_bytes(weights - total)} more than all {prob.devices} devices hold together "
                             f"({fmt_bytes(total)})")
    # an op's own bytes on device d: the weights and inputs it reads, which are live at its start, plus its outputs,
    # allocated at its start; an op of zero time on d starts and finishes at once, and at equal times the schedule
    # frees before it allocates (schedule.py), so there it needs its weights and the larger of its produced inputs
    # and its read outputs (a Concat of four 8 MB tensors needs 34 MB there, not 67 MB)
    w, ins, outs, read_outs = np.zeros(prob.n), np.zeros(prob.n), np.zeros(prob.n), np.zeros(prob.n)
    for v in prob.values:
        for c in v.consumers:
            (w if v.producer is None else ins)[c] += v.bytes
        if v.producer is not None:
            outs[v.producer] += v.bytes
            if v.consumers:
                read_outs[v.producer] += v.bytes
    need = np.where(prob.op_time > 0, (w + ins + outs)[:, None], (w + np.maximum(ins, read_outs))[:, None])
    over = need - prob.capacity[None, :]
    i = int(np.argmax(over.min(axis=1)))
    if over[i].min() > 0:
        d = int(np.argmin(over[i]))
        raise UserInputError(f"graph {graph_name!r} fits on no device: op {prob.names[i]!r} alone needs "
                             f"{fmt_bytes(need[i, d])} (its weights, inputs and outputs), {fmt_bytes(over[i, d])} "
                             f"more than the device that comes closest ({prob.device_names[d]}, "
                             f"{fmt_bytes(prob.capacity[d])})")


def evaluate(prob: PlacementProblem, placement: list[int], method: str, seconds: float = 0.0) -> Candidate:
    s = simulate(prob, placement)
    return Candidate(method, list(placement), s, s.over(prob.capacity) is None, seconds)


def baseline_candidates(prob: PlacementProblem, seed: int = 0, method: str = "") -> tuple[dict[str, Candidate], dict]:
    """Every baseline placement of ``prob`` simulated, ``{name: Candidate}``, valid or not (the report lists them
    all; a placer starts from the valid ones), and ``{"wall_s": {name: seconds}, "bounds": lower bounds}``.
    METIS is left out when pymetis is missing, unless ``method`` is metis (which then says how to install it).
    Refuses nothing: a caller placing with its own method (``api.place(method="learned")``) must not be refused
    because one baseline's placement exceeds a device's memory."""
    cands: dict[str, Candidate] = {}
    info: dict = {"wall_s": {}}
    for name, fn in BASELINES.items():
        if name == "metis" and method != "metis":
            try:
                import pymetis  # noqa: F401
            except ImportError:
                continue  # listed only when available (method metis itself says how to install it)
        t0 = time.perf_counter()
        pl = fn(prob, seed) if name == "metis" else fn(prob)
        dt = time.perf_counter() - t0
        cands[name] = evaluate(prob, pl, name, dt)
        info["wall_s"][name] = dt
    info["bounds"] = lower_bounds(prob)  # how far from the best possible (bounds.py; not part of the report)
    # the report keeps its exact keys, so which baselines exceed a device's memory travels here: a summary that
    # listed them without a mark showed an unachievable step time as faster than the chosen placement
    info["over_memory"] = [name for name, c in cands.items() if not c.valid]
    return cands, info


def place_graph(graph: Graph, cost: Any, *, method: str = "heft", budget: int = 0, seed: int = 0,
                options: dict | None = None, progress: Callable[[str], None] | None = None,
                checkpoint: str | None = None) -> PlaceResult:
    """Place ``graph`` in place (``node.meta["device"]``) with ``method`` and return the report (module
    docstring). ``budget``: placements the learned placers may simulate (0: their default)."""
    check_method(method, METHODS)  # learned is api.place's (the learned passes' policy), not a placer here
    prob = build_problem(graph, cost)
    check_fits(prob, graph.name)
    cands, info = baseline_candidates(prob, seed, method)
    if method in LEARNED:
        from .rl import learned_placement

        t0 = time.perf_counter()
        pl, stats = learned_placement(prob, method, [c for c in cands.values()], budget=budget, seed=seed,
                                      options=options or {}, progress=progress, checkpoint=checkpoint)
        dt = time.perf_counter() - t0
        cands[method] = evaluate(prob, pl, method, dt)
        info["wall_s"][method] = dt
        info["learned"] = stats
    chosen = cands[method]
    if not chosen.valid:
        raise UserInputError(f"the {method} placement of graph {graph.name!r} is invalid: "
                             f"{memory_excess(chosen.schedule.peak, prob.capacity, prob.device_names)}")
    apply_placement(graph, prob, chosen.placement)
    report = make_report(prob, method, chosen, cands)
    graph.meta["placement"] = {"method": method, "makespan": chosen.schedule.makespan, "units": prob.units,
                               "devices": list(prob.device_names)}
    return PlaceResult(report, prob, chosen.schedule, cands, info)


def apply_placement(graph: Graph, prob: PlacementProblem, placement: list[int]) -> None:
    """``node.meta["device"]`` on every node: compute ops their placement, constant nodes their first reader's
    device (each device holds its own copy of the constants it reads)."""
    dev = {id(n): int(d) for n, d in zip(prob.nodes, placement)}
    constant = constant_values(graph)
    for node in reversed(graph.nodes):
        if is_constant_node(node, constant):
            readers = [dev[id(u)] for v in node.outputs if v is not None for u in v.users if id(u) in dev]
            dev[id(node)] = readers[0] if readers else 0
    for node in graph.nodes:
        node.meta["device"] = dev[id(node)]


def link_table(prob: PlacementProblem) -> dict:
    D = prob.devices
    off = ~np.eye(D, dtype=bool)
    if D < 2:
        return {"latency": 0.0, "bytes_per_unit": None}
    lat, bw = prob.latency[off], prob.bytes_per_unit[off]
    if np.all(lat == lat[0]) and np.all(bw == bw[0]):
        return {"latency": float(lat[0]), "bytes_per_unit": float(bw[0])}
    return {"latency": [[None if i == j else float(prob.latency[i, j]) for j in range(D)] for i in range(D)],
            "bytes_per_unit": [[None if i == j else float(prob.bytes_per_unit[i, j]) for j in range(D)]
                               for i in range(D)]}


def problem_tables(prob: PlacementProblem) -> dict:
    """The report's ``op_time``, ``values`` and ``link``: with the decisions, all a re-simulation needs (the
    learned passes' report carries them too)."""
    names = prob.names
    return {
        "op_time": {names[i]: [float(x) for x in prob.op_time[i]] for i in range(prob.n)},
        "values": [{"name": v.name, "bytes": int(v.bytes), "producer": None if v.producer is None else
                    names[v.producer], "consumers": [names[c] for c in v.consumers]} for v in prob.values],
        "link": link_table(prob),
        # only when some op could not be costed (its op_time rows are 0): the step time is then partial, and a
        # re-simulation from the report alone could not tell
        **({"uncosted": [dict(u) for u in prob.uncosted]} if prob.uncosted else {})}


def make_report(prob: PlacementProblem, method: str, chosen: Candidate, cands: dict[str, Candidate]) -> dict:
    names = prob.names
    return {
        "method": method,
        "devices": list(prob.device_names),
        "units": prob.units,
        "makespan": chosen.schedule.makespan,
        "baselines": {m: c.schedule.makespan for m, c in cands.items() if m not in LEARNED},
        "placement": {names[i]: int(d) for i, d in enumerate(chosen.placement)},
        **problem_tables(prob),
        "memory": {"capacity": [float(c) if math.isfinite(c) else None for c in prob.capacity],
                   "peak": [float(p) for p in chosen.schedule.peak]},
    }
