"""Search strategies on a tabular benchmark: best-so-far accuracy against evaluations, over >= 20 seeds.

The tabular benchmark (built once with ``--build``, cached in benchmarks/data/search_digits_mlp.json): every
architecture of a small MLP space (depth 1-3, per-layer width 16/32/64/128, activation relu/tanh/elu, learning
rate 0.003/0.01/0.03/0.1: 1008 architectures) trained briefly with torch on scikit-learn's digits (Adam, 15
epochs, batch 128, fixed seed) and scored by held-out accuracy. A search evaluation is a table lookup, so the
benchmark measures sample efficiency only. ``--table mlp3`` (benchmarks/data/search_digits_mlp3.json, built with
``--build --table mlp3``) is the same 1008 configurations with the accuracy averaged over torch seeds 0, 1, 2: on
one seed the accuracy moves in steps of 1/540 (the test images) and the best configurations differ by one or two
images, i.e. by training noise, as in public tabular benchmarks that average several training seeds.

Peers: Optuna's TPE (``tpe``) and plain regularized evolution with P = 20, S = 5 (``evolution``); also random
search and the REINFORCE / PPO controllers. Goal (issue 11): the default strategy at least as good as the best
peer at every budget from 25 to 200 and closing at least half of the best peer's remaining gap to the optimum at
200. Also measured: ask+tell overhead, and the throughput of 2 workers against 1 with 1-second evaluations
(local process pool and Ray).

    .venv/bin/python benchmarks/bench_search.py --build      # ~2-5 min on 2 cores, writes the table
    .venv/bin/python benchmarks/bench_search.py              # the comparison (a few minutes)
    .venv/bin/python benchmarks/bench_search.py --strategies default,evolution,tpe,random --skip-throughput
    .venv/bin/python benchmarks/bench_search.py --table synthetic --skip-overhead --skip-throughput  # 2nd table
    .venv/bin/python benchmarks/bench_search.py --table mlp3 --seeds 100 --strategies default,tpe \
        --reuse default,tpe --skip-overhead --skip-throughput
        # curves in search_curves_mlp3_100.json; --reuse extends a stored run of fewer seeds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, "data", "search_digits_mlp.json")
# the digits tables and the torch training seeds each configuration's accuracy is averaged over: "mlp" is the
# single-seed table; "mlp3" averages 3 seeds, because on one seed the top configurations differ by one or two of
# the 540 test images (steps of 1/540 = 0.00185), i.e. by training-seed and test-set noise
MLP_TABLES = {"mlp": (TABLE, (0,)), "mlp3": (os.path.join(HERE, "data", "search_digits_mlp3.json"), (0, 1, 2))}
sys.path.insert(0, HERE)

from graphmill import search  # noqa: E402
from graphmill.search import strategies  # noqa: E402
from graphmill.util.files import write_json  # noqa: E402

BUDGETS = (25, 50, 75, 100, 150, 200)


def mlp_space() -> search.Space:
    widths = [16, 32, 64, 128]
    return search.Space({
        "depth": search.Choice([1, 2, 3]),
        "w1": search.Choice(widths),
        "w2": search.Choice(widths, when={"depth": [2, 3]}),
        "w3": search.Choice(widths, when={"depth": 3}),
        "act": search.Choice(["relu", "tanh", "elu"]),
        "lr": search.Choice([0.003, 0.01, 0.03, 0.1]),
    })


def train(config: dict, seed: int = 0) -> float:
    """Held-out accuracy of the MLP ``config`` after a short training on digits, deterministic for a given torch
    ``seed`` (initialization and batch order; the train/test split does not depend on it)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    xtr, xte = torch.tensor(xtr, dtype=torch.float32), torch.tensor(xte, dtype=torch.float32)
    ytr, yte = torch.tensor(ytr), torch.tensor(yte)
    torch.manual_seed(seed)
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "elu": torch.nn.ELU}[config["act"]]
    layers, fan_in = [], 64
    for i in range(config["depth"]):
        w = config[f"w{i + 1}"]
        layers += [torch.nn.Linear(fan_in, w), act()]
        fan_in = w
    model = torch.nn.Sequential(*layers, torch.nn.Linear(fan_in, 10))
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    g = torch.Generator().manual_seed(seed)
    for _ in range(15):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float((model(xte).argmax(1) == yte).float().mean())


