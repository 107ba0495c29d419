"""Mixture-of-experts layers on the simulator: per-expert load, and expert parallelism across chips.

**Which tokens go where** depends on the data, so it is measured: ``measure_routing`` runs the graph once
under ONNX Runtime (graphmill-domain ops lowered) on seeded inputs and reads every MoE layer's
``expert_counts`` and ``dropped`` outputs (the layer's outputs 3 and 4, whether the graph holds the
``graphmill::MoE`` node or its standard-ONNX lowering, recognized by the ``lowered_from`` meta that
``passes/lowering`` writes). Token ids are drawn over the whole vocabulary of the embedding they index,
gate noise is zero (inference).

**Expert parallelism** (GShard's layout): the layer's T tokens are split evenly over N chips, the E
experts are placed on chips (``passes.placement.experts.place_experts``: contiguous, or balanced by load; the
``place-experts`` pass's ``meta["expert_placement"]`` when it was run for that many chips),
and one step is four phases separated by the all-to-all collectives:

1. gate: every chip computes ``[T/N, d] x [d, E]`` (twice with noise weights) plus the softmax/top-k;
2. dispatch all-to-all: chip ``s`` sends chip ``c`` the kept assignments of its tokens to the experts on
   ``c`` (each chip's tokens are assumed routed like the whole batch: ``kept_e / N`` each), ``d`` words per
   token, over the directed link (s, c) (``link_latency_cycles + ceil(bytes / link_bw_bytes_per_cycle)``, all
   links at once, as ``multichip`` models them); the phase lasts as long as the busiest link;
3. experts: each chip runs its experts one after another, expert ``e`` as two GEMMs
   ``[kept_e, d] x [d, h]`` and ``[kept_e, h] x [h, d]`` (cycle-level array simulation) plus its bias/ReLU
   on the vector unit; the phase lasts as long as the slowest chip (load imbalance shows here);
4. combine all-to-all: the expert outputs go back the way the tokens came.

**Replicated on one chip**: the same layer with all T tokens and all E experts on one chip and no
transfers. ``moe_report`` gives both for every MoE layer, with the per-expert load.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from graphmill.ir import Graph, Node, TensorType, UserInputError
from graphmill.ir.ops.moe import DROPPED, EXPERT_COUNTS, moe_attrs, moe_capacity, moe_dims
from graphmill.passes.placement.experts import MAX_CHIPS, chip_loads, place_experts

from .config import AccelConfig, as_accel
from .engine import simulate_array_layer
from .lowering import ArrayLayer, VectorLayer, gemm_layer

LOWERED_FROM = "graphmill::MoE"


@dataclass
class MoELayer:
    """One MoE layer as the graph holds it: its configuration and, once measured, its routing."""

    name: str
    experts: int
    k: int
    capacity_factor: float
    gate: str
    tokens: int
    d: int
    expert_hidden: int
    noisy: bool
    counts: list[int] | None = None  # assignments per expert (before capacity)
    dropped: int | None = None
    placement: list[int] | None = None  # the place-experts pass's choice (meta["expert_placement"])
    placement_chips: int | None = None

    @property
    def capacity(self) -> int:
        return moe_capacity(self.tokens, self.k, self.experts, self.capacity_factor)

    @property
    def kept(self) -> list[int]:
        """Assignments each expert processes: ``min(count, capacity)``; balanced ``T k / E`` before measuring."""
        if self.counts is None:
            even = min(self.capacity, math.ceil(self.tokens * self.k / self.experts))
            return [even] * self.experts
        return [min(c, self.capacity) for c in self.counts]

    def load_cv(self) -> float | None:
        """Coefficient of variation (std / mean) of the per-expert assignment counts."""
        if not self.counts:
            return None
        a = np.asarray(self.counts, dtype=np.float64)
        return float(a.std() / a.mean()) if a.mean() > 0 else 0.0


def _int(x: Any) -> int | None:
    return x if isinstance(x, int) else None


def moe_layers(graph: Graph) -> list[MoELayer]:
    """The MoE layers of ``graph``: ``graphmill::MoE`` nodes, and lowered ones (nodes whose meta says
    ``lowered_from: graphmill::MoE``; their configuration is in ``meta["moe"]``)."""
    out: list[MoELayer] = []
    seen: set[str] = set()
    for n in graph.nodes:
        if n.domain == "graphmill" and n.op_type == "MoE":
            a = moe_attrs(n)
            tokens, d, h, E = moe_dims(n)
            if not all(isinstance(v, int) for v in (tokens, d, h, E)):
                raise UserInputError(f"{n.describe()}: the MoE layer's shapes must be static to simulate it")
            layer = MoELayer(n.name or "MoE", E, a["k"], a["capacity_factor"], a["gate"], tokens, d, h,
                             len(n.inputs) > 2 and n.inputs[2] is not None)
            p, chips = n.meta.get("expert_placement"), n.meta.get("expert_chips")
            if isinstance(p, list) and len(p) == E and isinstance(chips, int):
                layer.placement, layer.placement_chips = [int(c) for c in p], chips
            out.append(layer)
        elif n.meta.get("lowered_from") == LOWERED_FROM and n.meta.get("lowered_node") not in seen:
            name = n.meta.get("lowered_node") or "MoE"
            m = n.meta.get("moe") or {}
            vals = [_int(m.get(key)) for key in ("experts", "k", "tokens", "d", "expert_hidden")]
            if None in vals:
                continue  # a lowering without its configuration: costed as its standard nodes only
            seen.add(name)
            E, k, tokens, d, h = vals
            layer = MoELayer(name, E, k, float(m.get("capacity_factor", 1.0)), str(m.get("gate", "topk")),
                             tokens, d, h, bool(m.get("noisy", False)))
            p, chips = n.meta.get("expert_placement"), n.meta.get("expert_chips")
            if isinstance(p, list) and len(p) == E and isinstance(chips, int):  # place-experts on a loaded file
                layer.placement, layer.placement_chips = [int(c) for c in p], chips
            out.append(layer)
    return out


def _routing_values(graph: Graph) -> dict[str, tuple[Any, Any]]:
    """layer name -> (expert_counts value, dropped value)."""
    out: dict[str, list] = {}
    for n in graph.nodes:
        if n.domain == "graphmill" and n.op_type == "MoE":
            out[n.name or "MoE"] = [n.outputs[EXPERT_COUNTS], n.outputs[DROPPED]]
        elif n.meta.get("lowered_from") == LOWERED_FROM:
            for idx, which in (n.meta.get("lowered_outputs") or {}).items():
                if which in (EXPERT_COUNTS, DROPPED):
                    slot = out.setdefault(n.meta.get("lowered_node") or "MoE", [None, None])
                    slot[0 if which == EXPERT_COUNTS else 1] = n.outputs[int(idx)]
    return {k: (v[0], v[1]) for k, v in out.items() if v[0] is not None and v[1] is not None}


def routing_inputs(graph: Graph, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for a routing run: floats standard normal, gate noise zero, integer inputs that a
    ``Gather`` reads as indices drawn over the whole table they index (token ids over the vocabulary)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    inits = graph.initializers
    noise = {n.inputs[7].name for n in graph.nodes if n.domain == "graphmill" and n.op_type == "MoE"
             and len(n.inputs) > 7 and n.inputs[7] is not None}
    for v in graph.inputs:
        if v.name in inits:
            continue
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None:
            raise UserInputError(f"cannot make routing data for input %{v.name} of type {t}")
        shape = tuple(d if isinstance(d, int) else 1 for d in t.shape)
        if t.dtype.is_floating:
            dt = t.dtype.numpy()
            feeds[v.name] = (np.zeros(shape, dt) if (v.name in noise or v.name.endswith("_noise"))
                             else rng.standard_normal(shape).astype(dt))
        elif t.dtype.is_integer:
            high = 4
            for user in v.users:
                if user.op_type == "Gather" and user.inputs[1] is v and user.inputs[0] is not None \
                        and isinstance(user.inputs[0].type, TensorType) and user.inputs[0].type.shape:
                    axis = int(user.attr("axis", 0))
                    dim = user.inputs[0].type.shape[axis]
                    if isinstance(dim, int):
                        high = dim
            feeds[v.name] = rng.integers(0, high, size=shape).astype(t.dtype.numpy())
        else:
            raise UserInputError(f"cannot make routing data for input %{v.name} of element type {t.dtype}")
    return feeds


def measure_routing(graph: Graph, inputs: Mapping[str, np.ndarray] | None = None, *, seed: int = 0
                    ) -> dict[str, tuple[list[int], int]]:
    """Run ``graph`` once under ONNX Runtime and return, per MoE layer, (assignments per expert, dropped)."""
    from graphmill.backends import onnxruntime as ortb

    g = graph.copy()
    values = _routing_values(g)
    if not values:
        return {}
    wanted = []
    listed = {id(v) for v in g.outputs}
    for name, (counts, dropped) in values.items():
        for v in (counts, dropped):
            if id(v) not in listed:
                g.outputs.append(v)
                listed.add(id(v))
        wanted.append((name, counts.name, dropped.name))
    feeds = dict(inputs) if inputs is not None else routing_inputs(g, seed=seed)
    res = ortb.run(g, feeds)
    return {name: ([int(x) for x in np.asarray(res[c]).ravel()], int(np.asarray(res[dr]))) for name, c, dr in wanted}


# -- cycles ----------------------------------------------------------------------------------------------

def _vector_cycles(flops: float, cfg: AccelConfig) -> int:
    return int(math.ceil(flops / max(1, cfg.lanes)))


class _Cycles:
    """GEMM cycles through the cycle-level array simulation, memoized by shape."""

    def __init__(self, cfg: AccelConfig) -> None:
        self.cfg = cfg
        self.memo: dict = {}
        self.gemms: dict[tuple[int, int, int], int] = {}

    def gemm(self, m: int, n: int, k: int) -> int:
        if m <= 0 or n <= 0 or k <= 0:
            return 0
        key = (m, n, k)
        if key not in self.gemms:
            self.gemms[key] = int(simulate_array_layer(gemm_layer("moe", "MatMul", m, n, k), self.cfg,
                                                       memo=self.memo).total_cycles)
        return self.gemms[key]

    def gate(self, layer: MoELayer, tokens: int) -> int:
        c = self.gemm(tokens, layer.experts, layer.d) * (2 if layer.noisy else 1)
        return c + _vector_cycles(tokens * 5 * layer.experts, self.cfg)

    def expert(self, layer: MoELayer, rows: int) -> int:
        if rows <= 0:
            return 0
        h, d = layer.expert_hidden, layer.d
        return self.gemm(rows, h, d) + self.gemm(rows, d, h) + _vector_cycles(rows * (2 * h + 3 * d), self.cfg)


@dataclass
class ExpertParallelResult:
    layer: str
    chips: int
    placement: list[int]
    step_cycles: float
    gate_cycles: float
    dispatch_cycles: float
    expert_cycles: float
    combine_cycles: float
    all_to_all_bytes: int
    chip_tokens: list[float] = field(default_factory=list)
    chip_expert_cycles: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _all_to_all(kept: Sequence[int], placement: Sequence[int], chips: int, row_bytes: int,
                cfg: AccelConfig) -> tuple[float, int]:
    """(cycles of the busiest link, total bytes) when every chip sends each other chip its 1/N share of the
    assignments to that chip's experts."""
    per_dst = chip_loads(kept, placement, chips)  # assignments processed on each chip
    total = 0
    worst = 0.0
    for dst in range(chips):
        nbytes = int(math.ceil(per_dst[dst] / chips * row_bytes))
        if nbytes == 0:
            continue
        for src in range(chips):
            if src == dst:
                continue
            total += nbytes
            worst = max(worst, cfg.link_latency_cycles + math.ceil(nbytes / cfg.link_bw_bytes_per_cycle))
    return worst, total




