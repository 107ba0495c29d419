"""Simulate layers or a whole graph on one accelerator: compute model + memory simulation + vector unit."""

from __future__ import annotations

from .compute import mapping
from .config import AccelConfig, as_accel
from .energy import layer_energy_pj
from .lowering import ArrayLayer, VectorLayer, lower
from .memory import simulate_memory
from .report import LayerResult, SimReport


def simulate_array_layer(layer: ArrayLayer, cfg: AccelConfig, *, double_count_prefetch_stall: bool = False,
                         scalesim_write_accounting: bool = False, memo: dict | None = None) -> LayerResult:
    """One array layer, all ``repeat`` instances (each simulated identically, back to back)."""
    key = (layer.H, layer.W, layer.R, layer.S, layer.C, layer.N, layer.stride_h, layer.stride_w,
           double_count_prefetch_stall, scalesim_write_accounting)
    mem = memo.get(key) if memo is not None else None
    if mem is None:
        mem = simulate_memory(layer, cfg.rows, cfg.cols, cfg.dataflow, cfg.ifmap_words, cfg.filter_words,
                              cfg.ofmap_words, cfg.ifmap_bw_words, cfg.filter_bw_words, cfg.ofmap_bw_words,
                              double_count_prefetch_stall=double_count_prefetch_stall,
                              scalesim_write_accounting=scalesim_write_accounting)
        if memo is not None:
            memo[key] = mem
    n = layer.repeat
    comp, stall = mem.compute_cycles * n, mem.stall_cycles * n
    total = comp + stall
    macs = layer.macs
    mp = mapping(layer.M, layer.N, layer.K, cfg.rows, cfg.cols, cfg.dataflow)
    rd = (mem.ifmap_dram_words + mem.filter_dram_words) * n * cfg.word_bytes
    wr = mem.ofmap_dram_words * n * cfg.word_bytes
    sram = (layer.M * layer.K * mp.col_folds if cfg.dataflow != "is" else layer.M * layer.K) \
        + layer.K * layer.N * (mp.row_folds if cfg.dataflow == "os" else 1) + mem.ofmap_dram_words
    energy = layer_energy_pj(cfg, macs, sram * n, (rd + wr) // cfg.word_bytes)
    return LayerResult(layer.name, layer.op, layer.shape_text(), "array", comp, stall, total,
                       macs / (total * cfg.rows * cfg.cols) if total else 0.0, rd, wr, macs, energy, n)


def simulate_vector_layer(layer: VectorLayer, cfg: AccelConfig) -> LayerResult:
    """Vector unit: ``lanes`` operations per cycle, overlapped with DRAM traffic (roofline: the slower wins)."""
    comp = -(-layer.flops // cfg.lanes)
    bw_rd = cfg.ifmap_bw_words * cfg.word_bytes
    bw_wr = cfg.ofmap_bw_words * cfg.word_bytes
    mem = max(-(-layer.bytes_read // bw_rd), -(-layer.bytes_written // bw_wr))
    total = max(comp, mem)
    energy = layer.flops * cfg.mac_pj + (layer.bytes_read + layer.bytes_written) / cfg.word_bytes * (
        cfg.sram_pj_per_word + cfg.dram_pj_per_word)
    return LayerResult(layer.name, layer.op, layer.shape_text(), "vector", comp, total - comp, total,
                       layer.elements / (total * cfg.lanes) if total else 0.0, layer.bytes_read,
                       layer.bytes_written, 0, energy, 1)


def simulate_layers(layers: list, accel, *, double_count_prefetch_stall: bool = False,
                    scalesim_write_accounting: bool = False) -> SimReport:
    """Simulate primitives. The two flags reproduce SCALE-Sim 3.0.0's two departures (memory/__init__.py)."""
    cfg = as_accel(accel)
    rep = SimReport(cfg)
    memo: dict = {}
    for lay in layers:
        if isinstance(lay, ArrayLayer):
            rep.layers.append(simulate_array_layer(lay, cfg, double_count_prefetch_stall=double_count_prefetch_stall,
                                                   scalesim_write_accounting=scalesim_write_accounting,
                                                   memo=memo))
        else:
            rep.layers.append(simulate_vector_layer(lay, cfg))
    return rep


def simulate_graph(graph, accel) -> SimReport:
    """Lower every node and simulate it (on a copy; symbolic input dims such as a batch "N" are taken as 1)."""
    from graphmill.frontend.onnx_shape_inference import infer_shapes
    from graphmill.ir.types import TensorType

    graph = graph.copy()
    for v in graph.values():  # symbolic dims (a batch "N") are simulated as 1
        t = v.type
        if isinstance(t, TensorType) and t.shape is not None and any(isinstance(d, str) for d in t.shape):
            v.type = TensorType(t.dtype, tuple(1 if isinstance(d, str) else d for d in t.shape))
    infer_shapes(graph)
    prims = [p for _, ps in lower(graph) for p in ps]
    return simulate_layers(prims, accel)