def build(table: str = "mlp") -> None:
    """Train every configuration of ``mlp_space`` once per seed of ``MLP_TABLES[table]`` (2 processes) and cache
    the mean accuracy (and, with more than one seed, each seed's) in the table's JSON file."""
    from multiprocessing import get_context

    path, seeds = MLP_TABLES[table]
    space = mlp_space()
    configs = list(space.enumerate())
    t0 = time.time()
    with get_context("spawn").Pool(2) as pool:
        flat = pool.starmap(train, [(c, s) for c in configs for s in seeds], chunksize=8)
    per_seed = np.array(flat).reshape(len(configs), len(seeds))
    data = {"space": space.to_json(), "what": "held-out accuracy on sklearn digits (30% split, random_state 0), "
            "Adam 15 epochs batch 128, " + (f"torch seed {seeds[0]}" if len(seeds) == 1 else
                                            f"mean over torch seeds {', '.join(map(str, seeds))}"),
            "table": [[c, round(float(a), 6)] for c, a in zip(configs, per_seed.mean(1))]}
    if len(seeds) > 1:
        data["seeds"] = list(seeds)
        data["per_seed"] = [[round(float(a), 6) for a in row] for row in per_seed]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, data, indent=None)
    print(f"built {len(configs)} architectures x {len(seeds)} seeds in {time.time() - t0:.0f} s -> {path}")


def synthetic_table() -> tuple[search.Space, dict]:
    """A second, synthetic table, to check that the default is not tuned to the MLP table alone: 3072
    configurations (above the default's enumerate_limit, so its mutant-candidate path runs), reward = seeded
    random main effects of three categorical parameters + a seeded 4x4 interaction of two of them + smooth
    peaks in two numeric choices + 0.5 x a deterministic per-configuration hash in [-0.5, 0.5) ("noise")."""
    import hashlib

    cats = ["x", "y", "z", "w"]
    space = search.Space({"a": search.Choice(cats), "b": search.Choice(cats), "c": search.Choice(["p", "q", "r", "s"]),
                          "d": search.Choice([1, 2, 4, 8]), "e": search.Choice([0.001, 0.01, 0.1, 1.0]),
                          "f": search.Choice([16, 32, 64])})
    r = np.random.default_rng(123)
    eff = {k: r.normal(0, 1, 4) for k in "abc"}
    inter = r.normal(0, 1, (4, 4))
    table = {}
    for c in space.enumerate():
        ia, ib, ic = cats.index(c["a"]), cats.index(c["b"]), ["p", "q", "r", "s"].index(c["c"])
        d, e, f = [1, 2, 4, 8].index(c["d"]), [0.001, 0.01, 0.1, 1.0].index(c["e"]), [16, 32, 64].index(c["f"])
        v = (eff["a"][ia] + eff["b"][ib] + 0.7 * eff["c"][ic] + inter[ia, ib] - 0.6 * (d - 2.2) ** 2
             - 0.8 * (e - 1.6) ** 2 + 0.3 * f * (d > 1))
        key = space.key(c)
        h = int(hashlib.md5(key.encode()).hexdigest()[:8], 16) / 2**32
        table[key] = float(v + 0.5 * (h - 0.5))
    return space, table


CELL_OPS = ["none", "skip", "conv1x1", "conv3x3", "avgpool"]
CELL_EDGES = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]


