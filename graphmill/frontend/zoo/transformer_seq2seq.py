"""The Transformer encoder-decoder (Vaswani et al., 2017, Table 3 "base"): ``layers`` (6) encoder and decoder
layers, model width ``hidden`` (512), ``heads`` (8) attention heads, feed-forward 2048 (4x), post-LayerNorm,
sinusoid-free learned position embeddings, shared-vocabulary (``vocab`` 32,000) embeddings and a softmax over the
vocabulary; the decoder's self-attention is causal (an additive mask), its second attention reads the encoder's
output. Sequence lengths ``src_len`` / ``tgt_len`` (default 64 each); the model the hierarchical placer paper
(Mirhoseini et al. 2018) places next to NMT.

Attention is written out (MatMul, Reshape, Transpose, Softmax) so that a placement sees every piece. Nodes carry
``meta["layer"]`` (``embed``, ``enc0``.., ``dec0``.., ``softmax``); weights seeded normal(0, 0.02).
"""

from __future__ import annotations

import math

import numpy as np

from graphmill.ir import Graph, Value
from graphmill.ir.builder import GraphBuilder

from ._common import check_batch, check_count, check_positive


class _T:
    def __init__(self, b: GraphBuilder, seed: int, batch: int, hidden: int, heads: int) -> None:
        self.b = b
        self.rng = np.random.default_rng(seed)
        self.batch, self.hidden, self.heads = batch, hidden, heads

    def w(self, *shape: int) -> Value:
        return self.b.const((self.rng.standard_normal(shape) * 0.02).astype(np.float32))

    def z(self, *shape: int) -> Value:
        return self.b.const(np.zeros(shape, np.float32))

    def shape(self, *dims: int) -> Value:
        return self.b.const(np.array(dims, np.int64))

    def linear(self, x: Value, cin: int, cout: int) -> Value:
        return self.b.Add(self.b.MatMul(x, self.w(cin, cout)), self.z(cout))

    def norm(self, x: Value) -> Value:
        h = self.hidden
        return self.b.LayerNormalization(x, self.b.const(np.ones(h, np.float32)), self.z(h), axis=-1, epsilon=1e-6)

    def split_heads(self, x: Value, length: int) -> Value:
        hd = self.hidden // self.heads
        return self.b.Transpose(self.b.Reshape(x, self.shape(self.batch, length, self.heads, hd)), perm=[0, 2, 1, 3])

    def attention(self, q_in: Value, kv_in: Value, lq: int, lk: int, mask: Value | None) -> Value:
        b, h = self.b, self.hidden
        q = self.split_heads(self.linear(q_in, h, h), lq)
        k = self.split_heads(self.linear(kv_in, h, h), lk)
        v = self.split_heads(self.linear(kv_in, h, h), lk)
        s = b.Div(b.MatMul(q, b.Transpose(k, perm=[0, 1, 3, 2])),
                  b.const(np.array(math.sqrt(h // self.heads), np.float32)))
        if mask is not None:
            s = b.Add(s, mask)
        o = b.MatMul(b.Softmax(s, axis=-1), v)
        o = b.Reshape(b.Transpose(o, perm=[0, 2, 1, 3]), self.shape(self.batch, lq, h))
        return self.linear(o, h, h)

    def ffn(self, x: Value) -> Value:
        h = self.hidden
        return self.linear(self.b.Relu(self.linear(x, h, 4 * h)), 4 * h, h)


def transformer_seq2seq(*, layers: int = 6, hidden: int = 512, heads: int = 8, vocab: int = 32000,
                        src_len: int = 64, tgt_len: int = 64, batch: int = 32, seed: int = 0, opset: int = 17,
                        width: float = 1.0, depth: float = 1.0, resolution: float = 1.0) -> Graph:
    """Transformer-base encoder-decoder (module docstring). ``width`` scales the heads (64 per head kept),
    ``depth`` the layers (ceil), ``resolution`` the sequence lengths (a multiplier below 16, else tokens)."""
    model = "transformer_seq2seq"
    layers = check_count("layers", layers, model=model)
    heads = check_count("heads", heads, model=model)
    hidden = check_count("hidden", hidden, model=model)
    w, d, r = (check_positive(n, v, model=model) for n, v in (("width", width), ("depth", depth),
                                                                ("resolution", resolution)))
    head_dim = hidden // heads
    heads = max(1, int(round(heads * w)))
    hidden = heads * head_dim
    layers = max(1, math.ceil(layers * d))
    if r >= 16:
        src_len = tgt_len = int(r)
    else:
        src_len, tgt_len = max(1, int(round(src_len * r))), max(1, int(round(tgt_len * r)))
    batch = check_batch(batch, model=model)
    if isinstance(batch, str):
        from graphmill.ir import UserInputError

        raise UserInputError(f"batch={batch!r} for {model}: the model needs a fixed batch size")
    b = GraphBuilder(model, opset=opset)
    t = _T(b, seed, batch, hidden, heads)
    src = b.input("source", "int64", [batch, src_len])
    tgt = b.input("target", "int64", [batch, tgt_len])
    with b.annotate(layer="embed"):
        table = t.w(vocab, hidden)
        x = b.Add(b.Gather(table, src, axis=0), t.w(src_len, hidden))
        y = b.Add(b.Gather(table, tgt, axis=0), t.w(tgt_len, hidden))
        causal = np.triu(np.full((tgt_len, tgt_len), -1e9, np.float32), 1)
        mask = b.const(causal)
    for l in range(layers):
        with b.annotate(layer=f"enc{l}"):
            x = t.norm(b.Add(x, t.attention(x, x, src_len, src_len, None)))
            x = t.norm(b.Add(x, t.ffn(x)))
    for l in range(layers):
        with b.annotate(layer=f"dec{l}"):
            y = t.norm(b.Add(y, t.attention(y, y, tgt_len, tgt_len, mask)))
            y = t.norm(b.Add(y, t.attention(y, x, tgt_len, src_len, None)))
            y = t.norm(b.Add(y, t.ffn(y)))
    with b.annotate(layer="softmax"):
        out = b.Softmax(b.MatMul(y, b.Transpose(table, perm=[1, 0])), axis=-1)
    b.output(out, "probs")
    g = b.build()
    g.meta["model"] = dict(family="transformer", layers=layers, hidden=hidden, heads=heads, vocab=vocab,
                           src_len=src_len, tgt_len=tgt_len)
    return g
