"""graphmill::MoE numerics: the torch lowering, the standard-ONNX lowering under ONNX Runtime, and references.

References:
- hand-computed Switch (top-1, Fedus et al. 2021 eq. 1-4) and GShard (top-2 renormalized, Lepikhin et al. 2020
  Algorithm 1) cases with capacity drops worked out on paper;
- an independent loop-by-loop numpy implementation written here from Shazeer et al. 2017 (eq. 3-10) and the
  capacity rule of ir/ops/moe.py (choice-major priority);
- ONNX Runtime running the lowering against the torch backend on the same inputs (noise fed as an input);
- torch.autograd.gradcheck (finite differences) for the gradients, and which experts receive gradient.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.backends.torch.ops.moe import moe_forward
from graphmill.ir.builder import GraphBuilder
from graphmill.passes.lowering import lowered_copy

NAMES = ["y", "importance_loss", "load_loss", "expert_counts", "dropped"]


def _weights(rng, E, d, h, noisy=True):
    w = dict(wg=rng.normal(size=(d, E)), wnoise=rng.normal(size=(d, E)) * 0.5 if noisy else None,
             w1=rng.normal(size=(E, d, h)) * 0.4, b1=rng.normal(size=(E, h)) * 0.1,
             w2=rng.normal(size=(E, h, d)) * 0.4, b2=rng.normal(size=(E, d)) * 0.1)
    return {k: (v.astype(np.float32) if v is not None else None) for k, v in w.items()}


def _graph(w, *, shape, k, cf, gate, noise_input, opset=17):
    E, d = w["wg"].shape[1], w["wg"].shape[0]
    b = GraphBuilder("moe", opset=opset, opsets={"graphmill": 1})
    x = b.input("x", "float32", [*shape, d])
    ins = [x, b.const(w["wg"]), b.const(w["wnoise"]) if w["wnoise"] is not None else None, b.const(w["w1"]),
           b.const(w["b1"]), b.const(w["w2"]), b.const(w["b2"])]
    if noise_input:
        tokens = math.prod(shape) if all(isinstance(s, int) for s in shape) else "T"
        ins.append(b.input("noise", "float32", [tokens, E]))
    outs = b.op("MoE", *ins, domain="graphmill", outputs=5, k=k, capacity_factor=cf, gate=gate)
    for n, o in zip(NAMES, outs):
        b.output(o, n)
    return b.build()


def reference(x, w, noise, *, k, cf, gate):
    """Shazeer/Switch/GShard from the papers, token by token (independent of both lowerings)."""
    x2 = x.reshape(-1, x.shape[-1]).astype(np.float64)
    T, E = x2.shape[0], w["wg"].shape[1]
    clean = x2 @ w["wg"]
    std = np.log1p(np.exp(x2 @ w["wnoise"])) if w["wnoise"] is not None else None
    H = clean + noise * std if (std is not None and noise is not None) else clean
    choices, gates = [], []
    for t in range(T):
        if gate == "topk":
            idx = list(np.argsort(-H[t], kind="stable")[:k])
            e = np.exp(H[t, idx] - H[t, idx].max())
            g = e / e.sum()
        else:
            p = np.exp(H[t] - H[t].max())
            p /= p.sum()
            idx = list(np.argsort(-p, kind="stable")[:k])
            g = p[idx] / (p[idx].sum() if gate == "gshard" else 1.0)
        choices.append(idx)
        gates.append(g)
    cap = min(T, math.ceil(T * (cf * k / E)))
    fill = [0] * E
    y = np.zeros_like(x2)
    counts, dropped = [0] * E, 0
    for j in range(k):  # first choices of every token first
        for t in range(T):
            e = choices[t][j]
            counts[e] += 1
            if fill[e] >= cap:
                dropped += 1
                continue
            fill[e] += 1
            hid = np.maximum(x2[t] @ w["w1"][e] + w["b1"][e], 0)
            y[t] += gates[t][j] * (hid @ w["w2"][e] + w["b2"][e])
    dense = np.zeros((T, E))
    for t in range(T):
        dense[t, choices[t]] = gates[t]

    def cv2(v):
        return v.var() / (v.mean() ** 2 + 1e-10)
    if gate == "topk":
        if std is not None and k < E:
            load = np.zeros(E)
            for t in range(T):
                srt = np.sort(H[t])[::-1]
                for e in range(E):
                    thr = srt[k] if H[t, e] > srt[k] else srt[k - 1]  # the kth largest of the others
                    load[e] += 0.5 * (1 + math.erf((clean[t, e] - thr) / std[t, e] / math.sqrt(2)))
            load_loss = cv2(load)
        else:
            load_loss = cv2(np.asarray(counts, float))
    else:
        probs = np.exp(H - H.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        f = np.bincount([c[0] for c in choices], minlength=E) / T
        load_loss = E * float((f * probs.mean(0)).sum())
    return [y.reshape(x.shape), cv2(dense.sum(0)), load_loss, np.asarray(counts), dropped]


def _torch(g, feeds, train=False):
    m = graphmill.to_torch(g)
    m.train(train)
    return m(**{k: torch.from_numpy(v) for k, v in feeds.items()})


def test_switch_top1_hand_computed():
    """E=2, d=1, logits (x, -x): tokens 1, 2, 3 choose expert 0, token -1 expert 1; capacity ceil(4 * 1/2) = 2, so
    token 3 (third in line at expert 0) is dropped. Expert e = (e + 1) * relu(x + 2); gate = softmax prob."""
    w = dict(wg=np.array([[1.0, -1.0]], np.float32), wnoise=None, w1=np.ones((2, 1, 1), np.float32),
             b1=np.full((2, 1), 2.0, np.float32), w2=np.array([[[1.0]], [[2.0]]], np.float32),
             b2=np.zeros((2, 1), np.float32))
    x = np.array([[1.0], [2.0], [3.0], [-1.0]], np.float32)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731  softmax([x, -x])[0] = sigmoid(2x)
    want_y = [sig(2) * 3, sig(4) * 4, 0.0, sig(2) * 1 * 2]
    g = _graph(w, shape=(4,), k=1, cf=1.0, gate="switch", noise_input=False)
    for out in (ortb.run(g, {"x": x}), dict(zip(NAMES, _torch(g, {"x": x})))):
        y = np.asarray(out["y"].detach() if isinstance(out["y"], torch.Tensor) else out["y"]).ravel()
        np.testing.assert_allclose(y, want_y, rtol=1e-5)
        assert [int(c) for c in out["expert_counts"]] == [3, 1] and int(out["dropped"]) == 1
        # Switch eq. 4: E * sum f_e P_e with f = (3/4, 1/4), P_e the mean router probabilities
        p0 = np.mean([sig(2 * v) for v in (1, 2, 3, -1)])
        load_loss = out["load_loss"].detach() if isinstance(out["load_loss"], torch.Tensor) else out["load_loss"]
        np.testing.assert_allclose(float(load_loss), 2 * (0.75 * p0 + 0.25 * (1 - p0)), rtol=1e-5)


def test_gshard_top2_renormalizes_the_two_gates_and_first_choices_win_capacity():
    """E=3, 3 tokens, top-2, capacity ceil(3 * 2/3 * 0.5) = 1: each expert keeps one assignment, first choices
    (in token order) before any second choice (GShard's priority)."""
    w = dict(wg=np.array([[3.0, 2.0, 0.0]], np.float32), wnoise=None, w1=np.ones((3, 1, 1), np.float32),
             b1=np.zeros((3, 1), np.float32), w2=np.ones((3, 1, 1), np.float32), b2=np.zeros((3, 1), np.float32))
    x = np.array([[1.0], [1.0], [-1.0]], np.float32)
    # tokens 0, 1: experts 0 then 1; token 2 (logits -3, -2, 0): experts 2 then 1
    p = np.exp([3.0, 2.0, 0.0])
    p /= p.sum()
    g01 = p[:2] / p[:2].sum()
    q = np.exp([-3.0, -2.0, 0.0])
    q /= q.sum()
    g2 = np.array([q[2], q[1]]) / (q[2] + q[1])
    # first choices: t0 -> e0 (kept), t1 -> e0 (dropped), t2 -> e2 (kept, but relu(-1) = 0);
    # second choices: t0 -> e1 (kept), t1 -> e1 (dropped), t2 -> e1 (dropped)
    want = [g01[0] * 1 + g01[1] * 1, 0.0, 0.0]
    g = _graph(w, shape=(3,), k=2, cf=0.5, gate="gshard", noise_input=False)
    out = ortb.run(g, {"x": x})
    np.testing.assert_allclose(out["y"].ravel(), want, rtol=1e-5)
    assert list(out["expert_counts"]) == [2, 3, 1] and int(out["dropped"]) == 3
    assert abs(g2.sum() - 1) < 1e-12


@pytest.mark.parametrize("gate, k, E, cf, shape, noisy, opset", [
    ("topk", 2, 6, 0.8, (4, 7), True, 17),     # Shazeer noisy top-k with drops
    ("topk", 3, 5, 2.0, (9,), False, 16),      # no noise weights: load loss on counts; the lowering's lowest opset
    ("topk", 4, 4, 1.0, (2, 3, 2), True, 17),  # k = E
    ("switch", 1, 8, 1.25, (5, 6), False, 18),  # ReduceMean's axes as an input from opset 18
    ("switch", 1, 3, 0.4, (11,), False, 16),
    ("gshard", 2, 4, 1.0, (13,), True, 17),
])
def test_ort_lowering_torch_and_numpy_reference_agree(gate, k, E, cf, shape, noisy, opset):
    rng = np.random.default_rng(E * 100 + k * 10 + opset)
    d, h = 6, 10
    w = _weights(rng, E, d, h, noisy)
    g = _graph(w, shape=shape, k=k, cf=cf, gate=gate, noise_input=noisy, opset=opset)
    T = math.prod(shape)
    feeds = {"x": rng.normal(size=(*shape, d)).astype(np.float32)}
    if noisy:
        feeds["noise"] = rng.normal(size=(T, E)).astype(np.float32)
    ort_out = ortb.run(g, feeds)
    torch_out = _torch(g, feeds)
    ref = reference(feeds["x"], {k_: (v.astype(np.float64) if v is not None else None) for k_, v in w.items()},
                    feeds.get("noise"), k=k, cf=cf, gate=gate)
    for name, t, r in zip(NAMES, torch_out, ref):
        o = ort_out[name]
        np.testing.assert_allclose(o, t.detach().numpy(), rtol=1e-5, atol=1e-5, err_msg=f"ORT vs torch: {name}")
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5, err_msg=f"ORT vs numpy reference: {name}")
    lowered = lowered_copy(g)
    assert {n.domain for n in lowered.nodes} == {""}


