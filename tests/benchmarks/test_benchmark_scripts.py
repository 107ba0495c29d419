"""The benchmark scripts still run: the README's tables come from them, and a script that no longer runs
leaves those tables unreproducible (bench_simulator.py called simulate_array_layer with a keyword that had
become an ``Arithmetic`` field, and crashed on every documented command; an outside check).

Reference: each script's own ``--help`` (exit 0), and for the simulator benchmark the cycles of
``simulate_layers`` on the same layers, which its totals line must print.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks")
SCRIPTS = sorted(f for f in os.listdir(BENCH) if f.endswith(".py")
                 and "argparse" in open(os.path.join(BENCH, f), encoding="utf-8").read())

HELP_ALL = """
import runpy, sys
sys.path.insert(0, {bench!r})
failed = []
for name in {scripts!r}:
    sys.argv = [name, "--help"]
    try:
        runpy.run_path(f"{bench}/{{name}}", run_name="__main__")
        failed.append(f"{{name}}: --help did not exit")
    except SystemExit as e:
        if e.code not in (0, None):
            failed.append(f"{{name}}: exit {{e.code}}")
    except BaseException as e:
        failed.append(f"{{name}}: {{type(e).__name__}}: {{e}}")
print("FAILED:" + "; ".join(failed) if failed else "ALL OK")
"""


def test_every_benchmark_script_imports_and_answers_help():
    assert "bench_simulator.py" in SCRIPTS and "bench_dynamo.py" in SCRIPTS and len(SCRIPTS) >= 15
    out = subprocess.run([sys.executable, "-c", HELP_ALL.format(bench=BENCH, scripts=SCRIPTS)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.stdout.strip().splitlines()[-1] == "ALL OK", (out.stdout[-3000:], out.stderr[-3000:])


def test_the_simulator_benchmark_runs_and_prints_simulate_layers_cycles():
    from graphmill.backends.simulator import load_accel, simulate_layers

    sys.path.insert(0, BENCH)
    try:
        import bench_simulator
    finally:
        sys.path.remove(BENCH)
    accel = os.path.join(ROOT, "examples", "accelerators", "scalesim-default.toml")
    expected = simulate_layers(bench_simulator.resnet50_layers()[0:2], load_accel(accel)).total_cycles
    out = subprocess.run([sys.executable, os.path.join(BENCH, "bench_simulator.py"), "--accel", accel,
                          "--no-scalesim", "--layers", "0:2", "--repeat", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{expected:,} cycles" in out.stdout.splitlines()[-1], out.stdout


def test_the_simulator_benchmark_runs_from_another_folder_without_accel(tmp_path):
    """The README's command gives no --accel: the default was relative to the working folder (an outside check)."""
    out = subprocess.run([sys.executable, os.path.join(BENCH, "bench_simulator.py"), "--no-scalesim", "--layers",
                          "0:1", "--repeat", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


def test_nahas_table_counts_no_win_for_a_pick_outside_the_constraints(capsys):
    """Reference: the script's definition (each method's result is its feasible design of highest reward). A
    joint pick over the latency limit was counted as more accurate than both baselines (an outside check)."""
    sys.path.insert(0, BENCH)
    try:
        import bench_nahas
    finally:
        sys.path.remove(BENCH)

    def pick(acc, feasible):
        return {"accuracy": acc, "latency_ms": 1.0, "area_mm2": 1.0, "energy_uj": 1.0, "feasible": feasible,
                "trainings": 3, "simulations": 3}

    def wins(joint, nn, accel) -> str:
        bench_nahas.table({"joint": [joint], "nn-then-accel": [nn], "accel-then-nn": [accel]},
                          {"area_mm2": 4.0, "latency_ms": 1.0}, budget=3, steps=10)
        return capsys.readouterr().out.split("joint more accurate than nn-then-accel and accel-then-nn in ")[1][:3]

    assert wins(pick(0.9, False), pick(0.5, True), pick(0.5, True)) == "0/1"  # the joint pick breaks a constraint
    assert wins(pick(0.9, True), pick(0.95, False), pick(0.5, True)) == "1/1"  # a baseline's does
    assert wins(pick(0.9, True), pick(0.5, True), pick(0.5, True)) == "1/1"
    assert wins(pick(0.9, True), pick(0.95, True), pick(0.5, True)) == "0/1"
