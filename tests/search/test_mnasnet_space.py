"""MnasNet's factorized hierarchical space (Tan et al. 2019, Sec. 4.1 / Fig. 4) and the accelerator space.

References: the zoo's MnasNet-A1 (built from the paper's Figure 7, 3.9M parameters as published) for the
A1 point of the space, ONNX Runtime for running built graphs, hand counts for the space's size and for the
layers a configuration must produce, the simulator's own ``AccelConfig`` validation for accelerator configs.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from graphmill import api
from graphmill.backends import onnxruntime as ortb
from graphmill.backends.simulator.config import AccelConfig, as_accel, load_accel
from graphmill.frontend import zoo
from graphmill.frontend.zoo import round_filters
from graphmill.frontend.zoo.mobilenet import MNASNET_A1_BLOCKS
from graphmill.ir import UserInputError, verify
from graphmill.search import Space
from graphmill.search.spaces import (MNASNET_A1, SPACES, accel_config, accelerator_space, build_mnasnet,
                                     joint_space, mnasnet_space, split)

EDGE = "examples/accelerators/edge.toml"


def test_a1_builds_to_the_zoo_model_exactly():
    ours, ref = build_mnasnet(MNASNET_A1, batch=1), zoo.build("mnasnet_a1", batch=1)
    a, b = api.inspect(ours), api.inspect(ref)
    assert a["params"] == b["params"] == 3_920_526  # Tan et al. 2019, Table 1: MnasNet-A1 3.9M parameters
    assert a["ops"] == b["ops"] and a["macs"] == b["macs"]
    # same layers in the same order with the same seeded weights: ONNX Runtime gives bit-identical logits
    small, small_ref = build_mnasnet(batch=1, resolution=32), zoo.build("mnasnet_a1", batch=1, resolution=32)
    x = ortb.random_inputs(small_ref, seed=0)
    np.testing.assert_array_equal(ortb.run(small, x)["logits"], ortb.run(small_ref, x)["logits"])


def test_space_is_the_papers_factorization():
    space = mnasnet_space()
    assert list(space) == [f"block{i}" for i in range(1, 8)]
    for name in space:
        block = space[name]
        assert block["op"].values == ["conv", "dwconv", "mbconv"]
        assert block["expand"].values == [1, 3, 6] and block["expand"].when == {"op": "mbconv"}
        assert block["kernel"].values == [3, 5] and block["se"].values == [0.0, 0.25]
        assert block["skip"].values == ["none", "identity"]
        assert block["filters"].values == [0.75, 1.0, 1.25]
    # layer deltas -1/0/+1, except where the base has a single layer (blocks 1 and 7): no empty block
    assert [space[n]["layers"].values for n in space] == [[0, 1]] + [[-1, 0, 1]] * 5 + [[0, 1]]
    # hand count: ops conv, dwconv, mbconv x 3 expansions = 5; x kernel 2 x SE 2 x skip 2 x filters 3 = 120;
    # x 3 layer counts (x 2 for the single-layer blocks 1 and 7)
    assert space.size() == 360 ** 5 * 240 ** 2
    assert space.validate(MNASNET_A1) == MNASNET_A1
    assert Space.from_json(space.to_json()).to_json() == space.to_json()
    assert SPACES["mnasnet"]().to_json() == space.to_json()


def _conv_nodes(g, stage):
    return [n for n in g.nodes
            if n.op_type == "Conv" and n.meta.get("model_stage") == stage and n.meta.get("layer") != "se"]


def test_configuration_fixes_ops_kernels_filters_and_layers():
    cfg = copy.deepcopy(MNASNET_A1)
    cfg["block2"] = {"op": "conv", "kernel": 5, "se": 0.25, "skip": "identity", "filters": 1.25, "layers": 1}
    cfg["block4"] = {"op": "dwconv", "kernel": 5, "se": 0.0, "skip": "none", "filters": 0.75, "layers": -1}
    cfg["block5"] = {"op": "mbconv", "expand": 3, "kernel": 5, "se": 0.0, "skip": "identity", "filters": 1.0,
                     "layers": 1}
    w = 0.5
    g = build_mnasnet(cfg, width=w, resolution=32, num_classes=10, in_channels=1, batch=2)
    verify(g)
    assert g.inputs[0].shape == (2, 1, 32, 32) and g.outputs[0].shape == (2, 10)
    assert g.meta["config"] == cfg
    # block2: regular convs: 2 + 1 = 3 layers of one dense 5x5 conv each, 24 * 1.25 * 0.5 -> 16 channels
    c2 = _conv_nodes(g, 2)
    assert len(c2) == 3 and all(n.attr("kernel_shape") == [5, 5] and not n.attr("group") for n in c2)
    assert [n.inputs[1].shape[0] for n in c2] == [round_filters(24 * 1.25, w)] * 3 == [16] * 3
    assert sum(1 for n in g.nodes if n.op_type == "GlobalAveragePool" and n.meta.get("model_stage") == 2) == 3  # SE
    assert [n.meta["block"] for n in c2] == [0, 1, 2] and {n.meta["search_block"] for n in c2} == {"block2"}
    assert all(n.meta["choice"] == cfg["block2"] for n in c2)
    # the identity skips: layers 2 and 3 (stride 1, same channels), not layer 1 (stride 2)
    assert sum(1 for n in g.nodes if n.op_type == "Add" and n.meta.get("model_stage") == 2) == 2
    # block4: depthwise-separable, 4 - 1 = 3 layers of (5x5 depthwise, 1x1 pointwise + ReLU), no skip
    c4 = _conv_nodes(g, 4)
    assert len(c4) == 6
    assert [n.attr("kernel_shape") for n in c4] == [[5, 5], [1, 1]] * 3
    assert all(n.attr("group") == n.inputs[0].shape[1] for n in c4[0::2])
    assert sum(1 for n in g.nodes if n.op_type == "Add" and n.meta.get("model_stage") == 4) == 0
    assert c4[-1].inputs[1].shape[0] == round_filters(80 * 0.75, w) == 32
    # block5: MBConv expansion 3, 3 layers (expand 1x1, depthwise 5x5, project 1x1)
    c5 = _conv_nodes(g, 5)
    assert len(c5) == 9 and c5[0].inputs[1].shape[0] == 3 * c5[0].inputs[0].shape[1]
    logits = ortb.run(g, ortb.random_inputs(g, seed=0))["logits"]
    assert logits.shape == (2, 10) and np.isfinite(logits).all()


def test_random_configurations_build_verified_graphs():
    space, rng = mnasnet_space(), np.random.default_rng(0)
    for _ in range(8):
        cfg = space.sample(rng)
        g = build_mnasnet(cfg, width=0.25, resolution=16, num_classes=10, batch=1)
        verify(g)
        layers = [st["repeats"] for st in g.meta["stages"]]
        assert layers == [n + cfg[f"block{i}"]["layers"] for i, (*_, n, _se) in enumerate(MNASNET_A1_BLOCKS, 1)]
        assert ortb.run(g, ortb.random_inputs(g, seed=0))["logits"].shape == (1, 10)


def test_bad_configuration_names_the_path():
    bad = copy.deepcopy(MNASNET_A1)
    bad["block3"]["kernel"] = 7
    with pytest.raises(UserInputError, match=r"block3\.kernel"):
        build_mnasnet(bad)
    bad = copy.deepcopy(MNASNET_A1)
    bad["block1"]["layers"] = -1  # would leave block1 empty
    with pytest.raises(UserInputError, match=r"block1\.layers"):
        build_mnasnet(bad)
    with pytest.raises(UserInputError, match="width"):
        build_mnasnet(width=0)


def test_accelerator_space_gives_configs_the_simulator_accepts():
    space = accelerator_space()
    assert list(space) == ["rows", "cols", "dataflow", "ifmap_kb", "filter_kb", "ofmap_kb", "dram_bw_words"]
    assert space.size() == 5 * 5 * 3 * 6 ** 3 * 5
    cfg = space.sample(np.random.default_rng(3))
    base = load_accel(EDGE)
    for b in (EDGE, base):  # the unsearched fields come from the base: a TOML path or an AccelConfig
        acc = as_accel(accel_config(cfg, b))
        assert isinstance(acc, AccelConfig)
        assert (acc.rows, acc.cols, acc.dataflow) == (cfg["rows"], cfg["cols"], cfg["dataflow"])
        assert (acc.ifmap_kb, acc.filter_kb, acc.ofmap_kb) == (cfg["ifmap_kb"], cfg["filter_kb"], cfg["ofmap_kb"])
        assert acc.ifmap_bw_words == acc.filter_bw_words == acc.ofmap_bw_words == cfg["dram_bw_words"]
        assert (acc.clock_mhz, acc.chips) == (base.clock_mhz, base.chips)
        # named for the point, not the base: a trial's accelerator read "edge" with another array (an outside check)
        kb = "/".join(f"{cfg[k]:g}" for k in ("ifmap_kb", "filter_kb", "ofmap_kb"))
        point = f"{cfg['rows']}x{cfg['cols']} {cfg['dataflow']} {kb} KB {cfg['dram_bw_words']:g} words/cycle"
        assert acc.name == f"{point} (searched from {base.name})" != base.name
    default = as_accel(accel_config(cfg))
    assert default.clock_mhz == 1000.0 and default.chips == 1
    assert default.name == f"{point} (searched from the default)"
    again = accel_config(cfg, accel_config(cfg, EDGE))  # a point searched over a named point names it whole
    assert again["name"] == f"{point} (searched from {point} (searched from edge))"
    assert as_accel(accel_config({}, EDGE)).name == base.name  # nothing searched: the base itself


def test_joint_space_is_the_product():
    j = joint_space()
    assert list(j) == ["nn", "accel"]
    assert j.size() == mnasnet_space().size() * accelerator_space().size()
    cfg = j.sample(np.random.default_rng(0))
    nn, acc = split(cfg)
    assert mnasnet_space().validate(nn) == nn and accelerator_space().validate(acc) == acc
    assert split(MNASNET_A1) == (MNASNET_A1, None)
    assert math.isfinite(float(j.encode(cfg).sum())) and j.dimension == len(j.encode(cfg))
