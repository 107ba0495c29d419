"""Run SCALE-Sim 3.0.0 (a test-only dependency) on the same layers and configuration, for comparison.

``prefetch_stall_once=True`` runs it with its read-buffer prefetch stall counted once (the evident intent
of ``read_buffer.service_reads``, which adds a positive stall twice; see memory/__init__.py).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from dataclasses import dataclass

from .config import AccelConfig
from .lowering import ArrayLayer
from .topology import write_layout_file, write_scalesim_files


@dataclass
class ScaleSimLayer:
    name: str
    compute_cycles: int  # total - stall (SCALE-Sim's folds * L - 1)
    stall_cycles: int
    total_cycles: int  # compute + stall
    wall_s: float
    ifmap_dram_reads: int = 0  # words (SCALE-Sim's DETAILED_ACCESS_REPORT)
    filter_dram_reads: int = 0
    ofmap_dram_writes: int = 0
    dram_bw: tuple[float, float, float] = (0.0, 0.0, 0.0)  # avg ifmap/filter/ofmap DRAM words per cycle


def _patched_service_reads(self, incoming_requests_arr_np, incoming_cycles_arr):
    """SCALE-Sim's read_buffer.service_reads (non-layout path) with the prefetch stall added once."""
    import numpy as np

    if not self.active_buf_full_flag:
        self.prefetch_active_buffer(start_cycle=incoming_cycles_arr[0][0])
    out = []
    offset = self.hit_latency
    for i in range(incoming_requests_arr_np.shape[0]):
        cycle = incoming_cycles_arr[i]
        for addr in incoming_requests_arr_np[i]:
            if addr == -1:
                continue
            while not self.active_buffer_hit(addr):
                self.new_prefetch()
                pot = self.last_prefetch_cycle - (cycle + offset)
                if pot > 0:
                    offset += pot
        out.append(cycle + offset)
    return np.asarray(out).reshape((len(out), 1))


def run_scalesim(cfg: AccelConfig, layers: list[ArrayLayer], *, prefetch_stall_once: bool = False) -> list[ScaleSimLayer]:
    """SCALE-Sim 3.0.0 on ``layers`` under ``cfg`` (its files written by write_scalesim_files)."""
    with tempfile.TemporaryDirectory() as d:
        cfg_path, topo_path, layout_path = write_scalesim_files(d, cfg, layers)
        return run_scalesim_files(cfg_path, topo_path, [lay.name for lay in layers], layout_path=layout_path,
                                  prefetch_stall_once=prefetch_stall_once)


def run_scalesim_files(cfg_path: str, topo_path: str, names: list[str], *, layout_path: str | None = None,
                       prefetch_stall_once: bool = False) -> list[ScaleSimLayer]:
    """SCALE-Sim 3.0.0 on a user's own .cfg and conv topology CSV (``names``: its layers, in order). A
    default layout file is written when none is given (SCALE-Sim loads one even when it does not use it)."""
    from scalesim.layout_utils import layouts
    from scalesim.memory import read_buffer as rb
    from scalesim.scale_config import scale_config
    from scalesim.single_layer_sim import single_layer_sim
    from scalesim.topology_utils import topologies

    original = rb.read_buffer.service_reads
    if prefetch_stall_once:
        rb.read_buffer.service_reads = _patched_service_reads
    try:
        with tempfile.TemporaryDirectory() as d:
            if layout_path is None:
                layout_path = write_layout_file(d, names)
            conf = scale_config()
            conf.read_conf_file(cfg_path)
            topo = topologies()
            topo.load_arrays(topofile=topo_path)
            lay = layouts()
            lay.load_arrays(layoutfile=layout_path)
            out = []
            for i, name in enumerate(names):
                t0 = time.perf_counter()
                s = single_layer_sim()
                with contextlib.redirect_stdout(io.StringIO()):
                    s.set_params(layer_id=i, config_obj=conf, topology_obj=topo, layout_obj=lay, verbose=False)
                    s.run()
                total = int(s.memory_system.get_total_compute_cycles())
                stall = int(s.memory_system.get_stall_cycles())
                wall = time.perf_counter() - t0
                s.calc_report_data()
                out.append(ScaleSimLayer(name, total - stall, stall, total, wall, int(s.ifmap_dram_reads),
                                         int(s.filter_dram_reads), int(s.ofmap_dram_writes),
                                         (float(s.avg_ifmap_dram_bw), float(s.avg_filter_dram_bw),
                                          float(s.avg_ofmap_dram_bw))))
            return out
    finally:
        rb.read_buffer.service_reads = original


def scalesim_available() -> bool:
    try:
        import scalesim  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True

