"""graphmill's simulator vs SCALE-Sim 3.0.0 on ResNet-50 (same topology, same config, USER bandwidth).

    python benchmarks/bench_simulator.py                  # all 54 conv/fc layers (SCALE-Sim: ~10 min+)
    python benchmarks/bench_simulator.py --layers 0:5     # a slice of the layers
    python benchmarks/bench_simulator.py --accel examples/accelerators/scalesim-default.toml
    python benchmarks/bench_simulator.py --budget 600     # stop running SCALE-Sim after 600 s
    python benchmarks/bench_simulator.py --scalesim-cache ss.json   # reuse / store SCALE-Sim's results
    python benchmarks/bench_simulator.py --scalesim-only --scalesim-cache ss.json   # fill the cache (nohup)

One table: layer, SCALE-Sim cycles, graphmill cycles (compute + stall), both wall times, ratio; then totals
over the layers both tools ran, and graphmill's time for the whole network in one call. SCALE-Sim runs with
its read-buffer prefetch stall counted once (--scalesim-as-is for the unpatched one, then graphmill uses
double_count_prefetch_stall=True so both count the same way).

graphmill's times: "first call" is the first simulation in this process (numba compiles its kernels, or
loads them from numba's on-disk cache when one exists; NUMBA_CACHE_DIR=<empty dir> measures a cold
compile); every other time is steady state (kernels already
compiled), the best of --repeat runs. Per-layer times simulate each layer on its own (no reuse between
layers); "whole network" is one ``simulate_layers`` call, which simulates repeated identical layers once.
With --scalesim-cache, SCALE-Sim rows read from the cache carry the wall time measured when they were
stored (the file records when and where).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from graphmill.backends.simulator import load_accel, simulate_layers
from graphmill.backends.simulator.engine import Arithmetic, simulate_array_layer
from graphmill.backends.simulator.lowering import ArrayLayer, lower
from graphmill.backends.simulator.memory import simulate_memory
from graphmill.frontend import zoo
from graphmill.frontend.onnx_shape_inference import infer_shapes


def resnet50_layers() -> list[ArrayLayer]:
    g = zoo.build("resnet50", batch=1)
    infer_shapes(g)
    return [p for _, ps in lower(g) for p in ps if isinstance(p, ArrayLayer)]


def _key(cfg, lay: ArrayLayer, as_is: bool) -> str:
    return json.dumps([cfg.rows, cfg.cols, cfg.dataflow, cfg.ifmap_words, cfg.filter_words, cfg.ofmap_words,
                       cfg.ifmap_bw_words, cfg.filter_bw_words, cfg.ofmap_bw_words, lay.H, lay.W, lay.R, lay.S,
                       lay.C, lay.N, lay.stride_h, lay.stride_w, lay.repeat, as_is])


def _load_cache(path):
    if path and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def _store_cache(path, cache):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cache, f, indent=1)
    os.replace(tmp, path)


def _scalesim(cfg, lay, as_is, cache, cache_path):
    """(total_cycles, wall_s, from_cache) for one layer."""
    k = _key(cfg, lay, as_is)
    if k in cache:
        e = cache[k]
        return e["total_cycles"], e["wall_s"], True
    from graphmill.backends.simulator.scalesim_ref import run_scalesim

    s = run_scalesim(cfg, [lay], prefetch_stall_once=not as_is)[0]
    if cache_path:
        cache[k] = {"layer": lay.name, "shape": lay.shape_text(), "total_cycles": s.total_cycles,
                    "compute_cycles": s.compute_cycles, "wall_s": s.wall_s,
                    "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(),
                    "cpus": os.cpu_count()}
        _store_cache(cache_path, cache)
    return s.total_cycles, s.wall_s, False


def _time_graphmill(lay, cfg, bug, repeat):
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        g = simulate_array_layer(lay, cfg, Arithmetic.of(double_count_prefetch_stall=bug))
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return g, best


# beside the script, not the working folder: the documented command has no --accel (it failed outside the repository)
DEFAULT_ACCEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "accelerators",
                             "scalesim-default.toml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accel", default=DEFAULT_ACCEL,
                    help="accelerator TOML (default: the repository's examples/accelerators/scalesim-default.toml)")
    ap.add_argument("--layers", default=":", help="python slice of the layer list, e.g. 0:5")
    ap.add_argument("--scalesim-as-is", action="store_true", help="run SCALE-Sim unpatched (prefetch stall counted twice)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of SCALE-Sim wall time; later layers are not run with SCALE-Sim")
    ap.add_argument("--scalesim-cache", default=None, help="JSON file of SCALE-Sim results to reuse and extend")
    ap.add_argument("--scalesim-only", action="store_true", help="only run SCALE-Sim (to fill --scalesim-cache)")
    ap.add_argument("--no-scalesim", action="store_true", help="only graphmill (and cached SCALE-Sim rows)")
    ap.add_argument("--repeat", type=int, default=3, help="graphmill timings: best of this many runs")
    args = ap.parse_args()
    cfg = load_accel(args.accel)
    layers = resnet50_layers()
    a, _, b = args.layers.partition(":")
    layers = layers[int(a) if a else None: int(b) if b else None]
    bug = args.scalesim_as_is
    cache = _load_cache(args.scalesim_cache)
    print(f"accelerator {args.accel}: {cfg.rows}x{cfg.cols} {cfg.dataflow}, buffers {cfg.ifmap_kb:g}/"
          f"{cfg.filter_kb:g}/{cfg.ofmap_kb:g} KiB, bandwidth {cfg.ifmap_bw_words}/{cfg.filter_bw_words}/"
          f"{cfg.ofmap_bw_words} words/cycle; {len(layers)} layers; {os.cpu_count()} cpus")
    if args.scalesim_only:
        spent = 0.0
        for lay in layers:
            if args.budget is not None and spent >= args.budget:
                print("budget spent")
                break
            cyc, ws, cached = _scalesim(cfg, lay, bug, cache, args.scalesim_cache)
            spent += 0 if cached else ws
            print(f"{lay.name:<10} {lay.shape_text():<22} {cyc:>12,} {ws:>10.2f}s{' (cached)' if cached else ''}",
                  flush=True)
        return

    t0 = time.perf_counter()
    warm = ArrayLayer("warm", "Conv", 6, 6, 3, 3, 2, 3)
    simulate_layers([warm], cfg, double_count_prefetch_stall=bug)
    for words in (8, 10 ** 6):  # both paths of the kernel: read buffers that can miss, and that cannot
        simulate_memory(warm, cfg.rows, cfg.cols, cfg.dataflow, words, words, max(words, 2), 2, 2, 2,
                        double_count_prefetch_stall=bug)
    first = time.perf_counter() - t0
    cache_dir = os.environ.get("NUMBA_CACHE_DIR", "next to the sources")
    print(f"graphmill first call (numba compiles its kernels, or loads them from its cache, {cache_dir}): "
          f"{first:.2f} s")
    print(f"{'layer':<10} {'shape':<22} {'SCALE-Sim cycles':>17} {'graphmill cycles':>17} {'SCALE-Sim s':>12} "
          f"{'graphmill s':>12} {'cycles ratio':>12} {'speedup':>9}")
    tot_s = tot_g = tot_g_all = 0.0
    cyc_s = cyc_g = 0
    spent = 0.0
    n_both = 0
    n_cached = 0
    for lay in layers:
        g, tg = _time_graphmill(lay, cfg, bug, args.repeat)
        tot_g_all += tg
        s_cyc = s_wall = None
        k = _key(cfg, lay, bug)
        if k in cache or not (args.no_scalesim or (args.budget is not None and spent >= args.budget)):
            s_cyc, s_wall, cached = _scalesim(cfg, lay, bug, cache, args.scalesim_cache)
            n_cached += cached
            spent += 0 if cached else s_wall
        if s_cyc is None:
            print(f"{lay.name:<10} {lay.shape_text():<22} {'-':>17} {g.total_cycles:>17,} {'-':>12} "
                  f"{tg:>12.4f} {'-':>12} {'-':>9}", flush=True)
            continue
        n_both += 1
        tot_s += s_wall
        tot_g += tg
        cyc_s += s_cyc
        cyc_g += g.total_cycles
        print(f"{lay.name:<10} {lay.shape_text():<22} {s_cyc:>17,} {g.total_cycles:>17,} {s_wall:>12.2f} "
              f"{tg:>12.4f} {g.total_cycles / s_cyc:>12.4f} {s_wall / tg:>8.0f}x", flush=True)
    if n_both:
        print(f"{'total':<10} {f'{n_both} layers':<22} {cyc_s:>17,} {cyc_g:>17,} {tot_s:>12.2f} {tot_g:>12.4f} "
              f"{cyc_g / cyc_s:>12.4f} {tot_s / tot_g:>8.0f}x")
    if n_cached:
        print(f"({n_cached} SCALE-Sim rows from {args.scalesim_cache})")
    best = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        rep = simulate_layers(layers, cfg, double_count_prefetch_stall=bug)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    print(f"graphmill, all {len(layers)} layers: per-layer sum {tot_g_all:.4f} s; one simulate_layers call "
          f"{best:.4f} s; {rep.total_cycles:,} cycles")
    if n_both == len(layers) and n_both:
        print(f"whole network: SCALE-Sim {tot_s:.1f} s / graphmill {tot_g_all:.4f} s (per layer) = "
              f"{tot_s / tot_g_all:.0f}x; / {best:.4f} s (one call) = {tot_s / best:.0f}x; "
              f"with the first call's compile: {tot_s / (best + first):.0f}x")


if __name__ == "__main__":
    main()
