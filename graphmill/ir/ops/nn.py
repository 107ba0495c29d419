"""Compute-heavy NN ops: Conv, ConvTranspose, Gemm, MatMul (and their integer/quantized
twins), Softmax-like ops and Dropout.

These are where the MACs are, so their cost functions are the ones the
simulator and the placement passes lean on; each cost docstring states its
counting convention.
"""

from __future__ import annotations

from ..dtypes import DataType
from ..graph import Node
from ..types import Dim, TensorType
from .common import broadcast_shapes, cost_with_elements, dims_product, io_cost
from .registry import Cost, InferenceContext, register
from .window import read_window, transposed_output_dim, window_output_dim


def value_shape(node: Node, i: int, *, output: bool = False) -> tuple[Dim, ...] | None:
    vals = node.outputs if output else node.inputs
    v = vals[i] if i < len(vals) else None
    t = v.type if v is not None else None
    return t.shape if isinstance(t, TensorType) else None


def unknown_cost(node: Node) -> Cost:
    c = io_cost(node)
    c.known = False
    return c


# -- Conv -------------------------------------------------------------------------------


def _conv_like(ctx: InferenceContext, x: int, w: int, out_dtype: DataType, bias: int | None) -> list:
    """Conv output type: [N, M, out spatial...] where M = W.shape[0] (or the bias length)."""
    xs, ws = ctx.input_shape(x), ctx.input_shape(w)
    rank = len(xs) if xs is not None else (len(ws) if ws is not None else None)
    if rank is None:
        return [TensorType(out_dtype, None)]
    if rank < 3:
        raise ctx.fail(f"input must have rank >= 3 ([N, C, spatial...]), got rank {rank}")
    if xs is not None and ws is not None and len(ws) != len(xs):
        raise ctx.fail(f"weight rank {len(ws)} differs from input rank {len(xs)}")
    group = int(ctx.attr("group", 1))
    if xs is not None and ws is not None and isinstance(xs[1], int) and isinstance(ws[1], int):
        if xs[1] != ws[1] * group:
            raise ctx.fail(f"input has {xs[1]} channels but weight expects {ws[1]} x group {group}")
    m: Dim = ws[0] if ws is not None else None
    if m is None and bias is not None and ctx.input_shape(bias) is not None:
        m = ctx.input_shape(bias)[0]  # type: ignore[index]
    win = read_window(ctx, tuple(ws[2:]) if ws is not None else None)
    n_batch: Dim = xs[0] if xs is not None else None
    if win is None or xs is None:
        return [TensorType(out_dtype, (n_batch, m) + (None,) * (rank - 2))]
    if win.rank != rank - 2:
        raise ctx.fail(f"kernel_shape has {win.rank} axes for {rank - 2} spatial axes")
    spatial = tuple(window_output_dim(xs[2 + i], win, i) for i in range(win.rank))
    if any(isinstance(d, int) and d <= 0 for d in spatial):
        raise ctx.fail(f"output spatial size {list(spatial)} is not positive")
    return [TensorType(out_dtype, (n_batch, m) + spatial)]


def infer_conv(ctx: InferenceContext) -> list:
    return _conv_like(ctx, 0, 1, ctx.input_dtype(0), 2 if ctx.has_input(2) else None)


def _infer_conv_integer(ctx: InferenceContext) -> list:
    return _conv_like(ctx, 0, 1, DataType.INT32, None)


def _infer_qlinear_conv(ctx: InferenceContext) -> list:
    # x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B: y has y_zero_point's type.
    return _conv_like(ctx, 0, 3, ctx.input_dtype(7) or ctx.input_dtype(0), 8 if ctx.has_input(8) else None)


def _conv_cost_from(node: Node, w: int, bias: int | None) -> Cost:
    """Conv MACs = N * Cout * prod(out spatial) * (Cin/group) * prod(kernel).

    (Cin/group is the weight's dim 1.) flops = 2*MACs, plus one add per output
    element when a bias is given. Unknown (``known=False``, macs 0) unless the
    output and weight shapes are static.
    """
    ys, ws = value_shape(node, 0, output=True), value_shape(node, w)
    macs = dims_product(ys) if ys is not None else None
    kern = dims_product(ws[1:]) if ws is not None else None
    if macs is None or kern is None or ys is None:
        return unknown_cost(node)
    macs *= kern  # N*Cout*prod(out) * (Cin/group)*prod(kernel)
    flops = 2 * macs + (dims_product(ys) if bias is not None and node.inputs[bias] is not None else 0)
    return io_cost(node, macs=macs, flops=flops)


