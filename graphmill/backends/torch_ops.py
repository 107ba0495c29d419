"""ONNX op semantics in torch, one function per op, for the torch backend (``torch_lowering``).

Each entry of ``OPS`` is ``fn(rt, attrs, inputs) -> tensor | tuple``: ``rt`` is the
running module (``rt.training``, ``rt.opset``), ``attrs`` the node's attributes as
plain Python values, ``inputs`` the node's inputs as tensors (``None`` for omitted
optional ones). Shape-like inputs (Reshape's shape, Slice's starts...) are read
with ``.tolist()``: the module interprets the graph eagerly, it is not traced.

``CHECKS`` holds construction-time checks for ops whose attributes select a
variant this backend does not implement (Resize's cubic mode, MaxPool's Indices
output...); they return a reason or ``None``. ``NON_DIFF_INPUTS`` names the input
slots that carry data rather than weights (shapes, axes, running statistics):
a floating initializer read only there becomes a buffer, not a Parameter.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from graphmill.ir import DataType

_TORCH_DTYPES = {
    DataType.FLOAT: torch.float32, DataType.DOUBLE: torch.float64, DataType.FLOAT16: torch.float16,
    DataType.BFLOAT16: torch.bfloat16, DataType.INT8: torch.int8, DataType.UINT8: torch.uint8,
    DataType.INT16: torch.int16, DataType.INT32: torch.int32, DataType.INT64: torch.int64,
    DataType.BOOL: torch.bool, DataType.COMPLEX64: torch.complex64, DataType.COMPLEX128: torch.complex128,
}  # torch's uint16/32/64 lack most CPU kernels, float8/4-bit types most ops: refused at construction


def torch_dtype(dt: int) -> torch.dtype:
    try:
        return _TORCH_DTYPES[DataType(dt)]
    except KeyError:
        raise TypeError(f"element type {DataType(dt).short_name} has no torch equivalent") from None


def to_torch_tensor(arr: np.ndarray) -> torch.Tensor:
    arr = np.asarray(arr)
    if arr.dtype.kind in "US O":
        raise TypeError("string tensors have no torch equivalent")
    dt = DataType.from_numpy(arr.dtype)
    if dt == DataType.BFLOAT16:  # numpy has no bfloat16: go through float32 (exact)
        return torch.from_numpy(arr.astype(np.float32)).to(torch.bfloat16)
    torch_dtype(dt)
    return torch.from_numpy(np.array(arr, copy=True))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as numpy (bfloat16 as ml_dtypes' bfloat16)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(DataType.BFLOAT16.numpy())
    return t.numpy()


OPS: dict[str, Callable[..., Any]] = {}
CHECKS: dict[str, Callable[[Any, int], str | None]] = {}
NON_DIFF_INPUTS: dict[str, frozenset[int]] = {}


def op(*names: str, non_diff: tuple[int, ...] = ()):
    def deco(fn):
        for n in names:
            OPS[n] = fn
            if non_diff:
                NON_DIFF_INPUTS[n] = frozenset(non_diff)
        return fn
    return deco


def check(*names: str):
    def deco(fn):
        for n in names:
            CHECKS[n] = fn
        return fn
    return deco


def _ints(t) -> list[int]:
    return [int(v) for v in (t.tolist() if isinstance(t, torch.Tensor) else t)]


def _axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


# -- elementwise -------------------------------------------------------------------------------------
def _unary(fn):
    return lambda rt, a, x: fn(x[0])


for _n, _f in {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Erf": torch.erf, "Sqrt": torch.sqrt,
    "Exp": torch.exp, "Log": torch.log, "Neg": torch.neg, "Abs": torch.abs, "Not": torch.logical_not,
    "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round, "Sign": torch.sign, "Sin": torch.sin,
    "Cos": torch.cos, "Tan": torch.tan, "Asin": torch.asin, "Acos": torch.acos, "Atan": torch.atan,
    "Sinh": torch.sinh, "Cosh": torch.cosh, "Asinh": torch.asinh, "Acosh": torch.acosh, "Atanh": torch.atanh,
    "Reciprocal": torch.reciprocal, "Softsign": F.softsign, "IsNaN": torch.isnan, "Mish": F.mish,
    "Identity": lambda x: x,
}.items():
    OPS[_n] = _unary(_f)


@op("Softplus")
def _softplus(rt, a, x):
    return torch.log1p(torch.exp(x[0])) if x[0].dtype == torch.float64 else F.softplus(x[0])


@op("LeakyRelu")
def _leaky(rt, a, x):
    return F.leaky_relu(x[0], a.get("alpha", 0.01))


@op("Elu")
def _elu(rt, a, x):
    return F.elu(x[0], a.get("alpha", 1.0))


@op("Celu")
def _celu(rt, a, x):
    return F.celu(x[0], a.get("alpha", 1.0))


@op("Selu")
def _selu(rt, a, x):
    alpha, gamma = a.get("alpha", 1.67326319217681884765625), a.get("gamma", 1.05070102214813232421875)
    v = x[0]
    return gamma * torch.where(v > 0, v, alpha * (torch.exp(v) - 1))


@op("ThresholdedRelu")
def _threlu(rt, a, x):
    v = x[0]
    return torch.where(v > a.get("alpha", 1.0), v, torch.zeros_like(v))


@op("PRelu")
def _prelu(rt, a, x):
    v, slope = x
    return torch.where(v < 0, v * slope, v)


@op("HardSigmoid")
def _hsig(rt, a, x):
    return torch.clamp(a.get("alpha", 0.2) * x[0] + a.get("beta", 0.5), 0, 1)


@op("HardSwish")
def _hswish(rt, a, x):
    v = x[0]
    return v * torch.clamp(v / 6 + 0.5, 0, 1)


@op("Gelu")
def _gelu(rt, a, x):
    return F.gelu(x[0], approximate=a.get("approximate", "none"))


@op("Clip", non_diff=(1, 2))
def _clip(rt, a, x):
    v = x[0]
    lo = x[1] if len(x) > 1 and x[1] is not None else a.get("min")
    hi = x[2] if len(x) > 2 and x[2] is not None else a.get("max")
    if isinstance(lo, torch.Tensor):
        lo = lo.item()
    if isinstance(hi, torch.Tensor):
        hi = hi.item()
    if lo is not None and hi is not None and lo > hi:  # ONNX: every element becomes max
        return torch.full_like(v, hi)
    return torch.clamp(v, lo, hi) if (lo is not None or hi is not None) else v


def _softmax_like(fn):
    def impl(rt, a, x):
        v = x[0]
        if rt.opset >= 13:
            return fn(v, _axis(a.get("axis", -1), v.dim()))
        axis = _axis(a.get("axis", 1), v.dim())  # before opset 13: coerce to 2-D at axis
        flat = v.reshape(int(np.prod(v.shape[:axis], dtype=np.int64)), -1)
        return fn(flat, 1).reshape(v.shape)
    return impl


OPS["Softmax"] = _softmax_like(lambda v, d: torch.softmax(v, d))
OPS["LogSoftmax"] = _softmax_like(lambda v, d: torch.log_softmax(v, d))


def _binary(fn):
    return lambda rt, a, x: fn(x[0], x[1])


for _n, _f in {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Equal": torch.eq, "Less": torch.lt,
    "Greater": torch.gt, "LessOrEqual": torch.le, "GreaterOrEqual": torch.ge, "And": torch.logical_and,
    "Or": torch.logical_or, "Xor": torch.logical_xor, "MatMul": torch.matmul,
}.items():
    OPS[_n] = _binary(_f)


@op("Div")
def _div(rt, a, x):
    u, v = x
    if u.is_floating_point() or u.is_complex():
        return u / v
    return torch.div(u, v, rounding_mode="trunc")


@op("Pow")
def _pow(rt, a, x):
    u, v = x
    out = torch.pow(u, v)
    return out if out.dtype == u.dtype else out.to(u.dtype)


@op("Mod")
def _mod(rt, a, x):
    u, v = x
    return torch.fmod(u, v) if a.get("fmod", 0) else torch.remainder(u, v)


def _variadic(fn):
    def impl(rt, a, x):
        out = x[0]
        for v in x[1:]:
            out = fn(out, v)
        return out
    return impl


OPS["Sum"] = _variadic(torch.add)
OPS["Max"] = _variadic(torch.maximum)
OPS["Min"] = _variadic(torch.minimum)


@op("Mean")
def _mean(rt, a, x):
    return _variadic(torch.add)(rt, a, x) / len(x)


@op("Where", non_diff=(0,))
def _where(rt, a, x):
    return torch.where(x[0], x[1], x[2])


@op("Cast")
def _cast(rt, a, x):
    return x[0].to(torch_dtype(a["to"]))


@op("CastLike")
def _castlike(rt, a, x):
    return x[0].to(x[1].dtype)


@check("Cast")
def _check_cast(node, opset):
    try:
        torch_dtype(node.attr("to"))
    except (TypeError, ValueError) as e:
        return str(e)
    return None


# -- linear algebra, convolution -------------------------------------------------------------------
@op("Gemm")
def _gemm(rt, a, x):
    A, B = x[0], x[1]
    C = x[2] if len(x) > 2 else None
    if a.get("transA", 0):
        A = A.t()
    if a.get("transB", 0):
        B = B.t()
    y = A @ B
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    if alpha != 1.0:
        y = alpha * y
    if C is not None:
        y = y + (C if beta == 1.0 else beta * C)
    return y


@op("Einsum")
def _einsum(rt, a, x):
    return torch.einsum(a["equation"], *x)


def _spatial(a, x, w_shape, *, transpose=False):
    """kernel, strides, dilations and explicit (begin, end) pads per spatial dim."""
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


def _torch_pad(pads: list[int]) -> list[int]:
    """ONNX [b1, b2, ..., e1, e2, ...] over the trailing dims -> F.pad's (b_last, e_last, ...)."""
    n = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@op("Conv")
