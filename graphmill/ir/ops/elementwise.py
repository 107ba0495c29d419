"""Elementwise ops: arithmetic with broadcasting, comparisons, activations."""

from __future__ import annotations

import numpy as np

from ..dtypes import DataType
from ..types import TensorType, num_elements
from .common import broadcast_shapes, elementwise_cost, same_as_input
from .registry import MAX_PROPAGATED_FLOATS, InferenceContext, partial_dtype, register

_BINARY_ARITH = ["Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "PRelu",
                 "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor"]
_COMPARE = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"]


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX integer Div truncates toward zero (C semantics), unlike numpy's floor division."""
    if np.any(b == 0):
        raise ZeroDivisionError
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q).astype(np.result_type(a, b))


def _int_mod(a: np.ndarray, b: np.ndarray, fmod: bool) -> np.ndarray:
    """ONNX integer Mod: the sign of the divisor (Python's %), or of the dividend with ``fmod``."""
    if np.any(b == 0):
        raise ZeroDivisionError
    return (np.fmod(a, b) if fmod else np.mod(a, b)).astype(np.result_type(a, b))


_NUMPY_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _int_div, "Max": np.maximum,
                 "Min": np.minimum}


def _dim_arith(op: str, a, b):
    """One entry of integer shape arithmetic on partial values: ints compute as ONNX does (Div
    truncates), and a symbol survives only where the result is that symbol exactly (s+0, s-0, s*1,
    s/1, max/min(s, s)) or a constant (s-s = 0, s*0 = 0). Anything else is unknown (None): a sum or
    product of symbols is no symbol graphmill's types can carry."""
    if isinstance(a, int) and isinstance(b, int):
        if op == "Div":
            if b == 0:
                return None
            q = abs(a) // abs(b)
            return -q if (a < 0) != (b < 0) else q
        return {"Add": a + b, "Sub": a - b, "Mul": a * b, "Max": max(a, b), "Min": min(a, b)}[op]
    if a is None or b is None:
        return 0 if op == "Mul" and 0 in (a, b) else None
    if isinstance(a, str) and isinstance(b, str):
        if a != b:
            return None
        return {"Sub": 0, "Max": a, "Min": a}.get(op)
    s, k, sym_left = (a, b, True) if isinstance(a, str) else (b, a, False)
    if op == "Add" and k == 0 or op == "Sub" and k == 0 and sym_left:
        return s
    if op == "Mul":
        return s if k == 1 else (0 if k == 0 else None)
    if op == "Div" and k == 1 and sym_left:
        return s
    return None


def _broadcast_partials(ctx: InferenceContext):
    """The two inputs' (partially) known values and their broadcast, ``(a, b, x, y)``; None when either is
    unknown, they do not broadcast, or the result is too large to carry as a shape value."""
    a, b = ctx.input_partial_or_unknown(0), ctx.input_partial_or_unknown(1)
    if a is None or b is None:
        return None
    try:
        x, y = np.broadcast_arrays(a, b)
    except ValueError:
        return None
    if x.size > 1024:
        return None
    return a, b, x, y


def _partial_arith(ctx: InferenceContext, op: str) -> None:
    """Entry-wise integer arithmetic on (partially) known shape values, e.g. ``Shape(x) * [1, 1, 2]``
    is ``[N, S, 128]`` for x of shape [N, S, 64] (onnx's data propagation does this per entry too)."""
    pair = _broadcast_partials(ctx)
    if pair is None:
        return
    a, b, x, y = pair
    if not any(v is not None for v in a.ravel()) and not any(v is not None for v in b.ravel()):
        return
    out = np.array([_dim_arith(op, p, q) for p, q in zip(x.ravel(), y.ravel())], dtype=object).reshape(x.shape)
    ctx.set_output_partial(0, out, partial_dtype(ctx.input_dtype(0)))


def _broadcast(ctx: InferenceContext):
    shapes = [ctx.input_shape(i) for i in range(ctx.num_inputs) if ctx.has_input(i)]
    try:
        return broadcast_shapes(shapes)
    except ValueError as e:
        raise ctx.fail(str(e)) from None


