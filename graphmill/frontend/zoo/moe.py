"""Mixture-of-experts models built on ``graphmill::MoE`` (``graphmill/ir/ops/moe.py``):

* ``moe_lstm_lm``: the MoE language model of Shazeer et al. 2017 (section 5.1, "MoE-34M"/"MoE-4..." rows):
  embedding, an LSTM layer, an MoE layer applied at every time step (noisy top-k gating, experts with one
  ReLU hidden layer), a second LSTM layer, softmax over the vocabulary. The MoE output is added to its input
  (a residual connection, as the paper's models do around the MoE). ``layers`` LSTM layers sit below the MoE
  and ``layers`` above it.
* ``switch_transformer``: a Switch-Transformer-style encoder (Fedus et al. 2021, section 2): pre-LN
  layers whose FFN is, every other layer, an MoE of FFN experts with top-1 ``switch`` routing (``gate`` may be
  ``gshard`` for GShard's top-2, Lepikhin et al. 2020, which also places MoE every other layer).

Every MoE layer's auxiliary losses, per-expert assignment counts and dropped assignments are graph outputs
``<layer>_importance_loss``, ``<layer>_load_loss``, ``<layer>_expert_counts``, ``<layer>_dropped``, so
training adds the losses and reports read the load. MoE nodes carry ``meta["moe_layer"]``; the graph's
``meta["moe"]`` lists the layers (name, experts, k, capacity factor, gate, tokens).

Options: ``experts`` (E), ``k``, ``capacity_factor``; bad ones (k > E, capacity factor <= 0) are one-line
``UserInputError``s. Weights are seeded.
"""

from __future__ import annotations

import math

import numpy as np

from graphmill.ir import Graph, Value
from graphmill.ir.builder import GraphBuilder
from graphmill.ir.ops.moe import check_moe_config
from graphmill.util.errors import UserInputError
from graphmill.util.limits import shape_problem

from ._common import check_count, check_positive
from .nmt import Recurrent

MOE_OUTPUTS = ("importance_loss", "load_loss", "expert_counts", "dropped")
#: zoo names whose builders take ``experts``, ``k`` and ``capacity_factor``
MOE_MODELS = ("moe_lstm_lm", "switch_transformer")


def moe_layer(b: GraphBuilder, x: Value, rng: np.random.Generator, *, d: int, experts: int, expert_hidden: int,
              k: int, capacity_factor: float, gate: str = "topk", noisy: bool = True, name: str = "moe",
              noise_input: bool = False, tokens: int | None = None) -> tuple[Value, list[Value]]:
    """Append one ``graphmill::MoE`` node reading ``x [..., d]``; returns (Y, [importance_loss, load_loss,
    expert_counts, dropped]). Gate and expert weights are uniform (+-1/sqrt(fan_in)); the noise weights start at
    zero (softplus(0) = 0.69 noise scale). Shazeer et al. start the gate at zero, which makes every
    noise-free routing a tie that ONNX Runtime and torch may break differently. ``noise_input`` adds a graph input
    ``<name>_noise [tokens, E]`` for the gate noise (so ONNX Runtime and torch see the same samples)."""
    check_moe_config(experts=experts, k=k, capacity_factor=capacity_factor, gate=gate, where=name)
    for what, shape in (("expert weights W1", (experts, d, expert_hidden)), ("gate weights Wg", (d, experts))):
        why = shape_problem(shape)
        if why:  # before drawing them: 10^6 experts once took 35 s and 3 GB to end in a memory error
            raise UserInputError(f"{name}: {experts} experts: the {what} {list(shape)} would have {why}")

    def uni(*shape: int, fan_in: int) -> Value:
        lim = 1.0 / math.sqrt(fan_in)
        return b.const(rng.uniform(-lim, lim, size=shape).astype(np.float32))

    wg = uni(d, experts, fan_in=d)
    wnoise = b.const(np.zeros((d, experts), np.float32)) if noisy else None
    ins = [x, wg, wnoise, uni(experts, d, expert_hidden, fan_in=d), b.const(np.zeros((experts, expert_hidden),
                                                                                       np.float32)),
           uni(experts, expert_hidden, d, fan_in=expert_hidden), b.const(np.zeros((experts, d), np.float32))]
    if noise_input:
        ins.append(b.input(f"{name}_noise", "float32", [tokens, experts]))
    with b.annotate(moe_layer=name):
        outs = b.op("MoE", *ins, domain="graphmill", outputs=5, name=name, k=k, capacity_factor=float(capacity_factor),
                    gate=gate)
    return outs[0], list(outs[1:])


