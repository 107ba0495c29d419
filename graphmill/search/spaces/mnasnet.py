"""MnasNet's factorized hierarchical search space (Tan et al. 2019, Section 4.1, Figure 4) on the IR.

The network is cut into the 7 blocks of MnasNet-A1's table (``MNASNET_A1_BLOCKS``
in the zoo); each block picks, once for all the layers inside it:

* ``op``: ``"conv"`` (regular k x k conv + BN + ReLU), ``"dwconv"`` (depthwise-
  separable: k x k depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU, MobileNetV1's
  form) or ``"mbconv"`` (the inverted bottleneck with a linear projection);
* ``expand``: 1, 3 or 6 -- present only when ``op == "mbconv"`` (a conditional choice);
* ``kernel``: 3 or 5;  ``se``: squeeze-excitation ratio 0 or 0.25 (of the block's input channels);
* ``skip``: ``"none"`` or ``"identity"`` (a residual add where stride 1 and channels match);
* ``filters``: output channels 0.75, 1.0 or 1.25 x the base (then rounded to a multiple of 8);
* ``layers``: the base's layer count -1, 0 or +1 (only the deltas leaving at least one layer).

Stem (3x3 conv, stride 2, 32 channels), per-block strides and the head (1x1 conv to
1280, global pool, classifier) are fixed, as in the paper. A configuration is
``{"block1": {...}, ..., "block7": {...}}``. ``MNASNET_A1`` is one point of the space
and ``build_mnasnet(MNASNET_A1)`` is the zoo's ``mnasnet_a1`` node for node (its first
block, the table's "SepConv", is an MBConv with expansion 1 and no skip, as in the
reference implementation's ``e1 ... noskip``).

Proxy reductions for cheap evaluation: ``width`` (channel multiplier), ``resolution``
(a multiplier below 16, else pixels), ``num_classes`` and ``in_channels``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from graphmill.frontend.zoo import (Layers, check_batch, check_count, check_positive, mbconv, node_meta,
                                    resolve_resolution, round_filters)
from graphmill.frontend.zoo.mobilenet import MNASNET_A1_BLOCKS
from graphmill.ir import Graph, Value
from graphmill.ir.builder import GraphBuilder
from graphmill.search.space import Choice, Space

OPS = ("conv", "dwconv", "mbconv")
EXPANSIONS = (1, 3, 6)
KERNELS = (3, 5)
SE_RATIOS = (0.0, 0.25)
SKIPS = ("none", "identity")
FILTER_RATIOS = (0.75, 1.0, 1.25)
LAYER_DELTAS = (-1, 0, 1)

#: the 7 blocks' fixed part: (stride, base output channels, base layer count), from MnasNet-A1's table
BASE = [(stride, channels, repeats) for (_kind, _e, _k, stride, channels, repeats, _se) in MNASNET_A1_BLOCKS]
BLOCKS = [f"block{i}" for i in range(1, len(BASE) + 1)]
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def _a1_choice(kind: str, expand: int, kernel: int, se: float) -> dict:
    return {"op": "mbconv", "expand": expand, "kernel": kernel, "se": se,
            "skip": "none" if kind == "sepconv" else "identity", "filters": 1.0, "layers": 0}


#: MnasNet-A1 (Figure 7) as a configuration of this space
MNASNET_A1: dict[str, dict] = {name: _a1_choice(kind, e, k, se)
                               for name, (kind, e, k, _s, _c, _n, se) in zip(BLOCKS, MNASNET_A1_BLOCKS)}


def layer_deltas(base_layers: int) -> list[int]:
    """The layer-count deltas a block with ``base_layers`` layers may take (at least one layer remains)."""
    return [d for d in LAYER_DELTAS if base_layers + d >= 1]


def mnasnet_space() -> Space:
    """MnasNet's space as a ``graphmill.search.Space``: ``{"block1": Space({...}), ..., "block7": ...}``."""
    blocks = {}
    for name, (_stride, _channels, repeats) in zip(BLOCKS, BASE):
        blocks[name] = Space({
            "op": Choice(list(OPS)),
            "expand": Choice(list(EXPANSIONS), when={"op": "mbconv"}),
            "kernel": Choice(list(KERNELS)),
            "se": Choice(list(SE_RATIOS)),
            "skip": Choice(list(SKIPS)),
            "filters": Choice(list(FILTER_RATIOS)),
            "layers": Choice(layer_deltas(repeats)),
        })
    return Space(blocks)


def check_config(config: Any) -> dict[str, dict]:
    """``config`` in canonical form, or a UserInputError naming the parameter's path (``block3.kernel``)."""
    return mnasnet_space().validate(config)


def _conv_layer(L: Layers, x: Value, *, cin: int, cout: int, kernel: int, stride: int, se_channels: int,
                residual: bool) -> Value:
    """Regular conv: k x k conv + BN + ReLU [+ SE] [+ x]."""
    b = L.b
    with b.annotate(layer="conv"):
        y = L.conv_bn_act(x, cin, cout, kernel, stride, act="relu")
    if se_channels:
        with b.annotate(layer="se"):
            y = L.squeeze_excite(y, cout, se_channels, "relu")
    return b.Add(y, x) if residual else y


