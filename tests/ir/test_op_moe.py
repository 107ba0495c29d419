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
