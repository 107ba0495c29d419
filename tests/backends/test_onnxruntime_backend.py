"""The ONNX Runtime backend: running, timing, comparing. Reference: numpy on the same math,
and the onnx wheel's light ResNet-50 with its shipped expected output."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.ir import ExecutionError, UserInputError
from graphmill.frontend import from_proto
from graphmill.ir.builder import GraphBuilder


def mlp(seed: int = 0):
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 16)).astype(np.float32)
    w2 = rng.standard_normal((16, 3)).astype(np.float32)
    b = GraphBuilder("mlp")
    x = b.input("x", "float32", ["N", 8])
    y = b.MatMul(b.Relu(b.MatMul(x, b.const(w1, "w1"))), b.const(w2, "w2"))
    b.output(y, "y")
    return b.build(), w1, w2


def test_run_matches_numpy():
    g, w1, w2 = mlp()
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    y = ortb.run(g, {"x": x}, ortb.OrtOptions(intra_op_threads=1))["y"]
    np.testing.assert_allclose(y, np.maximum(x @ w1, 0) @ w2, rtol=1e-5, atol=1e-5)
    y2 = ortb.run(g, [x], ortb.OrtOptions(optimization="disabled"))["y"]
    np.testing.assert_allclose(y, y2, rtol=1e-6)


def test_light_resnet50_gives_the_shipped_expected_output(light_dir):
    """Reference: light_resnet50_output_0.pb shipped in the onnx wheel, inputs made as onnx's runner makes them."""
    from onnx.backend.test.runner import Runner

    path = os.path.join(light_dir, "light_resnet50.onnx")
    g = graphmill.load(path)
    proto = onnx.load(path)
    x = Runner.generate_dummy_data(proto.graph.input[0], seed=0, random=False)
    want = numpy_helper.to_array(onnx.load_tensor(os.path.join(light_dir, "light_resnet50_output_0.pb")))
    got = next(iter(ortb.run(g, {proto.graph.input[0].name: x}).values()))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7)


def test_random_inputs_are_seeded_and_follow_symbols():
    g, *_ = mlp()
    a = ortb.random_inputs(g, seed=3, dims={"N": 7})
    b = ortb.random_inputs(g, seed=3, dims={"N": 7})
    assert a["x"].shape == (7, 8) and a["x"].dtype == np.float32
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], ortb.random_inputs(g, seed=4, dims={"N": 7})["x"])


def test_compare_names_the_output_that_diverged():
    g, *_ = mlp()
    h = g.copy()
    w2 = h.initializers["w2"]
    from graphmill.ir import Tensor

    w2.const = Tensor(w2.const.numpy() * 1.01)
    same = ortb.compare(g, g.copy(), rtol=0, atol=0)
    assert same.ok and same.max_abs == 0.0
    diff = ortb.compare(g, h, rtol=1e-4, atol=1e-5)
    assert not diff.ok
    assert diff.first_mismatch.name == "y" and diff.first_mismatch.max_abs > 1e-3


def test_compare_outputs_handles_nan_and_shape():
    a = {"y": np.array([1.0, np.nan], np.float32)}
    assert ortb.compare_outputs(a, {"y": np.array([1.0, np.nan], np.float32)}, rtol=0, atol=0).ok
    assert not ortb.compare_outputs(a, {"y": np.array([1.0, 2.0], np.float32)}, rtol=0, atol=0).ok
    bad = ortb.compare_outputs(a, {"y": np.zeros(3, np.float32)}, rtol=0, atol=0)
    assert not bad.ok and "shape" in bad.outputs[0].note


