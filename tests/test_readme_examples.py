"""The README's Python examples run as written (those that need no model file), and do what it says."""

from __future__ import annotations

import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks() -> list[str]:
    text = open(README, encoding="utf-8").read()
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "model.onnx" not in b]


def test_readme_examples_run_and_work(tmp_path, monkeypatch):
    # The examples write files (a search checkpoint): into a scratch folder, not the checkout; they read
    # examples/... as a user in the repository root would.
    (tmp_path / "examples").symlink_to(os.path.join(os.path.dirname(README), "examples"))
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert len(blocks) >= 3
    env: dict = {}
    for b in blocks:
        exec(compile(b, README, "exec"), env)  # noqa: S102 -- our own documentation
    from graphmill.backends import onnxruntime as ortb
    from graphmill.ir.builder import GraphBuilder
    from graphmill.passes import run_passes

    # the user-written fusion: Mul(x, 2) becomes Add(x, x), same numbers under ONNX Runtime
    b = GraphBuilder("g")
    x = b.input("x", "float32", [3])
    b.output(b.Mul(np.float32(2.0), x), "y")
    g = b.build()
    before = g.copy()
    res = run_passes(g, "my-fusions,count-convs", verify_each=True)
    assert [n.op_type for n in g.nodes] == ["Add"]
    assert res.records[1].stats == {"convs": 0}
    assert ortb.compare(before, g, rtol=0, atol=0).ok
