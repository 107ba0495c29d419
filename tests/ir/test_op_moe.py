"""graphmill::MoE in the op registry: shape inference, cost, capacity and configuration checks.

References: hand computations of the layer's output types, of its MACs (Shazeer et al. 2017 section 3: the
computation per token is the gate plus the k chosen experts, independent of E), of the capacity
(Switch Transformer eq. 3: capacity = tokens per expert x capacity factor; GShard's 2N/E for top-2).
"""

from __future__ import annotations

import numpy as np
import pytest

from graphmill.errors import UserInputError
from graphmill.ir import DataType
from graphmill.ir.builder import GraphBuilder
from graphmill.ir.ops import lookup
from graphmill.ir.ops.moe import MoEConfigError, check_moe_config, moe_capacity


def moe_graph(*, E=4, k=2, d=8, h=16, shape=(3, 5), cf=1.0, gate="topk", noisy=True, build=True):
    rng = np.random.default_rng(0)
    b = GraphBuilder("moe", opset=17, opsets={"graphmill": 1})
    x = b.input("x", "float32", [*shape, d])
    f = lambda *s: b.const(rng.normal(size=s).astype(np.float32))  # noqa: E731
    ins = [x, f(d, E), f(d, E) if noisy else None, f(E, d, h), f(E, h), f(E, h, d), f(E, d)]
    outs = b.op("MoE", *ins, domain="graphmill", outputs=5, k=k, capacity_factor=cf, gate=gate)
    for name, o in zip(["y", "importance_loss", "load_loss", "expert_counts", "dropped"], outs):
        b.output(o, name)
    return b.build() if build else b.graph


def test_shape_inference_hand_computed():
    g = moe_graph(shape=(3, 5), d=8, E=4)
    types = {v.name: v.type for v in g.outputs}
    assert types["y"].shape == (3, 5, 8) and types["y"].dtype == DataType.FLOAT
    assert types["importance_loss"].shape == () and types["load_loss"].shape == ()
    assert types["expert_counts"].shape == (4,) and types["expert_counts"].dtype == DataType.INT64
    assert types["dropped"].shape == () and types["dropped"].dtype == DataType.INT64


def test_macs_count_gate_and_k_chosen_experts_only():
    cost = lookup("graphmill", "MoE").cost
    T, d, h = 15, 8, 16
    for E, k, noisy in ((4, 2, True), (4, 1, False), (16, 2, True)):
        node = next(n for n in moe_graph(E=E, k=k, noisy=noisy).nodes if n.op_type == "MoE")
        gate = T * d * E * (2 if noisy else 1)
        assert cost(node).macs == gate + T * k * 2 * d * h  # hand: gate + k experts of 2 d h per token
        assert cost(node).params == d * E * (2 if noisy else 1) + E * (2 * d * h + h + d)  # every expert's weights
    # E x4 at the same k: only the gate's MACs grow (Shazeer: compute independent of the number of experts)
    small = cost(next(n for n in moe_graph(E=4, k=2).nodes if n.op_type == "MoE")).macs
    big = cost(next(n for n in moe_graph(E=16, k=2).nodes if n.op_type == "MoE")).macs
    assert big - small == T * d * (16 - 4) * 2


def test_capacity_hand_computed():
    assert moe_capacity(4, 1, 2, 1.0) == 2  # Switch: 4 tokens / 2 experts x 1.0
    assert moe_capacity(10, 2, 4, 1.25) == 7  # GShard top-2: ceil(1.25 * 2 * 10 / 4) = ceil(6.25)
    assert moe_capacity(3, 2, 1, 2.0) == 3  # never more than the tokens
    assert moe_capacity(640, 1, 8, 1.0) == 80


@pytest.mark.parametrize("kwargs, match", [
    (dict(experts=4, k=5, capacity_factor=1.0), "k must be <= E"),
    (dict(experts=4, k=1, capacity_factor=0.0), "capacity factor must be > 0"),
    (dict(experts=4, k=1, capacity_factor=-1), "capacity factor must be > 0"),
    (dict(experts=4, k=1, capacity_factor=1.0, gate="hash"), "unknown gate"),
    (dict(experts=4, k=0, capacity_factor=1.0), "positive integer"),
    (dict(experts=4, k=1, capacity_factor="1.0"), "capacity factor must be a number"),  # as k refuses 2.0
])
def test_bad_configuration_is_one_line_user_error(kwargs, match):
    with pytest.raises(UserInputError, match=match) as e:
        check_moe_config(**kwargs)
    assert "\n" not in str(e.value)


def test_graph_with_k_over_experts_is_refused_at_inference():
    with pytest.raises(MoEConfigError, match="k must be <= E"):
        moe_graph(E=2, k=3)