def check_chips(chips: Any) -> int:
    """``chips`` if it is a chip count the simulator takes (1..MAX_CHIPS), else a one-line error (the
    all-to-all is per pair of chips: 10^9 chips would be 10^9-entry lists before any answer)."""
    if not isinstance(chips, int) or isinstance(chips, bool) or not 1 <= chips <= MAX_CHIPS:
        raise UserInputError(f"expert parallelism needs a number of chips in 1..{MAX_CHIPS} (the accelerator "
                             f"config's limit), got {chips!r}")
    return chips


def simulate_expert_parallel(layer: MoELayer, accel, chips: int, *, placement: Sequence[int] | None = None,
                             method: str = "balanced", cycles: "_Cycles | None" = None) -> ExpertParallelResult:
    """One step of ``layer`` with its experts spread over ``chips`` chips (module docstring); ``chips = 1`` is
    the layer replicated on one chip (no transfers)."""
    cfg = as_accel(accel)
    check_chips(chips)
    cyc = cycles or _Cycles(cfg)
    kept = layer.kept
    if placement is None:
        placement = place_experts(kept, chips, method=method)
    placement = list(placement)
    if len(placement) != layer.experts or any(not (0 <= c < chips) for c in placement):
        raise UserInputError(f"{layer.name}: an expert placement needs one chip in 0..{chips - 1} per expert "
                             f"({layer.experts}), got {placement}")
    gate = cyc.gate(layer, math.ceil(layer.tokens / chips))
    row_bytes = layer.d * cfg.word_bytes
    if chips > 1:
        dispatch, nbytes = _all_to_all(kept, placement, chips, row_bytes, cfg)
    else:
        dispatch, nbytes = 0.0, 0
    per_chip = [0] * chips
    for e, c in enumerate(placement):
        per_chip[c] += cyc.expert(layer, kept[e])
    experts = max(per_chip)
    combine = dispatch
    step = gate + dispatch + experts + combine
    return ExpertParallelResult(layer.name, chips, placement, float(step), float(gate), float(dispatch),
                                float(experts), float(combine), 2 * nbytes, chip_loads(kept, placement, chips),
                                per_chip)


