"""The supernet's shared weights: names, full shapes, initialization, and how a child slices them.

Every weight has one name (``stage2.l1.dw.w``) and one full shape (the largest child's); a child uses the
leading block of each (``child_slices``):

* width (output channels ``c`` of a stage): the first ``c`` output channels of its layers' projections, of
  their BatchNormalizations, and the first ``c`` input channels of whatever reads them;
* expansion ratio ``e``: the first ``cin * e`` hidden channels of a layer's expansion, depthwise convolution
  and projection (``cin`` the layer's active input channels);
* kernel size ``k``: the centre ``k x k`` of the largest kernel (BigNAS's choice: no transform matrix);
* depth ``d``: the first ``d`` layers of a stage (the rest are skipped).

``init_weights`` follows BigNAS: He-normal convolutions, BatchNormalizations at unit scale, except the last
BatchNormalization of every residual layer (its projection's), whose scale starts at zero, so that every
residual layer starts as the identity and any depth is as easy to train as the shallowest.

Layers: MBConv (1x1 expansion + BN + ReLU, k x k depthwise + BN + ReLU, 1x1 linear projection + BN). A layer
is residual (adds its input) when it is not the first of its stage: then stride 1 and input = output width,
whatever the child; the first layer of a stage never is (its input width belongs to the previous stage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from .space import SupernetSpec

BN_PARTS = ("scale", "bias", "mean", "var")


@dataclass(frozen=True)
class LayerPlan:
    """One MBConv layer of a child: its stage (1-based), index in the stage, stride, channels, kernel, residual."""

    stage: int
    index: int
    stride: int
    cin: int
    cout: int
    hidden: int
    kernel: int
    residual: bool

    @property
    def prefix(self) -> str:
        return f"stage{self.stage}.l{self.index}"


def layer_plan(spec: SupernetSpec, config: Mapping[str, Any]) -> list[LayerPlan]:
    """The MBConv layers of ``config`` (a canonical child configuration) in order."""
    out = []
    cin = spec.stem
    for s, (name, st) in enumerate(zip(spec.stage_names(), spec.stages), start=1):
        ch = config[name]
        for i in range(ch["depth"]):
            out.append(LayerPlan(s, i, st.stride if i == 0 else 1, cin, ch["width"], cin * ch["expand"],
                                 ch["kernel"], i > 0))
            cin = ch["width"]
    return out


def last_width(spec: SupernetSpec, config: Mapping[str, Any]) -> int:
    return config[spec.stage_names()[-1]]["width"]


def weight_shapes(spec: SupernetSpec) -> dict[str, tuple[int, ...]]:
    """Every shared weight's full shape, in graph order."""
    big = spec.largest()
    kmax, shapes = max(spec.kernels), {}

    def bn(prefix: str, c: int) -> None:
        for part in BN_PARTS:
            shapes[f"{prefix}.bn.{part}"] = (c,)
    shapes["stem.w"] = (spec.stem, spec.in_channels, 3, 3)
    bn("stem", spec.stem)
    for L in layer_plan(spec, big):
        p = L.prefix
        shapes[f"{p}.expand.w"] = (L.hidden, L.cin, 1, 1)
        bn(f"{p}.expand", L.hidden)
        shapes[f"{p}.dw.w"] = (L.hidden, 1, kmax, kmax)
        bn(f"{p}.dw", L.hidden)
        shapes[f"{p}.project.w"] = (L.cout, L.hidden, 1, 1)
        bn(f"{p}.project", L.cout)
    shapes["head.w"] = (spec.head, last_width(spec, big), 1, 1)
    bn("head", spec.head)
    shapes["fc.w"] = (spec.num_classes, spec.head)
    shapes["fc.b"] = (spec.num_classes,)
    return shapes


def is_statistic(name: str) -> bool:
    """BatchNormalization mean/variance: statistics, not trained parameters."""
    return name.endswith(".bn.mean") or name.endswith(".bn.var")


def zero_gamma_names(spec: SupernetSpec) -> list[str]:
    """The last BatchNormalization scale of every residual layer (BigNAS: initialized to zero)."""
    return [f"{L.prefix}.project.bn.scale" for L in layer_plan(spec, spec.largest()) if L.residual]


def init_weights(spec: SupernetSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh shared weights: He-normal convolutions (fan-in of the full kernel), N(0, 1/fan_in) classifier,
    BatchNormalizations at scale 1 / shift 0 / identity statistics, residual layers' last scale at zero."""
    rng = np.random.default_rng(seed)
    zero = set(zero_gamma_names(spec))
    out: dict[str, np.ndarray] = {}
    for name, shape in weight_shapes(spec).items():
        part = name.rsplit(".", 1)[-1]
        if name.endswith(".w") and len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            gain = 1.0 if ".project." in name else 2.0
            a = rng.standard_normal(shape) * math.sqrt(gain / fan_in)
        elif name == "fc.w":
            a = rng.standard_normal(shape) * math.sqrt(1.0 / shape[1])
        elif part in ("bias", "mean", "b"):
            a = np.zeros(shape)
        elif part == "scale":
            a = np.zeros(shape) if name in zero else np.ones(shape)
        else:  # var
            a = np.ones(shape)
        out[name] = a.astype(np.float32)
    return out


def child_slices(spec: SupernetSpec, config: Mapping[str, Any]) -> dict[str, tuple[slice, ...]]:
    """For each weight a child uses, the leading block it takes of the full tensor (module docstring)."""
    kmax = max(spec.kernels)
    sl: dict[str, tuple[slice, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for part in BN_PARTS:
            sl[f"{prefix}.bn.{part}"] = (slice(0, c),)
    sl["stem.w"] = (slice(None),) * 4
    bn("stem", spec.stem)
    for L in layer_plan(spec, config):
        p, o = L.prefix, (kmax - L.kernel) // 2
        sl[f"{p}.expand.w"] = (slice(0, L.hidden), slice(0, L.cin), slice(None), slice(None))
        bn(f"{p}.expand", L.hidden)
        sl[f"{p}.dw.w"] = (slice(0, L.hidden), slice(None), slice(o, o + L.kernel), slice(o, o + L.kernel))
        bn(f"{p}.dw", L.hidden)
        sl[f"{p}.project.w"] = (slice(0, L.cout), slice(0, L.hidden), slice(None), slice(None))
        bn(f"{p}.project", L.cout)
    sl["head.w"] = (slice(None), slice(0, last_width(spec, config)), slice(None), slice(None))
    bn("head", spec.head)
    sl["fc.w"] = (slice(None), slice(None))
    sl["fc.b"] = (slice(None),)
    return sl


def child_weights(spec: SupernetSpec, config: Mapping[str, Any], full: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(name, full[name][slice])`` for every weight ``config`` uses (numpy arrays or torch tensors)."""
    for name, s in child_slices(spec, config).items():
        yield name, full[name][s]