def _conv(rt, a, x):
    X, W = x[0], x[1]
    B = x[2] if len(x) > 2 else None
    nsp = X.dim() - 2
    k, s, d, pads, _ = _spatial(a, X, W.shape)
    begin, end = pads[:nsp], pads[nsp:]
    if begin == end:
        return _CONV[nsp](X, W, B, s, begin, d, a.get("group", 1))
    return _CONV[nsp](F.pad(X, _torch_pad(pads)), W, B, s, 0, d, a.get("group", 1))


@op("ConvTranspose")
def _convt(rt, a, x):
    X, W = x[0], x[1]
    B = x[2] if len(x) > 2 else None
    nsp = X.dim() - 2
    group = a.get("group", 1)
    k, s, d, pads, auto = _spatial(a, X, W.shape, transpose=True)
    opad = a.get("output_padding") or [0] * nsp
    out_shape = a.get("output_shape")
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        if out_shape is None:
            out_shape = [X.shape[2 + i] * s[i] for i in range(nsp)]
        out_shape = list(out_shape)[-nsp:]
        pads = [0] * (2 * nsp)
        for i in range(nsp):
            total = s[i] * (X.shape[2 + i] - 1) + opad[i] + (k[i] - 1) * d[i] + 1 - out_shape[i]
            half = total // 2
            if auto == "SAME_UPPER":
                pads[i], pads[i + nsp] = half, total - half
            else:
                pads[i], pads[i + nsp] = total - half, half
    y = _CONVT[nsp](X, W, None, s, 0, 0, group, d)
    crop = [-pads[i] for i in range(nsp)] + [opad[i] - pads[i + nsp] for i in range(nsp)]
    if any(crop):
        y = F.pad(y, _torch_pad(crop))
    if B is not None:
        y = y + B.reshape([1, -1] + [1] * nsp)
    return y


