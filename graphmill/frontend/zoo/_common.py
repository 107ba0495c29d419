"""Shared pieces of the zoo's builders: multiplier rules, validation, seeded layers.

The scaling rules are the published ones:

* ``round_filters(c, w, divisor=8)``: ``c * w`` rounded to the nearest multiple
  of ``divisor`` (at least ``divisor``), bumped up by one ``divisor`` when the
  rounding went down by more than 10% (EfficientNet's and MobileNetV2's
  ``_make_divisible``).
* ``round_repeats(n, d)``: ``ceil(n * d)`` (EfficientNet).
* resolution: a value below 16 is a multiplier of the model's native input
  size, 16 or more an explicit size in pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphmill.ir import DataType, Graph, Tensor, UserInputError, Value
from graphmill.ir.builder import GraphBuilder
# the one definition of the rounding rules (ir/scaling.py)
from graphmill.ir.scaling import round_filters, round_repeats, squeeze_channels  # noqa: F401

#: 1 / E[act(x)^2] for x ~ N(0, 1): the weight gain that keeps a layer after ``act`` at unit variance
GAIN = {"relu": 2.0, "relu6": 2.0, "swish": 1 / 0.3553, "none": 1.0}

#: resolution values below this are multipliers, values at or above it are sizes in pixels
RESOLUTION_SIZE_THRESHOLD = 16

#: The smallest input of the zoo's CNNs (their ``min_resolution`` default): five stride-2 stages, 32 in all;
#: below it the last stage computes on padding only. A caller that wants such a toy says so (the scale
#: search's 16x16 digits base passes ``min_resolution=16``).
CNN_MIN_RESOLUTION = 32


#: The node meta key of a node's *architectural* stage (stem 0, the body stages, the head). Not ``"stage"``:
#: that key is the pipeline stage the ``pipeline-partition`` pass writes, and compound scaling must still see
#: the model's stages after partitioning. ``graph.meta["stages"]``/``["blocks"]`` rows keep their ``"stage"``.
MODEL_STAGE = "model_stage"


def node_meta(info: dict) -> dict:
    """A ``graph.meta["blocks"]``-style row as node meta: its ``"stage"`` becomes ``MODEL_STAGE``.

    For ``b.annotate(**node_meta(info))``: the table rows and the node annotations share their fields except
    that one key, which on a node would collide with the pipeline stage.
    """
    return {MODEL_STAGE if k == "stage" else k: v for k, v in info.items()}


def cnn_minimum(min_resolution: int) -> dict:
    """``resolve_resolution``'s ``minimum``/``why`` arguments for a CNN."""
    return {"minimum": check_count("min_resolution", min_resolution), "why": "its stages downsample by 32"
            if min_resolution == CNN_MIN_RESOLUTION else f"min_resolution={min_resolution}"}


def check_positive(name: str, value: Any, *, model: str = "") -> float:
    """``value`` as a float, or a UserInputError naming the argument when it is not a number > 0."""
    shown = value if isinstance(value, str) and value.strip() else repr(value)
    problem = UserInputError(f"{name}={shown}{' for ' + model if model else ''}: must be a number > 0")
    if isinstance(value, bool):
        raise problem
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise problem from None
    if not math.isfinite(v) or v <= 0:
        raise problem
    return v


