"""SCALE-Sim's own input files: topology CSV (conv or GEMM) and .cfg, read and written.

Conv topology: a header line, then ``name, IFMAP H, IFMAP W, Filter H, Filter W, Channels, Num Filter,
Stride,`` per layer (IFMAP sizes already include padding; an optional N:M sparsity column is accepted
and ignored; a name containing ``DP`` is a depthwise layer run once per channel, as SCALE-Sim does).
GEMM topology (header starting ``Layer, M, N, K``): ``name, M, N, K,``. Errors name the file and line.
"""

from __future__ import annotations

import configparser
import os

from graphmill.ir import UserInputError

from .config import DATAFLOWS, AccelConfig
from .lowering import ArrayLayer, gemm_layer


def _int(path: str, lineno: int, col: str, text: str) -> int:
    try:
        v = int(text.strip())
    except ValueError:
        raise UserInputError(f"{path}:{lineno}: {col} must be an integer, got {text.strip()!r}") from None
    if v <= 0:
        raise UserInputError(f"{path}:{lineno}: {col} must be positive, got {v}")
    return v


_CONV_COLS = ("IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels", "Num Filter", "Stride")


def read_topology(path: str | os.PathLike) -> list[ArrayLayer]:
    """Layers of a SCALE-Sim topology CSV (conv or GEMM, told apart by the header)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such topology file") from None
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: not a text file") from None
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
        if gemm:
            if len(cells) < 4:
                raise UserInputError(f"{path}:{lineno}: expected 'name, M, N, K,' but got {len(cells)} field(s): {raw!r}")
            m, n, k = (_int(path, lineno, c, cells[i + 1]) for i, c in enumerate("MNK"))
            layers.append(gemm_layer(name, "Gemm", m, n, k))
            continue
        if len(cells) < 8:
            raise UserInputError(f"{path}:{lineno}: expected 8 fields (name, {', '.join(_CONV_COLS)}) but got "
                                 f"{len(cells)}: {raw!r}")
        h, w, r, s, c, n, st = (_int(path, lineno, _CONV_COLS[i], cells[i + 1]) for i in range(7))
        if r > h or s > w:
            raise UserInputError(f"{path}:{lineno}: filter {r}x{s} is larger than the IFMAP {h}x{w}")
        if "DP" in name:
            layers += [ArrayLayer(f"{name}Channel_{i}", "Conv", h, w, r, s, 1, n, st, st) for i in range(c)]
        else:
            layers.append(ArrayLayer(name, "Conv", h, w, r, s, c, n, st, st))
    if not layers:
        raise UserInputError(f"{path}: no layers (expected one line per layer after the header)")
    return layers


def read_scalesim_config(path: str | os.PathLike) -> AccelConfig:
    """An AccelConfig from a SCALE-Sim .cfg ([architecture_presets], [layout], [run_presets]).

    USER bandwidth mode: ifmap/filter DRAM bandwidth from ``[layout] IfmapSRAMBankBandwidth`` /
    ``FilterSRAMBankBandwidth`` and the ofmap one from the first ``Bandwidth`` entry, as SCALE-Sim 3.0.0
    does; CALC mode (SCALE-Sim estimates bandwidth) is refused. Word size is 1 byte, as in SCALE-Sim.
    """
    path = os.fspath(path)
    cp = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as f:
            cp.read_file(f)
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such SCALE-Sim config") from None
    except configparser.Error as e:
        raise UserInputError(f"{path}: not a valid SCALE-Sim config: {str(e).splitlines()[0]}") from None

    def get(sec: str, key: str) -> str:
        if not cp.has_section(sec):
            raise UserInputError(f"{path}: missing section [{sec}]")
        if not cp.has_option(sec, key):
            raise UserInputError(f"{path}: missing [{sec}] {key}")
        return cp.get(sec, key).strip()

    def num(sec: str, key: str) -> int:
        v = get(sec, key)
        try:
            return int(v)
        except ValueError:
            raise UserInputError(f"{path}: [{sec}] {key} must be an integer, got {v!r}") from None

    mode = get("run_presets", "InterfaceBandwidth")
    if mode != "USER":
        raise UserInputError(f"{path}: [run_presets] InterfaceBandwidth is {mode!r}; graphmill simulates a "
                             "user-set bandwidth: set it to USER and give Bandwidth")
    ap = "architecture_presets"
    df = get(ap, "Dataflow").lower()
    if df not in DATAFLOWS:
        raise UserInputError(f"{path}: [{ap}] Dataflow is {df!r}; use one of {', '.join(DATAFLOWS)}")
    bw_text = get(ap, "Bandwidth").split(",")[0]
    try:
        ofmap_bw = int(bw_text.strip())
    except ValueError:
        raise UserInputError(f"{path}: [{ap}] Bandwidth must be an integer, got {bw_text!r}") from None
    if cp.has_section("layout"):
        ifmap_bw, filter_bw = num("layout", "IfmapSRAMBankBandwidth"), num("layout", "FilterSRAMBankBandwidth")
    else:
        ifmap_bw = filter_bw = ofmap_bw
    cfg = AccelConfig(rows=num(ap, "ArrayHeight"), cols=num(ap, "ArrayWidth"), dataflow=df,
                      ifmap_kb=num(ap, "IfmapSramSzkB"), filter_kb=num(ap, "FilterSramSzkB"),
                      ofmap_kb=num(ap, "OfmapSramSzkB"), ifmap_bw_words=ifmap_bw, filter_bw_words=filter_bw,
                      ofmap_bw_words=ofmap_bw, word_bytes=1,
                      name=cp.get("general", "run_name", fallback="scalesim").strip())
    return cfg.validate(path)


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
InterfaceBandwidth: USER
UseRamulatorTrace: False
""")
    with open(topo_path, "w") as f:
        f.write("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n")
        for lay in layers:
            f.write(f"{lay.name}, {lay.H}, {lay.W}, {lay.R}, {lay.S}, {lay.C}, {lay.N}, {lay.stride_h},\n")
    with open(layout_path, "w") as f:
        f.write("Layer name," + ",".join(f"f{i}" for i in range(20)) + ",\n")
        for lay in layers:
            f.write(f"{lay.name},1,1,1,1,1,1,0,1,2,0,1,2,0,1,2,3,0,1,2,3,\n")
    return cfg_path, topo_path, layout_path
