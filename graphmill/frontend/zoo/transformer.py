"""Transformer encoders: a BERT-base-like text encoder (Devlin et al., 2018) and ViT-B/16 (Dosovitskiy et al., 2020).

Built with the IR builder from the papers' hyperparameters, with seeded random
weights (normal, std 0.02, as both papers initialise; LayerNorm at identity).
Opset 17 by default: LayerNormalization is a single op; GELU is the exact
``0.5 * x * (1 + erf(x / sqrt(2)))`` (the ``Gelu`` op only from opset 20).
Attention is written out (MatMul, Reshape, Transpose, Softmax) so that passes
see every piece.

Multipliers: ``width`` scales the number of heads (head size stays 64, the FFN
keeps its ratio to the hidden size), ``depth`` the layers by ``ceil(depth * L)``,
``resolution`` the image size (ViT; kept a multiple of the patch) or the
number of position embeddings (BERT). Values below 16 are multipliers, from 16
up explicit sizes.

Nodes carry ``meta["model_stage"]`` (0 embeddings, 1 the encoder, 2 the head),
``meta["block"]`` (the layer) and ``meta["kind"]``; ``graph.meta["blocks"]``
lists the layers.
"""

from __future__ import annotations

import math

import numpy as np

from graphmill.ir import Graph, UserInputError, Value
from graphmill.ir.builder import GraphBuilder

from ._common import Layers, check_batch, check_count, check_positive, node_meta, resolve_resolution, round_repeats


class Encoder(Layers):
    """Seeded transformer layers (normal std 0.02 weights, LayerNorm at identity) on top of ``Layers``."""

    def __init__(self, b: GraphBuilder, seed: int, opset: int, std: float = 0.02) -> None:
        super().__init__(b, seed)
        self.opset = opset
        self.std = std

    def weight(self, *shape: int) -> Value:
        return self.b.const(self.normal(tuple(shape), self.std))

    def zeros(self, *shape: int) -> Value:
        return self.b.const(np.zeros(shape, np.float32))

    def linear(self, x: Value, cin: int, cout: int) -> Value:
        """x @ W + b on the last axis (MatMul + Add, as exporters write it for 3-D activations)."""
        return self.b.Add(self.b.MatMul(x, self.weight(cin, cout)), self.zeros(cout))

    def layer_norm(self, x: Value, h: int, eps: float) -> Value:
        return self.b.LayerNormalization(x, self.b.const(np.ones(h, np.float32)), self.zeros(h), axis=-1,
                                         epsilon=eps)

    def gelu(self, x: Value) -> Value:
        b = self.b
        if self.opset >= 20:
            return b.Gelu(x)
        e = b.Erf(b.Div(x, self.scalar(math.sqrt(2.0))))
        return b.Mul(b.Mul(x, self.scalar(0.5)), b.Add(e, self.scalar(1.0)))

    def attention(self, x: Value, hidden: int, heads: int) -> Value:
        b = self.b
        dh = hidden // heads
        split = b.const(np.array([0, 0, heads, dh], np.int64))
        with b.annotate(layer="attention"):
            q = b.Transpose(b.Reshape(self.linear(x, hidden, hidden), split), perm=[0, 2, 1, 3])
            k = b.Transpose(b.Reshape(self.linear(x, hidden, hidden), split), perm=[0, 2, 3, 1])
            v = b.Transpose(b.Reshape(self.linear(x, hidden, hidden), split), perm=[0, 2, 1, 3])
            p = b.Softmax(b.Div(b.MatMul(q, k), self.scalar(math.sqrt(dh))), axis=-1)
            a = b.Transpose(b.MatMul(p, v), perm=[0, 2, 1, 3])
            a = b.Reshape(a, b.const(np.array([0, 0, hidden], np.int64)))
            return self.linear(a, hidden, hidden)

    def mlp(self, x: Value, hidden: int, ffn: int) -> Value:
        with self.b.annotate(layer="mlp"):
            return self.linear(self.gelu(self.linear(x, hidden, ffn)), ffn, hidden)