def _infer_arith(ctx: InferenceContext):
    dtype = next((ctx.input_dtype(i) for i in range(ctx.num_inputs) if ctx.input_dtype(i)), DataType.UNDEFINED)
    shape = _broadcast(ctx)
    op = ctx.node.op_type
    if ctx.num_inputs == 2 and dtype.is_integer and (op in _NUMPY_BINARY or op == "Mod"):
        # shape arithmetic (e.g. H*W, seq // heads) stays known
        a, b = ctx.input_value(0), ctx.input_value(1)
        if a is not None and b is not None and a.dtype.kind in "iu" and b.dtype.kind in "iu":
            try:
                if op == "Mod":
                    ctx.set_output_value(0, _int_mod(a, b, bool(ctx.attr("fmod", 0))))
                else:
                    ctx.set_output_value(0, _NUMPY_BINARY[op](a, b))
            except ZeroDivisionError:
                pass  # the value stays unknown; the type does not depend on it
        elif op in _NUMPY_BINARY:
            _partial_arith(ctx, op)
    elif ctx.num_inputs == 2 and dtype.is_floating and op in _FLOAT_SHAPE_ARITH:
        a, b = _float_value(ctx, 0), _float_value(ctx, 1)
        if a is not None and b is not None:
            with np.errstate(all="ignore"):  # a division by 0 gives inf, as it runs; Cast then leaves it unknown
                ctx.set_output_value(0, _FLOAT_SHAPE_ARITH[op](a.astype(dtype.numpy()), b.astype(dtype.numpy())))
    return [TensorType(dtype, shape)]


# Arithmetic an exporter does on sizes in float (MobileViT's ``int(math.ceil(h / p) * p)`` traced: Cast, Div, Ceil,
# Mul, Cast back): computed in the tensor's own type, as it runs, so that the Reshape after it is sized (342 nodes of
# MobileViT were not: an outside check)
_FLOAT_SHAPE_ARITH = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


def _float_value(ctx: InferenceContext, i: int) -> np.ndarray | None:
    """A floating input's value when it is small and known: a constant, a computed float, or a shape cast to float
    (a partial value whose entries are all ints)."""
    t = ctx.input_type(i)  # its size first: a bias of 1,024 floats is not read for this
    if t is None or t.shape is None or (n := num_elements(t.shape)) is None or n > MAX_PROPAGATED_FLOATS:
        return None
    v = ctx.input_value(i)
    if v is not None:
        return v if v.dtype.kind == "f" and v.size <= MAX_PROPAGATED_FLOATS else None
    p = ctx.input_partial(i)
    if p is None or p.size > MAX_PROPAGATED_FLOATS or not all(isinstance(d, int) for d in p.ravel()):
        return None
    return np.array([int(d) for d in p.ravel()], dtype=np.float64).reshape(p.shape)


_NUMPY_COMPARE = {"Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
                  "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or,
                  "Xor": np.logical_xor}


def _infer_compare(ctx: InferenceContext):
    a, b = ctx.input_value(0), ctx.input_value(1)
    if a is not None and b is not None and a.dtype.kind in "iub" and b.dtype.kind in "iub":
        # a test on sizes (a static export's ``rank(x) - len(repeats) > 0`` before an If) stays known, so that
        # the If's branch is known (``ir.ops.branch``)
        try:
            ctx.set_output_value(0, _NUMPY_COMPARE[ctx.node.op_type](a, b))
        except ValueError:
            pass  # shapes that do not broadcast: _broadcast names them
    elif ctx.node.op_type == "Equal" and ctx.num_inputs == 2 and ctx.input_dtype(0).is_integer:
        _partial_equal(ctx)
    return [TensorType(DataType.BOOL, _broadcast(ctx))]


def _partial_equal(ctx: InferenceContext) -> None:
    """Equal on shape values, entry by entry (``_dim_equal``): exporters test ``shape == -1``
    before a Where that replaces those entries."""
    pair = _broadcast_partials(ctx)
    if pair is None:
        return
    _, _, x, y = pair
    out = [_dim_equal(p, q) for p, q in zip(x.ravel(), y.ravel())]
    if all(o is not None for o in out):
        ctx.set_output_value(0, np.array(out, dtype=bool).reshape(x.shape))
    elif any(o is not None for o in out):
        ctx.output_values[0] = np.array(out, dtype=object).reshape(x.shape)


def _dim_equal(a, b) -> bool | None:
    """Whether two entries of shape values are equal, None when unknown. A symbol is a dimension,
    never negative: it differs from every negative int (the ``-1`` exporters test for)."""
    if a is None or b is None:
        return None
    if isinstance(a, str) and isinstance(b, str):
        return True if a == b else None
    if isinstance(a, str) or isinstance(b, str):
        k = b if isinstance(a, str) else a
        return False if k < 0 else None
    return a == b


