"""Simulation results: per-layer records, totals, JSON, and a plot (per-layer cycles + roofline).

JSON schema (``SimReport.to_dict()``)::

    {"accelerator": {...AccelConfig...}, "model": "graphmill" | "scalesim-compat",
     "bandwidth_mode": "user" | "calc",
     "total_cycles": int, "compute_cycles": int, "stall_cycles": int,
     "latency_ms": float, "energy_uj": float, "dram_read_bytes": int, "dram_write_bytes": int,
     "macs": int, "utilization": float,
     "partial": bool, "uncosted": [{"name", "op", "reason"}], "notes": [str],
     "layers": [{"name", "op", "shape", "kind" ("array" | "vector"), "compute_cycles", "stall_cycles",
                 "total_cycles", "utilization", "dram_read_bytes", "dram_write_bytes", "macs",
                 "energy_pj", "repeat", "dram_bw_needed"}]}

``total_cycles`` of a layer = compute + stall cycles of all its instances (``repeat``); utilization =
MACs / (total_cycles * rows * cols) for array layers, elements / (cycles * lanes) for vector layers.
``model``: which memory-system arithmetic produced the numbers (engine.py). ``partial``: some nodes could
not be costed (listed in ``uncosted``; the totals leave them out). ``dram_bw_needed`` (CALC bandwidth mode
only, else null): the DRAM words per cycle a layer needs, {"ifmap", "filter", "ofmap"}, SCALE-Sim's
BANDWIDTH_REPORT figures. ``notes``: what a reader must know to compare the figures (the table prints each
as a ``note:`` line); none at present (with --scalesim-compat every figure compared with SCALE-Sim's is its).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field

from graphmill.util.text import one_line

from .config import AccelConfig


#: per-layer plots draw a bar per layer up to this many layers, stacked steps beyond
BARS_UP_TO = 2000

_MODEL_TEXT = {"graphmill": "graphmill's memory arithmetic; --scalesim-compat for SCALE-Sim 3.0.0's",
               "scalesim-compat": "SCALE-Sim 3.0.0's arithmetic: double-counted prefetch stall, its "
                                  "write-buffer accounting, DRAM reads in whole prefetch blocks"}


def uncosted_text(uncosted: list[dict], most: int = 5) -> str:
    """'name (op), ...' of uncosted nodes, the first ``most`` of them."""
    items = [f"{one_line(u['name'])} ({one_line(u['op'])})" for u in uncosted[:most]]
    more = f", and {len(uncosted) - most} more" if len(uncosted) > most else ""
    return ", ".join(items) + more


@dataclass
class LayerResult:
    name: str
    op: str
    shape: str
    kind: str
    compute_cycles: int
    stall_cycles: int
    total_cycles: int
    utilization: float
    dram_read_bytes: int
    dram_write_bytes: int
    macs: int = 0
    energy_pj: float = 0.0
    repeat: int = 1
    dram_bw_needed: dict[str, float] | None = None


@dataclass
class SimReport:
    accel: AccelConfig
    layers: list[LayerResult] = field(default_factory=list)
    model: str = "graphmill"
    uncosted: list[dict] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)  # e.g. the sizes symbolic dimensions were simulated at

    @property
    def partial(self) -> bool:
        """True when some nodes could not be costed: the totals leave them out."""
        return bool(self.uncosted)

    @property
    def notes(self) -> list[str]:
        """Caveats on comparing the figures (JSON ``notes``, the table's ``note:`` lines): the sizes a model's
        symbolic dimensions were simulated at. (With --scalesim-compat, USER mode's DRAM reads are SCALE-Sim's
        too, its whole prefetch blocks: no caveat.) A model with no layer at all is said to be one: 0 cycles alone
        read as a failure (an outside check's fuzzer: shape ops and constants only)."""
        if not self.layers and not self.uncosted:
            return [*self.caveats, "nothing to compute: every op is free on the accelerator (shape and layout ops) or "
                                   "computed from constants alone"]
        return list(self.caveats)

    @property
    def total_cycles(self) -> int:
        return sum(x.total_cycles for x in self.layers)

    @property
    def compute_cycles(self) -> int:
        return sum(x.compute_cycles for x in self.layers)

    @property
    def stall_cycles(self) -> int:
        return sum(x.stall_cycles for x in self.layers)

    @property
    def macs(self) -> int:
        return sum(x.macs for x in self.layers)

    def to_dict(self) -> dict:
        a = self.accel
        tot = self.total_cycles
        return {
            "accelerator": a.to_dict(),
            "model": self.model,
            "bandwidth_mode": a.bandwidth_mode,
            "total_cycles": tot,
            "compute_cycles": self.compute_cycles,
            "stall_cycles": self.stall_cycles,
            "latency_ms": tot / (a.clock_mhz * 1e3),
            "energy_uj": sum(x.energy_pj for x in self.layers) / 1e6,
            "dram_read_bytes": sum(x.dram_read_bytes for x in self.layers),
            "dram_write_bytes": sum(x.dram_write_bytes for x in self.layers),
            "macs": self.macs,
            "utilization": self.macs / (tot * a.rows * a.cols) if tot else 0.0,
            "partial": self.partial,
            "uncosted": [dict(u) for u in self.uncosted],
            "notes": self.notes,
            "layers": [asdict(x) for x in self.layers],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        out = io.StringIO()
        a = self.accel
        calc = a.bandwidth_mode == "calc"
        dram = "CALC (no DRAM stalls; the bandwidth each layer needs is reported)" if calc else \
            f"{a.ifmap_bw_words}/{a.filter_bw_words}/{a.ofmap_bw_words} words/cycle"
        print(f"accelerator {one_line(a.name)}: {a.rows}x{a.cols} {a.dataflow}, buffers {a.ifmap_kb:g}/{a.filter_kb:g}/"
              f"{a.ofmap_kb:g} KiB, DRAM {dram}, {a.clock_mhz:g} MHz", file=out)
        print(f"model: {self.model} ({_MODEL_TEXT.get(self.model, 'graphmill with some of SCALE-Sim 3.0.0')})",
              file=out)
        bw_head = f" {'DRAM need if/fl/of (words/cycle)':>34}" if calc else ""
        print(f"{'layer':<28} {'op':<18} {'shape':<24} {'cycles':>12} {'stall':>10} {'util':>6} "
              f"{'DRAM rd':>11} {'DRAM wr':>11}{bw_head}", file=out)
        for x in self.layers:
            bw = ""
            if calc and x.dram_bw_needed is not None:
                n = x.dram_bw_needed
                bw = " " + f"{n['ifmap']:.2f}/{n['filter']:.2f}/{n['ofmap']:.2f}".rjust(34)
            print(f"{one_line(x.name)[:28]:<28} {one_line(x.op)[:18]:<18} {x.shape:<24} {x.total_cycles:>12,} "
                  f"{x.stall_cycles:>10,} "
                  f"{x.utilization:>6.1%} {x.dram_read_bytes:>11,} {x.dram_write_bytes:>11,}{bw}", file=out)
        d = self.to_dict()
        print(f"total: {d['total_cycles']:,} cycles ({d['compute_cycles']:,} compute + {d['stall_cycles']:,} stall) "
              f"= {d['latency_ms']:.4g} ms at {a.clock_mhz:g} MHz; utilization {d['utilization']:.1%}; "
              f"DRAM {d['dram_read_bytes']:,} B read, {d['dram_write_bytes']:,} B written; "
              f"energy {d['energy_uj']:.1f} uJ", file=out)
        for note in self.notes:
            print(f"note: {one_line(note)}", file=out)
        if self.partial:
            print(f"partial: the totals leave out {len(self.uncosted)} node(s) the simulator cannot cost: "
                  f"{uncosted_text(self.uncosted)}", file=out)
        return out.getvalue()

    def plot(self, path: str) -> None:
        """Per-layer cycles (compute + stall) and a roofline of the layers; written atomically as PNG."""
        from graphmill.util.plots import pyplot, save_figure

        plt = pyplot()
        a = self.accel
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
        import numpy as np

        idx = np.arange(len(self.layers))
        compute = np.array([x.compute_cycles for x in self.layers], dtype=float)
        stall = np.array([x.stall_cycles for x in self.layers], dtype=float)
        if len(idx) <= BARS_UP_TO:
            ax1.bar(idx, compute, label="compute")
            ax1.bar(idx, stall, bottom=compute, label="stall")
        else:  # a bar is a patch each: 50,000 layers took minutes to draw; stacked steps are two artists
            ax1.fill_between(idx, 0, compute, step="mid", label="compute")
            ax1.fill_between(idx, compute, compute + stall, step="mid", label="stall")
        ax1.set_xlabel("layer")
        ax1.set_ylabel("cycles")
        ax1.set_title(f"per-layer cycles on {a.name}")
        # "best" searches every artist's data (3 of the 3 minutes a 50,000-layer plot took): fixed beyond the bars
        where = "best" if len(idx) <= BARS_UP_TO else "upper right"
        ax1.legend(loc=where)
        peak = a.rows * a.cols  # MACs / cycle
        bw = (a.ifmap_bw_words + a.filter_bw_words + a.ofmap_bw_words) * a.word_bytes  # bytes / cycle
        xs, ys = [], []
        for x in self.layers:
            if x.macs and x.total_cycles:
                traffic = max(1, x.dram_read_bytes + x.dram_write_bytes)
                xs.append(x.macs / traffic)
                ys.append(x.macs / x.total_cycles)
        oi = np.logspace(-2, 4, 200)
        ax2.loglog(oi, np.minimum(peak, oi * bw), "k-", label=f"roof: {peak} MAC/cycle, {bw} B/cycle")
        ax2.loglog(xs, ys, "o", alpha=0.7, label="layers")
        ax2.set_xlabel("operational intensity (MAC / DRAM byte)")
        ax2.set_ylabel("MAC / cycle")
        ax2.set_title("roofline")
        ax2.legend(loc=where if where == "best" else "lower right")
        fig.tight_layout()
        save_figure(fig, path, dpi=100)
