"""The measured cost model (graphmill/backends/ort_costmodel.py): ONNX Runtime's per-op profile.

References: (1) an independent timing of the same node, the node alone in its own ONNX model (built here with
onnx.helper, not graphmill) run in a plain ONNX Runtime session and timed with perf_counter (fastest of runs;
the session's own overhead, a few microseconds, is small against a 512^3 MatMul); (2) a hand-written profile
JSON in ORT's format for the parser; (3) the placement report's op_time equals the measured times."""

from __future__ import annotations

import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from graphmill import api
from graphmill.backends.ort_costmodel import OrtCostModel, parse_profile
from graphmill.errors import UserInputError
from graphmill.frontend.onnx_import import from_proto

N = 512


def chain_model() -> onnx.ModelProto:
    """y = Relu(MatMul(x, W1)) then a small Add: one big node, two small ones."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("W1", TensorProto.FLOAT, [N, N], rng.standard_normal((N, N)).astype(np.float32).ravel())
    b = helper.make_tensor("B", TensorProto.FLOAT, [N], np.ones(N, np.float32))
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="big_matmul"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "B"], ["y"], name="add")]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, N])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [N, N])], [w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def independent_matmul_us(runs: int = 15) -> float:
    """The MatMul alone in its own session: the fastest run's wall time in microseconds (other load only adds
    time, so the minimum is the estimate of the undisturbed kernel, as timeit advises)."""
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"])], "one",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, N]),
                           helper.make_tensor_value_info("w", TensorProto.FLOAT, [N, N])],
                          [helper.make_tensor_value_info("h", TensorProto.FLOAT, [N, N])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((N, N)).astype(np.float32), "w": rng.standard_normal((N, N)).astype(np.float32)}
    s.run(None, feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e6)
    return min(times)


def test_profile_parser_averages_node_kernel_events_after_warmup():
    events = [{"cat": "Session", "name": "model_run", "dur": 999, "ts": 0},
              {"cat": "Node", "name": "a_fence_before", "dur": 0, "ts": 1},
              {"cat": "Node", "name": "a_kernel_time", "dur": 50, "ts": 2, "args": {"op_name": "MatMul"}},
              {"cat": "Node", "name": "a_kernel_time", "dur": 10, "ts": 10},
              {"cat": "Node", "name": "b_kernel_time", "dur": 7, "ts": 11},
              {"cat": "Node", "name": "a_kernel_time", "dur": 20, "ts": 20},
              {"cat": "Node", "name": "b_kernel_time", "dur": 3, "ts": 21}]
    assert parse_profile(events, warmup=1) == {"a": [10.0, 20.0], "b": [3.0]}
    assert parse_profile(events) == {"a": [50.0, 10.0, 20.0], "b": [7.0, 3.0]}


@pytest.mark.xdist_group("processes")  # two timings compared
def test_measured_op_time_matches_an_independent_timing_of_the_node():
    graph = from_proto(chain_model())
    # fastest execution on both sides: the suite's other worker loads the machine, and a median of one side
    # against the other's once read 2,473 us against 6,800 us
    m = OrtCostModel.measure(graph, runs=7, warmup=2, clock_mhz=1000.0, reduce="min")
    assert set(m.times_us) == {"big_matmul", "relu", "add"}
    big = next(n for n in graph.nodes if n.name == "big_matmul")
    measured_us = m.op_time(big) / 1000.0  # cycles at 1000 MHz -> microseconds
    ref_us = independent_matmul_us()
    # the same kernel timed two ways on a shared machine: within a factor of 2.5
    assert ref_us / 2.5 < measured_us < ref_us * 2.5, (measured_us, ref_us)
    # 512^3 multiply-adds take far longer than an elementwise pass over 512^2 values
    relu = next(n for n in graph.nodes if n.name == "relu")
    assert m.op_time(big) > 5 * m.op_time(relu)


def test_place_with_cost_ort_reports_the_measured_times():
    graph = from_proto(chain_model())
    rep = api.place(graph, method="single", devices=2, cost="ort")
    t = rep["op_time"]
    assert set(t) == {"big_matmul", "relu", "add"}
    assert t["big_matmul"][0] == t["big_matmul"][1] > 5 * t["relu"][0] > 0  # identical chips, measured times
    assert rep["makespan"] == pytest.approx(sum(v[0] for v in t.values()))  # one device runs the chain
    assert graph.meta["placement"]["cost"] == "ort"


def test_a_placed_models_replay_uses_the_times_place_measured(tmp_path):
    """`graphmill simulate` of a `place --cost ort` model re-measured the times (3-4% off the report, different
    on every run); the measured times now travel with the model. Reference: the report's own op times (its
    makespan, single device, is their sum), and the replay of the saved and reloaded model."""
    graph = from_proto(chain_model())
    rep = api.place(graph, method="single", devices=2, cost="ort")
    path = str(tmp_path / "placed.onnx")
    api.save(graph, path)
    again = api.replay_placement(api.load(path))
    assert again["makespan"] == rep["makespan"] == pytest.approx(sum(v[0] for v in rep["op_time"].values()))
    # an untrusted file's times are checked
    bad = api.load(path)
    bad.meta["placement"]["measured_us"] = {"relu": -1.0}
    with pytest.raises(UserInputError, match="measured_us"):
        api.replay_placement(bad)
