"""Accuracy from a short training run through graphmill's torch backend, on scikit-learn's digits.

The proxy task: the 1,797 8x8 digits of ``sklearn.datasets.load_digits`` (10 classes, shipped with
scikit-learn, no download), upsampled bilinearly to the network's input size, normalized, split 4/5
train and 1/5 held out (a seeded permutation). ``train_graph`` lowers an ``ir.Graph`` with
``graphmill.backends.torch.to_torch``, trains it with Adam for a fixed number of steps and measures
accuracy on the held-out fifth; the trained weights are written back into the graph (``export_weights``),
so the graph saved as ONNX predicts as it was measured. Everything is seeded: the same graph, steps and
seed give the same accuracy in every process (with the same torch thread count).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from graphmill.ir import Graph, UserInputError


@functools.lru_cache(maxsize=8)
def digits_data(size: int, channels: int = 1, seed: int = 0):
    """``(x_train, y_train, x_test, y_test)`` torch tensors: digits resized to ``size`` x ``size``, repeated
    over ``channels``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is in the test extra
        raise UserInputError("the training evaluator needs scikit-learn (pip install scikit-learn)") from None
    import torch
    import torch.nn.functional as F

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).repeat(1, channels, 1, 1)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = len(y) // 5
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def calibrate_batchnorm(graph: Graph, x, *, eps: float = 0.0) -> int:
    """Set every BatchNormalization's mean and variance to its input's statistics on ``x``, in graph order.

    The torch backend runs BatchNormalization as in inference (the graph's statistics, not the batch's), so
    a candidate trains with whatever scale its random weights give: past a few layers on a small proxy input
    (stages at 1x1, where a k x k kernel sees one tap) the signal vanishes and training stalls at chance.
    Re-estimating the statistics on training data first (BN recalibration, as one-shot NAS does) starts
    every candidate at unit scale. Each BatchNormalization is calibrated after the ones before it (one
    forward pass each). Returns how many were calibrated; the graph's initializers hold the statistics.
    """
    import numpy as np
    import torch

    from graphmill.backends.torch import to_torch
    from graphmill.ir import Tensor, topological_order

    def own_const(v) -> bool:
        return v is not None and v.is_initializer and v.num_uses == 1
    bns = [n for n in topological_order(graph) if n.op_type == "BatchNormalization" and len(n.inputs) == 5
           and own_const(n.inputs[3]) and own_const(n.inputs[4])]
    if not bns:
        return 0
    probe = graph.copy()
    values = probe.value_map()
    first_extra = len(probe.outputs)
    probe.outputs.extend(values[n.inputs[0].name] for n in bns)
    module = to_torch(probe)
    slot = {vname: attr for attr, vname in module.buffer_names.items()}
    module.eval()
    with torch.no_grad():
        for i, bn in enumerate(bns):
            t = module(x)[first_extra + i]
            dims = [d for d in range(t.dim()) if d != 1]
            mean, var = t.mean(dims), t.var(dims, unbiased=False) + eps
            for v, stat in ((bn.inputs[3], mean), (bn.inputs[4], var)):
                getattr(module, slot[v.name]).copy_(stat)
                arr = stat.numpy().astype(v.const.numpy().dtype)
                v.const = Tensor(np.ascontiguousarray(arr), name=v.const.name or v.name)
    return len(bns)


def _first(out: Any):
    return out[0] if isinstance(out, (tuple, list)) else out


def train_graph(graph: Graph, *, steps: int = 100, batch: int = 64, lr: float = 3e-3, seed: int = 0,
                threads: int = 1, calibrate: int = 128) -> dict[str, float]:
    """Train ``graph`` (input ``[N, C, S, S]``, 10 logits) on digits; its weights become the trained ones.

    ``calibrate``: BatchNormalization statistics are first re-estimated on that many training images
    (``calibrate_batchnorm``; 0 keeps the graph's).

    Returns ``{"accuracy", "loss", "train_seconds"}``: held-out accuracy, the last training batch's loss
    and the wall time of calibration and training.
    """
    import torch

    from graphmill.backends.torch import to_torch

    shape = graph.inputs[0].shape
    if shape is None or len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[-1], int):
        raise UserInputError(f"{graph.name}: the digits evaluator needs an input [N, C, S, S] with fixed C and S, "
                             f"got {shape}")
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    xtr, ytr, xte, yte = digits_data(int(shape[-1]), int(shape[1]), seed)
    t0 = time.perf_counter()
    if calibrate:
        calibrate_batchnorm(graph, xtr[:calibrate])
    model = to_torch(graph)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        idx = torch.randint(0, len(ytr), (batch,), generator=gen)
        loss = torch.nn.functional.cross_entropy(_first(model(xtr[idx])), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(yte), 512):
            correct += int((_first(model(xte[i:i + 512])).argmax(1) == yte[i:i + 512]).sum())
    model.export_weights(graph)
    return {"accuracy": correct / len(yte), "loss": float(loss.detach()), "train_seconds": seconds}


@dataclass
class AccuracyEvaluator:
    """``evaluate(config)``: build the proxy network of ``config`` with ``builder``, train it, reward = accuracy."""

    builder: Callable[[dict], Graph]
    steps: int = 100
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0
    threads: int = 1
    extra: dict = field(default_factory=dict)

    def __call__(self, config: dict) -> dict[str, float]:
        graph = self.builder(config)
        m = train_graph(graph, steps=self.steps, batch=self.batch, lr=self.lr, seed=self.seed, threads=self.threads)
        return {"reward": m["accuracy"], **m}
