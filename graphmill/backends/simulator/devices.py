"""Device sets for placement: identical chips of an accelerator TOML, or a heterogeneous devices TOML.

A ``DeviceSet`` is what a placement runs on: per device a name, an accelerator config, a relative speed and a
memory capacity (bytes), and per ordered pair of devices a link (latency in time units, bytes per time unit).
``PlacementCostModel`` answers the placement passes' questions about it through the ``CostModel`` protocol
(graphmill/ir/cost.py) plus the device-set questions the placement passes ask (``devices``, ``names``,
``capacity``, ``link``).

**Time unit.** Everything is in cycles of the *reference clock*: the clock of the set's base accelerator
(``accel`` of the devices file, the ``--accel`` config, or the built-in one). A device with its own accelerator
config at another clock has its cycles converted (``cycles * ref_mhz / mhz``); a device given by ``speed`` takes
``base time / speed``. A transfer of ``b`` bytes from ``s`` to ``d`` takes ``latency[s][d] + b /
bytes_per_unit[s][d]`` (no rounding, so that a reader of the JSON report recomputes it exactly).

Devices file (TOML)::

    accel = "edge.toml"          # optional: base accelerator (relative to this file; default: the built-in one)
    [[device]]
    name = "cpu"                 # required, unique
    speed = 0.1                  # relative speed vs. the base accelerator (default 1.0) ...
    memory_gb = 64               # required: memory capacity
    [[device]]
    name = "gpu0"
    accel = "tpu-v1-like.toml"   # ... or its own accelerator config (then no speed)
    memory_gb = 16
    [link]                       # required: the link between every pair of devices
    bytes_per_cycle = 64
    latency_cycles = 1000
    [[links]]                    # optional per-pair overrides (both directions)
    between = ["cpu", "gpu0"]
    bytes_per_cycle = 8
    latency_cycles = 5000

**Backward ops.** A training-step graph (``graphmill.passes.placement.training_graph``) carries one
``graphmill::Backward`` node per forward op (``meta["forward"]`` names it). Its time is the rule the pipeline
partitioner also uses: twice the forward op's time for a MAC op (Conv, Gemm, MatMul, LSTM, ...: the input's and
the weights' gradients), once for every other op.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphmill.ir import Node, UserInputError
from graphmill.ir.partition import value_bytes

from graphmill.util.files import TEXT_FILE_LIMIT, read_user_file
from graphmill.util.limits import check_count
from graphmill.util.suggest import did_you_mean

from .config import RANGES, AccelConfig, as_accel, decode_text, from_dict, load_accel
from .costmodel import RooflineCostModel, SimulatorCostModel

__all__ = ["DeviceSet", "PlacementCostModel", "device_set", "device_set_from_meta", "load_devices",
           "DEFAULT_MEMORY_GB", "MAC_OPS", "DEFAULT_PLACEMENT_ACCEL"]

#: memory per chip when the devices come from an accelerator TOML (which states none) or a device count
DEFAULT_MEMORY_GB = 16.0

#: ops whose backward is two products (input and weight gradients): twice the forward time
MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "MatMulInteger", "QLinearConv", "QLinearMatMul",
                     "LSTM", "GRU", "RNN", "Attention", "MultiHeadAttention", "FusedMatMul", "Einsum"})

#: the accelerator of ``--devices N`` without ``--accel``: a 128x128 bf16 chip at 1 GHz, ~1 TB/s DRAM, linked at
#: 64 bytes per cycle with 1 us latency (the pipeline partitioner's default chip)
DEFAULT_PLACEMENT_ACCEL = {
    "name": "placement-default",
    "array": {"rows": 128, "cols": 128, "dataflow": "ws"},
    "memory": {"ifmap_kb": 8192, "filter_kb": 8192, "ofmap_kb": 4096, "word_bytes": 2, "dram_bw_words": 512},
    "clock": {"mhz": 1000},
    "vector": {"lanes": 128},
    "system": {"chips": 1, "link_bw_bytes_per_cycle": 64, "link_latency_cycles": 1000},
}


@dataclass
class DeviceSet:
    """Devices and links; times in cycles of ``ref_mhz`` (module docstring)."""

    names: list[str]
    accels: list[AccelConfig]
    speeds: list[float]
    memory: list[float]  # bytes
    latency: np.ndarray  # [D, D], 0 on the diagonal
    bytes_per_unit: np.ndarray  # [D, D], inf on the diagonal
    ref_mhz: float
    source: str = ""

    @property
    def count(self) -> int:
        return len(self.names)

    @property
    def units(self) -> str:
        return f"cycles at {self.ref_mhz:g} MHz"

    def uniform_link(self) -> bool:
        off = ~np.eye(self.count, dtype=bool)
        return self.count < 2 or (np.all(self.latency[off] == self.latency[off][0]) and
                                  np.all(self.bytes_per_unit[off] == self.bytes_per_unit[off][0]))

    def to_dict(self) -> dict:
        """A JSON-able description (graph.meta["placement"]["devices"]), read back by ``from_dict``."""
        return {"names": list(self.names), "accels": [a.to_dict() for a in self.accels],
                "speeds": list(self.speeds), "memory": list(self.memory),
                "latency": self.latency.tolist(),
                "bytes_per_unit": [[None if i == j else float(x) for j, x in enumerate(r)]
                                   for i, r in enumerate(self.bytes_per_unit)],
                "ref_mhz": self.ref_mhz}

    @classmethod
    def from_dict(cls, d: dict) -> "DeviceSet":
        """The set ``to_dict`` wrote, read back from a model file's meta, which is untrusted: every count,
        length, type and range is checked (``ValueError`` or ``UserInputError`` naming the field, which
        ``device_set_from_meta`` turns into one line naming the file). A NaN link latency hung the schedule
        simulation (no event time equals NaN), a speed of 0 divided by zero, one of 5e-324 made every step time
        infinite, ``true`` and ``"1"`` passed as numbers, and a latency matrix shorter than the names indexed out
        of range."""
        if not isinstance(d, dict):
            raise ValueError("not an object")
        names = d["names"]
        if not isinstance(names, list) or not 1 <= len(names) <= MAX_DEVICES or \
                not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise ValueError(f"names: expected 1 to {MAX_DEVICES} distinct strings")
        n = len(names)

        def numbers(key: str, check) -> list[float]:
            vals = d[key]
            if not isinstance(vals, list) or len(vals) != n:
                raise ValueError(f"{key}: expected {n} numbers, one per device")
            return [check(v, f"{key}[{i}]") for i, v in enumerate(vals)]

        def matrix(key: str, low: float, high: float, diagonal: float) -> np.ndarray:
            rows = d[key]
            if not isinstance(rows, list) or len(rows) != n or not all(isinstance(r, list) and len(r) == n
                                                                      for r in rows):
                raise ValueError(f"{key}: expected a {n} x {n} matrix")
            # the diagonal (a device to itself) is not a link: to_dict writes 0 or null there. Checked as a whole
            # (4,096 devices are 16 million entries); entry by entry only to name the first bad one
            off = ~np.eye(n, dtype=bool)
            m = None
            if {type(x) for r in rows for x in r} <= {int, float, type(None)}:  # not bool, not str
                try:
                    m = np.array(rows, dtype=float)  # None -> NaN, refused below unless on the diagonal
                except OverflowError:  # an integer of 400 digits
                    pass
            if m is None or not ((m[off] >= low) & (m[off] <= high)).all():  # NaN fails both comparisons
                for i, r in enumerate(rows):
                    for j, x in enumerate(r):
                        if i != j:
                            _num(x, f"{key}[{i}][{j}]", low=low, inclusive=True, high=high)
                if m is None:  # the odd type was on the diagonal, which is not read
                    m = np.array([[0.0 if i == j else float(x) for j, x in enumerate(r)] for i, r in enumerate(rows)])
            np.fill_diagonal(m, diagonal)
            return m

        accels = d["accels"]
        if not isinstance(accels, list) or len(accels) != n or not all(isinstance(a, dict) for a in accels):
            raise ValueError(f"accels: expected {n} accelerator configs, one per device")
        speeds = numbers("speeds", _speed)
        memory = numbers("memory", lambda v, where: _num(v, where, low=0.0, inclusive=True,
                                                         high=MAX_MEMORY_GB * 1e9))
        latency = matrix("latency", 0.0, MAX_LATENCY, 0.0)
        bw = matrix("bytes_per_unit", *BANDWIDTH_RANGE, math.inf)
        ref_mhz = _num(d["ref_mhz"], "ref_mhz", low=0.0, inclusive=False, high=1e9)
        return cls(list(names), [as_accel(AccelConfig(**a)) for a in accels], speeds, memory, latency, bw, ref_mhz,
                   "graph meta")


def device_set_from_meta(d: Any, where: str) -> DeviceSet:
    """``DeviceSet.from_dict`` of a device set a model file carries in its meta, its problems one ``UserInputError``
    naming ``where`` (the file's meta is untrusted input)."""
    try:
        return DeviceSet.from_dict(d)
    # OverflowError: a JSON integer of 400 digits; UserInputError: an accelerator config's own check, which is the
    # meta's problem, not the user's --accel file's
    except (KeyError, TypeError, ValueError, OverflowError, UserInputError) as e:
        raise UserInputError(f"{where} is unreadable ({e})") from None


def cost_from_meta(meta: dict, where: str, allowed: tuple[str, ...] = ("roofline", "simulator")) -> str:
    """The cost model a saved placement names in its meta (default roofline), one of ``allowed``; anything else
    is the file's problem, named as such (it read as a bad ``--cost`` flag, or gave a traceback for a number)."""
    cost = meta.get("cost", "roofline")
    if not isinstance(cost, str) or cost not in allowed:
        raise UserInputError(f"{where} names the cost model {cost!r}; a saved placement replays with "
                             f"{' or '.join(allowed)}")
    return cost


def _links(n: int, latency: float, bw: float) -> tuple[np.ndarray, np.ndarray]:
    lat = np.full((n, n), float(latency))
    b = np.full((n, n), float(bw))
    np.fill_diagonal(lat, 0.0)
    np.fill_diagonal(b, math.inf)
    return lat, b


MAX_DEVICES = 4096  # as system.chips of an accelerator TOML (config.py)


def device_set(*, devices: int | None = None, accel: Any = None, devices_file: str | os.PathLike | None = None,
               memory_gb: float | None = None) -> DeviceSet:
    """The devices of ``devices_file``, or ``devices`` identical chips of ``accel`` (default: its
    ``system.chips``; the built-in accelerator without ``accel``), each with ``memory_gb`` (default 16 GB)."""
    if devices_file is not None:
        if devices is not None:
            raise UserInputError("give either --devices N or --devices-file D.toml, not both")
        ds = load_devices(devices_file, accel=accel)
        if memory_gb is not None:
            ds.memory = [_check_memory(memory_gb, "--memory") * 1e9] * ds.count
        return ds
    cfg = as_accel(accel) if accel is not None else from_dict(DEFAULT_PLACEMENT_ACCEL, "the default accelerator")
    n = check_count(cfg.chips if devices is None else devices, "--devices", 1)
    if n > MAX_DEVICES:  # 10^5 devices: a 10^10-entry link matrix, reported as the model being out of memory
        where = "--devices" if devices is not None else "the accelerator's system.chips ="
        raise UserInputError(f"{where} {n}: at most {MAX_DEVICES:,} devices (placement keeps a device-by-device "
                             "link matrix and scores every op on every device)")
    mem = _check_memory(DEFAULT_MEMORY_GB if memory_gb is None else memory_gb, "--memory") * 1e9
    lat, bw = _links(n, cfg.link_latency_cycles, cfg.link_bw_bytes_per_cycle)
    return DeviceSet([f"chip{i}" for i in range(n)], [cfg] * n, [1.0] * n, [mem] * n, lat, bw, cfg.clock_mhz,
                     getattr(cfg, "name", "accel"))


MAX_MEMORY_GB = 1e9  # an exabyte: 1e300 GB was finite here and infinite in bytes, which the report wrote as null


def _check_memory(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= MAX_MEMORY_GB:
        raise UserInputError(f"{where}: memory_gb must be a number > 0 and at most {MAX_MEMORY_GB:g}, got {v!r}")
    return float(v)


# The ranges a device set's numbers must lie in. A speed or a bandwidth of 5e-324 is finite and > 0, yet it
# made every step time infinite (op time / speed, bytes / bandwidth); so did a latency of 1e308 plus anything.
# Links take the ranges of an accelerator TOML's system.link_* (config.RANGES).
SPEED_RANGE = (1e-6, 1e6)  # relative to the reference device
BANDWIDTH_RANGE = RANGES["link_bw_bytes_per_cycle"][1:]  # bytes per cycle
MAX_LATENCY = RANGES["link_latency_cycles"][2]  # cycles


def _num(v: Any, where: str, *, low: float, inclusive: bool, high: float = 1e300) -> float:
    try:
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and \
            (v >= low if inclusive else v > low) and v <= high
    except OverflowError:  # an integer of 400 digits
        ok = False
    if not ok:
        got = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
        raise UserInputError(f"{where} must be a number {'>=' if inclusive else '>'} {low:g} and <= {high:g}, "
                             f"got {got}")
    return float(v)


def _speed(v: Any, where: str) -> float:
    return _num(v, where, low=SPEED_RANGE[0], inclusive=True, high=SPEED_RANGE[1])


def _latency(v: Any, where: str) -> float:
    return _num(v, where, low=0.0, inclusive=True, high=MAX_LATENCY)


def _bandwidth(v: Any, where: str) -> float:
    return _num(v, where, low=BANDWIDTH_RANGE[0], inclusive=True, high=BANDWIDTH_RANGE[1])


def _known_keys(table: dict, known: tuple[str, ...], where: str) -> None:
    """Refuse a key the table does not have, with the nearest known one: checked before the required fields, so a
    misspelt required field is named as the typo it is ("missing field 'bytes_per_cycle'" for ``bytes_per_cylce``;
    an outside check)."""
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise UserInputError(f"{where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], known)}; known: "
                             f"{', '.join(known)}")


def load_devices(path: str | os.PathLike, *, accel: Any = None) -> DeviceSet:
    """Read a devices TOML (module docstring); every error one line naming the file, the device and the key."""
    path = os.fspath(path)
    try:
        raw = read_user_file(path, TEXT_FILE_LIMIT, "a devices file (TOML)")
    except OSError as e:
        raise UserInputError(f"{path}: cannot read the devices file: {e.strerror or e}") from None
    try:
        data = tomllib.loads(decode_text(raw, path, "a devices file (TOML)"))
    except tomllib.TOMLDecodeError as e:
        raise UserInputError(f"{path}: not valid TOML: {str(e).splitlines()[0] if str(e) else e}") from None
    except RecursionError:
        raise UserInputError(f"{path}: not valid TOML: nested too deeply") from None
    _known_keys(data, ("accel", "device", "link", "links"), path)
    here = os.path.dirname(os.path.abspath(path))
    if data.get("accel") is not None:
        if not isinstance(data["accel"], str):
            raise UserInputError(f"{path}: accel must be a path to an accelerator TOML")
        if accel is not None:
            raise UserInputError(f"{path} names its accelerator (accel = {data['accel']!r}); do not also give --accel")
        base = load_accel(os.path.join(here, data["accel"]))
    elif accel is not None:
        base = as_accel(accel)
    else:
        base = from_dict(DEFAULT_PLACEMENT_ACCEL, "the default accelerator")
    devs = data.get("device")
    if not isinstance(devs, list) or not devs:
        raise UserInputError(f"{path}: no [[device]] entries (each needs name and memory_gb)")
    if len(devs) > MAX_DEVICES:
        raise UserInputError(f"{path}: {len(devs):,} [[device]] entries; at most {MAX_DEVICES:,}")
    names: list[str] = []
    accels: list[AccelConfig] = []
    speeds: list[float] = []
    mems: list[float] = []
    for i, d in enumerate(devs):
        if not isinstance(d, dict):
            raise UserInputError(f"{path}: device {i} must be a table")
        _known_keys(d, ("name", "memory_gb", "speed", "accel"), f"{path}: device {i}")
        if "name" not in d:
            raise UserInputError(f"{path}: device {i}: missing field 'name'")
        name = d["name"]
        if not isinstance(name, str) or not name.strip():
            raise UserInputError(f"{path}: device {i}: name must be a non-empty string, got {name!r}")
        if name in names:
            raise UserInputError(f"{path}: device {i}: name {name!r} is used twice")
        where = f"{path}: device {name!r}"
        if "memory_gb" not in d:
            raise UserInputError(f"{where}: missing field 'memory_gb'")
        mems.append(_check_memory(d["memory_gb"], where) * 1e9)
        if "accel" in d:
            if "speed" in d:
                raise UserInputError(f"{where}: give either speed or accel, not both")
            if not isinstance(d["accel"], str):
                raise UserInputError(f"{where}: accel must be a path to an accelerator TOML")
            accels.append(load_accel(os.path.join(here, d["accel"])))
            speeds.append(1.0)
        else:
            accels.append(base)
            speeds.append(_speed(d.get("speed", 1.0), f"{where}: speed"))
        names.append(name)
    link = data.get("link")
    if not isinstance(link, dict):
        hint = ("; [links] is the optional array of per-pair overrides, written [[links]]"
                if isinstance(data.get("links"), dict) else "")  # a one-table [links] is the likely typo
        raise UserInputError(f"{path}: missing [link] (bytes_per_cycle and latency_cycles between devices){hint}")
    _known_keys(link, ("bytes_per_cycle", "latency_cycles"), f"{path}: [link]")
    for key in ("bytes_per_cycle", "latency_cycles"):
        if key not in link:
            raise UserInputError(f"{path}: [link]: missing field {key!r}")
    lat, bw = _links(len(names), _latency(link["latency_cycles"], f"{path}: [link] latency_cycles"),
                     _bandwidth(link["bytes_per_cycle"], f"{path}: [link] bytes_per_cycle"))
    pairs = data.get("links", [])
    if not isinstance(pairs, list):
        raise UserInputError(f"{path}: links must be an array of tables ([[links]])")
    overridden: dict[tuple[int, int], int] = {}
    for k, p in enumerate(pairs):
        where = f"{path}: links {k}"
        if not isinstance(p, dict):
            raise UserInputError(f"{where} must be a table")
        _known_keys(p, ("between", "bytes_per_cycle", "latency_cycles"), where)
        for key in ("between", "bytes_per_cycle", "latency_cycles"):
            if key not in p:
                raise UserInputError(f"{where}: missing field {key!r}")
        b = p["between"]
        stranger = next((x for x in b if isinstance(x, str) and x not in names), None) if isinstance(b, list) else None
        if stranger is not None:  # "between must name two different devices" left which one to guess (an outside check)
            raise UserInputError(f"{where}: between names {stranger!r}, no device of this file"
                                 f"{did_you_mean(stranger, names)}; devices: {', '.join(names)}")
        if not isinstance(b, list) or len(b) != 2 or any(x not in names for x in b) or b[0] == b[1]:
            raise UserInputError(f"{where}: between must name two different devices of this file, got {b!r}")
        i, j = names.index(b[0]), names.index(b[1])
        if (min(i, j), max(i, j)) in overridden:  # both directions are one link: the later entry silently won
            raise UserInputError(f"{where}: the link between {b[0]!r} and {b[1]!r} is already given by links "
                                 f"{overridden[min(i, j), max(i, j)]}")
        overridden[min(i, j), max(i, j)] = k
        lat[i, j] = lat[j, i] = _latency(p["latency_cycles"], f"{where}: latency_cycles")
        bw[i, j] = bw[j, i] = _bandwidth(p["bytes_per_cycle"], f"{where}: bytes_per_cycle")
    return DeviceSet(names, accels, speeds, mems, lat, bw, base.clock_mhz, path)


@dataclass
class PlacementCostModel:
    """``CostModel`` over a ``DeviceSet``: op time on each device, transfer time on each link, weights' bytes.

    ``base``: ``"roofline"`` (fast, default) or ``"simulator"`` (cycle-level), or a mapping accel name ->
    a CostModel for the device's accelerator (e.g. measured times). Op times are memoized per node.
    """

    devset: DeviceSet
    base: Any = "roofline"

    def __post_init__(self) -> None:
        if isinstance(self.base, str) and self.base not in ("roofline", "simulator"):
            raise UserInputError(f"--cost {self.base!r}: choose roofline or simulator")
        self._models: dict[int, Any] = {}
        self._cache: dict[tuple[int, int], float] = {}

    @property
    def uncosted(self) -> list[dict]:
        """Nodes the underlying models could not cost (they count 0), as {"name", "op", "reason"}."""
        return [u for m in self._models.values() for u in getattr(m, "uncosted", [])]

    def replay_record(self) -> dict | None:
        """The device set and base model a replay rebuilds this cost model from (``DeviceSet.from_dict``); None
        for measured times (a mapping), which another run of another machine would not reproduce."""
        if not isinstance(self.base, str):
            return None
        return {"device_set": self.devset.to_dict(), "cost": self.base}

    # -- device-set questions the placement passes ask ---------------------------------------------------------
    @property
    def devices(self) -> int:
        return self.devset.count

    @property
    def names(self) -> list[str]:
        return list(self.devset.names)

    @property
    def units(self) -> str:
        return self.devset.units

    def capacity(self, device: int) -> float:
        return self.devset.memory[device]

    def link(self, src: int, dst: int) -> tuple[float, float]:
        """(latency, bytes per time unit) of the link src -> dst."""
        return float(self.devset.latency[src, dst]), float(self.devset.bytes_per_unit[src, dst])

    # -- the CostModel protocol -------------------------------------------------------------------------------
    def _model(self, device: int) -> Any:
        a = self.devset.accels[device]
        key = id(a)
        if key not in self._models:
            if isinstance(self.base, str):
                m = (RooflineCostModel if self.base == "roofline" else SimulatorCostModel)(
                    dataclasses.replace(a, chips=1))
            else:
                m = self.base
            self._models[key] = m
        return self._models[key]

    def op_time(self, node: Node, device: int = 0) -> float:
        k = (id(node), device)
        t = self._cache.get(k)
        if t is None:
            t = self._cache[k] = self._op_time(node, device)
        return t

    def _op_time(self, node: Node, device: int) -> float:
        if node.domain == "graphmill" and node.op_type == "Backward":
            fwd = backward_of(node)
            if fwd is None:
                return 0.0
            return (2.0 if fwd.op_type in MAC_OPS else 1.0) * self.op_time(fwd, device)
        if node.domain == "graphmill" and node.op_type in ("Update", "Identity"):
            return 0.0
        m = self._model(device)
        t = float(m.op_time(node, 0))
        a = self.devset.accels[device]
        return t * (self.devset.ref_mhz / a.clock_mhz) / self.devset.speeds[device]

    def transfer_time(self, nbytes: int, src: int, dst: int) -> float:
        if src == dst or nbytes <= 0:
            return 0.0
        return float(self.devset.latency[src, dst] + nbytes / self.devset.bytes_per_unit[src, dst])

    def memory(self, node: Node) -> int:
        return sum(value_bytes(v) for v in node.inputs if v is not None and v.const is not None)

    def group_cost(self, nodes: list[Node], device: int = 0) -> Any:
        """A fusion group as one kernel on ``device`` (``fusion_cost.py``); one op: its own op time."""
        from .fusion_cost import GroupCost, kernel_cost

        if len(nodes) == 1:
            return GroupCost(self.op_time(nodes[0], device), True)
        a = self.devset.accels[device]
        return kernel_cost(nodes, a, scale=self.devset.ref_mhz / a.clock_mhz / self.devset.speeds[device],
                           memo=self.__dict__.setdefault("_kernel_memo", {}))

    def group_builder(self, device: int = 0) -> Any:
        """An empty fusion group on ``device`` to grow one op at a time (``fusion_cost.KernelBuilder``), each
        answer ``group_cost``'s for the group so far (from two ops: one op alone is not a kernel)."""
        from .fusion_cost import KernelBuilder

        a = self.devset.accels[device]
        return KernelBuilder(a, scale=self.devset.ref_mhz / a.clock_mhz / self.devset.speeds[device],
                             memo=self.__dict__.setdefault("_kernel_memo", {}))


def backward_of(node: Node) -> Node | None:
    """The forward node a ``graphmill::Backward`` node differentiates (``meta["forward"]``, found among the
    readers of its inputs), or None."""
    name = node.meta.get("forward")
    for v in node.inputs:
        if v is None:
            continue
        p = v.producer
        if p is not None and p.name == name:
            return p
        for u in v.users:
            if u.name == name and u is not node:
                return u
    return None