def test_symbolic_token_count_computes_capacity_at_run_time():
    rng = np.random.default_rng(3)
    w = _weights(rng, 4, 5, 7)
    g = _graph(w, shape=("N", 3), k=2, cf=0.6, gate="topk", noise_input=True)
    for n in (2, 7):
        feeds = {"x": rng.normal(size=(n, 3, 5)).astype(np.float32), "noise": rng.normal(size=(n * 3, 4)).astype(np.float32)}
        o = ortb.run(g, feeds)
        t = _torch(g, feeds)
        for name, tv in zip(NAMES, t):
            np.testing.assert_allclose(o[name], tv.detach().numpy(), rtol=1e-5, atol=1e-5)
        cap = min(n * 3, math.ceil(n * 3 * (0.6 * 2 / 4)))  # this run's T = 3n tokens
        assert int(o["dropped"]) == sum(max(0, int(c) - cap) for c in o["expert_counts"])


@pytest.mark.parametrize("gate, k", [("switch", 2), ("gshard", 2), ("topk", 1)])
@pytest.mark.parametrize("shape", [("N", 3), (0, 3)])
def test_an_empty_batch_gives_empty_outputs_and_zero_losses(gate, k, shape):
    """No tokens (N = 0): ONNX Runtime failed in the lowering's Gather of token 0 (which does not exist), and the
    switch load loss was NaN in torch (a mean over no tokens) (an outside check). Reference: the definitions:
    Y holds no rows, nothing is counted or dropped, and a loss over no tokens is 0; both backends agree."""
    rng = np.random.default_rng(5)
    w = _weights(rng, 4, 5, 7, noisy=False)
    g = _graph(w, shape=shape, k=k, cf=1.0, gate=gate, noise_input=False)
    feeds = {"x": np.zeros((0, 3, 5), np.float32)}
    o = ortb.run(g, feeds)
    t = _torch(g, feeds)
    for name, tv in zip(NAMES, t):
        assert np.array_equal(o[name], tv.detach().numpy()), name
    assert o[NAMES[0]].shape == (0, 3, 5)
    assert [float(o[n]) for n in NAMES[1:3]] == [0.0, 0.0]
    assert o[NAMES[3]].tolist() == [0, 0, 0, 0] and int(o[NAMES[4]]) == 0