def conv_cost(node: Node) -> Cost:
    """Conv MACs = N * Cout * prod(out spatial) * (Cin/group) * prod(kernel); flops = 2*MACs (+ bias adds).
    Grouped and depthwise convs follow from Cin/group being the weight's dim 1."""
    return _conv_cost_from(node, 1, 2 if len(node.inputs) > 2 else None)


def _conv_integer_cost(node: Node) -> Cost:
    """ConvInteger: the Conv MAC formula on the weight (input 1), no bias."""
    return _conv_cost_from(node, 1, None)


def _qlinear_conv_cost(node: Node) -> Cost:
    """QLinearConv: the Conv MAC formula on the weight (input 3), bias input 8."""
    return _conv_cost_from(node, 3, 8 if len(node.inputs) > 8 else None)


register("Conv", infer=infer_conv, cost=conv_cost)
register("ConvInteger", infer=_infer_conv_integer, cost=_conv_integer_cost)
register("QLinearConv", infer=_infer_qlinear_conv, cost=_qlinear_conv_cost)


# -- ConvTranspose ----------------------------------------------------------------------


def _infer_conv_transpose(ctx: InferenceContext) -> list:
    """[N, W.shape[1]*group, out spatial...]; out spatial from ``output_shape`` when given,
    else stride*(in-1) + output_padding + extent - pads (in*stride under SAME_*)."""
    xs, ws = ctx.input_shape(0), ctx.input_shape(1)
    dtype = ctx.input_dtype(0)
    rank = len(xs) if xs is not None else (len(ws) if ws is not None else None)
    if rank is None:
        return [TensorType(dtype, None)]
    if rank < 3:
        raise ctx.fail(f"input must have rank >= 3 ([N, C, spatial...]), got rank {rank}")
    group = int(ctx.attr("group", 1))
    if xs is not None and ws is not None and isinstance(xs[1], int) and isinstance(ws[0], int) and xs[1] != ws[0]:
        raise ctx.fail(f"input has {xs[1]} channels but weight has {ws[0]}")
    m: Dim = ws[1] * group if ws is not None and isinstance(ws[1], int) else None
    if m is None and ctx.has_input(2) and ctx.input_shape(2) is not None:
        m = ctx.input_shape(2)[0]  # type: ignore[index]
    n_batch: Dim = xs[0] if xs is not None else None
    n = rank - 2
    out_shape = ctx.attr("output_shape")
    if out_shape is not None:
        out_shape = [int(d) for d in out_shape]
        if len(out_shape) == rank:  # some exporters write [N, C, spatial...]
            out_shape = out_shape[2:]
        if len(out_shape) != n:
            raise ctx.fail(f"output_shape {out_shape} does not have {n} spatial entries")
        return [TensorType(dtype, (n_batch, m) + tuple(out_shape))]
    win = read_window(ctx, tuple(ws[2:]) if ws is not None else None)
    if win is None or xs is None:
        return [TensorType(dtype, (n_batch, m) + (None,) * n)]
    if win.rank != n:
        raise ctx.fail(f"kernel_shape has {win.rank} axes for {n} spatial axes")
    out_pad = [int(p) for p in (ctx.attr("output_padding") or [0] * n)]
    spatial = tuple(transposed_output_dim(xs[2 + i], win, i, out_pad[i]) for i in range(n))
    return [TensorType(dtype, (n_batch, m) + spatial)]


def _conv_transpose_cost(node: Node) -> Cost:
    """ConvTranspose MACs = N * Cin * prod(in spatial) * (Cout/group) * prod(kernel).

    Every input element is multiplied into a whole (Cout/group) x kernel block
    (Cout/group is the weight's dim 1). flops = 2*MACs (+ bias adds). Unknown
    unless the input and weight shapes are static.
    """
    xs, ws = value_shape(node, 0), value_shape(node, 1)
    a = dims_product(xs) if xs is not None else None
    b = dims_product(ws[1:]) if ws is not None else None
    if a is None or b is None:
        return unknown_cost(node)
    macs = a * b
    ys = value_shape(node, 0, output=True)
    bias = len(node.inputs) > 2 and node.inputs[2] is not None
    flops = 2 * macs + ((dims_product(ys) or 0) if bias and ys is not None else 0)
    return io_cost(node, macs=macs, flops=flops)