def _dwconv_layer(L: Layers, x: Value, *, cin: int, cout: int, kernel: int, stride: int, se_channels: int,
                  residual: bool) -> Value:
    """Depthwise-separable conv (MobileNetV1): k x k depthwise + BN + ReLU [+ SE], 1x1 + BN + ReLU [+ x]."""
    b = L.b
    with b.annotate(layer="depthwise"):
        y = L.conv_bn_act(x, cin, cin, kernel, stride, groups=cin, act="relu")
    if se_channels:
        with b.annotate(layer="se"):
            y = L.squeeze_excite(y, cin, se_channels, "relu")
    with b.annotate(layer="pointwise"):
        y = L.conv_bn_act(y, cin, cout, 1, act="relu")
    return b.Add(y, x) if residual else y


def build_mnasnet(config: dict | None = None, *, width: float = 1.0, resolution: float = 1.0,
                  num_classes: int = 1000, in_channels: int = 3, batch: int | str = "N", seed: int = 0,
                  opset: int = 17, name: str = "mnasnet_search") -> Graph:
    """Build the network of ``config`` (default: MnasNet-A1) as a verified ``ir.Graph``.

    Nodes carry the zoo's ``meta["model_stage"]`` (1..7 for the searched blocks, 0 stem, 8 head),
    ``meta["block"]`` (the layer's index inside its stage), ``meta["kind"]`` (the op) and,
    in searched blocks, ``meta["search_block"]`` (``"block3"``) and ``meta["choice"]`` (that
    block's choices); ``graph.meta`` holds ``model``, ``config``, ``stages`` and ``blocks``,
    so compound scaling and the structure analyses treat it like a zoo model.
    """
    config = check_config(MNASNET_A1 if config is None else config)
    w = check_positive("width", width, model=name)
    res = resolve_resolution(resolution, 224, model=name)
    num_classes = check_count("num_classes", num_classes, model=name)
    in_channels = check_count("in_channels", in_channels, model=name)
    batch = check_batch(batch, model=name)

    b = GraphBuilder(name, opset=opset)
    L = Layers(b, seed)
    x = b.input("input", "float32", [batch, in_channels, res, res])
    c_stem = round_filters(STEM_CHANNELS, w)
    with b.annotate(model_stage=0, block=0, kind="stem"):
        y = L.conv_bn_act(x, in_channels, c_stem, 3, 2, act="relu")
    stages: list[dict] = []
    layers: list[dict] = []
    cin = c_stem
    size = (res + 1) // 2
    for s, (bname, (st, c, n)) in enumerate(zip(BLOCKS, BASE), start=1):
        ch = config[bname]
        op, k, se, e = ch["op"], ch["kernel"], float(ch["se"]), ch.get("expand", 1)
        cout = round_filters(c * ch["filters"], w)
        reps = n + ch["layers"]
        stages.append(dict(stage=s, name=bname, kind=op, expand=e, kernel=k, stride=st, se=se, skip=ch["skip"],
                           cin=cin, cout=cout, repeats=reps))
        for i in range(reps):
            stride = st if i == 0 else 1
            squeeze = max(1, int(cin * se)) if se else 0
            skip = ch["skip"] == "identity"
            residual = skip and stride == 1 and cin == cout
            info = dict(stage=s, block=i, kind=op, expand=e, kernel=k, stride=stride, se=se)
            with b.annotate(**node_meta(info), search_block=bname, choice=dict(ch)):
                if op == "mbconv":
                    y = mbconv(L, y, cin=cin, cout=cout, expand=e, kernel=k, stride=stride, se_channels=squeeze,
                               act="relu", se_act="relu", skip=skip)
                elif op == "dwconv":
                    y = _dwconv_layer(L, y, cin=cin, cout=cout, kernel=k, stride=stride, se_channels=squeeze,
                                      residual=residual)
                else:
                    y = _conv_layer(L, y, cin=cin, cout=cout, kernel=k, stride=stride, se_channels=squeeze,
                                    residual=residual)
            size = (size + stride - 1) // stride
            layers.append(dict(info, cin=cin, cout=cout, se_channels=squeeze, residual=residual, out_size=size))
            cin = cout
    c_head = round_filters(HEAD_CHANNELS, w)
    with b.annotate(model_stage=len(BASE) + 1, block=0, kind="head"):
        y = L.conv_bn_act(y, cin, c_head, 1, act="relu")
        y = L.classifier(y, c_head, num_classes)
    b.output(y, "logits")
    g = b.build()  # inferred types and ir.verify: a configuration the builder accepts is a sound graph
    g.meta["model"] = dict(family="mnasnet_search", width=w, resolution=res, stem=c_stem, head=c_head,
                           num_classes=num_classes, in_channels=in_channels)
    g.meta["config"] = copy.deepcopy(config)
    g.meta["stages"] = stages
    g.meta["blocks"] = layers
    return g


@dataclass
class MnasNetBuilder:
    """``builder(config) -> Graph`` with fixed proxy settings: a picklable callable for evaluators and workers.

    A joint NN x accelerator configuration (``{"nn": ..., "accel": ...}``) builds its ``nn`` half.
    """

    width: float = 1.0
    resolution: float = 1.0
    num_classes: int = 1000
    in_channels: int = 3
    batch: int | str = 1
    seed: int = 0

    def __call__(self, config: dict) -> Graph:
        nn = config["nn"] if isinstance(config, dict) and set(config) == {"nn", "accel"} else config
        return build_mnasnet(nn, width=self.width, resolution=self.resolution, num_classes=self.num_classes,
                             in_channels=self.in_channels, batch=self.batch, seed=self.seed)
