"""Sliding-window arithmetic shared by Conv, ConvTranspose and the pooling ops.

Kept in one place because ONNX defines the output size of all of them with the
same four ``auto_pad`` modes, and a fix to one (e.g. the ceil-mode rule) must
reach every op that slides a window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..types import Dim
from .registry import InferenceContext


@dataclass(frozen=True)
class Window:
    """Per-spatial-axis window parameters of one node, with ONNX defaults filled in."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]  # [x1_begin, x2_begin, ..., x1_end, x2_end]
    auto_pad: str

    @property
    def rank(self) -> int:
        return len(self.kernel)

    def extent(self, i: int) -> int:
        """Span of the dilated kernel along axis ``i``."""
        return (self.kernel[i] - 1) * self.dilations[i] + 1


def read_window(ctx: InferenceContext, kernel: tuple[int, ...] | None) -> Window | None:
    """Window attributes of ``ctx.node``; ``kernel`` is the kernel_shape to use when the
    attribute is absent (Conv takes it from the weight). None when it cannot be known."""
    ks = ctx.attr("kernel_shape")
    if ks is not None:
        kernel = tuple(int(k) for k in ks)
    if kernel is None or any(not isinstance(k, int) for k in kernel):
        return None
    n = len(kernel)
    strides = tuple(int(s) for s in (ctx.attr("strides") or [1] * n))
    dilations = tuple(int(d) for d in (ctx.attr("dilations") or [1] * n))
    auto_pad = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    pads = tuple(int(p) for p in (ctx.attr("pads") or [0] * (2 * n)))
    if auto_pad in ("VALID",):
        pads = (0,) * (2 * n)
    if len(strides) != n or len(dilations) != n or len(pads) != 2 * n:
        raise ctx.fail(f"kernel has {n} spatial axes but strides={list(strides)}, dilations={list(dilations)}, "
                       f"pads={list(pads)}")
    if any(s <= 0 for s in strides) or any(d <= 0 for d in dilations):
        raise ctx.fail(f"strides {list(strides)} and dilations {list(dilations)} must be positive")
    return Window(kernel, strides, dilations, pads, auto_pad)


def window_output_dim(size: Dim, w: Window, i: int, *, ceil_mode: bool = False) -> Dim:
    """Output length along spatial axis ``i`` of a strided window over ``size`` elements.

    NOTSET: floor((in + pad_begin + pad_end - extent) / stride) + 1 (ceil with
    ``ceil_mode``, dropping a last window that would start in the end padding,
    as onnx's reference and PyTorch do; unknown without it where the kernel outruns the
    input by less than a stride, as the spec and ONNX Runtime disagree there); SAME_*: ceil(in / stride); VALID:
    ceil((in - extent + 1) / stride). A symbolic ``size`` survives only where
    the formula is the identity (stride 1 and padding that exactly makes up
    for the kernel's extent); otherwise the result is unknown.
    """
    s, ext = w.strides[i], w.extent(i)
    pb, pe = w.pads[i], w.pads[i + w.rank]
    if not isinstance(size, int):
        if size is None or s != 1:
            return None
        if w.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            return size
        if w.auto_pad == "VALID":
            return size if ext == 1 else None
        return size if pb + pe == ext - 1 else None
    if w.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return -(-size // s)
    if w.auto_pad == "VALID":
        return max(0, -(-(size - ext + 1) // s))
    span = size + pb + pe - ext
    if ceil_mode:  # a kernel 1 longer than the input still gives one window: ceil(-1 / 2) + 1 (onnx's reference,
        # ONNX Runtime and torch; 0 was inferred, and gather-shape folded it: the optimized model returned nothing)
        out = math.ceil(span / s) + 1
        if out > 0 and (out - 1) * s >= size + pb:
            out -= 1
        return max(0, out)
    if span < 0:  # a kernel past the input by less than a stride: the spec's floor gives 0 windows, ONNX Runtime
        # (and onnx's inference) 1, truncating toward 0: unknown, so that no pass folds either (Shape(pool) folded to
        # 0 gave an empty output where ONNX Runtime gives one window; an outside check)
        return None if span > -s else 0
    return span // s + 1


def transposed_output_dim(size: Dim, w: Window, i: int, output_padding: int) -> Dim:
    """ConvTranspose output length: stride*(in-1) + output_padding + extent - pad_begin - pad_end, or under
    SAME_* the spec's in*stride, reached by padding stride*(in-1) + output_padding + extent - in*stride, which
    ONNX Runtime clamps at 0: where the extent is shorter than the stride that length is the output (1x1 kernel,
    stride 2, in 3: 5, not 6; ONNX Runtime over 288 cases of SAME_*: an outside check's fuzzing found the 6)."""
    s, ext = w.strides[i], w.extent(i)
    if w.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if isinstance(size, int):
            return min(size * s, s * (size - 1) + output_padding + ext)
        return size if s == 1 else None
    pb, pe = w.pads[i], w.pads[i + w.rank]
    if not isinstance(size, int):
        return size if s == 1 and output_padding + ext - 1 == pb + pe else None
    return s * (size - 1) + output_padding + ext - pb - pe
