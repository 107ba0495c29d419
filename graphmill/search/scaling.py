"""Compound-scaling coefficient search (EfficientNet Sec. 3.3, EfficientNet-X's latency-aware variant).

The pieces follow ``search/``'s layout:

* space ``ScalingGrid``: alpha, beta, gamma >= 1 on a grid of ``step`` up to
  ``max_value``, kept when ``|alpha * beta**2 * gamma**2 - target| <= tolerance``
  (the paper's FLOPs constraint, target 2, at phi = 1);
* strategy: the grid, in order (``grid_candidates``);
* evaluators: ``TrainEvaluator`` (accuracy after a short training run through
  the torch backend, ``graphmill.to_torch``, on scikit-learn's digits: 8x8
  images resized to the model's input, held-out split), ``StubEvaluator``
  (a deterministic stand-in for tests, clearly not an accuracy), and the cost
  ``MacsCost`` (``ir.summary.summarize``) or ``SimLatencyCost`` (total cycles
  of ``graphmill.simulate`` on an accelerator config);
* objective ``Objective``: maximise accuracy subject to ``cost <= max_cost``
  (infeasible candidates rank after every feasible one), ties broken by lower
  cost; with ``latency_weight`` w, MnasNet's soft form ``acc * (cost/max_cost)**w``
  for costs over the budget.

``run_search`` is one client of ``graphmill.search.run``: the space is
alpha/beta/gamma as choices over the grid values, the strategy is ``grid`` with
the feasible candidates as its points (its ``label`` option records the
evaluator, cost, objective and phi, so a checkpoint of other settings is
refused), and ``run`` evaluates them, prints progress on stderr, writes its
checkpoint (atomically) after every candidate and resumes from it (no candidate
is evaluated twice); Ctrl-C stops after the candidate in flight. Results go to
JSON and a PNG plot of accuracy against cost.
"""

from __future__ import annotations

import bisect
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol


from graphmill.ir import Graph, UserInputError


MAX_GRID_VALUES = 1000
"""Most values per coefficient (a million (alpha, beta) pairs, about a second to walk): ``--step 0.001 --max-value
100`` asked for 99,001 and walked its 10^15 triples for ever. Every candidate is a training run, so a real search
stays far below it."""


MAX_GRID_CANDIDATES = 10_000
"""Most candidates a grid may hold: each is a training run (at the default 30 steps, 10,000 are days of CPU), and
the checkpoint lists every one."""


