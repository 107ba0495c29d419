"""Zoo models against published tables: torchvision's documented parameter counts and GFLOPS
(multiply-adds) for ResNet-18/34/50/101, and ONNX Runtime running what the zoo builds."""

from __future__ import annotations

import numpy as np
import pytest

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.frontend import zoo
from graphmill.ir import UserInputError
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


@pytest.mark.parametrize("seed", [-1, 1.5, "x", True, 2**32])
def test_a_seed_no_generator_takes_is_refused_naming_the_model(seed):
    """``zoo.build("coatnet_0", seed=-1)`` was numpy's bare ValueError (an outside check). Reference: graphmill's
    --seed range, 0 .. 2**32 - 1, what every consumer of a seed takes (numpy refuses negatives, METIS more than
    64 bits)."""
    with pytest.raises(UserInputError, match=r"zoo model 'coatnet_0': seed .*must be an integer from 0 to 4294967295"):
        zoo.build("coatnet_0", seed=seed)


def test_an_integer_eps_is_written_as_the_float_onnx_requires(tmp_path):
    """``eps=0`` wrote LayerNormalization's epsilon as an INT attribute, which onnx's checker refuses, so save
    refused the model (an outside check). Reference: onnx.checker on the saved file (epsilon is a FLOAT
    attribute in the ONNX spec)."""
    import onnx

    g = zoo.build("coatnet_0", width=0.25, resolution=64, eps=0)
    graphmill.save(g, tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)
    with pytest.raises(UserInputError, match="eps -1"):
        zoo.build("coatnet_0", eps=-1)
    # a numpy float is a number (it was taken before the check); a model without eps says it has no such option
    assert zoo.build("bert_base", layers=1, eps=np.float32(1e-12)).nodes
    with pytest.raises(UserInputError, match="no option 'eps'"):
        zoo.build("inception_v3", eps=-1)
