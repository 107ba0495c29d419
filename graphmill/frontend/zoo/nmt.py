"""Recurrent sequence models unrolled in time, as the device-placement papers placed them (Mirhoseini et al. 2017,
2018: the TensorFlow graphs of their NMT and RNNLM benchmarks are unrolled, one op per gate per time step):

* ``nmt``: an LSTM encoder-decoder with attention (Bahdanau et al. 2015 / Luong et al. 2015 as in GNMT, Wu et al.
  2016): ``layers`` (2-4 in the papers) LSTM layers of ``hidden`` (1024) units on each side, source and target
  embeddings, Luong dot-product attention over the top encoder layer at every decoder step, attention vector
  ``tanh(W [h; context])``, and a softmax projection onto the ``vocab`` (default 32,000 shared sub-word units)
  at every step. Teacher-forced: the decoder reads the target tokens.
* ``rnnlm``: an LSTM language model (Jozefowicz et al. 2016 / Zaremba et al. 2014): embedding, ``layers`` (2)
  LSTM layers of ``hidden`` (2048) units, softmax over the ``vocab`` at every step. The papers' vocabulary (One
  Billion Word, 793k words) is replaced by 32,000 by default to keep the weights in memory; ``vocab`` sets it.

An LSTM cell is written out as ONNX ops: ``gates = Concat(x, h) @ W + b`` (one MatMul for the four gates),
``Split`` into i, f, g, o, ``c' = sigmoid(f) * c + sigmoid(i) * tanh(g)``, ``h' = sigmoid(o) * tanh(c')``.
Token ids are int64 inputs ``[batch, steps]``; the embedding is one Gather, its steps taken by Gather on axis 1.
Nodes carry ``meta["layer"]`` (``embed``, ``enc0``.., ``attention``, ``dec0``.., ``softmax``) and
``meta["step"]``; weights are seeded uniform(-0.1, 0.1) as in the papers' setups.
"""

from __future__ import annotations

import numpy as np

from graphmill.ir import Graph, Value
from graphmill.ir.builder import GraphBuilder

from ._common import check_batch, check_count


class Recurrent:
    """Seeded LSTM pieces on a GraphBuilder."""

    def __init__(self, b: GraphBuilder, seed: int) -> None:
        self.b = b
        self.rng = np.random.default_rng(seed)
        self._idx: dict[int, Value] = {}

    def uniform(self, *shape: int) -> Value:
        return self.b.const((self.rng.random(shape, dtype=np.float32) * 0.2 - 0.1).astype(np.float32))

    def zeros(self, *shape: int) -> Value:
        return self.b.const(np.zeros(shape, np.float32))

    def index(self, t: int) -> Value:
        if t not in self._idx:
            self._idx[t] = self.b.const(np.array(t, np.int64))
        return self._idx[t]

    def step_inputs(self, emb: Value, steps: int) -> list[Value]:
        """``emb`` [B, T, H] -> T tensors [B, H]."""
        return [self.b.Gather(emb, self.index(t), axis=1) for t in range(steps)]

    def lstm_weights(self, cin: int, hidden: int) -> tuple[Value, Value]:
        return self.uniform(cin + hidden, 4 * hidden), self.zeros(4 * hidden)

    def lstm_cell(self, x: Value, h: Value, c: Value, w: Value, bias: Value) -> tuple[Value, Value]:
        b = self.b
        gates = b.Add(b.MatMul(b.Concat(x, h, axis=1), w), bias)
        i, f, g, o = b.op("Split", gates, outputs=4, axis=1, num_outputs=4)
        c2 = b.Add(b.Mul(b.Sigmoid(f), c), b.Mul(b.Sigmoid(i), b.Tanh(g)))
        h2 = b.Mul(b.Sigmoid(o), b.Tanh(c2))
        return h2, c2

    def lstm_stack(self, xs: list[Value], layers: int, cin: int, hidden: int, batch: int | str, prefix: str,
                   state: list[tuple[Value, Value]] | None = None, *,
                   between: "callable | None" = None) -> tuple[list[Value], list[tuple[Value, Value]]]:
        """``layers`` LSTM layers over the steps ``xs``; returns the top layer's outputs and the final states.
        Built time step by time step (all layers of step t, then step t+1), the order a graph is traced in."""
        weights = [self.lstm_weights(cin if l == 0 else hidden, hidden) for l in range(layers)]
        zero = self.zeros(1, hidden) if state is None else None
        st = list(state) if state is not None else [(zero, zero)] * layers
        outs = []
        for t, x in enumerate(xs):
            if between is not None:
                x = between(t, x)
            for l in range(layers):
                with self.b.annotate(layer=f"{prefix}{l}", step=t):
                    h, c = st[l]
                    if t == 0 and state is None:
                        h = c = self.b.Expand(zero, self.b.const(np.array([_batch_int(batch), hidden], np.int64)))
                    h, c = self.lstm_cell(x, h, c, *weights[l])
                    st[l] = (h, c)
                    x = h
            outs.append(x)
        return outs, st

    def softmax_step(self, h: Value, w: Value, bias: Value) -> Value:
        return self.b.Softmax(self.b.Add(self.b.MatMul(h, w), bias), axis=-1)


def _batch_int(batch: int | str) -> int:
    if isinstance(batch, str):
        raise ValueError("the unrolled recurrent models need a fixed batch size")
    return batch