def _sizes(model: str, width, depth, resolution, layers, length: tuple[str, int], batch, vocab) -> tuple:
    """(width, layers, sequence length, batch, vocab) checked: ``depth`` scales the layers (ceil), ``resolution``
    the sequence length (a multiplier below 16, else the length)."""
    w = check_positive("width", width, model=model)
    layers = max(1, math.ceil(check_count("layers", layers, model=model) * check_positive("depth", depth, model=model)))
    r = check_positive("resolution", resolution, model=model)
    name, n = length
    n = check_count(name, n, model=model)
    n = n if r == 1.0 else (int(r) if r >= 16 else max(1, round(n * r)))
    return w, layers, n, check_count("batch", batch, model=model), check_count("vocab", vocab, model=model)


def _expose(b: GraphBuilder, name: str, aux: list[Value]) -> None:
    for suffix, v in zip(MOE_OUTPUTS, aux):
        b.output(v, f"{name}_{suffix}")


def _moe_meta(name: str, experts: int, k: int, cf: float, gate: str, tokens: int, d: int, h: int) -> dict:
    return dict(name=name, experts=experts, k=k, capacity_factor=cf, gate=gate, tokens=tokens, d=d, expert_hidden=h)


def moe_lstm_lm(*, experts: int = 16, k: int = 4, capacity_factor: float = 1.25, layers: int = 1, hidden: int = 512,
                expert_hidden: int = 1024, vocab: int = 10000, steps: int = 20, batch: int = 32, gate: str = "topk",
                noisy: bool = True, noise_input: bool = False, seed: int = 0, opset: int = 18, width: float = 1.0,
                depth: float = 1.0, resolution: float = 1.0) -> Graph:
    """The MoE LSTM language model (module docstring): tokens int64 [batch, steps] -> probs [batch, steps, vocab].
    ``width`` scales ``hidden`` and ``expert_hidden``, ``depth`` the LSTM layers on each side, ``resolution``
    the steps (a multiplier below 16, else steps)."""
    model = "moe_lstm_lm"
    check_moe_config(experts=experts, k=k, capacity_factor=capacity_factor, gate=gate, where=model)
    experts, k = int(experts), int(k)  # numpy integers from an API caller
    w, layers, steps, batch, vocab = _sizes(model, width, depth, resolution, layers, ("steps", steps), batch, vocab)
    hidden = max(1, round(check_count("hidden", hidden, model=model) * w))
    expert_hidden = max(1, round(check_count("expert_hidden", expert_hidden, model=model) * w))

    b = GraphBuilder(f"moe_lstm_lm_e{experts}_k{k}", opset=opset, opsets={"graphmill": 1})
    rec = Recurrent(b, seed)
    rng = np.random.default_rng(seed + 1)
    tok = b.input("tokens", "int64", [batch, steps])
    with b.annotate(layer="embed", step=0):
        xs = rec.step_inputs(b.Gather(rec.uniform(vocab, hidden), tok, axis=0), steps)
    low, _ = rec.lstm_stack(xs, layers, hidden, hidden, batch, "lstm_low")
    one = b.const(np.array([1], np.int64))
    with b.annotate(layer="moe", step=steps - 1):
        seq = b.Concat(*[b.Unsqueeze(h, one) for h in low], axis=1)  # [B, T, H]
        y, aux = moe_layer(b, seq, rng, d=hidden, experts=experts, expert_hidden=expert_hidden, k=k,
                           capacity_factor=capacity_factor, gate=gate, noisy=noisy, name="moe0",
                           noise_input=noise_input, tokens=batch * steps)
        mixed = b.Add(seq, y)
        mid = rec.step_inputs(mixed, steps)
    high, _ = rec.lstm_stack(mid, layers, hidden, hidden, batch, "lstm_high")
    wout, bout = rec.uniform(hidden, vocab), rec.zeros(vocab)
    outs = []
    for t, h in enumerate(high):
        with b.annotate(layer="softmax", step=t):
            outs.append(b.Unsqueeze(rec.softmax_step(h, wout, bout), one))
    with b.annotate(layer="softmax", step=steps - 1):
        probs = b.Concat(*outs, axis=1)
    b.output(probs, "probs")
    _expose(b, "moe0", aux)
    g = b.build()
    g.meta["model"] = dict(family="moe_lstm_lm", layers=layers, hidden=hidden, vocab=vocab, steps=steps,
                           experts=experts, k=k, capacity_factor=float(capacity_factor), expert_hidden=expert_hidden)
    g.meta["moe"] = [_moe_meta("moe0", experts, k, float(capacity_factor), gate, batch * steps, hidden, expert_hidden)]
    return g


