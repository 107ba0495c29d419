"""Simulate layers or a whole graph on one accelerator: compute model + memory simulation + vector unit.

Two arithmetic models of the memory system (memory/__init__.py): graphmill's (the default) and SCALE-Sim
3.0.0's (``scalesim_compat=True``: its double-counted read-buffer prefetch stall and its write-buffer
accounting), so that a user can check equality with SCALE-Sim. The accelerator's ``bandwidth_mode`` picks
USER bandwidth (the configured words per cycle, stalls when the DRAM is too slow) or SCALE-Sim's CALC
(no read stalls; each layer reports the DRAM bandwidth it needs).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

from graphmill.util.errors import SimulationWarning

from .compute import mapping
from .config import AccelConfig, as_accel
from .energy import layer_energy_pj
from .lowering import ArrayLayer, BranchChoice, VectorLayer, lower
from .memory import MemoryResult, simulate_memory
from .memory.calc import simulate_memory_calc
from .memory.shared import scalesim_read_words
from .memory.streams import prefetch_matrix_entries
from .report import LayerResult, SimReport, uncosted_text

#: `graphmill simulate -v` shows these lines: lowering, then the layers simulated, at most one line a second
log = logging.getLogger("graphmill.simulator")


@dataclass(frozen=True)
class Arithmetic:
    """Which memory-system arithmetic to use; each flag reproduces one SCALE-Sim 3.0.0 departure.

    ``scalesim_read_accounting``: DRAM reads in USER bandwidth mode counted as SCALE-Sim counts them,
    whole prefetch blocks (memory.shared.scalesim_read_words) instead of the operand words fetched."""

    double_count_prefetch_stall: bool = False
    scalesim_write_accounting: bool = False
    scalesim_read_accounting: bool = False

    @classmethod
    def of(cls, scalesim_compat: bool = False, double_count_prefetch_stall: bool | None = None,
           scalesim_write_accounting: bool | None = None,
           scalesim_read_accounting: bool | None = None) -> "Arithmetic":
        """``scalesim_compat`` sets every flag; an explicit flag overrides it."""
        dc = scalesim_compat if double_count_prefetch_stall is None else double_count_prefetch_stall
        wa = scalesim_compat if scalesim_write_accounting is None else scalesim_write_accounting
        ra = scalesim_compat if scalesim_read_accounting is None else scalesim_read_accounting
        return cls(bool(dc), bool(wa), bool(ra))

    @property
    def name(self) -> str:
        """``graphmill`` (corrected), ``scalesim-compat`` (all of SCALE-Sim's), or graphmill plus flags."""
        flags = [f for f in ("double_count_prefetch_stall", "scalesim_write_accounting", "scalesim_read_accounting")
                 if getattr(self, f)]
        if len(flags) == 3:
            return "scalesim-compat"
        return "+".join(["graphmill"] + flags)


GRAPHMILL = Arithmetic()


def simulate_layer_memory(layer: ArrayLayer, cfg: AccelConfig, arith: Arithmetic = GRAPHMILL) -> MemoryResult:
    """One instance of an array layer through the memory model the config's bandwidth mode selects."""
    args = (layer, cfg.rows, cfg.cols, cfg.dataflow, cfg.ifmap_words, cfg.filter_words, cfg.ofmap_words,
            cfg.ifmap_bw_words, cfg.filter_bw_words, cfg.ofmap_bw_words)
    if cfg.bandwidth_mode == "calc":
        return simulate_memory_calc(*args, scalesim_write_accounting=arith.scalesim_write_accounting)
    return simulate_memory(*args, double_count_prefetch_stall=arith.double_count_prefetch_stall,
                           scalesim_write_accounting=arith.scalesim_write_accounting)


def array_dram_read_words(layer: ArrayLayer, cfg: AccelConfig, mem: MemoryResult,
                          arith: Arithmetic = GRAPHMILL) -> tuple[int, int]:
    """(ifmap, filter) DRAM words one instance of ``layer`` reads. With ``scalesim_read_accounting`` in USER
    bandwidth mode, SCALE-Sim 3.0.0's count (whole prefetch blocks, its DETAILED_ACCESS_REPORT reads); else
    the operand words fetched (in CALC mode the two agree)."""
    if not arith.scalesim_read_accounting or cfg.bandwidth_mode == "calc":
        return mem.ifmap_dram_words, mem.filter_dram_words
    if_entries, f_entries = prefetch_matrix_entries(cfg.dataflow, layer.M, layer.N, layer.K, cfg.rows, cfg.cols)
    return (scalesim_read_words(cfg.ifmap_words, cfg.ifmap_bw_words, if_entries, mem.ifmap_swaps),
            scalesim_read_words(cfg.filter_words, cfg.filter_bw_words, f_entries, mem.filter_swaps))


def _needed_bw(words: int, first: int, last: int) -> float:
    return words / (last - first + 1) if last >= first else 0.0


def recurrent_weights_resident(layer: ArrayLayer, cfg: AccelConfig) -> bool:
    """Whether a recurrent layer's weight matrix R (``layer.recurrent_words``) stays on chip across its time
    steps: it fits the filter buffer's active half (the half a read buffer computes from; the same test
    by which the memory model's read buffer never misses)."""
    return 0 < layer.recurrent_words <= -(-cfg.filter_words // 2)


def array_words_read(layer: ArrayLayer, cfg: AccelConfig) -> int:
    """DRAM words an array layer reads as the roofline counts them: its im2col operand (M x K per instance) and its
    weights (K x N per load; a recurrent layer's R once per weight set when it stays on chip)."""
    loads = layer.weight_sets if recurrent_weights_resident(layer, cfg) else layer.repeat
    return layer.M * layer.K * layer.repeat + layer.K * layer.N * loads


def simulate_array_layer(layer: ArrayLayer, cfg: AccelConfig, arith: Arithmetic = GRAPHMILL, *,
                         memo: dict | None = None) -> LayerResult:
    """One array layer, all ``repeat`` instances (each simulated identically, back to back).

    Each instance's buffers start filled, as SCALE-Sim starts every layer (its initial fill is counted in
    DRAM words, not in cycles). For the per-step H·R of a recurrent layer (``recurrent_words`` > 0) the
    instances are time steps sharing a weight matrix R per direction (``weight_sets``): when R fits the
    filter buffer's active half it stays on chip, read from DRAM once per direction (later steps read no
    filter words); else every step re-reads it, and every step after a direction's first also waits for its
    filter window to load (min(active half, filter words) at the filter bandwidth; not in CALC mode, where
    the DRAM keeps up)."""
    key = (layer.H, layer.W, layer.R, layer.S, layer.C, layer.N, layer.stride_h, layer.stride_w, arith)
    mem = memo.get(key) if memo is not None else None
    if mem is None:
        mem = simulate_layer_memory(layer, cfg, arith)
        if memo is not None:
            memo[key] = mem
    n = layer.repeat
    comp, stall = mem.compute_cycles * n, mem.stall_cycles * n
    filter_loads = n
    if layer.recurrent_words:
        sets = max(1, min(layer.weight_sets, n))
        if recurrent_weights_resident(layer, cfg):
            filter_loads = sets
        elif cfg.bandwidth_mode != "calc":
            window = min(-(-cfg.filter_words // 2), mem.filter_dram_words)
            stall += (n - sets) * -(-window // cfg.filter_bw_words)
    total = comp + stall
    macs = layer.macs
    mp = mapping(layer.M, layer.N, layer.K, cfg.rows, cfg.cols, cfg.dataflow)
    if_words, f_words = array_dram_read_words(layer, cfg, mem, arith)
    rd = (if_words * n + f_words * filter_loads) * cfg.word_bytes
    wr = mem.ofmap_dram_words * n * cfg.word_bytes
    sram = (layer.M * layer.K * mp.col_folds if cfg.dataflow != "is" else layer.M * layer.K) \
        + layer.K * layer.N * (mp.row_folds if cfg.dataflow == "os" else 1) + mem.ofmap_dram_words
    energy = layer_energy_pj(cfg, macs, sram * n, (rd + wr) // cfg.word_bytes)
    bw = None
    if cfg.bandwidth_mode == "calc":  # SCALE-Sim's avg DRAM bandwidths (words per cycle) of one instance
        bw = {"ifmap": _needed_bw(mem.ifmap_dram_words, mem.ifmap_dram_first, mem.ifmap_dram_last),
              "filter": _needed_bw(mem.filter_dram_words, mem.filter_dram_first, mem.filter_dram_last),
              "ofmap": _needed_bw(mem.ofmap_dram_words, mem.ofmap_dram_first, mem.ofmap_dram_last)}
    return LayerResult(layer.name, layer.op, layer.shape_text(), "array", comp, stall, total,
                       macs / (total * cfg.rows * cfg.cols) if total else 0.0, rd, wr, macs, energy, n,
                       dram_bw_needed=bw)


def simulate_vector_layer(layer: VectorLayer, cfg: AccelConfig) -> LayerResult:
    """Vector unit: ``lanes`` operations per cycle, overlapped with DRAM traffic (roofline: the slower wins).

    Traffic is accounted as the array's is: in words (one per operand element), read at ``ifmap_bw_words``
    and written at ``ofmap_bw_words`` words per cycle, bytes = words x ``word_bytes``; so a wider word
    never makes a vector op faster. In CALC bandwidth mode the DRAM keeps up (no stall) and the bandwidth
    needed (words per cycle) is reported."""
    comp = -(-layer.flops // cfg.lanes)
    rd_words, wr_words = layer.words_read, layer.words_written
    energy = layer.flops * cfg.mac_pj + (rd_words + wr_words) * (cfg.sram_pj_per_word + cfg.dram_pj_per_word)
    if cfg.bandwidth_mode == "calc":
        total = comp
        bw = {"ifmap": rd_words / comp if comp else 0.0, "filter": 0.0,
              "ofmap": wr_words / comp if comp else 0.0}
    else:
        mem = max(-(-rd_words // cfg.ifmap_bw_words), -(-wr_words // cfg.ofmap_bw_words))
        total = max(comp, mem)
        bw = None
    return LayerResult(layer.name, layer.op, layer.shape_text(), "vector", comp, total - comp, total,
                       layer.elements / (total * cfg.lanes) if total else 0.0, rd_words * cfg.word_bytes,
                       wr_words * cfg.word_bytes, 0, energy, 1, dram_bw_needed=bw)


def simulate_layers(layers: list, accel, *, scalesim_compat: bool = False,
                    double_count_prefetch_stall: bool | None = None,
                    scalesim_write_accounting: bool | None = None,
                    scalesim_read_accounting: bool | None = None) -> SimReport:
    """Simulate primitives. ``scalesim_compat=True`` reproduces SCALE-Sim 3.0.0's arithmetic (its two
    departures, memory/__init__.py, and its DRAM read count in USER mode); each flag selects one alone."""
    cfg = as_accel(accel)
    arith = Arithmetic.of(scalesim_compat, double_count_prefetch_stall, scalesim_write_accounting,
                          scalesim_read_accounting)
    rep = SimReport(cfg, model=arith.name)
    memo: dict = {}
    last = start = time.perf_counter()
    for k, p in enumerate(layers):  # one at a time, for the progress lines (an outside check: -v said nothing
        rep.layers.extend(simulate_primitives([p], cfg, arith, memo))  # for the 20 s of a big model)
        now = time.perf_counter()
        if now - last >= 1.0 and log.isEnabledFor(logging.INFO):
            last = now
            log.info("simulated %d of %d layers (%.0f s)", k + 1, len(layers), now - start)
    return rep


def simulate_primitives(prims: list, cfg: AccelConfig, arith: Arithmetic = GRAPHMILL,
                        memo: dict | None = None) -> list[LayerResult]:
    """LayerResults of lowered primitives in order; of a BranchChoice, the branch that takes longest."""
    out: list[LayerResult] = []
    for p in prims:
        if isinstance(p, ArrayLayer):
            out.append(simulate_array_layer(p, cfg, arith, memo=memo))
        elif isinstance(p, VectorLayer):
            out.append(simulate_vector_layer(p, cfg))
        elif isinstance(p, BranchChoice):
            runs = [simulate_primitives(list(b), cfg, arith, memo) for b in p.branches]
            out.extend(max(runs, key=lambda r: sum(x.total_cycles for x in r)))
        else:
            raise TypeError(f"not a simulator primitive: {p!r}")
    return out


def simulate_graph(graph, accel, *, scalesim_compat: bool = False, dims: dict[str, int] | None = None) -> SimReport:
    """Lower every node and simulate it (on a copy; symbolic dims take their size in ``dims``, else 1, and the
    report's ``notes`` say which were taken as 1: an image's ``H``, ``W`` at 1 simulate a 1-pixel map).

    Nodes the simulator cannot cost are listed in the report's ``uncosted`` (its totals are then partial)."""
    from graphmill.frontend.onnx_shape_inference import infer_shapes
    from graphmill.ir.control_flow import type_body_inputs
    from graphmill.ir.summary import bind_symbols, bound_sizes, loose_symbols, symbols

    loose = loose_symbols(graph, dims)
    dims, defaulted = bound_sizes(graph, dims)
    # symbolic dims (a batch "N") are simulated at their size in dims, else 1, a computed one (10*N) at its value,
    # in the control-flow bodies too (a Loop body's [N, 2] stayed symbolic, and --dim could not help: an outside check);
    # a loose name (an output's L the graph computes) first gets what inference computes from the others
    graph = bind_symbols(graph, {s: v for s, v in dims.items() if s not in loose})
    type_body_inputs(graph)  # a Loop body's untyped inputs take what the Loop feeds them (on this copy only)
    # graphmill ops the simulator has no model of its own for run as their standard-ONNX lowering
    # (RelativeAttention: both products on the array, bias and softmax on the vector unit); MoE has one
    from graphmill.passes.lowering import lower_node as lower_to_onnx
    for n in [n for n in graph.nodes if n.domain == "graphmill" and n.op_type != "MoE"]:
        lower_to_onnx(graph, n)
    infer_shapes(graph)
    left = loose & set(symbols(graph))  # what inference could not compute (a data-dependent count): at 1
    bind_symbols(graph, {s: dims[s] for s in left}, in_place=True)
    defaulted = [s for s in defaulted if s not in loose or s in left]
    log.info("lowering %d nodes of graph %r", len(graph.nodes), graph.name)
    lowered = lower(graph)
    log.info("simulating %d layers on %s", len(lowered.primitives), as_accel(accel).name)
    rep = simulate_layers(lowered.primitives, accel, scalesim_compat=scalesim_compat)
    rep.uncosted = list(lowered.uncosted)
    if defaulted:
        rep.caveats.append(f"symbolic dimension(s) {', '.join(defaulted)} simulated at size 1 (--dim NAME=SIZE "
                           "sets them)")
    if rep.uncosted:
        warnings.warn(f"simulator: the totals are partial: {len(rep.uncosted)} node(s) not costed: "
                      f"{uncosted_text(rep.uncosted)}", SimulationWarning, stacklevel=2)
    return rep
