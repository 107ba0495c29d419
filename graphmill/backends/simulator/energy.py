"""Energy of one layer: MACs, on-chip buffer accesses and DRAM traffic, each at its configured cost.

E = MACs * mac_pj + SRAM words * sram_pj_per_word + DRAM words * dram_pj_per_word (picojoules). SRAM words
are the operand words the array reads and writes (one per MAC operand fetch at the array edge:
ifmap M*K and filter K*N per pass over the other operand, ofmap M*N per row fold) plus the DRAM words
that fill or drain the buffers. SCALE-Sim reports no energy; this is graphmill's own first-order model.
"""

from __future__ import annotations

from .config import AccelConfig


def layer_energy_pj(cfg: AccelConfig, macs: int, sram_words: int, dram_words: int) -> float:
    return macs * cfg.mac_pj + (sram_words + dram_words) * cfg.sram_pj_per_word + dram_words * cfg.dram_pj_per_word
