"""NAHAS (Zhou et al., "Rethinking Co-design of Neural Architectures and Hardware Accelerators", 2021): one
search over the network AND the accelerator that runs it, under an area budget, against the two two-step
baselines (network first on a fixed accelerator then the accelerator; or the accelerator first for a fixed
network then the network).

**Task**: scikit-learn's digits (``TASK``: 1,797 8x8 images upsampled bilinearly to the network's resolution;
trained on the seeded 4/5, accuracy on the held-out fifth, ``graphmill.search.evaluators.train_graph``; the same
held-out fifth ranks the candidates and is reported, for every mode alike).

**Joint space**: ``{"nn": <network>, "accel": <accelerator>}`` (``graphmill.search.product``). The network
(option ``nn``) is ``digits``: the MnasNet-style MBConv space of ``graphmill.search.oneshot.DIGITS_SPEC``
(resolution 8/12/16 x per stage depth, width, kernel, expansion; each candidate trained alone from BigNAS's
initialization), ``tiny`` (``TINY_SPEC``, for tests) or ``mnasnet`` (MnasNet's 7-block factorized space,
``spaces/mnasnet.py``; trained at width 0.25 / 16 px, slow). The accelerator is ``accelerator_space()``
(``spaces/accelerator.py``: rows, cols, dataflow, the three buffers in KB, DRAM words/cycle), its value lists
set by the options of the same names; clock and word size come from ``--accel`` (default: the examples' edge
accelerator, 500 MHz, 1-byte words).

**Evaluation** (``NahasEvaluator``): (1) the area ``area_mm2`` of the accelerator (``AreaModel``); over the
budget (option ``area_mm2``) the design is infeasible and is not trained: reward ``-area / budget`` (below
every feasible reward, which is >= 0; the hard constraint); (2) accuracy of the network's proxy after ``steps``
Adam steps (cached per network within a process, and primed from the checkpoints on resume: the same network
on another accelerator is not retrained, nor is a finished training after Ctrl-C);
(3) latency and energy of one inference (batch 1) of the network at its deployment size on the accelerator,
simulated (``graphmill.backends.simulator``: cycles -> ms at the clock; energy = MACs x ``mac_pj`` + SRAM
words x ``sram_pj_per_word`` + DRAM words x ``dram_pj_per_word``, the simulator's model, with the 45 nm
constants of ``energy_constants``). Deployment size: the digits spaces at ``latency_scale`` x the proxy's
resolution (8 -> 64..128 px), MnasNet's at 1.0 / 224 px; (4) the reward, MnasNet's (Tan et al. 2019, Eq. 2)
with a hard latency constraint and a soft energy term::

    reward = ACC x (LAT / T) ^ (0 if LAT <= T else -1) x (E / E_ref) ^ energy_w        (area <= A)

``T`` (option ``latency_ms``; default: the reference network's latency on the fixed accelerator), ``E_ref``
(the reference network's energy there: a scale only) and ``energy_w`` (default -0.01: 2x the energy costs 0.7%
of the reward, so energy separates designs of near-equal accuracy without outweighing accuracy). A design is
*feasible* when ``area <= A`` and ``LAT <= T``; the reported best is the feasible trial of highest reward.

**Accounting** (the same for every mode): ``budget`` is the number of trainings (distinct networks trained:
the expensive unit), and every mode also gets ``budget x accel_sims`` simulations (option ``accel_sims``,
K). A simulation costs ~10 ms at deployment size, a training ~1-2 s. ``report.json`` states ``trainings`` and
``simulations`` as spent.

**Modes** (option ``mode``), at those equal counts and the same reward:

* ``joint`` with ``accel_search=nested`` (the default): a bilevel co-design search. The strategy (option
  ``strategy``: ``evolution`` = regularized evolution, ``reinforce`` / ``ppo`` = the LSTM controller, or any
  ``graphmill.search`` strategy) searches the network space; each network is trained once and judged at ITS
  best accelerator within the area budget, found by ``NahasEvaluator.best_accelerator``: an accelerator search
  of K simulations and no training (the accuracy is a constant factor of the reward, so it maximizes the
  hardware factor ``(LAT/T)^(0|-1) x (E/E_ref)^energy_w``; the area is analytic, so points over the budget are
  never simulated; every area-feasible point when they are no more than K; else ``accel_strategy``, proposing
  first the accelerators chosen for the ``accel_warm`` best networks so far: what served good networks is the
  likeliest to serve the next);
* ``joint`` with ``accel_search=sampled``: the single controller over the product space (a trial is one
  (network, accelerator) pair, a network is trained the first time it is drawn); it runs until ``budget``
  networks are trained or ``budget x K`` trials are spent;
* ``nn-then-accel``: step 1 searches the network on the fixed accelerator (``--accel`` or the edge default;
  it must be within the budget): every training, one simulation each; step 2 the accelerator for step 1's
  best network (its accuracy known: nothing trained) with the other ``budget x (K - 1)`` simulations;
* ``accel-then-nn``: step 1 searches the accelerator for the fixed reference network (a mid-size network of
  the space: ``reference_network``) with ``budget x (K - 1)`` simulations and no training (the hardware factor
  alone); step 2 the network on step 1's best accelerator: every training, one simulation each.

Every accelerator-only search (the nested ones and the two-step modes' accelerator steps) uses
``accel_strategy`` (default ``evolution``, with ``population`` / ``sample``); ``strategy`` drives the network
searches and the sampled joint search.

**Outputs** in ``out``: ``checkpoint.json`` (``joint``) or ``checkpoint.step1.json`` / ``checkpoint.step2.json``
(``graphmill.search.run``'s checkpoints: rerunning the same command resumes; ``settings.json`` records the
options and another run's options are refused naming the first that differs, and ``--budget``: a joint run
continues with a bigger one, a two-step run takes only its own, whose first step fixed its second), ``history.jsonl`` (every trial,
with its ``step``, network ``nn``, accelerator ``accel``: for a nested trial the one its inner search chose,
and ``metrics.sims``), ``nahas.png`` (accuracy vs latency of the evaluated designs, coloured by area; the latency
target, infeasible designs and the best marked), ``best.onnx`` (the chosen network with its trained proxy
weights: a deterministic retraining), ``best_target.onnx`` (the same architecture at its deployment size, as
simulated), ``best_accel.toml`` (the chosen accelerator: ``graphmill simulate best_target.onnx --accel
best_accel.toml`` re-simulates it) and ``report.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from graphmill.search.methods import parse_options
from graphmill.search.runner import recorded_figure_damage, restored_trials
from graphmill.search.space import Space, product
from graphmill.search.spaces.accelerator import (ARRAY_SIZES, BANDWIDTH_WORDS, BUFFER_KB, DATAFLOWS, accel_config,
                                                 accelerator_space, point_name)
from graphmill.search.strategies.base import Strategy, register
from graphmill.util.suggest import did_you_mean
from graphmill.util.errors import GraphmillError, UserInputError, at_least, at_most
from graphmill.util.files import TEXT_FILE_LIMIT, check_out_folder, parse_json, read_user_file
from graphmill.util.interrupts import INTERRUPTS, DeferredInterrupt, is_interrupt

METHOD = "nahas"
DEFAULT_BUDGET = 40
MODES = ("joint", "nn-then-accel", "accel-then-nn")
ACCEL_SEARCHES = ("nested", "sampled")
NN_SPACES = ("digits", "tiny", "mnasnet")
TASK = ("scikit-learn digits (1,797 8x8 images, 10 classes) upsampled bilinearly to the network's resolution; "
        "trained on the seeded 4/5, accuracy on the held-out fifth (359 images)")


#: buffer sizes searched by default: the accelerator space's without 1 MB (an edge-scale area budget)
NAHAS_BUFFER_KB = tuple(k for k in BUFFER_KB if k <= 512)


def _ints(values) -> str:
    return ",".join(str(v) for v in values)


#: option -> default (``--option KEY=VALUE`` values are parsed to the default's type; lists are comma-separated)
OPTIONS: dict[str, Any] = {
    "mode": "joint",            # joint | nn-then-accel | accel-then-nn
    "strategy": "evolution",    # a graphmill.search strategy: evolution, reinforce, ppo, random, default, tpe
    "population": 10,           # regularized evolution's population P (strategy=evolution)
    "sample": 3,                # and its tournament size S
    "nn": "digits",             # the network space: digits | tiny | mnasnet
    "area_mm2": 4.0,            # the area budget A (mm^2)
    "latency_ms": 0.0,          # the latency target T (ms); 0: the reference network on the fixed accelerator
    "energy_w": -0.01,          # the energy term's exponent
    "accel_search": "nested",   # joint mode's accelerator half: nested (per network) | sampled (product space)
    "accel_sims": 32,           # K: simulations per training (every method: budget x K simulations in all)
    "accel_strategy": "evolution",  # the strategy of every accelerator-only search (nested, two-step steps)
    "accel_warm": 4,            # nested: accelerators of the best networks so far tried first (within the K)
    "steps": 100,               # Adam steps of a candidate's proxy training
    "batch": 64,
    "lr": 0.003,
    "train_seed": 0,            # the proxy training's seed (the same for every search seed: one task)
    "latency_scale": 8,         # digits spaces: deployment resolution = scale x proxy resolution
    "rows": _ints(ARRAY_SIZES),
    "cols": _ints(ARRAY_SIZES),
    "dataflow": ",".join(DATAFLOWS),
    "ifmap_kb": _ints(NAHAS_BUFFER_KB),
    "filter_kb": _ints(NAHAS_BUFFER_KB),
    "ofmap_kb": _ints(NAHAS_BUFFER_KB),
    "dram_bw_words": _ints(BANDWIDTH_WORDS),
}
ACCEL_KEYS = ("rows", "cols", "dataflow", "ifmap_kb", "filter_kb", "ofmap_kb", "dram_bw_words")


# -- the area model ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AreaModel:
    """Area of a systolic-array accelerator in mm^2: ``fixed + rows x cols x pe + (ifmap + filter + ofmap KB)
    x sram_per_kb``. 45 nm constants, 8-bit operands (1-byte words) and 32-bit accumulation:

    * ``pe_mm2`` = 636 um^2: an 8-bit multiplier (282 um^2) and a 32-bit adder (137 um^2), Horowitz,
      "Computing's energy problem", ISSCC 2014 (45 nm table), plus 48 flip-flop bits of pipeline registers
      (8-bit ifmap, 8-bit weight, 32-bit partial sum) at about 4.52 um^2 each (NanGate 45 nm Open Cell Library,
      DFF_X1);
    * ``sram_mm2_per_kb`` = 4,049 um^2: 8,192 six-transistor cells of 0.346 um^2 (Intel 45 nm, Mistry et al.,
      IEDM 2007) at an assumed 70% array efficiency (decoders, sense amplifiers);
    * ``fixed_mm2`` = 0.5 mm^2: control, DMA and the vector unit; an assumption, not a published figure.

    The DRAM interface (bandwidth) is not charged: every point of a space pays the same for it here. One chip:
    ``[system] chips`` is not counted, as the graph simulation NAHAS uses (``simulate_graph``) is single-chip.
    """

    pe_mm2: float = (282.0 + 137.0 + 48 * 4.52) * 1e-6
    sram_mm2_per_kb: float = 8192 * 0.346 / 0.7 * 1e-6
    fixed_mm2: float = 0.5

    def area_mm2(self, rows: int, cols: int, ifmap_kb: float, filter_kb: float, ofmap_kb: float) -> float:
        """The area of one accelerator (mm^2)."""
        return self.fixed_mm2 + rows * cols * self.pe_mm2 + (ifmap_kb + filter_kb + ofmap_kb) * self.sram_mm2_per_kb

    def of(self, accel: Mapping[str, Any]) -> float:
        """The area of an accelerator given as a TOML-schema dict (``[array]``, ``[memory]``) or as a
        configuration of the accelerator space (flat ``rows``, ``cols``, ``ifmap_kb``, ...)."""
        arr, mem = (accel.get("array", {}), accel.get("memory", {})) if "array" in accel else (accel, accel)
        return self.area_mm2(int(arr["rows"]), int(arr["cols"]), float(mem["ifmap_kb"]), float(mem["filter_kb"]),
                             float(mem["ofmap_kb"]))


AREA = AreaModel()


def area_options(area: AreaModel) -> dict:
    """The area filter's options for ``area``: none for ``AREA``, so that the options a default run records in its
    checkpoint stay those of runs from before ``area_model`` (which resume: the runner compares them), else
    ``{"area_model": its constants}``. Only the constants travel: a subclass overriding ``area_mm2`` is refused."""
    if type(area) is not AreaModel:
        raise UserInputError(f"area model {type(area).__name__}: the area filter takes AreaModel's constants only")
    return {} if area == AREA else {"area_model": dataclasses.asdict(area)}


#: 45 nm energy (Horowitz, ISSCC 2014): 8-bit multiply 0.2 pJ + 32-bit add 0.1 pJ; DRAM 1.3 nJ per 64-bit access
MAC_PJ = 0.2 + 0.1
DRAM_PJ_PER_BYTE = 1300.0 / 8
#: SRAM read energy per 64-bit access by capacity (KB -> pJ), Horowitz ISSCC 2014: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ
SRAM_PJ_PER_64BIT = ((8.0, 10.0), (32.0, 20.0), (1024.0, 100.0))


def sram_pj_per_byte(kb: float) -> float:
    """Energy of one byte read from a ``kb`` KB SRAM: Horowitz's three points interpolated (and extrapolated)
    linearly in log(capacity) / log(energy)."""
    pts = SRAM_PJ_PER_64BIT
    i = 0 if kb <= pts[1][0] else 1
    (k0, e0), (k1, e1) = pts[i], pts[i + 1]
    slope = math.log(e1 / e0) / math.log(k1 / k0)
    return e0 * (kb / k0) ** slope / 8.0


def energy_constants(accel: Mapping[str, Any]) -> dict[str, float]:
    """The ``[energy]`` table of a TOML-schema accelerator: 45 nm MAC and DRAM energies, and the SRAM energy per
    word the mean of the three buffers' (each by its capacity; the simulator has one SRAM cost per word)."""
    mem = accel.get("memory", {})
    wb = int(mem.get("word_bytes", 1))
    sram = sum(sram_pj_per_byte(float(mem[k])) for k in ("ifmap_kb", "filter_kb", "ofmap_kb")) / 3
    return {"mac_pj": MAC_PJ, "sram_pj_per_word": sram * wb, "dram_pj_per_word": DRAM_PJ_PER_BYTE * wb}


