"""SCALE-Sim's own input files: topology CSV (conv or GEMM) and .cfg, read and written.

Conv topology: a header line, then ``name, IFMAP H, IFMAP W, Filter H, Filter W, Channels, Num Filter,
Stride,`` per layer (IFMAP sizes already include padding; an optional N:M sparsity column is accepted
and ignored; a name containing ``DP`` is a depthwise layer run once per channel, as SCALE-Sim does).
GEMM topology (header starting ``Layer, M, N, K``): ``name, M, N, K,`` (and the optional ratio). Errors name
the file and line (text that is not UTF-8, a malformed line, a value out of range, a layer too large to
simulate).

The .cfg: ``[architecture_presets]``, ``[layout]`` and ``[run_presets]`` as SCALE-Sim 3.0.0 reads them,
``InterfaceBandwidth`` USER (the configured bandwidths) or CALC (no DRAM stalls; the bandwidth each layer
needs is reported). Settings graphmill does not model are refused in one line naming the file and line,
never ignored (the numbers would then silently differ from SCALE-Sim's): ``SparsitySupport: true``,
``UseRamulatorTrace: True``, ``IfmapCustomLayout``/``FilterCustomLayout: True``, and a ``Bandwidth`` list
of several values (SCALE-Sim 3.0.0 reads only its first, the ofmap drain rate).
"""

from __future__ import annotations

import configparser
import dataclasses
import os

from graphmill.ir import UserInputError
from graphmill.util.suggest import closest, did_you_mean

from .config import (CALC_READ_BW_WORDS, DATAFLOWS, RANGES, AccelConfig, ConfigKeyError, range_text,
                     read_text_file)
from .lowering import ArrayLayer, gemm_layer

MAX_DIM = 2 ** 24  # a topology value no real layer has (and whose products would overflow the kernels)
MAX_DEPTHWISE_CHANNELS = 65536  # a DP row is one layer per channel: no real depthwise layer has more

#: The settings SCALE-Sim 3.0.0 reads (``scale_config.py``), per section. A key of these sections that is none
#: of them but close to one (``SparsitySuport``) is refused as a misspelling: SCALE-Sim stops on the setting it
#: then lacks, while graphmill would have read the default and given the numbers of another configuration.
#: Other keys SCALE-Sim ignores are ignored here too.
SCALESIM_KEYS: dict[str, tuple[str, ...]] = {
    "general": ("run_name",),
    "run_presets": ("InterfaceBandwidth", "UseRamulatorTrace"),
    "architecture_presets": ("ArrayHeight", "ArrayWidth", "IfmapSramSzkB", "FilterSramSzkB", "OfmapSramSzkB",
                             "IfmapOffset", "FilterOffset", "OfmapOffset", "Dataflow", "ReadRequestBuffer",
                             "WriteRequestBuffer", "Bandwidth"),
    "layout": ("IfmapCustomLayout", "FilterCustomLayout", "IfmapSRAMBankBandwidth", "IfmapSRAMBankNum",
               "IfmapSRAMBankPort", "FilterSRAMBankBandwidth", "FilterSRAMBankNum", "FilterSRAMBankPort"),
    "network_presets": ("TopologyCsvLoc",),
    "sparsity": ("SparsitySupport", "SparseRep", "OptimizedMapping", "BlockSize", "NonZeroElems",
                 "RandomNumberGeneratorSeed"),
}


def _int(path: str, lineno: int, col: str, text: str) -> int:
    try:
        v = int(text.strip())
    except ValueError:
        raise UserInputError(f"{path}:{lineno}: {col} must be an integer, got {text.strip()!r}") from None
    if v <= 0:
        raise UserInputError(f"{path}:{lineno}: {col} must be positive, got {v}")
    if v > MAX_DIM:
        raise UserInputError(f"{path}:{lineno}: {col} must be at most {MAX_DIM:,}, got {v:,}")
    return v


def _sparsity_ratio(text: str) -> bool:
    """Whether ``text`` is an N:M ratio of two integers, the optional 9th field of a conv topology line."""
    parts = text.split(":")
    return len(parts) == 2 and all(p.strip().isascii() and p.strip().isdigit() for p in parts)


_CONV_COLS = ("IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels", "Num Filter", "Stride")


