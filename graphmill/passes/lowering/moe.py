"""``graphmill::MoE`` in standard ONNX (opset >= 16).

The same arithmetic as the torch backend (``backends/torch/ops/moe.py``), op for op, so ONNX Runtime and
torch agree to float rounding (the semantics are in ``ir/ops/moe.py``):

- tokens ``x2 = Flatten(X)`` [T, d]; gate logits ``MatMul``; noise ``noise * Softplus(x2 Wnoise)``;
- ``TopK`` of the logits (``topk``) or of their ``Softmax`` (``switch``/``gshard``), gate values;
- choice-major assignment ranks: ``CumSum(exclusive)`` of the one-hot expert choices [k T, E];
- capacity ``C``: a constant when the token count is static, else ``Min(T, Ceil(double(T) * ratio))``
  computed from the runtime token count (the same float64 arithmetic as ``moe_capacity``);
- dispatch: ``ScatterND`` of each kept assignment's token row into an int64 slot table [E (C + 1)] at
  ``e (C + 1) + rank`` (dropped assignments write 0 into the discarded slot ``C``, empty slots hold 0), then
  ``Gather`` of the rows by that table: [E (C + 1), d]. When the token count may be 0 (symbolic, or 0) the
  rows are the tokens after a zero row (``Pad``; a token's row is its index + 1): a gather of token 0 failed in
  ONNX Runtime with no tokens; a static count above 0 gathers from the tokens themselves. No float buffer of
  that size is a constant, so ``inspect`` counts no dispatch buffer as parameters and constant folding stores
  none (a zero buffer scattered into would be both); experts: batched ``MatMul`` over [E, C + 1, d];
- combine: ``Gather`` of each assignment's expert output, times its gate value (0 when dropped), summed
  over the k choices; the auxiliary losses and counts as ``ReduceSum``/``ReduceMean`` arithmetic (means over
  tokens as sums / max(T, 1): 0, not NaN, for no tokens).
"""

from __future__ import annotations

import math

import numpy as np

from graphmill.ir import DataType, Node
from graphmill.ir.ops.moe import (B1, B2, CV_EPSILON, NOISE, W1, W2, WG, WNOISE, X, check_moe_config, moe_attrs,
                                  moe_capacity, moe_dims, moe_experts)
from graphmill.util.errors import UserInputError

from .registry import LoweringBuilder, register_lowering

MOE_MIN_OPSET = 16


def _input(node: Node, i: int):
    return node.inputs[i] if i < len(node.inputs) else None


def _cv_squared(b: LoweringBuilder, v, dt) -> object:
    mean = b.op("ReduceMean", v, keepdims=0)  # all axes
    dev = b.op("Sub", v, mean)
    var = b.op("ReduceMean", b.op("Mul", dev, dev), keepdims=0)
    return b.op("Div", var, b.op("Add", b.op("Mul", mean, mean), np.asarray(CV_EPSILON, dt)))


def _token_mean(b: LoweringBuilder, v, tokens, dtype: int):
    """The mean over the tokens (axis 0) as sum / max(T, 1): 0 for no tokens, as the torch backend gives."""
    count = b.op("Cast", b.op("Max", tokens, b.ints(1)), to=dtype)  # [1]
    return b.op("Div", b.op("ReduceSum", v, b.ints(0), keepdims=0), count)