@dataclass(frozen=True)
class ScalingGrid:
    step: float = 0.05
    max_value: float = 2.0
    target: float = 2.0
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        for k in ("step", "max_value", "target", "tolerance"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or \
                    (v == 0 and k != "tolerance"):
                raise UserInputError(f"{k}={v!r}: must be a number {'>= 0' if k == 'tolerance' else '> 0'}")
        if self.max_value < 1:
            raise UserInputError(f"max_value={self.max_value!r}: must be >= 1")
        ratio = (self.max_value - 1) / self.step  # inf for max_value 1e308, step 1e-300
        count = math.floor(ratio + 1e-9) + 1 if ratio < MAX_GRID_VALUES else ratio + 1  # as values() counts
        if not count <= MAX_GRID_VALUES:  # checked before the grid is walked: 1e5 values were 1e15 products
            raise UserInputError(f"step={self.step:g}, max_value={self.max_value:g}: the grid would have "
                                 f"{count:,.0f} values per coefficient, at most {MAX_GRID_VALUES:,} are searched "
                                 "(a larger step, or a smaller max_value)")

    def values(self) -> list[float]:
        n = int(math.floor((self.max_value - 1) / self.step + 1e-9))
        return [round(1 + i * self.step, 10) for i in range(n + 1)]

    def candidates(self) -> list[tuple[float, float, float]]:
        """Every (alpha, beta, gamma) of the grid with ``|alpha * beta^2 * gamma^2 - target| <= tolerance``, in
        alpha, beta, gamma order. For each (alpha, beta) the gammas that can qualify are found by bisection
        (gamma^2 within ``(target -+ tolerance) / (alpha * beta^2)``) and tested with that exact predicate, one
        value beyond each end too: the triple loop's result, in n^2 log n instead of n^3."""
        vals = self.values()
        out = []
        for a in vals:
            for b in vals:
                ab2 = a * b * b
                lo = math.sqrt(max(self.target - self.tolerance, 0.0) / ab2)
                hi = math.sqrt((self.target + self.tolerance) / ab2)
                first = max(bisect.bisect_left(vals, lo) - 1, 0)
                last = min(bisect.bisect_right(vals, hi) + 1, len(vals))
                # + 1e-9: (1.9, 1, 1) is 0.1 from 2, which floating point makes 0.10000000000000009
                out.extend((a, b, g) for g in vals[first:last]
                           if abs(ab2 * g * g - self.target) <= self.tolerance + 1e-9)
        if len(out) > MAX_GRID_CANDIDATES:  # each is a training run, and the checkpoint lists them all
            raise UserInputError(f"step={self.step:g}, max_value={self.max_value:g}, tolerance={self.tolerance:g}: "
                                 f"{len(out):,} candidates, at most {MAX_GRID_CANDIDATES:,} are searched (a larger "
                                 "step or a smaller tolerance)")
        return out


def grid_candidates(space: ScalingGrid) -> list[tuple[float, float, float]]:
    """The grid strategy: every candidate of the space, in a fixed order."""
    return space.candidates()


class Evaluator(Protocol):
    def __call__(self, graph: Graph) -> dict[str, float]: ...


@dataclass
class MacsCost:
    name: str = "macs"

    def __call__(self, graph: Graph) -> float:
        from graphmill.ir.summary import summarize

        return float(summarize(graph).macs)


@dataclass
class SimLatencyCost:
    accel: Any  # AccelConfig, dict, or TOML path
    name: str = "sim_cycles"

    def __call__(self, graph: Graph) -> float:
        from graphmill.backends.simulator import simulate_graph
        from graphmill.ir.summary import bind_symbols, symbols

        g = bind_symbols(graph, {s: 1 for s in symbols(graph)})
        return float(simulate_graph(g, self.accel).total_cycles)


@dataclass
class StubEvaluator:
    """NOT an accuracy: a deterministic stand-in (a smooth function of the model size) for tests."""

    name: str = "stub"

    def __call__(self, graph: Graph) -> dict[str, float]:
        from graphmill.ir.summary import summarize

        s = summarize(graph)
        return {"accuracy": float(1 - 1 / (1 + math.log1p(s.params) / 10)), "stub": 1.0}


def digits_data(size: int, seed: int = 0):
    """scikit-learn's digits (8x8, 10 classes) resized to ``size`` x ``size``, 3 channels; (xtr, ytr, xte, yte)."""
    from graphmill.search.evaluators.training import digits_data as digits

    return digits(size, channels=3, seed=seed)


@dataclass
class TrainEvaluator:
    """Accuracy on digits' held-out fifth after ``steps`` Adam steps through ``graphmill.to_torch``."""

    steps: int = 30
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0
    threads: int = 2
    name: str = "train"

    def __call__(self, graph: Graph) -> dict[str, float]:
        import torch

        from graphmill.backends.torch import to_torch

        torch.manual_seed(self.seed)
        torch.set_num_threads(self.threads)
        size = graph.inputs[0].shape[-1]
        xtr, ytr, xte, yte = digits_data(int(size), self.seed)
        model = to_torch(graph)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)
        loss = torch.tensor(0.0)
        for _ in range(self.steps):
            idx = torch.randint(0, len(ytr), (self.batch,), generator=gen)
            out = model(xtr[idx])
            out = out[0] if isinstance(out, (tuple, list)) else out
            loss = torch.nn.functional.cross_entropy(out, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = 0
            for i in range(0, len(yte), 256):
                out = model(xte[i:i + 256])
                out = out[0] if isinstance(out, (tuple, list)) else out
                correct += int((out.argmax(1) == yte[i:i + 256]).sum())
        return {"accuracy": correct / len(yte), "final_loss": float(loss.detach())}


@dataclass
class Objective:
    """Maximise accuracy with ``cost <= max_cost`` (hard) or MnasNet's soft penalty when ``latency_weight`` < 0."""

    max_cost: float | None = None
    latency_weight: float | None = None  # e.g. -0.07 (MnasNet): soft; None: hard constraint

    def score(self, accuracy: float, cost: float) -> float:
        if self.max_cost is None:
            return accuracy
        if self.latency_weight is not None:
            return accuracy * (cost / self.max_cost) ** self.latency_weight if cost > self.max_cost else accuracy
        return accuracy

    def feasible(self, cost: float) -> bool:
        return self.max_cost is None or self.latency_weight is not None or cost <= self.max_cost

    def key(self, r: dict) -> tuple:
        """Sort key, best first."""
        if r.get("status") != "ok":
            return (2, 0.0, 0.0)
        return (0 if self.feasible(r["cost"]) else 1, -self.score(r["accuracy"], r["cost"]), r["cost"])

    def rank(self, results: list[dict]) -> list[dict]:
        return sorted(results, key=self.key)


@dataclass
class SearchResult:
    candidates: list[dict] = field(default_factory=list)
    best: dict | None = None
    interrupted: bool = False
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def run_search(base: Graph, *, space: ScalingGrid, evaluator: Callable[[Graph], dict], cost: Callable[[Graph], float],
               objective: Objective, checkpoint: str | None = None, phi: float = 1.0, divisor: int = 8,
               seed: int = 0, limit: int | None = None, progress: Any = True) -> SearchResult:
    """Evaluate the grid's candidates through ``graphmill.search.run`` (strategy ``grid``, resuming from
    ``checkpoint``); see the module doc. ``progress``: a stream for one line per candidate, True for the
    ``sys.stderr`` of the moment of the call (a default bound at import kept a stream that was later closed,
    e.g. pytest's capture of an earlier test), None for none."""
    if progress is True:
        progress = sys.stderr
    from graphmill.passes.scaling import scale
    from graphmill.search import checkpoint as ckpt
    from graphmill.search.runner import run
    from graphmill.search.space import Choice, Space

    cands = grid_candidates(space)
    config = dict(space=asdict(space), phi=phi, divisor=divisor, seed=seed, objective=asdict(objective),
                  evaluator=_describe(evaluator), cost=_describe(cost))
    if not cands:
        return SearchResult([], None, False, config)
    budget = len(cands) if limit is None else min(limit, len(cands))
    vals = space.values()
    grid = Space({"alpha": Choice(vals), "beta": Choice(vals), "gamma": Choice(vals)})
    options = {"configs": [{"alpha": a, "beta": b, "gamma": g} for a, b, g in cands],
               "label": json.loads(json.dumps(config, default=str))}
    if checkpoint:
        state = ckpt.load(checkpoint)
        if state is not None and state.get("history") and state.get("options") == options:  # else it is refused
            _check_resumed(state["history"], checkpoint)
            if progress is not None:
                print(f"resuming: {len(state['history'])} of {budget} candidates already evaluated", file=progress)

    def evaluate(c: dict) -> dict:
        graph = scale(base, phi, c["alpha"], c["beta"], c["gamma"], divisor, seed=seed)
        rec = {"cost": cost(graph), **evaluator(graph)}
        c_ = rec["cost"]
        # the grid ignores rewards; this one orders feasible candidates before infeasible ones as rank() does
        rec["reward"] = objective.score(rec["accuracy"], c_) - (0.0 if objective.feasible(c_) else 2.0)
        return rec

    def report(d: dict) -> None:
        t = d["trial"]
        a, b, g = t.config["alpha"], t.config["beta"], t.config["gamma"]
        word = "stub" if t.metrics.get("stub") else "acc"  # the stub's stand-in is no accuracy
        acc = f"{word} {t.metrics['accuracy']:.3f}" if "accuracy" in t.metrics else (t.error or "")
        eta = d["eta"]
        print(f"[{d['count']}/{d['budget']}] alpha={a:g} beta={b:g} gamma={g:g}  cost "
              f"{t.metrics.get('cost', float('nan')):.4g}  {acc}  ({t.seconds:.1f}s, ~"
              f"{eta if math.isfinite(eta) else 0:.0f}s left)", file=progress, flush=True)

    res = run(grid, evaluate, strategy="grid", budget=budget, seed=seed, checkpoint=checkpoint,
              progress=report if progress is not None else False, strategy_options=options)
    results = []
    for t in res.history:
        a, b, g = t.config["alpha"], t.config["beta"], t.config["gamma"]
        rec: dict[str, Any] = dict(key=_key((a, b, g)), alpha=a, beta=b, gamma=g, constraint=a * b * b * g * g)
        rec.update({k: v for k, v in t.metrics.items()})
        rec.update(status=t.status, seconds=t.seconds)
        if t.status == "ok":
            rec["feasible"] = objective.feasible(rec["cost"])
        if t.error is not None:
            rec["error"] = t.error
        results.append(rec)
    ranked = objective.rank(results)
    # the best is within the budget: with none there, the cheapest over it was reported as best, exit 0
    best = ranked[0] if ranked and ranked[0].get("status") == "ok" and ranked[0]["feasible"] else None
    return SearchResult(ranked, best, res.interrupted, config)


def _check_resumed(history: Any, checkpoint: str) -> None:
    """A one-line refusal of a checkpoint whose finished candidate has no numeric cost or accuracy, which every
    evaluation here records: a cost of "cheap" ended in the plot's traceback after results.json was rewritten (an
    outside check). The rest of the history is the search runner's to check."""
    from graphmill.search.runner import recorded_figure_damage

    bad = recorded_figure_damage(history, ("cost", "accuracy"), required=True)
    if bad is not None:
        number, name, v = bad
        raise UserInputError(f"{checkpoint}: a damaged scale-search checkpoint (trial {str(number)[:20]}: its {name} "
                             f"is {str(v)[:40]}, not a number); delete it to start afresh")


def _describe(component: Any) -> Any:
    """What identifies an evaluator or cost in the checkpoint: its settings, so that a resumed search
    never mixes candidates trained or costed differently."""
    from dataclasses import is_dataclass

    if is_dataclass(component):
        return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                for k, v in asdict(component).items()}
    return getattr(component, "name", type(component).__name__)


