"""The MoE zoo models: moe_lstm_lm (Shazeer et al. 2017) and switch_transformer (Fedus et al. 2021).

References: the structure the papers describe (an MoE between stacked LSTM layers; an MoE FFN in every other
Transformer layer), MACs per token counted by hand from the layer sizes, ONNX Runtime (running the lowered
model) against the torch backend, and the CLI's one-line exit-2 rule for bad options.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import graphmill
from graphmill import api
from graphmill.backends import onnxruntime as ortb
from graphmill.frontend import zoo
from graphmill.errors import UserInputError
from graphmill.ir.ops.moe import moe_capacity

SMALL_LM = dict(batch=2, steps=3, vocab=40, hidden=8, expert_hidden=12, experts=4, k=2)


def _walk(node, *, up: bool) -> list:
    seen, todo, out = {id(node)}, [node], []
    while todo:
        n = todo.pop()
        nxt = [v.producer for v in n.inputs if v is not None and v.producer is not None] if up else \
            [u for v in n.outputs if v is not None for u in v.users]
        for m in nxt:
            if id(m) not in seen:
                seen.add(id(m))
                out.append(m)
                todo.append(m)
    return out


def test_names_and_options():
    assert {"moe_lstm_lm", "switch_transformer"} <= set(api.zoo_models())
    g = zoo.build("moe-lstm-lm", **SMALL_LM, capacity_factor=0.5)
    moe = [n for n in g.nodes if n.op_type == "MoE"]
    assert len(moe) == 1 and moe[0].attr("k") == 2 and moe[0].attr("capacity_factor") == 0.5
    assert g.meta["moe"][0]["experts"] == 4
    # the MoE sits between the two LSTM stacks: it reads the low stack and the high stack reads it
    up, down = _walk(moe[0], up=True), _walk(moe[0], up=False)
    layers_up = {str(n.meta.get("layer", "")) for n in up}
    layers_down = {str(n.meta.get("layer", "")) for n in down}
    assert any(x.startswith("lstm_low") for x in layers_up) and not any(x.startswith("lstm_high") for x in layers_up)
    assert any(x.startswith("lstm_high") for x in layers_down) and not any(x.startswith("lstm_low") for x in layers_down)
    st = zoo.build("switch_transformer", layers=4, batch=1, seq=8, vocab=30, hidden=16, heads=2, ffn=24, experts=4)
    moe_blocks = sorted(n.meta["block"] for n in st.nodes if n.op_type == "MoE")
    assert moe_blocks == [1, 3]  # every other layer (Switch Transformer section 2)
    assert all(n.attr("gate") == "switch" and n.attr("k") == 1 for n in st.nodes if n.op_type == "MoE")


@pytest.mark.parametrize("name, kw, match", [
    ("moe_lstm_lm", dict(experts=2, k=3), "k must be <= E"),
    ("switch_transformer", dict(capacity_factor=0), "capacity factor must be > 0"),
    ("switch_transformer", dict(capacity_factor=-0.5), "capacity factor must be > 0"),
])
def test_bad_options_are_user_errors(name, kw, match):
    with pytest.raises(UserInputError, match=match):
        api.zoo_build(name, **kw)


def test_cli_bad_input_one_line_exit_2(tmp_path, capsys):
    from graphmill.cli import main

    for args in (["moe-lstm-lm", "--experts", "2", "--k", "3"], ["switch-transformer", "--capacity-factor", "0"],
                 ["resnet18", "--experts", "4"], ["moe-lstm-lm", "--k", "two"]):
        out = tmp_path / "m.onnx"
        assert main(["zoo", *args, "-o", str(out)]) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert not out.exists()


def test_macs_per_token_hand_count():
    g = zoo.build("moe_lstm_lm", **SMALL_LM)
    B, S, V, H, h, E, k = 2, 3, 40, 8, 12, 4, 2
    tokens = B * S
    lstm = 2 * tokens * (2 * H) * 4 * H  # two LSTM layers: [x, h] (2H) x 4H gates per token
    moe = tokens * H * E * 2 + tokens * k * 2 * H * h  # noisy gate + k experts
    softmax = tokens * H * V
    assert graphmill.inspect(g)["macs"] == lstm + moe + softmax


def _ort_equals_torch(g, name: str, ids: np.ndarray, *, train: bool):
    """(ONNX Runtime's outputs, the torch module, its outputs) of ``g`` on input ``name``, asserted equal; the
    torch module in training mode when ``train`` (only for a loaded file: its lowered gate has no noise, where
    the op would draw some)."""
    o = ortb.run(g, {name: ids})
    m = graphmill.to_torch(g)
    m.train(train)
    t = m(**{name: torch.from_numpy(ids)})
    for (out, a), b in zip(o.items(), t):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-5, atol=1e-5, err_msg=out)
    return o, m, t


def test_switch_transformer_ort_equals_torch_and_saves_standard_onnx(tmp_path):
    g = zoo.build("switch_transformer", layers=2, batch=2, seq=8, vocab=50, hidden=16, heads=2, ffn=24, experts=4,
                  capacity_factor=1.0)
    ids = np.random.default_rng(0).integers(0, 50, size=(2, 8))
    o, _, _ = _ort_equals_torch(g, "input_ids", ids, train=False)
    graphmill.save(g, tmp_path / "s.onnx")
    model = onnx.load(tmp_path / "s.onnx")
    onnx.checker.check_model(model)
    assert {n.domain for n in model.graph.node} == {""}
    back = graphmill.load(tmp_path / "s.onnx")
    o2 = ortb.run(back, {"input_ids": ids})
    for name in o:
        np.testing.assert_array_equal(o[name], o2[name])


@pytest.mark.slow
def test_moe_lstm_lm_trains_through_to_torch():
    """The whole zoo graph under the torch backend: one step of NLL + aux losses moves the gate, the noise
    weights and the experts that received tokens (and the loss goes down on the same batch)."""
    g = zoo.build("moe_lstm_lm", **SMALL_LM, capacity_factor=2.0)
    m = graphmill.to_torch(g)
    m.train()
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 40, size=(2, 3)))
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    moe = next(n for n in g.nodes if n.op_type == "MoE")
    names = {v.name: i for i, v in enumerate(moe.inputs) if v is not None}
    params = {m.param_names[n]: p for n, p in m.named_parameters()}
    losses = []
    for _ in range(3):
        torch.manual_seed(0)
        probs, imp, load, counts, dropped = m(tokens=tokens)
        nll = -torch.log(probs[:, :-1].gather(2, tokens[:, 1:, None]) + 1e-9).mean()
        loss = nll + 0.1 * (imp + load)
        opt.zero_grad()
        loss.backward()
        if not losses:
            for vname, i in names.items():
                if i in (1, 2, 3, 5):  # Wg, Wnoise, W1, W2
                    assert params[vname].grad is not None and params[vname].grad.abs().sum() > 0, i
            w1 = params[moe.inputs[3].name].grad
            assert all((w1[e].abs().sum() > 0) == bool(counts[e] > 0) for e in range(4))
        opt.step()
        losses.append(float(nll.detach()))
    assert losses[-1] < losses[0]


def test_saved_model_counts_no_dispatch_buffer_and_trains_through_to_torch(tmp_path):
    """A saved MoE model (standard ONNX) against the in-memory graph: the same parameter count (the lowering
    once dispatched into a float zero buffer [E (C + 1), d] built from constants, which inspect counted as
    parameters and `optimize`'s constant folding stored), and to_torch on the loaded file runs it (TopK,
    ScatterND) with outputs equal to ONNX Runtime's and gradients reaching the gate and the experts that got
    tokens, which the torch backend refused before (it lacked TopK)."""
    g = zoo.build("moe_lstm_lm", **SMALL_LM, capacity_factor=2.0)
    path = tmp_path / "lm.onnx"
    graphmill.save(g, path)
    back = graphmill.load(path)
    assert graphmill.inspect(back)["params"] == graphmill.inspect(g)["params"]
    opt = back.copy()
    graphmill.optimize(opt)  # in place: constant folding included
    E, d = SMALL_LM["experts"], SMALL_LM["hidden"]
    rows = E * (moe_capacity(2 * 3, SMALL_LM["k"], E, 2.0) + 1)  # 28 dispatch slots of d features
    assert not [n for n, v in opt.initializers.items() if v.const is not None and tuple(v.const.shape) == (rows, d)]
    tokens = np.random.default_rng(0).integers(0, 40, size=(2, 3))
    _, m, t = _ort_equals_torch(back, "tokens", tokens, train=True)
    probs, imp, load, counts, _ = t
    loss = -torch.log(probs[:, :-1].gather(2, torch.from_numpy(tokens)[:, 1:, None]) + 1e-9).mean() + 0.1 * (imp + load)
    loss.backward()
    moe = next(n for n in g.nodes if n.op_type == "MoE")
    params = {m.param_names[n]: p for n, p in m.named_parameters()}
    for i in (1, 3, 4, 5, 6):  # Wg, W1, B1, W2, B2 (same initializer names in the file)
        assert params[moe.inputs[i].name].grad is not None, i
    assert params[moe.inputs[1].name].grad.abs().sum() > 0
    w1 = params[moe.inputs[3].name].grad
    assert all((w1[e].abs().sum() > 0) == bool(counts[e] > 0) for e in range(E))


@pytest.mark.parametrize("gate", ["switch", "gshard"])
def test_saved_switch_and_gshard_models_count_the_parameters_of_the_op(tmp_path, gate):
    """The switch/gshard lowering divides by Cast(Max(token count, 1)), a float [1] computed from int64
    constants, which inspect counted as a parameter of the saved file (2 more than the op: an outside check).
    Reference: the in-memory graph's count (the MoE op: gate and every expert), which the README says a saved
    file gives."""
    g = zoo.build("switch_transformer", batch=2, seq=16, vocab=50, hidden=32, heads=2, ffn=32, experts=4,
                  k=1 if gate == "switch" else 2, capacity_factor=1.0, layers=2, gate=gate)
    path = tmp_path / "sw.onnx"
    graphmill.save(g, path)
    assert graphmill.inspect(graphmill.load(path))["params"] == graphmill.inspect(g)["params"]


def test_too_many_experts_refused_before_any_weight_is_drawn(monkeypatch):
    """E beyond the per-tensor limit is one line naming the expert weights' size, raised before drawing them
    (10^6 experts in switch_transformer took 35 s and 3 GB to end in a memory error)."""
    monkeypatch.setenv("GRAPHMILL_MAX_ELEMENTS", "1000")
    with pytest.raises(UserInputError, match=r"64 experts: the expert weights W1 \[64, 8, 12\] would have 6144 "):
        zoo.build("moe_lstm_lm", **dict(SMALL_LM, experts=64))


def test_switch_transformer_keeps_an_moe_layer_at_any_depth():
    """--depth 0.1 scales 4 layers to ceil(0.4) = 1, which was a dense Transformer without any MoE layer (and
    --experts/--k silently meant nothing); the model keeps two layers, the second an MoE."""
    g = zoo.build("switch_transformer", depth=0.1, batch=1, seq=4, vocab=20, hidden=16, heads=2, ffn=24, experts=4)
    assert g.meta["model"]["layers"] == 2
    assert [n.name for n in g.nodes if n.op_type == "MoE"] == ["moe1"]


def test_numpy_integer_options_are_counts_and_booleans_are_not():
    """experts=np.int64(4) (a value computed with numpy) was refused as 'not a positive integer'; experts=True
    ended in a TypeError instead of the one-line error."""
    g = zoo.build("moe_lstm_lm", **dict(SMALL_LM, experts=np.int64(4), k=np.int64(2)))
    assert g.meta["moe"][0]["experts"] == 4 and type(g.meta["moe"][0]["k"]) is int
    with pytest.raises(UserInputError, match="number of experts must be a positive integer, got True"):
        zoo.build("moe_lstm_lm", **dict(SMALL_LM, experts=True, k=1))