def moe_primitives(node: Node, name: str) -> list:
    """Simulator primitives of one ``graphmill::MoE`` node on one chip: the gate GEMM(s), each expert's two
    GEMMs over the assignments it keeps (measured routing in ``node.meta["moe_routing"]["counts"]`` when
    present, else an even split capped at capacity), and the vector work (softmax, bias, ReLU, combine)."""
    a = moe_attrs(node)
    tokens, d, h, E = moe_dims(node)
    if not all(isinstance(v, int) for v in (tokens, d, h, E)):
        raise UserInputError(f"{node.describe()}: the MoE layer's shapes must be static to simulate it")
    layer = MoELayer(name, E, a["k"], a["capacity_factor"], a["gate"], tokens, d, h,
                     len(node.inputs) > 2 and node.inputs[2] is not None)
    routing = node.meta.get("moe_routing")
    if isinstance(routing, dict) and isinstance(routing.get("counts"), list) and len(routing["counts"]) == E:
        layer.counts = [int(c) for c in routing["counts"]]
    prims: list = [gemm_layer(f"{name}/gate", "MoEGate", tokens, E, d, repeat=2 if layer.noisy else 1)]
    for e, rows in enumerate(layer.kept):
        if rows > 0:
            prims.append(gemm_layer(f"{name}/expert{e}/w1", "MoEExpert", rows, h, d))
            prims.append(gemm_layer(f"{name}/expert{e}/w2", "MoEExpert", rows, d, h))
    rows = sum(layer.kept)
    prims.append(VectorLayer(f"{name}/vector", "MoE", tokens * d, tokens * 5 * E + rows * (2 * h + 3 * d),
                             tokens * d + rows * d, tokens * d))
    return prims


