"""Normalization ops for the torch backend: BatchNormalization, InstanceNormalization, LayerNormalization, LRN."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import check, norm_axis, op


@op("BatchNormalization")
def _bn(rt, a, x):
    X, scale, bias, mean, var = x[:5]
    eps = a.get("epsilon", 1e-5)
    if X.numel() == 0:  # F.batch_norm indexes channel 0 (C = 0: an IndexError; a fuzzer): nothing to normalize
        return X.clone()
    if mean.requires_grad or var.requires_grad:
        # statistics computed from the data (torch's BatchNorm without running statistics exports its batch
        # mean and variance as the inputs): the gradient flows through them, which F.batch_norm refuses
        shape = [1, -1] + [1] * (X.dim() - 2)
        return (X - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + eps) * scale.reshape(shape) \
            + bias.reshape(shape)
    return F.batch_norm(X, mean, var, scale, bias, False, 0.0, eps)


@check("BatchNormalization")
def _check_bn(node, opset):
    if node.attr("training_mode", 0) or sum(1 for o in node.outputs if o is not None) > 1:
        return ("training-mode BatchNormalization (running-statistics outputs) is not supported (from torch: call "
                ".eval() on the module before torch.onnx.export; training=TrainingMode.PRESERVE then keeps BatchNorm "
                "in its inference form)")
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
    if X.numel() == 0:  # nothing to normalize (the reshape's -1 had no size to infer; a review)
        return X.clone()
    size = a["size"]
    alpha, beta, bias = a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
    sq = (X * X).reshape(X.shape[0], 1, X.shape[1], -1)
    before = (size - 1) // 2
    sq = F.pad(sq, (0, 0, before, size - 1 - before))
    s = F.avg_pool2d(sq, (size, 1), stride=1).reshape(X.shape) * size
    return X / (bias + alpha / size * s) ** beta
