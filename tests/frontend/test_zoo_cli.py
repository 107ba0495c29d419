"""`graphmill zoo` on the command line: --list, writing a scaled model, and bad input (exit 2, one line,
nothing written). Reference: the CLI contract in ARCHITECTURE.md; the written file is checked by
loading it back and running it under ONNX Runtime."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.frontend import zoo
from tests.support.cli_process import run_graphmill


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_graphmill("zoo", *args, timeout=120)


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
    (["resnet18", "--list"], "--list lists every model and takes no name ('resnet18' given)"),  # it was ignored
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, words):
    out = tmp_path / "m.onnx"
    r = run_cli(*args, "-o", str(out))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["resnet18", "--depth", "1000"], ["resnet18", "--width", "1e9"]])
def test_multipliers_past_the_parameter_limit_are_refused_before_building(tmp_path, args):
    """Before: --depth 1000 allocated weights until the out-of-memory killer ended it (24 GB, exit 137); --width 1e9
    failed at numpy's allocation. Reference: resnet18's 11,699,112 parameters (torchvision's count plus BN
    statistics) times depth x width^2, against GRAPHMILL_MAX_ELEMENTS (2^31)."""
    out = tmp_path / "m.onnx"
    r = run_cli(*args, "-o", str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "parameters (11,699,112 unscaled, times depth x width^2 = " in r.stderr, r.stderr
    assert "more than the limit of 2,147,483,648 (GRAPHMILL_MAX_ELEMENTS)" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0"])
def test_model_meta_records_the_width_multiplier_given(name):
    """Before: resnet's classifier weight reused the name of the width multiplier, so meta["model"]["width"] (zoo
    --json, and what compound-scale multiplies) was the 1000 x C weight matrix. Reference: the argument itself."""
    g = zoo.build(name, width=0.5, resolution=32)
    assert g.meta["model"]["width"] == 0.5 and isinstance(g.meta["model"]["width"], float)


def test_parameter_limit_is_the_documented_knob(monkeypatch):
    """The same check at a lowered limit, without building anything large: 11.7M x (2 x 3^2) = 211M > 10^8."""
    from graphmill.ir.ops.infer import ModelTooLargeError

    monkeypatch.setenv("GRAPHMILL_MAX_ELEMENTS", str(10**8))
    with pytest.raises(ModelTooLargeError, match=r"about 2\.11e\+08 parameters"):
        zoo.build("resnet18", width=3.0, depth=2.0)
    assert zoo.build("resnet18", width=2.0, depth=1.0) is not None  # growth 4: not checked, built


@pytest.mark.parametrize("spelling,name", [
    ("efficientnet-b0", "efficientnet_b0"), ("resnet-50", "resnet50"), ("mobilenet-v2", "mobilenet_v2"),
    ("vit-b-16", "vit_b_16"), ("ResNet_101", "resnet101"), ("bert-base", "bert_base"), ("mnasnet-a1", "mnasnet_a1"),
])
def test_names_accept_dash_and_underscore_alike(spelling, name):
    """Papers write ResNet-50 and EfficientNet-B0, torchvision resnet50 and efficientnet_b0: all name one model."""
    assert zoo.resolve_name(spelling) == name


@pytest.mark.parametrize("model,resolution,size,minimum", [
    ("resnet18", "0.01", 2, 32),          # 224 * 0.01 -> a 2x2 input, below the 32 the five stride-2 stages need
    ("efficientnet-b0", "31", 31, 32),
    ("mobilenet_v2", "0.1", 22, 32),
    ("vit_b_16", "0.01", 0, 16),          # not one 16x16 patch
])
def test_too_small_resolution_is_refused_naming_the_minimum(tmp_path, model, resolution, size, minimum):
    out = tmp_path / "m.onnx"
    r = run_cli(model, "--resolution", resolution, "-o", str(out))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert f"{size}x{size} input" in lines[0] and f"minimum is {minimum}x{minimum}" in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []


def test_readme_zoo_list_is_what_zoo_list_prints():
    """The README's block under `graphmill zoo --list` is the command's output, line for line."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    m = re.search(r"<!-- zoo-list -->\n```\n(.*?)```", readme, re.S)
    assert m, "README.md lacks the <!-- zoo-list --> block"
    assert m.group(1).splitlines() == run_cli("--list").stdout.splitlines()
