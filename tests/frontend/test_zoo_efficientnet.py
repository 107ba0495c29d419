"""EfficientNet-B0..B7 from the zoo against published numbers.

References: torchvision.models' documented parameter counts (which count BatchNorm's
weight and bias but not its running statistics), the EfficientNet paper's FLOPs
(Tan & Le 2019, Table 2; the paper's "FLOPs" are multiply-adds), the paper's
Table 1 (B0's block table) and the official scaling rules (round_filters with
divisor 8 and the 10% rule, round_repeats = ceil), with examples worked by hand.
ONNX Runtime runs what the zoo builds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.frontend import zoo
from graphmill.ir import UserInputError
from graphmill.ir.summary import summarize

# torchvision.models.efficientnet_b*: num_params (docs); paper Table 2: FLOPs (multiply-adds).
PUBLISHED = {
    "b0": (5_288_548, 0.39e9),
    "b1": (7_794_184, 0.70e9),
    "b2": (9_109_994, 1.0e9),
    "b3": (12_233_232, 1.8e9),
    "b4": (19_341_616, 4.2e9),
    "b5": (30_389_784, 9.9e9),
    "b6": (43_040_704, 19e9),
    "b7": (66_347_960, 37e9),
}
# The paper / official implementation: (width, depth, resolution).
OFFICIAL = {"b0": (1.0, 1.0, 224), "b1": (1.0, 1.1, 240), "b2": (1.1, 1.2, 260), "b3": (1.2, 1.4, 300),
            "b4": (1.4, 1.8, 380), "b5": (1.6, 2.2, 456), "b6": (1.8, 2.6, 528), "b7": (2.0, 3.1, 600)}
# The paper's Table 1 (B0): (expansion, kernel, stride, output channels, repeats) per MBConv stage.
TABLE1 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def trainable_params(g) -> int:
    """Parameters as torchvision counts them: without BatchNormalization's running mean/var."""
    s = summarize(g)
    stats = sum(n.inputs[k].const.size for n in g.nodes if n.op_type == "BatchNormalization" for k in (3, 4))
    return s.params - stats


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_params_and_macs_match_torchvision_and_the_paper(variant):
    g = zoo.build(f"efficientnet_{variant}", batch=1)
    params, macs = PUBLISHED[variant]
    p = trainable_params(g)
    assert abs(p - params) / params < 0.005, (p, params)
    s = summarize(g)
    assert s.cost_unknown_nodes == 0 and not s.ops_without_cost
    assert abs(s.macs - macs) / macs < 0.05, (s.macs, macs)
    w, d, r = OFFICIAL[variant]
    assert g.inputs[0].type.shape == (1, 3, r, r)


@pytest.mark.parametrize("variant", ["b0", "b1", "b2"])
def test_runs_under_onnxruntime(variant):
    g = zoo.build(f"efficientnet_{variant}", batch=1)
    graphmill.verify(g)
    y = ortb.run(g, ortb.random_inputs(g, seed=0))["logits"]
    assert y.shape == (1, 1000) and np.isfinite(y).all() and y.std() > 0


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["b3", "b4", "b5", "b6", "b7"])
def test_big_variants_run_under_onnxruntime(variant):
    g = zoo.build(f"efficientnet_{variant}", batch=1)
    y = ortb.run(g, ortb.random_inputs(g, seed=0))["logits"]
    assert y.shape == (1, 1000) and np.isfinite(y).all()


def test_round_filters_examples_worked_by_hand():
    # c * w to the nearest multiple of 8 (int(v + 4) // 8 * 8), at least 8, bumped by 8 if > 10% down
    assert zoo.round_filters(32, 1.0) == 32
    assert zoo.round_filters(32, 1.1) == 32      # 35.2 -> 32: 9.1% down, allowed
    assert zoo.round_filters(16, 1.1) == 16      # 17.6 -> 16: 9.1% down, allowed
    assert zoo.round_filters(40, 1.1) == 48      # 44 -> 48
    assert zoo.round_filters(24, 1.2) == 32      # 28.8 -> 32
    assert zoo.round_filters(112, 1.4) == 160    # 156.8 -> 160
    assert zoo.round_filters(1280, 1.8) == 2304  # exact
    assert zoo.round_filters(100, 0.5) == 48     # 50 -> 48: 4% down, allowed
    assert zoo.round_filters(16, 0.25) == 8      # 4 -> 0 -> at least the divisor, 8
    assert zoo.round_filters(11, 1.0) == 16      # 11 -> 8 is 27% down: bumped to 16
    assert zoo.round_filters(32, 0.35) == 16     # 11.2 -> 8 is 29% down: 16 (MobileNetV2-0.35's stem)
    # depth: ceil(d * n)
    assert [zoo.round_repeats(n, 3.1) for n in (1, 2, 3, 4)] == [4, 7, 10, 13]
    assert [zoo.round_repeats(n, 1.1) for n in (1, 2, 3, 4)] == [2, 3, 4, 5]


