"""``serialize_model`` writes the very bytes of ``to_proto(g).SerializeToString()``.

Reference: protobuf's own serialization of the exported ModelProto, on hand-made graphs and on
every model of the onnx wheel's backend test corpus (as imported, and after fold-constants has
replaced nodes by numpy-held constants).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import graphmill
from graphmill.frontend import from_proto, load, to_proto
from graphmill.frontend.onnx_export import serialize_model
from graphmill.ir import DataType, Tensor
from graphmill.passes import run_passes
from graphmill.testing.onnx_corpus import iter_cases


def _joined(g) -> bytes:
    return b"".join(bytes(c) for c in serialize_model(g))


def _model() -> onnx.ModelProto:
    then_g = helper.make_graph([helper.make_node("Add", ["x", "inner"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", 1, [2])],
                               [numpy_helper.from_array(np.ones(2, np.float32), "inner")])
    else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", 1, [2])])
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([5.0], np.float32), "sp"),
                                       numpy_helper.from_array(np.array([1], np.int64)), [2])
    w = numpy_helper.from_array(np.arange(2, dtype=np.float32), "w")
    w.doc_string = "a weight"
    g = helper.make_graph(
        [helper.make_node("If", ["c"], ["r"], then_branch=then_g, else_branch=else_g),
         helper.make_node("Mul", ["r", "w"], ["m"]), helper.make_node("Add", ["m", "sp"], ["y"])],
        "g", [helper.make_tensor_value_info("x", 1, [2]), helper.make_tensor_value_info("c", 9, [])],
        [helper.make_tensor_value_info("y", 1, [2])], [w], sparse_initializer=[sparse])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(m, {"k": "v"})
    return m


def test_bytes_equal_for_imported_created_and_renamed_tensors(tmp_path):
    g = from_proto(_model())
    assert _joined(g) == to_proto(g).SerializeToString()
    # tensors a pass would create: every element type numpy holds, packed int4, strings, empty, 0-d
    for i, arr in enumerate([np.arange(6, dtype=np.float16).reshape(2, 3).T, np.array(2.5), np.zeros((0, 3)),
                             np.array([True, False]), np.arange(4).astype(ml_dtypes.bfloat16),
                             np.arange(3).astype(ml_dtypes.int4), np.array(["a", "bc"], dtype=object),
                             np.arange(5, dtype=np.uint64)]):
        g.add_initializer(Tensor(arr, doc_string="made" if i % 2 else "", metadata_props={"i": str(i)}), f"new{i}")
    g.add_initializer(Tensor(np.arange(3, dtype=np.int64), dtype=DataType.INT32), "declared_int32")
    renamed = g.initializers.pop("w")
    renamed.name = "w2"
    g.initializers["w2"] = renamed  # an imported tensor exported under another name
    assert _joined(g) == to_proto(g).SerializeToString()
    graphmill.save(g, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == to_proto(g).SerializeToString()


def test_ir3_graph_with_no_initializers_or_name():
    g = from_proto(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "",
                                                       [helper.make_tensor_value_info("x", 1, [2])],
                                                       [helper.make_tensor_value_info("y", 1, [2])]),
                                     opset_imports=[helper.make_opsetid("", 9)], ir_version=3))
    assert _joined(g) == to_proto(g).SerializeToString()
    g.add_initializer(Tensor(np.ones(3, np.float32)), "folded")  # listed as an input too below IR 4
    assert _joined(g) == to_proto(g).SerializeToString()


@pytest.mark.slow
def test_bytes_equal_on_the_corpus_as_loaded_and_after_folding():
    n = 0
    for case in iter_cases():
        g = load(case.path) if case.path is not None else from_proto(case.load_proto(), path=case.name)
        assert _joined(g) == to_proto(g).SerializeToString(), case.name
        try:
            run_passes(g, "fold-constants")
        except Exception:  # noqa: BLE001 -- a case fold-constants refuses says nothing about serializing
            continue
        assert _joined(g) == to_proto(g).SerializeToString(), case.name
        n += 1
    assert n > 1500


# -- loading with the weights' bytes set aside (onnx_wire.carve_weights) -------------------------

WEIGHTS = {  # name -> array: every element type, packed int4, 0-d, empty, a float16 transpose
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3), "f16": np.arange(6, dtype=np.float16).reshape(3, 2).T,
    "bf16": np.arange(4).astype(ml_dtypes.bfloat16), "i4": np.arange(-3, 3).astype(ml_dtypes.int4),
    "f8": np.arange(3).astype(ml_dtypes.float8_e4m3fn), "b": np.array([True, False, True]),
    "scalar": np.array(7, np.int64), "empty": np.zeros((0, 2), np.float64), "u16": np.arange(5, dtype=np.uint16),
}


def _weights_model() -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.ascontiguousarray(a), n) for n, a in WEIGHTS.items()]
    inits.append(helper.make_tensor("typed", onnx.TensorProto.FLOAT, [2], [1.5, 2.5]))  # float_data, no raw
    inits.append(helper.make_tensor("strings", onnx.TensorProto.STRING, [2], [b"a", b"bc"]))
    nodes = [helper.make_node("Identity", [t.name], [t.name + "_out"]) for t in inits]
    g = helper.make_graph(nodes, "w", [], [helper.make_tensor_value_info(t.name + "_out", t.data_type, None)
                                           for t in inits], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def test_load_sets_weights_aside_and_decodes_them_as_onnx_does(tmp_path):
    from graphmill.frontend.onnx_tensors import OnnxTensorSource

    m = _weights_model()
    path = tmp_path / "w.onnx"
    path.write_bytes(m.SerializeToString())
    g = load(path)
    set_aside = {n for n, v in g.initializers.items() if v.const.source.raw is not None}
    assert set_aside == set(WEIGHTS)  # float_data and strings stay in the proto
    for tp in m.graph.initializer:
        want = numpy_helper.to_array(tp)
        got = g.initializers[tp.name].const.numpy()
        assert got.dtype == want.dtype and got.shape == want.shape, tp.name
        assert got.tolist() == want.tolist() if got.dtype == object else got.tobytes() == want.tobytes(), tp.name
        src = g.initializers[tp.name].const.source
        assert isinstance(src, OnnxTensorSource) and src.inline_proto() == tp
    assert to_proto(g) == to_proto(from_proto(m))  # as if parsed whole
    assert _joined(g) == to_proto(g).SerializeToString()
    out = tmp_path / "out.onnx"
    graphmill.save(g, out)
    assert out.read_bytes() == m.SerializeToString()  # untouched: the same file


def test_carve_refuses_what_protobuf_would_merge():
    from graphmill.frontend.onnx_wire import carve_weights, field_key, varint

    data = _weights_model().SerializeToString()
    skeleton, raws = carve_weights(data)
    assert len(raws) == len(WEIGHTS) + 2 and sum(r is not None for r in raws) == len(WEIGHTS)
    assert onnx.ModelProto.FromString(skeleton).graph.initializer[0].raw_data == b""
    twice = data + field_key(7) + varint(0)  # a second graph field: protobuf merges the two
    assert carve_weights(twice) is None
    t = numpy_helper.from_array(np.ones(2, np.float32), "t").SerializeToString()
    t += field_key(9) + varint(8) + np.zeros(2, np.float32).tobytes()  # raw_data twice: the last wins
    g = onnx.GraphProto(name="g").SerializeToString() + field_key(5) + varint(len(t)) + t
    m = onnx.ModelProto(ir_version=8).SerializeToString() + field_key(7) + varint(len(g)) + g
    _, raws = carve_weights(m)
    assert raws == [None]
    with pytest.raises(ValueError):
        carve_weights(data[:-3])
