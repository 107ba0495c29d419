"""Run SCALE-Sim 3.0.0 (a test-only dependency) on the same layers and configuration, for comparison.

``prefetch_stall_once=True`` runs it with its read-buffer prefetch stall counted once (the evident intent
of ``read_buffer.service_reads``, which adds a positive stall twice; see memory/__init__.py).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
import time
from dataclasses import dataclass

from .config import AccelConfig
from .lowering import ArrayLayer
from .topology import write_scalesim_files


@dataclass
class ScaleSimLayer:
    name: str
    compute_cycles: int  # total - stall (SCALE-Sim's folds * L - 1)
    stall_cycles: int
    total_cycles: int  # compute + stall
    wall_s: float


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
    from scalesim.memory import read_buffer as rb
    from scalesim.single_layer_sim import single_layer_sim

    original = rb.read_buffer.service_reads
    if prefetch_stall_once:
        rb.read_buffer.service_reads = _patched_service_reads
    try:
        with tempfile.TemporaryDirectory() as d:
            cfg_path, topo_path, layout_path = write_scalesim_files(d, cfg, layers)
            from scalesim.layout_utils import layouts
            from scalesim.scale_config import scale_config
            from scalesim.topology_utils import topologies

            conf = scale_config()
            conf.read_conf_file(cfg_path)
            topo = topologies()
            topo.load_arrays(topofile=topo_path)
            lay = layouts()
            lay.load_arrays(layoutfile=layout_path)
            out = []
            for i, layer in enumerate(layers):
                t0 = time.perf_counter()
                s = single_layer_sim()
                with contextlib.redirect_stdout(io.StringIO()):
                    s.set_params(layer_id=i, config_obj=conf, topology_obj=topo, layout_obj=lay, verbose=False)
                    s.run()
                total = int(s.memory_system.get_total_compute_cycles())
                stall = int(s.memory_system.get_stall_cycles())
                out.append(ScaleSimLayer(layer.name, total - stall, stall, total, time.perf_counter() - t0))
            return out
    finally:
        rb.read_buffer.service_reads = original


def scalesim_available() -> bool:
    try:
        import scalesim  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


del math, os
