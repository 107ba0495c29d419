"""MnasNet-A1 and MobileNetV2 from the zoo against their papers.

References: MnasNet (Tan et al. 2019), Table 1: MnasNet-A1 3.9M params, 312M multiply-adds,
and Figure 7's block table; MobileNetV2 (Sandler et al. 2018), Table 4: 3.4M params, 300M
multiply-adds at 1.0/224, Table 2's block table; torchvision.models.mobilenet_v2 documents the
exact count, 3,504,872 params (the paper's 3.4M is about 3% lower, so the exact check uses torchvision's).
ONNX Runtime runs what the zoo builds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.frontend import zoo
from graphmill.ir.summary import summarize


def trainable_params(g) -> int:
    """Without BatchNormalization's running statistics, as papers count (0-d scalars such as Clip's 0 and 6
    are not parameters to summarize either)."""
    s = summarize(g)
    stats = sum(n.inputs[k].const.size for n in g.nodes if n.op_type == "BatchNormalization" for k in (3, 4))
    return s.params - stats


def test_mnasnet_a1_matches_the_paper():
    g = zoo.build("mnasnet_a1", batch=1)
    p, macs = trainable_params(g), summarize(g).macs
    assert abs(p - 3.9e6) / 3.9e6 < 0.02, p          # published to 2 significant digits
    assert abs(macs - 312e6) / 312e6 < 0.01, macs
    # Figure 7: SE on the 5x5 MBConv3 (40), the 3x3 MBConv6 (112) and the 5x5 MBConv6 (160) stages
    with_se = sorted({(n.meta["expand"], n.meta["kernel"]) for n in g.nodes if n.meta.get("se")})
    assert with_se == [(3, 5), (6, 3), (6, 5)]
    se_stages = {n.meta["model_stage"] for n in g.nodes if n.meta.get("layer") == "se"}
    assert se_stages == {3, 5, 6}


def test_mobilenet_v2_matches_torchvision_and_the_paper():
    g = zoo.build("mobilenet_v2", batch=1)
    assert trainable_params(g) == 3_504_872  # torchvision docs
    macs = summarize(g).macs
    assert abs(macs - 300e6) / 300e6 < 0.05, macs  # paper, Table 4
    # Table 2: (t, c, n, s)
    table2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1)]
    blocks = {}
    for n in g.nodes:
        if n.meta.get("kind") == "mbconv":
            blocks[(n.meta["model_stage"], n.meta["block"])] = (n.meta["expand"], n.meta["stride"])
    assert blocks == {(s, i): (t, st if i == 0 else 1) for s, (t, _, n, st) in enumerate(table2, 1) for i in range(n)}


@pytest.mark.parametrize("width,stem,head", [(0.35, 16, 1280), (0.5, 16, 1280), (1.4, 48, 1792)])
def test_mobilenet_v2_width_multiplier(width, stem, head):
    # worked by hand: 32 * 0.35 = 11.2 -> 8 is > 10% down -> 16; 32 * 0.5 = 16; 32 * 1.4 = 44.8 -> 48;
    # the last conv keeps 1280 below width 1 and is 1280 * 1.4 = 1792 above (paper, section 6.1)
    g = zoo.build("mobilenet_v2", width=width, batch=1)
    convs = [n for n in g.nodes if n.op_type == "Conv"]
    assert convs[0].inputs[1].const.shape[0] == stem
    assert convs[-1].inputs[1].const.shape[0] == head


def test_depth_multiplier_rounds_repeats_up():
    g = zoo.build("mnasnet_a1", depth=1.5, resolution=96, batch=1)
    figure7_repeats = [1, 2, 3, 4, 2, 3, 1]
    per_stage = {}
    for n in g.nodes:
        if n.meta.get("kind") in ("mbconv", "sepconv"):
            per_stage.setdefault(n.meta["model_stage"], set()).add(n.meta["block"])
    assert [len(per_stage[s]) for s in sorted(per_stage)] == [math.ceil(1.5 * r) for r in figure7_repeats]
    assert g.inputs[0].type.shape == (1, 3, 96, 96)


@pytest.mark.parametrize("name", ["mnasnet_a1", "mobilenet_v2"])
def test_runs_under_onnxruntime(name):
    g = zoo.build(name, batch=1)
    graphmill.verify(g)
    y = ortb.run(g, ortb.random_inputs(g, seed=0))["logits"]
    assert y.shape == (1, 1000) and np.isfinite(y).all() and y.std() > 0


def test_symbolic_batch():
    g = zoo.build("mobilenet_v2", width=0.5, resolution=0.5)
    y = ortb.run(g, ortb.random_inputs(g, seed=0, dims={"N": 3}))["logits"]
    assert y.shape == (3, 1000)
