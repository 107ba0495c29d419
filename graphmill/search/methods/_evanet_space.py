"""EvaNet's evolved space of video modules, its network builder and weight inheritance (issue 15 item 4).

**The space** (``evanet_space``): a fixed macro network whose ``modules`` (default 3) video modules are searched,
as EvaNet (Piergiovanni et al. 2019) evolves its modules inside a fixed macro structure::

    clip [N, 1, T, S, S] -> stem (3x3x3 conv, 8 channels, spatial stride 2) -> m0 -> MaxPool 2x2x2 -> m1 -> m2
                         -> global average pool -> Gemm (8 classes)

Each module ``m{i}`` chooses

* ``layer``: ``"3d"`` (a ``kt x 3 x 3`` convolution), ``"2+1d"`` (R(2+1)D: ``1x3x3`` to R(2+1)D's ``mid`` channels,
  then ``kt x 1 x 1``), ``"itgm"`` (EvaNet's iTGM layer: a ``kt x 3 x 3`` kernel whose temporal profile is a
  learned mixture of 2 Gaussians, ``oneshot.video.itgm_conv``) or ``"pool"`` (``3x3x3`` max pooling, then a
  ``1x1x1`` convolution); each followed by BatchNormalization and ReLU;
* ``kt``: the temporal kernel size 1/3/5/7 (not for ``"pool"``);
* ``width``: 8/12/16 output channels;
* ``repeat``: 1 or 2 layers; the second is residual (``relu(x + BN(layer(x)))``) with its last
  BatchNormalization scale zero-initialized, so it starts as the identity.

Not kept from the paper (too big for a CPU proxy): multi-branch Inception modules and module counts that
evolve; the macro structure is fixed. ``LineageSpace`` is that space plus the lineage: ``mutate`` returns the
child with ``"parent"`` = the parent's ``key`` (see ``evanet.py``), ignored by ``validate``/``key``.

**Weight inheritance** (``inherit``). Parameters are matched by name, and names are structural
(``m{i}.l{j}.w``, ``m{i}.l{j}.bn.scale``, ``m{i}.l{j}.spatial.w``, ...), so a tensor is inherited where the
child has the same layer slot. Every child tensor starts as the child's own fresh initialization; then, for a
parent tensor of the same name and rank:

* same shape: copied;
* a **kernel axis** (temporal ``kt`` or spatial) that changed: centred, zero-padded when it grew (a ``3`` kernel
  becomes the middle of a ``5``, outer taps 0: with "same" padding the convolution computes exactly the same
  function), centre-cropped when it shrank (the outer taps are dropped);
* an **input-channel axis** (axis 1 of a convolution, of the classifier's Gemm): the first ``min`` columns
  copied; columns the child adds are zero, so new input channels contribute nothing;
* the **output-channel axis** (axis 0; per-channel vectors of BatchNormalization): the first ``min`` rows are the
  parent's (their other entries zero where the other axes grew); rows the child adds keep the child's fresh
  initialization (new units; together with the zero columns above, a widened network computes the parent's
  function exactly while the new units still receive gradients);
* iTGM's ``center``/``width`` (one per Gaussian, in frames) are copied as they are whatever the length;
  ``mix`` follows the output-channel rule.

Aliases across layer types at the same slot: ``"3d"`` and ``"pool"`` share ``m{i}.l{j}.w`` (a pool's ``1x1x1``
weight becomes the centre tap of a 3-D kernel and back) and ``bn.*`` with ``"itgm"``; an iTGM layer's 2-D
kernel ``.itgm.w`` inherits from a 3-D kernel ``.w`` (its centre frame); a 3-D kernel inheriting from an
iTGM layer gets the iTGM's *effective* kernel (``w x profile``, then the kernel-axis rule), which keeps the
function when the lengths agree. Between ``"2+1d"`` and the single-kernel types: a new (2+1)-D layer gets the
parent's 3-D kernel factorized (``split_2plus1d``: truncated SVD, each component as a ``+v``/``-v`` channel
pair through the ReLU, exact up to rank ``mid // 2``; the middle BatchNormalization the identity, the last one
the parent's); a 3-D (pool, iTGM) layer from a (2+1)-D one gets its linear part (``join_2plus1d``: ReLU's odd
part ``z / 2``; exact for a pair-built layer). BatchNormalization
statistics of inherited channels are inherited; those of new channels are re-estimated on training clips
(``calibrate_new``), layer by layer, with the inherited ones left alone. Where a ``"pool"`` layer became a
convolution (3-D, iTGM, (2+1)-D) or back, every channel of that layer's last BatchNormalization is re-estimated:
the 3x3x3 max-pool appeared or went, so its input is no longer the parent's, and the torch backend trains with
fixed statistics (stale ones left a pool -> 3-D child at chance for 360 steps). So is every BatchNormalization
of the layers after it, which read what it now computes (left stale, a 2+1d -> pool first module put its child
at chance, 360 steps to the parent's accuracy against 320 from scratch).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from graphmill.ir import Graph
from graphmill.ir.builder import GraphBuilder
from graphmill.search.oneshot.video import ITGM_SUFFIXES, classifier_head, conv_bn, itgm_conv, r2plus1d_mid
from graphmill.search.space import Choice, Space
from graphmill.util.errors import UserInputError

LAYERS = ("3d", "2+1d", "itgm", "pool")
KTS = (1, 3, 5, 7)
WIDTHS = (8, 12, 16)
REPEATS = (1, 2)
STEM = 8
MIXTURES = 2
PARENT = "parent"
"""The configuration key that carries the parent's ``Space.key`` (absent for a random, from-scratch one)."""