def moe_report(graph: Graph, accel, *, chips: Sequence[int] | None = None, inputs: Mapping | None = None,
               seed: int = 0, method: str = "balanced") -> list[dict]:
    """Per MoE layer: configuration, capacity, measured per-expert load (assignments, kept, dropped, CV), and
    one step expert-parallel on each of ``chips`` against the layer replicated on one chip. Without ``chips``: the
    chip count the ``place-experts`` pass placed the layer for, when it was run (``place-experts{chips=4}`` is
    simulated at 4 chips), otherwise the accelerator's ``chips``, at least 2."""
    cfg = as_accel(accel)
    given_counts = [check_chips(c) for c in chips] if chips else None
    layers = moe_layers(graph)
    if not layers:
        return []
    routing = measure_routing(graph, inputs, seed=seed)
    cyc = _Cycles(cfg)
    out = []
    for layer in layers:
        if layer.name in routing:
            layer.counts, layer.dropped = routing[layer.name]
        one = simulate_expert_parallel(layer, cfg, 1, cycles=cyc)
        par = []
        chip_counts = given_counts or [check_chips(layer.placement_chips) if layer.placement is not None
                                      else max(2, cfg.chips)]
        for n in chip_counts:
            given = layer.placement if layer.placement_chips == n else None  # the place-experts pass's choice
            r = simulate_expert_parallel(layer, cfg, n, method=method, placement=given, cycles=cyc)
            d = r.to_dict()
            d["speedup_vs_one_chip"] = one.step_cycles / r.step_cycles if r.step_cycles else None
            par.append(d)
        out.append({"layer": layer.name, "experts": layer.experts, "k": layer.k,
                    "capacity_factor": layer.capacity_factor, "gate": layer.gate, "tokens": layer.tokens,
                    "capacity": layer.capacity, "expert_load": layer.counts, "expert_kept": layer.kept,
                    "dropped": layer.dropped, "load_cv": layer.load_cv(), "replicated_one_chip": one.to_dict(),
                    "expert_parallel": par})
    return out


