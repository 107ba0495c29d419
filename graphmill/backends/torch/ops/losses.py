"""Loss ops for the torch backend: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (a training graph's
loss, exported by torch as these ops, trains through torch's own nll_loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import CHECKS, op, refuse_other_values

#: torch's ignore_index when ONNX gives none: a class index no valid target can have (ONNX indexes from 0)
_NO_IGNORED_CLASS = -100


def _nll(log_prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, a: dict) -> torch.Tensor:
    """ONNX's loss over ``log_prob`` [N, C, d1...]: the weighted mean (sum of weights of the counted targets as the
    divisor), the sum or none, targets equal to ``ignore_index`` counted as weight 0, as torch's nll_loss."""
    return F.nll_loss(log_prob, target.to(torch.int64), weight=weight, reduction=a.get("reduction", "mean"),
                      ignore_index=a.get("ignore_index", _NO_IGNORED_CLASS))


CHECKS["NegativeLogLikelihoodLoss"] = CHECKS["SoftmaxCrossEntropyLoss"] = refuse_other_values(
    "reduction", ("none", "sum", "mean"), "mean")  # 'avg' failed at run time with torch's own message


@op("NegativeLogLikelihoodLoss")
def _nll_loss(rt, a, x):
    weight = x[2] if len(x) > 2 else None
    return _nll(x[0], x[1], weight, a)


@op("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(rt, a, x):
    weight = x[2] if len(x) > 2 else None
    log_prob = torch.log_softmax(x[0], dim=1)
    loss = _nll(log_prob, x[1], weight, a)
    return (loss, log_prob) if rt.current_outputs > 1 else loss