def with_energy(accel: dict, keep: bool = False) -> dict:
    """``accel`` (a TOML-schema dict) with ``energy_constants`` as its ``[energy]`` (``keep``: a table it has
    already, from the user's ``--accel``, wins)."""
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in accel.items()}
    if not (keep and "energy" in d):
        d["energy"] = energy_constants(d)
    return d


# -- network spaces ---------------------------------------------------------------------------------------------

def _spec(nn: str):
    from graphmill.search.oneshot import DIGITS_SPEC, TINY_SPEC

    return DIGITS_SPEC if nn == "digits" else TINY_SPEC


def network_space(nn: str) -> Space:
    """The network half of the joint space (``nn``: ``digits``, ``tiny`` or ``mnasnet``)."""
    if nn == "mnasnet":
        from graphmill.search.spaces.mnasnet import mnasnet_space

        return mnasnet_space()
    return _spec(nn).space()


def reference_network(nn: str) -> dict:
    """The fixed network of ``accel-then-nn`` and of the default latency target: the middle choice of every
    dimension for the digits spaces (``at_level(1)``), MnasNet-A1 for MnasNet's."""
    if nn == "mnasnet":
        from graphmill.search.spaces.mnasnet import MNASNET_A1

        return json.loads(json.dumps(MNASNET_A1))
    return _spec(nn).at_level(1)


def build_network(nn: str, config: dict, *, deploy: bool, latency_scale: int = 8, seed: int = 0):
    """The ``ir.Graph`` of a network: the proxy (``deploy=False``: batch ``N``, trained on digits) or the
    deployment-size network that is simulated (``deploy=True``: batch 1)."""
    if nn == "mnasnet":
        from graphmill.search.spaces.mnasnet import MnasNetBuilder

        if deploy:
            return MnasNetBuilder(width=1.0, resolution=224, num_classes=1000, in_channels=3, batch=1, seed=seed)(config)
        return MnasNetBuilder(width=0.25, resolution=16, num_classes=10, in_channels=1, batch="N", seed=seed)(config)
    from graphmill.search.oneshot import build_graph, init_weights
    from graphmill.search.oneshot.weights import child_weights

    spec = _spec(nn)
    config = spec.check(config)
    if deploy:
        spec = dataclasses.replace(spec, resolutions=tuple(r * latency_scale for r in spec.resolutions))
        config = {**config, "resolution": config["resolution"] * latency_scale}
    weights = dict(child_weights(spec, config, init_weights(spec, seed)))
    return build_graph(spec, config, weights, batch=1 if deploy else "N", name=f"nahas_{nn}")