def _scaled_width(model: str, hidden: int, heads: int, ffn: int, width: float) -> tuple[int, int, int]:
    if hidden % heads:
        raise UserInputError(f"{model}: hidden={hidden} is not a multiple of heads={heads}")
    dh = hidden // heads
    h2 = max(1, int(round(heads * width)))
    return h2 * dh, h2, max(1, int(round(ffn * h2 / heads)))


def bert(*, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0, layers: int = 12, hidden: int = 768,
         heads: int = 12, ffn: int = 3072, vocab: int = 30522, max_positions: int = 512, type_vocab: int = 2,
         segment_input: bool = False, pooler: bool = True, batch: int | str = "N", seq: int | str = "S",
         seed: int = 0, opset: int = 17, eps: float = 1e-12) -> Graph:
    """A BERT-base-like encoder: token + position + segment embeddings, ``layers`` post-LN layers, pooler.

    Input ``input_ids`` int64 [batch, seq] (symbolic by default); with ``segment_input`` also
    ``token_type_ids`` (otherwise every token is segment 0). Outputs ``last_hidden_state``
    [batch, seq, hidden] and, with ``pooler``, ``pooler_output`` [batch, hidden] (tanh of a dense
    layer on the first token). No attention mask: every position attends to every other.
    """
    name = "bert"
    layers = round_repeats(check_count("layers", layers, model=name), check_positive("depth", depth, model=name))
    w = check_positive("width", width, model=name)
    for arg, val in (("hidden", hidden), ("heads", heads), ("ffn", ffn), ("vocab", vocab),
                     ("max_positions", max_positions), ("type_vocab", type_vocab)):
        check_count(arg, val, model=name)
    hidden, heads, ffn = _scaled_width(name, hidden, heads, ffn, w)
    positions = resolve_resolution(resolution, max_positions, model=name)
    batch = check_batch(batch, model=name)
    seq = check_batch(seq, model=name) if isinstance(seq, str) else check_count("seq", seq, model=name)
    if isinstance(seq, int) and seq > positions:
        raise UserInputError(f"seq={seq} for {name}: longer than the {positions} position embeddings")

    b = GraphBuilder(name, opset=opset)
    E = Encoder(b, seed, opset)
    ids = b.input("input_ids", "int64", [batch, seq])
    with b.annotate(model_stage=0, block=0, kind="embeddings"):
        word = b.Gather(E.weight(vocab, hidden), ids, axis=0)
        # position ids 0..S-1 as [batch, seq] (a cumulative sum of ones keeps the seq symbol for inference)
        ones = b.ConstantOfShape(b.Shape(ids), value=np.ones(1, np.int64))
        positions_ids = b.Sub(b.CumSum(ones, b.const(np.array(1, np.int64))), b.const(np.array(1, np.int64)))
        pos = b.Gather(E.weight(positions, hidden), positions_ids, axis=0)
        if segment_input:
            types = b.input("token_type_ids", "int64", [batch, seq])
        else:
            types = b.ConstantOfShape(b.Shape(ids), value=np.zeros(1, np.int64))
        seg = b.Gather(E.weight(type_vocab, hidden), types, axis=0)
        x = E.layer_norm(b.Add(b.Add(word, pos), seg), hidden, eps)
    blocks = []
    for i in range(layers):
        info = dict(stage=1, block=i, kind="encoder_layer", norm="post", heads=heads, hidden=hidden, ffn=ffn)
        with b.annotate(**node_meta(info)):
            x = E.layer_norm(b.Add(x, E.attention(x, hidden, heads)), hidden, eps)
            x = E.layer_norm(b.Add(x, E.mlp(x, hidden, ffn)), hidden, eps)
        blocks.append(info)
    b.output(x, "last_hidden_state")
    if pooler:
        with b.annotate(model_stage=2, block=0, kind="pooler"):
            first = b.Gather(x, b.const(np.array(0, np.int64)), axis=1)
            pooled = b.Tanh(b.Gemm(first, E.weight(hidden, hidden), E.zeros(hidden)))
        b.output(pooled, "pooler_output")
    g = b.build()
    g.meta["model"] = dict(family="bert", layers=layers, hidden=hidden, heads=heads, ffn=ffn, vocab=vocab,
                           max_positions=positions, type_vocab=type_vocab, width=w, depth=depth)
    g.meta["stages"] = [dict(stage=0, kind="embeddings", repeats=1), dict(stage=1, kind="encoder_layer",
                                                                          repeats=layers),
                        *([dict(stage=2, kind="pooler", repeats=1)] if pooler else [])]
    g.meta["blocks"] = blocks
    return g


