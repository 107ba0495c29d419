"""``graphmill::RelativeAttention`` in torch (semantics: ``graphmill/ir/ops/attention.py``), trainable: the bias
table is a weight (``weights.WEIGHT_SLOTS``) and its gradient is the scatter-add of the logits' gradient over
each relative offset, which autograd derives from the indexing.

``relative_attention`` is public so that models written directly in torch run the very function the graph's
torch lowering runs; the arithmetic follows the ONNX lowering (``passes/lowering/relative_attention.py``) op
for op, so the two agree to float rounding.
"""

from __future__ import annotations

import math

import torch

from graphmill.ir.ops.attention import relative_position_index

from .common import op

_INDEX: dict[tuple[int, int, torch.device], torch.Tensor] = {}


def position_index(height: int, width: int, device: torch.device) -> torch.Tensor:
    """The [L, L] relative-position index as a long tensor on ``device`` (built once per size and device)."""
    key = (height, width, device)
    if key not in _INDEX:
        _INDEX[key] = torch.from_numpy(relative_position_index(height, width)).to(device)
    return _INDEX[key]


def relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor, *, height: int,
                       width: int, scale: float | None = None) -> torch.Tensor:
    """``softmax(scale Q K^T + table[index].permute(2, 0, 1)) V`` over a ``height x width`` map."""
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = torch.matmul(q, k.transpose(-1, -2)) * s
    bias = table[position_index(height, width, table.device)].permute(2, 0, 1)  # [heads, L, L]
    return torch.matmul(torch.softmax(logits + bias, dim=-1), v)


@op("graphmill::RelativeAttention")
def _relative_attention(rt, a, x):
    return relative_attention(x[0], x[1], x[2], x[3], height=int(a["height"]), width=int(a["width"]),
                              scale=a.get("scale"))