# -- the evaluator ----------------------------------------------------------------------------------------------

_ACCURACY: dict[str, dict] = {}  # per process: network key + training settings -> accuracy metrics
_SIMS: dict[str, dict] = {}  # per process: (network, deployment settings, accelerator) -> simulation metrics
_GRAPHS: dict[str, Any] = {}  # per process: the deployment-size graph of the last networks simulated

#: the inner (accelerator) search enumerates a space of at most this many points to see whether its
#: area-feasible points fit in the simulation budget (then it simulates them all: the exact best). The default
#: space (46,875 points) takes ~0.2 s, once per area budget and process (``_WITHIN_AREA``). It was 4,096, under
#: the default space: with a tight budget (0.93 mm^2: 15 of 46,875 points) the inner search's 1,000 redraws
#: per proposal found none, and a network every one of those 15 could run was declared unrunnable.
ENUMERATE_LIMIT = 200_000
_WITHIN_AREA: dict[str, list[dict]] = {}


def clear_caches() -> None:
    """Forget this process's trained accuracies, simulations and graphs, as a fresh process would (a resumed
    run primes the accuracies again from its checkpoints: no finished training is repeated)."""
    _ACCURACY.clear()
    _SIMS.clear()
    _GRAPHS.clear()
    _WITHIN_AREA.clear()


@dataclass
class NahasEvaluator:
    """``evaluate(config) -> dict`` of a NAHAS design (module docstring, "Evaluation"); picklable.

    ``config`` is a joint configuration ``{"nn", "accel"}``, or one half when the other is fixed
    (``fixed_nn``: a network configuration; ``fixed_accel``: a TOML-schema accelerator dict), or, when
    ``inner_sims`` > 0 (the nested joint mode), a network whose accelerator is found by ``best_accelerator``
    (an accelerator search of ``inner_sims`` simulations, no training). ``fixed_accuracy``: the network's
    accuracy metrics are known (nn-then-accel's accelerator step: nothing is trained); ``hardware_only``: no
    accuracy at all, the reward is the hardware factor alone (accel-then-nn's accelerator step: the accuracy of
    the fixed network is a constant factor of the reward, so it is not needed to rank accelerators).
    ``base``: the TOML-schema dict the accelerator space's points are laid over (clock, word size).
    """

    base: dict
    area_budget: float
    latency_target: float
    energy_ref: float
    energy_w: float = -0.01
    nn: str = "digits"
    steps: int = 100
    batch: int = 64
    lr: float = 0.003
    train_seed: int = 0
    latency_scale: int = 8
    user_energy: bool = False
    fixed_nn: dict | None = None
    fixed_accel: dict | None = None
    fixed_accuracy: dict | None = None
    hardware_only: bool = False
    inner_sims: int = 0
    accel_values: dict | None = None  # the accelerator space's value lists (ACCEL_KEYS); None: the defaults
    accel_strategy: str = "evolution"
    accel_strategy_options: dict = field(default_factory=dict)
    seed: int = 0  # the search seed (seeds each nested accelerator search, with the network)
    accel_warm: int = 0  # nested: the inner search first tries the accelerators of the best networks so far
    area: AreaModel = field(default_factory=AreaModel)
    #: nested: (reward, accelerator point) of every network evaluated so far, in order (the warm start's pool)
    chosen: list = field(default_factory=list, init=False, repr=False, compare=False)

    def halves(self, config: dict) -> tuple[dict, dict]:
        """``(network configuration, TOML-schema accelerator dict)`` of ``config`` (not for nested trials,
        whose accelerator is in their metrics)."""
        if self.fixed_nn is not None:
            return self.fixed_nn, self.accelerator(config)
        if self.fixed_accel is not None:
            return config, self.fixed_accel
        return config["nn"], self.accelerator(config["accel"])

    def network_of(self, config: dict) -> dict:
        """The network configuration of a trial's ``config``."""
        if self.inner_sims:
            return config
        return self.halves(config)[0]

    def trains(self) -> bool:
        """Whether this evaluator trains networks (False: the accuracy is given, or not needed)."""
        return self.fixed_accuracy is None and not self.hardware_only

    def accelerator(self, accel: dict) -> dict:
        """The TOML-schema dict of an accelerator-space point over ``base``, with its 45 nm energies (or the
        ``[energy]`` of the user's ``--accel`` when it has one: ``user_energy``)."""
        return with_energy(accel_config(accel, self.base), keep=self.user_energy)

    def _key(self, nn_config: dict) -> str:
        return json.dumps([self.nn, self.steps, self.batch, self.lr, self.train_seed, nn_config], sort_keys=True)

    def accuracy(self, nn_config: dict) -> dict:
        """``{"accuracy", "loss", "train_seconds"}`` of the network's proxy (cached in this process; the given
        ``fixed_accuracy`` when there is one)."""
        if self.fixed_accuracy is not None:
            return dict(self.fixed_accuracy)
        from graphmill.search.evaluators.training import train_graph

        key = self._key(nn_config)
        if key not in _ACCURACY:
            graph = build_network(self.nn, nn_config, deploy=False, seed=self.train_seed)
            _ACCURACY[key] = train_graph(graph, steps=self.steps, batch=self.batch, lr=self.lr, seed=self.train_seed)
        return dict(_ACCURACY[key])

    def remember(self, nn_config: dict, metrics: Mapping[str, Any], reward: float | None = None) -> None:
        """Record a finished trial (from a checkpoint): the network's measured accuracy, so that it is not
        trained again, and (nested) its chosen accelerator for the warm start, as if it had run here."""
        if self.inner_sims and "accel_config" in metrics and reward is not None:
            self.chosen.append((float(reward), metrics["accel_config"]))
        if self.trains() and "accuracy" in metrics:
            _ACCURACY.setdefault(self._key(nn_config), {k: metrics[k] for k in ("accuracy", "loss", "train_seconds")
                                                         if k in metrics})

    def trained_network(self, nn_config: dict):
        """The proxy network with the trained weights that were measured (a deterministic retraining)."""
        from graphmill.search.evaluators.training import train_graph

        graph = build_network(self.nn, nn_config, deploy=False, seed=self.train_seed)
        train_graph(graph, steps=self.steps, batch=self.batch, lr=self.lr, seed=self.train_seed)
        return graph

    def simulate(self, nn_config: dict, accel: dict) -> dict:
        """``{"latency_ms", "energy_uj", "cycles", "macs"}`` of the deployment-size network on ``accel``
        (cached per network and accelerator in this process)."""
        key = json.dumps([self.nn, self.latency_scale, self.train_seed, nn_config, accel], sort_keys=True)
        if key not in _SIMS:
            gkey = json.dumps([self.nn, self.latency_scale, self.train_seed, nn_config], sort_keys=True)
            if gkey not in _GRAPHS:
                if len(_GRAPHS) >= 8:
                    _GRAPHS.pop(next(iter(_GRAPHS)))
                _GRAPHS[gkey] = build_network(self.nn, nn_config, deploy=True, latency_scale=self.latency_scale,
                                              seed=self.train_seed)
            _SIMS[key] = simulate_graph_design(_GRAPHS[gkey], accel)
        return dict(_SIMS[key])

    def hardware(self, latency_ms: float, energy_uj: float) -> float:
        """The reward's hardware factor ``(LAT/T)^(0 if LAT <= T else -1) x (E/E_ref)^energy_w``: the reward
        is ``accuracy x hardware``, so for one network the best accelerator is the one of highest hardware."""
        lat = 1.0 if latency_ms <= self.latency_target else self.latency_target / latency_ms
        return float(lat * (energy_uj / self.energy_ref) ** self.energy_w)

    def reward(self, accuracy: float, latency_ms: float, energy_uj: float) -> float:
        """MnasNet's reward with a hard latency constraint and a soft energy term (module docstring)."""
        return float(accuracy * self.hardware(latency_ms, energy_uj))

    def __call__(self, config: dict) -> dict:
        if self.inner_sims:
            return self._nested(config)
        nn_config, accel = self.halves(config)
        area = self.area.of(accel)
        if area > self.area_budget:
            return {"reward": -area / self.area_budget, "area_mm2": area, "feasible": False, "sims": 0,
                    "over": f"area {at_least(area)} > {at_most(self.area_budget)} mm^2"}
        out: dict[str, Any] = {"area_mm2": area}
        out.update(self.simulate(nn_config, accel))  # first: a design the simulator rejects costs no training
        out["sims"] = 1
        if not self.hardware_only:
            out.update(self.accuracy(nn_config))
        self._score(out)
        return out

    def _score(self, out: dict) -> None:
        out["latency"] = out["latency_ms"]
        out["feasible"] = out["latency_ms"] <= self.latency_target
        if not out["feasible"]:
            out["over"] = f"latency {at_least(out['latency_ms'])} > {at_most(self.latency_target)} ms"
        out["hardware"] = self.hardware(out["latency_ms"], out["energy_uj"])
        out["reward"] = out["hardware"] if self.hardware_only else out["accuracy"] * out["hardware"]

    def _nested(self, nn_config: dict) -> dict:
        # the accelerator first: a network that no accelerator within the area budget can run is an infeasible
        # design, like an accelerator over the area, and costs no training (it was trained, then failed, its
        # training and simulations missing from the report's accounting: an outside check)
        try:
            pick = self.best_accelerator(nn_config, warm=self.warm_start())
        except NoAccelerator as e:
            return {"reward": -1.0, "feasible": False, "sims": e.sims, "over": str(e)}
        out: dict[str, Any] = dict(self.accuracy(nn_config))
        out.update({k: pick[k] for k in ("area_mm2", "latency_ms", "energy_uj", "cycles", "macs", "sims")})
        out["accel_config"] = pick["config"]
        self._score(out)
        self.chosen.append((out["reward"], pick["config"]))
        return out

    def warm_start(self) -> list[dict]:
        """The accelerators chosen for the ``accel_warm`` best-rewarded networks so far (distinct; the earlier
        first on equal rewards): a nested search starts from what served the best networks."""
        out: list[dict] = []
        for _, c in sorted(self.chosen, key=lambda rc: -rc[0]):
            if c not in out:
                out.append(c)
            if len(out) >= self.accel_warm:
                break
        return out[:self.accel_warm]

    def best_accelerator(self, nn_config: dict, sims: int | None = None, warm: list[dict] | None = None) -> dict:
        """The nested joint mode's inner search: the accelerator of highest ``hardware`` factor for the network
        ``nn_config`` within the area budget, spending at most ``sims`` (default ``inner_sims``) simulations
        and no training. When the space's area-feasible points are no more than ``sims`` (and the space has
        at most ``ENUMERATE_LIMIT`` points) every one is simulated: the exact best. Otherwise
        ``graphmill.search.run`` with ``accel_strategy`` (proposals over the area budget redrawn, never
        simulated), seeded by the search seed and the network, proposing the ``warm`` points first (within
        the ``sims``); if every proposal came back over the area (no simulation spent), a seeded sample of
        ``sims`` points within it is simulated instead. Returns ``{"config", "accel", "hardware",
        "latency_ms", "energy_uj", "cycles", "macs", "area_mm2", "feasible", "sims"}``: the feasible
        (latency <= T) point of highest hardware factor, else the highest; ``sims`` counts the simulator's
        refusals too (it ran). ``NoAccelerator`` when the simulator refused every point tried."""
        import zlib

        from graphmill import search

        sims = self.inner_sims if sims is None else sims
        if sims < 1:
            raise UserInputError(f"accel_sims={sims}: the accelerator search needs at least 1 simulation")
        space = accelerator_space(**(self.accel_values or {}))
        hw = dataclasses.replace(self, fixed_nn=nn_config, fixed_accel=None, fixed_accuracy=None, hardware_only=True,
                                 inner_sims=0)
        trials: list[tuple[dict, dict]] = []
        refusals: list[str] = []  # the simulator's, of accelerators within the area budget
        within = None  # every point within the area budget, when the space is small enough to list
        if space.size() <= ENUMERATE_LIMIT:
            key = json.dumps([space.to_json(), dataclasses.asdict(self.area), self.area_budget], sort_keys=True)
            if key not in _WITHIN_AREA:
                _WITHIN_AREA[key] = [c for c in space.enumerate() if self.area.of(c) <= self.area_budget]
            within = _WITHIN_AREA[key]

        def simulate_all(points: list[dict]) -> None:
            for c in points:
                c = dict(c)  # not the cached dict: it travels into reports and the warm start
                try:
                    trials.append((c, hw(c)))
                except UserInputError as e:
                    refusals.append(str(e))  # buffers too small for a tile: no design

        if within is not None and len(within) <= sims:
            simulate_all(within)
        else:
            seed = (self.seed * 1_000_003 + zlib.crc32(json.dumps(nn_config, sort_keys=True).encode())) % (2 ** 31)
            result = search.run(space, hw, strategy=AreaFiltered.name, budget=sims, seed=seed, workers=1,
                                executor="inprocess", progress=False,
                                strategy_options={"inner": self.accel_strategy,
                                                  "inner_options": dict(self.accel_strategy_options),
                                                  "area_mm2": self.area_budget, "accel_key": "",
                                                  **area_options(self.area),
                                                  "first": list(warm or [])[:sims]})
            if result.interrupted:  # search.run stops on Ctrl-C and returns: the outer search must stop too
                raise KeyboardInterrupt
            trials = [(t.config, t.metrics) for t in result.history if t.status == "ok"]
            refusals = [t.error or "" for t in result.history if t.status == "failed"]
            left = sims - len(refusals)  # proposals over the area cost no simulation
            if left > 0 and within and not any("latency_ms" in m for _, m in trials):
                # the rest came back over the area (few of the space's points fit it): spend the simulations left
                # on a seeded sample of the points that fit and were not tried
                import random

                tried = {space.key(t.config) for t in result.history}
                untried = [c for c in within if space.key(c) not in tried]
                trials = []
                simulate_all(random.Random(seed).sample(untried, min(left, len(untried))))
        done = [(c, m) for c, m in trials if "latency_ms" in m]
        if not done:
            n, area = len(refusals), f"{self.area_budget:g} mm^2"
            if within is not None and n == len(within):  # every point that fits was tried: proven
                why = f"no accelerator within {area} runs this network: the simulator refused all {n}"
            elif refusals:
                why = (f"no accelerator within {area} found for this network in {n} simulation{'s' * (n != 1)}: "
                       "the simulator refused every one tried")
            else:
                why = (f"no accelerator within {area} found for this network in 0 simulations ({len(trials)} "
                       "proposals, all over the area)")
            first = f" ({refusals[0].split(': ', 1)[-1][:120]})" if refusals else ""
            raise NoAccelerator(why + first, sims=n)
        pool = [(c, m) for c, m in done if m["feasible"]] or done
        c, m = max(pool, key=lambda cm: cm[1]["hardware"])  # max keeps the first of equal factors
        return {"config": c, "accel": self.accelerator(c), "hardware": m["hardware"], "latency_ms": m["latency_ms"],
                "energy_uj": m["energy_uj"], "cycles": m["cycles"], "macs": m["macs"], "area_mm2": m["area_mm2"],
                "feasible": bool(m["feasible"]), "sims": len(done) + len(refusals)}