def read_topology(path: str | os.PathLike) -> list[ArrayLayer]:
    """Layers of a SCALE-Sim topology CSV (conv or GEMM, told apart by the header)."""
    path = os.fspath(path)
    lines = [ln.rstrip("\r") for ln in read_text_file(path, "topology file", "a SCALE-Sim topology CSV").split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise UserInputError(f"{path}: empty topology file (expected a header line and one line per layer)")
    header = [h.strip().lower() for h in lines[0].split(",")]
    gemm = len(header) >= 4 and header[1:4] == ["m", "n", "k"]
    layers: list[ArrayLayer] = []
    for lineno, raw in enumerate(lines[1:], start=2):
        row = raw.strip()
        if not row or row.startswith("#"):
            continue
        cells = [c.strip() for c in row.split(",")]
        if cells and cells[-1] == "":
            cells = cells[:-1]
        name = cells[0] if cells else ""
        if not name:
            raise UserInputError(f"{path}:{lineno}: missing layer name in {raw!r}")
        if gemm:  # a 5th field is SCALE-Sim's N:M sparsity ratio, as on a conv line (ignored)
            if not (len(cells) == 4 or (len(cells) == 5 and _sparsity_ratio(cells[4]))):
                raise UserInputError(f"{path}:{lineno}: expected 'name, M, N, K,' and an optional N:M sparsity "
                                     f"ratio, but got {len(cells)} field(s): {raw!r}")
            m, n, k = (_int(path, lineno, c, cells[i + 1]) for i, c in enumerate("MNK"))
            layers.append(gemm_layer(name, "Gemm", m, n, k).validate(f"{path}:{lineno}"))
            continue
        # a 9th field is SCALE-Sim's N:M sparsity ratio (ignored); anything else there, or a 10th, is refused as
        # SCALE-Sim refuses it: read as 8 fields, a separate column stride was silently dropped
        if len(cells) < 8 or len(cells) > 9 or (len(cells) == 9 and not _sparsity_ratio(cells[8])):
            raise UserInputError(f"{path}:{lineno}: expected 8 fields (name, {', '.join(_CONV_COLS)}), and an "
                                 f"optional N:M sparsity ratio, but got {len(cells)}: {raw!r}")
        h, w, r, s, c, n, st = (_int(path, lineno, _CONV_COLS[i], cells[i + 1]) for i in range(7))
        if r > h or s > w:
            raise UserInputError(f"{path}:{lineno}: filter {r}x{s} is larger than the IFMAP {h}x{w}")
        if "DP" in name:
            if c > MAX_DEPTHWISE_CHANNELS:  # 16,000,000 channels ran for ever towards as many layers
                raise UserInputError(f"{path}:{lineno}: depthwise layer {name!r} has {c:,} channels; it is simulated "
                                     f"once per channel, as SCALE-Sim does, so at most {MAX_DEPTHWISE_CHANNELS:,}")
            one = ArrayLayer(f"{name}Channel_0", "Conv", h, w, r, s, 1, n, st, st).validate(f"{path}:{lineno}")
            layers += [one] + [dataclasses.replace(one, name=f"{name}Channel_{i}") for i in range(1, c)]
        else:
            layers.append(ArrayLayer(name, "Conv", h, w, r, s, c, n, st, st).validate(f"{path}:{lineno}"))
    if not layers:
        raise UserInputError(f"{path}: no layers (expected one line per layer after the header)")
    return layers


def _config_error(path: str, e: configparser.Error, lines: list[str]) -> UserInputError:
    """configparser's error as one line naming the file and line."""
    line = getattr(e, "lineno", None)
    if line is None and getattr(e, "errors", None):
        line = e.errors[0][0]
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, configparser.ParsingError) and line and not isinstance(e, configparser.MissingSectionHeaderError):
        first = f"cannot parse {lines[line - 1].strip()!r}"
    return UserInputError(f"{path}{f':{line}' if line else ''}: not a valid SCALE-Sim config: {first}")