def _key(c: tuple[float, float, float]) -> str:
    return "a{:g}_b{:g}_g{:g}".format(*c)


def plot(result: SearchResult, path: str) -> None:
    """Accuracy against cost, the best candidate marked (PNG, matplotlib Agg)."""
    from graphmill.util.plots import pyplot, save_figure

    plt = pyplot()
    ok = [r for r in result.candidates if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([r["cost"] for r in ok], [r["accuracy"] for r in ok], s=18)
    for r in ok:
        ax.annotate(f"{r['alpha']:g}/{r['beta']:g}/{r['gamma']:g}", (r["cost"], r["accuracy"]), fontsize=6)
    if result.best:
        ax.scatter([result.best["cost"]], [result.best["accuracy"]], marker="*", s=120, c="red", label="best")
        ax.legend()
    mc = result.config.get("objective", {}).get("max_cost")
    if mc:
        ax.axvline(mc, ls="--", c="gray")
    c = result.config.get("cost", "cost")
    ax.set_xlabel(c.get("name", "cost") if isinstance(c, dict) else c)
    ax.set_ylabel("accuracy")
    ax.set_title("compound scaling coefficients (alpha/beta/gamma)")
    save_figure(fig, path, dpi=120, tight=True)


def default_base(seed: int = 0) -> Graph:
    """The small base network of the search: ResNet-18 at width 1/8, depth 1/2, 16x16 input, 10 classes."""
    from graphmill.frontend import zoo

    return zoo.build("resnet18", width=0.125, depth=0.5, resolution=16, num_classes=10, seed=seed,
                     min_resolution=16)