def test_sequences_and_empty_optionals_are_compared_as_onnx_runtime_gives_them(tmp_path):
    """ONNX Runtime gives a sequence output as a list of arrays of their own shapes (np.asarray of [1, 2]-wide
    pieces failed with a traceback in optimize's comparison) and an empty optional as None (identical models were
    "missing in the second graph", exit 1): outside checks. Reference: ONNX Runtime's own results for a
    SplitToSequence and an empty Optional, compared with themselves and with changed copies."""
    from onnx import TensorProto as TP
    from onnx import helper as oh

    model = oh.make_model(oh.make_graph(
        [oh.make_node("SplitToSequence", ["x", "sp"], ["s"], axis=1),
         oh.make_node("Optional", [], ["e"], type=oh.make_tensor_type_proto(TP.FLOAT, None))], "g",
        [oh.make_tensor_value_info("x", TP.FLOAT, ["N", 3])],
        [onnx.ValueInfoProto(name="s"), onnx.ValueInfoProto(name="e")],
        initializer=[numpy_helper.from_array(np.array([1, 2], np.int64), "sp")]),
        opset_imports=[oh.make_opsetid("", 18)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    g = graphmill.load(path)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = dict(zip(("s", "e"), ortb.OrtSession(g).run({"x": x}).values()))
    assert [p.shape for p in got["s"]] == [(2, 1), (2, 2)] and got["e"] is None  # what ONNX Runtime gives
    assert ortb.compare_outputs(got, got, rtol=0, atol=0).ok
    changed = {"s": [got["s"][0], got["s"][1] + 1], "e": None}
    bad = ortb.compare_outputs(got, changed, rtol=0, atol=0)
    assert not bad.ok and bad.first_mismatch.name == "s" and bad.first_mismatch.max_abs == 1.0
    assert not ortb.compare_outputs(got, {"s": got["s"][:1], "e": None}, rtol=0, atol=0).ok
    one = ortb.compare_outputs(got, {"s": got["s"], "e": np.zeros(1, np.float32)}, rtol=0, atol=0)
    assert not one.ok and "empty optional in the first graph only" in one.first_mismatch.note
    assert ortb.compare(g, g.copy(), {"x": x}).ok  # optimize's comparison, end to end


def test_an_output_turned_all_nan_is_a_mismatch_without_numpy_warnings():
    """numpy's nanmax warned "All-NaN slice encountered" on stderr, in the middle of optimize's one-line error (an
    outside check). Reference: hand-made arrays."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ortb.compare_outputs({"y": np.ones(3, np.float32)}, {"y": np.full(3, np.nan, np.float32)}, rtol=0,
                                   atol=0).outputs[0]
    assert not got.ok and got.note == "NaN positions differ" and np.isnan(got.max_abs)


def test_scaled_atol_is_in_units_of_the_outputs_largest_magnitude():
    # reference: numpy.allclose (the per-element test) and hand arithmetic on a 2-element output of scale 100
    ref = {"y": np.array([100.0, 0.1], np.float32)}
    rounding = {"y": np.array([100.0, 0.1 + 5e-5], np.float32)}  # 5e-7 of the output's scale
    assert not np.allclose(rounding["y"], ref["y"], rtol=1e-4, atol=1e-5)  # what a per-element test says
    assert not ortb.compare_outputs(ref, rounding, rtol=1e-4, atol=1e-5).ok  # the default is numpy.allclose
    c = ortb.compare_outputs(ref, rounding, rtol=1e-4, atol=1e-5, scale_atol=True)
    assert c.ok and c.outputs[0].scale == 100.0
    assert c.to_dict()["tolerance"] == "atol=1e-05*max(1,max|ref|) + rtol=0.0001*|ref|"
    assert ortb.compare_outputs(ref, rounding, rtol=1e-4, atol=1e-5).tolerance == "atol=1e-05 + rtol=0.0001*|ref|"
    wrong = {"y": np.array([100.0, 0.1 + 2e-3], np.float32)}  # 2e-5 of the scale: beyond 1e-5 * 100 + 1e-4 * 0.1
    assert not ortb.compare_outputs(ref, wrong, rtol=1e-4, atol=1e-5, scale_atol=True).ok
    # outputs of magnitude up to 1: exactly numpy.allclose
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = rng.uniform(-1, 1, 8).astype(np.float32)
        b = (a + rng.normal(0, 2e-5, 8)).astype(np.float32)
        assert ortb.compare_outputs({"y": a}, {"y": b}, rtol=1e-4, atol=1e-5, scale_atol=True).ok == bool(
            np.all(np.abs(b.astype(np.float64) - a) <= 1e-5 + 1e-4 * np.abs(a.astype(np.float64))))


def test_time_graph_reports_ordered_quantiles():
    g, *_ = mlp()
    t = ortb.time_graph(g, runs=7, warmup=1, options=ortb.OrtOptions(intra_op_threads=1))
    assert t.runs == 7 and t.p10_ms <= t.median_ms <= t.p90_ms and t.median_ms > 0


def test_time_graphs_interleaves_the_runs(monkeypatch):
    """A before/after pair timed one after the other measured the machine's drift too (the demo's optimized model
    came out slower every time; an outside check): the runs alternate. Reference: the order of the sessions' runs,
    recorded."""
    g, *_ = mlp()
    order = []
    real = ortb.OrtSession.run

    def run(self, feeds):
        order.append(id(self))
        return real(self, feeds)

    monkeypatch.setattr(ortb.OrtSession, "run", run)
    a, b = ortb.time_graphs([g, g.copy()], ortb.random_inputs(g, seed=0), runs=4, warmup=1)
    assert len(order) == 10 and order[0] != order[1] and order == order[:2] * 5
    assert a.runs == b.runs == 4 and a.median_ms > 0 and b.median_ms > 0


def test_errors_are_graphmill_errors():
    g, *_ = mlp()
    with pytest.raises(UserInputError, match="missing input"):
        ortb.run(g, {})
    with pytest.raises(UserInputError, match="optimization level"):
        ortb.run(g, {"x": np.zeros((1, 8), np.float32)}, ortb.OrtOptions(optimization="max"))
    with pytest.raises(UserInputError, match="provider"):
        ortb.OrtSession(g, ortb.OrtOptions(provider="NoSuchExecutionProvider"))
    with pytest.raises(ExecutionError, match="mlp"):
        ortb.run(g, {"x": np.zeros((1, 9), np.float32)})


def test_float16_outputs_are_compared_at_their_own_precision_and_exactly_when_asked():
    """A float16 Div folded to the correctly rounded value was "outputs differ" (optimize exit 1): ONNX Runtime's
    float16 kernel is one unit in the last place off, and the default rtol 1e-4 is below float16's 2^-10 (an outside
    check). Reference: the values from that check (correctly rounded against ONNX Runtime's), hand arithmetic on
    float16's spacing (2^-9 in [2, 4)), and rtol=atol=0 staying exact."""
    ref = {"y": np.array([-2.646, -3.018, 1.189], np.float16)}  # ONNX Runtime's float16 Div
    folded = {"y": np.array([-2.645, -3.016, 1.189], np.float16)}  # correctly rounded
    assert float(np.max(np.abs(ref["y"].astype(np.float64) - folded["y"]))) == 2.0 ** -9  # one unit in [2, 4)
    got = ortb.compare_outputs(ref, folded, rtol=1e-4, atol=1e-5, scale_atol=True)
    assert got.ok and got.precision == ["float16"]
    assert got.tolerance.endswith(", float16 outputs at least at float16's precision (rtol eps, atol eps*max|ref|, "
                                  "eps = 0.000976562)")
    two_units = {"y": np.array([-2.646 + 2 * 2.0 ** -9 * 2, -3.018, 1.189], np.float16)}
    assert not ortb.compare_outputs(ref, two_units, rtol=1e-4, atol=1e-5).ok  # four units off: still a mismatch
    assert not ortb.compare_outputs(ref, folded, rtol=0, atol=0).ok  # exact when asked
    f32 = {k: v.astype(np.float32) for k, v in ref.items()}
    assert not ortb.compare_outputs(f32, {k: v.astype(np.float32) for k, v in folded.items()}, rtol=1e-4, atol=1e-5).ok


def _float16_inside(weight: float):
    """float32 in and out, float16 inside (as onnxruntime.transformers.float16 converts with keep_io_types)."""
    h = onnx.helper
    nodes = [h.make_node("Cast", ["x"], ["x16"], to=onnx.TensorProto.FLOAT16),
             h.make_node("Mul", ["x16", "w"], ["p16"]), h.make_node("Cast", ["p16"], ["y"], to=onnx.TensorProto.FLOAT)]
    w = onnx.numpy_helper.from_array(np.array([weight], np.float16), "w")
    return from_proto(h.make_model(h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                                                          [64])],
                                                [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [64])], [w]),
                                   opset_imports=[h.make_opsetid("", 17)]))


