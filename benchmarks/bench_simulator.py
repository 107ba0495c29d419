"""graphmill's simulator vs SCALE-Sim 3.0.0 on ResNet-50 (same topology, same config, USER bandwidth).

    python benchmarks/bench_simulator.py                  # all 53 conv/fc layers (SCALE-Sim: long)
    python benchmarks/bench_simulator.py --layers 0:5     # a slice of the layers
    python benchmarks/bench_simulator.py --accel examples/accelerators/scalesim-default.toml

One table: layer, SCALE-Sim cycles, graphmill cycles (compute + stall), both wall times, ratio. SCALE-Sim
runs with its issue #130 fixed (--scalesim-as-is for the unpatched one, then graphmill uses bug130=True
so both count the same way). graphmill's time excludes numba's one-time compilation (warmed first).
"""

from __future__ import annotations

import argparse
import time

from graphmill.backends.simulator import load_accel, simulate_layers
from graphmill.backends.simulator.engine import simulate_array_layer
from graphmill.backends.simulator.lowering import ArrayLayer, lower
from graphmill.backends.simulator.scalesim_ref import run_scalesim
from graphmill.frontend import zoo
from graphmill.frontend.onnx_shape_inference import infer_shapes


def resnet50_layers() -> list[ArrayLayer]:
    g = zoo.build("resnet50", batch=1)
    infer_shapes(g)
    return [p for _, ps in lower(g) for p in ps if isinstance(p, ArrayLayer)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accel", default="examples/accelerators/scalesim-default.toml")
    ap.add_argument("--layers", default=":", help="python slice of the layer list, e.g. 0:5")
    ap.add_argument("--scalesim-as-is", action="store_true", help="run SCALE-Sim unpatched (issue #130)")
    args = ap.parse_args()
    cfg = load_accel(args.accel)
    layers = resnet50_layers()
    a, _, b = args.layers.partition(":")
    layers = layers[int(a) if a else None: int(b) if b else None]
    bug = args.scalesim_as_is
    simulate_layers([ArrayLayer("warm", "Conv", 4, 4, 1, 1, 2, 2)], cfg)  # compile numba kernels
    print(f"{'layer':<10} {'shape':<22} {'SCALE-Sim cycles':>17} {'graphmill cycles':>17} {'SCALE-Sim s':>12} "
          f"{'graphmill s':>12} {'cycles ratio':>12} {'speedup':>9}")
    tot_s = tot_g = 0.0
    cyc_s = cyc_g = 0
    for lay in layers:
        t0 = time.perf_counter()
        g = simulate_array_layer(lay, cfg, bug130=bug)
        tg = time.perf_counter() - t0
        s = run_scalesim(cfg, [lay], fix_issue_130=not bug)[0]
        tot_s += s.wall_s
        tot_g += tg
        cyc_s += s.total_cycles
        cyc_g += g.total_cycles
        print(f"{lay.name:<10} {lay.shape_text():<22} {s.total_cycles:>17,} {g.total_cycles:>17,} {s.wall_s:>12.2f} "
              f"{tg:>12.4f} {g.total_cycles / s.total_cycles:>12.4f} {s.wall_s / tg:>8.0f}x", flush=True)
    print(f"{'total':<10} {'':<22} {cyc_s:>17,} {cyc_g:>17,} {tot_s:>12.2f} {tot_g:>12.4f} "
          f"{cyc_g / cyc_s:>12.4f} {tot_s / tot_g:>8.0f}x")


if __name__ == "__main__":
    main()
