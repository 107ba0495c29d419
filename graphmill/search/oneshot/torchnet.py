"""The supernet in torch: one ``nn.Module`` holding the shared weights at full shape, run as any child.

Training uses this module rather than ``graphmill.backends.torch.to_torch`` of each child's graph: the four
children of a sandwich step would otherwise each need a graph built and lowered per step, and their
parameters would be copies, not the shared tensors. ``SupernetModule(spec, weights)`` takes the same named
weights as the supernet graph (``weights.py``), ``forward(x, config)`` slices them exactly as
``graph.child`` does (``child_slices``), and ``weights()`` hands them back by name, so the module and the
graph are two views of one set of weights; tests check that ONNX Runtime on an extracted child's ONNX file
gives this module's output for that child.

BatchNormalization: in training mode it normalizes with the batch's statistics (as BigNAS trains, every child
seeing its own); in eval mode with the stored statistics sliced to the child (the graph's).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .space import SupernetSpec
from .weights import child_slices, is_statistic, layer_plan


def _key(name: str) -> str:
    return name.replace(".", "_")


class SupernetModule(nn.Module):
    """The shared weights as torch Parameters (statistics as buffers); ``forward(x, config)`` runs a child."""

    def __init__(self, spec: SupernetSpec, weights: Mapping[str, np.ndarray]) -> None:
        super().__init__()
        self.spec = spec
        self.names = list(weights)
        self.params = nn.ParameterDict()
        for n, a in weights.items():
            t = torch.tensor(np.asarray(a, dtype=np.float32))
            if is_statistic(n):
                self.register_buffer(_key(n), t)
            else:
                self.params[_key(n)] = nn.Parameter(t)

    def tensor(self, name: str) -> torch.Tensor:
        return getattr(self, _key(name)) if is_statistic(name) else self.params[_key(name)]

    def weights(self) -> dict[str, np.ndarray]:
        """Every shared weight and statistic by name, as numpy arrays (for the supernet graph)."""
        return {n: self.tensor(n).detach().cpu().numpy().copy() for n in self.names}

    def decay_parameters(self) -> list[torch.Tensor]:
        """The convolution and classifier weights (weight decay's target; not BN scales and shifts, not biases)."""
        return [self.params[_key(n)] for n in self.names if n.endswith(".w")]

    def forward(self, x: torch.Tensor, config: Mapping[str, Any], *, dropout: float = 0.0) -> torch.Tensor:
        """Logits of child ``config`` (canonical) on ``x`` (already at the child's resolution)."""
        return self._run(x, config, batch_stats=self.training, dropout=dropout if self.training else 0.0)

    @torch.no_grad()
    def batch_statistics(self, x: torch.Tensor, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Each BatchNormalization's input mean and (biased) variance over ``x`` when child ``config`` runs with
        batch statistics: what ``calibrate_batchnorm`` computes on the child's graph, in one pass."""
        stats: dict[str, np.ndarray] = {}
        self._run(x, config, batch_stats=True, stats=stats)
        return stats

    def _run(self, x: torch.Tensor, config: Mapping[str, Any], *, batch_stats: bool, dropout: float = 0.0,
             stats: dict | None = None) -> torch.Tensor:
        spec = self.spec
        sl = child_slices(spec, config)

        def w(name: str) -> torch.Tensor:
            return self.tensor(name)[sl[name]]

        def conv_bn(y, prefix: str, k: int, stride: int, groups: int, relu: bool):
            y = F.conv2d(y, w(f"{prefix}.w"), None, stride, k // 2, 1, groups)
            if stats is not None:
                y = _normalize_recording(y, w(f"{prefix}.bn.scale"), w(f"{prefix}.bn.bias"), spec.eps, stats, prefix)
            else:
                mean, var = (None, None) if batch_stats else (w(f"{prefix}.bn.mean"), w(f"{prefix}.bn.var"))
                y = F.batch_norm(y, mean, var, w(f"{prefix}.bn.scale"), w(f"{prefix}.bn.bias"), batch_stats, 0.0,
                                 spec.eps)
            return F.relu(y) if relu else y

        y = conv_bn(x, "stem", 3, spec.stem_stride, 1, True)
        for L in layer_plan(spec, config):
            inp = y
            y = conv_bn(y, f"{L.prefix}.expand", 1, 1, 1, True)
            y = conv_bn(y, f"{L.prefix}.dw", L.kernel, L.stride, L.hidden, True)
            y = conv_bn(y, f"{L.prefix}.project", 1, 1, 1, False)
            if L.residual:
                y = y + inp
        y = conv_bn(y, "head", 1, 1, 1, True)
        y = y.mean((2, 3))
        if dropout:
            y = F.dropout(y, dropout, True)
        return F.linear(y, w("fc.w"), w("fc.b"))

    @torch.no_grad()
    def set_statistics(self, stats: Mapping[str, np.ndarray]) -> None:
        """Write statistics (possibly of a child: the leading channels) into the full buffers."""
        for n, a in stats.items():
            buf = self.tensor(n)
            buf[: len(a)] = torch.as_tensor(a)


def _normalize_recording(y: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float, stats: dict,
                         prefix: str) -> torch.Tensor:
    """Batch-statistics BatchNormalization of ``y`` that also records the batch's mean and biased variance in
    ``stats``. Why through running buffers at momentum 1: the fused kernel computes the statistics it normalizes
    with, where ``y.mean`` and ``y.var`` beside it cost three times the normalization (the screen of AutoHAS and
    every selection recalibrate many children). The buffers hold the unbiased variance; the biased one is
    ``var * (n - 1) / n`` (n values per channel), exact but for rounding."""
    n = y.numel() // y.shape[1]  # >= 2: batch statistics of one value per channel are refused by torch
    mean, var = torch.zeros(y.shape[1]), torch.ones(y.shape[1])
    y = F.batch_norm(y, mean, var, scale, bias, True, 1.0, eps)
    stats[f"{prefix}.bn.mean"] = mean.numpy()
    stats[f"{prefix}.bn.var"] = (var * ((n - 1) / n)).numpy()
    return y