def cell_table() -> tuple[search.Space, dict]:
    """A third, differently shaped table: a NAS-Bench-201-like cell (4 nodes, 6 edges, 5 ops each: 15,625
    configurations, far above the default's enumerate_limit) scored by a generated surrogate with the structure
    such benchmarks have: a cell whose output is not connected to its input scores 0.1 (chance); otherwise the
    output node's "capacity" (each edge adds 1.0 for conv3x3, 0.6 for conv1x1, 0.15 for avgpool, 0 for skip to
    its source node's; a node takes its best input plus a quarter of the others) gives a saturating accuracy,
    too much capacity without a skip path from input to output is penalized (trainability: an interaction of
    all edges), plus seeded pairwise interactions of three edge pairs and a small per-configuration hash noise."""
    import hashlib

    space = search.Space({f"e{i}": search.Choice(CELL_OPS) for i in range(len(CELL_EDGES))})
    gain = {"none": None, "skip": 0.0, "conv1x1": 0.6, "conv3x3": 1.0, "avgpool": 0.15}
    r = np.random.default_rng(201)
    pairs = [(0, 5), (1, 4), (2, 3)]
    inter = {p: r.normal(0, 0.006, (5, 5)) for p in pairs}
    table = {}
    for c in space.enumerate():
        ops = [c[f"e{i}"] for i in range(len(CELL_EDGES))]
        cap: dict[int, float | None] = {0: 0.0}
        skip_path = {0: True}
        for j in (1, 2, 3):
            ins = [(cap[a] + gain[op], skip_path[a] and op == "skip") for (a, b), op in zip(CELL_EDGES, ops)
                   if b == j and gain[op] is not None and cap[a] is not None]
            cap[j] = max(v for v, _ in ins) + 0.25 * (sum(v for v, _ in ins) - max(v for v, _ in ins)) if ins else None
            skip_path[j] = any(s for _, s in ins)
        if cap[3] is None:
            v = 0.1
        else:
            v = 0.72 + 0.22 * (1 - math.exp(-0.55 * cap[3])) - (0.0 if skip_path[3] else 0.012 * max(0.0, cap[3] - 2.5) ** 2)
            v += sum(inter[(a, b)][CELL_OPS.index(ops[a]), CELL_OPS.index(ops[b])] for a, b in pairs)
        h = int(hashlib.md5(space.key(c).encode()).hexdigest()[:8], 16) / 2**32
        table[space.key(c)] = float(v + 0.004 * (h - 0.5))
    return space, table


_LOOKUP: dict = {}


def load_table(path: str = TABLE) -> tuple[search.Space, dict]:
    with open(path) as f:
        data = json.load(f)
    space = search.Space.from_json(data["space"])
    table = {space.key(c): a for c, a in data["table"]}
    return space, table


def lookup(config: dict) -> float:
    if not _LOOKUP:
        space, table = load_table()
        _LOOKUP.update(table=table, space=space)
    return _LOOKUP["table"][_LOOKUP["space"].key(config)]


def curves_cache_path(table: str, seeds: int = 20) -> str:
    """The curves file of a run: search_curves_<table>.json at the usual 20 seeds, _<seeds>.json otherwise."""
    return os.path.join(HERE, "data", f"search_curves_{table}.json" if seeds == 20 else
                        f"search_curves_{table}_{seeds}.json")


def cached_curves(table: str, name: str, seeds: int, budget: int) -> tuple[np.ndarray, str, dict] | None:
    """The longest stored run of ``name`` on ``table`` with this budget, cut to its first ``seeds`` seeds, its
    file and its stored entry (None if none). Seed s's curve does not depend on how many seeds a run has (every seed is its own
    ``search.run(seed=s)``), so a 100-seed run's first 20 rows are the 20-seed run, and a 20-seed run is the
    start of a 100-seed one."""
    import glob

    best = None
    paths = [curves_cache_path(table, seeds), curves_cache_path(table)] + sorted(
        p for p in glob.glob(os.path.join(HERE, "data", f"search_curves_{table}_*.json"))
        if p[:-5].rsplit("_", 1)[1].isdigit())  # search_curves_<table>_<seeds>.json, not another table's
    for path in filter(os.path.exists, dict.fromkeys(paths)):  # its own file first
        with open(path) as f:
            entry = json.load(f).get(name)
        if entry and entry["budget"] == budget and (best is None or min(entry["seeds"], seeds) > len(best[0])):
            best = (np.array(entry["curves"][:seeds], dtype=float), path, entry)
    return best


def store_curves(table: str, name: str, c: np.ndarray, seconds: float, read_from: str | None = None) -> None:
    path = curves_cache_path(table, c.shape[0])
    data = {}
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
    data[name] = {"seeds": c.shape[0], "budget": c.shape[1], "seconds": round(seconds, 1),
                  "curves": [[round(float(v), 6) for v in row] for row in c]}
    if read_from:  # copied from another run's first seeds (or extended from them), not all rerun
        data[name]["read_from"] = os.path.basename(read_from)
    write_json(path, data, indent=None)