# -- normalization ---------------------------------------------------------------------------------
@op("BatchNormalization", non_diff=(3, 4))
def _bn(rt, a, x):
    X, scale, bias, mean, var = x[:5]
    y = F.batch_norm(X, mean, var, scale, bias, False, 0.0, a.get("epsilon", 1e-5))
    return y


@check("BatchNormalization")
def _check_bn(node, opset):
    if node.attr("training_mode", 0) or sum(1 for o in node.outputs if o is not None) > 1:
        return "training-mode BatchNormalization (running-statistics outputs) is not supported"
    if opset < 7 and node.attr("spatial", 1) == 0:
        return "BatchNormalization with spatial=0 is not supported"
    return None


@op("InstanceNormalization")
def _instnorm(rt, a, x):
    return F.instance_norm(x[0], weight=x[1], bias=x[2], eps=a.get("epsilon", 1e-5))


@op("LayerNormalization")
def _layernorm(rt, a, x):
    X, scale = x[0], x[1]
    B = x[2] if len(x) > 2 else None
    axis = _axis(a.get("axis", -1), X.dim())
    dims = list(range(axis, X.dim()))
    comp = X.double() if X.dtype == torch.float64 else X.float()
    mean = comp.mean(dims, keepdim=True)
    var = ((comp - mean) ** 2).mean(dims, keepdim=True)
    inv = torch.rsqrt(var + a.get("epsilon", 1e-5))
    y = ((comp - mean) * inv).to(X.dtype) * scale
    if B is not None:
        y = y + B
    return y, mean, inv