def read_scalesim_config(path: str | os.PathLike) -> AccelConfig:
    """An AccelConfig from a SCALE-Sim .cfg ([architecture_presets], [layout], [run_presets]).

    ``InterfaceBandwidth: USER``: ifmap/filter DRAM bandwidth from ``[layout] IfmapSRAMBankBandwidth`` /
    ``FilterSRAMBankBandwidth`` and the ofmap one from the first ``Bandwidth`` entry, as SCALE-Sim 3.0.0
    does. ``CALC``: no DRAM stalls, each layer reports the bandwidth it needs (``Bandwidth`` is not read;
    the read buffers' bookkeeping uses 10 words per cycle and the write buffer drains ``ArrayWidth`` words
    per cycle, SCALE-Sim's values). Word size is 1 byte, as in SCALE-Sim. Errors name the file and line.
    """
    path = os.fspath(path)
    text = read_text_file(path, "SCALE-Sim config", "a SCALE-Sim config (.cfg)")
    cp = configparser.ConfigParser(interpolation=None)
    lines = text.split("\n")
    try:
        cp.read_string(text, source=path)
    except configparser.Error as e:
        raise _config_error(path, e, lines) from None

    def line_of(sec: str, key: str) -> str:
        """':N' of the line giving [sec] key (configparser keeps values, not lines)."""
        current = None
        for i, ln in enumerate(lines, start=1):
            t = ln.strip()
            if t.startswith("[") and t.endswith("]"):
                current = t[1:-1].strip()
            elif current == sec and t.replace(":", "=").split("=")[0].strip().lower() == key.lower():
                return f":{i}"
        return ""

    def line_of_section(sec: str) -> str:
        return next((f":{i}" for i, ln in enumerate(lines, start=1) if ln.strip() == f"[{sec}]"), "")

    def get(sec: str, key: str) -> str:
        if not cp.has_section(sec):
            near = closest(sec, [s for s in cp.sections() if s not in SCALESIM_KEYS])
            raise UserInputError(f"{path}: missing section [{sec}]" +
                                 (f" ([{near}]{line_of_section(near)} is not a SCALE-Sim section)" if near else ""))
        if not cp.has_option(sec, key):
            raise UserInputError(f"{path}: missing [{sec}] {key}")
        return cp.get(sec, key).strip()

    def num(sec: str, key: str, field: str, text: str | None = None) -> int:
        v = get(sec, key) if text is None else text
        kind, lo, hi = RANGES[field]
        accepted = range_text(field) if kind == "int" else f"an integer from 1 to {int(hi):,}"  # SCALE-Sim: ints
        try:
            n = int(v)
        except ValueError:
            n = None
        if n is None or not max(lo, 1 if kind == "num" else lo) <= n <= hi:
            raise UserInputError(f"{path}{line_of(sec, key)}: [{sec}] {key} must be {accepted}, got {v!r}")
        return n

    def refuse_unmodelled(sec: str, key: str, why: str) -> None:
        """A setting graphmill does not model, set to a value that would change SCALE-Sim's numbers."""
        if cp.has_option(sec, key) and cp.get(sec, key).strip().lower() == "true":
            raise UserInputError(f"{path}{line_of(sec, key)}: [{sec}] {key} is {cp.get(sec, key).strip()}: "
                                 f"graphmill does not model {why}; set it to false")

    for sec in cp.sections():  # a misspelled setting would be skipped here while SCALE-Sim stops on it
        for key in cp.options(sec):
            known = SCALESIM_KEYS.get(sec)
            if known and key not in {k.lower() for k in known} and closest(key, known):
                where = line_of(sec, key)  # the key as written (configparser lowers its case)
                shown = lines[int(where[1:]) - 1].replace(":", "=").split("=")[0].strip() if where else key
                raise UserInputError(f"{path}{where}: [{sec}] {shown} is not a SCALE-Sim 3.0.0 setting"
                                     f"{did_you_mean(shown, known)}")
    refuse_unmodelled("sparsity", "SparsitySupport", "SCALE-Sim's sparse (N:M) filters")
    refuse_unmodelled("run_presets", "UseRamulatorTrace", "Ramulator DRAM traces")
    refuse_unmodelled("layout", "IfmapCustomLayout", "custom SRAM layouts")
    refuse_unmodelled("layout", "FilterCustomLayout", "custom SRAM layouts")
    mode = get("run_presets", "InterfaceBandwidth")
    if mode not in ("USER", "CALC"):
        raise UserInputError(f"{path}{line_of('run_presets', 'InterfaceBandwidth')}: [run_presets] "
                             f"InterfaceBandwidth is {mode!r}; use USER or CALC")
    ap = "architecture_presets"
    df = get(ap, "Dataflow")
    if df.lower() in DATAFLOWS and df not in DATAFLOWS:  # graphmill ran 'WS' as ws, SCALE-Sim as os
        raise UserInputError(f"{path}{line_of(ap, 'Dataflow')}: [{ap}] Dataflow is {df!r}; SCALE-Sim 3.0.0 reads "
                             f"only lower case (it runs {df!r} as os, with a warning): write {df.lower()!r}")
    if df not in DATAFLOWS:
        raise UserInputError(f"{path}{line_of(ap, 'Dataflow')}: [{ap}] Dataflow is {df!r}; use one of "
                             f"{', '.join(DATAFLOWS)}")
    cols = num(ap, "ArrayWidth", "cols")
    # SCALE-Sim 3.0.0 stops without [layout], whatever the mode; taking Bandwidth for ifmap and filter instead
    # (as graphmill did) ran other numbers than the file's
    layout_bw = (num("layout", "IfmapSRAMBankBandwidth", "ifmap_bw_words"),
                 num("layout", "FilterSRAMBankBandwidth", "filter_bw_words"))
    if mode == "CALC":
        ifmap_bw = filter_bw = CALC_READ_BW_WORDS
        ofmap_bw = cols
    else:
        bws = [x.strip() for x in get(ap, "Bandwidth").split(",")]
        if len(bws) > 1:
            raise UserInputError(f"{path}{line_of(ap, 'Bandwidth')}: [{ap}] Bandwidth has {len(bws)} values "
                                 f"({', '.join(bws)}); SCALE-Sim 3.0.0 uses only the first (the ofmap DRAM "
                                 "bandwidth; ifmap and filter come from [layout] IfmapSRAMBankBandwidth and "
                                 "FilterSRAMBankBandwidth), so give one value")
        ofmap_bw = num(ap, "Bandwidth", "ofmap_bw_words", bws[0])
        ifmap_bw, filter_bw = layout_bw
    cfg = AccelConfig(rows=num(ap, "ArrayHeight", "rows"), cols=cols, dataflow=df,
                      ifmap_kb=num(ap, "IfmapSramSzkB", "ifmap_kb"), filter_kb=num(ap, "FilterSramSzkB", "filter_kb"),
                      ofmap_kb=num(ap, "OfmapSramSzkB", "ofmap_kb"), ifmap_bw_words=ifmap_bw,
                      filter_bw_words=filter_bw, ofmap_bw_words=ofmap_bw, word_bytes=1,
                      name=cp.get("general", "run_name", fallback="scalesim").strip(),
                      bandwidth_mode=mode.lower())
    try:
        return cfg.validate(path)
    except ConfigKeyError as e:  # named by the .cfg's key and line, not the TOML key it maps to ("memory.ifmap_kb
        # is too small" of a .cfg without one; an outside check)
        sec, key = CFG_KEYS.get(e.key, (None, None))
        if sec is None:
            raise
        why = str(e).removeprefix(f"{path}: {e.key} ")
        raise UserInputError(f"{path}{line_of(sec, key)}: [{sec}] {key} {why}") from None