def _infer_where(ctx: InferenceContext):
    dtype = ctx.input_dtype(1) or ctx.input_dtype(2)
    if dtype.is_integer:
        _partial_where(ctx)
    return [TensorType(dtype, _broadcast(ctx))]


def _partial_where(ctx: InferenceContext) -> None:
    """Where on shape values: entries whose condition is known take the chosen side's entry."""
    c = ctx.input_value(0)
    if c is not None and c.dtype.kind == "b":
        cond = np.array(c.tolist(), dtype=object).reshape(c.shape)
    else:
        cond = ctx.input_partial(0)
        if cond is None:
            return
    a, b = ctx.input_partial_or_unknown(1), ctx.input_partial_or_unknown(2)
    if a is None or b is None:
        return
    try:
        k, x, y = np.broadcast_arrays(cond, a, b)
    except ValueError:
        return
    if k.size > 1024:
        return
    out = [None if w is None else (p if w else q) for w, p, q in zip(k.ravel(), x.ravel(), y.ravel())]
    ctx.set_output_partial(0, np.array(out, dtype=object).reshape(k.shape), partial_dtype(ctx.input_dtype(1)))


register(_BINARY_ARITH, infer=_infer_arith, cost=elementwise_cost())
register(_COMPARE, infer=_infer_compare, cost=elementwise_cost())
register("Where", infer=_infer_where, cost=elementwise_cost())

# Unary ops whose output has the input's type. Cost: flops per element, a rough
# count of arithmetic operations (transcendentals count as one).
_UNARY = {
    "Relu": 1, "LeakyRelu": 2, "Sigmoid": 4, "Tanh": 4, "HardSigmoid": 3, "HardSwish": 4, "Gelu": 8,
    "Erf": 4, "Elu": 3, "Selu": 3, "Celu": 3, "Softplus": 3, "Softsign": 2, "Mish": 6, "ThresholdedRelu": 1,
    "Abs": 1, "Neg": 1, "Exp": 1, "Log": 1, "Sqrt": 1, "Reciprocal": 1, "Floor": 1, "Ceil": 1, "Round": 1,
    "Sign": 1, "Sin": 1, "Cos": 1, "Tan": 1, "Asin": 1, "Acos": 1, "Atan": 1, "Sinh": 1, "Cosh": 1,
    "Asinh": 1, "Acosh": 1, "Atanh": 1, "Clip": 2, "Shrink": 2, "BitwiseNot": 1,
    "Swish": 5,
}
for _op, _flops in _UNARY.items():
    register(_op, infer=same_as_input(0), cost=elementwise_cost(_flops))


_NUMPY_UNARY = {"Neg": np.negative, "Abs": np.abs}
_FLOAT_ROUNDING = {"Ceil": np.ceil, "Floor": np.floor, "Round": np.round}  # numpy rounds half to even, as ONNX


def _infer_int_unary(ctx: InferenceContext):
    """Neg/Abs keep integer shape values known (e.g. an axis count negated for a Slice)."""
    v = ctx.input_value(0)
    if v is not None and v.dtype.kind in "iu":
        ctx.set_output_value(0, _NUMPY_UNARY[ctx.node.op_type](v))
    return [ctx.input_type(0)]


register(list(_NUMPY_UNARY), infer=_infer_int_unary)


def _infer_rounding(ctx: InferenceContext):
    """Ceil/Floor/Round keep a float size known (``_FLOAT_SHAPE_ARITH``)."""
    v = _float_value(ctx, 0)
    if v is not None and ctx.input_dtype(0).is_floating:
        ctx.set_output_value(0, _FLOAT_ROUNDING[ctx.node.op_type](v.astype(ctx.input_dtype(0).numpy())))
    return [ctx.input_type(0)]


register(list(_FLOAT_ROUNDING), infer=_infer_rounding)


def _infer_not(ctx: InferenceContext):
    v = ctx.input_value(0)
    if v is not None and v.dtype.kind == "b":
        ctx.set_output_value(0, np.logical_not(v))
    return [TensorType(DataType.BOOL, ctx.input_shape(0))]


def _infer_isx(ctx: InferenceContext):
    return [TensorType(DataType.BOOL, ctx.input_shape(0))]


register("Not", infer=_infer_not, cost=elementwise_cost())
register(["IsNaN", "IsInf"], infer=_infer_isx, cost=elementwise_cost())
