"""The torch.nn models bench_optimize.py exports, written from the papers' block tables.

torchvision is not installable here, so the CNNs and ViT are written out in
the torchvision layout (same blocks, same layer order, same ops in the export);
the BERT-like encoder follows the HuggingFace BertModel layout (attention
written out with MatMul/Softmax, erf GELU, post-LayerNorm); the 4-layer
encoder is ``torch.nn.TransformerEncoder``. Weights are seeded random
(``torch.manual_seed``); BatchNorm running statistics are calibrated on one
seeded random batch, so activations stay O(1) through 50 layers and the
output-difference column measures something. Everything is in eval mode.

``export(name, path)`` writes one model with the legacy TorchScript exporter
(``dynamo=False``, opset 17), the exporter the issue's measurements used.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

SEED = 0
OPSET = 17


# -- CNN building blocks --------------------------------------------------------

def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: Callable[[], nn.Module] | None = None
            ) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


# -- ResNet-50 (He et al. 2016, Table 1; torchvision's v1.5: stride on the 3x3) ---

class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + idt)


class ResNet50(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        blocks, cin = [], 64
        for i, n in enumerate(layers):
            width = 64 * 2 ** i
            for j in range(n):
                blocks.append(Bottleneck(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * Bottleneck.expansion
        self.layers = nn.Sequential(*blocks)
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x))
        return self.fc(torch.flatten(x, 1))


# -- MobileNetV2 (Sandler et al. 2018, Table 2) -----------------------------------

class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = cin * t
        layers: list[nn.Module] = []
        if t != 1:
            layers.append(conv_bn(cin, hidden, 1, act=nn.ReLU6))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), conv_bn(hidden, cout, 1)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    TABLE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
        cin = 32
        for t, c, n, s in self.TABLE:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# -- EfficientNet-B0 (Tan & Le 2019, Table 1) -------------------------------------

class SqueezeExcitation(nn.Module):
    def __init__(self, cin: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(cin, squeeze, 1), nn.Conv2d(squeeze, cin, 1)
        self.act, self.scale_act = nn.SiLU(), nn.Sigmoid()

    def forward(self, x):
        return x * self.scale_act(self.fc2(self.act(self.fc1(self.avgpool(x)))))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = _make_divisible(cin * expand)
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(conv_bn(cin, hidden, 1, act=nn.SiLU))
        layers += [conv_bn(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcitation(hidden, max(1, cin // 4)), conv_bn(hidden, cout, 1)]
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout  # stochastic depth is the identity in eval mode

    def forward(self, x):
        return x + self.block(x) if self.use_res else self.block(x)


class EfficientNetB0(nn.Module):
    # expand ratio, kernel, stride, in, out, repeats
    TABLE = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
             (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.SiLU)]
        for e, k, s, cin, cout, n in self.TABLE:
            for i in range(n):
                layers.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        layers.append(conv_bn(320, 1280, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# -- BERT-base-like encoder (Devlin et al. 2019; HuggingFace BertModel layout) ----

class BertLayer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int) -> None:
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attn_out, self.ln1 = nn.Linear(d, d), nn.LayerNorm(d, eps=1e-12)
        self.inter, self.out, self.ln2 = nn.Linear(d, ff), nn.Linear(ff, d), nn.LayerNorm(d, eps=1e-12)

    def _split(self, x):
        b, s, _ = x.shape
        return x.view(b, s, self.heads, self.dh).permute(0, 2, 1, 3)

    def forward(self, x, mask_bias):
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh) + mask_bias
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).contiguous()
        ctx = ctx.view(x.shape[0], x.shape[1], -1)
        x = self.ln1(x + self.attn_out(ctx))
        return self.ln2(x + self.out(nn.functional.gelu(self.inter(x))))


class BertEncoder(nn.Module):
    def __init__(self, vocab: int = 30522, d: int = 768, layers: int = 12, heads: int = 12, ff: int = 3072,
                 max_pos: int = 512) -> None:
        super().__init__()
        self.word, self.pos, self.token_type = nn.Embedding(vocab, d), nn.Embedding(max_pos, d), nn.Embedding(2, d)
        self.ln = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList(BertLayer(d, heads, ff) for _ in range(layers))
        self.pooler = nn.Linear(d, d)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        pos = torch.arange(s, dtype=torch.long).unsqueeze(0)
        x = self.ln(self.word(input_ids) + self.pos(pos) + self.token_type(torch.zeros_like(input_ids)))
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask_bias)
        return x, torch.tanh(self.pooler(x[:, 0]))


# -- ViT-B/16 (Dosovitskiy et al. 2021, Table 1; torchvision layout) --------------

class ViTBlock(nn.Module):
    def __init__(self, d: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, d), nn.Dropout(0.0))

    def forward(self, x):
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class ViTB16(nn.Module):
    def __init__(self, image: int = 224, patch: int = 16, d: int = 768, layers: int = 12, heads: int = 12,
                 mlp: int = 3072, num_classes: int = 1000) -> None:
        super().__init__()
        self.patch, self.d = patch, d
        self.conv_proj = nn.Conv2d(3, d, patch, patch)
        self.class_token = nn.Parameter(0.02 * torch.randn(1, 1, d))
        self.pos_embedding = nn.Parameter(0.02 * torch.randn(1, (image // patch) ** 2 + 1, d))
        self.layers = nn.Sequential(*(ViTBlock(d, heads, mlp) for _ in range(layers)))
        self.ln = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, num_classes)

    def forward(self, x):
        n = x.shape[0]
        x = self.conv_proj(x).reshape(n, self.d, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1) + self.pos_embedding
        x = self.ln(self.layers(x))
        return self.head(x[:, 0])


# -- the registry ---------------------------------------------------------------

def _image(shape=(1, 3, 224, 224)):
    def make(gen: torch.Generator):
        return (torch.randn(*shape, generator=gen),)
    return make


def _tokens(seq: int, vocab: int = 30522):
    def make(gen: torch.Generator):
        ids = torch.randint(0, vocab, (1, seq), generator=gen, dtype=torch.long)
        return ids, torch.ones(1, seq, dtype=torch.long)
    return make


def _encoder_input(seq: int, d: int):
    def make(gen: torch.Generator):
        return (torch.randn(1, seq, d, generator=gen),)
    return make


def _torch_encoder4() -> nn.Module:
    layer = nn.TransformerEncoderLayer(512, 8, 2048, dropout=0.1, batch_first=True)
    return nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)


# name -> (constructor, example-input maker, input names, output names, one-line description)
MODELS: dict[str, tuple] = {
    "resnet50": (ResNet50, _image(), ["input"], ["logits"], "ResNet-50, 1x3x224x224"),
    "mobilenet_v2": (MobileNetV2, _image(), ["input"], ["logits"], "MobileNetV2 (width 1.0), 1x3x224x224"),
    "efficientnet_b0": (EfficientNetB0, _image(), ["input"], ["logits"], "EfficientNet-B0, 1x3x224x224"),
    "bert_base": (BertEncoder, _tokens(128), ["input_ids", "attention_mask"], ["last_hidden_state", "pooler_output"],
                  "BERT-base-like encoder: 12 layers, d=768, 12 heads, ff=3072, seq 128, with embeddings"),
    "encoder4": (_torch_encoder4, _encoder_input(128, 512), ["src"], ["out"],
                 "nn.TransformerEncoder: 4 layers, d=512, 8 heads, ff=2048, 1x128x512"),
    "vit_b16": (ViTB16, _image(), ["input"], ["logits"], "ViT-B/16, 1x3x224x224"),
}


def _calibrate_batchnorm(model: nn.Module, make_input, gen: torch.Generator) -> None:
    """Running statistics of every BatchNorm = those of one random batch; random affine terms."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the statistics exactly
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5, generator=gen)
            bn.bias.normal_(0.0, 0.1, generator=gen)
    model.train()
    with torch.no_grad():
        batch = torch.cat([make_input(gen)[0] for _ in range(4)])
        model(batch)
    model.eval()


def build(name: str, seed: int = SEED) -> tuple[nn.Module, tuple]:
    """The model in eval mode and its example inputs, both from ``seed``."""
    ctor, make_input, *_ = MODELS[name]
    torch.manual_seed(seed)
    model = ctor()
    gen = torch.Generator().manual_seed(seed + 1)
    _calibrate_batchnorm(model, make_input, gen)
    model.eval()
    return model, make_input(torch.Generator().manual_seed(seed + 2))


def export(name: str, path: str, seed: int = SEED) -> None:
    """Export ``name`` to ``path`` with the legacy exporter (dynamo=False), opset 17, static shapes."""
    import warnings

    model, args = build(name, seed)
    _, _, input_names, output_names, _ = MODELS[name]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # else the encoder traces to one fused aten op ONNX lacks
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, path, dynamo=False, opset_version=OPSET,
                              input_names=input_names, output_names=output_names, do_constant_folding=True)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


if __name__ == "__main__":  # python benchmarks/torch_models.py OUTDIR [NAME ...]: export for a look
    import os
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "."
    for n in sys.argv[2:] or list(MODELS):
        p = os.path.join(out, n + ".onnx")
        export(n, p)
        print(p, os.path.getsize(p))
