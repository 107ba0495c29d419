"""Baseline placements (the papers' comparisons): single device, round-robin by layer, an expert-style
contiguous layer split, HEFT (per op, and per colocation group) and METIS. Each returns op -> device for a
``PlacementProblem``; the schedule simulation (``schedule.simulate``) then decides when each op runs.

* ``single``: every op on the device where the ops' total time is least (ties: the lowest index) among the
  devices whose memory holds the whole graph, activations included (the schedule's peak on one device); the
  fastest device when none does (the result is then invalid).
* ``round-robin``: layer ``k`` (``problem.layer_index``) on device ``k mod D``.
* ``expert``: the layers, in the graph's order, cut into ``D`` contiguous runs whose time (on device 0) is as
  close as possible to each device's share of the total, shares proportional to the devices' speed (a human
  would give the faster device more layers), device ``k`` taking run ``k``.
* ``heft``: Topcuoglu et al. (2002). Upward rank ``rank(i) = w(i) + max_j (c(i, j) + rank(j))``, ``w`` the op's
  mean time over the devices, ``c`` the bytes op ``i`` sends op ``j`` over the mean link (mean over ordered pairs
  of different devices of ``latency + bytes / bytes_per_unit``; 0 with one device). Ops in decreasing rank (ties:
  graph order); each goes to the device giving the earliest finish time, with insertion into the first idle gap
  long enough after its data-ready time (ties: the lowest device index); data-ready on device ``d`` is the latest
  ``finish(pred) + latency + bytes / bytes_per_unit`` over predecessors (0 on the same device; no contention).
  Devices whose memory would be exceeded by the op's weights are skipped while another fits.
* ``heft-colocated``: ``heft`` over the colocation groups (``problem.colocation_groups``: an op with its
  gradient and update, the groups the ``rl`` and ``hierarchical`` placers place): the first op of a group to come
  up in rank order picks its device as ``heft`` does, among the devices with room for the weights of the whole
  group, and every later member goes to that device (inserted into its first idle gap). HEFT sees weights only:
  when the simulated placement exceeds a device's memory (activations), that device's room for weights shrinks
  to the weights it holds times its memory over its peak and the groups are placed again (up to 8 times). On a
  forward graph every group is one op and this is ``heft`` (where ``heft`` fits in memory). On a training step
  it is the fair heuristic to set beside the learned placers, which never split a group: op-level ``heft`` puts a
  gradient wherever it finishes earliest, away from the activations it reads, and pays their transfer
  (Inception-V3's training step at batch 32 on 4 chips: 68.8 Mcycles for ``heft``, 46.5 for ``heft-colocated``).
* ``metis``: a ``D``-way partition of the op graph by METIS (``pymetis``, seeded), vertex weight the op's mean
  time, edge weight the bytes exchanged, part ``k`` sized for device ``k``'s share of the work (target weights
  proportional to the devices' speed) and placed on device ``k``.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable

import numpy as np

from graphmill.ir import UserInputError
from graphmill.util.native_output import native_stdout_discarded

from .problem import PlacementProblem


def weights_on(prob: PlacementProblem, place: list[int]) -> np.ndarray:
    """Bytes of producer-less values (weights) each device holds for a placement."""
    out = np.zeros(prob.devices)
    for v in prob.values:
        if v.producer is None and v.consumers:
            for d in {place[c] for c in v.consumers}:
                out[d] += v.bytes
    return out


def single(prob: PlacementProblem) -> list[int]:
    from .schedule import simulate

    total = prob.op_time.sum(axis=0)
    # what the whole graph needs on one device, activations included (the schedule's peak; weights and inputs
    # alone let it pick a device too small for a training step's activations, then refuse the run as invalid).
    # On one device the ops run in one order whatever its speed, so the peak is the same on every device.
    need = float(simulate(prob, [0] * prob.n).peak[0]) if prob.n else 0.0
    fits = [d for d in range(prob.devices) if need <= prob.capacity[d]]
    cands = fits or list(range(prob.devices))
    d = min(cands, key=lambda x: (total[x], x))
    return [d] * prob.n


def round_robin(prob: PlacementProblem) -> list[int]:
    return [layer % prob.devices for layer in prob.layers]


def expert(prob: PlacementProblem) -> list[int]:
    D = prob.devices
    nl = max(prob.layers) + 1
    lt = np.zeros(nl)
    np.add.at(lt, prob.layers, prob.op_time[:, 0])
    speed = 1.0 / np.maximum(prob.op_time.sum(axis=0), 1e-30)
    share = np.cumsum(speed / speed.sum()) * lt.sum()
    cum = np.cumsum(lt)
    dev = np.zeros(nl, dtype=int)
    k = 0
    for layer in range(nl):
        # move on to the next device once this layer's midpoint passes the current device's share
        mid = cum[layer] - lt[layer] / 2
        while k < D - 1 and mid > share[k]:
            k += 1
        dev[layer] = k
    return [int(dev[layer]) for layer in prob.layers]


def mean_link(prob: PlacementProblem) -> tuple[float, float]:
    """(mean latency, mean seconds-per-byte) over ordered pairs of different devices."""
    D = prob.devices
    if D < 2:
        return 0.0, 0.0
    off = ~np.eye(D, dtype=bool)
    return float(prob.latency[off].mean()), float((1.0 / prob.bytes_per_unit[off]).mean())


def upward_rank(prob: PlacementProblem) -> np.ndarray:
    w = prob.op_time.mean(axis=1)
    lat, inv = mean_link(prob)
    D = prob.devices
    rank = np.zeros(prob.n)
    for i in range(prob.n - 1, -1, -1):
        best = 0.0
        for j in prob.succs[i]:
            b = prob.edge_bytes[(i, j)]
            c = (lat + b * inv) if (D > 1 and b > 0) else 0.0
            best = max(best, c + rank[j])
        rank[i] = w[i] + best
    return rank


def heft(prob: PlacementProblem, *, colocate: bool = False, capacity: np.ndarray | None = None) -> list[int]:
    """HEFT (module docstring); ``colocate``: each colocation group on the device its first op chose;
    ``capacity``: the bytes of weights each device may take (default: its memory)."""
    n, D = prob.n, prob.devices
    capacity = prob.capacity if capacity is None else capacity
    rank = upward_rank(prob)
    order = sorted(range(n), key=lambda i: (-rank[i], i))
    place = [-1] * n
    fin = np.zeros(n)
    slots = [BusyIntervals() for _ in range(D)]
    held = np.zeros(D)
    groups, need = _placed_units(prob, colocate)
    group_device: dict[int, int] = {}
    for i in order:
        best = None
        if groups[i] in group_device:  # a later member of a colocation group: its device is decided
            fits = [group_device[groups[i]]]
        else:
            fits = [d for d in range(D) if held[d] + need[groups[i]] <= capacity[d]] or list(range(D))
        for d in fits:
            ready = 0.0
            for p in prob.preds[i]:
                pd = place[p]
                c = 0.0 if pd == d else prob.transfer(prob.edge_bytes[(p, i)], pd, d)
                ready = max(ready, fin[p] + c)
            w = float(prob.op_time[i, d])
            s = slots[d].earliest(ready, w)
            if best is None or s + w < best[0]:
                best = (s + w, d, s)
        f, d, s = best
        place[i] = d
        fin[i] = f
        slots[d].add(s, f)
        if groups[i] not in group_device:
            held[d] += need[groups[i]]
            group_device[groups[i]] = d
    return place


def _placed_units(prob: PlacementProblem, colocate: bool) -> tuple[list[int], list[float]]:
    """What ``heft`` places at once, op -> unit (the colocation groups, or one op each: none known or
    ``colocate`` off), and the bytes of weights each unit needs room for: a group's first op decides the device of
    all its members, so it must find room for all of their weights."""
    n = prob.n
    if colocate and len(prob.groups) == n:
        return prob.groups, group_weights(prob, prob.groups)
    return list(range(n)), [float(sum(prob.values[k].bytes for k in prob.resident[i])) for i in range(n)]


def group_weights(prob: PlacementProblem, groups: list[int]) -> list[float]:
    """Bytes of the distinct weights (producer-less values) each colocation group's ops read, by group index: a
    forward op and its update read the same weight, which the device holds once."""
    values: list[set[int]] = [set() for _ in range(max(groups, default=-1) + 1)]
    for i, g in enumerate(groups):
        values[g].update(prob.resident[i])
    return [float(sum(prob.values[k].bytes for k in ks)) for ks in values]


def heft_colocated(prob: PlacementProblem, *, attempts: int = 8) -> list[int]:
    """``heft`` over colocation groups, valid in memory where it can be: HEFT sees weights only, so when the
    simulated placement needs more than a device's memory (activations, gradients), that device's room for
    weights shrinks to the weights it holds times its memory over its peak, and the groups are placed again (at
    most ``attempts`` times; the last placement is returned either way, and ``place`` refuses it if it is still
    invalid). Weightless ops follow HEFT's finish times, so a tight memory may still defeat it where METIS fits."""
    from .schedule import simulate

    capacity = np.asarray(prob.capacity, dtype=float)
    room = capacity.copy()
    groups, need = _placed_units(prob, colocate=True)
    place = heft(prob, colocate=True, capacity=room)
    for _ in range(attempts):
        peak = np.asarray(simulate(prob, place).peak, dtype=float)
        excess = peak - capacity
        if (excess <= 0).all():
            break
        # the weights a device holds, shrunk in the proportion its peak is over: where activations dominate
        # (a training step: 41 MB of activations beside 4 MB of weights) shrinking by the excess alone left room
        # for every weight, so the same one-device placement came back each time (an outside check)
        held, counted = np.zeros(prob.devices), set()
        for i, g in enumerate(groups):  # a group's members share its device: its weights count once, there
            if g not in counted:
                counted.add(g)
                held[place[i]] += need[g]
        over = excess > 0
        scaled = held * capacity / np.maximum(peak, 1.0)
        room = np.where(over, np.minimum(room, scaled), room)
        place = heft(prob, colocate=True, capacity=room)
    return place