def check_count(name: str, value: Any, *, model: str = "", minimum: int = 1) -> int:
    """An integer hyperparameter (layers, heads, classes) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        where = f" for {model}" if model else ""
        raise UserInputError(f"{name}={value!r}{where}: must be an integer >= {minimum}")
    return int(value)


def check_batch(batch: Any, *, model: str = "") -> int | str:
    if isinstance(batch, str) and batch.isidentifier():
        return batch
    return check_count("batch", batch, model=model)


def resolve_resolution(resolution: Any, native: int, *, model: str = "", multiple: int = 1, minimum: int = 1,
                       why: str = "") -> int:
    """The input size for ``resolution``: a multiplier of ``native`` (< 16) or a size in pixels (>= 16).

    The result is rounded to the nearest multiple of ``multiple``. A size below ``minimum`` is refused
    (``why`` says why in the message): a CNN's stages downsample by 32 in all, so a smaller input leaves
    its last stages computing on padding only, and a ViT needs one whole patch; such a model would
    build and run, and its cost figures would mean nothing.
    """
    r = check_positive("resolution", resolution, model=model)
    if r >= RESOLUTION_SIZE_THRESHOLD:
        if not r.is_integer() or int(r) % multiple:
            raise UserInputError(f"resolution={resolution!r} for {model}: an explicit size must be an integer"
                                 + (f" multiple of {multiple}" if multiple > 1 else ""))
        size = int(r)
    else:
        size = int(round(r * native / multiple)) * multiple
    if size < max(minimum, 1):
        raise UserInputError(f"resolution={resolution} for {model} gives a {size}x{size} input; the minimum is "
                             f"{minimum}x{minimum}{' (' + why + ')' if why else ''}")
    return size


class SeededNormal:
    """A weight drawn on first use: float32 N(0, std^2) of ``shape`` from its own ``seed`` (a ``Tensor`` source).

    Big models' parameter and MAC counts need shapes only; drawing 168M weights costs seconds that a count,
    a ``graphmill inspect`` or a shape test never needs. The data is the same whenever it is drawn.
    """

    def __init__(self, seed: int, shape: tuple[int, ...], std: float) -> None:
        self.seed, self.shape, self.std = seed, tuple(shape), float(std)

    def numpy(self) -> np.ndarray:
        a = np.random.default_rng(self.seed).standard_normal(self.shape, dtype=np.float32)
        a *= np.float32(self.std)
        return a


class Layers:
    """Seeded layers on a GraphBuilder (He-normal convolutions, BN at identity statistics).

    ``lazy=True``: random weights are ``SeededNormal`` tensors, drawn when something reads them (a run, a
    save), each from a seed the builder's generator draws in build order, so a model is still a function
    of its seed. The zoo's older builders keep eager weights (their values are part of saved expectations).
    """

    def __init__(self, b: GraphBuilder, seed: int, *, lazy: bool = False) -> None:
        self.b = b
        self.rng = np.random.default_rng(seed)
        self.lazy = lazy
        self._scalars: dict[tuple[str, float], Value] = {}

    def scalar(self, value: float, dtype: str = "float32") -> Value:
        """One shared 0-d initializer per (dtype, value) in the whole graph."""
        key = (dtype, float(value))
        if key not in self._scalars:
            self._scalars[key] = self.b.const(np.array(value, dtype=dtype), name=self.b.graph.unique_name("scalar"))
        return self._scalars[key]

    def normal(self, shape: tuple[int, ...], std: float) -> np.ndarray | Tensor:
        """N(0, std^2) float32 weights of ``shape`` (a lazily drawn ``Tensor`` when ``lazy``)."""
        if self.lazy:
            seed = int(self.rng.integers(2**63))
            return Tensor(source=SeededNormal(seed, shape, std), dtype=DataType.FLOAT, shape=tuple(shape))
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def conv(self, x: Value, cin: int, cout: int, k: int, stride: int = 1, *, groups: int = 1,
             bias: bool = False, gain: float = 2.0, pad: int | None = None) -> Value:
        b = self.b
        fan_in = (cin // groups) * k * k
        w = b.const(self.normal((cout, cin // groups, k, k), math.sqrt(gain / fan_in)))
        bv = b.const(np.zeros(cout, np.float32)) if bias else None
        return b.Conv(x, w, bv, kernel_shape=[k, k], strides=[stride, stride], pads=[(k - 1) // 2 if pad is None else pad] * 4,
                      group=groups if groups != 1 else None)

    def bn(self, x: Value, c: int, *, gamma: float = 1.0, eps: float = 1e-5) -> Value:
        b = self.b
        return b.BatchNormalization(x, b.const(np.full(c, gamma, np.float32)), b.const(np.zeros(c, np.float32)),
                                    b.const(np.zeros(c, np.float32)), b.const(np.ones(c, np.float32)),
                                    epsilon=eps)

    def act(self, x: Value, kind: str) -> Value:
        b = self.b
        if kind == "relu":
            return b.Relu(x)
        if kind == "relu6":
            return b.Clip(x, self.scalar(0.0), self.scalar(6.0))
        if kind == "swish":  # x * sigmoid(x): portable (ONNX's Swish op needs opset 24)
            return b.Mul(x, b.Sigmoid(x))
        if kind == "none":
            return x
        raise ValueError(f"unknown activation {kind!r}")

    def conv_bn_act(self, x: Value, cin: int, cout: int, k: int, stride: int = 1, *, groups: int = 1,
                    act: str = "relu", gamma: float = 1.0, eps: float = 1e-5, gain: float | None = None) -> Value:
        g = gain if gain is not None else (2.0 if act != "none" else 1.0)
        y = self.conv(x, cin, cout, k, stride, groups=groups, gain=g)
        return self.act(self.bn(y, cout, gamma=gamma, eps=eps), act)

    def squeeze_excite(self, x: Value, channels: int, squeeze: int, act: str) -> Value:
        """Global pool, 1x1 conv to ``squeeze`` (bias) + act, 1x1 conv back (bias) + sigmoid, rescale."""
        b = self.b
        s = b.GlobalAveragePool(x)
        s = self.act(self.conv(s, channels, squeeze, 1, bias=True), act)
        s = b.Sigmoid(self.conv(s, squeeze, channels, 1, bias=True, gain=1.0))
        return b.Mul(x, s)

    def classifier(self, x: Value, cin: int, num_classes: int) -> Value:
        """Global average pool, flatten, fully connected layer (Gemm with bias)."""
        b = self.b
        y = b.Flatten(b.GlobalAveragePool(x), axis=1)
        w = b.const(self.normal((num_classes, cin), math.sqrt(1.0 / cin)))
        return b.Gemm(y, w, b.const(np.zeros(num_classes, np.float32)), transB=1)


def mbconv(L: Layers, x: Value, *, cin: int, cout: int, expand: int, kernel: int, stride: int,
           se_channels: int, act: str, se_act: str | None = None, skip: bool = True, eps: float = 1e-5) -> Value:
    """Inverted residual block: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (linear) [+ x]."""
    b = L.b
    mid = cin * expand
    residual = skip and stride == 1 and cin == cout
    y = x
    # gains keep random-weight activations near unit variance through deep stacks (a block's input is ~linear)
    if expand != 1:
        with b.annotate(layer="expand"):
            y = L.conv_bn_act(y, cin, mid, 1, act=act, eps=eps, gain=1.0)
    with b.annotate(layer="depthwise"):
        y = L.conv_bn_act(y, mid, mid, kernel, stride, groups=mid, act=act, eps=eps,
                          gain=GAIN[act] if expand != 1 else 1.0)
    return se_project_residual(L, y, x, mid=mid, cout=cout, se_channels=se_channels, act=act, se_act=se_act,
                               residual=residual, eps=eps)


def se_project_residual(L: Layers, y: Value, x: Value, *, mid: int, cout: int, se_channels: int, act: str,
                        se_act: str | None, residual: bool, eps: float, project: bool = True) -> Value:
    """The tail MBConv and Fused-MBConv share: [SE on ``mid`` channels] -> [1x1 project to ``cout`` + BN,
    linear] -> [+ the block input ``x``]."""
    b = L.b
    if se_channels:
        with b.annotate(layer="se"):
            y = L.squeeze_excite(y, mid, se_channels, se_act or act)
    if project:
        with b.annotate(layer="project"):
            # the SE gate is ~0.5 at random weights; a small gamma on residual branches keeps their sum tame
            y = L.conv_bn_act(y, mid, cout, 1, act="none", gamma=0.3 if residual else 1.0, eps=eps,
                              gain=GAIN[act] * (4.0 if se_channels else 1.0))
    return b.Add(y, x) if residual else y


def fused_mbconv(L: Layers, x: Value, *, cin: int, cout: int, expand: int, kernel: int, stride: int,
                 se_channels: int, act: str, se_act: str | None = None, skip: bool = True, eps: float = 1e-5) -> Value:
    """Fused-MBConv (EfficientNetV2, Figure 2): MBConv's 1x1 expansion and kxk depthwise conv replaced by
    one regular kxk conv, which trains faster on accelerators in the early, wide-activation stages.

    ``expand != 1``: kxk conv (stride) to ``cin * expand`` + BN + act -> [SE] -> 1x1 project + BN (linear);
    ``expand == 1``: a single kxk conv (stride) to ``cout`` + BN + act -> [SE], as the official code builds it.
    A residual is added when the stride is 1 and the channels match.
    """
    b = L.b
    residual = skip and stride == 1 and cin == cout
    mid = cin * expand
    if expand != 1:
        with b.annotate(layer="fused_expand"):
            y = L.conv_bn_act(x, cin, mid, kernel, stride, act=act, eps=eps, gain=1.0)
    else:
        with b.annotate(layer="fused"):
            y = L.conv_bn_act(x, cin, cout, kernel, stride, act=act, eps=eps, gain=1.0,
                              gamma=0.3 if residual else 1.0)
        mid = cout
    return se_project_residual(L, y, x, mid=mid, cout=cout, se_channels=se_channels, act=act, se_act=se_act,
                               residual=residual, eps=eps, project=expand != 1)


#: the block functions of an inverted-residual table's ``kind`` column (``sepconv`` is MBConv without
#: expansion and without the skip, as MnasNet's reference builds it)
BLOCKS = {"mbconv": mbconv, "sepconv": mbconv, "fused_mbconv": fused_mbconv}


def inverted_residual_net(name: str, table: list[tuple], *, stem: int, head: int, act: str, width: float,
                          depth: float, resolution: float, num_classes: int, batch: int | str, seed: int,
                          opset: int, head_width: float, family: str, native: int = 224, se_act: str = "relu",
                          eps: float = 1e-5, lazy: bool = False, min_resolution: int = CNN_MIN_RESOLUTION) -> Graph:
    """A stem conv, stages of inverted-residual blocks, a 1x1 head conv and a classifier, from a block table.

    ``table`` rows are ``(kind, expansion, kernel, stride, channels, repeats, se_ratio)`` with ``kind`` one
    of ``BLOCKS``; channels are scaled by ``round_filters(c, width)``, repeats by ``ceil(depth * n)``, the
    SE squeeze is ``max(1, int(block input channels * se_ratio))``. MobileNetV2, MnasNet-A1 and
    EfficientNetV2 share this builder; ``graph.meta["stages"]``/``["blocks"]`` record the scaled table.
    ``lazy``: weights drawn on first use (``Layers``).
    """
    w = check_positive("width", width, model=name)
    d = check_positive("depth", depth, model=name)
    res = resolve_resolution(resolution, native, model=name, **cnn_minimum(min_resolution))
    num_classes = check_count("num_classes", num_classes, model=name)
    batch = check_batch(batch, model=name)

    b = GraphBuilder(name, opset=opset)
    L = Layers(b, seed, lazy=lazy)
    x = b.input("input", "float32", [batch, 3, res, res])
    c_stem = round_filters(stem, w)
    with b.annotate(model_stage=0, block=0, kind="stem"):
        y = L.conv_bn_act(x, 3, c_stem, 3, 2, act=act, eps=eps)
    stages: list[dict] = []
    blocks: list[dict] = []
    cin = c_stem
    size = (res + 1) // 2
    for s, (kind, e, k, st, c, n, se) in enumerate(table, start=1):
        cout = round_filters(c, w)
        reps = round_repeats(n, d)
        stages.append(dict(stage=s, kind=kind, expand=e, kernel=k, stride=st, se=se, cin=cin, cout=cout,
                           repeats=reps))
        for i in range(reps):
            stride = st if i == 0 else 1
            squeeze = squeeze_channels(cin, se) if se else 0
            info = dict(stage=s, block=i, kind=kind, expand=e, kernel=k, stride=stride, se=se)
            with b.annotate(**node_meta(info)):
                # MnasNet's SepConv block has no skip (the reference's "noskip"); MBConvs skip when shapes allow
                y = BLOCKS[kind](L, y, cin=cin, cout=cout, expand=e, kernel=k, stride=stride, se_channels=squeeze,
                                 act=act, se_act=se_act, skip=kind != "sepconv", eps=eps)
            size = (size + stride - 1) // stride
            blocks.append(dict(info, cin=cin, cout=cout, se_channels=squeeze, out_size=size))
            cin = cout
    c_head = round_filters(head, head_width)
    with b.annotate(model_stage=len(table) + 1, block=0, kind="head"):
        y = L.conv_bn_act(y, cin, c_head, 1, act=act, eps=eps)
        y = L.classifier(y, c_head, num_classes)
    b.output(y, "logits")
    g = b.build()
    g.meta["model"] = dict(family=family, width=w, depth=d, resolution=res, stem=c_stem, head=c_head,
                           num_classes=num_classes)
    g.meta["stages"] = stages
    g.meta["blocks"] = blocks
    return g
