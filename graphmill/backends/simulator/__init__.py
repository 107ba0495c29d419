"""Cycle-level systolic-array accelerator simulator (the kind SCALE-Sim models), numba-jitted.

Modules, one job each: ``config`` (accelerator TOML), ``topology`` (SCALE-Sim topology CSV and .cfg),
``lowering`` (IR -> array / vector primitives; what cannot be costed), ``compute`` (folds and compute
cycles per dataflow), ``memory/`` (cycle-by-cycle double-buffered memory system: reference, fast and CALC
kernels), ``energy``, ``engine`` (put together), ``report`` (results, JSON, plot), ``costmodel`` (the
simulator's and the roofline implementations of graphmill.ir.cost.CostModel, re-exported here),
``multichip`` (event-driven several-chip schedule), ``scalesim_ref`` (run SCALE-Sim for comparison).
"""

from graphmill.util.errors import SimulationWarning

from .config import AccelConfig, as_accel, load_accel
from .costmodel import CostModel, RooflineCostModel, SimulatorCostModel
from .engine import Arithmetic, simulate_graph, simulate_layers
from .lowering import FUSED_KEY, ArrayLayer, BranchChoice, Lowering, Uncosted, VectorLayer, gemm_layer, lower, \
    lower_node
from .multichip import MultiChipResult, simulate_multichip
from .report import LayerResult, SimReport
from .topology import read_scalesim_config, read_topology

__all__ = ["AccelConfig", "as_accel", "load_accel", "CostModel", "RooflineCostModel", "SimulatorCostModel",
           "Arithmetic", "simulate_graph", "simulate_layers", "FUSED_KEY", "ArrayLayer", "BranchChoice", "Lowering",
           "Uncosted", "VectorLayer", "gemm_layer", "lower", "lower_node", "MultiChipResult", "simulate_multichip",
           "LayerResult", "SimReport", "SimulationWarning", "read_scalesim_config", "read_topology"]
