"""Event-driven simulation of a graph on several identical chips.

Each node runs on chip ``node.meta["device"]`` (default 0) for ``cost.op_time(node, device)`` cycles; a
chip runs one node at a time, choosing among its ready nodes the earliest in the graph's order. A value
consumed on another chip is sent once per destination chip over the directed link (src, dst), which
carries one transfer at a time: ``link_latency_cycles + ceil(bytes / link_bw_bytes_per_cycle)``. Graph
inputs and constants are present on every chip at cycle 0. Results: makespan, per-chip busy cycles,
bytes moved, peak memory per chip (resident weights + the largest sum of live activations it holds), and
the schedule, which ``gantt()`` draws.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from graphmill.ir import Graph, UserInputError
from graphmill.ir.summary import constant_values, is_constant_node

from .config import as_accel
from .costmodel import CostModel, SimulatorCostModel, value_bytes


@dataclass
class Span:
    name: str
    device: int
    start: float
    end: float
    kind: str = "op"  # "op" | "transfer"


@dataclass
class MultiChipResult:
    makespan: float
    busy: dict[int, float]
    transfer_bytes: int
    peak_memory: dict[int, int]
    spans: list[Span] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"makespan": self.makespan, "busy": self.busy, "transfer_bytes": self.transfer_bytes,
                "peak_memory": self.peak_memory,
                "spans": [s.__dict__ for s in self.spans]}

    def gantt(self, path: str) -> None:
        from graphmill.util.plots import pyplot, save_figure

        plt = pyplot()
        devs = sorted({s.device for s in self.spans})
        fig, ax = plt.subplots(figsize=(12, 1 + 0.6 * len(devs)))
        for s in self.spans:
            y = devs.index(s.device)
            ax.barh(y + (0.3 if s.kind == "transfer" else 0), s.end - s.start, left=s.start,
                    height=0.25 if s.kind == "transfer" else 0.5,
                    color="tab:orange" if s.kind == "transfer" else "tab:blue", edgecolor="k", linewidth=0.3)
        ax.set_yticks(range(len(devs)))
        ax.set_yticklabels([f"chip {d}" for d in devs])
        ax.set_xlabel("cycle")
        ax.set_title(f"schedule: makespan {self.makespan:,.0f} cycles (blue: ops, orange: incoming transfers)")
        fig.tight_layout()
        save_figure(fig, path, dpi=100)


def simulate_multichip(graph: Graph, accel, cost: CostModel | None = None) -> MultiChipResult:
    cfg = as_accel(accel)
    cost = cost or SimulatorCostModel(cfg)
    constant = constant_values(graph)
    nodes = [n for n in graph.nodes if not is_constant_node(n, constant)]
    if any(v is not None and (v.type is None or v.shape is None) for n in nodes for v in n.outputs):
        # a file as torch.onnx.export writes it declares no intermediate shapes: infer them (types only), as
        # simulate_graph does; placement loops pass graphs already typed and skip this
        from graphmill.frontend.onnx_shape_inference import infer_shapes

        infer_shapes(graph)
    order = {id(n): i for i, n in enumerate(nodes)}
    dev = {}
    for n in nodes:
        d = n.meta.get("device", 0)
        if not isinstance(d, int) or isinstance(d, bool) or d < 0 or d >= cfg.chips:
            raise UserInputError(f"{n.describe()}: meta['device'] = {d!r} is not a chip of this system "
                                 f"(0..{cfg.chips - 1}; set system.chips)")
        dev[id(n)] = d
    producer = {}
    for n in nodes:
        for v in n.outputs:
            if v is not None:
                producer[id(v)] = n
    deps = {id(n): 0 for n in nodes}
    ready_at = {id(n): 0.0 for n in nodes}
    consumers: dict[int, list] = {}
    for n in nodes:
        seen = set()
        for v in n.inputs:
            if v is not None and id(v) in producer and id(v) not in seen:
                seen.add(id(v))
                deps[id(n)] += 1
                consumers.setdefault(id(v), []).append(n)
    link_free: dict[tuple[int, int], float] = {}
    arrived: dict[tuple[int, int], float] = {}  # (value, device) -> arrival
    spans: list[Span] = []
    busy = {d: 0.0 for d in range(cfg.chips)}
    moved = 0
    events: list = []
    seq = 0
    for n in nodes:
        if deps[id(n)] == 0:
            heapq.heappush(events, (0.0, seq, "ready", n))
            seq += 1
    queues: dict[int, list] = {d: [] for d in range(cfg.chips)}
    idle = {d: True for d in range(cfg.chips)}
    finish_time: dict[int, float] = {}

    def try_start(d: int, now: float) -> None:
        nonlocal seq
        if idle[d] and queues[d]:
            _, n = heapq.heappop(queues[d])
            t = cost.op_time(n, d)
            idle[d] = False
            spans.append(Span(n.name or n.op_type, d, now, now + t))
            busy[d] += t
            heapq.heappush(events, (now + t, seq, "finish", n))
            seq += 1

    while events:
        now, _, kind, n = heapq.heappop(events)
        d = dev[id(n)]
        if kind == "ready":
            heapq.heappush(queues[d], (order[id(n)], n))
            try_start(d, now)
            continue
        finish_time[id(n)] = now
        idle[d] = True
        for v in n.outputs:
            if v is None:
                continue
            for c in consumers.get(id(v), []):
                dc = dev[id(c)]
                key = (id(v), dc)
                if key not in arrived:
                    if dc == d:
                        arrived[key] = now
                    else:
                        nbytes = value_bytes(v)
                        start = max(now, link_free.get((d, dc), 0.0))
                        end = start + cost.transfer_time(nbytes, d, dc)
                        link_free[(d, dc)] = end
                        arrived[key] = end
                        moved += nbytes
                        spans.append(Span(f"{v.name} {d}->{dc}", dc, start, end, "transfer"))
                ready_at[id(c)] = max(ready_at[id(c)], arrived[key])
                deps[id(c)] -= 1
                if deps[id(c)] == 0:
                    heapq.heappush(events, (ready_at[id(c)], seq, "ready", c))
                    seq += 1
        try_start(d, now)
    if len(finish_time) != len(nodes):
        raise UserInputError("graph could not be scheduled (a cycle or an undefined input)")
    makespan = max(finish_time.values(), default=0.0)
    # peak memory: weights on each chip + live activations (from production to the last consumer's finish)
    peak = {}
    for d in range(cfg.chips):
        weights = sum(cost.memory(n) for n in nodes if dev[id(n)] == d)
        ev = []
        for n in nodes:
            for v in n.outputs:
                if v is None:
                    continue
                holders = {dev[id(n)]} | {dev[id(c)] for c in consumers.get(id(v), [])}
                if d not in holders:
                    continue
                start = finish_time[id(n)] if dev[id(n)] == d else arrived.get((id(v), d), finish_time[id(n)])
                end = max([finish_time[id(c)] for c in consumers.get(id(v), []) if dev[id(c)] == d or
                           dev[id(n)] == d] + [start])
                ev.append((start, value_bytes(v)))
                ev.append((end + 1e-9, -value_bytes(v)))
        cur = best = 0
        for _, b in sorted(ev):
            cur += b
            best = max(best, cur)
        peak[d] = weights + best
    return MultiChipResult(makespan, busy, moved, peak, spans)