def _stage_structure(g):
    """Per MBConv stage (from node meta): number of blocks and the project conv's output channels."""
    blocks, cout = {}, {}
    for n in g.nodes:
        s = n.meta.get("model_stage")
        if n.meta.get("kind") != "mbconv":
            continue
        blocks.setdefault(s, set()).add(n.meta["block"])
        if n.op_type == "Conv" and n.meta.get("layer") == "project":
            cout[s] = n.inputs[1].const.shape[0]
    return [(len(blocks[s]), cout[s]) for s in sorted(blocks)]


@pytest.mark.parametrize("width,depth", [(1.0, 1.0), (1.1, 1.2), (2.0, 3.1), (0.5, 0.5)])
def test_width_and_depth_follow_the_rules(width, depth):
    # expected from Table 1 by the published rules, computed here with plain arithmetic
    def rf(c):
        v = c * width
        r = max(8, int(v + 4) // 8 * 8)
        return r + 8 if r < 0.9 * v else r

    g = zoo.build("efficientnet_b0", width=width, depth=depth, resolution=64, batch=1)
    assert _stage_structure(g) == [(math.ceil(n * depth), rf(c)) for _, _, _, c, n in TABLE1]
    stem = next(n for n in g.nodes if n.op_type == "Conv")
    assert stem.inputs[1].const.shape == (rf(32), 3, 3, 3)
    head = [n for n in g.nodes if n.op_type == "Conv" and n.meta.get("kind") == "head"]
    assert head[0].inputs[1].const.shape[0] == rf(1280)


def test_b0_blocks_carry_table1_and_se_of_the_input_channels():
    g = zoo.build("efficientnet_b0", batch=1)
    seen = {}
    for n in g.nodes:
        if n.meta.get("kind") == "mbconv":
            m = n.meta
            seen[(m["model_stage"], m["block"])] = (m["expand"], m["kernel"], m["stride"], m["se"])
    for s, (e, k, st, _, reps) in enumerate(TABLE1, start=1):
        for i in range(reps):
            assert seen[(s, i)] == (e, k, st if i == 0 else 1, 0.25)
    assert len(seen) == sum(t[4] for t in TABLE1) == 16
    # stage 2's first block: input 16, expanded 96 -> squeeze int(0.25 * 16) = 4; its second: 24 -> 6 (of 144)
    se = {}
    for n in g.nodes:
        if n.meta.get("layer") == "se" and n.op_type == "Conv":
            se.setdefault((n.meta["model_stage"], n.meta["block"]), []).append(n.inputs[1].const.shape[:2])
    assert se[(2, 0)] == [(4, 96), (96, 4)]
    assert se[(2, 1)] == [(6, 144), (144, 6)]
    assert [b["stage"] for b in g.meta["blocks"]] == [s for s, t in enumerate(TABLE1, 1) for _ in range(t[4])]
    # swish is x * sigmoid(x) (portable to every opset)
    assert "Swish" not in summarize(g).ops and summarize(g).ops["Sigmoid"] >= 16


def test_resolution_multiplier_and_explicit_size():
    assert zoo.build("efficientnet_b0", resolution=0.5, batch=1).inputs[0].type.shape == (1, 3, 112, 112)
    assert zoo.build("efficientnet_b3", resolution=1.0, batch=1).inputs[0].type.shape == (1, 3, 300, 300)
    assert zoo.build("efficientnet_b0", resolution=128, batch=1).inputs[0].type.shape == (1, 3, 128, 128)


@pytest.mark.parametrize("arg", ["width", "depth", "resolution"])
@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "x"])
def test_bad_multipliers_name_the_argument(arg, bad):
    with pytest.raises(UserInputError, match=arg):
        zoo.build("efficientnet_b0", **{arg: bad})
