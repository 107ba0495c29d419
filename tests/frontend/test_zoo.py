"""Zoo models against published tables: torchvision's documented parameter counts and GFLOPS
(multiply-adds) for ResNet-18/34/50/101, and ONNX Runtime running what the zoo builds."""

from __future__ import annotations

import numpy as np
import pytest

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.frontend import zoo
from graphmill.ir.summary import summarize

# torchvision.models docs: num_params and GFLOPS (which torchvision counts as multiply-adds).
PUBLISHED = {
    "resnet18": (11_689_512, 1.81e9),
    "resnet34": (21_797_672, 3.66e9),
    "resnet50": (25_557_032, 4.09e9),
    "resnet101": (44_549_160, 7.80e9),  # He et al. 2015 Table 1: bottlenecks [3,4,23,3], 7.8 G mult-adds
}


def _bn_running_stats(g) -> int:
    """BatchNormalization's running mean/var: stored tensors, not trainable parameters."""
    return sum(n.inputs[k].const.size for n in g.nodes if n.op_type == "BatchNormalization" for k in (3, 4))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_resnet_matches_published_params_and_macs(name):
    g = zoo.build(name, batch=1)
    graphmill.verify(g)
    s = summarize(g)
    params, macs = PUBLISHED[name]
    assert s.params - _bn_running_stats(g) == params
    assert s.cost_unknown_nodes == 0 and not s.ops_without_cost
    assert abs(s.macs - macs) / macs < 0.01, s.macs


def test_resnet18_runs_under_onnxruntime_and_keeps_structure(resnet18_graph):
    g = resnet18_graph
    out = ortb.run(g, ortb.random_inputs(g, seed=0))["logits"]
    assert out.shape == (1, 1000) and np.isfinite(out).all()
    stages = {n.meta.get("model_stage") for n in g.nodes}
    assert stages == {0, 1, 2, 3, 4, 5}


def test_symbolic_batch_flows_to_the_output():
    g = zoo.build("resnet18")
    assert g.outputs[0].type.shape == ("N", 1000)
    y = ortb.run(g, ortb.random_inputs(g, seed=0, dims={"N": 2}))["logits"]
    assert y.shape == (2, 1000)
