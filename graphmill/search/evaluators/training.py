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

import time
from dataclasses import dataclass, field
from typing import Callable

from graphmill.ir import Graph, UserInputError


def digits_data(size: int, channels: int = 1, seed: int = 0):
    """``graphmill.backends.torch.training.digits_data`` (the shipped task), imported on first use: importing
    the evaluators (in every worker process) does not import torch."""
    from graphmill.backends.torch.training import digits_data as data

    return data(size, channels, seed)


def calibrate_batchnorm(graph: Graph, x, *, eps: float = 0.0) -> int:
    """``graphmill.backends.torch.training.calibrate_batchnorm``, imported on first use (see ``digits_data``)."""
    from graphmill.backends.torch.training import calibrate_batchnorm as calibrate

    return calibrate(graph, x, eps=eps)


def train_graph(graph: Graph, *, steps: int = 100, batch: int = 64, lr: float = 3e-3, seed: int = 0,
                threads: int = 1, calibrate: int = 128) -> dict[str, float]:
    """Train ``graph`` (input ``[N, C, S, S]``, 10 logits) on digits; its weights become the trained ones.

    ``calibrate``: BatchNormalization statistics are first re-estimated on that many training images
    (``calibrate_batchnorm``; 0 keeps the graph's). The steps are the torch backend's training loop
    (``graphmill.backends.torch.training.train_classifier``, one plain fixed-size stage).

    Returns ``{"accuracy", "loss", "train_seconds"}``: held-out accuracy, the last training batch's loss
    and the wall time of calibration and training.
    """
    import torch

    from graphmill.backends.torch import to_torch
    from graphmill.backends.torch.training import Stage, train_classifier

    shape = graph.inputs[0].shape
    if shape is None or len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[-1], int):
        raise UserInputError(f"{graph.name}: the digits evaluator needs an input [N, C, S, S] with fixed C and S, "
                             f"got {shape}")
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    size = int(shape[-1])
    data = digits_data(size, int(shape[1]), seed)
    t0 = time.perf_counter()
    if calibrate:
        calibrate_batchnorm(graph, data[0][:calibrate])
    model = to_torch(graph)
    seconds = time.perf_counter() - t0
    run = train_classifier(model, lambda _size: data, [Stage(size=size, steps=steps)], batch=batch, lr=lr,
                           seed=seed, eval_size=size, log_every=steps)
    if run.interrupted:  # the loop caught Ctrl-C: pass it on, or the search records a failed trial and goes on
        raise KeyboardInterrupt
    model.export_weights(graph)
    return {"accuracy": run.history[-1]["accuracy"], "loss": run.last_loss,
            "train_seconds": seconds + run.train_seconds}


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