def vit(*, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0, patch: int = 16, layers: int = 12,
        hidden: int = 768, heads: int = 12, mlp: int = 3072, num_classes: int = 1000, image_size: int = 224,
        batch: int | str = "N", seed: int = 0, opset: int = 17, eps: float = 1e-6) -> Graph:
    """ViT-B/16: 16x16 patch embedding (a strided conv), class token, learned position embeddings,
    ``layers`` pre-LN encoder layers, final LayerNorm, linear head on the class token."""
    name = "vit_b_16"
    layers = round_repeats(check_count("layers", layers, model=name), check_positive("depth", depth, model=name))
    w = check_positive("width", width, model=name)
    for arg, val in (("hidden", hidden), ("heads", heads), ("mlp", mlp), ("num_classes", num_classes),
                     ("patch", patch), ("image_size", image_size)):
        check_count(arg, val, model=name)
    hidden, heads, mlp = _scaled_width(name, hidden, heads, mlp, w)
    res = resolve_resolution(resolution, image_size, model=name, multiple=patch, minimum=patch,
                             why=f"one {patch}x{patch} patch")
    batch = check_batch(batch, model=name)
    tokens = (res // patch) ** 2 + 1

    b = GraphBuilder(name, opset=opset)
    E = Encoder(b, seed, opset)
    img = b.input("input", "float32", [batch, 3, res, res])
    with b.annotate(model_stage=0, block=0, kind="patch_embedding"):
        x = E.conv(img, 3, hidden, patch, patch, bias=True, gain=1.0, pad=0)
        x = b.Transpose(b.Reshape(x, b.const(np.array([0, hidden, -1], np.int64))), perm=[0, 2, 1])
        n = b.Shape(img, start=0, end=1)
        cls = b.Expand(E.weight(1, 1, hidden), b.Concat(n, b.const(np.array([1, hidden], np.int64)), axis=0))
        x = b.Add(b.Concat(cls, x, axis=1), E.weight(1, tokens, hidden))
    blocks = []
    for i in range(layers):
        info = dict(stage=1, block=i, kind="encoder_layer", norm="pre", heads=heads, hidden=hidden, ffn=mlp)
        with b.annotate(**node_meta(info)):
            x = b.Add(x, E.attention(E.layer_norm(x, hidden, eps), hidden, heads))
            x = b.Add(x, E.mlp(E.layer_norm(x, hidden, eps), hidden, mlp))
        blocks.append(info)
    with b.annotate(model_stage=2, block=0, kind="head"):
        x = E.layer_norm(x, hidden, eps)
        first = b.Gather(x, b.const(np.array(0, np.int64)), axis=1)
        y = b.Gemm(first, E.weight(num_classes, hidden), E.zeros(num_classes), transB=1)
    b.output(y, "logits")
    g = b.build()
    g.meta["model"] = dict(family="vit", patch=patch, layers=layers, hidden=hidden, heads=heads, mlp=mlp,
                           resolution=res, tokens=tokens, num_classes=num_classes, width=w, depth=depth)
    g.meta["stages"] = [dict(stage=0, kind="patch_embedding", repeats=1),
                        dict(stage=1, kind="encoder_layer", repeats=layers), dict(stage=2, kind="head", repeats=1)]
    g.meta["blocks"] = blocks
    return g
