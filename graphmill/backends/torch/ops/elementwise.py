"""Elementwise ops for the torch backend: activations, arithmetic, comparisons, bitwise ops, casts, Softmax,
Hardmax, Dropout."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..tensors import torch_dtype
from .common import CHECKS, OPS, check, norm_axis, op, refuse_other_values


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


@op("Clip")
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
            return fn(v, norm_axis(a.get("axis", -1), v.dim()))
        axis = norm_axis(a.get("axis", 1), v.dim())  # before opset 13: coerce to 2-D at axis
        # both sizes given: -1 cannot be inferred for a tensor of 0 elements (a [0, 3] input; a fuzzer)
        flat = v.reshape(int(np.prod(v.shape[:axis], dtype=np.int64)), int(np.prod(v.shape[axis:], dtype=np.int64)))
        return fn(flat, 1).reshape(v.shape)
    return impl


def _hardmax(v: torch.Tensor, dim: int) -> torch.Tensor:
    """1 at the first largest element along ``dim`` (ONNX picks the first of ties, as argmax does), else 0."""
    if v.numel() == 0:
        return torch.zeros_like(v)
    return torch.zeros_like(v).scatter(dim, v.argmax(dim, keepdim=True), 1)


OPS["Softmax"] = _softmax_like(lambda v, d: torch.softmax(v, d))
OPS["LogSoftmax"] = _softmax_like(lambda v, d: torch.log_softmax(v, d))
OPS["Hardmax"] = _softmax_like(_hardmax)


def _binary(fn):
    return lambda rt, a, x: fn(x[0], x[1])


for _n, _f in {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Equal": torch.eq, "Less": torch.lt,
    "Greater": torch.gt, "LessOrEqual": torch.le, "GreaterOrEqual": torch.ge, "And": torch.logical_and,
    "Or": torch.logical_or, "Xor": torch.logical_xor,
}.items():
    OPS[_n] = _binary(_f)


for _n, _f in {"BitwiseAnd": torch.bitwise_and, "BitwiseOr": torch.bitwise_or,
               "BitwiseXor": torch.bitwise_xor}.items():
    OPS[_n] = _binary(_f)
OPS["BitwiseNot"] = _unary(torch.bitwise_not)


@op("BitShift")
def _bitshift(rt, a, x):
    u, v = x
    return torch.bitwise_left_shift(u, v) if a["direction"] == "LEFT" else torch.bitwise_right_shift(u, v)


CHECKS["BitShift"] = refuse_other_values("direction", ("LEFT", "RIGHT"))


@op("Swish")
def _swish(rt, a, x):
    v = x[0]
    return v * torch.sigmoid(a.get("alpha", 1.0) * v)


@op("Shrink")
def _shrink(rt, a, x):
    v = x[0]
    bias, lambd = a.get("bias", 0.0), a.get("lambd", 0.5)
    zero = torch.zeros_like(v)
    return torch.where(v < -lambd, v + bias, torch.where(v > lambd, v - bias, zero)).to(v.dtype)


@op("IsInf")
def _isinf(rt, a, x):
    v = x[0]
    neg = torch.isneginf(v) if a.get("detect_negative", 1) else torch.zeros_like(v, dtype=torch.bool)
    pos = torch.isposinf(v) if a.get("detect_positive", 1) else torch.zeros_like(v, dtype=torch.bool)
    return neg | pos


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


@op("Where")
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
        return f"{e}: a Cast to it is not supported"
    return None


@op("Dropout")
def _dropout(rt, a, x):
    X = x[0]
    ratio = x[1].item() if len(x) > 1 and x[1] is not None else a.get("ratio", 0.5)
    train = bool(x[2].item()) if len(x) > 2 and x[2] is not None else rt.training
    if train and ratio > 0:
        mask = (torch.rand_like(X, dtype=torch.float32) >= ratio)
        return X * mask.to(X.dtype) / (1.0 - ratio), mask
    return X, torch.ones_like(X, dtype=torch.bool)
