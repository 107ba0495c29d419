"""Normalization ops for the torch backend: BatchNormalization, InstanceNormalization, LayerNormalization,
GroupNormalization, RMSNormalization, LpNormalization, MeanVarianceNormalization, LRN."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from graphmill.ir.graph import depends_on, recorded_torch_roles

from .common import check, norm_axis, op


def _stash(X: torch.Tensor, a: dict, *, float64_stays: bool = True) -> torch.Tensor:
    """X in the precision ONNX's ``stash_type`` asks the statistics to be computed in (1: float32, the default;
    11: float64). ``float64_stays``: a float64 input keeps float64 whatever ``stash_type`` says, as ONNX Runtime's
    LayerNormalization and RMSNormalization kernels do; its GroupNormalization, like the onnx wheel's reference,
    follows ``stash_type`` (float32 statistics of a float64 input: an outside check)."""
    if (float64_stays and X.dtype == torch.float64) or a.get("stash_type", 1) == 11:
        return X.double()
    return X.float()


@op("BatchNormalization")
def _bn(rt, a, x):
    X, scale, bias, mean, var = x[:5]
    eps = a.get("epsilon", 1e-5)
    if X.numel() == 0:  # F.batch_norm indexes channel 0 (C = 0: an IndexError; a fuzzer): nothing to normalize
        return X.clone()
    if a.get("training_mode", 0):  # a weight's own statistics (_check_bn: on a weight, the running ones unread), as
        # the onnx reference computes them: a weight-standardized conv (timm's NFNet, BiT) is F.batch_norm of it
        dims = [0] + list(range(2, X.dim()))
        shape = [1, -1] + [1] * (X.dim() - 2)
        batch_mean, batch_var = X.mean(dims), X.var(dims, unbiased=False)
        y = (X - batch_mean.reshape(shape)) * torch.rsqrt(batch_var.reshape(shape) + eps) * scale.reshape(shape) \
            + bias.reshape(shape)
        momentum = a.get("momentum", 0.9)
        return y, mean * momentum + batch_mean * (1 - momentum), var * momentum + batch_var * (1 - momentum)
    if mean.requires_grad or var.requires_grad:
        # statistics computed from the data (torch's BatchNorm without running statistics exports its batch
        # mean and variance as the inputs): the gradient flows through them, which F.batch_norm refuses
        shape = [1, -1] + [1] * (X.dim() - 2)
        return (X - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + eps) * scale.reshape(shape) \
            + bias.reshape(shape)
    return F.batch_norm(X, mean, var, scale, bias, False, 0.0, eps)


@check("BatchNormalization")
def _check_bn(node, opset):
    extra = [o for o in node.outputs[1:] if o is not None]
    training = bool(node.attr("training_mode", 0)) or opset < 14 and bool(extra)  # before 14, the outputs say it
    if training or extra:
        # a weight normalized by its own statistics runs (a weight-standardized conv, timm's NFNet: to_torch refused
        # it, advising .eval() on a module in eval already; an outside check). On the data it is a module exported
        # in train mode, whose BatchNorm would never use running statistics; and running statistics the graph reads
        # would be training BatchNorm inside the model
        x = node.inputs[0]
        on_data = x is None or depends_on(x, lambda v: v.is_graph_input and not v.is_initializer)
        if on_data or not training or opset < 14 or len(extra) != 2 or any(o.num_uses or o.is_graph_output
                                                                           for o in extra):  # (ORT needs 3 outputs)
            return ("training-mode BatchNormalization (running-statistics outputs) is not supported (from torch: "
                    "call .eval() on the module before torch.onnx.export; training=TrainingMode.PRESERVE then keeps "
                    "BatchNorm in its inference form)")
        if not recorded_torch_roles(node.graph.root)[0]:  # a file: the weight reaches the BatchNorm as its data, and
            # its gain through a Mul, where the weight rules find no weight slot: both were left untrained (a review)
            return ("BatchNormalization in training mode on a weight (weight standardization) runs only in a graph "
                    "from graphmill.from_torch, which records which tensors train; import the module with it")
    if opset < 7 and node.attr("spatial", 1) == 0:
        return "BatchNormalization with spatial=0 is not supported"
    return None


@op("InstanceNormalization")
def _instnorm(rt, a, x):
    if x[0].numel() == 0:  # torch indexes channel 0 (as BatchNormalization did): nothing to normalize
        return x[0].clone()
    return F.instance_norm(x[0], weight=x[1], bias=x[2], eps=a.get("epsilon", 1e-5))


@op("LayerNormalization")
def _layernorm(rt, a, x):
    X, scale = x[0], x[1]
    B = x[2] if len(x) > 2 else None
    axis = norm_axis(a.get("axis", -1), X.dim())
    dims = list(range(axis, X.dim()))
    comp = _stash(X, a)
    mean = comp.mean(dims, keepdim=True)
    var = ((comp - mean) ** 2).mean(dims, keepdim=True)
    inv = torch.rsqrt(var + a.get("epsilon", 1e-5))
    y = ((comp - mean) * inv).to(X.dtype) * scale
    if B is not None:
        y = y + B
    return y, mean, inv


@op("GroupNormalization")
def _groupnorm(rt, a, x):
    X, scale, bias = x
    if X.numel() == 0:
        return X.clone()
    groups = a["num_groups"]
    # stash_type (opset 21) defaults to float32 statistics; opset 18's function body computes in X's own type
    comp = _stash(X, a, float64_stays=rt.opset < 21).reshape(X.shape[0], groups, -1)
    mean = comp.mean(-1, keepdim=True)
    var = ((comp - mean) ** 2).mean(-1, keepdim=True)
    y = ((comp - mean) * torch.rsqrt(var + a.get("epsilon", 1e-5))).reshape(X.shape).to(X.dtype)
    channels = X.shape[1]
    if scale.numel() != channels:  # opset 18: a scale and a bias per group, repeated over its channels
        scale = scale.repeat_interleave(channels // groups)
        bias = bias.repeat_interleave(channels // groups)
    shape = [1, channels] + [1] * (X.dim() - 2)
    return y * scale.reshape(shape) + bias.reshape(shape)


@op("RMSNormalization")
def _rmsnorm(rt, a, x):
    X, scale = x
    axis = norm_axis(a.get("axis", -1), X.dim())
    comp = _stash(X, a)
    ms = (comp * comp).mean(list(range(axis, X.dim())), keepdim=True)
    return (comp * torch.rsqrt(ms + a.get("epsilon", 1e-5))).to(X.dtype) * scale


@op("LpNormalization")
def _lpnorm(rt, a, x):
    X = x[0]
    axis = norm_axis(a.get("axis", -1), X.dim())
    norm = torch.linalg.vector_norm(X, ord=a.get("p", 2), dim=axis, keepdim=True)
    # a zero norm gives 0, not 0/0 (onnx's reference and ONNX Runtime)
    return torch.where(norm == 0, torch.zeros_like(X), X / torch.where(norm == 0, torch.ones_like(norm), norm))


@op("MeanVarianceNormalization")
def _mvn(rt, a, x):
    """ONNX's function body, (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9) over ``axes``, with the variance as
    E[(X - E[X])^2]: equal, without the cancellation that put float32 results 7e-4 from the exact ones on two
    elements (ONNX Runtime's are within 5e-6)."""
    X = x[0]
    axes = [norm_axis(v, X.dim()) for v in (a.get("axes") or [0, 2, 3])]
    comp = X if X.dtype == torch.float64 else X.float()  # float16's 1e-9 is 0: a zero variance gave NaN
    centered = comp - comp.mean(axes, keepdim=True)
    return (centered / (torch.sqrt((centered * centered).mean(axes, keepdim=True)) + 1e-9)).to(X.dtype)


@op("LRN")
def _lrn(rt, a, x):
    X = x[0]
    if X.numel() == 0:  # nothing to normalize (the reshape's -1 had no size to infer; a review)
        return X.clone()
    size = a["size"]
    alpha, beta, bias = a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
    sq = (X * X).reshape(X.shape[0], 1, X.shape[1], -1)
    before = (size - 1) // 2
    sq = F.pad(sq, (0, 0, before, size - 1 - before))
    s = F.avg_pool2d(sq, (size, 1), stride=1).reshape(X.shape) * size
    return X / (bias + alpha / size * s) ** beta