def test_gradients_reach_gate_and_every_expert_with_tokens_and_only_those():
    rng = np.random.default_rng(5)
    E, d, h = 5, 4, 6
    w = _weights(rng, E, d, h)
    w["wg"][:, 4] = -50.0 * np.sign(np.ones(d))  # expert 4: never chosen for positive tokens
    x = np.abs(rng.normal(size=(12, d))).astype(np.float32) + 0.1
    g = _graph(w, shape=(12,), k=2, cf=1.0, gate="topk", noise_input=False)
    m = graphmill.to_torch(g)
    m.train()
    y, imp, load, counts, dropped = m(x=torch.from_numpy(x))
    (y.pow(2).sum() + imp + load).backward()
    params = {m.param_names[n]: p for n, p in m.named_parameters()}
    by_shape = {tuple(p.shape): p for p in params.values()}
    wg, w1, w2 = by_shape[(d, E)], by_shape[(E, d, h)], by_shape[(E, h, d)]
    assert wg.grad is not None and wg.grad.abs().sum() > 0
    assert counts[4] == 0
    for e in range(E):
        got = counts[e] > 0
        assert (w1.grad[e].abs().sum() > 0) == bool(got) and (w2.grad[e].abs().sum() > 0) == bool(got), e
    assert sum(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values()) >= 5


