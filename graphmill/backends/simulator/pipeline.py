"""Pipeline schedules (GPipe, 1F1B) of a partitioned graph, simulated on the chips of the multi-chip system.

Input: the plan ``pipeline-partition`` stores in ``graph.meta["pipeline"]`` (per stage, per micro-batch:
forward and backward time, bytes sent to the next stage) and a ``CostModel`` for the links. Stage ``s`` runs
on chip ``s``; a chip runs one task at a time, in the schedule's fixed order:

* ``gpipe``: all ``M`` forwards, then all ``M`` backwards (micro-batch 0 first, as torch's ScheduleGPipe),
  then the flush (the step ends when the last backward ends);
* ``1f1b``: ``min(K - 1 - s, M)`` warm-up forwards on stage ``s``, then one forward and one backward in
  turn, then the remaining backwards (PipeDream-flush, torch's Schedule1F1B).

A forward of micro-batch ``m`` on stage ``s`` starts when stage ``s - 1``'s forward of ``m`` has ended and
its activations have crossed the link ``(s - 1, s)``; a backward when stage ``s + 1``'s backward of ``m`` has
ended and the gradients crossed ``(s + 1, s)`` (the last stage: after its own forward of ``m``). Each
directed link carries one transfer at a time (``CostModel.transfer_time``): activations on ``(s - 1, s)`` never
wait for gradients on ``(s, s - 1)``. With re-materialization a backward first
recomputes the stage's forward (backward task = forward + backward time).

Step time, per-chip busy time, the bubble (idle fraction of ``K x`` step time; on a perfectly balanced chain
without transfers it is exactly ``(K - 1) / (M + K - 1)``), speedup over one device running the whole
mini-batch without pipeline or re-materialization, peak micro-batches in flight and memory per stage.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from graphmill.ir import UserInputError
from graphmill.passes.pipeline.memory import SCHEDULES, activations  # the planner's: one list, one formula

from .config import as_accel, from_dict
from .devices import DEFAULT_PLACEMENT_ACCEL, load_devices
from .multichip import Span


@dataclass
class PipelineResult:
    schedule: str
    stages: int
    microbatches: int
    step_time: float
    busy: list[float]
    bubble_fraction: float
    one_device_time: float
    in_flight: list[int]
    peak_memory: list[int]
    transfer_bytes: int
    units: str = "cycles"
    spans: list[Span] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.one_device_time / self.step_time if self.step_time > 0 else 1.0

    def to_dict(self) -> dict:
        return {"schedule": self.schedule, "stages": self.stages, "microbatches": self.microbatches,
                "step_time": self.step_time, "busy": self.busy, "bubble_fraction": self.bubble_fraction,
                "one_device_time": self.one_device_time, "speedup_vs_one_device": self.speedup,
                "in_flight": self.in_flight, "peak_memory": self.peak_memory, "transfer_bytes": self.transfer_bytes,
                "units": self.units, "spans": [s.__dict__ for s in self.spans]}

    def gantt(self, path: str) -> None:
        """Write the schedule as a PNG: one row per chip, forwards blue, backwards green, transfers orange."""
        from graphmill.util.plots import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(12, 1 + 0.6 * self.stages))
        colors = {"forward": "tab:blue", "backward": "tab:green", "transfer": "tab:orange"}
        for s in self.spans:
            small = s.kind == "transfer"
            ax.barh(s.device + (0.3 if small else 0), s.end - s.start, left=s.start, height=0.2 if small else 0.5,
                    color=colors.get(s.kind, "grey"), edgecolor="k", linewidth=0.3)
            if not small and self.microbatches <= 16:
                ax.text((s.start + s.end) / 2, s.device, s.name, ha="center", va="center", fontsize=6)
        ax.set_yticks(range(self.stages))
        ax.set_yticklabels([f"stage {d}" for d in range(self.stages)])
        ax.invert_yaxis()
        ax.set_xlabel(self.units)
        ax.set_title(f"{self.schedule}: K={self.stages}, M={self.microbatches}, step {self.step_time:,.0f} "
                     f"{self.units}, bubble {self.bubble_fraction:.1%} (blue F, green B, orange transfers)")
        fig.tight_layout()
        save_figure(fig, path, dpi=100)


def task_order(schedule: str, stage: int, stages: int, microbatches: int) -> list[tuple[str, int]]:
    """The fixed order of ("F" | "B", micro-batch) tasks stage ``stage`` runs."""
    m = microbatches
    if schedule == "gpipe":
        return [("F", i) for i in range(m)] + [("B", i) for i in range(m)]
    if schedule == "1f1b":
        warm = min(stages - 1 - stage, m)
        order = [("F", i) for i in range(warm)]
        for i in range(m - warm):
            order += [("F", warm + i), ("B", i)]
        order += [("B", i) for i in range(m - warm, m)]
        return order
    raise UserInputError(f"unknown pipeline schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


def simulate_pipeline(plan: dict, cost: Any, *, schedule: str = "gpipe", remat: bool | None = None) -> PipelineResult:
    """Simulate one training step of the partition ``plan`` (``graph.meta["pipeline"]``) under ``schedule``."""
    if schedule not in SCHEDULES:
        raise UserInputError(f"unknown pipeline schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    stages = plan["stages"]
    k, m = len(stages), int(plan["microbatches"])
    remat = plan.get("remat", True) if remat is None else remat
    fwd = [float(s["forward"]) for s in stages]
    bwd = [float(s["backward"]) + (fwd[i] if remat else 0.0) for i, s in enumerate(stages)]
    sent = [int(s["send_bytes"]) for s in stages]
    act_t = [float(cost.transfer_time(sent[s], s, s + 1)) if s < k - 1 else 0.0 for s in range(k)]
    grad_t = [float(cost.transfer_time(sent[s], s + 1, s)) if s < k - 1 else 0.0 for s in range(k)]
    orders = [task_order(schedule, s, k, m) for s in range(k)]
    end: dict[tuple[str, int, int], float] = {}
    arrive: dict[tuple[str, int, int], float] = {}  # (kind, stage receiving, micro-batch) -> arrival
    link_free: dict[tuple[int, int], float] = {}
    nxt = [0] * k
    free = [0.0] * k
    busy = [0.0] * k
    spans: list[Span] = []
    moved = 0
    in_flight = [0] * k
    live = [0] * k
    remaining = sum(len(o) for o in orders)
    while remaining:
        progress = False
        for s in range(k):
            while nxt[s] < len(orders[s]):
                kind, i = orders[s][nxt[s]]
                if kind == "F":
                    dep = 0.0 if s == 0 else arrive.get(("F", s, i))
                else:
                    dep = end.get(("F", s, i)) if s == k - 1 else arrive.get(("B", s, i))
                if dep is None:
                    break
                start = max(free[s], dep)
                dur = fwd[s] if kind == "F" else bwd[s]
                stop = start + dur
                end[(kind, s, i)] = stop
                free[s] = stop
                busy[s] += dur
                spans.append(Span(f"{kind}{i}", s, start, stop, "forward" if kind == "F" else "backward"))
                live[s] += 1 if kind == "F" else -1
                in_flight[s] = max(in_flight[s], live[s])
                dst = s + 1 if kind == "F" else s - 1
                if 0 <= dst < k:
                    t = act_t[s] if kind == "F" else grad_t[dst]
                    nbytes = sent[s] if kind == "F" else sent[dst]
                    go = max(stop, link_free.get((s, dst), 0.0))
                    link_free[(s, dst)] = go + t
                    arrive[(kind, dst, i)] = go + t
                    moved += nbytes
                    if t > 0:
                        spans.append(Span(f"{kind}{i} {s}->{dst}", dst, go, go + t, "transfer"))
                nxt[s] += 1
                remaining -= 1
                progress = True
        if not progress:  # pragma: no cover - the orders above never deadlock
            raise UserInputError(f"pipeline schedule {schedule!r} deadlocked")
    step = max(free)
    bubble = 1.0 - sum(busy) / (k * step) if step > 0 else 0.0
    peak = []
    for s, st in enumerate(stages):
        d = st.get("memory_detail", {})
        resident = d.get("weights", 0) + d.get("gradients", 0) + d.get("optimizer", 0)
        inp, internal = d.get("input_micro", 0), d.get("internal_micro", 0)
        n = in_flight[s]
        peak.append(int(resident + activations(n, inp, internal, remat)))
    return PipelineResult(schedule, k, m, step, busy, bubble, float(plan.get("one_device_time", sum(busy))),
                          in_flight, peak, moved, plan.get("units", "cycles"), spans)


# -- devices: which chips the stages run on ------------------------------------------------------------------

DEFAULT_ACCEL = {**DEFAULT_PLACEMENT_ACCEL, "name": "pipeline-default",
                 "system": {**DEFAULT_PLACEMENT_ACCEL["system"], "chips": 8}}
"""The accelerator `graphmill partition` uses without --accel/--devices-file: eight 128x128 bf16 chips at
1 GHz with ~1 TB/s DRAM, linked at 64 bytes per cycle (64 GB/s) with 1 us latency."""


@dataclass
class PipelineDevices:
    """The chips a pipeline runs on (stage ``s`` on chip ``s``): their one accelerator config (identical chips,
    ``system.chips`` = ``count``, its ``link_*`` the link between neighbours), and memory per chip in bytes
    (empty: unknown, no cap)."""

    accel: Any
    count: int
    memory: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    @property
    def memory_bytes(self) -> float:
        """The smallest chip's memory (0: unknown)."""
        return min(self.memory) if self.memory else 0.0

    def memory_cap(self, stages: int) -> float:
        """The memory cap of a ``stages``-stage pipeline: the smallest memory among the chips it runs on
        (chips ``0 .. stages - 1``; 0: unknown, no cap)."""
        return min(self.memory[:stages]) if self.memory else 0.0


