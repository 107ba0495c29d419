"""`graphmill scale-search`: results, plot and checkpoint files; a rerun resumes; bad input is one line.

Reference: the grid and the constraint alpha*beta^2*gamma^2 ~ 2 written out here (EfficientNet, section 3.3).
"""

from __future__ import annotations

import json
import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphmill.cli", *args], capture_output=True, text=True, timeout=300)


def test_search_writes_results_and_resumes(tmp_path):
    out = tmp_path / "s"
    r = run_cli("scale-search", "--out", str(out), "--stub", "--limit", "2")
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} == {"results.json", "accuracy_vs_cost.png", "checkpoint.json"}
    first = json.loads((out / "results.json").read_text())["candidates"]
    assert len(first) == 2
    for c in first:
        assert abs(c["alpha"] * c["beta"] ** 2 * c["gamma"] ** 2 - 2) <= 0.1 + 1e-9
        assert min(c["alpha"], c["beta"], c["gamma"]) >= 1
    r = run_cli("scale-search", "--out", str(out), "--stub", "--limit", "3")
    assert r.returncode == 0 and "resuming: 2 of 3" in r.stderr
    assert r.stderr.count("alpha=") == 1  # only the new candidate was evaluated
    assert len(json.loads((out / "results.json").read_text())["candidates"]) == 3


def test_search_bad_input(tmp_path):
    r = run_cli("scale-search", "--out", str(tmp_path / "s"), "--stub", "--step", "-1")
    assert r.returncode == 2 and "step=-1" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("scale-search", "--out", str(tmp_path / "s"), "--cost", "sim")
    assert r.returncode == 2 and "--accel" in r.stderr