def test_float32_outputs_of_a_model_computing_in_float16_are_compared_at_float16s_precision():
    """A float16 model converted with float32 inputs and outputs was "outputs differ" (optimize exit 1) after a
    fold moved a float16 intermediate by a unit in the last place (an outside check on onnxruntime.transformers'
    float16 converter). Reference: ONNX Runtime's outputs and hand arithmetic: a weight one unit (2^-10) above 1
    moves y = x * w by |x| * 2^-10, within float16's precision; a weight of 1.01 (ten units) does not pass."""
    x = {"x": np.random.default_rng(0).uniform(1, 2, 64).astype(np.float32)}
    reference = _float16_inside(1.0)
    assert ortb.narrow_float_outputs(reference) == {"y": "float16"}
    got = ortb.compare(reference, _float16_inside(1.0 + 2.0 ** -10), x, scale_atol=True)
    assert got.ok and got.computed_in == "float16" and "computed through float16" in got.tolerance
    assert got.max_abs > 1e-4 * 2  # over the float32 rtol: the old test failed it
    assert not ortb.compare(reference, _float16_inside(1.01), x, scale_atol=True).ok
    assert not ortb.compare(reference, _float16_inside(1.0 + 2.0 ** -10), x, rtol=0, atol=0).ok  # exact when asked