def pipeline_devices(accel: Any = None, devices_file: str | os.PathLike | None = None) -> PipelineDevices:
    """The devices of ``--accel A.toml`` (its ``system.chips``), of ``--devices-file D.toml``, or the default.

    The devices file is the device-placement format, read by ``devices.load_devices`` (one parser, one set of
    error messages; README "Device placement"). A pipeline's stages run on identical chips joined by one link,
    so a file is refused, in one line naming it and the device (or pair), when a device has a relative ``speed``
    other than 1, an ``accel`` config different from the first device's, or a ``[[links]]`` override that makes
    one pair's link differ from the others'. Each device's ``memory_gb`` is its stage's memory; the file's link
    (latency, bytes per cycle) carries the boundary transfers. Link values are in cycles of the file's reference
    clock; when the devices' own ``accel`` runs at another clock they are converted to its cycles.
    """
    if accel is not None and devices_file is not None:
        raise UserInputError("give either --accel or --devices-file, not both")
    if devices_file is None:
        cfg = as_accel(accel) if accel is not None else from_dict(DEFAULT_ACCEL, "the default accelerator")
        return PipelineDevices(cfg, cfg.chips, [], [f"chip{i}" for i in range(cfg.chips)])
    path = os.fspath(devices_file)
    ds = load_devices(path)
    first = ds.accels[0].to_dict()
    for i, name in enumerate(ds.names):
        if ds.speeds[i] != 1.0:
            raise UserInputError(f"{path}: device {name!r}: speed {ds.speeds[i]:g}: pipeline stages run on identical "
                                 "devices of the base accelerator (speed 1); heterogeneous devices are for "
                                 "graphmill place")
        if ds.accels[i].to_dict() != first:
            raise UserInputError(f"{path}: device {name!r}: its accelerator differs from device {ds.names[0]!r}'s: "
                                 "pipeline stages run on identical devices; heterogeneous devices are for "
                                 "graphmill place")
    if not ds.uniform_link():
        lat, bw = ds.latency, ds.bytes_per_unit
        i, j = next((i, j) for i in range(ds.count) for j in range(ds.count) if i != j and
                    (lat[i, j] != lat[0, 1] or bw[i, j] != bw[0, 1]))
        raise UserInputError(f"{path}: the link between devices {ds.names[i]!r} and {ds.names[j]!r} differs from the "
                             f"one between {ds.names[0]!r} and {ds.names[1]!r}: pipeline stages run on identical "
                             "devices joined by one link; per-pair links are for graphmill place")
    cfg = ds.accels[0]
    if ds.count > 1:  # the file's link, from cycles of its reference clock into the devices' own cycles
        scale = cfg.clock_mhz / ds.ref_mhz
        latency, bpc = _plain(float(ds.latency[0, 1]) * scale), _plain(float(ds.bytes_per_unit[0, 1]) / scale)
    else:  # one device: nothing crosses a link
        latency, bpc = cfg.link_latency_cycles, cfg.link_bw_bytes_per_cycle
    cfg = dataclasses.replace(cfg, chips=ds.count, link_bw_bytes_per_cycle=bpc,
                              link_latency_cycles=latency).validate(path)
    return PipelineDevices(cfg, ds.count, list(ds.memory), list(ds.names))


def _plain(x: float) -> float | int:
    """An integral float as an int, so that the report's link reads as the file wrote it."""
    return int(x) if x.is_integer() else x