def switch_transformer(*, experts: int = 8, k: int = 1, capacity_factor: float = 1.25, layers: int = 4,
                       hidden: int = 256, heads: int = 4, ffn: int = 1024, vocab: int = 8000, seq: int = 64,
                       batch: int = 8, gate: str = "switch", seed: int = 0, opset: int = 17, width: float = 1.0,
                       depth: float = 1.0, resolution: float = 1.0) -> Graph:
    """A Switch-Transformer-style encoder (module docstring): input_ids int64 [batch, seq] -> logits
    [batch, seq, vocab]; layers 1, 3, 5, ... (every other, counting from 0) have an MoE FFN, so there are at least
    two layers whatever ``depth`` scales them to."""
    model = "switch_transformer"
    check_moe_config(experts=experts, k=k, capacity_factor=capacity_factor, gate=gate, where=model)
    experts, k = int(experts), int(k)  # numpy integers from an API caller
    w, layers, seq, batch, vocab = _sizes(model, width, depth, resolution, layers, ("seq", seq), batch, vocab)
    layers = max(2, layers)  # layer 1 is the first MoE layer: one layer (--depth 0.1) would hold no MoE at all
    dh = max(1, check_count("hidden", hidden, model=model) // check_count("heads", heads, model=model))
    heads = max(1, round(heads * w))  # width scales the heads; the head size stays
    hidden = heads * dh
    ffn = max(1, round(check_count("ffn", ffn, model=model) * w))

    b = GraphBuilder(f"switch_transformer_e{experts}", opset=opset, opsets={"graphmill": 1})
    rng = np.random.default_rng(seed)

    def weight(*shape: int, std: float = 0.02) -> Value:
        return b.const((rng.standard_normal(shape) * std).astype(np.float32))

    def zeros(*shape: int) -> Value:
        return b.const(np.zeros(shape, np.float32))

    def linear(x: Value, cin: int, cout: int) -> Value:
        return b.Add(b.MatMul(x, weight(cin, cout)), zeros(cout))

    def norm(x: Value) -> Value:
        return b.LayerNormalization(x, b.const(np.ones(hidden, np.float32)), zeros(hidden), axis=-1, epsilon=1e-6)

    def attention(x: Value) -> Value:
        split = b.const(np.array([0, 0, heads, dh], np.int64))
        q = b.Transpose(b.Reshape(linear(x, hidden, hidden), split), perm=[0, 2, 1, 3])
        kk = b.Transpose(b.Reshape(linear(x, hidden, hidden), split), perm=[0, 2, 3, 1])
        v = b.Transpose(b.Reshape(linear(x, hidden, hidden), split), perm=[0, 2, 1, 3])
        p = b.Softmax(b.Div(b.MatMul(q, kk), b.const(np.float32(math.sqrt(dh)))), axis=-1)
        a = b.Reshape(b.Transpose(b.MatMul(p, v), perm=[0, 2, 1, 3]), b.const(np.array([0, 0, hidden], np.int64)))
        return linear(a, hidden, hidden)

    ids = b.input("input_ids", "int64", [batch, seq])
    with b.annotate(block=-1, kind="embeddings"):
        x = b.Add(b.Gather(weight(vocab, hidden), ids, axis=0), weight(seq, hidden))
    moe_meta, aux_all = [], []
    for i in range(layers):
        with b.annotate(block=i, kind="encoder_layer"):
            x = b.Add(x, attention(norm(x)))
            hn = norm(x)
            if i % 2 == 1:
                name = f"moe{i}"
                y, aux = moe_layer(b, hn, rng, d=hidden, experts=experts, expert_hidden=ffn, k=k,
                                   capacity_factor=capacity_factor, gate=gate, noisy=False, name=name)
                moe_meta.append(_moe_meta(name, experts, k, float(capacity_factor), gate, batch * seq, hidden, ffn))
                aux_all.append((name, aux))
            else:
                with b.annotate(layer="ffn"):
                    y = linear(b.Relu(linear(hn, hidden, ffn)), ffn, hidden)
            x = b.Add(x, y)
    with b.annotate(block=layers, kind="head"):
        logits = b.MatMul(norm(x), weight(hidden, vocab))
    b.output(logits, "logits")
    for name, aux in aux_all:
        _expose(b, name, aux)
    g = b.build()
    g.meta["model"] = dict(family="switch_transformer", layers=layers, hidden=hidden, heads=heads, ffn=ffn,
                           vocab=vocab, seq=seq, experts=experts, k=k, capacity_factor=float(capacity_factor))
    g.meta["moe"] = moe_meta
    return g


__all__ = ["MOE_MODELS", "MOE_OUTPUTS", "moe_layer", "moe_lstm_lm", "switch_transformer"]