class BusyIntervals:
    """A device's busy intervals, sorted and not overlapping, and the earliest idle gap of a given length at or
    after a time (HEFT's insertion policy). The positive gaps between intervals are kept beside them, so a search
    skips back-to-back intervals: scanning every interval after ``ready`` made HEFT quadratic on wide graphs
    (10,000 independent ops took 23 s, 50,000 over 90 s; each op scanned the whole busy list)."""

    def __init__(self, intervals: Iterable[tuple[float, float]] = ()) -> None:
        self.busy: list[tuple[float, float]] = sorted(intervals)
        self.holes: list[tuple[float, float]] = [(a[1], b[0]) for a, b in zip(self.busy, self.busy[1:])
                                                 if b[0] > a[1]]

    def earliest(self, ready: float, w: float) -> float:
        """The earliest start >= ready of a gap of length w."""
        busy = self.busy
        t = ready
        # intervals do not overlap, so their ends are sorted too: only the last one starting before `ready` can
        # still be busy at `ready`; one starting at `ready` leaves a gap of 0 before it, where a zero-time op fits
        # (a torch export's Shape, Slice and Squeeze ops: pushed past that interval, they went to other devices
        # and paid ~1,000 cycles of link time each; an outside check's LSTM model, 10,222 cycles against 7,207)
        k = bisect.bisect_left(busy, (ready,))
        if k > 0 and busy[k - 1][1] > t:
            t = busy[k - 1][1]
        if k == len(busy) or busy[k][0] - t >= w:
            return t
        # past interval k, a start is the end of an interval: the first positive gap after it that is long enough
        for start, end in itertools.islice(self.holes, bisect.bisect_left(self.holes, (busy[k][1],)), None):
            if end - start >= w:
                return start
        return busy[-1][1]

    def add(self, start: float, finish: float) -> None:
        """Mark [start, finish) busy (it lies in a gap)."""
        busy = self.busy
        k = bisect.bisect_left(busy, (start, finish))
        before = busy[k - 1][1] if k > 0 else None
        after = busy[k][0] if k < len(busy) else None
        busy.insert(k, (start, finish))
        if before is not None and after is not None and after > before:
            self.holes.remove((before, after))
        for hole in ((before, start), (finish, after)):
            if hole[0] is not None and hole[1] is not None and hole[1] > hole[0]:
                bisect.insort(self.holes, hole)


