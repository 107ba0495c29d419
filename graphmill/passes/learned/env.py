"""The environment of the learned passes: a graph, a device set and a cost model turn a set of decisions into a
simulated step time and a peak memory per device (issue 14, item 1).

Decisions, one of each per compute op (the placement problem's ops, in the graph's order):

* ``device``: the device it runs on;
* ``fuse``: whether it joins the fusion group of its *fusion producer* (``JointProblem.fuse_producer``: the
  producer whose only reader it is, the one sending it the most bytes; -1 when there is none). A fused op runs
  on its producer's device whatever ``device`` says (the mask a policy applies), so a group never crosses
  devices. Groups grow in the graph's order; an op whose joining would make the group not fit in the on-chip
  buffers (the cost model's ``group_cost``) is refused, with the reason, and starts a group of its own.
  Because each member but the last has exactly one reader, inside the group, a group is convex: contracting it
  to one op keeps the graph acyclic.
* ``priority``: a number per op; among the ready ops of a device the one of least priority runs first
  (``placement.schedule.simulate``'s ``priority``; a group takes its least member priority).

A fusion group of two or more ops becomes one op whose time is the cost model's ``group_cost`` (one kernel:
intermediates stay on chip, DRAM traffic at the boundary); values inside it are neither sent nor held in device
memory. The contracted problem is scheduled by the placement's list scheduler (``schedule.py``), so with no
fusion and ``priority`` = graph order the step time is exactly the placement report's.

``OptimizationEnv`` wraps it in Gymnasium's method names (``reset() -> (obs, info)``, ``step(action) -> (obs,
reward, terminated, truncated, info)``) without depending on gymnasium: one step is one episode (all decisions
at once), reward ``-makespan / reference`` (reference: one device, graph order, no fusion), ``-penalty`` when
a device's memory is exceeded.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from graphmill.ir import UserInputError
from graphmill.passes.placement.problem import PlacementProblem, ValueInfo
from graphmill.passes.placement.schedule import Schedule, simulate

__all__ = ["Decisions", "Outcome", "JointProblem", "OptimizationEnv", "fusion_producers", "combine", "ALL_PARTS"]

#: what decisions are made of: a pass deciding some of them (``learned-place``: {"place"}) keeps the rest
ALL_PARTS = frozenset({"place", "fuse", "schedule"})


@dataclass
class Decisions:
    """Per op: device, fuse-with-producer, priority (module docstring)."""

    device: np.ndarray
    fuse: np.ndarray
    priority: np.ndarray

    @classmethod
    def default(cls, n: int, device: int | np.ndarray = 0) -> "Decisions":
        dev = np.full(n, device, np.int64) if np.isscalar(device) else np.asarray(device, np.int64)
        return cls(dev, np.zeros(n, bool), np.arange(n, dtype=np.float64))


@dataclass
class Outcome:
    makespan: float
    peak: np.ndarray  # [D] bytes
    valid: bool
    device: np.ndarray  # [n] the devices after the fusion mask
    group: np.ndarray  # [n] op -> group index (groups in the graph's order of their last op)
    groups: list[list[int]]
    refused: list[str]
    start: np.ndarray  # [n] the group's start for each member
    finish: np.ndarray  # [n]
    schedule: Schedule
    over: tuple[int, float] | None = None
    # the problem's value index of each value ``schedule.transfers`` names: a fused state's schedule is of the
    # contracted problem, whose value list drops the intermediates a group keeps on chip (None: the same list)
    transfer_values: np.ndarray | None = None

    def transfer_value(self, v: int) -> int:
        """The problem's value index of the schedule's value ``v`` (as ``schedule.transfers`` name it)."""
        return v if self.transfer_values is None else int(self.transfer_values[v])

    def order(self) -> list[list[int]]:
        """Per device, its ops in the order they ran (members of a group in the graph's order): by start time,
        then by the order the schedule started them (zero-time ops start together, in their priorities' order)."""
        D = len(self.peak)
        out: list[list[int]] = [[] for _ in range(D)]
        issued = self.schedule.issued  # indexed by the schedule's ops: the groups (op -> group: ``self.group``)
        for i in sorted(range(len(self.device)), key=lambda i: (self.start[i], issued[self.group[i]], i)):
            out[int(self.device[i])].append(i)
        return out


def fusion_producers(prob: PlacementProblem) -> np.ndarray:
    """op -> the producer it may fuse with (its only reader is this op; the most bytes), -1 when none."""
    fp = np.full(prob.n, -1, np.int64)
    for i in range(prob.n):
        best, bb = -1, -1
        for p in prob.preds[i]:
            if prob.succs[p] == [i]:
                b = prob.edge_bytes.get((p, i), 0)
                if b > bb:
                    best, bb = p, b
        fp[i] = best
    return fp


@dataclass
class _Growth:
    """A fusion group being grown in ``JointProblem.resolve``: the id of its members so far and, once one was
    needed, the cost model's builder holding them."""

    prefix: int
    builder: Any = None


@dataclass
class JointProblem:
    """A placement problem plus what fusion needs: the fusion producers and the cost model's ``group_cost``
    (None: no fusion possible; every ``fuse`` is refused)."""

    prob: PlacementProblem
    cost: Any = None
    fuse_producer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _cache: dict = field(default_factory=dict)
    _firsts: dict = field(default_factory=dict)  # (device, a group's first op) -> its prefix id
    _grown: dict = field(default_factory=dict)  # (prefix id, op) -> (time, reason, the grown prefix's id)
    _ids: Iterator[int] = field(default_factory=itertools.count)  # prefix ids
    #: the values (indices into ``prob.values``) that are graph outputs: written and held even when every
    #: reader is in its producer's group (the group's cost pays their write)
    graph_outputs: frozenset = frozenset()
    #: what is computed from the problem alone, once (``baselines``: the placement and schedule baselines and the
    #: 36 combinations, by seed): ``learned-optimize`` asked for the 36 twice (its hint, then the best under each
    #: order) and for every placement baseline at each part step, half its time on NMT
    derived: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.fuse_producer = fusion_producers(self.prob)
        p = self.prob
        self.graph_outputs = frozenset(
            k for k, v in enumerate(p.values) if v.producer is not None
            and any(o is not None and o.name == v.name and o.is_graph_output for o in p.nodes[v.producer].outputs))
        if self.cost is not None and not hasattr(self.cost, "group_cost"):
            self.cost = None

    @property
    def n(self) -> int:
        return self.prob.n

    @property
    def devices(self) -> int:
        return self.prob.devices

    def group_cost(self, members: tuple[int, ...], device: int) -> tuple[float, str]:
        """(time, '') of ``members`` as one kernel on ``device``, or (inf, the reason it is refused)."""
        key = (members, device)
        hit = self._cache.get(key)
        if hit is None:
            if self.cost is None:
                hit = (float("inf"), "refused: the cost model does not cost fusion groups")
            else:
                gc = self.cost.group_cost([self.prob.nodes[i] for i in members], device)
                hit = (float(gc.time), "") if gc.fits else (float("inf"), gc.reason)
            self._cache[key] = hit
        return hit

    def same_device_fusions(self, device: np.ndarray) -> np.ndarray:
        """Per op, whether it has a fusion producer on its own device under ``device``: the fusions a placement
        allows (a fused op runs on its producer's device, so one across devices would move it)."""
        d = np.asarray(device, np.int64)
        fp = self.fuse_producer
        return (fp >= 0) & (d[np.maximum(fp, 0)] == d)

    def resolve(self, dec: Decisions) -> tuple[np.ndarray, np.ndarray, list[list[int]], list[str], list[float]]:
        """(devices, op -> group, groups, refusals, group times on their device) after the fusion mask."""
        n, fp = self.n, self.fuse_producer
        raw = np.asarray(dec.device)
        dev = raw.astype(np.int64)
        fuse = np.asarray(dec.fuse, bool)
        if dev.shape != (n,) or fuse.shape != (n,) or np.shape(dec.priority) != (n,):
            raise UserInputError(f"decisions must have one entry per op ({n})")
        # a device 1.7 ran on device 1, a NaN priority ordered nothing (an outside check)
        if raw.dtype.kind not in "iub" and not np.array_equal(raw, dev):
            raise UserInputError("a device index must be a whole number")
        if np.isnan(np.asarray(dec.priority, np.float64)).any():
            raise UserInputError("a priority is NaN: priorities must be numbers (lower runs first)")
        if n and (dev.min() < 0 or dev.max() >= self.devices):
            raise UserInputError(f"a device index is out of range 0..{self.devices - 1}")
        group = np.full(n, -1, np.int64)
        members: list[list[int]] = []
        times: list[float] = []
        refused: list[str] = []
        t = self.prob.op_time
        grown: dict[int, _Growth] = {}  # group -> its growth (``_grow``), for groups of two or more
        for i in range(n):
            p = int(fp[i])
            if fuse[i] and p >= 0:
                dev[i] = dev[p]
                g = int(group[p])
                first = (int(dev[i]), members[g][0])
                if g not in grown and first not in self._firsts:
                    self._firsts[first] = next(self._ids)
                growth = grown.get(g) or _Growth(self._firsts[first])
                tm, why = self._grow(growth, members[g], i, int(dev[i]))
                if not why:
                    grown[g] = growth
                    members[g].append(i)
                    times[g] = tm
                    group[i] = g
                    continue
                refused.append(f"{self.prob.names[i]} with {self.prob.names[p]}: {why}")
            group[i] = len(members)
            members.append([i])
            times.append(float(t[i, dev[i]]))
        return dev, group, members, refused, times

    def _grow(self, growth: "_Growth", members: list[int], i: int, device: int) -> tuple[float, str]:
        """``group_cost(members + [i], device)``, growing the group one op at a time. Groups grow op by op, so
        each prefix is named by (its prefix, its last op) and its answer kept under that name: costing every
        prefix anew, or keying the answers by the whole member tuple, made a fused chain of L ops cost O(L^2)
        time and memory (a 5,000-op chain took 78 s to place). A cost model with ``group_builder`` (the
        simulator's) is asked for the new op alone; one without it is asked for the whole group."""
        key = (growth.prefix, i)
        hit = self._grown.get(key)
        if hit is None:
            if self.cost is None:
                tm, why = float("inf"), "refused: the cost model does not cost fusion groups"
            elif not hasattr(self.cost, "group_builder"):
                tm, why = self.group_cost(tuple(members) + (i,), device)
            else:
                gc = self._builder(growth, members, device) or growth.builder.try_add(self.prob.nodes[i])
                tm, why = (float(gc.time), "") if gc.fits else (float("inf"), gc.reason)
            hit = self._grown[key] = (tm, why, next(self._ids))
            if not why and growth.builder is not None:
                growth.builder.accept()
        elif not hit[1] and growth.builder is not None:
            growth.builder.try_add(self.prob.nodes[i])
            growth.builder.accept()
        if not hit[1]:
            growth.prefix = hit[2]
        return hit[0], hit[1]

    def _builder(self, growth: "_Growth", members: list[int], device: int) -> Any:
        """Give ``growth`` the cost model's builder holding ``members``; None, or the refusal when the first
        member cannot be in a kernel at all (a training graph's Backward): no group grows from it."""
        if growth.builder is not None:
            return None
        builder = self.cost.group_builder(device)
        for k in members:
            gc = builder.try_add(self.prob.nodes[k])
            if not gc.fits:  # members so far fit together: this one cannot be in a kernel
                return gc
            builder.accept()
        growth.builder = builder
        return None

    def evaluate(self, dec: Decisions, *, memory: bool = True) -> Outcome:
        """Simulate the decisions (module docstring)."""
        prob = self.prob
        dev, group, members, refused, times = self.resolve(dec)
        prio = np.asarray(dec.priority, np.float64)
        if len(members) == prob.n:  # no fusion: the placement problem itself
            s = simulate(prob, dev, priority=prio, memory=memory)
            return self._outcome(s, dev, group, members, refused, s.start, s.finish)
        # contract every group into one op; its groups are numbered in the graph's order of their first
        # member, and ordered for the schedule by their last (a topological order: module docstring)
        G = len(members)
        last = np.array([m[-1] for m in members])
        order = np.argsort(last, kind="stable")
        rank = np.empty(G, np.int64)
        rank[order] = np.arange(G)
        cg = rank[group]  # op -> contracted index
        gdev = np.zeros(G, np.int64)
        gdev[cg] = dev
        op_time = np.zeros((G, prob.devices))
        gt = np.asarray(times)[order]
        op_time[:, :] = gt[:, None]
        gprio = np.full(G, np.inf)
        np.minimum.at(gprio, cg, prio)
        values: list[ValueInfo] = []
        kept: list[int] = []  # the problem's index of each value of the contracted problem
        cgl = cg.tolist()
        for k, v in enumerate(prob.values):
            if v.producer is None:
                cons = sorted({cgl[c] for c in v.consumers})
                values.append(ValueInfo(v.name, v.bytes, None, cons))
                kept.append(k)
                continue
            pg = cgl[v.producer]
            cons = sorted({cgl[c] for c in v.consumers} - {pg})
            if v.consumers and not cons and k not in self.graph_outputs:
                continue  # an intermediate: stays on chip (a graph output read inside its group is still written:
                # dropped, it left the peak that the group's time pays for; an outside check)
            values.append(ValueInfo(v.name, v.bytes, pg, cons))
            kept.append(k)
        names = [prob.names[members[k][-1]] for k in order]
        nodes = [prob.nodes[members[k][-1]] for k in order]
        cprob = PlacementProblem(names, nodes, op_time, values, prob.latency, prob.bytes_per_unit, prob.capacity,
                                 prob.units, prob.device_names).finish()
        s = simulate(cprob, gdev, priority=gprio, memory=memory)
        return self._outcome(s, dev, cg, [members[k] for k in order], refused, s.start[cg], s.finish[cg],
                             np.asarray(kept, np.int64))

    def _outcome(self, s: Schedule, dev, group, members, refused, start, finish, transfer_values=None) -> Outcome:
        over = s.over(self.prob.capacity) if s.peak.any() else None
        return Outcome(s.makespan, s.peak, over is None, dev, np.asarray(group), members, refused,
                       np.asarray(start), np.asarray(finish), s, over, transfer_values)


def combine(learned: Decisions, base: Decisions, parts: set[str] | frozenset[str], jp: JointProblem) -> Decisions:
    """``learned``'s choices for ``parts``, ``base``'s for the rest; no fusion across the resulting devices."""
    dev = np.asarray(learned.device if "place" in parts else base.device, np.int64)
    fuse = np.array(learned.fuse if "fuse" in parts else base.fuse, bool)
    fuse &= jp.same_device_fusions(dev)  # learned devices with kept fusions too: not the producer's device instead
    prio = np.asarray(learned.priority if "schedule" in parts else base.priority, np.float64)
    return Decisions(dev, fuse, prio)


class OptimizationEnv:
    """Gymnasium-style environment over a ``JointProblem`` (module docstring). ``reset()`` returns the node
    features (``features.node_features``) and ``info`` with the masks; ``step(action)`` takes a ``Decisions``
    or a dict with ``device``, ``fuse``, ``priority``."""

    metadata: dict = {"render_modes": []}

    def __init__(self, problem: JointProblem, *, penalty: float = 10.0) -> None:
        from .features import node_features

        self.problem = problem
        self.penalty = float(penalty)
        self._features = node_features
        base = problem.evaluate(Decisions.default(problem.n, int(np.argmin(problem.prob.op_time.sum(0)))),
                                memory=False)
        self.reference = max(base.makespan, 1e-9)
        self._obs: dict | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if self._obs is None:
            self._obs = self._features(self.problem)
        return self._obs, {"reference": self.reference, "devices": self.problem.devices, "ops": self.problem.n}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if not isinstance(action, Decisions):
            missing = [k for k in ("device", "fuse", "priority") if k not in action]
            if missing:  # a bare KeyError (an outside check)
                raise UserInputError(f"an action is a mapping of device, fuse and priority; {missing[0]} is missing")
        dec = action if isinstance(action, Decisions) else Decisions(np.asarray(action["device"]),
                                                                    np.asarray(action["fuse"]),
                                                                    np.asarray(action["priority"]))
        out = self.problem.evaluate(dec)
        reward = -out.makespan / self.reference if out.valid else -self.penalty
        info = {"makespan": out.makespan, "peak": out.peak.tolist(), "valid": out.valid, "refused": out.refused,
                "groups": len(out.groups), "outcome": out}
        return self._obs if self._obs is not None else self.reset()[0], reward, True, False, info