def simulate_graph_design(graph, accel: dict) -> dict:
    """Latency (ms), energy (uJ), cycles and MACs of one inference of ``graph`` on ``accel`` (a TOML-schema
    dict), as the simulator reports them."""
    from graphmill.backends.simulator import simulate_graph
    from graphmill.backends.simulator.config import as_accel

    d = simulate_graph(graph, as_accel(accel)).to_dict()
    return {"latency_ms": float(d["latency_ms"]), "energy_uj": float(d["energy_uj"]),
            "cycles": float(d["total_cycles"]), "macs": float(d["macs"])}


def simulate_design(nn: str, nn_config: dict, accel: dict, latency_scale: int = 8, seed: int = 0) -> dict:
    """Latency (ms), energy (uJ), cycles and MACs of one inference of the network at deployment size on ``accel``
    (a TOML-schema dict), as the simulator reports them."""
    graph = build_network(nn, nn_config, deploy=True, latency_scale=latency_scale, seed=seed)
    return simulate_graph_design(graph, accel)


# -- area-feasible proposals ------------------------------------------------------------------------------------

class NoAccelerator(GraphmillError):
    """No accelerator of the space within the area budget can run a network (the simulator refused every one
    tried: buffers too small for its tiles). ``sims``: the simulations spent finding that out."""

    def __init__(self, message: str, *, sims: int) -> None:
        super().__init__(message)
        self.sims = sims