register("ConvTranspose", infer=_infer_conv_transpose, cost=_conv_transpose_cost)


# -- Gemm / MatMul ---------------------------------------------------------------------


def _same(a: Dim, b: Dim) -> bool:
    """False only when both dims are known ints that differ (symbols may match anything)."""
    return not (isinstance(a, int) and isinstance(b, int) and a != b)


def gemm_mnk(a: tuple[Dim, ...], b: tuple[Dim, ...], trans_a: bool, trans_b: bool):
    """(M, N, K of A, K of B) of Gemm operands after transA/transB."""
    m, ka = (a[1], a[0]) if trans_a else (a[0], a[1])
    kb, n = (b[1], b[0]) if trans_b else (b[0], b[1])
    return m, n, ka, kb


def infer_gemm(ctx: InferenceContext) -> list:
    """Y[M, N] = alpha * A'[M, K] @ B'[K, N] + beta * C (A', B' transposed per transA/transB)."""
    a, b = ctx.input_shape(0), ctx.input_shape(1)
    dtype = ctx.input_dtype(0) or ctx.input_dtype(1)
    if a is None or b is None:
        m = n = None
        if a is not None and len(a) == 2:
            m = a[1] if ctx.attr("transA", 0) else a[0]
        if b is not None and len(b) == 2:
            n = b[0] if ctx.attr("transB", 0) else b[1]
        return [TensorType(dtype, (m, n))]
    if len(a) != 2 or len(b) != 2:
        raise ctx.fail(f"A and B must be 2-D, got {list(a)} and {list(b)}")
    m, n, ka, kb = gemm_mnk(a, b, bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0)))
    if not _same(ka, kb):
        raise ctx.fail(f"inner dimensions differ: {ka} vs {kb}")
    if ctx.has_input(2) and ctx.input_shape(2) is not None:
        try:
            broadcast_shapes([ctx.input_shape(2), (m, n)])
        except ValueError:
            raise ctx.fail(f"C of shape {list(ctx.input_shape(2))} does not broadcast to [{m}, {n}]") from None
    return [TensorType(dtype, (m, n))]


def gemm_cost(node: Node) -> Cost:
    """Gemm MACs = M*N*K; flops = 2*M*N*K (+ M*N for adding C). Unknown unless A and B are static."""
    return gemm_cost_from(node, 0, 1, 2)


def gemm_cost_from(node: Node, a_at: int, b_at: int, c_at: int) -> Cost:
    """``gemm_cost`` with A, B and C at those input positions (QGemm's are 0, 3 and 6)."""
    a, b = value_shape(node, a_at), value_shape(node, b_at)
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return unknown_cost(node)
    m, n, k, _ = gemm_mnk(a, b, bool(node.attr("transA", 0)), bool(node.attr("transB", 0)))
    macs = dims_product((m, n, k))
    if macs is None:
        return unknown_cost(node)
    has_c = len(node.inputs) > c_at and node.inputs[c_at] is not None
    return io_cost(node, macs=macs, flops=2 * macs + (m * n if has_c else 0))  # type: ignore[operator]


register("Gemm", infer=infer_gemm, cost=gemm_cost)


