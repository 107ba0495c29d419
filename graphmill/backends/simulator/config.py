"""Accelerator configuration: a TOML file, validated, every error naming its field.

Schema (all sizes > 0; see examples/accelerators/*.toml)::

    name = "edge"
    [array]    rows, cols, dataflow ("os" | "ws" | "is")
    [memory]   ifmap_kb, filter_kb, ofmap_kb      on-chip buffers, each double-buffered (half active)
               word_bytes (default 1)             bytes per operand word
               dram_bw_words                      DRAM words per cycle (default for the three below)
               ifmap_bw_words, filter_bw_words, ofmap_bw_words   per-stream bandwidth (optional)
    [clock]    mhz (default 1000)
    [vector]   lanes (default = cols)             vector-unit elements per cycle
    [energy]   mac_pj, sram_pj_per_word, dram_pj_per_word (defaults 0.2 / 1.0 / 100.0)
    [system]   chips (default 1), link_bw_bytes_per_cycle, link_latency_cycles
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import asdict, dataclass

from graphmill.ir import UserInputError

DATAFLOWS = ("os", "ws", "is")


@dataclass(frozen=True)
class AccelConfig:
    rows: int
    cols: int
    dataflow: str
    ifmap_kb: float
    filter_kb: float
    ofmap_kb: float
    ifmap_bw_words: int
    filter_bw_words: int
    ofmap_bw_words: int
    word_bytes: int = 1
    clock_mhz: float = 1000.0
    vector_lanes: int = 0
    mac_pj: float = 0.2
    sram_pj_per_word: float = 1.0
    dram_pj_per_word: float = 100.0
    chips: int = 1
    link_bw_bytes_per_cycle: float = 64.0
    link_latency_cycles: int = 0
    name: str = "accel"

    @property
    def ifmap_words(self) -> int:
        return int(self.ifmap_kb * 1024) // self.word_bytes

    @property
    def filter_words(self) -> int:
        return int(self.filter_kb * 1024) // self.word_bytes

    @property
    def ofmap_words(self) -> int:
        return int(self.ofmap_kb * 1024) // self.word_bytes

    @property
    def lanes(self) -> int:
        return self.vector_lanes or self.cols

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, where: str = "accelerator config") -> "AccelConfig":
        def bad(field: str, why: str) -> UserInputError:
            return UserInputError(f"{where}: {field} {why}")

        for f in ("rows", "cols", "ifmap_bw_words", "filter_bw_words", "ofmap_bw_words", "word_bytes", "chips"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(_FIELD.get(f, f), f"must be an integer, got {v!r}")
            if v <= 0:
                raise bad(_FIELD.get(f, f), f"must be positive, got {v}")
        for f in ("ifmap_kb", "filter_kb", "ofmap_kb", "clock_mhz", "link_bw_bytes_per_cycle"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(_FIELD.get(f, f), f"must be a number, got {v!r}")
            if v <= 0:
                raise bad(_FIELD.get(f, f), f"must be positive, got {v}")
        for f in ("mac_pj", "sram_pj_per_word", "dram_pj_per_word", "link_latency_cycles", "vector_lanes"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise bad(_FIELD.get(f, f), f"must be a non-negative number, got {v!r}")
        if self.dataflow not in DATAFLOWS:
            raise bad("array.dataflow", f"is {self.dataflow!r}; use one of {', '.join(DATAFLOWS)} "
                                        "(output-, weight- or input-stationary)")
        # One tile: each half of a double-buffered buffer must hold one word per array edge port.
        edge = max(self.rows, self.cols)
        for f, words in (("memory.ifmap_kb", self.ifmap_words), ("memory.filter_kb", self.filter_words),
                         ("memory.ofmap_kb", self.ofmap_words)):
            if words // 2 < edge:
                raise bad(f, f"is too small for one tile: {words} words, but each half of the double buffer "
                             f"must hold at least {edge} words (one per port of the {self.rows}x{self.cols} array)")
        return self


_FIELD = {"rows": "array.rows", "cols": "array.cols", "ifmap_kb": "memory.ifmap_kb",
          "filter_kb": "memory.filter_kb", "ofmap_kb": "memory.ofmap_kb", "word_bytes": "memory.word_bytes",
          "ifmap_bw_words": "memory.ifmap_bw_words", "filter_bw_words": "memory.filter_bw_words",
          "ofmap_bw_words": "memory.ofmap_bw_words", "clock_mhz": "clock.mhz", "vector_lanes": "vector.lanes",
          "mac_pj": "energy.mac_pj", "sram_pj_per_word": "energy.sram_pj_per_word",
          "dram_pj_per_word": "energy.dram_pj_per_word", "chips": "system.chips",
          "link_bw_bytes_per_cycle": "system.link_bw_bytes_per_cycle",
          "link_latency_cycles": "system.link_latency_cycles"}

_KNOWN = {"name": None, "array": {"rows", "cols", "dataflow"},
          "memory": {"ifmap_kb", "filter_kb", "ofmap_kb", "word_bytes", "dram_bw_words", "ifmap_bw_words",
                     "filter_bw_words", "ofmap_bw_words"},
          "clock": {"mhz"}, "vector": {"lanes"}, "energy": {"mac_pj", "sram_pj_per_word", "dram_pj_per_word"},
          "system": {"chips", "link_bw_bytes_per_cycle", "link_latency_cycles"}}


def from_dict(d: dict, where: str = "accelerator config") -> AccelConfig:
    """Build and validate a config from the TOML schema's dict."""
    for k, v in d.items():
        if k not in _KNOWN:
            raise UserInputError(f"{where}: unknown section or key {k!r}; known: {', '.join(_KNOWN)}")
        if _KNOWN[k] is not None:
            if not isinstance(v, dict):
                raise UserInputError(f"{where}: [{k}] must be a table")
            for kk in v:
                if kk not in _KNOWN[k]:
                    raise UserInputError(f"{where}: unknown key {k}.{kk}; known: {', '.join(sorted(_KNOWN[k]))}")
    arr, mem = d.get("array", {}), d.get("memory", {})
    for sec, tab, key in (("array", arr, "rows"), ("array", arr, "cols"), ("array", arr, "dataflow"),
                          ("memory", mem, "ifmap_kb"), ("memory", mem, "filter_kb"), ("memory", mem, "ofmap_kb")):
        if key not in tab:
            raise UserInputError(f"{where}: missing {sec}.{key}")
    bw = mem.get("dram_bw_words")
    bws = {}
    for k in ("ifmap_bw_words", "filter_bw_words", "ofmap_bw_words"):
        v = mem.get(k, bw)
        if v is None:
            raise UserInputError(f"{where}: missing memory.{k} (or memory.dram_bw_words for all three)")
        bws[k] = v
    clock, vec, en, sysd = d.get("clock", {}), d.get("vector", {}), d.get("energy", {}), d.get("system", {})
    df = arr["dataflow"]
    cfg = AccelConfig(
        rows=arr["rows"], cols=arr["cols"], dataflow=df.lower() if isinstance(df, str) else df,
        ifmap_kb=mem["ifmap_kb"], filter_kb=mem["filter_kb"], ofmap_kb=mem["ofmap_kb"], **bws,
        word_bytes=mem.get("word_bytes", 1), clock_mhz=clock.get("mhz", 1000.0), vector_lanes=vec.get("lanes", 0),
        mac_pj=en.get("mac_pj", 0.2), sram_pj_per_word=en.get("sram_pj_per_word", 1.0),
        dram_pj_per_word=en.get("dram_pj_per_word", 100.0), chips=sysd.get("chips", 1),
        link_bw_bytes_per_cycle=sysd.get("link_bw_bytes_per_cycle", 64.0),
        link_latency_cycles=sysd.get("link_latency_cycles", 0), name=str(d.get("name", "accel")))
    return cfg.validate(where)


def load_accel(path: str | os.PathLike) -> AccelConfig:
    """Read and validate an accelerator TOML file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such accelerator config") from None
    except tomllib.TOMLDecodeError as e:
        raise UserInputError(f"{path}: not valid TOML: {e}") from None
    return from_dict(data, path)


def as_accel(accel) -> AccelConfig:
    """Accept an AccelConfig, a dict in the TOML schema, or a path to a TOML file."""
    if isinstance(accel, AccelConfig):
        return accel.validate()
    if isinstance(accel, dict):
        return from_dict(accel)
    return load_accel(accel)