#: the TOML keys of ``AccelConfig.validate``'s refusals and the SCALE-Sim .cfg settings they come from
CFG_KEYS = {"array.rows": ("architecture_presets", "ArrayHeight"), "array.cols": ("architecture_presets", "ArrayWidth"),
            "memory.ifmap_kb": ("architecture_presets", "IfmapSramSzkB"),
            "memory.filter_kb": ("architecture_presets", "FilterSramSzkB"),
            "memory.ofmap_kb": ("architecture_presets", "OfmapSramSzkB")}


def write_scalesim_files(folder: str, cfg: AccelConfig, layers: list[ArrayLayer], run_name: str = "gm") -> tuple[str, str, str]:
    """Write a SCALE-Sim 3.0.0 config, conv topology and layout CSV for ``layers``; returns their paths."""
    cfg_path = os.path.join(folder, f"{run_name}.cfg")
    topo_path = os.path.join(folder, f"{run_name}_topo.csv")
    layout_path = os.path.join(folder, f"{run_name}_layout.csv")
    with open(cfg_path, "w") as f:
        f.write(f"""[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight:    {cfg.rows}
ArrayWidth:     {cfg.cols}
IfmapSramSzkB:    {int(cfg.ifmap_kb)}
FilterSramSzkB:   {int(cfg.filter_kb)}
OfmapSramSzkB:    {int(cfg.ofmap_kb)}
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : {cfg.ofmap_bw_words}
Dataflow : {cfg.dataflow}
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: {cfg.ifmap_bw_words}
IfmapSRAMBankNum: 1
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: {cfg.filter_bw_words}
FilterSRAMBankNum: 1
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: {cfg.bandwidth_mode.upper()}
UseRamulatorTrace: False
""")
    with open(topo_path, "w") as f:
        f.write("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n")
        for lay in layers:
            f.write(f"{lay.name}, {lay.H}, {lay.W}, {lay.R}, {lay.S}, {lay.C}, {lay.N}, {lay.stride_h},\n")
    write_layout_file(folder, [lay.name for lay in layers], run_name)
    return cfg_path, topo_path, layout_path


def write_layout_file(folder: str, names: list[str], run_name: str = "gm") -> str:
    """A SCALE-Sim layout CSV with the default layout for each layer (SCALE-Sim loads one even when unused)."""
    layout_path = os.path.join(folder, f"{run_name}_layout.csv")
    with open(layout_path, "w") as f:
        f.write("Layer name," + ",".join(f"f{i}" for i in range(20)) + ",\n")
        for name in names:
            f.write(f"{name},1,1,1,1,1,1,0,1,2,0,1,2,0,1,2,3,0,1,2,3,\n")
    return layout_path
