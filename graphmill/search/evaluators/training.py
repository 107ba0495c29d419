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
    """``(x_train, y_train, x_test, y_test)`` torch tensors: digits resized to ``size`` x ``size``, ``channels`` copies."""
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


def _first(out: Any):
    return out[0] if isinstance(out, (tuple, list)) else out


def train_graph(graph: Graph, *, steps: int = 100, batch: int = 64, lr: float = 3e-3, seed: int = 0,
                threads: int = 1) -> dict[str, float]:
    """Train ``graph`` (input ``[N, C, S, S]``, 10 logits) on digits; its weights become the trained ones.

    Returns ``{"accuracy", "loss", "train_seconds"}``: held-out accuracy, the last training batch's loss
    and the wall time of the training loop.
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
    model = to_torch(graph)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    t0 = time.perf_counter()
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