class AreaFiltered(Strategy):
    """Any strategy (``inner``, with ``inner_options``) whose proposals over the area budget are redrawn before
    they are evaluated: the area is an analytic function of the accelerator, so no method spends a (training)
    evaluation on a design it could have refused by arithmetic. A refused proposal is not told to the inner
    strategy (an evolution population keeps its members; the RL controller just samples again): the search is
    the inner strategy's proposal distribution restricted to the budget. After ``tries`` refusals in a row the
    proposal is returned anyway (the evaluator scores it ``-area / budget``).

    ``accel_key``: where the accelerator is in a configuration (``"accel"`` in the joint space; ``""``: the
    configuration is the accelerator). ``area_mm2`` 0: no budget (every proposal passes); ``area_model``: the
    ``AreaModel``'s fields, as the evaluator's (``{}``: ``AREA``), so that the filter and the evaluator agree
    on which designs fit. ``first``:
    configurations proposed before the inner strategy's (the nested search's warm start); their results are
    told to the inner strategy like its own (an evolution population takes them in).
    """

    name = "nahas-area"
    OPTIONS = {"inner": "evolution", "inner_options": {}, "area_mm2": 0.0, "area_model": {}, "accel_key": "accel",
               "tries": 1000, "first": []}

    def __init__(self, space: Space, *, seed: int = 0, **options: Any) -> None:
        super().__init__(space, seed=seed, **options)
        from graphmill.search.strategies import strategy_class

        self.inner = strategy_class(self.options["inner"])(space, seed=seed, **dict(self.options["inner_options"]))
        self.area = AreaModel(**self.options["area_model"])
        self.refused = 0
        self.given = 0

    def _area(self, config: dict) -> float | None:
        key = self.options["accel_key"]
        acc = config.get(key) if key else config
        if not isinstance(acc, dict) or not {"rows", "cols", "ifmap_kb", "filter_kb", "ofmap_kb"} <= set(acc):
            return None
        return self.area.of(acc)

    def ask(self) -> dict:
        budget = self.options["area_mm2"]
        first = self.options["first"]
        while self.given < len(first):
            self.given += 1
            config = first[self.given - 1]
            area = self._area(config) if budget > 0 else None
            if area is None or area <= budget:
                return json.loads(json.dumps(config))
        self.inner.budget = self.budget  # the run's evaluation budget (search.run sets ours), for its phases
        config = self.inner.ask()
        for _ in range(int(self.options["tries"])):
            area = self._area(config) if budget > 0 else None
            if area is None or area <= budget:
                return config
            self.refused += 1
            config = self.inner.ask()
        return config

    def tell(self, config: dict, reward: float | None, metrics: dict | None = None) -> None:
        self.inner.tell(config, reward, metrics)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "inner": self.inner.state_dict(), "refused": self.refused, "given": self.given}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.inner.load_state_dict(state["inner"])
        self.refused = int(state["refused"])
        self.given = int(state.get("given", 0))


register(AreaFiltered.name, AreaFiltered, internal=True)


# -- options and inputs -----------------------------------------------------------------------------------------

def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options with defaults filled in and values parsed from strings; a ``UserInputError`` for an unknown
    key (naming the nearest valid one) or a bad value. Accelerator value lists come back as lists."""
    from graphmill.search.strategies import names as strategy_names
    from graphmill.search.strategies import strategy_class

    kinds = {key: str if key == "dataflow" else (float if key.endswith("_kb") else int) for key in ACCEL_KEYS}
    out: dict[str, Any] = parse_options(options, OPTIONS, "NAHAS", lists=kinds)
    for key in ACCEL_KEYS:
        if kinds[key] is not str and not all(v > 0 for v in out[key]):
            raise UserInputError(f"--option {key}={options.get(key, OPTIONS[key])!r}: values must be > 0")
        out[key] = list(dict.fromkeys(out[key]))  # a repeated value is one candidate
    for v in out["dataflow"]:
        if v not in DATAFLOWS:
            raise UserInputError(f"--option dataflow: {v!r} is not a dataflow{did_you_mean(v, DATAFLOWS)}; use "
                                 f"{', '.join(DATAFLOWS)}")
    if out["mode"] not in MODES:
        raise UserInputError(f"--option mode={out['mode']!r}: unknown{did_you_mean(out['mode'], MODES)}; use one of "
                             f"{', '.join(MODES)}")
    if out["nn"] not in NN_SPACES:
        raise UserInputError(f"--option nn={out['nn']!r}: unknown network space{did_you_mean(out['nn'], NN_SPACES)}; "
                             f"use one of {', '.join(NN_SPACES)}")
    # the user's choices: the listed strategies (the area filter NAHAS wraps around the chosen one is internal)
    chosen = list(strategy_names())
    for key in ("strategy", "accel_strategy"):
        if out[key] not in chosen:
            raise UserInputError(f"--option {key}={out[key]!r}: unknown strategy"
                                 f"{did_you_mean(out[key], chosen)}; use one of {', '.join(chosen)}")
        strategy_class(out[key])
    if out["accel_search"] not in ACCEL_SEARCHES:
        raise UserInputError(f"--option accel_search={out['accel_search']!r}: unknown"
                             f"{did_you_mean(out['accel_search'], ACCEL_SEARCHES)}; "
                             f"use one of {', '.join(ACCEL_SEARCHES)}")
    for key in ("population", "sample", "steps", "batch", "latency_scale", "accel_sims"):
        if out[key] < 1:
            raise UserInputError(f"--option {key}={out[key]}: must be >= 1")
    if out["accel_warm"] < 0:
        raise UserInputError(f"--option accel_warm={out['accel_warm']}: must be >= 0")
    if out["train_seed"] < 0:
        raise UserInputError(f"--option train_seed={out['train_seed']}: must be >= 0")
    if not out["area_mm2"] > 0:
        raise UserInputError(f"--option area_mm2={out['area_mm2']:g}: the area budget must be > 0 mm^2")
    if out["latency_ms"] < 0:
        raise UserInputError(f"--option latency_ms={out['latency_ms']:g}: must be > 0 (or 0 for the default)")
    if not out["lr"] > 0:
        raise UserInputError(f"--option lr={out['lr']:g}: must be > 0")
    return out


def check_area(opts: Mapping[str, Any], area: AreaModel = AREA) -> float:
    """The smallest area of the accelerator space; a ``UserInputError`` when even it exceeds the budget (no
    point of the space can be built: refused before anything runs)."""
    lo = area.area_mm2(min(opts["rows"]), min(opts["cols"]), min(opts["ifmap_kb"]), min(opts["filter_kb"]),
                       min(opts["ofmap_kb"]))
    if lo > opts["area_mm2"]:
        raise UserInputError(
            f"area budget {at_most(opts['area_mm2'])} mm^2: every accelerator of the space exceeds it (the smallest, "
            f"{min(opts['rows'])}x{min(opts['cols'])} PEs with {min(opts['ifmap_kb']):g}+{min(opts['filter_kb']):g}+"
            f"{min(opts['ofmap_kb']):g} KB of buffers, is {at_least(lo)} mm^2); raise --option area_mm2 or offer "
            "smaller rows, cols or buffers")
    return lo


def check_buildable(opts: Mapping[str, Any], base: Mapping[str, Any], area: AreaModel = AREA) -> None:
    """A ``UserInputError`` when no accelerator of the space within the area budget can hold one tile: the
    simulator refuses a buffer half holding fewer words than the array has ports on an edge (max(rows, cols)),
    so every trial would fail; refused before anything runs, as a space over the area budget is. Area grows with
    every buffer, so each array shape is tried with the smallest buffers that hold its tile."""
    word = int(base.get("memory", {}).get("word_bytes", 1))

    def words(kb: float) -> int:  # a buffer's words, as the simulator's AccelConfig counts them
        return int(kb * 1024) // word

    kinds = ("ifmap_kb", "filter_kb", "ofmap_kb")
    smallest_accepted = None
    for rows in opts["rows"]:
        for cols in opts["cols"]:
            edge = max(rows, cols)
            sizes = [min((kb for kb in opts[k] if words(kb) // 2 >= edge), default=None) for k in kinds]
            if None in sizes:
                continue
            a = area.area_mm2(rows, cols, *sizes)
            if a <= opts["area_mm2"]:
                return
            smallest_accepted = a if smallest_accepted is None else min(smallest_accepted, a)
    if smallest_accepted is None:
        edge = max(min(opts["rows"]), min(opts["cols"]))
        k = next(k for k in kinds if words(max(opts[k])) // 2 < edge)
        n = words(max(opts[k]))
        raise UserInputError(
            f"--option {k}: the simulator refuses every accelerator of the space: even {max(opts[k]):g} KB "
            f"({n} {word}-byte word{'' if n == 1 else 's'}) holds fewer than {edge} words per half of its "
            f"double buffer (one word per port of the smallest array, {min(opts['rows'])}x{min(opts['cols'])}); "
            "offer bigger buffers or smaller rows and cols")
    raise UserInputError(
        f"area budget {at_most(opts['area_mm2'])} mm^2: every accelerator of the space the simulator accepts "
        f"exceeds it (the smallest is {at_least(smallest_accepted)} mm^2: smaller buffers cannot hold one tile of "
        "their array); raise --option area_mm2 or offer smaller rows and cols")


def base_accelerator(accel: str | None) -> dict:
    """The TOML-schema dict of ``--accel`` (validated) or the default edge accelerator: the fixed accelerator
    of ``nn-then-accel`` and the base the accelerator space's points are laid over."""
    from graphmill.search.evaluators.latency import DEFAULT_ACCEL
    from graphmill.search.spaces.accelerator import accel_config as over

    if accel is None:
        return with_energy(json.loads(json.dumps(DEFAULT_ACCEL)))
    return with_energy(over({}, accel), keep=True)


