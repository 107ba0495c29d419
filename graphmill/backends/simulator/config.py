"""Accelerator configuration: a TOML file, validated when read, every error naming its key and range.

Schema (see examples/accelerators/*.toml; accepted ranges in ``RANGES`` and the README)::

    name = "edge"
    [array]    rows, cols, dataflow ("os" | "ws" | "is")
    [memory]   ifmap_kb, filter_kb, ofmap_kb      on-chip buffers, each double-buffered (half active)
               word_bytes (default 1)             bytes per operand word
               interface_bandwidth ("user" default | "calc")   SCALE-Sim's InterfaceBandwidth
               dram_bw_words                      DRAM words per cycle (default for the three below)
               ifmap_bw_words, filter_bw_words, ofmap_bw_words   per-stream bandwidth (optional)
    [clock]    mhz (default 1000)
    [vector]   lanes (default = cols)             vector-unit elements per cycle
    [energy]   mac_pj, sram_pj_per_word, dram_pj_per_word (defaults 0.2 / 1.0 / 100.0)
    [system]   chips (default 1), link_bw_bytes_per_cycle, link_latency_cycles

With ``interface_bandwidth = "calc"`` the DRAM never stalls the array and each layer reports the bandwidth
it needs (SCALE-Sim's CALC mode); the bandwidth keys are then not given: the read buffers' bookkeeping
uses SCALE-Sim's 10 words per cycle and the write buffer drains ``cols`` words per cycle, as SCALE-Sim's.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import asdict, dataclass

from graphmill.ir import UserInputError
from graphmill.util.files import TEXT_FILE_LIMIT, read_user_file
from graphmill.util.suggest import did_you_mean
from graphmill.util.toml_lines import locate

DATAFLOWS = ("os", "ws", "is")
BANDWIDTH_MODES = ("user", "calc")
CALC_READ_BW_WORDS = 10  # SCALE-Sim's CALC mode: read buffers' default fetch rate (single_layer_sim.py)

# field: (kind, low, high): "int" integers, "num" finite numbers; low and high inclusive. Sizes no real
# accelerator has are refused: they would overflow the simulator's 64-bit counters or its memory.
RANGES: dict[str, tuple[str, float, float]] = {
    "rows": ("int", 1, 65536), "cols": ("int", 1, 65536),
    "ifmap_kb": ("num", 0.001, 2 ** 30), "filter_kb": ("num", 0.001, 2 ** 30),
    "ofmap_kb": ("num", 0.001, 2 ** 30), "word_bytes": ("int", 1, 16),
    "ifmap_bw_words": ("int", 1, 2 ** 20), "filter_bw_words": ("int", 1, 2 ** 20),
    "ofmap_bw_words": ("int", 1, 2 ** 20), "clock_mhz": ("num", 1e-3, 1e6), "vector_lanes": ("int", 0, 2 ** 20),
    "mac_pj": ("num", 0, 1e9), "sram_pj_per_word": ("num", 0, 1e9), "dram_pj_per_word": ("num", 0, 1e9),
    "chips": ("int", 1, 4096), "link_bw_bytes_per_cycle": ("num", 1e-3, 2 ** 40),
    "link_latency_cycles": ("num", 0, 2 ** 40),
}


def range_text(field: str) -> str:
    """The accepted range of a field, as error messages and the README say it."""
    kind, lo, hi = RANGES[field]
    what = "an integer" if kind == "int" else "a number"

    def num(x: float) -> str:
        return f"{int(x):,}" if x == int(x) else f"{x:g}"
    return f"{what} from {num(lo)} to {num(hi)}"


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
    bandwidth_mode: str = "user"

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
        """Refuse what no accelerator has, naming the key and its accepted range."""
        def bad(field: str, why: str) -> UserInputError:
            return ConfigKeyError(f"{where}: {field} {why}", field)

        for f, (kind, lo, hi) in RANGES.items():
            v = getattr(self, f)
            ok = not isinstance(v, bool) and isinstance(v, int if kind == "int" else (int, float))
            if not ok or not math.isfinite(v) or not lo <= v <= hi:
                raise bad(_FIELD.get(f, f), f"must be {range_text(f)}, got {v!r}")
        if self.bandwidth_mode not in BANDWIDTH_MODES:
            raise bad("memory.interface_bandwidth", f"is {self.bandwidth_mode!r}; use one of "
                                                    f"{', '.join(BANDWIDTH_MODES)}")
        if self.dataflow not in DATAFLOWS:
            raise bad("array.dataflow", f"is {self.dataflow!r}; use one of {', '.join(DATAFLOWS)} "
                                        "(output-, weight- or input-stationary)")
        # One tile: each half of a double-buffered buffer must hold one word per array edge port.
        edge = max(self.rows, self.cols)
        for f, words in (("memory.ifmap_kb", self.ifmap_words), ("memory.filter_kb", self.filter_words),
                         ("memory.ofmap_kb", self.ofmap_words)):
            if words // 2 < edge:
                raise bad(f, f"is too small for one tile: {words} words, {words // 2} per half of the double "
                             f"buffer, and each half must hold at least {edge} (one word per port of the "
                             f"{self.rows}x{self.cols} array)")
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
                     "filter_bw_words", "ofmap_bw_words", "interface_bandwidth"},
          "clock": {"mhz"}, "vector": {"lanes"}, "energy": {"mac_pj", "sram_pj_per_word", "dram_pj_per_word"},
          "system": {"chips", "link_bw_bytes_per_cycle", "link_latency_cycles"}}


class ConfigKeyError(UserInputError):
    """A config error about one key (``key``, dotted as the file spells it): ``load_accel`` adds its line."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def from_dict(d: dict, where: str = "accelerator config") -> AccelConfig:
    """Build and validate a config from the TOML schema's dict."""
    for k, v in d.items():
        if k not in _KNOWN:
            raise ConfigKeyError(f"{where}: unknown section or key {k!r}{did_you_mean(k, list(_KNOWN))}; known: "
                                 f"{', '.join(_KNOWN)}", k)
        if _KNOWN[k] is not None:
            if not isinstance(v, dict):
                raise ConfigKeyError(f"{where}: [{k}] must be a table", k)
            for kk in v:
                if kk not in _KNOWN[k]:
                    raise ConfigKeyError(f"{where}: unknown key {k}.{kk}{did_you_mean(kk, sorted(_KNOWN[k]))}; known: "
                                         f"{', '.join(sorted(_KNOWN[k]))}", f"{k}.{kk}")
    if "name" in d and not isinstance(d["name"], str):  # `name = 5` was taken as the name "5"
        raise ConfigKeyError(f"{where}: name must be a string, got {d['name']!r}", "name")
    arr, mem = d.get("array", {}), d.get("memory", {})
    missing = [f"{sec}.{key}" for sec, tab, key in (
        ("array", arr, "rows"), ("array", arr, "cols"), ("array", arr, "dataflow"),
        ("memory", mem, "ifmap_kb"), ("memory", mem, "filter_kb"), ("memory", mem, "ofmap_kb")) if key not in tab]
    if missing:  # all of them at once: one run each was one fix each
        raise UserInputError(f"{where}: missing {', '.join(missing)}")
    mode = mem.get("interface_bandwidth", "user")
    mode = mode.lower() if isinstance(mode, str) else mode
    if mode not in BANDWIDTH_MODES:
        raise ConfigKeyError(f"{where}: memory.interface_bandwidth is {mode!r}; use one of "
                             f"{', '.join(BANDWIDTH_MODES)}", "memory.interface_bandwidth")
    bw_keys = ("ifmap_bw_words", "filter_bw_words", "ofmap_bw_words")
    if mode == "calc":
        given = [k for k in ("dram_bw_words",) + bw_keys if k in mem]
        if given:
            raise ConfigKeyError(f"{where}: memory.{given[0]} is not used with interface_bandwidth = \"calc\" "
                                 "(the simulation reports the bandwidth each layer needs); remove it",
                                 f"memory.{given[0]}")
        bws = {"ifmap_bw_words": CALC_READ_BW_WORDS, "filter_bw_words": CALC_READ_BW_WORDS,
               "ofmap_bw_words": arr["cols"]}
    else:
        bw = mem.get("dram_bw_words")
        kind, lo, hi = RANGES["ifmap_bw_words"]  # the per-stream keys' rule; named as the file spells it
        if bw is not None and (isinstance(bw, bool) or not isinstance(bw, int) or not lo <= bw <= hi):
            raise ConfigKeyError(f"{where}: memory.dram_bw_words must be {range_text('ifmap_bw_words')}, "
                                 f"got {bw!r}", "memory.dram_bw_words")
        bws = {}
        for k in bw_keys:
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
        link_latency_cycles=sysd.get("link_latency_cycles", 0), name=str(d.get("name", "accel")),
        bandwidth_mode=mode)
    return cfg.validate(where)


