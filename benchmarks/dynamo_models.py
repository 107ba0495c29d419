"""Small held-out CNNs for the dynamo-exporter comparison (bench_dynamo.py, tests/passes/test_dynamo_exports.py).

Written from the papers' block tables at small widths and resolutions so an export takes seconds
(torchvision is not installable here): ResNet-18 (He et al. 2016, table 1: basic blocks [2, 2, 2, 2]),
MobileNetV2 (Sandler et al. 2018, table 2: inverted residuals, depthwise 3x3, ReLU6), EfficientNet-B0
(Tan & Le 2019, table 1: MBConv with SiLU and squeeze-excitation), VGG-11 with BatchNorm (Simonyan &
Zisserman 2015, configuration A) and a two-layer pre-LN transformer encoder (Vaswani et al. 2017) with a
symbolic batch and sequence length. Convolutions before a BatchNorm have no bias, as in torchvision,
except VGG's (torchvision's vgg11_bn keeps them): that is the case the dynamo exporter writes as
``Expand(CastLike(0, x), Shape(W)[0:1])``. BatchNorm statistics are seeded random, not 0/1, so a
wrong fold shows in the outputs.

``export_raw(name, path)`` writes ``torch.onnx.export(model, args, path, dynamo=True, optimize=False)``.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

SEED = 0


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
            act: Callable[[], nn.Module] | None = nn.ReLU6) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + ([act()] if act is not None else [])


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_bn(cin, cout, 3, stride, act=nn.ReLU), *conv_bn(cout, cout, 3, act=None))
        self.down = (nn.Sequential(*conv_bn(cin, cout, 1, stride, act=None)) if stride != 1 or cin != cout
                     else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.down(x))


class ResNet18(nn.Module):
    def __init__(self, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [*conv_bn(3, width, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)]
        c = width
        for i, mult in enumerate((1, 2, 4, 8)):
            layers += [BasicBlock(c, width * mult, 1 if i == 0 else 2), BasicBlock(width * mult, width * mult, 1)]
            c = width * mult
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = conv_bn(cin, hidden, 1) if expand != 1 else []
        layers += conv_bn(hidden, hidden, 3, stride, groups=hidden) + conv_bn(hidden, cout, 1, act=None)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    TABLE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, width: float = 0.25, classes: int = 10) -> None:
        super().__init__()
        c = max(8, int(32 * width))
        layers = conv_bn(3, c, 3, 2)
        for t, out, n, s in self.TABLE:
            out = max(8, int(out * width))
            for j in range(n):
                layers.append(InvertedResidual(c, out, s if j == 0 else 1, t))
                c = out
        layers += conv_bn(c, 128, 1)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class SqueezeExcitation(nn.Module):
    def __init__(self, c: int, squeezed: int) -> None:
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, squeezed, 1), nn.Conv2d(squeezed, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.silu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.expand(s))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = conv_bn(cin, hidden, 1, act=nn.SiLU) if expand != 1 else []
        layers += conv_bn(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU)
        layers += [SqueezeExcitation(hidden, max(1, cin // 4))] + conv_bn(hidden, cout, 1, act=None)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class EfficientNetB0(nn.Module):
    TABLE = ((1, 3, 1, 1, 16), (6, 3, 2, 2, 24), (6, 5, 2, 2, 40), (6, 3, 3, 2, 80), (6, 5, 3, 1, 112),
             (6, 5, 4, 2, 192), (6, 3, 1, 1, 320))

    def __init__(self, width: float = 0.25, classes: int = 10) -> None:
        super().__init__()
        c = max(8, int(32 * width))
        layers = conv_bn(3, c, 3, 2, act=nn.SiLU)
        for t, k, n, s, out in self.TABLE:
            out = max(8, int(out * width))
            for j in range(n):
                layers.append(MBConv(c, out, k, s if j == 0 else 1, t))
                c = out
        layers += conv_bn(c, 128, 1, act=nn.SiLU)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


class VGG11BN(nn.Module):
    CONFIG = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")

    def __init__(self, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in self.CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, width * v, 3, padding=1), nn.BatchNorm2d(width * v), nn.ReLU(inplace=True)]
                c = width * v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(c, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class EncoderBlock(nn.Module):
    """A pre-LN transformer encoder layer (Vaswani et al. 2017, with the pre-norm of GPT-2/ViT): fused QKV
    projection split by ``chunk``, per-head ``view``s of a batch that stays symbolic, softmax attention, GELU MLP."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, d: int = 64, heads: int = 8, layers: int = 2) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[EncoderBlock(d, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(x))


# name -> (constructor, input resolution; for the transformer its sequence length)
MODELS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "resnet18": (ResNet18, 64), "mobilenetv2": (MobileNetV2, 64), "efficientnet": (EfficientNetB0, 64),
    "vgg11bn": (VGG11BN, 32), "transformer": (Transformer, 16),
}
SYMBOLIC_BATCH = {"transformer"}  # exported with a symbolic batch and sequence length (torch.export.Dim)


def build(name: str, seed: int = SEED) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The model in eval mode with seeded weights and BatchNorm statistics, and its example input."""
    make, res = MODELS[name]
    torch.manual_seed(seed)
    model = make().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    if name == "transformer":
        return model, (torch.randn(2, res, 64),)
    return model, (torch.randn(1, 3, res, res),)


def export_raw(name: str, path: str, seed: int = SEED) -> None:
    """``torch.onnx.export(..., dynamo=True, optimize=False)``: the exporter's graph before onnxscript's optimizer."""
    model, args = build(name, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dynamic = ({0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")},) if name in SYMBOLIC_BATCH else None
        torch.onnx.export(model, args, path, dynamo=True, optimize=False, verbose=False, dynamic_shapes=dynamic)
