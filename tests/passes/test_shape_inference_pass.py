"""The shape-inference pass asks onnx's inference (a protobuf export of the whole graph) only about
ops the op registry has no entry for.

References: onnx's own inference (``onnx.shape_inference.infer_shapes(..., data_prop=True)``, what
``OnnxShapeInferencer`` runs) for what the registry must match: optimizing with the registry alone
must leave exactly the graph that optimizing with onnx's answers merged at every shape-inference
pass leaves (same nodes, same op histogram). The model is a dynamic-axes TorchScript export of
``torch.nn.TransformerEncoder`` (``torch.onnx.export(..., dynamo=False, dynamic_axes={batch, seq})``),
whose attention reshapes get their targets from Shape -> Gather/Slice -> Mul/Div -> Cast -> Concat
subgraphs; before the registry carried unknown entries through Concat, it left 6 more nodes on this
2-layer model and the pass asked onnx twice per optimize (four protobuf exports with inspect's
before/after figures).
"""

from __future__ import annotations

import collections
import warnings

import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphmill
from graphmill.frontend import from_proto
from graphmill.frontend.onnx_shape_inference import OnnxShapeInferencer, refine_with_onnx
from graphmill.ir import TensorType
from graphmill.ir.ops import InferenceReport
from graphmill.passes import PassContext, PassManager
from graphmill.passes.cleanup.shape_inference import ShapeInference


class OnnxCalls:
    """Counts ``OnnxShapeInferencer.refine`` calls and every protobuf round trip through
    ``onnx.shape_inference.infer_shapes`` for shapes while installed (``protobuf``), apart from the type checks
    (``strict_mode``: ``type_checks``), which optimize runs once on its result as a verification, not to infer
    shapes (0.02-0.04 s on BERT-base and EfficientNet-B7)."""

    def __init__(self, monkeypatch) -> None:
        self.refine = 0
        self.protobuf = 0
        self.type_checks = 0
        refine, infer = OnnxShapeInferencer.refine, onnx.shape_inference.infer_shapes

        def counting_refine(inferencer, graph, report):
            self.refine += 1
            return refine(inferencer, graph, report)

        def counting_infer(*args, **kwargs):
            if kwargs.get("strict_mode"):
                self.type_checks += 1
            else:
                self.protobuf += 1
            return infer(*args, **kwargs)

        monkeypatch.setattr(OnnxShapeInferencer, "refine", counting_refine)
        monkeypatch.setattr(onnx.shape_inference, "infer_shapes", counting_infer)


@pytest.fixture(scope="module")
def dynamic_transformer(tmp_path_factory) -> str:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.1, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    path = str(tmp_path_factory.mktemp("tenc") / "tenc_dynamic.onnx")
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # else one fused aten op ONNX lacks
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(2, 16, 64),), path, dynamo=False, opset_version=17,
                              input_names=["src"], output_names=["out"], do_constant_folding=True,
                              dynamic_axes={"src": {0: "batch", 1: "seq"}, "out": {0: "batch", 1: "seq"}})
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return path


def _histogram(g) -> collections.Counter:
    return collections.Counter(n.op_type for n in g.nodes)


def test_optimize_of_a_dynamic_axes_transformer_export_asks_onnx_no_shapes(dynamic_transformer, monkeypatch):
    g = graphmill.load(dynamic_transformer)
    assert {"Shape", "Gather", "Concat", "Reshape"} <= set(_histogram(g))  # the dynamic shape subgraphs are there
    calls = OnnxCalls(monkeypatch)
    graphmill.optimize(g)
    assert (calls.refine, calls.protobuf, calls.type_checks) == (0, 0, 1)  # the one check of the result
    assert "batch" in g.inputs[0].type.shape and "seq" in g.inputs[0].type.shape


def test_registry_alone_loses_nothing_against_onnx_at_every_shape_inference(dynamic_transformer, monkeypatch):
    """The reference run merges onnx's answers about every open value at each shape-inference pass
    (what the pass did before it asked only about unregistered ops); the result must be the same."""
    ours = graphmill.load(dynamic_transformer)
    graphmill.optimize(ours)

    run = ShapeInference.run

    def run_then_ask_onnx(self, graph, ctx):
        result = run(self, graph, ctx)
        refine_with_onnx(graph, InferenceReport())
        return result

    monkeypatch.setattr(ShapeInference, "run", run_then_ask_onnx)
    ref = graphmill.load(dynamic_transformer)
    graphmill.optimize(ref)
    assert len(ours.nodes) == len(ref.nodes) and _histogram(ours) == _histogram(ref)
    assert len(ours.nodes) < 150  # the fusions fired (raw export: 328 nodes; 130 after optimize)


def test_optimize_of_a_zoo_model_asks_onnx_no_shapes(monkeypatch):
    from graphmill.frontend.zoo import build

    g = build("bert_base")
    calls = OnnxCalls(monkeypatch)
    graphmill.optimize(g)
    assert (calls.refine, calls.protobuf, calls.type_checks) == (0, 0, 1)  # the one check of the result


def _det_relu_graph():
    """Det has no registry entry (Einsum was the example until it got one); onnx infers it, and the registry
    then types the Relu after it."""
    model = oh.make_model(oh.make_graph(
        [oh.make_node("Det", ["a"], ["e"]), oh.make_node("Relu", ["e"], ["y"])], "g",
        [oh.make_tensor_value_info("a", TP.FLOAT, ["N", 5, 3, 3])],
        [oh.make_tensor_value_info("y", TP.FLOAT, None)]), opset_imports=[oh.make_opsetid("", 18)])
    return from_proto(model)


def test_an_op_without_a_registry_entry_still_asks_onnx_once_and_the_registry_follows(monkeypatch):
    g = _det_relu_graph()
    calls = OnnxCalls(monkeypatch)
    res = PassManager("shape-inference", ctx=PassContext(shape_inferencer=OnnxShapeInferencer())).run(g)
    assert (calls.refine, calls.protobuf) == (1, 1) and res.records[0].stats["fallback"] == 1
    det, relu = g.nodes
    assert det.outputs[0].type == TensorType(det.inputs[0].type.dtype, ("N", 5))  # onnx's answer
    assert relu.outputs[0].type == TensorType(det.inputs[0].type.dtype, ("N", 5))  # the registry, after it


def test_infer_shapes_follows_the_same_rule(monkeypatch):
    from graphmill.frontend.zoo import build

    calls = OnnxCalls(monkeypatch)
    graphmill.infer_shapes(build("resnet18"))
    assert calls.protobuf == 0
    g = _det_relu_graph()
    graphmill.infer_shapes(g)
    assert calls.protobuf == 1 and g.nodes[1].outputs[0].type.shape == ("N", 5)
