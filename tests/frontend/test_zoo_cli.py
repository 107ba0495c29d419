"""`graphmill zoo` on the command line: --list, writing a scaled model, and bad input (exit 2, one line,
nothing written). Reference: the CLI contract in ARCHITECTURE.md; the written file is checked by
loading it back and running it under ONNX Runtime."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.frontend import zoo


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphmill.cli", "zoo", *args], capture_output=True, text=True,
                          timeout=120)


def test_list_names_every_model_with_a_description():
    r = run_cli("--list")
    assert r.returncode == 0
    lines = r.stdout.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == sorted(zoo.MODELS)
    assert all(len(ln.split(maxsplit=1)) == 2 for ln in lines)
    for name in ("efficientnet_b7", "mnasnet_a1", "mobilenet_v2", "bert_base", "vit_b_16", "resnet50"):
        assert name in zoo.MODELS


def test_writes_a_scaled_model(tmp_path):
    out = tmp_path / "m.onnx"
    r = run_cli("mobilenet_v2", "--width", "0.5", "--depth", "0.5", "--resolution", "96", "-o", str(out))
    assert r.returncode == 0, r.stderr
    g = graphmill.load(str(out))
    assert g.inputs[0].type.shape[1:] == (3, 96, 96)
    y = ortb.run(g, ortb.random_inputs(g, seed=0))["logits"]
    assert y.shape == (1, 1000) and np.isfinite(y).all()


@pytest.mark.parametrize("args,words", [
    (["efficientnet_b9"], "unknown zoo model"),
    (["efficientnet_b0", "--width", "0"], "width"),
    (["mnasnet_a1", "--depth", "-2"], "depth"),
    (["vit_b_16", "--resolution", "abc"], "resolution"),
    (["bert_base", "--width", "nan"], "width"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, words):
    out = tmp_path / "m.onnx"
    r = run_cli(*args, "-o", str(out))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