def moe_report_table(rows: list[dict]) -> str:
    """The MoE section of ``graphmill simulate``'s table."""
    lines = []
    for r in rows:
        cv = r["load_cv"]
        lines.append(f"MoE layer {r['layer']}: {r['experts']} experts, top-{r['k']} ({r['gate']}), "
                     f"{r['tokens']} tokens, capacity {r['capacity']} per expert (factor {r['capacity_factor']:g}), "
                     f"dropped {r['dropped']}, load CV {cv:.3f}" if cv is not None else
                     f"MoE layer {r['layer']}: routing not measured")
        if r["expert_load"] is not None:
            lines.append("  per-expert load: " + " ".join(str(c) for c in r["expert_load"]))
        one = r["replicated_one_chip"]
        lines.append(f"  one chip (replicated): {one['step_cycles']:,.0f} cycles")
        for p in r["expert_parallel"]:
            lines.append(f"  expert-parallel on {p['chips']} chips: {p['step_cycles']:,.0f} cycles "
                         f"(gate {p['gate_cycles']:,.0f}, all-to-all {p['dispatch_cycles'] + p['combine_cycles']:,.0f}, "
                         f"experts {p['expert_cycles']:,.0f}; {p['speedup_vs_one_chip']:.2f}x one chip), "
                         f"placement {p['placement']}")
    return "\n".join(lines) + ("\n" if lines else "")


__all__ = ["MAX_CHIPS", "ExpertParallelResult", "MoELayer", "check_chips", "measure_routing", "moe_layers", "moe_primitives", "moe_report",
           "moe_report_table", "routing_inputs", "simulate_expert_parallel"]