def test_scalar_tokens_are_refused_at_inference():
    """X of rank 0 has no feature axis: refused naming the node (it reached ONNX Runtime, whose Flatten
    refused the lowering with a message about axis -1)."""
    from graphmill.ir import ShapeInferenceError

    rng = np.random.default_rng(0)
    b = GraphBuilder("moe", opset=17, opsets={"graphmill": 1})
    f = lambda *s: b.const(rng.normal(size=s).astype(np.float32))  # noqa: E731
    outs = b.op("MoE", b.input("x", "float32", []), f(5, 3), None, f(3, 5, 4), f(3, 4), f(3, 4, 5), f(3, 5),
                domain="graphmill", outputs=5, k=2, capacity_factor=1.0, gate="topk")
    b.output(outs[0], "y")
    with pytest.raises(ShapeInferenceError, match=r"MoE.*X is a scalar"):
        b.build()


def _layer(shapes: dict, *, x=(4, 3), dtypes: dict | None = None, noise=None):
    """A graph with one MoE node whose weights have the given shapes (E = 4, d = 3, h = 5 unless changed)."""
    sizes = {"Wg": (3, 4), "Wnoise": None, "W1": (4, 3, 5), "B1": (4, 5), "W2": (4, 5, 3), "B2": (4, 3), **shapes}
    b = GraphBuilder("moe", opset=17, opsets={"graphmill": 1})
    ins = [b.input("x", "float32", list(x))]
    for name in ("Wg", "Wnoise", "W1", "B1", "W2", "B2"):
        dtype = (dtypes or {}).get(name, np.float32)
        ins.append(None if sizes[name] is None else b.const(np.full(sizes[name], 0.1, dtype)))
    if noise is not None:
        ins.append(b.input("noise", "float32", list(noise)))
    outs = b.op("MoE", *ins, domain="graphmill", outputs=5, k=1, capacity_factor=1.0, gate="topk")
    b.output(outs[0], "y")
    return b


@pytest.mark.parametrize("shapes, noise, match", [
    ({"W1": (5, 3, 5)}, None, r"W1 \[5, 3, 5\] and Wg \[3, 4\] disagree on the number of experts E"),
    ({"B1": (4, 6)}, None, r"B1 \[4, 6\] and W1 \[4, 3, 5\] disagree on the hidden size h"),
    ({"B2": (3, 3)}, None, r"B2 \[3, 3\] and Wg \[3, 4\] disagree on the number of experts E"),
    ({"W2": (4, 5, 7), "B2": (4, 7)}, None, r"W2 \[4, 5, 7\] and X \[4, 3\] disagree on the feature size d"),
    ({"Wnoise": (3, 5)}, None, r"Wnoise \[3, 5\] and Wg \[3, 4\] disagree on the number of experts E"),
    ({"Wnoise": (3, 4)}, (7, 4), r"noise \[7, 4\] and X \[4, 3\] disagree on the token count T"),
    ({"Wnoise": (3, 4)}, (4, 5), r"noise \[4, 5\] and Wg \[3, 4\] disagree on the number of experts E"),
    ({"W1": (4, 3)}, None, r"W1 must be 3-D \[E, d, h\], got shape \[4, 3\]"),
])
def test_inputs_whose_sizes_disagree_are_refused_when_built(shapes, noise, match):
    """Reference: ONNX Runtime refuses each of these layers' lowering (its MatMul/Add shape checks); an outside
    check found graphmill built, inspected and saved them, failing only inside ONNX Runtime on a lowered node."""
    import onnxruntime as ort

    from graphmill.frontend.onnx_export import to_proto
    from graphmill.ir import ShapeInferenceError
    from graphmill.passes.lowering.lower import lowered_copy

    with pytest.raises(ShapeInferenceError, match=match) as e:
        _layer(shapes, noise=noise).build()
    assert "\n" not in str(e.value) and "MoE" in str(e.value)
    raw = to_proto(lowered_copy(_layer(shapes, noise=noise).graph))
    with pytest.raises(Exception, match="MoE"):  # the reference: ONNX Runtime refuses the same layer, lowered
        sess = ort.InferenceSession(raw.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {"x": np.ones((4, 3), np.float32)}
        if noise is not None:
            feeds["noise"] = np.ones(noise, np.float32)
        sess.run(None, feeds)


def test_weights_of_another_element_type_than_x_are_refused_when_built():
    """Reference: ONNX Runtime refuses the lowering ('MatMul bound to different types')."""
    from graphmill.ir import ShapeInferenceError

    with pytest.raises(ShapeInferenceError, match="W1 is float64 but X is float32"):
        _layer({}, dtypes={"W1": np.float64}).build()
