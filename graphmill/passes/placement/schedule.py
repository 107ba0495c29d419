"""The schedule of a placement: event-driven simulation of the placed ops on their devices.

The rule (stated in the README, "Device placement"):

* Every device runs one op at a time. When a device is idle at time ``t``, it starts, among its ops whose inputs
  are all present on it at ``t``, the one **earliest in the graph's order** (all events at ``t``, finishes and
  arrivals, are taken into account first).
* A value produced on device ``s`` and read on device ``d != s`` is sent once to ``d`` when its producer
  finishes, over the directed link ``(s, d)``, which carries one transfer at a time in the order transfers were
  issued; it takes ``latency[s][d] + bytes / bytes_per_unit[s][d]``. A finished op issues its transfers value by
  value (in output order), and for each value to the destination devices in the order of their first reader in
  the graph's order. Graph inputs and constants are present on every device at 0.
* The makespan is the last op's finish.
* Memory of device ``d``: the producer-less values (weights, constants, graph inputs) read by an op on ``d``, for
  the whole step, plus the live activations: a value occupies its producer's device from the producer's start
  (its output buffer) until the last of its local readers finishes and its transfers have arrived, and a reader's device from its arrival until
  the last reader there finishes; the peak is the largest sum (a value freed at ``t`` is freed before one
  allocated at ``t``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from .problem import PlacementProblem


@dataclass
class Schedule:
    makespan: float
    start: np.ndarray
    finish: np.ndarray
    peak: np.ndarray  # [D] bytes
    transfers: list[tuple[int, int, int, float, float]]  # (value, src, dst, start, end)
    # op -> its rank in the order ops were started: ops starting at one time (after zero-time ops) ran in this
    # order, which the priorities decided, not the graph's
    issued: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def over(self, capacity: np.ndarray) -> tuple[int, float] | None:
        """The device most over its capacity and by how many bytes, or None when the placement fits."""
        excess = self.peak - capacity
        d = int(np.argmax(excess))
        return (d, float(excess[d])) if excess[d] > 0 else None


def simulate(prob: PlacementProblem, placement: np.ndarray | list[int], *, memory: bool = True,
             priority: np.ndarray | list[float] | None = None) -> Schedule:
    """Schedule ``placement`` (op -> device) by the module's rule (``priority``: op -> rank among ready ops)."""
    place = [int(d) for d in placement]
    n, D = prob.n, prob.devices
    key = list(range(n)) if priority is None else [float(x) for x in priority]
    t = prob.op_time
    pending = prob.in_count.copy().tolist()
    start = [0.0] * n
    finish = [0.0] * n
    issued = [0] * n
    started = 0
    ready: list[list[tuple[int, int]]] = [[] for _ in range(D)]
    idle = [True] * D
    events: list[tuple[float, int, int, int, int]] = []  # (time, seq, kind, a, b): 0 finish op a; 1 arrival v a at d b
    seq = 0
    link_free: dict[tuple[int, int], float] = {}
    transfers: list[tuple[int, int, int, float, float]] = []
    values = prob.values
    for i in range(n):
        if pending[i] == 0:
            heapq.heappush(ready[place[i]], (key[i], i))
    lat, bw = prob.latency, prob.bytes_per_unit
    now = 0.0
    done = 0
    while True:
        # start what idle devices can run at `now`
        for d in range(D):
            if idle[d] and ready[d]:
                _, i = heapq.heappop(ready[d])
                idle[d] = False
                start[i] = now
                issued[i] = started
                started += 1
                f = now + float(t[i, d])
                heapq.heappush(events, (f, seq, 0, i, d))
                seq += 1
        if not events:
            break
        now = events[0][0]
        while events and events[0][0] == now:
            _, _, kind, a, b = heapq.heappop(events)
            if kind == 0:
                i, d = a, b
                finish[i] = now
                idle[d] = True
                done += 1
                for k in prob.out_values[i]:
                    v = values[k]
                    sent: set[int] = set()
                    for c in v.consumers:
                        dc = place[c]
                        if dc == d:
                            pending[c] -= 1
                            if pending[c] == 0:
                                heapq.heappush(ready[dc], (key[c], c))
                        elif dc not in sent:
                            sent.add(dc)
                            s0 = max(now, link_free.get((d, dc), 0.0))
                            e = s0 + (float(lat[d, dc] + v.bytes / bw[d, dc]) if v.bytes > 0 else 0.0)
                            link_free[(d, dc)] = e
                            transfers.append((k, d, dc, s0, e))
                            heapq.heappush(events, (e, seq, 1, k, dc))
                            seq += 1
            else:
                k, dc = a, b
                for c in values[k].consumers:
                    if place[c] == dc:
                        pending[c] -= 1
                        if pending[c] == 0:
                            heapq.heappush(ready[dc], (key[c], c))
    if done != n:
        raise ValueError("placement could not be scheduled (a cycle in the graph)")
    fin = np.array(finish)
    makespan = float(fin.max()) if n else 0.0
    st = np.array(start)
    peak = peak_memory(prob, place, st, fin, transfers) if memory else np.zeros(D)
    return Schedule(makespan, st, fin, peak, transfers, np.array(issued, np.int64))


def peak_memory(prob: PlacementProblem, place: list[int], start: np.ndarray, finish: np.ndarray,
                transfers: list[tuple[int, int, int, float, float]]) -> np.ndarray:
    """Peak bytes per device under the module's memory rule."""
    D = prob.devices
    resident = np.zeros(D)
    arrive: dict[tuple[int, int], float] = {}
    sent_end: dict[int, float] = {}
    for k, _, dc, _, e in transfers:
        arrive[(k, dc)] = e
        sent_end[k] = max(sent_end.get(k, 0.0), e)
    events: list[list[tuple[float, int]]] = [[] for _ in range(D)]
    for k, v in enumerate(prob.values):
        if not v.consumers and v.producer is None:
            continue
        if v.producer is None:
            for d in {place[c] for c in v.consumers}:
                resident[d] += v.bytes
            continue
        if v.bytes <= 0:
            continue
        p = place[v.producer]
        f = float(finish[v.producer])
        by_dev: dict[int, float] = {}
        for c in v.consumers:
            dc = place[c]
            by_dev[dc] = max(by_dev.get(dc, 0.0), float(finish[c]))
        end_p = max(by_dev.get(p, f), sent_end.get(k, f), f)
        events[p].append((float(start[v.producer]), v.bytes))
        events[p].append((end_p, -v.bytes))
        for dc, last in by_dev.items():
            if dc != p:
                a = arrive[(k, dc)]
                events[dc].append((a, v.bytes))
                events[dc].append((max(last, a), -v.bytes))
    peak = resident.copy()
    for d in range(D):
        cur = best = 0.0
        for _, b in sorted(events[d]):  # at equal times the negative (free) sorts first
            cur += b
            best = max(best, cur)
        peak[d] += best
    return peak