PARAMETER_SUFFIXES = (".w", ".b", ".bn.scale", ".bn.bias", ".bn.mean", ".bn.var") + ITGM_SUFFIXES


class LineageSpace(Space):
    """EvaNet's space whose ``mutate`` records the parent (``config["parent"]`` = the parent's key). The
    ``parent`` entry is not a parameter: ``validate``/``key``/``encode`` ignore it, so an architecture has one
    key whoever its parent is (the search evaluates it once), and every mutation-based strategy (regularized
    evolution here) carries the lineage to ``evaluate(config)`` without knowing about it."""

    def canonical(self, value: Any, path: str) -> dict:
        if path == "" and isinstance(value, dict) and PARENT in value:
            value = {k: v for k, v in value.items() if k != PARENT}
        return super().canonical(value, path)

    def mutate(self, config: dict, rng: np.random.Generator, validated: bool = False) -> dict:
        child = super().mutate(config, rng, validated)
        return {**child, PARENT: self.key(config)}


def module_space() -> Space:
    return Space({"layer": Choice(list(LAYERS)), "kt": Choice(list(KTS), when={"layer": ["3d", "2+1d", "itgm"]}),
                  "width": Choice(list(WIDTHS)), "repeat": Choice(list(REPEATS))})


def evanet_space(modules: int = 3) -> LineageSpace:
    """The searched space: ``modules`` video modules ``m0 .. m{modules-1}`` (module docstring)."""
    if isinstance(modules, bool) or not isinstance(modules, int) or not 1 <= modules <= 6:
        raise UserInputError(f"modules={modules!r}: must be a whole number in [1, 6]")
    return LineageSpace({f"m{i}": module_space() for i in range(modules)})


def architecture(config: dict) -> dict:
    """``config`` without its lineage (what the network is built from)."""
    return {k: v for k, v in config.items() if k != PARENT}


def describe(config: dict) -> str:
    """``3d/k3/w12x2 | pool/w8 | ...``: one module per field."""
    out = []
    for name in sorted(k for k in config if k != PARENT):
        m = config[name]
        kt = f"/k{m['kt']}" if "kt" in m else ""
        out.append(f"{m['layer']}{kt}/w{m['width']}" + (f"x{m['repeat']}" if m["repeat"] > 1 else ""))
    return " | ".join(out)


