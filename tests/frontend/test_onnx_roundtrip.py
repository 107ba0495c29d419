"""Lossless ONNX import/export, judged on the backend test corpus shipped in the onnx wheel.

References: the corpus's own expected outputs (run under ONNX Runtime) and
onnx.checker.check_model(full_check=True); for losslessness, the original proto itself.
"""

from __future__ import annotations

import onnx
import pytest

from graphmill.frontend import from_proto, load, to_proto
from graphmill.frontend.onnx_io import clear_default_presence
from graphmill.testing.onnx_corpus import iter_cases, run_corpus, summarize


@pytest.mark.slow
def test_roundtrip_passes_wherever_the_original_passes():
    results = run_corpus()
    s = summarize(results)
    assert s["cases"] > 2000, "the onnx wheel's corpus should have ~2,000 cases"
    regressed = [(r.name, r.transform_error or r.new_ort_error or r.new_check_error) for r in results if r.regressed]
    assert regressed == []
    # case by case, not just in total
    for r in results:
        assert r.new_ort == r.orig_ort, r.name
        assert r.new_check == r.orig_check, r.name
    assert s["new_ort_pass"] >= s["orig_ort_pass"]
    # ORT's own rate on the originals here is ~80%; a collapse would mean the harness broke
    assert s["orig_ort_pass"] / s["cases"] > 0.7


@pytest.mark.slow
def test_roundtrip_is_proto_equal_on_every_case():
    """Import -> export gives back the same proto (explicit-default field presence aside)."""
    mismatched = []
    n = 0
    for case in iter_cases():
        original = case.load_proto()
        if case.path is not None:
            exported = to_proto(load(case.path))
        else:
            exported = to_proto(from_proto(original, path=case.name))
        expected = onnx.ModelProto()
        expected.CopyFrom(original)
        clear_default_presence(expected)
        clear_default_presence(exported)
        n += 1
        if exported != expected:
            mismatched.append(case.name)
    assert n > 2000
    assert mismatched == []


def test_clear_default_presence_only_drops_defaults():
    m = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                                      [onnx.helper.make_tensor_value_info("x", 1, [2])],
                                                      [onnx.helper.make_tensor_value_info("y", 1, [2])]))
    m.doc_string = ""
    a = onnx.ModelProto()
    a.CopyFrom(m)
    clear_default_presence(a)
    assert not a.HasField("doc_string")
    assert a.graph.node[0].op_type == "Relu" and a.ir_version == m.ir_version


def test_text_form_is_stable_across_a_round_trip(light_dir, tmp_path):
    """The printer is meant for diffing: the same model prints the same text after save and reload."""
    import os

    import graphmill

    for name in ("light_resnet50.onnx", "light_inception_v1.onnx"):
        g = graphmill.load(os.path.join(light_dir, name))
        graphmill.save(g, tmp_path / name)
        again = graphmill.load(tmp_path / name)
        assert str(again) == str(g)
        assert str(g).count("\n") > len(g)  # one line per node at least


def _relu_chain_with_value_info(order: list[str]) -> onnx.ModelProto:
    h = onnx.helper
    nodes = [h.make_node("Add", ["x", "w"], ["a"]), h.make_node("Relu", ["a"], ["b"]), h.make_node("Neg", ["b"], ["y"])]
    w = h.make_tensor("w", onnx.TensorProto.FLOAT, [2], [1.0, 2.0])
    infos = {"w": h.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [2]),
             "a": h.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [2]),
             "b": h.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [2])}
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])], [w],
                     value_info=[infos[n] for n in order])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize("order", [["w", "a", "b"], ["b", "a", "w"], ["a", "w", "b"]])
def test_value_info_keeps_the_files_order(order):
    """torch's dynamo exporter lists initializers' value_info first; save moved them after the intermediates (an
    outside check). Reference: the input proto."""
    m = _relu_chain_with_value_info(order)
    assert [vi.name for vi in to_proto(from_proto(m)).graph.value_info] == order


@pytest.mark.parametrize("where", ["graph", "node", "model", "value"])
def test_repeated_metadata_key_is_refused_naming_where(where):
    """ONNX: metadata keys should be distinct. A dict kept the last value and dropped the others silently (the
    checker accepts repeats below the model). Reference: onnx's ModelProto/NodeProto field documentation."""
    from graphmill.ir import UserInputError

    m = _relu_chain_with_value_info(["a"])
    target = {"graph": m.graph, "node": m.graph.node[1], "model": m, "value": m.graph.value_info[0]}[where]
    for v in ("1", "2"):
        target.metadata_props.add(key="dup", value=v)
    with pytest.raises(UserInputError, match=r"metadata_props repeats key 'dup'"):
        from_proto(m, path="m.onnx")
