"""BERT-base-like encoder and ViT-B/16 from the zoo against their papers.

References: BERT (Devlin et al. 2018): BERT-base, L=12, H=768, A=12, 110M parameters; the exact
count is computed here from the architecture (embeddings, per-layer attention/FFN/LayerNorms,
pooler) and the hyperparameters, an independent reference. ViT (Dosovitskiy et al. 2020), Table 1:
ViT-Base 86M parameters; torchvision.models.vit_b_16 documents 86,567,656 params and 17.56 GFLOPS
(multiply-adds). Multiply-adds of the encoders are also computed here from the layer shapes.
ONNX Runtime runs what the zoo builds (BERT at batch 1, sequence 128).
"""

from __future__ import annotations

import numpy as np
import pytest

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.frontend import zoo
from graphmill.ir import UserInputError
from graphmill.ir.summary import summarize


def weights(g, dims=None) -> int:
    """Parameters as summarize counts them: 0-d scalars (1/sqrt(d), GELU's 0.5, 1, sqrt(2)) are not weights."""
    return summarize(g, dims).params


def bert_params(V, P, T, H, L, F, pooler=True) -> int:
    emb = V * H + P * H + T * H + 2 * H                    # token, position, segment tables + LayerNorm
    layer = 4 * (H * H + H) + 2 * H + (H * F + F) + (F * H + H) + 2 * H   # Q,K,V,O + LN + FFN + LN
    return emb + L * layer + (H * H + H if pooler else 0)


def encoder_macs(S, H, L, F) -> int:
    return L * (S * 4 * H * H + 2 * S * S * H + 2 * S * H * F)  # projections, QK^T and PV, FFN


def test_bert_base_params_equal_the_architecture_formula():
    g = zoo.build("bert_base")
    p = weights(g)
    assert p == bert_params(30522, 512, 2, 768, 12, 3072)
    assert abs(p - 110e6) / 110e6 < 0.01  # the paper's 110M
    s = summarize(g, {"N": 1, "S": 128})
    assert s.cost_unknown_nodes == 0 and not s.ops_without_cost
    assert s.macs == encoder_macs(128, 768, 12, 3072) + 768 * 768  # + the pooler


def test_bert_is_configurable_and_scales():
    g = zoo.build("bert_base", layers=2, hidden=128, heads=2, ffn=512, vocab=1000, max_positions=64)
    assert weights(g) == bert_params(1000, 64, 2, 128, 2, 512)
    # width 2 doubles the heads (head size 64 kept), depth 1.5 -> ceil(3) layers, resolution 2 -> 128 positions
    g = zoo.build("bert_base", layers=2, hidden=128, heads=2, ffn=512, vocab=1000, max_positions=64,
                  width=2.0, depth=1.5, resolution=2.0)
    assert weights(g) == bert_params(1000, 128, 2, 256, 3, 1024)
    assert {n.meta["block"] for n in g.nodes if n.meta.get("kind") == "encoder_layer"} == {0, 1, 2}


def test_bert_runs_under_onnxruntime_with_symbolic_batch_and_sequence():
    g = zoo.build("bert_base")
    graphmill.verify(g)
    ids = g.inputs[0]
    assert ids.name == "input_ids" and ids.type.dtype.short_name == "int64" and ids.type.shape == ("N", "S")
    out = ortb.run(g, ortb.random_inputs(g, seed=0, dims={"N": 1, "S": 128}))
    assert out["last_hidden_state"].shape == (1, 128, 768) and np.isfinite(out["last_hidden_state"]).all()
    assert out["pooler_output"].shape == (1, 768) and np.isfinite(out["pooler_output"]).all()
    ops = summarize(g).ops
    assert ops["LayerNormalization"] == 25 and ops["Erf"] == 12  # opset 17: Erf-based GELU


def test_bert_segment_input_and_other_sequence_lengths():
    g = zoo.build("bert_base", layers=1, hidden=64, heads=1, ffn=128, vocab=100, segment_input=True)
    feeds = {"input_ids": np.arange(20, dtype=np.int64).reshape(2, 10) % 100,
             "token_type_ids": np.array([[0] * 5 + [1] * 5] * 2, np.int64)}
    out = ortb.run(g, feeds)
    assert out["last_hidden_state"].shape == (2, 10, 64) and np.isfinite(out["last_hidden_state"]).all()


def test_vit_b16_matches_torchvision_and_the_paper():
    g = zoo.build("vit_b_16", batch=1)
    p = weights(g)
    assert p == 86_567_656                       # torchvision docs (paper: 86M)
    H, L, F, S = 768, 12, 3072, 197
    patch = 768 * 3 * 16 * 16 + 768              # conv embedding with bias
    formula = patch + H + S * H + L * (4 * (H * H + H) + 4 * H + H * F + F + F * H + H) + 2 * H + H * 1000 + 1000
    assert p == formula
    s = summarize(g)
    assert s.cost_unknown_nodes == 0
    assert abs(s.macs - 17.56e9) / 17.56e9 < 0.05, s.macs
    assert s.macs == 196 * 768 * 768 + encoder_macs(S, H, L, F) + H * 1000


def test_vit_runs_under_onnxruntime():
    g = zoo.build("vit_b_16", batch=1)
    graphmill.verify(g)
    y = ortb.run(g, ortb.random_inputs(g, seed=0))["logits"]
    assert y.shape == (1, 1000) and np.isfinite(y).all() and y.std() > 0


def test_vit_resolution_keeps_patches_whole():
    g = zoo.build("vit_b_16", resolution=0.5, depth=0.25, width=0.5)
    assert g.inputs[0].type.shape == ("N", 3, 112, 112)
    pos = [v for v in g.initializers.values() if v.const is not None and v.const.shape == (1, 50, 384)]
    assert pos  # (112 / 16)^2 + 1 = 50 tokens, hidden 6 heads * 64 = 384
    y = ortb.run(g, ortb.random_inputs(g, seed=0, dims={"N": 2}))["logits"]
    assert y.shape == (2, 1000) and np.isfinite(y).all()
    with pytest.raises(UserInputError, match="resolution"):
        zoo.build("vit_b_16", resolution=230)  # not a multiple of the 16-pixel patch


@pytest.mark.parametrize("name", ["bert_base", "vit_b_16"])
@pytest.mark.parametrize("arg", ["width", "depth", "resolution"])
def test_bad_multipliers_name_the_argument(name, arg):
    with pytest.raises(UserInputError, match=arg):
        zoo.build(name, **{arg: 0})
