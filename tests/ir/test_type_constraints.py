"""Inputs bound to one ONNX type parameter share one element type (``ir.ops.type_constraints``).

References: onnx's operator schemas (``onnx.defs``: the table must name, for every op, input positions that one
type parameter binds, and ONNX Runtime refuses a model that breaks it (an outside check: a float32 x float64
MatMul passed graphmill's build, verify and save, and ONNX Runtime then refused the file).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.defs
import onnxruntime as ort
import pytest

import graphmill
from graphmill.errors import ShapeInferenceError
from graphmill.frontend import to_proto
from graphmill.ir.builder import GraphBuilder
from graphmill.ir.ops.type_constraints import SHARED_TYPE_INPUTS


@pytest.mark.parametrize("op", sorted(SHARED_TYPE_INPUTS))
def test_the_table_follows_onnx_schemas(op):
    schema = onnx.defs.get_schema(op, onnx.defs.onnx_opset_version(), "")
    formal = [(f.type_str, f.option == onnx.defs.OpSchema.FormalParameterOption.Variadic) for f in schema.inputs]
    positions = SHARED_TYPE_INPUTS[op]
    if positions is None:  # every input: one type parameter over all of them (a homogeneous variadic, or all T)
        assert len({t for t, _ in formal}) == 1 and all(f.is_homogeneous for f in schema.inputs), formal
    else:
        assert len({formal[i][0] for i in positions}) == 1, (op, positions, formal)


def _mixed_matmul():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 4])
    b.output(b.MatMul(x, np.ones((4, 3)) / np.sqrt(4.0)), "y")  # numpy 2: float64 weights without a word
    return b


def test_build_refuses_mixed_element_types_and_onnx_runtime_agrees():
    b = _mixed_matmul()
    with pytest.raises(ShapeInferenceError, match=r"MatMul node .*: input 1 \(%\w+\) is float64 but input 0 \(%x\) is "
                                                   r"float32; MatMul takes one element type for both"):
        b.build()
    with pytest.raises(Exception, match="bound to different types"):  # why: ONNX Runtime refuses the model
        ort.InferenceSession(to_proto(b.build(infer=False, verify=False)).SerializeToString(),
                             providers=["CPUExecutionProvider"])


def test_inspect_lists_the_mismatch_of_a_loaded_file(tmp_path):
    g = _mixed_matmul().build(infer=False, verify=False)
    path = tmp_path / "m.onnx"
    onnx.save(to_proto(g), path)
    problems = graphmill.inspect(graphmill.load(path))["problems"]
    assert any("float64 but input 0 (%x) is float32" in p for p in problems), problems


def test_distinct_type_parameters_and_other_domains_are_not_checked():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 3])
    y = b.Pow(x, np.int64(2))  # Pow(T, T1): a float base, an integer exponent
    y = b.Where(b.Greater(y, np.float32(1)), y, np.float32(0))  # Where(bool, T, T)
    b.output(b.Expand(y, np.array([2, 3], np.int64)), "y")  # Expand(T, int64 shape)
    g = b.build()
    assert [n.op_type for n in g.nodes] == ["Pow", "Greater", "Where", "Expand"]