def curves(name: str, seeds: int, budget: int, first: int = 0) -> np.ndarray:
    """Best-so-far curves of seeds ``first`` .. ``seeds - 1``, one row per seed."""
    out = np.zeros((seeds - first, budget))
    for s in range(first, seeds):
        r = search.run(_LOOKUP["space"], lookup, strategy=name, budget=budget, seed=s, progress=False)
        b = r.best_so_far()
        b += [b[-1]] * (budget - len(b))
        out[s - first] = b
    return out


def overhead(name: str, history: int, asks: int = 50) -> tuple[float, float]:
    """Median and mean ms of one ask+tell after ``history`` results told (a 10-parameter space). The mean
    includes the default strategy's model refits (every ``refit_every`` results), which the median leaves out."""
    space = search.Space({**{f"op{i}": search.Choice(["a", "b", "c", "d"]) for i in range(7)},
                          "k": search.Choice([3, 5, 7]), "depth": search.Int(1, 8),
                          "lr": search.Float(1e-4, 1e-1, log=True)})

    def f(c):
        return sum(ord(c[f"op{i}"]) * (i + 1) for i in range(7)) / 100 + c["depth"] * 0.1 - abs(math.log10(c["lr"]) + 2)

    s = strategies.get(name, space, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(history):  # as the runner would: ask, then tell
        c = s.ask() if name != "default" or _ < 50 else space.sample(rng)
        s.tell(c, f(c))
    ts = []
    for _ in range(asks):
        t0 = time.perf_counter()
        c = s.ask()
        s.tell(c, f(c))
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts)), 1e3 * float(np.mean(ts))