def test_a_float32_output_beside_a_float16_branch_keeps_float32s_tolerance():
    """The float16 widening applied to every output of a model that held a float16 tensor anywhere: a float32
    output beside a float16 side branch passed a 5x-rtol change (an outside check). Reference: hand arithmetic
    (a weight scaled by 1 + 5e-4 moves y = x * w by 5e-4 relative, over the 1e-4 rtol)."""
    h = onnx.helper

    def model(w: float):
        nodes = [h.make_node("Mul", ["x", "w"], ["y"]), h.make_node("Cast", ["x"], ["x16"], to=10),
                 h.make_node("Relu", ["x16"], ["r16"]), h.make_node("Cast", ["r16"], ["side"], to=1)]
        return from_proto(h.make_model(h.make_graph(
            nodes, "g", [h.make_tensor_value_info("x", 1, [8])],
            [h.make_tensor_value_info("y", 1, [8]), h.make_tensor_value_info("side", 1, [8])],
            [onnx.numpy_helper.from_array(np.array([w], np.float32), "w")]), opset_imports=[h.make_opsetid("", 17)]))

    reference = model(1.0)
    assert ortb.narrow_float_outputs(reference) == {"side": "float16"}
    # a size read off a float16 tensor is no float16 computation (a review: Cast(Shape(x16)) * w was widened)
    h = onnx.helper
    sized = from_proto(h.make_model(h.make_graph(
        [h.make_node("Cast", ["x"], ["x16"], to=10), h.make_node("Shape", ["x16"], ["s"]),
         h.make_node("Cast", ["s"], ["sf"], to=1), h.make_node("Mul", ["sf", "x"], ["y"])], "g",
        [h.make_tensor_value_info("x", 1, [8])], [h.make_tensor_value_info("y", 1, [8])]),
        opset_imports=[h.make_opsetid("", 17)]))
    assert ortb.narrow_float_outputs(sized) == {}
    x = {"x": np.random.default_rng(0).uniform(1, 2, 8).astype(np.float32)}
    got = ortb.compare(reference, model(1.0 + 5e-4), x, scale_atol=True)
    assert not got.ok and got.first_mismatch.name == "y"


def test_random_indices_stay_inside_the_smallest_table_they_index():
    """Random integers lie in [0, 4): BERT's token-type table has 2 rows, and every comparison of a BERT export
    (optimize's) failed under ONNX Runtime with "index out of range" (an outside check). Reference: ONNX Runtime
    running the model on the inputs made for it; the bound follows casts and reshapes to each Gather."""
    h = onnx.helper
    nodes = [h.make_node("Cast", ["types"], ["t32"], to=onnx.TensorProto.INT32),
             h.make_node("Gather", ["type_table", "t32"], ["e1"]),
             h.make_node("Gather", ["word_table", "words"], ["e2"]), h.make_node("Add", ["e1", "e2"], ["y"])]
    tables = [onnx.numpy_helper.from_array(np.ones((2, 4), np.float32), "type_table"),
              onnx.numpy_helper.from_array(np.ones((30, 4), np.float32), "word_table")]
    g = from_proto(h.make_model(h.make_graph(nodes, "bertish", [
        h.make_tensor_value_info("types", onnx.TensorProto.INT64, [1, 64]),
        h.make_tensor_value_info("words", onnx.TensorProto.INT64, [1, 64])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], tables),
        opset_imports=[h.make_opsetid("", 17)]))
    feeds = ortb.random_inputs(g, seed=0)
    assert set(np.unique(feeds["types"])) == {0, 1} and set(np.unique(feeds["words"])) == {0, 1, 2, 3}
    assert ortb.compare(g, g, feeds).ok


