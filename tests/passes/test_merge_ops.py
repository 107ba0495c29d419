"""merge-ops (fewer standard nodes) and its inverse for ONNX Runtime, fuse-activation's
activation-into-concat.

Reference: ONNX Runtime running the graph before the pass (``compare`` on seeded random inputs).
The exact rules (activation over Concat for piecewise-linear ops, permutation as Gather, global max
pooling) must match bit for bit (rtol = atol = 0); the float-reassociating ones within 1e-5.
Expected node counts follow from each test's own construction.
"""

from __future__ import annotations

import numpy as np
import pytest

from graphmill.backends.onnxruntime import compare, random_inputs
from graphmill.ir.builder import GraphBuilder
from graphmill.passes import run_passes

RTOL = ATOL = 1e-5


def _ops(g):
    return [(n.domain + "." if n.domain else "") + n.op_type for n in g.nodes]


def _run(g, schedule):
    ref = g.copy()
    res = run_passes(g, schedule, verify_each=True)
    return ref, res


def _branches(rng, act="Relu", n=3, opset=17, **kw):
    """An Inception-like module: n Conv -> act branches joined by a Concat."""
    b = GraphBuilder(opset=opset)
    x = b.input("x", "float32", ["N", 3, 6, 6])
    outs = []
    for i in range(n):
        y = b.Conv(x, rng.standard_normal((2 + i, 3, 1, 1)).astype(np.float32),
                   rng.standard_normal(2 + i).astype(np.float32), name=f"conv{i}")
        if act == "Clip":
            outs.append(b.Clip(y, np.array(0, np.float32), np.array(6, np.float32)))
        else:
            outs.append(b.op(act, y, **kw))
    b.output(b.Concat(*outs, axis=1), "y")
    return b.build()


@pytest.mark.parametrize("act,kw,exact", [("Relu", {}, True), ("LeakyRelu", {"alpha": 0.1}, True),
                                          ("Clip", {}, True), ("Sigmoid", {}, False), ("Tanh", {}, False)])
def test_activation_hoists_over_concat(rng, act, kw, exact):
    g = _branches(rng, act, **kw)
    ref, res = _run(g, "merge-ops{hoist_min_macs=0}")  # 1x1 Convs over 3 channels: weighed below
    assert _ops(g) == ["Conv", "Conv", "Conv", "Concat", act]  # 3 activations -> 1
    tol = 0 if exact else RTOL
    assert compare(ref, g, random_inputs(ref, seed=0, dims={"N": 2}), rtol=tol, atol=tol).ok


def test_activation_over_concat_refusals(rng):
    # different attributes
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 4])
    b.output(b.Concat(b.LeakyRelu(x, alpha=0.1), b.LeakyRelu(x, alpha=0.2), axis=1), "y")
    g = b.build()
    _run(g, "merge-ops")
    assert _ops(g) == ["LeakyRelu", "LeakyRelu", "Concat"]
    # one activation output also read elsewhere: hoisting would compute it twice
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 4])
    r = b.Relu(x)
    b.output(b.Concat(r, b.Relu(b.Neg(x)), axis=1), "y")
    b.output(r, "r")
    g = b.build()
    _run(g, "merge-ops")
    assert _ops(g).count("Relu") == 2
    # a Concat input that is not an activation; different Clip bounds
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 4])
    b.output(b.Concat(b.Relu(x), x, axis=1), "a")
    b.output(b.Concat(b.Clip(x, np.array(0, np.float32), np.array(6, np.float32)),
                      b.Clip(x, np.array(0, np.float32), np.array(1, np.float32)), axis=1), "b")
    g = b.build()
    _run(g, "merge-ops")
    assert sorted(_ops(g)) == ["Clip", "Clip", "Concat", "Concat", "Relu"]