@op("LRN")
def _lrn(rt, a, x):
    X = x[0]
    size = a["size"]
    alpha, beta, bias = a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
    sq = (X * X).reshape(X.shape[0], 1, X.shape[1], -1)
    before = (size - 1) // 2
    sq = F.pad(sq, (0, 0, before, size - 1 - before))
    s = F.avg_pool2d(sq, (size, 1), stride=1).reshape(X.shape) * size
    return X / (bias + alpha / size * s) ** beta


# -- pooling ---------------------------------------------------------------------------------------
def _pool_args(a, X):
    nsp = X.dim() - 2
    k, s, d, pads, _ = _spatial(a, X, [0, 0] + list(a["kernel_shape"]))
    return nsp, k, s, d, pads


@op("MaxPool")
def _maxpool(rt, a, x):
    X = x[0]
    nsp, k, s, d, pads = _pool_args(a, X)
    ceil = bool(a.get("ceil_mode", 0))
    begin, end = pads[:nsp], pads[nsp:]
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nsp]
    if begin == end and all(p <= ((kk - 1) * dd + 1) // 2 for p, kk, dd in zip(begin, k, d)):
        return fn(X, k, s, begin, d, ceil_mode=ceil)
    Xp = F.pad(X, _torch_pad(pads), value=float("-inf")) if X.is_floating_point() else F.pad(X, _torch_pad(pads))
    return fn(Xp, k, s, 0, d, ceil_mode=ceil)


@check("MaxPool")
def _check_maxpool(node, opset):
    if len(node.outputs) > 1 and node.outputs[1] is not None:
        return "MaxPool's Indices output is not supported"
    return None


@op("AveragePool")
def _avgpool(rt, a, x):
    X = x[0]
    nsp, k, s, d, pads = _pool_args(a, X)
    ceil = bool(a.get("ceil_mode", 0))
    include = bool(a.get("count_include_pad", 0))
    squeeze = nsp == 1
    if squeeze:  # F.avg_pool1d has no divisor_override: pool 1-D as 2-D
        X = X.unsqueeze(-1)
        k, s, pads = k + [1], s + [1], [pads[0], 0, pads[1], 0]
        nsp = 2
    fn = {2: F.avg_pool2d, 3: F.avg_pool3d}[nsp]
    tp = _torch_pad(pads)
    ones = torch.ones((1, 1) + tuple(X.shape[2:]), dtype=X.dtype, device=X.device)
    total = fn(F.pad(X, tp), k, s, 0, ceil, True, 1)
    count = fn(F.pad(ones, tp, value=1.0 if include else 0.0), k, s, 0, ceil, True, 1)
    y = total / count
    return y.squeeze(-1) if squeeze else y


@check("AveragePool")
def _check_avgpool(node, opset):
    if any(v != 1 for v in node.attr("dilations", []) or []):
        return "AveragePool with dilations is not supported"
    if len(node.attr("kernel_shape", [])) > 3:
        return "AveragePool over more than 3 spatial dims is not supported"
    return None


@op("GlobalAveragePool")
def _gap(rt, a, x):
    return x[0].mean(dim=tuple(range(2, x[0].dim())), keepdim=True)


@op("GlobalMaxPool")
def _gmp(rt, a, x):
    return x[0].amax(dim=tuple(range(2, x[0].dim())), keepdim=True)


# -- reductions ------------------------------------------------------------------------------------
_AXES_AS_INPUT = {"ReduceSum": 13}  # the others take axes as an input from opset 18


def _reduce(fn):
    def impl(rt, a, x):
        X = x[0]
        axes = x[1] if len(x) > 1 and x[1] is not None else a.get("axes")
        axes = _ints(axes) if axes is not None else []
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return X
            axes = list(range(X.dim()))
        axes = sorted(_axis(v, X.dim()) for v in axes)
        if not axes:  # a scalar input reduces to itself
            out = fn(X.reshape(1), [0], False).reshape(())
        else:
            out = fn(X, axes, keep)
        return out if out.dtype == X.dtype else out.to(X.dtype)
    return impl


def _empty_reduce(X, axes, keep, fill):
    shape = [1 if i in axes else d for i, d in enumerate(X.shape)] if keep else \
        [d for i, d in enumerate(X.shape) if i not in axes]
    if X.dtype == torch.bool:
        fill = fill > 0  # max over nothing is False, min True
    elif not X.is_floating_point():
        info = torch.iinfo(X.dtype)
        fill = info.min if fill < 0 else info.max
    return torch.full(shape, fill, dtype=X.dtype, device=X.device)


def _amax(X, axes, keep):
    if any(X.shape[a] == 0 for a in axes):  # ONNX: the identity of max (-inf, or the type's minimum)
        return _empty_reduce(X, axes, keep, float("-inf"))
    return X.amax(dim=axes, keepdim=keep)


def _amin(X, axes, keep):
    if any(X.shape[a] == 0 for a in axes):
        return _empty_reduce(X, axes, keep, float("inf"))
    return X.amin(dim=axes, keepdim=keep)


def _prod(X, axes, keep):
    for ax in sorted(axes, reverse=True):
        X = X.prod(dim=ax, keepdim=keep)
    return X


for _n, _f in {
    "ReduceMean": lambda X, ax, k: X.mean(dim=ax, keepdim=k),
    "ReduceSum": lambda X, ax, k: X.sum(dim=ax, keepdim=k),
    "ReduceMax": _amax, "ReduceMin": _amin, "ReduceProd": _prod,
    "ReduceL1": lambda X, ax, k: X.abs().sum(dim=ax, keepdim=k),
    "ReduceL2": lambda X, ax, k: (X * X).sum(dim=ax, keepdim=k).sqrt(),
    "ReduceSumSquare": lambda X, ax, k: (X * X).sum(dim=ax, keepdim=k),
    "ReduceLogSum": lambda X, ax, k: X.sum(dim=ax, keepdim=k).log(),
    "ReduceLogSumExp": lambda X, ax, k: torch.logsumexp(X, dim=ax, keepdim=k),
}.items():
    OPS[_n] = _reduce(_f)
    NON_DIFF_INPUTS[_n] = frozenset({1})


def _arg(fn):
    def impl(rt, a, x):
        X = x[0]
        axis = _axis(a.get("axis", 0), X.dim())
        keep = bool(a.get("keepdims", 1))
        if a.get("select_last_index", 0):
            idx = X.shape[axis] - 1 - fn(X.flip(axis), dim=axis, keepdim=keep)
        else:
            idx = fn(X, dim=axis, keepdim=keep)
        return idx.to(torch.int64)
    return impl


OPS["ArgMax"] = _arg(torch.argmax)
OPS["ArgMin"] = _arg(torch.argmin)


# -- shape manipulation ----------------------------------------------------------------------------
@op("Reshape", non_diff=(1,))
def _reshape(rt, a, x):
    X = x[0]
    if len(x) > 1 and x[1] is not None:
        shape = _ints(x[1])
    else:
        shape = list(a["shape"])
    if not a.get("allowzero", 0):
        shape = [X.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return X.reshape(shape)


@op("Flatten")
def _flatten(rt, a, x):
    X = x[0]
    axis = _axis(a.get("axis", 1), X.dim())
    lead = int(np.prod(X.shape[:axis], dtype=np.int64))
    rest = int(np.prod(X.shape[axis:], dtype=np.int64))
    return X.reshape(lead, rest)


@op("Transpose")
def _transpose(rt, a, x):
    X = x[0]
    perm = a.get("perm") or list(reversed(range(X.dim())))
    return X.permute(perm)


@op("Concat")
def _concat(rt, a, x):
    return torch.cat([v for v in x if v is not None], dim=_axis(a["axis"], x[0].dim()))


@op("Split", non_diff=(1,))
def _split(rt, a, x):
    X = x[0]
    axis = _axis(a.get("axis", 0), X.dim())
    split = x[1] if len(x) > 1 and x[1] is not None else a.get("split")
    n = rt.current_outputs
    if split is not None and len(_ints(split)):
        sizes = _ints(split)
    elif a.get("num_outputs") is not None:
        num = a["num_outputs"]
        chunk = -(-X.shape[axis] // num)
        sizes = [chunk] * (num - 1) + [X.shape[axis] - chunk * (num - 1)]
    else:
        sizes = [X.shape[axis] // n] * n
    return tuple(torch.split(X, sizes, dim=axis))


@op("Slice", non_diff=(1, 2, 3, 4))
def _slice(rt, a, x):
    X = x[0]
    if len(x) > 1:
        starts, ends = _ints(x[1]), _ints(x[2])
        axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
        steps = _ints(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    else:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes") or range(len(starts)))
        steps = [1] * len(starts)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = _axis(ax, X.dim())
        dim = X.shape[ax]
        st = st + dim if st < 0 else st
        en = en + dim if en < 0 else en
        if sp > 0:
            st, en = min(max(st, 0), dim), min(max(en, 0), dim)
            idx = [slice(None)] * X.dim()
            idx[ax] = slice(st, max(en, st), sp)
            X = X[tuple(idx)]
        else:
            st, en = min(max(st, 0), dim - 1), min(max(en, -1), dim - 1)
            index = torch.arange(st, en, sp, device=X.device)
            X = X.index_select(ax, index)
    return X


@op("Gather", non_diff=(1,))
def _gather(rt, a, x):
    X, idx = x
    axis = _axis(a.get("axis", 0), X.dim())
    idx = idx.to(torch.int64)
    idx = torch.where(idx < 0, idx + X.shape[axis], idx)
    out = X.index_select(axis, idx.reshape(-1))
    return out.reshape(tuple(X.shape[:axis]) + tuple(idx.shape) + tuple(X.shape[axis + 1:]))


@op("GatherElements", non_diff=(1,))
def _gather_el(rt, a, x):
    X, idx = x
    axis = _axis(a.get("axis", 0), X.dim())
    idx = idx.to(torch.int64)
    idx = torch.where(idx < 0, idx + X.shape[axis], idx)
    return torch.gather(X, axis, idx)


@op("Squeeze", non_diff=(1,))
def _squeeze(rt, a, x):
    X = x[0]
    axes = x[1] if len(x) > 1 and x[1] is not None else a.get("axes")
    if axes is None:
        return X.squeeze()
    axes = sorted((_axis(v, X.dim()) for v in _ints(axes)), reverse=True)
    for ax in axes:
        X = X.squeeze(ax)
    return X


@op("Unsqueeze", non_diff=(1,))
def _unsqueeze(rt, a, x):
    X = x[0]
    axes = _ints(x[1] if len(x) > 1 and x[1] is not None else a["axes"])
    rank = X.dim() + len(axes)
    for ax in sorted(_axis(v, rank) for v in axes):
        X = X.unsqueeze(ax)
    return X


@op("Shape")
def _shape(rt, a, x):
    X = x[0]
    dims = list(X.shape)
    start = a.get("start", 0)
    end = a.get("end")
    dims = dims[start:end] if end is not None else dims[start:]
    return torch.tensor(dims, dtype=torch.int64, device=X.device)


@op("Size")
def _size(rt, a, x):
    return torch.tensor(x[0].numel(), dtype=torch.int64, device=x[0].device)


@op("ConstantOfShape", non_diff=(0,))
def _cos(rt, a, x):
    shape = _ints(x[0])
    val = a.get("value")
    if val is None:
        return torch.zeros(shape, dtype=torch.float32, device=x[0].device)
    return torch.full(shape, val.reshape(()).item(), dtype=val.dtype, device=x[0].device)


@op("Pad", non_diff=(1, 2, 3))
def _pad(rt, a, x):
    X = x[0]
    mode = a.get("mode", "constant")
    if len(x) > 1:
        pads = _ints(x[1])
        value = x[2].item() if len(x) > 2 and x[2] is not None and x[2].numel() else 0
        axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else None
    else:
        pads = list(a.get("pads") or a.get("paddings"))
        value = a.get("value", 0.0)
        axes = None
    rank = X.dim()
    if axes is not None:
        full = [0] * (2 * rank)
        n = len(axes)
        for i, ax in enumerate(axes):
            ax = _axis(ax, rank)
            full[ax], full[ax + rank] = pads[i], pads[i + n]
        pads = full
    tp = _torch_pad(pads)
    while len(tp) > 2 and tp[-1] == 0 and tp[-2] == 0:  # F.pad wants only the dims it touches
        tp = tp[:-2]
    if mode == "constant":
        return F.pad(X, tp, value=value)
    tmode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    if X.dim() - len(tp) // 2 < 1 or len(tp) // 2 > 3:
        # torch pads at most the last 3 dims and not the batch dim: move dims so it can
        raise NotImplementedError(f"Pad mode {mode!r} on these axes is not supported by the torch backend")
    if X.dim() - len(tp) // 2 == 1:
        return F.pad(X.unsqueeze(0), tp, mode=tmode).squeeze(0)
    return F.pad(X, tp, mode=tmode)


@op("Expand", non_diff=(1,))
def _expand(rt, a, x):
    X = x[0]
    shape = torch.broadcast_shapes(tuple(X.shape), tuple(_ints(x[1])))
    return X.expand(shape)


@op("Tile", non_diff=(1,))
def _tile(rt, a, x):
    return x[0].repeat(_ints(x[1]))


@op("Range", non_diff=(0, 1, 2))
def _range(rt, a, x):
    start, limit, delta = x
    n = max(int(math.ceil((limit.item() - start.item()) / delta.item())), 0)
    return start + torch.arange(n, device=start.device).to(start.dtype) * delta


@op("Dropout", non_diff=(1, 2))
def _dropout(rt, a, x):
    X = x[0]
    ratio = x[1].item() if len(x) > 1 and x[1] is not None else a.get("ratio", 0.5)
    train = bool(x[2].item()) if len(x) > 2 and x[2] is not None else rt.training
    if train and ratio > 0:
        mask = (torch.rand_like(X, dtype=torch.float32) >= ratio)
        return X * mask.to(X.dtype) / (1.0 - ratio), mask
    return X, torch.ones_like(X, dtype=torch.bool)


@op("Trilu", non_diff=(1,))
def _trilu(rt, a, x):
    k = int(x[1].item()) if len(x) > 1 and x[1] is not None else 0
    return torch.triu(x[0], k) if a.get("upper", 1) else torch.tril(x[0], k)


@op("CumSum", non_diff=(1,))
def _cumsum(rt, a, x):
    X = x[0]
    axis = _axis(int(x[1].item()), X.dim())
    if a.get("reverse", 0):
        X = X.flip(axis)
    y = torch.cumsum(X, axis).to(X.dtype)
    if a.get("exclusive", 0):
        y = y - X
    if a.get("reverse", 0):
        y = y.flip(axis)
    return y


# -- Resize ----------------------------------------------------------------------------------------
def _source_coords(mode: str, n_out: int, n_in: int, scale: float, device, n_out_f: float) -> torch.Tensor:
    xr = torch.arange(n_out, dtype=torch.float64, device=device)
    if mode == "half_pixel":
        return (xr + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (xr + 0.5) / scale - 0.5 if n_out > 1 else torch.zeros_like(xr)
    if mode == "align_corners":
        # ONNX's reference uses the unrounded output length (n_in * scale) when scales are given
        return xr * (n_in - 1) / (n_out_f - 1) if n_out_f != 1 else torch.zeros_like(xr)
    if mode == "asymmetric":
        return xr / scale
    if mode == "tf_half_pixel_for_nn":
        return (xr + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adj = n_out / (scale * n_in)
        center = n_in / 2
        return center * (1 - adj) + (xr + 0.5) / scale - 0.5
    raise NotImplementedError(mode)


def _nearest(xo: torch.Tensor, how: str) -> torch.Tensor:
    if how == "floor":
        return torch.floor(xo)
    if how == "ceil":
        return torch.ceil(xo)
    frac = xo - torch.floor(xo)
    if how == "round_prefer_ceil":
        return torch.where(frac == 0.5, torch.ceil(xo), torch.round(xo))
    return torch.where(frac == 0.5, torch.floor(xo), torch.round(xo))  # round_prefer_floor


@op("Resize", non_diff=(1, 2, 3))
def _resize(rt, a, x):
    X = x[0]
    rank = X.dim()
    scales = x[2] if len(x) > 2 and x[2] is not None and x[2].numel() else None
    sizes = x[3] if len(x) > 3 and x[3] is not None and x[3].numel() else None
    axes = [_axis(v, rank) for v in (a.get("axes") or range(rank))]
    in_sz = [X.shape[ax] for ax in axes]
    if sizes is not None:
        out_sz = _ints(sizes)
        policy = a.get("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            ratios = [o / i for o, i in zip(out_sz, in_sz)]
            r = min(ratios) if policy == "not_larger" else max(ratios)
            out_sz = [int(math.floor(i * r + 0.5)) for i in in_sz]
            sc = [r] * len(axes)
        else:
            sc = [o / i for o, i in zip(out_sz, in_sz)]
    else:
        sc = [float(v) for v in scales.tolist()]
        out_sz = [int(math.floor(i * s)) for i, s in zip(in_sz, sc)]
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    how = a.get("nearest_mode", "round_prefer_floor")
    for ax, n_in, n_out, s in zip(axes, in_sz, out_sz, sc):
        if n_in == n_out and s == 1.0:
            continue
        xo = _source_coords(ctm, n_out, n_in, s, X.device, n_in * s if sizes is None else n_out)
        if mode == "nearest":
            idx = _nearest(xo, how).clamp(0, n_in - 1).to(torch.int64)
            X = X.index_select(ax, idx)
        else:
            x0 = torch.floor(xo)
            w1 = (xo - x0).to(X.dtype)
            i0 = x0.clamp(0, n_in - 1).to(torch.int64)
            i1 = (x0 + 1).clamp(0, n_in - 1).to(torch.int64)
            shape = [1] * rank
            shape[ax] = n_out
            w1 = w1.reshape(shape)
            X = X.index_select(ax, i0) * (1 - w1) + X.index_select(ax, i1) * w1
    return X


@check("Resize")
def _check_resize(node, opset):
    mode = node.attr("mode", "nearest")
    if mode not in ("nearest", "linear"):
        return f"Resize mode {mode!r} is not supported (only nearest and linear)"
    if node.attr("antialias", 0):
        return "Resize with antialias is not supported"
    ctm = node.attr("coordinate_transformation_mode", "half_pixel")
    if ctm not in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
                   "half_pixel_symmetric"):
        return f"Resize coordinate_transformation_mode {ctm!r} is not supported"
    if opset < 11:
        return "Resize before opset 11 is not supported"
    return None


@check("Pad")
def _check_pad(node, opset):
    mode = node.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        return f"Pad mode {mode!r} is not supported"
    return None