def evolution_options(opts: Mapping[str, Any], strategy: str) -> dict:
    """The options of ``strategy``: ``population`` and ``sample`` for regularized evolution, none otherwise."""
    return {"population": opts["population"], "sample": opts["sample"]} if strategy == "evolution" else {}


def accel_space(opts: Mapping[str, Any]) -> Space:
    return accelerator_space(**{k: opts[k] for k in ACCEL_KEYS})


SETTINGS = ("mode", "strategy", "accel_search", "accel_sims", "accel_strategy", "accel_warm", "population", "sample",
            "nn", "area_mm2", "latency_ms", "energy_w", "steps", "batch", "lr", "train_seed", "latency_scale") + ACCEL_KEYS


def _check_run(out: str, budget: int | None, seed: int, workers: int, executor: str | None, accel: str | None,
               options: Mapping[str, Any]) -> dict:
    """Everything checked and resolved before anything is written (a ``UserInputError`` otherwise)."""
    from graphmill.search.workflow import check_executor

    opts = check_options(options)
    if budget is None:
        budget = DEFAULT_BUDGET
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise UserInputError(f"--budget {budget!r}: must be a whole number >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserInputError(f"--seed {seed!r}: must be a whole number >= 0")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserInputError(f"--workers {workers!r}: must be a whole number >= 1")
    check_executor(executor, workers)
    check_out_folder(out, "search --method nahas", "settings.json, checkpoint.json, history.jsonl, report.json, "
                                                    "best.onnx, best_target.onnx, best_accel.toml and nahas.png")
    check_area(opts)
    base = base_accelerator(accel)
    check_buildable(opts, base)
    user_energy = accel is not None and "energy" in accel_config({}, accel)
    base_area = AREA.of(base)
    if opts["mode"] == "nn-then-accel" and base_area > opts["area_mm2"]:
        raise UserInputError(f"--accel {accel or 'edge (default)'}: the fixed accelerator's area {at_least(base_area)} "
                             f"mm^2 exceeds the area budget {at_most(opts['area_mm2'])} mm^2")
    ref = reference_network(opts["nn"])
    ref_sim = simulate_design(opts["nn"], ref, base, opts["latency_scale"], opts["train_seed"])
    target = opts["latency_ms"] or ref_sim["latency_ms"]
    settings = {k: opts[k] for k in SETTINGS}
    settings.update(seed=seed, accel=base)
    path = os.path.join(out, "settings.json")
    if os.path.exists(path):
        try:
            old = parse_json(read_user_file(path, TEXT_FILE_LIMIT, "a NAHAS settings file (JSON)"))
        except (OSError, ValueError):
            raise UserInputError(f"{path}: unreadable; remove the folder's NAHAS files to start afresh") from None
        if not isinstance(old, dict):
            raise UserInputError(f"{path}: not a NAHAS settings file; remove the folder's NAHAS files to start "
                                 "afresh")
        for k, v in settings.items():
            now, was = json.loads(json.dumps(v)), old.get(k)
            if now != was:
                if isinstance(now, dict) and isinstance(was, dict):  # the accelerator: its name and first change,
                    # not both whole dicts (an 806-character line: an outside check)
                    f = next(f for f in sorted(set(now) | set(was)) if now.get(f) != was.get(f))
                    was, now = f"{was.get('name')!r}: {f} {was.get(f)!r}", f"{now.get('name')!r}: {f} {now.get(f)!r}"
                else:
                    was, now = repr(was), repr(now)
                raise UserInputError(f"--out {out}: holds a NAHAS run with another {k} ({was}, now {now}); "
                                     "use another folder or the same options")
        # a two-step run's second step searched for its first step's pick: another budget changes that pick and
        # would continue the second step's checkpoint for another design; a smaller one cannot undo trainings
        was = old.get("budget")
        if was is not None and budget != was and (opts["mode"] != "joint" or budget < was):
            why = ("its second step searched for the pick of its first" if opts["mode"] != "joint" else
                   "a smaller budget cannot undo its trainings")
            raise UserInputError(f"--out {out}: holds a NAHAS {opts['mode']} run of --budget {was}, now {budget} "
                                 f"({why}); use --budget {was}{' or more' if opts['mode'] == 'joint' else ''} or "
                                 "another folder")
    settings["budget"] = budget
    evaluator = NahasEvaluator(base=base, area_budget=opts["area_mm2"], latency_target=float(target),
                               energy_ref=float(ref_sim["energy_uj"]), energy_w=opts["energy_w"], nn=opts["nn"],
                               steps=opts["steps"], batch=opts["batch"], lr=opts["lr"], train_seed=opts["train_seed"],
                               latency_scale=opts["latency_scale"], user_energy=user_energy,
                               accel_values={k: opts[k] for k in ACCEL_KEYS}, accel_strategy=opts["accel_strategy"],
                               accel_strategy_options=evolution_options(opts, opts["accel_strategy"]), seed=seed,
                               accel_warm=opts["accel_warm"])
    return dict(opts=opts, budget=budget, evaluator=evaluator, base=base, base_area=base_area, reference=ref,
                reference_sim=ref_sim, settings=settings)


# -- the run ----------------------------------------------------------------------------------------------------

#: the figures a NAHAS trial records as numbers >= 0 (when it records them: an accelerator-only step trains nothing)
RECORDED_NUMBERS = ("accuracy", "loss", "train_seconds", "area_mm2", "latency_ms", "energy_uj", "cycles", "macs",
                    "sims")


def _check_recorded_metrics(history: list[dict], checkpoint: str) -> None:
    """A one-line refusal of a checkpoint whose finished trial records a figure that is not a number (the runner
    checks rewards; an accuracy of 'x' was a TypeError traceback when the report was written: an outside check)."""
    bad = recorded_figure_damage(history, RECORDED_NUMBERS, required=False, minimum=0)  # None: a run's inf
    if bad is None:
        bad = next(((t.get("number"), "accel_config", t["metrics"]["accel_config"]) for t in history
                    if t.get("status") == "ok" and not isinstance(t.get("metrics", {}).get("accel_config", {}), dict)),
                   None)
    if bad is not None:
        number, name, v = bad
        raise UserInputError(f"{checkpoint}: the checkpoint is damaged (trial {number}: its {name} is "
                             f"{str(v)[:40]}); remove it to start afresh")


def run(out: str, *, budget: int | None, seed: int, workers: int, executor: str | None,
        ray_address: str | None, accel: str | None, options: dict[str, str],
        progress: Callable[[str], None] | None) -> dict:
    """Run (or resume) a NAHAS search into ``out`` (module docstring); the JSON-able summary."""
    out = os.fspath(out)
    job = _check_run(out, budget, seed, workers, executor, accel, options)
    from graphmill.util.files import write_json

    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "settings.json"), job["settings"])
    return _Run(out, job, seed, workers, executor, ray_address, progress).go()