def throughput(executor: str, workers: int, n: int) -> dict:
    """One run of ``n`` 1-second evaluations: total wall seconds from calling ``search.run`` to its return (Ray's
    or the pool's start-up included), steady evaluations/s from the first result to the last, and the start-up
    (seconds to the first result, less the 1-second evaluation).

    ``executor="ray-cluster"`` is Ray on a cluster that is already up (what ``--ray-address`` gives): ``ray.init``
    runs before the clock starts and ``ray.shutdown`` after it stops, so the run pays its actors' start but not
    the start of Ray's own daemons, which a cluster pays once for all its runs."""
    import bench_search_evals

    space = search.Space({"x": search.Int(0, 10_000)})
    stamps = []
    cluster = executor == "ray-cluster"
    if cluster:
        import ray

        # the workers import bench_search_evals by name: give them this process's import path, as RayExecutor
        # does when it starts Ray itself
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        t0 = time.perf_counter()
        search.run(space, bench_search_evals.one_second, strategy="random", budget=n, seed=0, workers=workers,
                   executor="ray" if cluster else executor, progress=lambda s: stamps.append(time.perf_counter()))
        total = time.perf_counter() - t0
    finally:
        if cluster:
            ray.shutdown()
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return {"total_s": total, "steady_per_s": steady, "startup_s": stamps[0] - t0 - 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", action="store_true", help="(re)build the tabular benchmark")
    ap.add_argument("--seeds", type=int, default=20,
                    help="seeds 0..N-1 per strategy; curves go to search_curves_<table>.json at 20 seeds, "
                         "search_curves_<table>_<N>.json otherwise")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--strategies", default="default,evolution,tpe,random,reinforce,ppo")
    ap.add_argument("--table", choices=("mlp", "mlp3", "synthetic", "cell"), default="mlp",
                    help="mlp: the cached digits table (one training seed); mlp3: the same configurations with the "
                         "accuracy averaged over 3 training seeds (--build --table mlp3 builds it); "
                         "synthetic: a second, generated table (see synthetic_table); "
                         "cell: a NAS-Bench-201-like cell space with a generated surrogate (see cell_table)")
    ap.add_argument("--reuse", default="",
                    help="comma-separated strategies whose curves are read from benchmarks/data/"
                         "search_curves_<table>[_<seeds>].json (written by every run) instead of rerun, when a file "
                         "holds them for the same budget: the first --seeds seeds of a longer run, or a shorter run "
                         "extended with the seeds it lacks (e.g. reinforce,ppo: ~18 min of CPU at 20 seeds)")
    ap.add_argument("--skip-curves", action="store_true", help="only the overhead and throughput measurements")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--throughput-executors", default="local,ray,ray-cluster",
                    help="executors of the throughput runs: local, ray (ray.init inside the run, timed), ray-cluster "
                         "(Ray already up, as with --ray-address; its start not timed)")
    ap.add_argument("--throughput-evals", default="16,60",
                    help="numbers of 1-second evaluations of the throughput runs (default 16,60)")
    ap.add_argument("--json", help="write all numbers to this file")
    args = ap.parse_args()
    if args.build or (args.table in MLP_TABLES and not os.path.exists(MLP_TABLES[args.table][0])):
        build(args.table if args.table in MLP_TABLES else "mlp")
        if args.build:
            return
    if args.table in MLP_TABLES:
        space, table = load_table(MLP_TABLES[args.table][0])
    else:
        space, table = {"synthetic": synthetic_table, "cell": cell_table}[args.table]()
    _LOOKUP.update(table=table, space=space)
    optimum = max(table.values())
    accs = np.array(sorted(table.values()))
    print(f"table ({args.table}): {len(table)} configurations, optimum {optimum:.4f}, median {np.median(accs):.4f}, "
          f"top-1% {accs[int(0.99 * len(accs))]:.4f}")
    report: dict = {"optimum": optimum, "size": len(table), "budgets": list(BUDGETS), "strategies": {}}
    names = [] if args.skip_curves else args.strategies.split(",")
    res = {}
    reuse = set(filter(None, args.reuse.split(",")))
    for name in names:
        t0 = time.time()
        cached = cached_curves(args.table, name, args.seeds, args.budget) if name in reuse else None
        if cached is None:
            c = curves(name, args.seeds, args.budget)
            store_curves(args.table, name, c, time.time() - t0)
            how = "run"
        elif len(cached[0]) == args.seeds:
            c, how = cached[0], "read from " + os.path.relpath(cached[1])
            if cached[1] != curves_cache_path(args.table, args.seeds):
                store_curves(args.table, name, c, 0.0, read_from=cached[1])
        else:  # extend a shorter stored run with the seeds it lacks
            k = len(cached[0])
            c = np.vstack([cached[0], curves(name, args.seeds, args.budget, first=k)])
            before = cached[2]  # the stored seeds' seconds plus the new ones': the whole run's
            if before.get("read_from"):  # itself a copy: its seconds are not known here
                note, earlier = "; seconds: the new seeds only", 0.0
            else:
                note, earlier = "", before["seconds"] * k / before["seeds"]
            store_curves(args.table, name, c, earlier + time.time() - t0,
                         read_from=f"{os.path.basename(cached[1])} (seeds 0-{k - 1}; the rest run{note})")
            how = f"seeds 0-{k - 1} read from {os.path.relpath(cached[1])}, {k}-{args.seeds - 1} run"
        c = np.round(c, 6)  # as store_curves keeps them: a fresh run and one read back compare alike
        res[name] = c
        report["strategies"][name] = {"mean": c.mean(0).tolist(), "std": c.std(0).tolist(),
                                      "seconds": time.time() - t0}
        print(f"  {name}: {args.seeds} seeds x {args.budget} evaluations ({how}) in {time.time() - t0:.0f} s",
              flush=True)
    budgets = [b for b in BUDGETS if b <= args.budget]
    print(f"\nbest-so-far reward ({args.table} table), mean ± std over {args.seeds} seeds (optimum {optimum:.4f})")
    print("strategy".ljust(11) + "".join(f"{b:>17}" for b in budgets))
    for name in names:
        c = res[name]
        print(name.ljust(11) + "".join(f"{c[:, b - 1].mean():>10.4f} ± {c[:, b - 1].std():.4f}" for b in budgets))
    peers = [p for p in ("tpe", "evolution") if p in res]
    if "default" in res and peers:
        print("\nregret (optimum - mean best-so-far) ± its standard error (std / sqrt(seeds)); ratio = default / "
              "best peer (<= 1 is as good or better); diff = default - best peer ± sqrt(se1² + se2²)")
        print("budget".ljust(8) + "default".rjust(17) + "".join(p.rjust(17) for p in peers) + "ratio".rjust(8)
              + "  goal met" + "diff".rjust(20))
        def regret(name: str, b: int) -> float:
            # every seed at the optimum is 0 (float sums leave +-1e-16); the curves, fresh or read back, are all
            # rounded to 6 decimals as stored, and so is the optimum
            r = round(optimum, 6) - float(res[name][:, b - 1].mean())
            return 0.0 if abs(r) < 1e-9 else r

        ok_all = True
        for b in budgets:
            rd = regret("default", b)
            rp = {p: regret(p, b) for p in peers}
            best_peer = min(rp.values())
            ratio = rd / best_peer if best_peer > 0 else (1.0 if rd <= 0 else math.inf)
            met = rd <= best_peer + 1e-12
            ok_all &= met
            se = {p: res[p][:, b - 1].std() / math.sqrt(len(res[p])) for p in ["default", *peers]}
            bp = min(rp, key=rp.get)
            print(f"{b:<8}{rd:>10.4f} ± {se['default']:.4f}"
                  + "".join(f"{rp[p]:>10.4f} ± {se[p]:.4f}" for p in peers)
                  + f"{ratio:>8.2f}  " + ("yes" if met else "NO").ljust(8)
                  + f"{rd - rp[bp]:>+10.4f} ± {math.hypot(se['default'], se[bp]):.4f}")
            report.setdefault("regret", {})[b] = {"default": rd, **rp, "ratio": ratio,
                                                  "stderr": se}
        b = budgets[-1]
        rd = regret("default", b)
        best_peer = min(regret(p, b) for p in peers)
        # a best peer already at the optimum leaves no gap: met when the default is there too
        closed = 1 - rd / best_peer if best_peer > 0 else (1.0 if rd <= 0 else -math.inf)
        how_closed = (f"closes {closed:.0%} of the best peer's remaining gap to the optimum" if best_peer > 0 else
                      "is at the optimum in every seed, and so is the best peer (no gap left)" if closed >= 0.5 else
                      "is not at the optimum in every seed, the best peer is (no gap left to close)")
        print(f"at {b}: the default {how_closed} "
              f"(goal >= 50%): {'yes' if closed >= 0.5 else 'NO'}; as good as the best peer at every budget: "
              f"{'yes' if ok_all else 'NO'}")
        report["gap_closed"] = closed
    if not args.skip_overhead:
        print("\nask+tell overhead (ms over 50 asks, 10-parameter space; the goal read on the median)")
        ov, ov_mean = {}, {}
        for name, h, goal in (("random", 10_000, 1.0), ("evolution", 10_000, 1.0), ("default", 1_000, 50.0)):
            ov[name], ov_mean[name] = overhead(name, h)
            print(f"  {name:<10} history {h:>6}: median {ov[name]:8.3f}, mean {ov_mean[name]:8.3f} "
                  f"(goal < {goal:g} ms) {'yes' if ov[name] < goal else 'NO'}")
        report["overhead_ms"] = ov
        report["overhead_mean_ms"] = ov_mean
    if not args.skip_throughput:
        ns = [int(v) for v in args.throughput_evals.split(",")]
        print("\nthroughput with 1-second evaluations: 2 workers against 1; 'incl. start-up' = total wall time of "
              "search.run (ray.init or the pool's spawn included; not ray-cluster's ray.init), "
              "'steady' = evaluations/s from the first result "
              "to the last (goal >= 1.8x)")
        print("executor  evals   1 worker s   2 workers s   incl. start-up   start-up 1w/2w s   steady 1w/2w evals/s"
              "   steady")
        tp = {}
        for ex in args.throughput_executors.split(","):
            for n in ns:
                try:
                    one = throughput(ex, 1, n)
                    two = throughput(ex, 2, n)
                except Exception as e:  # ray missing or failing to start: say so
                    print(f"  {ex}: not measured ({type(e).__name__}: {e})")
                    break
                total, steady = one["total_s"] / two["total_s"], two["steady_per_s"] / one["steady_per_s"]
                tp.setdefault(ex, {})[n] = {"one": one, "two": two, "speedup_total": total, "speedup_steady": steady}
                print(f"{ex:<8}{n:>6}{one['total_s']:>13.1f}{two['total_s']:>14.1f}{total:>16.2f}x"
                      f"{one['startup_s']:>11.1f} / {two['startup_s']:.1f}{one['steady_per_s']:>15.2f} / "
                      f"{two['steady_per_s']:.2f}{steady:>9.2f}x", flush=True)
        report["throughput"] = tp
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