def test_a_float16_divergence_keeps_its_numbers_and_small_values_keep_a_tight_absolute_term():
    """Review of the float16 rule: a real divergence must still report its max |diff| (the note replaced it in
    NumericsCheck's message), and the absolute term is a unit in the last place of the output's largest value,
    not 2^-10 absolute (values near 1e-4 five to nine times off passed). Reference: hand arithmetic."""
    small = {"p": np.array([1e-4, 2e-4], np.float16)}
    off = {"p": np.array([9e-4, 1e-3], np.float16)}
    got = ortb.compare_outputs(small, off, rtol=1e-4, atol=1e-5)
    assert not got.ok and got.outputs[0].note == ""
    assert got.outputs[0].max_abs > 7e-4
    assert got.precision == ["float16"] and "float16 outputs at least at float16's precision" in got.tolerance


def test_an_onnx_runtime_error_keeps_its_detail_on_one_line():
    """ORT's "Got invalid dimensions for input: x for the following indices" was cut at its first line, before the
    index and sizes that its next lines give (an outside check). Reference: ONNX Runtime's own message."""
    import re

    b = GraphBuilder("g")
    b.output(b.Relu(b.input("x", "float32", [2, 3])), "y")
    with pytest.raises(ExecutionError) as e:
        ortb.OrtSession(b.build()).run({"x": np.zeros((2, 4), np.float32)})
    text = str(e.value)
    assert "\n" not in text and re.search(r"for the following indices\s+index: 1 Got: 4 Expected: 3", text)


def test_a_graph_onnx_runtime_cannot_load_gets_graphmills_reason_naming_the_op_the_user_wrote():
    """ORT refuses an MoE layer whose W1 holds 5 experts beside Wg's 4 by naming a node of the lowering
    (``MoE_0/MatMul_...``); graphmill's shape inference names the layer and the two inputs. Reference: ONNX Runtime's
    own refusal, kept in the line."""
    b = GraphBuilder("g", opsets={"graphmill": 1})
    z = lambda *s: b.const(np.zeros(s, np.float32))  # noqa: E731
    outs = b.op("MoE", b.input("x", "float32", [4, 3]), z(3, 4), None, z(5, 3, 5), z(4, 5), z(4, 5, 3), z(4, 3),
                domain="graphmill", outputs=5, k=1, capacity_factor=1.0, gate="topk")
    b.output(outs[0], "y")
    with pytest.raises(ExecutionError) as e:
        ortb.OrtSession(b.graph)  # unverified, as a file's graph is loaded
    text = str(e.value)
    assert "\n" not in text and "ONNX Runtime cannot load" in text and "MatMul" in text
    assert "graphmill's shape inference: graphmill::MoE node" in text
    assert "W1 [5, 3, 5] and Wg [3, 4] disagree on the number of experts E" in text


def _instance_norm_after_transpose(path):
    """x [N, T, 4] -> Transpose -> InstanceNormalization: at T = 0 ONNX Runtime 1.32 dies with a segmentation
    fault (a torch export's ``InstanceNorm1d(x[:, :T // 2].transpose(1, 2))`` at the comparison's T = 1)."""
    from onnx import TensorProto, helper

    scale = [helper.make_tensor(n, TensorProto.FLOAT, [4], [1.0] * 4) for n in ("s", "b")]
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
         helper.make_node("InstanceNormalization", ["t", "s", "b"], ["y"], name="norm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], scale)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_run_onnx_runtime_would_crash_on_is_refused_naming_the_node(tmp_path):
    """Reference: ONNX Runtime itself, in a child process, dies with SIGSEGV on the empty extent and runs T = 3
    (an outside check's fuzzer: ``graphmill optimize`` exited 139 with no message). If a later ONNX Runtime stops
    crashing, the first assertion fails and the guard (``known_crash``) can go."""
    import subprocess
    import sys

    path = _instance_norm_after_transpose(str(tmp_path / "m.onnx"))
    script = ("import sys, numpy as np, onnxruntime as ort; s = ort.InferenceSession(sys.argv[1], "
              "providers=['CPUExecutionProvider']); s.run(None, {'x': np.ones((1, int(sys.argv[2]), 4), np.float32)})")
    crashed = subprocess.run([sys.executable, "-c", script, path, "0"], capture_output=True)
    assert crashed.returncode == -11  # SIGSEGV
    assert subprocess.run([sys.executable, "-c", script, path, "3"], capture_output=True).returncode == 0
    session = ortb.OrtSession(graphmill.load(path))
    with pytest.raises(ExecutionError, match=r"would crash the process .*InstanceNormalization node 'norm' normalizes "
                                             r"over an empty spatial extent \(input \[1, 4, 0\]"):
        session.run({"x": np.ones((1, 0, 4), np.float32)})
    assert session.run({"x": np.ones((1, 3, 4), np.float32)})["y"].shape == (1, 4, 3)