def metis(prob: PlacementProblem, seed: int = 0) -> list[int]:
    try:
        import pymetis
    except ImportError:
        raise UserInputError("method metis needs the pymetis package: pip install pymetis (it is in graphmill's "
                             "'test' extra)") from None
    n, D = prob.n, prob.devices
    if D == 1 or n <= 1:
        return [0] * n
    w = prob.op_time.mean(axis=1)
    scale = 1e6 / max(w.max(), 1e-30)
    vw = [max(1, int(round(x * scale))) for x in w]
    adj: list[dict[int, int]] = [dict() for _ in range(n)]
    emax = max(prob.edge_bytes.values(), default=1) or 1
    for (a, b), nb in prob.edge_bytes.items():
        if a == b:
            continue
        ew = max(1, int(round(nb / emax * 1e6)))
        adj[a][b] = adj[a].get(b, 0) + ew
        adj[b][a] = adj[b].get(a, 0) + ew
    xadj, adjncy, ewts = [0], [], []
    for i in range(n):
        for j in sorted(adj[i]):
            adjncy.append(j)
            ewts.append(adj[i][j])
        xadj.append(len(adjncy))
    speed = 1.0 / np.maximum(prob.op_time.sum(axis=0), 1e-30)
    share = [float(x) for x in speed / speed.sum()]
    kw: dict = {"vweights": vw, "eweights": ewts, "tpwgts": share, "options": pymetis.Options(seed=seed)}
    if hasattr(pymetis, "CSRAdjacency"):
        kw["adjacency"] = pymetis.CSRAdjacency(xadj, adjncy)
    else:
        kw.update(xadj=xadj, adjncy=adjncy)
    with native_stdout_discarded():  # METIS printf()s on stdout, where --json - writes its report
        _, parts = pymetis.part_graph(D, **kw)
    return [int(p) for p in parts]  # part k was sized for device k's share


BASELINES = {"single": single, "round-robin": round_robin, "expert": expert, "heft": heft,
             "heft-colocated": heft_colocated, "metis": metis}