def _layer(b: GraphBuilder, rng: np.random.Generator, x, cin: int, m: dict, name: str, residual: bool):
    cout, kind = int(m["width"]), m["layer"]
    res = x if residual else None
    if kind == "3d":
        kt = int(m["kt"])
        return conv_bn(b, rng, x, cin, cout, (kt, 3, 3), (1, 1, 1), name, zero_scale=residual, residual=res)
    if kind == "2+1d":
        kt = int(m["kt"])
        mid = r2plus1d_mid(cin, cout, 3, kt)
        y = conv_bn(b, rng, x, cin, mid, (1, 3, 3), (1, 1, 1), f"{name}.spatial")
        return conv_bn(b, rng, y, mid, cout, (kt, 1, 1), (1, 1, 1), f"{name}.temporal", zero_scale=residual,
                       residual=res)
    if kind == "itgm":
        return itgm_conv(b, rng, x, cin, cout, k=3, length=int(m["kt"]), mixtures=MIXTURES, name=name,
                         zero_scale=residual, residual=res)
    if kind == "pool":
        y = b.MaxPool(x, kernel_shape=[3, 3, 3], strides=[1, 1, 1], pads=[1] * 6, name=f"{name}.maxpool")
        return conv_bn(b, rng, y, cin, cout, (1, 1, 1), (1, 1, 1), name, zero_scale=residual, residual=res)
    raise UserInputError(f"{name}: layer {kind!r} is not one of {list(LAYERS)}")


def build(config: dict, *, frames: int = 8, size: int = 16, num_classes: int = 8, seed: int = 0,
          batch: int | str = "N") -> Graph:
    """The verified ``ir.Graph`` of an EvaNet configuration (freshly initialized from ``seed``)."""
    arch = architecture(config)
    rng = np.random.default_rng(seed)
    b = GraphBuilder("evanet", opset=17)
    x = b.input("clip", "float32", [batch, 1, frames, size, size])
    with b.annotate(evanet="stem"):
        y = conv_bn(b, rng, x, 1, STEM, (3, 3, 3), (1, 2, 2), "stem")
    cin = STEM
    for i in range(len(arch)):
        m = arch[f"m{i}"]
        if i == 1:
            y = b.MaxPool(y, kernel_shape=[2, 2, 2], strides=[2, 2, 2], name="downsample")
        for j in range(int(m["repeat"])):
            with b.annotate(evanet=f"m{i}", layer=j):
                y = _layer(b, rng, y, cin, m, f"m{i}.l{j}", residual=j > 0)
            cin = int(m["width"])
    b.output(classifier_head(b, rng, y, cin, num_classes), "logits")
    return b.build()


def parameters(graph: Graph) -> dict[str, np.ndarray]:
    """The tensors weight inheritance moves (weights, BatchNormalization parameters and statistics, iTGM's)."""
    return {n: np.asarray(v.const.numpy()) for n, v in graph.initializers.items()
            if n.endswith(PARAMETER_SUFFIXES) and v.const is not None}


def _roles(name: str, rank: int) -> list[str]:
    if name.endswith((".itgm.center", ".itgm.width")):
        return ["fixed"]
    if name.endswith(".itgm.mix"):
        return ["out", "fixed"]
    if rank == 5:
        return ["out", "in", "kernel", "kernel", "kernel"]
    if rank == 2:
        return ["out", "in"]
    return ["out"] * rank


