"""The accuracy / cost picture of a trained supernet's children (``graphmill supernet select --plot``).

A selection sees only the children near its budget; the trade-off a user chooses a budget from is the whole
supernet's. So the plot measures, besides the children the selection evaluated, every child of the coarse grid
(network-wide levels x resolutions, ``SupernetSpec.coarse_grid``: 162 children of the default supernet, about
5 s here, accuracy with re-estimated statistics, costs and simulated latency cached by the evaluator), and
draws validation accuracy against MACs, parameters and simulated latency, each panel with its Pareto front,
the budget and the chosen child. Validation accuracy, not test: it is what the selection ranks by.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any, Callable, Mapping

from graphmill.search.objectives import pareto_front

from .select import UNITS, ChildEvaluator, Selection, config_key

PANELS = (("macs", "MACs (batch 1)"), ("params", "parameters"), ("latency_ms", "simulated latency (ms)"))


def children_points(ev: ChildEvaluator, selection: Selection | None = None,
                    progress: Callable[[str], None] | None = None) -> list[dict]:
    """Every coarse-grid child and every child ``selection`` evaluated, once each: ``config``, ``macs``,
    ``params``, ``latency_ms`` and ``val_accuracy``; ``selected`` tells which the selection evaluated."""
    configs: dict[str, dict] = {}
    for c in ev.spec.coarse_grid():
        configs.setdefault(config_key(c), ev.spec.check(c))
    picked = {config_key(e["config"]) for e in (selection.evaluated if selection else [])}
    for e in selection.evaluated if selection else []:
        configs.setdefault(config_key(e["config"]), e["config"])
    out = []
    for i, (k, c) in enumerate(configs.items()):
        out.append({"config": c, "macs": ev.metric("macs", c), "params": ev.metric("params", c),
                    "latency_ms": ev.metric("latency_ms", c), "val_accuracy": ev.accuracy(c), "selected": k in picked})
        if progress is not None and ((i + 1) % 40 == 0 or i + 1 == len(configs)):
            progress(f"plot: {i + 1}/{len(configs)} children measured")
    return out


def front(points: list[dict], metric: str) -> list[dict]:
    """The points of highest validation accuracy for their ``metric`` (lower is better), by ``metric``."""
    trials = [SimpleNamespace(metrics={"accuracy": p["val_accuracy"], metric: p[metric]}, reward=None, point=p)
              for p in points]
    return [t.point for t in pareto_front(trials, "accuracy", metric)]


def plot_children(path: str | os.PathLike, points: list[dict], chosen: Mapping[str, Any],
                  kind: str | None = None, limit: float | None = None, title: str = "") -> dict:
    """Write the PNG; returns the size of each panel's Pareto front (``{"macs": n, ...}``)."""
    from graphmill.util.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.2), sharey=True)
    chosen_key = config_key(chosen)
    sizes = {}
    grid = [p for p in points if not p["selected"]]
    sel = [p for p in points if p["selected"]]
    mine = [p for p in points if config_key(p["config"]) == chosen_key]
    for ax, (metric, label) in zip(axes, PANELS):
        ax.scatter([p[metric] for p in grid], [p["val_accuracy"] for p in grid], s=12, alpha=0.45, color="C0",
                   label="coarse-grid child")
        if sel:
            ax.scatter([p[metric] for p in sel], [p["val_accuracy"] for p in sel], s=16, alpha=0.7, color="C2",
                       label="evaluated by the selection")
        f = front(points, metric)
        sizes[metric] = len(f)
        ax.step([p[metric] for p in f], [p["val_accuracy"] for p in f], where="post", color="C3", marker="o",
                markersize=3, label=f"Pareto front ({len(f)})")
        if mine:
            ax.scatter([mine[0][metric]], [mine[0]["val_accuracy"]], s=160, marker="*", color="gold",
                       edgecolors="black", zorder=5, label="chosen child")
        if kind == metric and limit is not None:
            ax.axvline(limit, color="gray", linestyle="--", label=f"budget {limit:g} {UNITS[kind]}")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
    axes[0].set_ylabel("validation accuracy (inherited weights)")
    fig.suptitle(title or f"supernet children: {len(points)} measured")
    save_figure(fig, path, tight=True)
    return sizes
