"""A model whose input has a dimension of size 0 (valid ONNX: an empty tensor) is refused in one line by the
commands that cost its ops. Found by a walk-through: `simulate`/`place` said "Conv node 'Conv_0': repeat must be
a positive integer, got 0", `partition` "has a fixed batch of 0; batch=1 cannot change it". Reference: the
message written out by hand; exit 2, nothing written."""
from __future__ import annotations

import os

import onnx
import pytest

import graphmill
from graphmill.cli import main
from graphmill.frontend import zoo

EDGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples",
                    "accelerators", "edge.toml")


@pytest.fixture
def empty_batch(tmp_path):
    path = str(tmp_path / "b0.onnx")
    graphmill.save(zoo.build("resnet18", width=0.25, resolution=32, batch=1), path)
    m = onnx.load(path)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    onnx.save(m, path)
    return path


@pytest.mark.parametrize("argv, verb", [
    (["simulate", "{m}", "--accel", EDGE], "simulate"),
    (["place", "{m}", "--devices", "2", "-o", "{out}"], "place"),
    (["partition", "{m}", "--stages", "2", "-o", "{out}"], "partition"),
])
def test_an_empty_input_is_refused_by_name(empty_batch, tmp_path, capsys, argv, verb):
    out = str(tmp_path / "out.onnx")
    assert main([a.format(m=empty_batch, out=out) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("input 'input' has shape [0,3,32,32], a dimension of size 0 (an empty tensor): "
                              f"nothing to {verb}") in err[0], err
    assert not os.path.exists(out)


def test_a_zero_dim_given_to_simulate_is_refused_by_name(tmp_path, capsys):
    """`simulate --dim N=0` bound the batch to 0 and failed on a Conv ("repeat must be a positive integer"). The
    same words as `place --dim N=0`."""
    path = str(tmp_path / "m.onnx")
    graphmill.save(zoo.build("resnet18", width=0.25, resolution=32), path)
    assert main(["simulate", path, "--accel", EDGE, "--dim", "N=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dim N=0: a size to simulate at must be >= 1" in err[0], err
