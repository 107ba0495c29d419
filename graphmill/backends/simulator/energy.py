"""Energy of one layer: MACs, on-chip buffer accesses and DRAM traffic, each at its configured cost.

E = MACs * mac_pj + SRAM words * sram_pj_per_word + DRAM words * dram_pj_per_word (picojoules). SRAM words
are the operand words the array reads and writes at its edge (``engine.simulate_array_layer``: ifmap M*K once
per column fold, once under ``is``; filter K*N once per row fold under ``os``, once otherwise; the ofmap words
once, as they drain) plus the DRAM words that fill or drain the buffers. A vector layer's MACs are its flops.
SCALE-Sim reports no energy; this is graphmill's own first-order model (its ifmap and filter SRAM terms equal
SCALE-Sim's SRAM IFMAP/Filter Reads, an outside check found).
"""

from __future__ import annotations

from .config import AccelConfig


def layer_energy_pj(cfg: AccelConfig, macs: int, sram_words: int, dram_words: int) -> float:
    return macs * cfg.mac_pj + (sram_words + dram_words) * cfg.sram_pj_per_word + dram_words * cfg.dram_pj_per_word