def load_accel(path: str | os.PathLike) -> AccelConfig:
    """Read and validate an accelerator TOML file (UTF-8 text; anything else is refused in one line)."""
    path = os.fspath(path)
    text = read_text_file(path, "accelerator config", "an accelerator config (TOML)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserInputError(f"{path}: not valid TOML: {str(e).splitlines()[0] if str(e) else e}") from None
    except RecursionError:
        raise UserInputError(f"{path}: not valid TOML: nested too deeply") from None
    try:
        return from_dict(data, path)
    except ConfigKeyError as e:  # the key's line and column, as a syntax error has them
        where = locate(path, text, e.key)
        if where == path:
            raise
        raise UserInputError(where + str(e)[len(path):]) from None


def read_text_file(path: str, name: str, what: str) -> str:
    """The UTF-8 text of ``path``; every failure one line naming the file (``name``: "accelerator config"
    in "no such accelerator config"; ``what``: what the file should be, for a binary one)."""
    try:
        raw = read_user_file(path, TEXT_FILE_LIMIT, what)
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such {name}") from None
    except OSError as e:
        raise UserInputError(f"{path}: cannot read the {name}: {e.strerror or e}") from None
    return decode_text(raw, path, what)


def decode_text(raw: bytes, path: str, what: str) -> str:
    """``raw`` as UTF-8 text, or a one-line error naming the file and the line of the first bad byte."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserInputError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                             f"expected {what}") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise UserInputError(f"{path}:{line}: a NUL byte: a binary file, not {what}")
    return text


def as_accel(accel) -> AccelConfig:
    """Accept an AccelConfig, a dict in the TOML schema, or a path to a TOML file."""
    if isinstance(accel, AccelConfig):
        return accel.validate()
    if isinstance(accel, dict):
        return from_dict(accel)
    if not isinstance(accel, (str, os.PathLike)):  # simulate(g, 5): not open()'s "expected str, bytes or os.PathLike"
        raise UserInputError(f"accelerator: expected an AccelConfig, a dict in the TOML schema or a TOML file's path, "
                             f"got {type(accel).__name__} {accel!r:.60}")
    return load_accel(accel)
