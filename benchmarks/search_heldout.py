"""Held-out tables for the search strategies: generated surrogates the default strategy was not designed on.

``bench_search.py`` holds the tables the default was designed on; these check it elsewhere (docs/results/search.md, "Held-out
tables"). Each is a function of the configuration (no file): the value of every configuration is computed on the
fly and the optimum by enumeration.

* ``gnn``: NAS-Bench-Graph-like: 4 nodes, each one of 9 GNN operations and an input link (the graph input or an
  earlier node): 157,464 configurations; accuracy from the operations' qualities along each leaf's path,
  over-smoothing beyond 2-3 message-passing layers, leaves concatenated, pairwise operation interactions, a
  per-configuration hash "noise".
* ``cond-small-K`` (K = 0..5): an MLP-like space whose per-layer widths exist only up to the chosen depth
  (depth 1-3, widths 16-128, activation, learning rate: 1008 configurations), seeded depth, width,
  adjacent-width and activation effects.
* ``cond-large-K``: depth 1-4, per-layer width (5) and activation (3) up to the depth, learning rate (5), dropout
  (3): 813,600 configurations (the optimum takes ~5 s to enumerate).
* ``review-a``, ``review-b``: written by a reviewer who had not seen the project's tables: an NB201-like table
  (4 nodes x 5 operations, a link, a width: 5,625, noise sd 0.25 before a sigmoid) and an HPO-like table with
  conditional optimizer parameters (``momentum`` only with SGD, ``beta1`` only with Adam; learning rate x
  optimizer and learning rate x batch interactions; 36,000 configurations; noise sd 0.02).

    .venv/bin/python benchmarks/search_heldout.py --table gnn --strategies default,tpe,evolution,random --seeds 20
    .venv/bin/python benchmarks/search_heldout.py --table review-b --seeds 80 --options '{"cond_relevance": 1.0}'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from graphmill import search  # noqa: E402

BUDGETS = (25, 50, 75, 100, 150, 200)


def _hash_noise(config: dict, scale: float) -> float:
    h = int(hashlib.md5(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8], 16) / 2**32
    return scale * (h - 0.5)


# -- gnn ----------------------------------------------------------------------------------------------------------
GNN_OPS = ["gcn", "gat", "sage", "gin", "cheb", "arma", "graph", "fc", "skip"]
_GNN_Q = {"gcn": .80, "gat": .82, "sage": .81, "gin": .77, "cheb": .79, "arma": .80, "graph": .78, "fc": .62,
          "skip": .55}


def gnn_table():
    space = search.Space({k: v for i in range(4) for k, v in
                          ((f"op{i}", search.Choice(GNN_OPS)), (f"lk{i}", search.Choice(list(range(i + 1)))))})
    r = np.random.default_rng(2022)
    inter = {(a, b): r.normal(0, 0.012, (9, 9)) for a, b in [(0, 1), (1, 3), (2, 3), (0, 2)]}

    def f(c: dict) -> float:
        ops = [c[f"op{i}"] for i in range(4)]
        lk = [c[f"lk{i}"] for i in range(4)]
        depth, qual = [0] * 5, [0.0] * 5  # node i+1's message-passing depth and quality (node 0: the input)
        for i in range(4):
            src = lk[i]
            depth[i + 1] = depth[src] + (ops[i] not in ("fc", "skip"))
            qual[i + 1] = _GNN_Q[ops[i]] if src == 0 else 0.5 * (_GNN_Q[ops[i]] + qual[src]) + 0.03
        leaves = [i + 1 for i in range(4) if (i + 1) not in set(lk)]
        d = max(depth[n] for n in leaves)
        v = max(qual[n] for n in leaves) + 0.01 * (len(leaves) - 1)
        v -= 0.025 * max(0, d - 2) ** 1.5 + (0.08 if d == 0 else 0.0)
        v += sum(inter[(a, b)][GNN_OPS.index(ops[a]), GNN_OPS.index(ops[b])] for a, b in inter)
        return float(v + _hash_noise(c, 0.004))

    return space, f


# -- cond-small / cond-large --------------------------------------------------------------------------------------
def cond_table(kind: str, tseed: int):
    r = np.random.default_rng(1000 + tseed)
    acts = ["relu", "tanh", "elu"]
    if kind == "small":
        D, W, L = 3, [16, 32, 64, 128], [0.003, 0.01, 0.03, 0.1]
        p: dict = {"depth": search.Choice([1, 2, 3])}
        for i in range(1, D + 1):
            p[f"w{i}"] = search.Choice(W, when=None if i == 1 else {"depth": list(range(i, D + 1))})
        p["act"], p["lr"] = search.Choice(acts), search.Choice(L)
    else:
        D, W, L = 4, [16, 32, 64, 128, 256], [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
        p = {"depth": search.Choice([1, 2, 3, 4])}
        for i in range(1, D + 1):
            when = None if i == 1 else {"depth": list(range(i, D + 1))}
            p[f"w{i}"], p[f"a{i}"] = search.Choice(W, when=when), search.Choice(acts, when=when)
        p["lr"], p["dropout"] = search.Choice(L), search.Choice([0.0, 0.1, 0.3])
    space = search.Space(p)
    depth_eff = r.normal(0, 0.02, D)
    depth_eff -= depth_eff.max()
    wq = r.normal(0, 0.015, (D, len(W)))  # each layer's width effect
    aq = r.normal(0, 0.01, (D, len(acts)))  # per-layer activation (large), the global one by depth (small)
    lr_opt = r.uniform(0.5, len(L) - 1.5)
    inter = r.normal(0, 0.008, (D, len(W), len(W)))  # adjacent widths interact (bottlenecks)
    drop = r.normal(0, 0.01, 3)

    def f(c: dict) -> float:
        d = c["depth"]
        v = 0.9 + depth_eff[d - 1] - 0.01 * (L.index(c["lr"]) - lr_opt) ** 2
        for i in range(1, d + 1):
            wi = W.index(c[f"w{i}"])
            v += wq[i - 1, wi] / math.sqrt(d)
            if i > 1:
                v += inter[i - 1, W.index(c[f"w{i - 1}"]), wi]
            if kind == "large":
                v += aq[i - 1, acts.index(c[f"a{i}"])] / math.sqrt(d)
        v += aq[d - 1, acts.index(c["act"])] if kind == "small" else drop[[0.0, 0.1, 0.3].index(c["dropout"])]
        return float(v)

    return space, f


# -- review-a / review-b ------------------------------------------------------------------------------------------
def review_a():
    ops, links, widths = ["conv3", "conv5", "sep3", "pool", "skip"], [0, 1, 2], [16, 32, 64]
    rng = np.random.default_rng(12345)
    main = rng.normal(0, 1, size=(4, 5)) * np.array([1.0, 0.8, 0.6, 0.4])[:, None]
    pair = rng.normal(0, 0.6, size=(3, 5, 5))
    link_eff = rng.normal(0, 0.7, size=(3, 5))
    width_eff = np.array([-0.8, 0.0, 0.5])
    noise = rng.normal(0, 0.25, size=(5, 5, 5, 5, 3, 3))
    T = np.zeros((5, 5, 5, 5, 3, 3))
    for idx in np.ndindex(*T.shape):
        o, lnk, w = idx[:4], idx[4], idx[5]
        v = sum(main[i, o[i]] for i in range(4)) + sum(pair[i, o[i], o[i + 1]] for i in range(3))
        v += link_eff[lnk, o[3]] + width_eff[w]
        nconv = sum(x < 3 for x in o)
        v += (-3.0 if nconv == 0 else 0.0) + 0.6 * min(nconv, 3)
        T[idx] = v + noise[idx]
    T = 1.0 / (1.0 + np.exp(-(T - T.mean()) / T.std()))
    space = search.Space({**{f"op{i}": search.Choice(ops) for i in range(4)}, "link": search.Choice(links),
                          "width": search.Choice(widths)})

    def f(c: dict) -> float:
        return float(T[tuple(ops.index(c[f"op{i}"]) for i in range(4)) + (links.index(c["link"]),
                                                                           widths.index(c["width"]))])

    return space, f


def review_b():
    mom, beta1 = [0.0, 0.5, 0.9, 0.99], [0.5, 0.8, 0.9, 0.95, 0.99]
    lrs = [float(x) for x in np.round(np.logspace(-4, -0.5, 10), 6)]
    batch, drop, acts = [32, 64, 128, 256], [0.0, 0.1, 0.2, 0.3, 0.5], ["relu", "tanh", "gelu"]
    rng = np.random.default_rng(777)
    T = np.zeros((10, 10, 4, 6, 5, 3))
    noise = rng.normal(0, 0.02, size=T.shape)
    lr_opt = {"sgd": 7.0, "adam": 3.0, "rmsprop": 2.5}
    base = {"sgd": 0.0, "adam": 0.04, "rmsprop": 0.0}
    act_eff = rng.normal(0, 0.02, size=3)
    for idx in np.ndindex(*T.shape):
        s, lr, b, d, dr, a = idx
        opt, sub = ("sgd", s) if s < 4 else ("adam", s - 4) if s < 9 else ("rmsprop", 0)
        v, shift = 0.85 + base[opt], 0.0
        if opt == "sgd":
            shift = [-1.5, -0.8, 0.0, 1.2][sub]
            v += [-0.05, -0.02, 0.03, 0.0][sub]
        if opt == "adam":
            v += [-0.03, 0.0, 0.02, 0.01, -0.04][sub]
        v -= 0.015 * (lr - lr_opt[opt] + shift) ** 2
        v -= 0.01 * abs(b - 1) + 0.004 * (lr - lr_opt[opt]) * (b - 1.5)
        depth = d + 1
        v += 0.06 * np.log(depth) - 0.015 * depth
        v += 0.02 * drop[dr] * depth - 0.12 * drop[dr] ** 2 * 3
        v += act_eff[a] + (0.02 if (a == 2 and depth >= 4) else 0.0)
        T[idx] = v + noise[idx]
    space = search.Space({"opt": search.Choice(["sgd", "adam", "rmsprop"]),
                          "momentum": search.Choice(mom, when={"opt": "sgd"}),
                          "beta1": search.Choice(beta1, when={"opt": "adam"}),
                          "lr": search.Choice(lrs), "batch": search.Choice(batch), "depth": search.Int(1, 6),
                          "dropout": search.Choice(drop), "act": search.Choice(acts)})

    def f(c: dict) -> float:
        s = {"sgd": lambda: mom.index(c["momentum"]), "adam": lambda: 4 + beta1.index(c["beta1"]),
             "rmsprop": lambda: 9}[c["opt"]]()
        return float(T[s, lrs.index(c["lr"]), batch.index(c["batch"]), c["depth"] - 1, drop.index(c["dropout"]),
                       acts.index(c["act"])])

    return space, f


def table(name: str):
    if name == "gnn":
        return gnn_table()
    if name == "review-a":
        return review_a()
    if name == "review-b":
        return review_b()
    kind, _, k = name.rpartition("-")
    if kind in ("cond-small", "cond-large") and k.isdigit():
        return cond_table(kind.split("-")[1], int(k))
    raise SystemExit(f"--table {name}: one of gnn, cond-small-K, cond-large-K, review-a, review-b")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True)
    ap.add_argument("--strategies", default="default,tpe,evolution,random")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--options", default="{}", help="the default strategy's options as JSON")
    args = ap.parse_args()
    space, f = table(args.table)
    optimum = max(f(c) for c in space.enumerate())
    opts = json.loads(args.options)
    budgets = [b for b in BUDGETS if b <= args.budget]
    print(f"{args.table}: {space.size():,} configurations, optimum {optimum:.4f}; regret (optimum - mean "
          f"best-so-far) ± standard error over {args.seeds} seeds")
    print("strategy".ljust(11) + "".join(f"{b:>18}" for b in budgets))
    for name in args.strategies.split(","):
        t0 = time.time()
        reg = np.zeros((args.seeds, len(budgets)))
        for s in range(args.seeds):
            r = search.run(space, f, strategy=name, budget=args.budget, seed=s, progress=False,
                           strategy_options=(opts or None) if name == "default" else None)
            best = r.best_so_far()
            best += [best[-1]] * (args.budget - len(best))
            reg[s] = [optimum - best[b - 1] for b in budgets]
        cells = "".join(f"{m:>10.4f} ± {e:.4f}" for m, e in zip(reg.mean(0), reg.std(0) / math.sqrt(args.seeds)))
        print(name.ljust(11) + cells + f"   ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
