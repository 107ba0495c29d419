"""``graphmill demo``: the report names only files that exist after the command (reference: the file system)."""

from __future__ import annotations

import json
import os

from tests.support.cli_process import run_graphmill


def test_json_names_files_only_when_they_are_kept(tmp_path):
    r = run_graphmill("demo", "--model", "resnet18", "--runs", "1", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["file"] is None and data["optimized_file"] is None  # the temporary folder is gone
    assert data["comparison"]["ok"]
    kept = run_graphmill("demo", "--model", "resnet18", "--runs", "1", "--json", "--out", str(tmp_path / "d"))
    assert kept.returncode == 0, kept.stderr
    data = json.loads(kept.stdout)
    assert os.path.isfile(data["file"]) and os.path.isfile(data["optimized_file"])
