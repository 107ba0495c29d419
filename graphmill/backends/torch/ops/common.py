"""The op registry of the torch backend and the helpers several op families share.

Each entry of ``OPS`` is ``fn(rt, attrs, inputs) -> tensor | tuple``: ``rt`` is the
running module (``rt.training``, ``rt.opset``, ``rt.current_outputs``), ``attrs`` the
node's attributes as plain Python values, ``inputs`` the node's inputs as tensors
(``None`` for omitted optional ones). Shape-like inputs (Reshape's shape, Slice's
starts...) are read with ``.tolist()``: the module interprets the graph eagerly, it is
not traced.

``CHECKS`` holds construction-time checks for ops whose attributes select a variant
this backend does not implement (Resize's cubic mode, MaxPool's Indices output...);
they return a reason or ``None``. Which inputs hold weights is not the ops' business:
``graphmill.backends.torch.weights`` decides that from the graph's structure.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

#: torch's convolution by the number of spatial axes (Conv's, and LpPool's window sums)
CONV_BY_RANK = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

OPS: dict[str, Callable[..., Any]] = {}
CHECKS: dict[str, Callable[[Any, int], str | None]] = {}


def op(*names: str) -> Callable:
    """Register the decorated function as the implementation of ONNX ops ``names``."""
    def deco(fn):
        for n in names:
            OPS[n] = fn
        return fn
    return deco


def check(*names: str) -> Callable:
    """Register the decorated function as the construction-time check of ops ``names``."""
    def deco(fn):
        for n in names:
            CHECKS[n] = fn
        return fn
    return deco


def refuse_other_values(attr: str, allowed: Sequence[str], default: str | None = None) -> Callable:
    """A construction-time check (``CHECKS``) refusing a value of attribute ``attr`` outside ``allowed`` (a mode
    ONNX does not define ran as the default's: an outside check)."""
    def check_value(node, opset):
        value = node.attr(attr, default)
        if value in allowed:
            return None
        return f"{node.op_type} {attr} {value!r} (this backend runs {', '.join(allowed)}) is not supported"
    return check_value


def ints(t: torch.Tensor | Sequence[int]) -> list[int]:
    """A shape-like input (tensor or sequence) as Python ints."""
    return [int(v) for v in (t.tolist() if isinstance(t, torch.Tensor) else t)]


def norm_axis(a: int, rank: int) -> int:
    """ONNX's negative axis counted from the end, as a non-negative index."""
    return a + rank if a < 0 else a


def spatial(a: dict, x: torch.Tensor, w_shape: Sequence[int], *, transpose: bool = False) -> tuple:
    """kernel, strides, dilations, explicit (begin..., end...) pads per spatial dim and auto_pad of a conv/pool."""
    nsp = x.dim() - 2
    k = a.get("kernel_shape") or list(w_shape[2:])
    strides = a.get("strides") or [1] * nsp
    dil = a.get("dilations") or [1] * nsp
    pads = a.get("pads") or [0] * (2 * nsp)
    auto = a.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if not transpose and auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nsp)
        for i in range(nsp):
            n = x.shape[2 + i]
            out = -(-n // strides[i])
            total = max(0, (out - 1) * strides[i] + (k[i] - 1) * dil[i] + 1 - n)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + nsp] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0] * (2 * nsp)
    return list(k), list(strides), list(dil), list(pads), auto


def torch_pad(pads: Sequence[int]) -> list[int]:
    """ONNX [b1, b2, ..., e1, e2, ...] over the trailing dims -> F.pad's (b_last, e_last, ...)."""
    n = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out