def matmul_shape(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """numpy.matmul's output shape: 1-D operands get a 1 prepended (A) / appended (B) that is
    dropped again; batch dims broadcast. Raises ValueError on a K mismatch."""
    if len(a) == 0 or len(b) == 0:
        raise ValueError("matmul operands must have rank >= 1")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    if not _same(a2[-1], b2[-2]):
        raise ValueError(f"inner dimensions differ: {a2[-1]} vs {b2[-2]}")
    batch = broadcast_shapes([a2[:-2], b2[:-2]])
    out = tuple(batch) + (a2[-2], b2[-1])  # type: ignore[arg-type]
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _matmul_like(ctx: InferenceContext, a: int, b: int, dtype: DataType) -> list:
    sa, sb = ctx.input_shape(a), ctx.input_shape(b)
    if sa is None or sb is None:
        return [TensorType(dtype, None)]
    try:
        return [TensorType(dtype, matmul_shape(sa, sb))]
    except ValueError as e:
        raise ctx.fail(f"{e} (shapes {list(sa)} and {list(sb)})") from None


def _infer_matmul(ctx: InferenceContext) -> list:
    return _matmul_like(ctx, 0, 1, ctx.input_dtype(0) or ctx.input_dtype(1))


def _infer_matmul_integer(ctx: InferenceContext) -> list:
    return _matmul_like(ctx, 0, 1, DataType.INT32)


def _infer_qlinear_matmul(ctx: InferenceContext) -> list:
    # a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp: y has y_zero_point's type.
    return _matmul_like(ctx, 0, 3, ctx.input_dtype(7) or ctx.input_dtype(0))


def matmul_macs(a: tuple[Dim, ...] | None, b: tuple[Dim, ...] | None) -> int | None:
    """batch * M * N * K for numpy-matmul operands (a 1-D A has M=1, a 1-D B has N=1)."""
    if a is None or b is None or len(a) == 0 or len(b) == 0:
        return None
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    try:
        batch = broadcast_shapes([a2[:-2], b2[:-2]])
    except ValueError:
        return None
    return dims_product(tuple(batch or ()) + (a2[-2], b2[-1], a2[-1]))


def _matmul_cost_from(node: Node, a: int, b: int) -> Cost:
    macs = matmul_macs(value_shape(node, a), value_shape(node, b))
    if macs is None:
        return unknown_cost(node)
    return io_cost(node, macs=macs, flops=2 * macs)


def _matmul_cost(node: Node) -> Cost:
    """MatMul MACs = batch * M * N * K (broadcast batch; 1-D A gives M=1, 1-D B gives N=1);
    flops = 2*MACs. Unknown unless both operand shapes are static."""
    return _matmul_cost_from(node, 0, 1)


def _qlinear_matmul_cost(node: Node) -> Cost:
    """QLinearMatMul: the MatMul formula on inputs 0 and 3."""
    return _matmul_cost_from(node, 0, 3)


def einsum_labels(equation: str, shapes: list) -> tuple[list[str], str, dict[str, Dim]] | None:
    """An einsum read against its operands' shapes: (each operand's labels, the output's labels, the size of
    each label), or None when it cannot be read (a shape unknown, a rank that does not match its term, two
    sizes of one label that do not broadcast). The ``...`` dims are labels ``0``-``9`` aligned from the right
    (broadcast as numpy does); the implicit form (no ``->``) outputs the labels that appear once, in
    alphabetical order. A symbolic size stands unless an operand gives the label a size other than 1."""
    eq = equation.replace(" ", "")
    ins, out = eq.split("->", 1) if "->" in eq else (eq, None)
    terms = ins.split(",")
    if len(terms) != len(shapes) or any(s is None for s in shapes):
        return None
    ranks = [len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes)]
    if any(r < 0 or (r and "..." not in t) for t, r in zip(terms, ranks)) or max(ranks, default=0) > 10:
        return None
    most = max(ranks, default=0)
    labels: list[str] = []
    size: dict[str, Dim] = {}
    for term, shape, r in zip(terms, shapes, ranks):
        expanded = term.replace("...", "".join(str(most - r + i) for i in range(r)))
        if len(expanded) != len(shape) or not all(c.isalnum() for c in expanded):
            return None
        for letter, d in zip(expanded, shape):
            seen = size.get(letter, 1)
            if isinstance(seen, int) and isinstance(d, int) and seen != 1 and d not in (1, seen):
                return None
            if seen == 1 or (d != 1 and isinstance(d, int)):
                size[letter] = d
        labels.append(expanded)
    if out is None:
        once = sorted(c for c in size if not c.isdigit() and "".join(labels).count(c) == 1)
        out = "".join(str(i) for i in range(most)) + "".join(once)
    else:
        out = out.replace("...", "".join(str(i) for i in range(most)))
        if any(c not in size for c in out) or len(set(out)) != len(out):
            return None
    return labels, out, size


def _infer_einsum(ctx: InferenceContext) -> list:
    read = einsum_labels(str(ctx.node.attr("equation", "")), [ctx.input_shape(i) for i in range(ctx.num_inputs)])
    return [TensorType(ctx.input_dtype(0), None if read is None else tuple(read[2][c] for c in read[1]))]


