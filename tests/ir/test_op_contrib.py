"""com.microsoft ops graphmill's ``ort`` schedule emits: inferred shapes and MACs against ONNX Runtime.

Reference: ONNX Runtime executing the op. With all-ones operands (no padding, no bias, alpha 1) every
output element of FusedMatMul / FusedConv / FusedGemm is the count of its multiply-accumulates, so the
output's shape is the shape to infer and its sum is the MAC count.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

from graphmill.frontend import from_proto
from graphmill.ir.ops import infer_types, lookup


def _run_one(op, shapes, **attrs):
    names = [f"i{k}" for k in range(len(shapes))]
    node = oh.make_node(op, names, ["y"], domain="com.microsoft", **attrs)
    g = oh.make_graph([node], "g", [oh.make_tensor_value_info(n, TP.FLOAT, s) for n, s in zip(names, shapes)],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.microsoft", 1)])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {n: np.ones(s, np.float32) for n, s in zip(names, shapes)})
    graph = from_proto(model)
    graph.outputs[0].type = None
    infer_types(graph, strict=True)
    return y, graph.nodes[0]


@pytest.mark.parametrize("a,b,attrs", [
    ((2, 3, 4), (2, 4, 5), {}),
    ((2, 4, 3), (4, 5), {"transA": 1}),
    ((3, 4), (2, 5, 4), {"transB": 1}),
    ((3, 2, 4), (2, 4, 5), {"transBatchA": 1}),          # A read as [2, 3, 4]
    ((2, 3, 4), (4, 2, 5), {"transBatchB": 1}),          # B read as [2, 4, 5]
    ((4, 2, 3), (5, 2, 4), {"transBatchA": 1, "transA": 1, "transBatchB": 1, "transB": 1}),
])
def test_fused_matmul_shape_and_macs(a, b, attrs):
    y, node = _run_one("FusedMatMul", [a, b], **attrs)
    assert tuple(node.outputs[0].type.shape) == y.shape
    cost = lookup(node.domain, node.op_type).cost(node)
    assert cost.known and cost.macs == int(y.sum())


def test_fused_conv_and_gemm_count_like_conv_and_gemm():
    y, node = _run_one("FusedConv", [(1, 3, 6, 6), (4, 3, 3, 3)], activation="Relu")
    assert tuple(node.outputs[0].type.shape) == y.shape
    assert lookup(node.domain, node.op_type).cost(node).macs == int(y.sum())
    y, node = _run_one("FusedGemm", [(3, 5), (4, 5)], transB=1, activation="Relu")
    assert tuple(node.outputs[0].type.shape) == y.shape
    assert lookup(node.domain, node.op_type).cost(node).macs == int(y.sum())


def test_onnx_runtimes_quantized_ops_shapes_and_types_equal_what_it_executes(tmp_path):
    """ONNX Runtime's quantizer writes QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu,
    QLinearGlobalAveragePool, QLinearConcat and QGemm in its QOperator format; without registry entries the shapes
    stopped at the first of them and simulate refused the model (an outside check). Reference: every such node's
    output as ONNX Runtime executes it (shape and element type), on a CNN it quantized itself."""
    import onnx
    import torch
    from onnxruntime import quantization

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(3, 8, 1)
            self.fc = torch.nn.Linear(16, 5)

        def forward(self, x):
            y = torch.nn.functional.leaky_relu(self.a(x)) + torch.sigmoid(self.b(x)) * self.b(x)
            pooled = torch.nn.functional.adaptive_avg_pool2d(torch.cat([y, self.a(x)], 1), 1).flatten(1)
            return self.fc(pooled)

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    torch.onnx.export(Net().eval(), (torch.randn(2, 3, 8, 8),), str(tmp_path / "f.onnx"), dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["y"])
    from tests.support.quantization import quantize_static

    quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), "x", (2, 3, 8, 8), batches=3,
                    quant_format=quantization.QuantFormat.QOperator)
    model = onnx.load(str(tmp_path / "q.onnx"))
    contrib = [n for n in model.graph.node if n.domain == "com.microsoft"]
    ops = {n.op_type for n in contrib}
    assert {"QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearGlobalAveragePool",
            "QLinearConcat", "QGemm"} <= ops, ops
    names = [n.output[0] for n in contrib]
    model.graph.output.extend(oh.make_empty_tensor_value_info(name) for name in names)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    executed = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
        names, {"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)})
    graph = from_proto(onnx.load(str(tmp_path / "q.onnx")))
    report = infer_types(graph)
    assert not report.unknown_ops and not report.errors, report
    types = {o.name: o.type for n in graph.nodes for o in n.outputs if o is not None}
    for name, value in zip(names, executed):
        assert tuple(types[name].shape) == value.shape and types[name].dtype.numpy() == value.dtype, name


def test_onnx_runtimes_dynamic_quantize_lstm_counts_as_the_lstm_it_quantizes(tmp_path):
    """quantize_dynamic turns an LSTM into com.microsoft DynamicQuantizeLSTM, which had no registry entry: inspect
    counted a quantized LSTM model at 1/40 of its float MACs (an outside check). Reference: ONNX Runtime's executed
    output shapes and the LSTM MAC formula by hand, steps x batch x 4 x hidden x (input + hidden)."""
    import onnx
    import torch
    from onnxruntime import quantization

    import graphmill

    torch.manual_seed(0)
    torch.onnx.export(torch.nn.LSTM(16, 24).eval(), (torch.randn(5, 2, 16),), str(tmp_path / "f.onnx"),
                      dynamo=False, opset_version=17, input_names=["x"], output_names=["y", "h", "c"])
    quantization.quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"))
    model = onnx.load(str(tmp_path / "q.onnx"))
    node, = [n for n in model.graph.node if n.domain == "com.microsoft"]
    assert node.op_type == "DynamicQuantizeLSTM"
    names = [o for o in node.output if o and o not in {v.name for v in model.graph.output}]
    model.graph.output.extend(oh.make_empty_tensor_value_info(o) for o in names)
    executed = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        list(node.output), {"x": np.ones((5, 2, 16), np.float32)})
    graph = graphmill.load(str(tmp_path / "q.onnx"))
    report = graphmill.inspect(graph)
    assert report["macs"] == 5 * 2 * 4 * 24 * (16 + 24) and not report["ops_without_cost"]
    lstm = next(n for n in graph.nodes if n.op_type == "DynamicQuantizeLSTM")
    assert [tuple(o.type.shape) for o in lstm.outputs] == [y.shape for y in executed]