class _Run:
    def __init__(self, out: str, job: dict, seed: int, workers: int, executor: str | None,
                 ray_address: str | None, progress: Callable[[str], None] | None) -> None:
        self.out, self.job, self.seed, self.workers = out, job, seed, workers
        self.executor, self.ray_address, self.progress = executor, ray_address, progress
        self.opts = job["opts"]
        self.ev: NahasEvaluator = job["evaluator"]
        self.trials: list[dict] = []  # every trial as JSON, with "step" and the full design
        self.interrupted = False
        self.new_trials = 0  # finished by this command (a resumed run's checkpoints held the others)
        self.t0 = time.perf_counter()

    def _search(self, name: str, space: Space, evaluate: NahasEvaluator, budget: int, checkpoint: str, *,
                strategy: str, trainings: int = 0):
        """One ``graphmill.search.run`` over ``space`` into ``checkpoint`` (resumed when it exists: the
        accuracies it holds are not trained again). ``trainings`` > 0 (the sampled joint mode, where a trial
        may reuse a trained network on another accelerator): the search runs until ``trainings`` distinct
        networks are trained or ``budget`` trials are spent, whichever is first, in rounds of at most the
        trainings left (so never more)."""
        from graphmill import search
        from graphmill.search import checkpoint as ckpt
        from graphmill.search.runner import HistoryFollower

        opts = self.opts
        # proposals over the area budget are redrawn, never evaluated (AreaFiltered); a network-only step has none
        joint = evaluate.fixed_nn is None and evaluate.fixed_accel is None and not evaluate.inner_sims
        strat_opts = {"inner": strategy, "inner_options": evolution_options(opts, strategy),
                      "area_mm2": evaluate.area_budget, **area_options(evaluate.area),
                      "accel_key": "accel" if joint else ""}

        # history.jsonl as trials finish (``tail -F``), as ``graphmill search`` writes it: the earlier steps'
        # trials and this step's so far at the step's first result in this command, then a line per trial; it was
        # written only at the end, and a run killed mid-way left none (an outside check)
        follower = HistoryFollower(os.path.join(self.out, "history.jsonl"))

        def report(info: dict) -> None:
            self.new_trials += 1
            first = follower.add(self._row(info["trial"], name, evaluate),
                                lambda: self.trials + [self._row(t, name, evaluate) for t in info["history"]])
            if self.progress is None:
                return
            if first and len(info["history"]) > 1:  # a resumed step said nothing of the trials before
                self.progress(f"[nahas {name}] resumed from {checkpoint}: {len(info['history']) - 1} trial(s) "
                              "recorded before")
            t = info["trial"]
            m = t.metrics
            what = (f"acc {m['accuracy']:.4f} " if "accuracy" in m else f"hw {m['hardware']:.4f} "
                    if "hardware" in m else "")
            if "latency_ms" in m:
                what += (f"lat {m['latency_ms']:.4g} ms E {m['energy_uj']:.4g} uJ area {m['area_mm2']:.3g} mm^2"
                         + (f" ({m['sims']} sims)" if m.get("sims", 1) > 1 else ""))
            else:
                what = m.get("over") or (t.error or "")[:60]
            self.progress(f"[nahas {name}] {info['line'].removeprefix('[search] ')}  | {what}")

        state = ckpt.load(checkpoint)
        # checked before the evaluator is primed from it (a text reward was a traceback there; a review)
        history = [t.to_json() for t in restored_trials(state, space, checkpoint)] if state else []
        _check_recorded_metrics(history, checkpoint)
        complete = len(history) >= budget or bool(trainings) and len(_networks(history)) >= trainings
        if complete and history and self.progress is not None:  # no trial will report: say it here
            self.progress(f"[nahas {name}] resumed from {checkpoint}: {len(history)} trial(s) recorded before; "
                          "this step is complete, nothing to evaluate")
        for t in history:
            if t.get("status") == "ok":
                evaluate.remember(evaluate.network_of(t["config"]), t.get("metrics", {}), t.get("reward"))
        kw = dict(strategy=AreaFiltered.name, seed=self.seed, workers=self.workers, executor=self.executor,
                  checkpoint=checkpoint, progress=report, ray_address=self.ray_address, strategy_options=strat_opts)
        if trainings:
            result = None
            while True:
                left = trainings - len(_networks(history))
                if left <= 0 or len(history) >= budget:
                    break
                result = search.run(space, evaluate, budget=min(budget, len(history) + left), **kw)
                grew = len(result.history) > len(history)
                history = [t.to_json() for t in result.history]
                if result.interrupted or result.exhausted or not grew:
                    break
            if result is None:  # a finished run resumed: read back, nothing evaluated
                result = search.run(space, evaluate, budget=len(history), **kw)
        else:
            result = search.run(space, evaluate, budget=budget, **kw)
        self.trials += [self._row(t, name, evaluate) for t in result.history]
        self.interrupted = self.interrupted or result.interrupted
        return result

    @staticmethod
    def _row(t, name: str, evaluate) -> dict:
        """A trial as history.jsonl and the report hold it: its step, network and accelerator."""
        d = t.to_json()
        if evaluate.inner_sims:
            nn_config = t.config
            accel = evaluate.accelerator(t.metrics["accel_config"]) if "accel_config" in t.metrics else None
        else:
            nn_config, accel = evaluate.halves(t.config)
        d.update(step=name, nn=nn_config, accel=accel, trained=evaluate.trains())
        return d

    def go(self) -> dict:
        opts, ev, out = self.opts, self.ev, self.out
        nn_space, a_space = network_space(opts["nn"]), accel_space(opts)
        n = self.job["budget"]  # trainings, for every mode
        sims = n * opts["accel_sims"]  # simulations, for every mode
        checkpoints = []
        try:
            if opts["mode"] == "joint":
                checkpoints.append(os.path.join(out, "checkpoint.json"))
                if opts["accel_search"] == "nested":
                    self._search("joint", nn_space, dataclasses.replace(ev, inner_sims=opts["accel_sims"]), n,
                                 checkpoints[-1], strategy=opts["strategy"])
                else:
                    self._search("joint", product(nn_space, a_space), ev, sims, checkpoints[-1],
                                 strategy=opts["strategy"], trainings=n)
            elif opts["mode"] == "nn-then-accel":
                # step 1: every training, the networks on the fixed accelerator (one simulation each); step 2:
                # the other simulations, the accelerator for step 1's best network (its accuracy known)
                checkpoints.append(os.path.join(out, "checkpoint.step1.json"))
                r1 = self._search("network", nn_space, dataclasses.replace(ev, fixed_accel=self.job["base"]), n,
                                  checkpoints[-1], strategy=opts["strategy"])
                if not self.interrupted and sims > n:
                    pick = self._pick(r1)
                    known = {k: pick["metrics"][k] for k in ("accuracy", "loss", "train_seconds")
                             if k in pick["metrics"]}
                    checkpoints.append(os.path.join(out, "checkpoint.step2.json"))
                    self._search("accelerator", a_space,
                                 dataclasses.replace(ev, fixed_nn=pick["nn"], fixed_accuracy=known), sims - n,
                                 checkpoints[-1], strategy=opts["accel_strategy"])
            else:
                # step 1: the simulations but one per training, the accelerator for the reference network (its
                # accuracy a constant factor: not trained); step 2: every training, the networks on that one
                accel = self.job["base"]
                if sims > n:
                    checkpoints.append(os.path.join(out, "checkpoint.step1.json"))
                    r1 = self._search("accelerator", a_space,
                                      dataclasses.replace(ev, fixed_nn=self.job["reference"], hardware_only=True),
                                      sims - n, checkpoints[-1], strategy=opts["accel_strategy"])
                    accel = None if self.interrupted else self._pick(r1, trained=False)["accel"]
                if accel is not None:
                    checkpoints.append(os.path.join(out, "checkpoint.step2.json"))
                    self._search("network", nn_space, dataclasses.replace(ev, fixed_accel=accel), n,
                                 checkpoints[-1], strategy=opts["strategy"])
        except INTERRUPTS as e:
            if not is_interrupt(e):
                raise
            self.interrupted = True
        with DeferredInterrupt():  # the search is over: a Ctrl-C now waits for its files and its --json
            return self._finish(checkpoints)

    def _pick(self, result, trained: bool = True) -> dict:
        pick = _best(self.trials, trained=trained)
        if pick is None:
            raise UserInputError(f"NAHAS {self.opts['mode']}: step 1 evaluated no design successfully "
                                 f"({len(result.history)} trials); see history.jsonl")
        return pick

    def accounting(self) -> dict:
        """``{"trainings", "simulations"}`` the run spent: distinct networks trained (a trial whose accuracy
        was given or not needed trains nothing) and simulations (a nested trial's are its inner search's)."""
        trained = [t for t in self.trials if t.get("trained") and "accuracy" in t.get("metrics", {})]
        nets = {json.dumps(t["nn"], sort_keys=True) for t in trained}
        return {"trainings": len(nets),
                "simulations": int(sum(t.get("metrics", {}).get("sims", 0) for t in self.trials))}

    def _best_files_written(self, best_json: dict) -> bool:
        """Whether the folder already holds this best design's files: a finished run's report.json (written last,
        after them) names the same best. A finished run rerun then does not retrain the best network (15-25 s
        here) to write the same bytes again."""
        names = ("best.onnx", "best_target.onnx", "best_accel.toml", "report.json")
        if not all(os.path.isfile(os.path.join(self.out, f)) for f in names):
            return False
        try:
            old = parse_json(read_user_file(os.path.join(self.out, "report.json"), TEXT_FILE_LIMIT,
                                            "a NAHAS report (JSON)"))
        except (OSError, ValueError, UserInputError):
            return False
        return (isinstance(old, dict) and old.get("interrupted") is False
                and old.get("best") == json.loads(json.dumps(best_json)))

    def _finish(self, checkpoints: list[str]) -> dict:
        from graphmill.search.runner import write_history_jsonl
        from graphmill.util.files import atomic_write_text, write_json

        out, ev = self.out, self.ev
        files = [os.path.basename(c) for c in checkpoints if os.path.exists(c)] + ["settings.json"]
        write_history_jsonl(os.path.join(out, "history.jsonl"), self.trials)
        files.append("history.jsonl")
        best = _best(self.trials)
        if self.trials:
            plot(os.path.join(out, "nahas.png"), {self.opts["mode"]: self.trials}, ev.latency_target,
                 ev.area_budget, title=f"NAHAS {self.opts['mode']} ({self.opts['nn']} network space, digits task)")
            files.append("nahas.png")
        best_json = design(best) if best is not None else None
        kept: list[str] = []
        if best is not None and not self.interrupted:
            try:
                if not self._best_files_written(best_json):
                    from graphmill.frontend import save

                    save(ev.trained_network(best["nn"]), os.path.join(out, "best.onnx"))
                    save(build_network(ev.nn, best["nn"], deploy=True, latency_scale=ev.latency_scale,
                                       seed=ev.train_seed), os.path.join(out, "best_target.onnx"))
                    atomic_write_text(os.path.join(out, "best_accel.toml"), toml_text(best_json["accel"]))
                    files += ["best.onnx", "best_target.onnx", "best_accel.toml"]
                else:  # a finished run rerun: the same design's files, kept ("wrote" named them: a review)
                    kept = ["best.onnx", "best_target.onnx", "best_accel.toml"]
            except KeyboardInterrupt:
                self.interrupted = True
        report = {"method": METHOD, "mode": self.opts["mode"], "task": TASK, "network_space": self.opts["nn"],
                  "strategy": self.opts["strategy"], "seed": self.seed, "budget": self.job["budget"],
                  "trials": len(self.trials), **self.accounting(), "accel_search": self.opts["accel_search"],
                  "accel_sims": self.opts["accel_sims"], "interrupted": self.interrupted,
                  "constraints": {"area_mm2": ev.area_budget, "latency_ms": ev.latency_target},
                  "energy_ref_uj": ev.energy_ref, "energy_w": ev.energy_w,
                  "reference_network": {"config": self.job["reference"], **self.job["reference_sim"],
                                        "accelerator": self.job["base"], "area_mm2": self.job["base_area"]},
                  "area_model": dataclasses.asdict(ev.area),
                  "feasible_trials": sum(1 for t in self.trials if _feasible(t) and "accuracy" in t["metrics"]),
                  "best": best_json, "options": {k: self.opts[k] for k in SETTINGS}}
        write_json(os.path.join(out, "report.json"), report)
        files.append("report.json")
        return {"method": METHOD, "task": TASK, "out": out, "files": files, "kept": kept,
                "interrupted": self.interrupted,
                "checkpoint": next((c for c in reversed(checkpoints) if os.path.exists(c)), None),
                "best": best_json, "trials": len(self.trials), "new_trials": self.new_trials, **self.accounting(),
                "mode": self.opts["mode"],
                "constraints": report["constraints"], "seconds": time.perf_counter() - self.t0}