def _fire(rng, squeeze: int, expand: int = 4):
    """SqueezeNet's Fire module after its squeeze: a 1x1 and a 3x3 Conv, each + Relu, joined."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", squeeze, 5, 5])
    outs = []
    for k in (1, 3):
        w = rng.standard_normal((expand, squeeze, k, k)).astype(np.float32)
        outs.append(b.Relu(b.Conv(x, w, rng.standard_normal(expand).astype(np.float32), pads=[k // 2] * 4)))
    b.output(b.Concat(*outs, axis=1), "y")
    return b.build()


def test_activation_hoist_is_weighed_against_the_producers_work(rng):
    """Per Concat element the branches do (1 + 9) * squeeze / 2 MACs: squeeze 16 -> 80 (refused under
    the default 256, as SqueezeNet's first Fire modules), squeeze 64 -> 320 (hoisted, as its last)."""
    g = _fire(rng, 16)
    ref, res = _run(g, "merge-ops")
    assert _ops(g).count("Relu") == 2
    assert res.records[-1].stats == {} and not res.changed
    from graphmill.passes.fusion.merge import ACTIVATION_OVER_CONCAT

    reason = ACTIVATION_OVER_CONCAT.check(ACTIVATION_OVER_CONCAT.match(g, g.nodes[-1]))
    assert "80 MACs per element, under hoist_min_macs=256" in reason
    g = _fire(rng, 64)
    ref, _ = _run(g, "merge-ops")
    assert _ops(g) == ["Conv", "Conv", "Concat", "Relu"]
    assert compare(ref, g, random_inputs(ref, seed=0, dims={"N": 2}), rtol=0, atol=0).ok
    g = _fire(rng, 16)
    _run(g, "merge-ops{hoist_min_macs=80}")  # the threshold is inclusive
    assert _ops(g).count("Relu") == 1
    g = _fire(rng, 16)
    _run(g, "merge-ops{disable=[activation-over-concat], hoist_min_macs=0}")
    assert _ops(g).count("Relu") == 2


def test_activation_hoist_weighs_only_what_a_backend_would_fuse(rng):
    # Neg is fused into no Conv (not by fuse-activation, not by ONNX Runtime): hoisted however cheap the Conv
    g = _branches(rng, "Neg")
    ref, _ = _run(g, "merge-ops")
    assert _ops(g) == ["Conv", "Conv", "Conv", "Concat", "Neg"]
    assert compare(ref, g, random_inputs(ref, seed=0, dims={"N": 2}), rtol=0, atol=0).ok
    # Relu over MatMuls: nothing fuses it into a MatMul either
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 3])
    outs = [b.Relu(b.MatMul(x, rng.standard_normal((3, 2)).astype(np.float32))) for _ in range(2)]
    b.output(b.Concat(*outs, axis=1), "y")
    g = b.build()
    _run(g, "merge-ops")
    assert _ops(g) == ["MatMul", "MatMul", "Concat", "Relu"]


def test_activation_hoist_mixed_work_needs_the_parts_sizes(rng):
    """One producer above the threshold, one below: their parts of the Concat are weighed by size, which a
    symbolic concat axis hides (refused, with the reason); all above needs no sizes (hoisted)."""
    from graphmill.passes.fusion.merge import ACTIVATION_OVER_CONCAT

    def branches(k_small, k_big, rows):
        b = GraphBuilder(opset=17)
        x = b.input("x", "float32", [rows, 300])
        outs = [b.Relu(b.Gemm(b.Slice(x, np.array([0], np.int64), np.array([k], np.int64), np.array([1], np.int64)),
                              rng.standard_normal((k, 4)).astype(np.float32))) for k in (k_small, k_big)]
        b.output(b.Concat(*outs, axis=0), "y")
        return b.build()

    g = branches(8, 300, "N")
    _run(g, "merge-ops")
    concat = next(n for n in g.nodes if n.op_type == "Concat")
    reason = ACTIVATION_OVER_CONCAT.check(ACTIVATION_OVER_CONCAT.match(g, concat))
    assert "part of the Concat is unknown" in reason and _ops(g).count("Relu") == 2
    g = branches(8, 300, 2)  # static: (8 + 300) / 2 = 154 MACs per element, under 256
    _run(g, "merge-ops")
    assert _ops(g).count("Relu") == 2
    g = branches(260, 300, "N")  # both above: no sizes needed
    ref, _ = _run(g, "merge-ops")
    assert _ops(g)[-1] == "Relu" and _ops(g).count("Relu") == 1
    assert compare(ref, g, random_inputs(ref, seed=0, dims={"N": 2}), rtol=0, atol=0).ok