def fit(fresh: np.ndarray, src: np.ndarray, name: str) -> np.ndarray:
    """``src`` (the parent's tensor) fitted to ``fresh``'s shape by the inheritance rules (module docstring)."""
    if src.shape == fresh.shape:
        return src.astype(fresh.dtype, copy=True)
    if src.ndim != fresh.ndim:
        return fresh
    roles = _roles(name, fresh.ndim)
    out = fresh.copy()
    keep = min(src.shape[0], fresh.shape[0])
    if fresh.ndim > 1:
        out[:keep] = 0
    dst_sl, src_sl = [], []
    for role, c, p in zip(roles, fresh.shape, src.shape):
        n = min(c, p)
        if role == "kernel":
            dst_sl.append(slice((c - n) // 2, (c - n) // 2 + n))
            src_sl.append(slice((p - n) // 2, (p - n) // 2 + n))
        else:
            dst_sl.append(slice(0, n))
            src_sl.append(slice(0, n))
    out[tuple(dst_sl)] = src[tuple(src_sl)]
    return out


def itgm_kernel(w: np.ndarray, center: np.ndarray, width: np.ndarray, mix: np.ndarray, length: int) -> np.ndarray:
    """An iTGM layer's effective ``[cout, cin, length, k, k]`` kernel from its parameters (``itgm_conv``'s
    formula, in numpy)."""
    taps = np.arange(length, dtype=np.float64) - (length - 1) / 2
    g = np.exp(-(taps[None, :] - center[:, None]) ** 2 / (2 * np.exp(2 * width.astype(np.float64))[:, None]))
    g = g / g.sum(1, keepdims=True)
    e = np.exp(mix - mix.max(1, keepdims=True))
    prof = (e / e.sum(1, keepdims=True)) @ g                                # [cout, L]
    return (w.astype(np.float64) * prof[:, None, :, None, None]).astype(np.float32)


def _source(name: str, parent: dict[str, np.ndarray], shape: tuple) -> np.ndarray | None:
    if name in parent:
        return parent[name]
    if name.endswith(".itgm.w"):                      # an iTGM's 2-D kernel from a 3-D (or pool) kernel
        return parent.get(name[:-len(".itgm.w")] + ".w")
    base = name[:-len(".w")] + ".itgm"
    if name.endswith(".w") and len(shape) == 5 and base + ".w" in parent:
        # a 3-D kernel from an iTGM layer: the iTGM's effective kernel over the child's kt taps
        return itgm_kernel(parent[base + ".w"], parent[base + ".center"], parent[base + ".width"],
                           parent[base + ".mix"], int(shape[2]))
    return None


_EPS = 1e-5


def _slope_shift(parent: dict[str, np.ndarray], bn: str) -> tuple[np.ndarray, np.ndarray]:
    """BatchNormalization ``bn`` (inference form) as ``y = slope * x + shift``."""
    slope = parent[bn + ".scale"] / np.sqrt(parent[bn + ".var"] + _EPS)
    return slope, parent[bn + ".bias"] - parent[bn + ".mean"] * slope


def split_2plus1d(kernel: np.ndarray, mid: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``[cout, cin, kt, kh, kw]`` kernel as a (2+1)-D pair ``(spatial [mid, cin, 1, kh, kw], temporal [cout,
    mid, kt, 1, 1])`` through ReLU: the best rank-``mid // 2`` factorization of the kernel (truncated SVD of its
    ``[(cout, kt), (cin, kh, kw)]`` matrix), each component as a pair of channels ``+v``/``-v`` whose temporal
    weights are ``+u``/``-u``, so that ``u * relu(v.x) - u * relu(-v.x) = u * (v.x)`` (with an identity
    BatchNormalization between them): exact when the kernel's rank is at most ``mid // 2``."""
    cout, cin, kt, kh, kw = kernel.shape
    a = kernel.transpose(0, 2, 1, 3, 4).reshape(cout * kt, cin * kh * kw).astype(np.float64)
    u, sv, vt = np.linalg.svd(a, full_matrices=False)
    spatial = np.zeros((mid, cin, 1, kh, kw))
    temporal = np.zeros((cout, mid, kt, 1, 1))
    for k in range(min(mid // 2, len(sv))):
        v = np.sqrt(sv[k]) * vt[k].reshape(cin, kh, kw)
        w = np.sqrt(sv[k]) * u[:, k].reshape(cout, kt)
        spatial[2 * k, :, 0], spatial[2 * k + 1, :, 0] = v, -v
        temporal[:, 2 * k, :, 0, 0], temporal[:, 2 * k + 1, :, 0, 0] = w, -w
    return spatial.astype(np.float32), temporal.astype(np.float32)


def join_2plus1d(parent: dict[str, np.ndarray], slot: str) -> tuple[np.ndarray, np.ndarray]:
    """The linear part of a (2+1)-D layer as one 3-D kernel and a per-output-channel offset: ReLU's odd part is
    exactly ``z / 2`` (``relu(z) = z/2 + |z|/2``), so the kernel is ``1/2 sum_m temporal[o, m, t] * slope_m *
    spatial[m, i, h, w]`` (``slope`` of the middle BatchNormalization) and the offset ``1/2 sum_{m,t}
    temporal[o, m, t] * shift_m``; the even part ``|z|/2`` is dropped. ``join_2plus1d`` inverts
    ``split_2plus1d`` up to its rank truncation."""
    s = parent[slot + ".spatial.w"][:, :, 0].astype(np.float64)        # [mid, cin, kh, kw]
    t = parent[slot + ".temporal.w"][:, :, :, 0, 0].astype(np.float64)  # [cout, mid, kt]
    slope, shift = _slope_shift(parent, slot + ".spatial.bn")
    kernel = 0.5 * np.einsum("omt,m,mihw->oithw", t, slope, s)
    return kernel.astype(np.float32), (0.5 * np.einsum("omt,m->o", t, shift)).astype(np.float32)


def _across_types(child: Graph, parent: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Parent tensors translated to the child's layer type where a slot changed between (2+1)-D and a single
    3-D kernel (3-D, pool, iTGM): ``split_2plus1d`` / ``join_2plus1d``, BatchNormalization carried over (the
    middle one of a new (2+1)-D layer is the identity)."""
    extra: dict[str, np.ndarray] = {}
    inits = child.initializers
    for name in inits:
        if name.endswith(".spatial.w") and name not in parent:
            slot = name[:-len(".spatial.w")]
            sw, tw = inits[name].const.numpy(), inits[slot + ".temporal.w"].const.numpy()
            mid, cin, cout, kt = sw.shape[0], sw.shape[1], tw.shape[0], tw.shape[2]
            src = _source(slot + ".w", parent, (cout, cin, kt, sw.shape[3], sw.shape[4]))
            if src is None or src.ndim != 5:
                continue
            kernel = fit(np.zeros((cout, cin, kt, sw.shape[3], sw.shape[4]), np.float32), src, slot + ".w")
            extra[name], extra[slot + ".temporal.w"] = split_2plus1d(kernel, mid)
            ident = {"scale": np.ones(mid), "bias": np.zeros(mid), "mean": np.zeros(mid), "var": np.full(mid, 1 - _EPS)}
            for k, v in ident.items():
                extra[f"{slot}.spatial.bn.{k}"] = v.astype(np.float32)
            for k in ("scale", "bias", "mean", "var"):
                if f"{slot}.bn.{k}" in parent:
                    extra[f"{slot}.temporal.bn.{k}"] = parent[f"{slot}.bn.{k}"]
        elif name.endswith((".itgm.w", ".w")) and name not in parent and not name.endswith(".spatial.w") \
                and not name.endswith(".temporal.w"):
            slot = name[:-len(".itgm.w")] if name.endswith(".itgm.w") else name[:-len(".w")]
            if slot + ".spatial.w" not in parent:
                continue
            kernel, offset = join_2plus1d(parent, slot)
            if name.endswith(".itgm.w"):  # an iTGM's 2-D kernel: the 3-D kernel summed over time
                kernel = kernel.sum(2, keepdims=True)
            extra[name] = kernel
            if f"{slot}.temporal.bn.mean" in parent:
                for k in ("scale", "bias", "var"):
                    extra[f"{slot}.bn.{k}"] = parent[f"{slot}.temporal.bn.{k}"]
                extra[f"{slot}.bn.mean"] = parent[f"{slot}.temporal.bn.mean"] - offset
    return extra


def inherit(child: Graph, parent: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copy into ``child`` (in place) every parent tensor that fits (module docstring); returns, per
    BatchNormalization name prefix (``m0.l0.bn``), the mask of channels whose statistics are new (to
    re-estimate with ``calibrate_new``), and counts in ``child.meta["inherited"]``."""
    from graphmill.ir import Tensor

    new_stats: dict[str, np.ndarray] = {}
    pool_changed = _pool_changed(child, parent)  # from the parent's own tensors, before the translations below
    parent = {**parent, **_across_types(child, parent)}
    copied = fitted = fresh_count = 0
    for name, v in child.initializers.items():
        if not name.endswith(PARAMETER_SUFFIXES) or v.const is None:
            continue
        cur = np.asarray(v.const.numpy())
        src = _source(name, parent, cur.shape)
        if src is None or src.ndim != cur.ndim:
            fresh_count += 1
            if name.endswith(".bn.mean"):
                new_stats[name[:-len(".mean")]] = np.ones(cur.shape[0], bool)
            continue
        arr = fit(cur, src, name)
        if src.shape == cur.shape:
            copied += 1
        else:
            fitted += 1
        v.const = Tensor(np.ascontiguousarray(arr), name=v.const.name or name)
        if name.endswith(".bn.mean"):
            mask = np.arange(cur.shape[0]) >= src.shape[0]
            if mask.any():
                new_stats[name[:-len(".mean")]] = mask
    for slot, bn in pool_changed.items():
        new_stats[bn] = np.ones(child.initializers[bn + ".mean"].const.numpy().shape[0], bool)
    if pool_changed:  # what every later layer reads is no longer the parent's either
        first = min(pool_changed, key=_slot_order)
        for name, v in child.initializers.items():
            m = re.match(r"(m\d+\.l\d+)\..*bn\.mean$", name)
            if m and _slot_order(m.group(1)) > _slot_order(first):
                new_stats[name[:-len(".mean")]] = np.ones(v.const.numpy().shape[0], bool)
    child.meta["inherited"] = {"copied": copied, "fitted": fitted, "fresh": fresh_count}
    return new_stats


def _slot_order(slot: str) -> tuple[int, int]:
    """``m1.l0`` -> (1, 0): the order layers run in."""
    m, layer = slot.split(".")
    return int(m[1:]), int(layer[1:])


def _slot_kind(names, slot: str, shape_of) -> str | None:
    """``"pool"``, ``"2+1d"``, ``"itgm"`` or ``"3d"``: the layer type of ``slot`` from its tensor names (None:
    the slot does not exist); a pool layer is the one whose ``.w`` is ``1x1x1``."""
    if f"{slot}.spatial.w" in names:
        return "2+1d"
    if f"{slot}.itgm.w" in names:
        return "itgm"
    if f"{slot}.w" in names:
        return "pool" if tuple(shape_of(f"{slot}.w")[2:]) == (1, 1, 1) else "3d"
    return None


def _pool_changed(child: Graph, parent: dict[str, np.ndarray]) -> dict[str, str]:
    """``{slot: its last BatchNormalization}`` for the slots where a max-pool layer became a convolution or back:
    the kernel and BatchNormalization scale and bias are inherited, but what that BatchNormalization normalizes
    is no longer the parent's (the 3x3x3 max-pool appeared or went), so its statistics are re-estimated; the
    torch backend trains on fixed statistics, and the parent's would stay wrong for the whole training."""
    inits = child.initializers
    slots = sorted({m.group(1) for m in map(re.compile(r"(m\d+\.l\d+)\.").match, inits) if m})
    out = {}
    for slot in slots:
        mine = _slot_kind(inits, slot, lambda n: inits[n].const.numpy().shape)
        theirs = _slot_kind(parent, slot, lambda n: parent[n].shape)
        if mine is not None and theirs is not None and (mine == "pool") != (theirs == "pool"):
            out[slot] = f"{slot}.temporal.bn" if mine == "2+1d" else f"{slot}.bn"
    return out


def calibrate_new(graph: Graph, x, masks: dict[str, np.ndarray]) -> int:
    """Set the statistics of the BatchNormalization channels in ``masks`` (``{"m0.l0.bn": bool[C]}``) to their
    input's mean and variance on ``x``, layer by layer in graph order (each after the ones before it), leaving
    every other channel's statistics as they are. Returns how many layers were touched."""
    from graphmill.backends.torch.training import calibrate_batchnorm

    if not masks:
        return 0
    return calibrate_batchnorm(graph, x, only={f"{k}.mean": m for k, m in masks.items()})