def _feasible(t: Mapping[str, Any]) -> bool:
    return t.get("status") == "ok" and bool(t.get("metrics", {}).get("feasible"))


def _networks(history: list[dict]) -> set[str]:
    """The distinct networks a joint (sampled) search has trained: its successful trials' networks."""
    return {json.dumps(t["config"]["nn"], sort_keys=True) for t in history
            if t.get("status") == "ok" and "accuracy" in t.get("metrics", {})}


def _best(trials: list[dict], trained: bool = True) -> dict | None:
    """The feasible trial of highest reward (earliest on ties); else the best-rewarded trial; None if none ok.
    ``trained``: only trials with an accuracy (an accelerator step's hardware-only trials are no designs)."""
    ok = [t for t in trials if t.get("status") == "ok" and t.get("reward") is not None
          and (not trained or "accuracy" in t.get("metrics", {}))]
    pool = [t for t in ok if _feasible(t)] or ok
    return max(pool, key=lambda t: t["reward"]) if pool else None  # max keeps the first of equal rewards


def named_design_accel(accel: Mapping[str, Any]) -> dict:
    """A searched accelerator named for what it is, not after the base it was searched from (the trials carry
    the base's name): the name best_accel.toml and the report's ``best`` share."""
    name = accel.get("name") or "the default"
    # a trial's name is point_name(accel, its base) already (accel_config): that base is kept
    searched = name.startswith(point_name(accel, "").removesuffix(")")) and name.endswith(")")
    return {**accel, "name": f"nahas-best {name if searched else point_name(accel, name)}"}


def design(t: Mapping[str, Any]) -> dict:
    """A trial as the report's ``best``: its network and accelerator configuration and metrics."""
    m = t.get("metrics", {})
    return {"config": t["config"], "nn": t["nn"], "accel": named_design_accel(t["accel"]), "step": t.get("step"),
            "reward": t.get("reward"),
            "feasible": bool(m.get("feasible")), "accuracy": m.get("accuracy"), "latency_ms": m.get("latency_ms"),
            "energy": m.get("energy_uj"), "energy_uj": m.get("energy_uj"), "area_mm2": m.get("area_mm2"),
            "macs": m.get("macs"), "cycles": m.get("cycles")}


def toml_text(accel: Mapping[str, Any]) -> str:
    """A TOML-schema accelerator dict as TOML text (``graphmill simulate --accel`` reads it back)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        return repr(v) if isinstance(v, float) else str(v)

    lines = [f"{k} = {value(v)}" for k, v in accel.items() if not isinstance(v, dict)]
    for k, v in accel.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def plot(path: str, runs: Mapping[str, list[dict]], latency_target: float, area_budget: float, *,
         title: str = "NAHAS", winners: Mapping[str, list[dict]] | None = None) -> None:
    """Accuracy vs simulated latency of the evaluated designs, coloured by area (one marker per run ``runs``
    names); the latency target, the area budget in the colour bar; each run's best (or the designs of
    ``winners``) marked with a star."""
    from graphmill.util.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = "osD^v<>"
    sc = None
    for i, (name, trials) in enumerate(runs.items()):
        pts = [t for t in trials if t.get("status") == "ok" and "accuracy" in t.get("metrics", {})]
        if not pts:
            continue
        xs = [t["metrics"]["latency_ms"] for t in pts]
        ys = [t["metrics"]["accuracy"] for t in pts]
        cs = [t["metrics"]["area_mm2"] for t in pts]
        sc = ax.scatter(xs, ys, c=cs, cmap="viridis", vmin=0, vmax=area_budget, marker=markers[i % len(markers)],
                        s=22, alpha=0.75, edgecolors="none", label=f"{name} ({len(pts)} designs)")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(runs):
        picks = (winners or {}).get(name)
        if picks is None:
            b = _best(runs[name])
            picks = [b] if b is not None and "accuracy" in b.get("metrics", {}) else []
        for j, b in enumerate(picks):
            ax.scatter([b["metrics"]["latency_ms"]], [b["metrics"]["accuracy"]], marker="*", s=260,
                       facecolors="none", edgecolors=colors[i % len(colors)], linewidths=1.8,
                       label=f"{name} best" if j == 0 else None)
    ax.axvline(latency_target, color="red", ls="--", lw=1, label=f"latency target {latency_target:.3g} ms")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    # plain numbers, the minor ticks labelled at 2 and 5 only (matplotlib's 2x10^0 3x10^0 4x10^0 overlapped)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    ax.set_xlabel("simulated latency (ms, log)")
    ax.set_ylabel("accuracy (digits, held-out fifth)")
    ax.set_title(title)
    if sc is not None:
        fig.colorbar(sc, ax=ax, label=f"area (mm^2; budget {area_budget:g})")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(fig, path, tight=True)


__all__ = ["AREA", "AreaModel", "DEFAULT_BUDGET", "MODES", "NahasEvaluator", "OPTIONS", "TASK", "build_network",
           "check_area", "check_options", "design", "energy_constants", "network_space", "plot", "reference_network",
           "run", "simulate_design", "sram_pj_per_byte", "toml_text"]
