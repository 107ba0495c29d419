"""The elastic space of a BigNAS-style supernet: what a child may choose, as data.

A ``SupernetSpec`` fixes the network's skeleton (stem, stages with their strides, head) and, per stage, the
ranges the children choose from: depth (layers), width (output channels), kernel size (3 or 5) and
expansion ratio of the stage's MBConv layers; the input resolution is one network-wide choice. A child is a
configuration of ``spec.space()`` (a ``graphmill.search.Space``)::

    {"resolution": 16,
     "stage1": {"depth": 2, "width": 16, "kernel": 5, "expand": 6},
     "stage2": {...}, "stage3": {...}}

Kernel and expansion are chosen per stage (every layer of a stage shares them, as depth and width are per
stage): the coarse grid of child selection and its single-choice mutations work on these stage-level
choices. ``DIGITS_SPEC`` is the default space for the shipped task (scikit-learn's digits, 8x8 images
upsampled bilinearly to 8, 12 or 16 pixels, one channel, 10 classes).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping

from graphmill.search.space import Choice, Space
from graphmill.util.errors import UserInputError


@dataclass(frozen=True)
class StageSpec:
    """One stage: its first layer's ``stride`` and the choices its children take (sorted ascending)."""

    stride: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]


@dataclass(frozen=True)
class SupernetSpec:
    """The supernet's skeleton and elastic ranges (see the module docstring).

    ``stem``: the 3x3 stem convolution's (fixed) channels, ``stem_stride`` its stride; ``head``: the (fixed) channels of the 1x1
    convolution before global pooling and the classifier; ``kernels`` / ``expands`` / ``resolutions``: the
    choices shared by every stage / the network.
    """

    stages: tuple[StageSpec, ...]
    kernels: tuple[int, ...] = (3, 5)
    expands: tuple[int, ...] = (3, 4, 6)
    resolutions: tuple[int, ...] = (8, 12, 16)
    stem: int = 16
    stem_stride: int = 2
    head: int = 64
    in_channels: int = 1
    num_classes: int = 10
    eps: float = 1e-5

    def __post_init__(self) -> None:
        if not self.stages:
            raise UserInputError("supernet spec: no stages")
        for name, vals in [("kernels", self.kernels), ("expands", self.expands), ("resolutions", self.resolutions)] + \
                [(f"stage{i}.{k}", getattr(s, k)) for i, s in enumerate(self.stages, 1) for k in ("widths", "depths")]:
            if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals) \
                    or list(vals) != sorted(set(vals)):
                raise UserInputError(f"supernet spec: {name} {list(vals)!r} must be ascending distinct integers >= 1")
        if any(k % 2 == 0 for k in self.kernels):
            raise UserInputError(f"supernet spec: kernels {list(self.kernels)!r} must be odd (the smaller ones are "
                                 "the centre of the largest)")

    # -- the space of children
    def stage_names(self) -> list[str]:
        return [f"stage{i}" for i in range(1, len(self.stages) + 1)]

    def space(self) -> Space:
        """The children as a ``graphmill.search.Space`` (validation with paths, sampling, mutation, keys)."""
        params: dict[str, Any] = {"resolution": Choice(list(self.resolutions))}
        for name, st in zip(self.stage_names(), self.stages):
            params[name] = Space({"depth": Choice(list(st.depths)), "width": Choice(list(st.widths)),
                                  "kernel": Choice(list(self.kernels)), "expand": Choice(list(self.expands))})
        return Space(params)

    def check(self, config: Any) -> dict:
        """``config`` in canonical form, or a UserInputError naming the choice outside the supernet's ranges
        (``stage2.width: 40 is not one of [16, 24, 32]``)."""
        try:
            return self.space().validate(config)
        except UserInputError as e:
            raise UserInputError(f"child outside the supernet's ranges: {e}") from None

    def at_level(self, level: int | None = None, *, resolution: int | None = None, depth: int | None = None,
                 width: int | None = None, kernel: int | None = None, expand: int | None = None) -> dict:
        """The child taking the ``i``-th smallest choice of every stage for each dimension (``level`` sets
        the default index of all; -1 is the largest); indices past a stage's range are clipped."""
        def pick(vals: tuple, i: int | None) -> int:
            i = level if i is None else i
            i = len(vals) - 1 if i is None or i < 0 else min(i, len(vals) - 1)
            return vals[i]
        cfg: dict[str, Any] = {"resolution": pick(self.resolutions, resolution)}
        for name, st in zip(self.stage_names(), self.stages):
            cfg[name] = {"depth": pick(st.depths, depth), "width": pick(st.widths, width),
                         "kernel": pick(self.kernels, kernel), "expand": pick(self.expands, expand)}
        return cfg

    def largest(self) -> dict:
        return self.at_level(-1)

    def smallest(self) -> dict:
        return self.at_level(0)

    def coarse_grid(self) -> Iterator[dict]:
        """The coarse grid of child selection: network-wide levels (the i-th choice of every stage) of depth,
        width, kernel and expansion, times every resolution."""
        levels = [range(len(self.resolutions)), range(max(len(s.depths) for s in self.stages)),
                  range(max(len(s.widths) for s in self.stages)), range(len(self.kernels)), range(len(self.expands))]
        seen: set[str] = set()
        for r, d, w, k, e in itertools.product(*levels):
            cfg = self.at_level(resolution=r, depth=d, width=w, kernel=k, expand=e)
            key = repr(cfg)
            if key not in seen:
                seen.add(key)
                yield cfg

    def neighbours(self, config: Mapping[str, Any]) -> list[dict]:
        """Every child differing from ``config`` in exactly one stage-level choice (one step up or down)."""
        config = self.check(config)
        out = []
        for path, p in self.space().params():
            parts = path.split(".")
            cur = config[parts[0]] if len(parts) == 1 else config[parts[0]][parts[1]]
            i = p.index(cur)
            for j in (i - 1, i + 1):
                if 0 <= j < len(p.values):
                    new = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
                    if len(parts) == 1:
                        new[parts[0]] = p.values[j]
                    else:
                        new[parts[0]][parts[1]] = p.values[j]
                    out.append(new)
        return out

    # -- (de)serialization
    def to_json(self) -> dict:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        return d

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> "SupernetSpec":
        try:
            d = dict(data)
            stages = tuple(StageSpec(int(s["stride"]), tuple(s["widths"]), tuple(s["depths"])) for s in d.pop("stages"))
            for k in ("kernels", "expands", "resolutions"):
                if k in d:
                    d[k] = tuple(d[k])
            return SupernetSpec(stages=stages, **d)
        except (KeyError, TypeError, ValueError) as e:
            raise UserInputError(f"supernet spec: malformed ({e})") from None


#: the default supernet for the shipped task: digits at 8/12/16 pixels, three MBConv stages
DIGITS_SPEC = SupernetSpec(stages=(StageSpec(1, (8, 12, 16), (1, 2)),
                                   StageSpec(2, (16, 24, 32), (1, 2, 3)),
                                   StageSpec(2, (24, 32, 48), (1, 2, 3))), expands=(2, 3, 4))

#: a tiny supernet for tests (seconds to train)
TINY_SPEC = SupernetSpec(stages=(StageSpec(1, (4, 8), (1, 2)), StageSpec(2, (8, 12), (1, 2))),
                         kernels=(3, 5), expands=(2, 3), resolutions=(8, 12), stem=8, stem_stride=1, head=16)

__all__ = ["StageSpec", "SupernetSpec", "DIGITS_SPEC", "TINY_SPEC"]
