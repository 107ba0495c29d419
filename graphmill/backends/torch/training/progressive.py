"""Progressive learning (EfficientNetV2, Tan & Le 2021, Algorithm 1) and the fixed-size baseline.

Training is split into M stages. Stage i (0 .. M-1) trains N/M steps at image size
``S_i = S_0 + (S_e - S_0) * i / (M - 1)`` with every regularization ``R_i = R_0 + (R_e - R_0) * i / (M - 1)``:
small images with weak regularization first, which are cheap, then larger ones with stronger regularization.
The regularizations are the paper's three: dropout rate, RandAugment magnitude and mixup alpha. The
baseline (``fixed_schedule``) trains every step at ``S_e`` with ``R_e``: the setting a model trained only at
the final size would use.

Dropout: the stage's rate applies to every Dropout node of the graph; a graph without one (the zoo records
its dropout rate in meta but builds none, since inference drops nothing) gets one on the input of its final
classifier (the last MatMul/Gemm), where EfficientNetV2 has it. Both happen on a copy that only training
runs; the trained weights go back into the user's graph, which is exported unchanged otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from graphmill.ir import Graph, Node, Tensor, TensorType, Value, topological_order
from graphmill.util.errors import UserInputError

from .data import MAX_MAGNITUDE

DROPOUT_RATIO = "graphmill_train_dropout_ratio"
"""The initializer every Dropout of the training copy reads its ratio from (a buffer the loop sets per stage)."""


@dataclass(frozen=True)
class Stage:
    """One stage: ``steps`` optimizer steps at ``size`` x ``size`` images with these regularization strengths
    (``dropout`` None leaves the graph's own Dropout ratios alone; ``mixup`` None: a mode that mixes no images)."""

    size: int
    steps: int
    dropout: float | None = None
    magnitude: float = 0.0
    mixup: float | None = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def regularization_range(name: str, value) -> tuple[float, float]:
    """``(start, end)`` of a regularization given as a pair or one number, refused unless both are finite and
    >= 0 (a dropout rate below 1)."""
    if isinstance(value, (int, float)):
        lo, hi = value, value
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = value
    else:  # (0.5,) or "x" unpacked with a bare ValueError (an outside check)
        raise UserInputError(f"--{name} {value!r}: expected a number or a pair (START, END) of numbers >= 0")
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
            raise UserInputError(f"--{name} {value!r}: expected numbers >= 0 (START:END)")
    if name == "magnitude" and max(lo, hi) > MAX_MAGNITUDE:
        raise UserInputError(f"--magnitude {value!r}: RandAugment's magnitude scale is 0 .. {MAX_MAGNITUDE:g}")
    if name == "dropout" and max(lo, hi) >= 1:
        raise UserInputError(f"--dropout {value!r}: a dropout rate must be below 1")
    return float(lo), float(hi)


def split_steps(total: int, stages: int) -> list[int]:
    """``total`` steps over ``stages`` stages, N/M each, the remainder one more each to the last stages."""
    base, extra = divmod(total, stages)
    return [base + (1 if i >= stages - extra else 0) for i in range(stages)]


def progressive_schedule(*, stages: int, min_size: int, max_size: int, steps: int,
                         dropout=(0.1, 0.3), magnitude=(5.0, 15.0), mixup=(0.0, 0.2)) -> list[Stage]:
    """Algorithm 1's stages: size and each regularization (``(start, end)`` or one number) rise linearly together.

    A schedule whose sizes shrink (``min_size > max_size``), fewer than one step per stage, or a size
    below 1 is refused as bad input.
    """
    for name, v, low in (("stages", stages, 1), ("min-size", min_size, 1), ("max-size", max_size, 1),
                         ("steps", steps, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise UserInputError(f"--{name} {v!r}: must be an integer >= {low}")
    if min_size > max_size:
        raise UserInputError(f"progressive schedule: sizes shrink (--min-size {min_size} > --max-size {max_size}); "
                             "progressive learning grows the image size")
    if steps < stages:
        raise UserInputError(f"progressive schedule: {steps} step(s) cannot fill {stages} stages; "
                             "give more --steps/--epochs or fewer --stages")
    regs = {k: regularization_range(k, v) for k, v in (("dropout", dropout), ("magnitude", magnitude), ("mixup", mixup))}
    out = []
    for i, n in enumerate(split_steps(steps, stages)):
        t = i / (stages - 1) if stages > 1 else 1.0
        lerp = {k: lo + (hi - lo) * t for k, (lo, hi) in regs.items()}
        # the size in exact arithmetic: in floats an exact n + 1/2 landed either side of it and rounded a pixel
        # off the documented half-to-even (15 stages 1 -> 22: 15 for 29/2; an outside check)
        size = round(min_size + Fraction((max_size - min_size) * i, stages - 1)) if stages > 1 else max_size
        out.append(Stage(size=size, steps=n, **lerp))
    return out


def fixed_schedule(*, size: int, steps: int, dropout: float | None = 0.3, magnitude: float = 15.0,
                   mixup: float | None = 0.2) -> list[Stage]:
    """The baseline: one stage of ``steps`` at ``size`` with fixed regularization (the final one by default;
    ``mixup`` None: none, for a mode that mixes no images)."""
    for name, v in (("size", size), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserInputError(f"--{name} {v!r}: must be an integer >= 1")
    d = None if dropout is None else regularization_range("dropout", dropout)[0]
    return [Stage(size=size, steps=steps, dropout=d, magnitude=regularization_range("magnitude", magnitude)[0],
                  mixup=None if mixup is None else regularization_range("mixup", mixup)[0])]


def with_dropout(graph: Graph) -> Graph:
    """A copy of ``graph`` whose Dropouts all read their ratio from one scalar initializer ``DROPOUT_RATIO``
    (0 until the loop sets it); a graph without a Dropout gets one on its final classifier's input."""
    g = graph.copy()
    ratio = g.add_initializer(Tensor(np.array(0.0, dtype=np.float32), name=DROPOUT_RATIO), DROPOUT_RATIO)
    drops = [n for n in g.nodes if n.op_type == "Dropout" and n.domain in ("", "ai.onnx")]
    if not drops:
        heads = [n for n in topological_order(g) if n.op_type in ("MatMul", "Gemm") and n.inputs
                 and n.inputs[0] is not None and not n.inputs[0].is_initializer]
        if not heads:
            raise UserInputError(f"graph {g.name!r} has neither a Dropout nor a final MatMul/Gemm classifier to "
                                 "put dropout before; give --dropout 0")
        head = heads[-1]
        x = head.inputs[0]
        out = Value(g.unique_name(f"{x.name}_train_dropout"), x.type if isinstance(x.type, TensorType) else None)
        drop = Node("Dropout", [x, ratio], outputs=[out], name=g.unique_name("train_dropout"))
        g.insert_before(head, drop)
        head.set_input(0, out)
        return g
    for n in drops:
        if len(n.inputs) < 2:
            n.append_input(ratio)
        else:
            n.set_input(1, ratio)
        n.attrs.pop("ratio", None)  # opset < 12 kept it as an attribute; the input wins in the torch backend
    return g