def lower_moe(node: Node, b: LoweringBuilder) -> list:
    """graphmill::MoE -> standard ONNX (module docstring)."""
    a = moe_attrs(node)
    experts = moe_experts(node)
    x = node.inputs[X]
    if experts is None or x is None or x.type is None or getattr(x.type, "shape", None) is None:
        raise UserInputError(f"cannot lower {node.describe()}: the number of experts and the rank of X must be "
                             "known (run shape inference first)")
    check_moe_config(experts=experts, where=node.describe(), **a)
    E, k, gate = experts, a["k"], a["gate"]
    tokens, d, h, _ = moe_dims(node)
    b.meta["moe"] = dict(a, experts=E, tokens=tokens, d=d, expert_hidden=h,
                         noisy=_input(node, WNOISE) is not None)  # the layer stays recognizable in a saved file
    ratio = float(a["capacity_factor"]) * k / E
    dt = x.type.dtype.numpy()
    rank = len(x.type.shape)
    F32 = int(x.type.dtype)
    I64, F64 = int(DataType.INT64), int(DataType.DOUBLE)

    x2 = b.op("Flatten", x, axis=rank - 1) if rank != 2 else x  # [T, d]
    if isinstance(tokens, int) and isinstance(d, int):  # static: capacity and buffer shapes are constants
        T, dd = b.ints(tokens), b.ints(d)
    else:
        shape2 = b.op("Shape", x2)
        T = b.op("Slice", shape2, b.ints(0), b.ints(1))  # [1]
        dd = b.op("Slice", shape2, b.ints(1), b.ints(2))  # [1]
    clean = b.op("MatMul", x2, node.inputs[WG])
    wnoise, noise = _input(node, WNOISE), _input(node, NOISE)
    std = b.op("Softplus", b.op("MatMul", x2, wnoise)) if wnoise is not None else None
    noisy = b.op("Add", clean, b.op("Mul", noise, std)) if (std is not None and noise is not None) else clean
    probs = None
    if gate == "topk":
        topv, topi = b.op("TopK", noisy, b.ints(k), outputs=2, axis=1, largest=1, sorted=1)
        w = b.op("Softmax", topv, axis=1)
    else:
        probs = b.op("Softmax", noisy, axis=1)
        topv, topi = b.op("TopK", probs, b.ints(k), outputs=2, axis=1, largest=1, sorted=1)
        w = b.op("Div", topv, b.op("ReduceSum", topv, b.ints(1), keepdims=1)) if gate == "gshard" else topv

    # ranks: choice-major
    arange_e = b.const(np.arange(E, dtype=np.int64))
    flat_e = b.op("Reshape", b.op("Transpose", topi, perm=[1, 0]), b.ints(-1))  # [kT]
    onehot = b.op("Cast", b.op("Equal", b.op("Unsqueeze", flat_e, b.ints(1)), arange_e), to=I64)  # [kT, E]
    before = b.op("CumSum", onehot, b.const(np.asarray(0, np.int64)), exclusive=1)
    pos = b.op("ReduceSum", b.op("Mul", before, onehot), b.ints(1), keepdims=0)  # [kT]
    if isinstance(tokens, int):
        c = moe_capacity(tokens, k, E, a["capacity_factor"])
        cap, cap1 = b.ints(c), b.ints(c + 1)
    else:
        cap = b.op("Cast", b.op("Ceil", b.op("Mul", b.op("Cast", T, to=F64), np.asarray(ratio, np.float64))), to=I64)
        cap = b.op("Min", cap, T)  # [1]
        cap1 = b.op("Add", cap, b.ints(1))
    keep = b.op("Less", pos, cap)
    slot = b.op("Add", b.op("Mul", flat_e, cap1), b.op("Where", keep, pos, cap))  # [kT]

    # dispatch (a Gather of the tokens by slot: no float buffer that constant folding would store), experts,
    # combine
    rows = b.ints(E * (c + 1)) if isinstance(tokens, int) else b.op("Mul", cap1, b.ints(E))
    # a token count that may be 0 (symbolic, or 0): gather from the tokens after a zero row, by index + 1, so
    # that empty and dropped slots read a row that exists; a static count above 0: from the tokens, by index
    pad = 0 if isinstance(tokens, int) and tokens > 0 else 1
    if isinstance(tokens, int):
        token_of = b.const(np.tile(np.arange(pad, tokens + pad, dtype=np.int64), k))  # [kT]: assignment -> row
    else:
        token_of = b.op("Tile", b.op("Range", b.const(np.asarray(1, np.int64)),
                                     b.op("Add", b.op("Squeeze", T, b.ints(0)), b.const(np.asarray(1, np.int64))),
                                     b.const(np.asarray(1, np.int64))), b.ints(k))
    zero_tok = b.const(np.asarray(0, np.int64))
    src = b.op("ScatterND", b.op("ConstantOfShape", rows, value=np.zeros(1, np.int64)),
               b.op("Unsqueeze", slot, b.ints(1)), b.op("Where", keep, token_of, zero_tok))
    rows_of = b.op("Pad", x2, b.ints(1, 0, 0, 0)) if pad else x2  # with pad: [T + 1, d], row 0 zeros
    buf = b.op("Gather", rows_of, src, axis=0)  # [E (C + 1), d]; empty and dropped slots: row 0, never used
    buf3 = b.op("Reshape", buf, b.op("Concat", b.ints(E), cap1, dd, axis=0))
    h = b.op("Relu", b.op("Add", b.op("MatMul", buf3, node.inputs[W1]), b.op("Unsqueeze", node.inputs[B1], b.ints(1))))
    out3 = b.op("Add", b.op("MatMul", h, node.inputs[W2]), b.op("Unsqueeze", node.inputs[B2], b.ints(1)))
    out = b.op("Reshape", out3, b.op("Concat", rows, dd, axis=0))
    picked = b.op("Gather", out, slot, axis=0)  # [kT, d]
    wflat = b.op("Mul", b.op("Reshape", b.op("Transpose", w, perm=[1, 0]), b.ints(-1)), b.op("Cast", keep, to=F32))
    weighted = b.op("Mul", picked, b.op("Unsqueeze", wflat, b.ints(1)))
    # allowzero: T = 0 is no token, not "copy the input's dimension" (Reshape's 0)
    y2 = b.op("ReduceSum", b.op("Reshape", weighted, b.op("Concat", b.ints(k), T, dd, axis=0), allowzero=1),
              b.ints(0), keepdims=0)
    y = b.op("Reshape", y2, b.op("Shape", x), allowzero=1) if rank != 2 else y2

    counts = b.op("ReduceSum", onehot, b.ints(0), keepdims=0)  # [E]
    dropped = b.op("ReduceSum", b.op("Cast", b.op("Not", keep), to=I64), keepdims=0)
    dense = b.op("ReduceSum", b.op("Mul", b.op("Cast", b.op("Equal", b.op("Unsqueeze", topi, b.ints(2)), arange_e),
                                               to=F32), b.op("Unsqueeze", w, b.ints(2))), b.ints(1), keepdims=0)
    importance_loss = _cv_squared(b, b.op("ReduceSum", dense, b.ints(0), keepdims=0), dt)
    if gate == "topk":
        if std is not None and k < E:
            top_k1, _ = b.op("TopK", noisy, b.ints(k + 1), outputs=2, axis=1, largest=1, sorted=1)
            thr_in = b.op("Slice", top_k1, b.ints(k), b.ints(k + 1), b.ints(1))
            thr_out = b.op("Slice", top_k1, b.ints(k - 1), b.ints(k), b.ints(1))
            is_in = b.op("Greater", noisy, thr_in)

            def cdf(thr):
                z = b.op("Div", b.op("Div", b.op("Sub", clean, thr), std), np.asarray(math.sqrt(2.0), dt))
                if F32 == int(DataType.DOUBLE):  # ONNX Runtime has no double Erf: the CDF in float32
                    erf = b.op("Cast", b.op("Erf", b.op("Cast", z, to=int(DataType.FLOAT))), to=F32)
                else:
                    erf = b.op("Erf", z)
                return b.op("Mul", b.op("Add", erf, np.asarray(1.0, dt)), np.asarray(0.5, dt))
            p = b.op("Where", is_in, cdf(thr_in), cdf(thr_out))
            load_loss = _cv_squared(b, b.op("ReduceSum", p, b.ints(0), keepdims=0), dt)
        else:
            load_loss = _cv_squared(b, b.op("Cast", counts, to=F32), dt)
    else:
        first = b.op("Slice", topi, b.ints(0), b.ints(1), b.ints(1))  # [T, 1]
        f = _token_mean(b, b.op("Cast", b.op("Equal", first, arange_e), to=F32), T, F32)
        pm = _token_mean(b, probs, T, F32)
        load_loss = b.op("Mul", b.op("ReduceSum", b.op("Mul", f, pm), keepdims=0), np.asarray(float(E), dt))
    return [y, importance_loss, load_loss, counts, dropped]


register_lowering("graphmill", "MoE", lower_moe, min_opset=MOE_MIN_OPSET)
