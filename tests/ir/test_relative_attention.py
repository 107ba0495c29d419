"""graphmill::RelativeAttention: the relative-position index, shape inference, cost, the ONNX lowering and the
torch lowering.

References: index and cost computed by hand; an independent relative attention written below with explicit
loops over query/key positions (CoAtNet eq. 3: ``softmax_j(x_i^T x_j / sqrt(d) + w_{i-j})``); ONNX Runtime on
the lowered graph; the torch backend's lowering, including the table's gradient against the independent
implementation's autograd gradient.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphmill.backends import onnxruntime as ortb
from graphmill.ir import Graph, ShapeInferenceError, UserInputError
from graphmill.ir.builder import GraphBuilder
from graphmill.ir.ops import lookup
from graphmill.ir.ops.attention import relative_position_index, table_rows
from graphmill.ir.summary import summarize
from graphmill.passes.lowering import lowered_copy

H, W, HEADS, D, DV, N = 2, 3, 4, 8, 5, 2
L = H * W


def _graph(h=H, w=W, heads=HEADS, d=D, dv=DV, n=N, rows=None, scale=None, table=None) -> Graph:
    b = GraphBuilder("ra", opset=17, opsets={"graphmill": 1})
    q = b.input("q", "float32", [n, heads, h * w, d])
    k = b.input("k", "float32", [n, heads, h * w, d])
    v = b.input("v", "float32", [n, heads, h * w, dv])
    if table is None:
        table = np.random.default_rng(1).standard_normal((rows or table_rows(h, w), heads)).astype(np.float32)
    t = b.const(table, name="table")
    y = b.op("RelativeAttention", q, k, v, t, domain="graphmill", height=h, width=w, scale=scale)
    b.output(y, "y")
    return b.build()


def _inputs(seed=0, n=N, heads=HEADS, l=L, d=D, dv=DV):
    rng = np.random.default_rng(seed)
    return {"q": rng.standard_normal((n, heads, l, d)).astype(np.float32),
            "k": rng.standard_normal((n, heads, l, d)).astype(np.float32),
            "v": rng.standard_normal((n, heads, l, dv)).astype(np.float32)}


def independent_relative_attention(q, k, v, table, h, w, scale=None):
    """Loops over query i and key j: bias = table[(dy + h - 1) * (2w - 1) + (dx + w - 1), head]."""
    import torch

    d = q.shape[-1]
    logits = torch.einsum("nhid,nhjd->nhij", q, k) * (1 / math.sqrt(d) if scale is None else scale)
    bias = []
    for i in range(h * w):
        row = []
        for j in range(h * w):
            dy, dx = i // w - j // w, i % w - j % w
            row.append(table[(dy + h - 1) * (2 * w - 1) + (dx + w - 1)])
        bias.append(torch.stack(row))
    bias = torch.stack(bias).permute(2, 0, 1)  # [heads, i, j]
    return torch.einsum("nhij,nhjd->nhid", torch.softmax(logits + bias, dim=-1), v)


def test_index_worked_by_hand_for_a_2x2_map():
    # positions (0,0) (0,1) (1,0) (1,1); row = (dy + 1) * 3 + (dx + 1); the zero offset is row 4
    assert relative_position_index(2, 2).tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    assert table_rows(2, 2) == 9 and table_rows(14, 14) == 27 * 27
    idx = relative_position_index(H, W)
    assert idx.shape == (6, 6) and idx.min() == 0 and idx.max() == table_rows(H, W) - 1


def test_shape_inference_and_cost_by_hand():
    g = _graph()
    node = next(n for n in g.nodes if n.op_type == "RelativeAttention")
    assert g.outputs[0].type.shape == (N, HEADS, L, DV)
    c = lookup("graphmill", "RelativeAttention").cost(node)
    # Q K^T: N heads L L D; P V: N heads L L DV
    assert c.macs == N * HEADS * L * L * (D + DV) == 2 * 4 * 36 * 13
    assert c.flops == 2 * c.macs + 7 * N * HEADS * L * L
    assert c.params == table_rows(H, W) * HEADS and c.known


@pytest.mark.parametrize("kw,words", [
    (dict(rows=14), "has 14 rows; height 2, width 3 need 15"),
    (dict(table=np.zeros((15, 3), np.float32)), "3 columns for 4 heads"),
])
def test_inconsistent_tables_are_refused_naming_the_node(kw, words):
    with pytest.raises(ShapeInferenceError, match=words):
        _graph(**kw)


def test_positions_must_be_height_times_width():
    b = GraphBuilder("ra", opset=17, opsets={"graphmill": 1})
    q = b.input("q", "float32", [1, 2, 5, 4])
    b.output(b.op("RelativeAttention", q, q, q, b.const(np.zeros((15, 2), np.float32)), domain="graphmill",
                  height=2, width=3), "y")
    with pytest.raises(ShapeInferenceError, match="RelativeAttention.*5 positions; height 2 x width 3 is 6"):
        b.build()


def test_lowering_is_gather_and_add_before_softmax_and_runs_under_onnxruntime():
    import torch

    from graphmill.backends.torch import to_torch

    g = _graph(scale=0.3)
    low = lowered_copy(g)
    ops = [n.op_type for n in low.nodes]
    assert not any(n.domain == "graphmill" for n in low.nodes)
    assert ops.index("Gather") < ops.index("Add") < ops.index("Softmax")
    x = _inputs()
    got = ortb.run(g, x)["y"]  # ONNX Runtime runs the lowered copy
    table = torch.from_numpy(g.initializers["table"].const.numpy())
    want = independent_relative_attention(*(torch.from_numpy(x[k]) for k in "qkv"), table, H, W, 0.3).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    m = to_torch(g)  # the torch backend runs the graphmill op itself
    with torch.no_grad():
        np.testing.assert_allclose(m(**{k: torch.from_numpy(a) for k, a in x.items()}).numpy(), want,
                                   rtol=1e-5, atol=1e-5)
    # inspect counts the table once in the lowered graph too, not its [heads, L, L] gathered copy
    assert summarize(low).params == summarize(g).params == table_rows(H, W) * HEADS
    assert summarize(low).macs == summarize(g).macs
    # a bias that did not depend on the relative position (or was ignored) would not match: perturb it
    other = ortb.run(_graph(scale=0.3, table=np.zeros((table_rows(H, W), HEADS), np.float32)), x)["y"]
    assert np.abs(other - got).max() > 1e-2


def test_torch_lowering_trains_the_table_like_the_independent_implementation():
    import torch

    from graphmill.backends.torch import to_torch

    g = _graph()
    m = to_torch(g)
    params = dict(m.named_parameters())
    assert list(m.param_names.values()) == ["table"]  # the bias table is a weight
    x = {k: torch.from_numpy(a) for k, a in _inputs(seed=3).items()}
    m(**x).square().sum().backward()
    got = next(iter(params.values())).grad
    table = torch.from_numpy(g.initializers["table"].const.numpy()).clone().requires_grad_(True)
    independent_relative_attention(x["q"], x["k"], x["v"], table, H, W).square().sum().backward()
    assert got.abs().max() > 0
    torch.testing.assert_close(got, table.grad, rtol=1e-4, atol=1e-5)


def test_lowering_needs_known_shapes():
    from graphmill.passes.lowering import lower_graph

    b = GraphBuilder("ra", opset=17, opsets={"graphmill": 1})
    q = b.input("q", "float32", None)
    b.output(b.op("RelativeAttention", q, q, q, b.const(np.zeros((15, 2), np.float32)), domain="graphmill",
                  height=2, width=3), "y")
    g = b.build()
    with pytest.raises(UserInputError, match="rank and head size of Q must be known"):
        lower_graph(g)


def test_simulator_runs_the_op_as_its_lowering():
    """The simulator has no model of its own for the op: it simulates the lowering (the products on the array)."""
    import os

    import graphmill

    g = _graph(n=1)
    acc = graphmill.api.load_accel(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "accelerators",
                                                "edge.toml"))
    op, low = graphmill.simulate(g, acc).to_dict(), graphmill.simulate(lowered_copy(g), acc).to_dict()
    assert op["uncosted"] == [] and op["total_cycles"] == low["total_cycles"] > 0
    assert [r["op"] for r in op["layers"]] == [r["op"] for r in low["layers"]]
    assert sum(r["op"] == "MatMul" for r in op["layers"]) == 2


def test_rank_2_queries_without_a_heads_axis_are_refused():
    """Q [L, d] has no heads axis for the [heads, L, L] bias: the lowering (and torch) then return
    [heads, L, dv] while inference said [L, dv] (ONNX Runtime gave (2, 4, 8) for a declared [4, 8])."""
    b = GraphBuilder("ra", opset=17, opsets={"graphmill": 1})
    q = b.input("q", "float32", [4, 8])
    b.output(b.op("RelativeAttention", q, q, q, b.const(np.zeros((9, 2), np.float32)), domain="graphmill",
                  height=2, width=2), "y")
    with pytest.raises(ShapeInferenceError, match=r"RelativeAttention.*Q has rank 2; expected \[\.\.\., heads, L, d\]"):
        b.build()
