"""The placement benchmark graphs of the zoo (inception_v3, nmt, rnnlm, transformer_seq2seq) and the training-step
graphs built for placement.

References: torchvision's Inception3 without the auxiliary head (23,834,568 trainable parameters, 5.71 GMACs); the
LSTM equations (Hochreiter & Schmidhuber; the cell as written in the module docstring) computed in numpy;
ONNX Runtime for executing the built graphs.
"""

from __future__ import annotations

import numpy as np
import pytest

from graphmill.backends import onnxruntime as ort_backend
from graphmill.backends.simulator.devices import PlacementCostModel, device_set
from graphmill.frontend import zoo
from graphmill.passes.placement import build_problem, training_graph


def test_inception_v3_matches_torchvision_counts():
    g = zoo.build("inception_v3", batch=1)
    bn_stats = {id(n.inputs[i]) for n in g.nodes if n.op_type == "BatchNormalization" for i in (3, 4)}
    params = sum(int(v.const.numpy().size) for v in g.initializers.values() if id(v) not in bn_stats)
    assert params == 23_834_568
    assert sum(n.op_type == "Conv" for n in g.nodes) == 94
    import graphmill

    assert graphmill.inspect(g)["macs"] == pytest.approx(5.71e9, rel=0.01)
    assert g.outputs[0].type.shape == (1, 1000)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_rnnlm_equals_numpy_lstm():
    g = zoo.build("rnnlm", layers=1, hidden=8, vocab=11, steps=3, batch=2, seed=3)
    tok = np.array([[1, 4, 7], [10, 0, 3]], np.int64)
    got = ort_backend.run(g, {"tokens": tok})["probs"]
    consts = {v.name: v.const.numpy() for v in g.initializers.values()}
    gather = next(n for n in g.nodes if n.op_type == "Gather" and n.inputs[1].name == "tokens")
    emb = consts[gather.inputs[0].name]
    mm = [n for n in g.nodes if n.op_type == "MatMul"]
    w = consts[mm[0].inputs[1].name]  # the LSTM's [x; h] weights
    wout = consts[next(n for n in mm if n.meta["layer"] == "softmax").inputs[1].name]
    h = c = np.zeros((2, 8), np.float32)
    want = []
    for t in range(3):
        z = np.concatenate([emb[tok[:, t]], h], 1) @ w
        i, f, gg, o = np.split(z, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(gg)
        h = _sigmoid(o) * np.tanh(c)
        logits = h @ wout
        e = np.exp(logits - logits.max(1, keepdims=True))
        want.append(e / e.sum(1, keepdims=True))
    np.testing.assert_allclose(got, np.stack(want, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, kw, feeds", [
    ("nmt", dict(layers=3, hidden=16, vocab=13, src_len=4, tgt_len=3, batch=2), ("source", "target")),
    ("transformer_seq2seq", dict(layers=2, hidden=32, heads=4, vocab=13, src_len=5, tgt_len=4, batch=2),
     ("source", "target")),
])
def test_seq2seq_models_run_and_are_distributions(name, kw, feeds):
    g = zoo.build(name, **kw)
    rng = np.random.default_rng(0)
    shapes = {v.name: v.type.shape for v in g.inputs}
    out = ort_backend.run(g, {f: rng.integers(0, 13, shapes[f]).astype(np.int64) for f in feeds})["probs"]
    assert out.shape == (2, kw["tgt_len"], 13)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    if name == "nmt":  # unrolled: one LSTM MatMul per layer per step on each side, attention at each decoder step
        layers = {n.meta.get("layer") for n in g.nodes}
        assert {"embed", "enc0", "enc2", "dec0", "dec2", "attention", "softmax"} <= layers
        cells = sum(n.op_type == "Split" for n in g.nodes)
        assert cells == 3 * (4 + 3)


def test_training_graph_structure_and_backward_cost():
    g = zoo.build("nmt", layers=2, hidden=16, vocab=13, src_len=3, tgt_len=3, batch=2)
    tg = training_graph(g)
    fwd = [n for n in tg.nodes if n.domain != "graphmill"]
    bwd = [n for n in tg.nodes if n.domain == "graphmill" and n.op_type == "Backward"]
    names = {n.name: n for n in fwd}
    assert bwd and all(n.meta["forward"] in names for n in bwd)
    # gradients flow backwards: a Backward op reads the gradients made by the Backward ops of its forward op's readers
    order = {id(n): i for i, n in enumerate(tg.nodes)}
    for n in bwd:
        for v in n.inputs:
            if v.producer is not None and v.producer.domain == "graphmill":
                assert order[id(v.producer)] < order[id(n)]
    cm = PlacementCostModel(device_set(devices=2))
    prob = build_problem(tg, cm)
    by = {nm: i for i, nm in enumerate(prob.names)}
    for n in bwd:
        f = names[n.meta["forward"]]
        if f.name in by:
            factor = 2.0 if f.op_type == "MatMul" else 1.0
            assert prob.op_time[by[n.name], 0] == pytest.approx(factor * prob.op_time[by[f.name], 0])
    # an op and its gradient are one colocation group
    for n in bwd:
        if n.meta["forward"] in by:
            assert prob.groups[by[n.name]] == prob.groups[by[n.meta["forward"]]]


def test_large_nmt_training_graph_has_ten_thousand_ops():
    g = zoo.build("nmt", layers=4, hidden=64, vocab=100, src_len=50, tgt_len=50, batch=8)
    tg = training_graph(g)
    prob = build_problem(tg, PlacementCostModel(device_set(devices=4)))
    assert prob.n >= 10_000
