"""What ``import graphmill`` offers: the README's top-level entry points (``graphmill.partition(graph,
stages=...)``, ``graphmill.place``, ``graphmill.search``) without importing torch.

References: the README's Python examples (Pipeline partitioning: ``graphmill.partition(graph, stages=...)``;
Search: ``from graphmill import search``), and graphmill.api, whose functions these are.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

import graphmill
from graphmill import api
from graphmill.ir.builder import GraphBuilder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def chain() -> graphmill.Graph:
    """Four MatMul+Relu layers: enough nodes to cut into two stages or spread over two devices."""
    b = GraphBuilder("g")
    h = b.input("x", "float32", [1, 16])
    for i in range(4):
        h = b.Relu(b.MatMul(h, np.full((16, 16), 0.1 * (i + 1), np.float32)))
    b.output(h, "y")
    return b.build()


def test_partition_and_place_are_the_api_functions_and_run():
    assert graphmill.partition is api.partition and graphmill.place is api.place
    assert {"partition", "place", "search"} <= set(graphmill.__all__)
    g = chain()
    report = graphmill.partition(g, stages=2)  # the README's call, as written
    assert len(report["stages"]) == 2
    assert {n.meta["stage"] for n in g.nodes} == {0, 1}
    g = chain()
    graphmill.place(g, devices=2)
    assert all("device" in n.meta for n in g.nodes)


def test_search_is_the_package_imported_on_first_use_and_torch_never_at_import():
    code = ("import sys, graphmill\n"
            "assert 'graphmill.search' not in sys.modules and 'torch' not in sys.modules\n"
            "s = graphmill.search\n"
            "import graphmill.search as pkg\n"
            "from graphmill import search\n"
            "assert s is pkg is search and callable(s.run) and s.Space is pkg.space.Space\n"
            "assert 'torch' not in sys.modules\n"
            "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