def nmt(*, layers: int = 2, hidden: int = 1024, vocab: int = 32000, src_len: int = 20, tgt_len: int = 20,
        batch: int = 64, seed: int = 0, opset: int = 18, width: float = 1.0, depth: float = 1.0,
        resolution: float = 1.0) -> Graph:
    """The LSTM encoder-decoder NMT with attention, unrolled (module docstring). ``width`` scales ``hidden``,
    ``depth`` the layers (``ceil``), ``resolution`` the sequence lengths (a multiplier below 16, else steps)."""
    layers, hidden, vocab, src_len, tgt_len = _scaled(layers, hidden, vocab, src_len, tgt_len, width, depth,
                                                      resolution, "nmt")
    batch = _fixed_batch(batch, "nmt")
    b = GraphBuilder(f"nmt_{layers}layer", opset=opset)
    r = Recurrent(b, seed)
    src = b.input("source", "int64", [batch, src_len])
    tgt = b.input("target", "int64", [batch, tgt_len])
    with b.annotate(layer="embed", step=0):
        semb = b.Gather(r.uniform(vocab, hidden), src, axis=0)
        temb = b.Gather(r.uniform(vocab, hidden), tgt, axis=0)
        sx = r.step_inputs(semb, src_len)
        tx = r.step_inputs(temb, tgt_len)
    enc, state = r.lstm_stack(sx, layers, hidden, hidden, batch, "enc")
    with b.annotate(layer="attention", step=0):
        mem = b.Concat(*[b.Unsqueeze(h, b.const(np.array([1], np.int64))) for h in enc], axis=1)  # [B, S, H]
        wc = r.uniform(2 * hidden, hidden)
    wout, bout = r.uniform(hidden, vocab), r.zeros(vocab)
    prev_attn: list[Value] = []

    def feed(t: int, x: Value) -> Value:  # input feeding: the previous attention vector joins the input
        if not prev_attn:
            return x
        with b.annotate(layer="attention", step=t):
            return b.Add(x, prev_attn[-1])

    outs = []
    hstate = state
    # the decoder, step by step, so that attention and softmax of step t sit between steps t and t+1
    dec_w = [r.lstm_weights(hidden, hidden) for _ in range(layers)]
    for t in range(tgt_len):
        x = feed(t, tx[t])
        for l in range(layers):
            with b.annotate(layer=f"dec{l}", step=t):
                h, c = hstate[l]
                h, c = r.lstm_cell(x, h, c, *dec_w[l])
                hstate[l] = (h, c)
                x = h
        with b.annotate(layer="attention", step=t):
            score = b.MatMul(mem, b.Unsqueeze(x, b.const(np.array([2], np.int64))))  # [B, S, 1]
            att = b.Softmax(score, axis=1)
            ctx = b.ReduceSum(b.Mul(att, mem), b.const(np.array([1], np.int64)), keepdims=0)  # [B, H]
            a = b.Tanh(b.MatMul(b.Concat(x, ctx, axis=1), wc))
            prev_attn.append(a)
        with b.annotate(layer="softmax", step=t):
            outs.append(r.softmax_step(a, wout, bout))
    with b.annotate(layer="softmax", step=tgt_len - 1):
        y = b.Concat(*[b.Unsqueeze(o, b.const(np.array([1], np.int64))) for o in outs], axis=1)
    b.output(y, "probs")
    g = b.build()
    g.meta["model"] = dict(family="nmt", layers=layers, hidden=hidden, vocab=vocab, src_len=src_len,
                           tgt_len=tgt_len)
    return g


def rnnlm(*, layers: int = 2, hidden: int = 2048, vocab: int = 32000, steps: int = 20, batch: int = 64,
          seed: int = 0, opset: int = 18, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0) -> Graph:
    """The LSTM language model, unrolled (module docstring)."""
    layers, hidden, vocab, steps, _ = _scaled(layers, hidden, vocab, steps, steps, width, depth, resolution, "rnnlm")
    batch = _fixed_batch(batch, "rnnlm")
    b = GraphBuilder(f"rnnlm_{layers}layer", opset=opset)
    r = Recurrent(b, seed)
    tok = b.input("tokens", "int64", [batch, steps])
    with b.annotate(layer="embed", step=0):
        xs = r.step_inputs(b.Gather(r.uniform(vocab, hidden), tok, axis=0), steps)
    wout, bout = r.uniform(hidden, vocab), r.zeros(vocab)
    outs = []
    hs, _ = r.lstm_stack(xs, layers, hidden, hidden, batch, "lstm")
    for t, h in enumerate(hs):
        with b.annotate(layer="softmax", step=t):
            outs.append(b.Unsqueeze(r.softmax_step(h, wout, bout), b.const(np.array([1], np.int64))))
    with b.annotate(layer="softmax", step=steps - 1):
        y = b.Concat(*outs, axis=1)
    b.output(y, "probs")
    g = b.build()
    g.meta["model"] = dict(family="rnnlm", layers=layers, hidden=hidden, vocab=vocab, steps=steps)
    return g


def _fixed_batch(batch, model: str) -> int:
    batch = check_batch(batch, model=model)
    if isinstance(batch, str):
        from graphmill.ir import UserInputError

        raise UserInputError(f"batch={batch!r} for {model}: the unrolled model needs a fixed batch size")
    return batch


def _scaled(layers, hidden, vocab, len1, len2, width, depth, resolution, model):
    import math

    from ._common import check_positive

    layers = check_count("layers", layers, model=model)
    hidden = check_count("hidden", hidden, model=model)
    vocab = check_count("vocab", vocab, model=model, minimum=2)
    w = check_positive("width", width, model=model)
    d = check_positive("depth", depth, model=model)
    res = check_positive("resolution", resolution, model=model)
    hidden = max(1, int(round(hidden * w)))
    layers = max(1, math.ceil(layers * d))
    if res >= 16:
        len1 = len2 = int(res)
    else:
        len1, len2 = max(1, int(round(len1 * res))), max(1, int(round(len2 * res)))
    return layers, hidden, vocab, check_count("steps", len1, model=model), check_count("steps", len2, model=model)