def _einsum_cost(node: Node) -> Cost:
    """Einsum as its loop nest: with two operands, MACs = the product of every label's size (a batched matrix
    product's batch * M * N * K); with n operands, n - 1 multiplies per point; one operand (a transpose, a
    trace, a sum) does no MAC, flops = its elements. Unknown unless every operand's shape is static."""
    shapes = [value_shape(node, i) for i in range(len(node.inputs))]
    read = einsum_labels(str(node.attr("equation", "")), shapes)
    if read is None:
        return unknown_cost(node)
    labels, _, size = read
    points = dims_product(size.values())
    if points is None:
        return unknown_cost(node)
    if len(labels) == 1:
        return io_cost(node, flops=dims_product(shapes[0]) or 0)
    macs = (len(labels) - 1) * points
    return io_cost(node, macs=macs, flops=2 * macs)


register("Einsum", infer=_infer_einsum, cost=_einsum_cost)


def _infer_det(ctx: InferenceContext) -> list:
    """The determinant of each trailing [M, M] matrix: the leading dims, the input's element type."""
    x = ctx.input_type(0)
    if x is None:
        return [None]
    return [TensorType(x.dtype, None if x.shape is None else tuple(x.shape[:-2]))]


def _det_cost(node: Node) -> Cost:
    """Det: macs 0; flops ~ 2/3 M^3 per matrix (an LU factorization), counted as M per input element."""
    x = node.input_at(0)
    shape = x.type.shape if x is not None and isinstance(x.type, TensorType) else None
    m = shape[-1] if shape else None
    c = cost_with_elements(node, m if isinstance(m, int) else 0, of_input=0)
    c.known = c.known and isinstance(m, int)
    return c


register("Det", infer=_infer_det, cost=_det_cost)
register("MatMul", infer=_infer_matmul, cost=_matmul_cost)
register("MatMulInteger", infer=_infer_matmul_integer, cost=_matmul_cost)
register("QLinearMatMul", infer=_infer_qlinear_matmul, cost=_qlinear_matmul_cost)


# -- Softmax family, Dropout --------------------------------------------------------------


def _infer_same(ctx: InferenceContext) -> list:
    return [ctx.input_type(0)]


def _softmax_cost(node: Node) -> Cost:
    """Softmax/LogSoftmax: macs 0; flops ~ 5 per element (max, subtract, exp, sum, divide/log)."""
    return cost_with_elements(node, 5)


def _hardmax_cost(node: Node) -> Cost:
    """Hardmax: macs 0; flops ~ 2 per element (compare, write)."""
    return cost_with_elements(node, 2)


register(["Softmax", "LogSoftmax"], infer=_infer_same, cost=_softmax_cost)
register("Hardmax", infer=_infer_same, cost=_hardmax_cost)


def _infer_class_loss(ctx: InferenceContext) -> list:
    """NegativeLogLikelihoodLoss / SoftmaxCrossEntropyLoss: the loss is a scalar of the scores' element type, or
    one per target ([N, d1, ...], the labels' shape) with ``reduction`` none; SoftmaxCrossEntropyLoss's optional
    log_prob is shaped like the scores."""
    scores = ctx.input_type(0)
    dtype = scores.dtype if scores is not None else None
    loss_shape = ctx.input_shape(1) if ctx.attr("reduction", "mean") == "none" else ()
    return [TensorType(dtype, loss_shape), scores][:len(ctx.node.outputs)]


def _class_loss_cost(node: Node) -> Cost:
    """NegativeLogLikelihoodLoss: macs 0; flops ~ 2 per score (pick, weight; counted over the scores, of which
    it reads one per target); SoftmaxCrossEntropyLoss adds a LogSoftmax's 5 per score."""
    return cost_with_elements(node, 7 if node.op_type == "SoftmaxCrossEntropyLoss" else 2, of_input=0)


register(["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"], infer=_infer_class_loss, cost=_class_loss_cost)


def _infer_dropout(ctx: InferenceContext) -> list:
    """Output has the input's type; the optional mask has its shape and is bool from opset 10
    (before that it had the input's element type)."""
    t = ctx.input_type(0)
    shape = t.shape if t is not None else None
    mask_dtype = DataType.BOOL if ctx.opset >= 10 or ctx.opset == 0 else ctx.input_dtype(0)
    return [t, TensorType(mask_dtype, shape)]


def _dropout_cost(node: Node) -> Cost:
    """Dropout: macs 0; flops ~ 1 per element (a no-op at inference, a mask multiply in training)."""
    return cost_with_elements(node, 1)


register("Dropout", infer=_infer_dropout, cost=_dropout_cost)
