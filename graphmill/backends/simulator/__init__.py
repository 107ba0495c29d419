"""Cycle-level systolic-array accelerator simulator (the kind SCALE-Sim models), numba-jitted.

Modules, one job each: ``config`` (accelerator TOML), ``topology`` (SCALE-Sim topology CSV and .cfg),
``lowering`` (IR -> array / vector primitives), ``compute`` (folds and compute cycles per dataflow),
``memory`` (cycle-by-cycle double-buffered memory system), ``energy``, ``engine`` (put together),
``report`` (results, JSON, plot), ``costmodel`` (CostModel interface: simulator and roofline),
``multichip`` (event-driven several-chip schedule), ``scalesim_ref`` (run SCALE-Sim for comparison).
"""

from .config import AccelConfig, as_accel, load_accel
from .costmodel import CostModel, RooflineCostModel, SimulatorCostModel
from .engine import simulate_graph, simulate_layers
from .lowering import FUSED_KEY, ArrayLayer, VectorLayer, gemm_layer, lower
from .multichip import MultiChipResult, simulate_multichip
from .report import LayerResult, SimReport
from .topology import read_scalesim_config, read_topology

__all__ = ["AccelConfig", "as_accel", "load_accel", "CostModel", "RooflineCostModel", "SimulatorCostModel",
           "simulate_graph", "simulate_layers", "FUSED_KEY", "ArrayLayer", "VectorLayer", "gemm_layer", "lower",
           "MultiChipResult", "simulate_multichip", "LayerResult", "SimReport", "read_scalesim_config",
           "read_topology"]