def test_gradcheck_against_finite_differences():
    """Away from routing ties the layer is smooth in the weights: autograd = central differences (float64)."""
    rng = np.random.default_rng(7)
    E, d, h, T = 3, 3, 4, 6
    t = lambda a: torch.tensor(a, dtype=torch.float64, requires_grad=True)  # noqa: E731
    x = t(rng.normal(size=(T, d)))
    wg, wn = t(rng.normal(size=(d, E))), t(rng.normal(size=(d, E)) * 0.3)
    w1, b1 = t(rng.normal(size=(E, d, h))), t(rng.normal(size=(E, h)))
    w2, b2 = t(rng.normal(size=(E, h, d))), t(rng.normal(size=(E, d)))
    noise = torch.tensor(rng.normal(size=(T, E)), dtype=torch.float64)

    def f(x, wg, wn, w1, b1, w2, b2):
        y, imp, load, _, _ = moe_forward(x, wg, wn, w1, b1, w2, b2, noise, k=2, capacity_factor=0.75, gate="topk")
        return y, imp, load
    assert torch.autograd.gradcheck(f, (x, wg, wn, w1, b1, w2, b2), eps=1e-6, atol=1e-5)


def test_training_draws_noise_inference_does_not():
    rng = np.random.default_rng(9)
    w = _weights(rng, 4, 4, 5)
    x = torch.tensor(rng.normal(size=(16, 4)), dtype=torch.float32)
    args = [torch.from_numpy(w[k]) for k in ("wg", "wnoise", "w1", "b1", "w2", "b2")]
    torch.manual_seed(0)
    a = moe_forward(x, *args, k=1, gate="topk", training=True)[0]
    b = moe_forward(x, *args, k=1, gate="topk", training=True)[0]
    c = moe_forward(x, *args, k=1, gate="topk", training=False)[0]
    d = moe_forward(x, *args, k=1, gate="topk", training=False)[0]
    assert not torch.equal(a, b) and torch.equal(c, d)