def _channel_shuffle(b, x, groups, channels, hw):
    y = b.Reshape(x, np.array([1, groups, channels // groups, hw, hw], np.int64))
    y = b.Transpose(y, perm=[0, 2, 1, 3, 4])
    return b.Reshape(y, np.array([1, channels, hw, hw], np.int64))


def test_channel_shuffle_becomes_one_gather(rng):
    """ShuffleNet's channel shuffle (Reshape -> Transpose -> Reshape) is a permutation of axis 1."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 12, 5, 5])
    b.output(b.Relu(_channel_shuffle(b, x, 3, 12, 5)), "y")
    g = b.build()
    ref, _ = _run(g, "merge-ops, dce")
    assert _ops(g) == ["Gather", "Relu"]
    gather = g.nodes[0]
    assert gather.attr("axis") == 1
    assert compare(ref, g, rtol=0, atol=0).ok


def test_permutation_refusals(rng):
    # the Transpose mixes two axes (a real transpose, not a permutation of one axis)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 6])
    y = b.Reshape(x, np.array([2, 2, 3], np.int64))
    y = b.Transpose(y, perm=[2, 1, 0])
    b.output(b.Reshape(y, np.array([2, 6], np.int64)), "y")
    g = b.build()
    _run(g, "merge-ops")
    assert _ops(g) == ["Reshape", "Transpose", "Reshape"]
    # the result's shape is not the input's (attention heads split for good)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 4, 6])
    y = b.Reshape(x, np.array([1, 4, 2, 3], np.int64))
    y = b.Transpose(y, perm=[0, 2, 1, 3])
    b.output(b.Reshape(y, np.array([2, 4, 3], np.int64)), "y")
    g = b.build()
    _run(g, "merge-ops")
    assert _ops(g) == ["Reshape", "Transpose", "Reshape"]
    # symbolic batch: the permutation cannot be enumerated
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 4, 2, 2])
    y = b.Reshape(x, np.array([-1, 2, 2, 2, 2], np.int64))
    y = b.Transpose(y, perm=[0, 2, 1, 3, 4])
    b.output(b.Reshape(y, np.array([-1, 4, 2, 2], np.int64)), "y")
    g = b.build()
    _run(g, "merge-ops")
    assert _ops(g) == ["Reshape", "Transpose", "Reshape"]


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("pool,flatten", [("GlobalAveragePool", "Flatten"), ("GlobalAveragePool", "Reshape"),
                                          ("GlobalMaxPool", "Flatten")])
def test_global_pool_flatten_becomes_a_reduction(rng, opset, pool, flatten):
    b = GraphBuilder(opset=opset)
    x = b.input("x", "float32", ["N", 8, 5, 5])
    p = b.op(pool, x)
    y = b.Flatten(p, axis=1) if flatten == "Flatten" else b.Reshape(p, np.array([0, -1], np.int64))
    b.output(b.Gemm(y, rng.standard_normal((8, 3)).astype(np.float32)), "y")
    g = b.build()
    ref, _ = _run(g, "merge-ops")
    want = "ReduceMax" if pool == "GlobalMaxPool" else "ReduceMean"
    assert _ops(g) == [want, "Gemm"]
    tol = 0 if want == "ReduceMax" else RTOL
    assert compare(ref, g, random_inputs(ref, seed=0, dims={"N": 2}), rtol=tol, atol=tol).ok


@pytest.mark.parametrize("kw", [{"kernel_shape": [5, 5]},
                                # GoogLeNet (onnx light model): a 7x7 window over 6x6, padding not counted
                                {"kernel_shape": [7, 7], "pads": [0, 0, 1, 1]},
                                {"kernel_shape": [7, 7], "pads": [1, 1, 0, 0], "strides": [2, 2]}])
def test_whole_window_average_pool_becomes_a_reduction(rng, kw):
    hw = 6 if kw["kernel_shape"] != [5, 5] else 5
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 4, hw, hw])
    b.output(b.Flatten(b.AveragePool(x, **kw), axis=1), "y")
    g = b.build()
    ref, _ = _run(g, "merge-ops")
    assert _ops(g) == ["ReduceMean"]
    assert compare(ref, g, rtol=RTOL, atol=ATOL).ok


@pytest.mark.parametrize("kw", [{"kernel_shape": [3, 3]},  # a local window
                                {"kernel_shape": [7, 7], "pads": [0, 0, 1, 1], "count_include_pad": 1},
                                {"kernel_shape": [6, 6], "auto_pad": "SAME_UPPER"},
                                # one output, but the window [-1, 5) misses the last row and column
                                {"kernel_shape": [6, 6], "pads": [1, 1, 0, 0], "strides": [2, 2]}])
def test_average_pool_refusals(rng, kw):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 4, 6, 6])
    p = b.AveragePool(x, **kw)
    b.output(b.Flatten(p, axis=1), "y")
    g = b.build()
    _run(g, "merge-ops")
    assert _ops(g) == ["AveragePool", "Flatten"]


def test_flatten_axis_and_reshape_target_are_checked(rng):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 4, 3, 3])
    b.output(b.Flatten(b.GlobalAveragePool(x), axis=0), "a")  # [1, 8]: not [N, C]
    b.output(b.Reshape(b.GlobalAveragePool(x), np.array([4, 2], np.int64)), "b")
    g = b.build()
    _run(g, "merge-ops")
    assert sorted(_ops(g)) == ["Flatten", "GlobalAveragePool", "GlobalAveragePool", "Reshape"]


def test_fused_conv_takes_the_hoisted_activation_back(rng):
    """merge-ops leaves Concat -> Relu; ONNX Runtime's FusedConv wants the Relu inside each Conv."""
    g = _branches(rng, "Relu")
    ref, _ = _run(g, "merge-ops, fuse-activation(emit=fused-conv)")
    assert _ops(g) == ["com.microsoft.FusedConv"] * 3 + ["Concat"]
    assert compare(ref, g, random_inputs(ref, seed=0, dims={"N": 2}), rtol=RTOL, atol=ATOL).ok


def test_activation_into_concat_needs_every_input_a_conv(rng):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 3, 4, 4])
    y = b.Conv(x, rng.standard_normal((2, 3, 1, 1)).astype(np.float32))
    b.output(b.Relu(b.Concat(y, x, axis=1)), "y")
    g = b.build()
    _run(g, "fuse-activation(emit=fused-conv)")
    assert _ops(g) == ["Conv", "Concat", "Relu"]


def test_light_googlenet_fewer_nodes_same_outputs(light_dir):
    """The onnx wheel's light GoogLeNet: merge-ops removes 21 of its nodes (Relu per branch, pooling +
    Reshape), outputs as ONNX Runtime computes them on the original."""
    import os

    import graphmill

    g = graphmill.load(os.path.join(light_dir, "light_inception_v1.onnx"))
    run_passes(g, "shape-inference, fold-constants, fixpoint{simplify, cse, dce}")
    before = len(g.nodes)
    ref, res = _run(g, "merge-ops, dce")
    assert res.stats()["merge-ops"]["activation-over-concat"] == 7  # 2 modules' branches are also read elsewhere
    assert len(g.nodes) == before - 7 * 3 - 1
    assert compare(ref, g, rtol=RTOL, atol=ATOL).ok