def test_lowering_needs_opset_16_and_says_so():
    from graphmill.errors import UserInputError

    w = _weights(np.random.default_rng(0), 3, 4, 4, False)
    g = _graph(w, shape=(5,), k=1, cf=1.0, gate="switch", noise_input=False, opset=15)
    with pytest.raises(UserInputError, match="opset >= 16"):
        lowered_copy(g)


def test_tied_gate_logits_route_like_onnx_runtime():
    """Zero gate weights (Shazeer et al. initialize the gate at zero) tie every logit: ONNX's TopK takes the
    lower expert index first, and so must the torch backend (torch.topk's tie order differs), or the two
    backends route, drop and combine differently. References: ONNX Runtime, and the numpy reference's stable
    argsort."""
    rng = np.random.default_rng(11)
    w = _weights(rng, 4, 5, 6, noisy=False)
    w["wg"] = np.zeros_like(w["wg"])
    for gate, k in (("topk", 2), ("switch", 1), ("gshard", 2)):
        g = _graph(w, shape=(6,), k=k, cf=1.0, gate=gate, noise_input=False)
        feeds = {"x": rng.normal(size=(6, 5)).astype(np.float32)}
        o = ortb.run(g, feeds)
        t = _torch(g, feeds)
        ref = reference(feeds["x"], {k_: (v.astype(np.float64) if v is not None else None) for k_, v in w.items()},
                        None, k=k, cf=1.0, gate=gate)
        assert list(o["expert_counts"]) == [6] * k + [0] * (4 - k)
        for name, tv, r in zip(NAMES, t, ref):
            np.testing.assert_allclose(tv.detach().numpy(), o[name], rtol=1e-5, atol=1e-5, err_msg=f"{gate} {name}")
            np.testing.assert_allclose(o[name], r, rtol=1e-4, atol=1e-5, err_msg=f"{gate} {name} vs reference")


def test_float64_noisy_topk_layer_runs_under_onnx_runtime():
    """A double-precision noisy top-k layer (E = 32, k = 5, X of rank 4): ONNX Runtime has no double Erf, which
    the smooth load estimator's normal CDF needs, so the lowering computes that CDF in float32; outputs
    against torch (float64) and the numpy reference, the load loss to float32 rounding."""
    rng = np.random.default_rng(5)
    E, d, h, k, shape, T = 32, 5, 9, 5, (2, 3, 4), 24
    w = {a: (v.astype(np.float64) if v is not None else None) for a, v in _weights(rng, E, d, h).items()}
    b = GraphBuilder("moe64", opset=18, opsets={"graphmill": 1})
    x, nz = b.input("x", "float64", [*shape, d]), b.input("noise", "float64", [T, E])
    outs = b.op("MoE", x, *[b.const(w[n]) for n in ("wg", "wnoise", "w1", "b1", "w2", "b2")], nz, domain="graphmill",
                outputs=5, k=k, capacity_factor=0.3, gate="topk")
    for n, o in zip(NAMES, outs):
        b.output(o, n)
    g = b.build()
    feeds = {"x": rng.normal(size=(*shape, d)), "noise": rng.normal(size=(T, E))}
    o = ortb.run(g, feeds)
    t = _torch(g, feeds)
    ref = reference(feeds["x"], w, feeds["noise"], k=k, cf=0.3, gate="topk")
    assert o["y"].dtype == np.float64 and int(o["dropped"]) > 0
    for name, tv, r in zip(NAMES, t, ref):
        np.testing.assert_allclose(o[name], tv.detach().numpy(), rtol=1e-6, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(o[name], r, rtol=1e-6, atol=1e-9, err_msg=name)
