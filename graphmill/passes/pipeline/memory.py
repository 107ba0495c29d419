"""Memory of one pipeline stage during a training step, with and without re-materialization (GPipe, §2.3).

Per stage, in bytes:

* ``weights``: the constant tensors its nodes read (each counted once per stage);
* ``gradients``: one gradient per weight (the same bytes);
* ``optimizer``: the optimizer's state per weight: Adam 2x (first and second moments), momentum SGD 1x,
  plain SGD 0x;
* ``activations_remat``: with re-materialization only the stage's input activations of all ``M``
  micro-batches are kept, plus one micro-batch's internal activations while its forward pass is recomputed
  during the backward pass;
* ``activations``: without it, every micro-batch's internal activations and inputs are kept until its
  backward pass (GPipe's schedule runs all forwards first);
* ``activations_1f1b``: 1F1B without re-materialization keeps at most ``min(K - s, M)`` micro-batches in
  flight on stage ``s``.

Internal activations are the outputs of the stage's nodes; the stage's input is the bytes crossing the cut
before it (the model's inputs for stage 0).
"""

from __future__ import annotations

import numpy as np

OPTIMIZER_STATE = {"adam": 2.0, "momentum": 1.0, "sgd": 0.0}


def weight_factor(optimizer: str) -> float:
    """Bytes resident per weight byte: the weight, its gradient and the optimizer's state."""
    return 2.0 + OPTIMIZER_STATE[optimizer]


def stage_memory(weights: float, inputs_micro: float, internal_micro: float, *, microbatches: int, stages: int,
                 index: int, optimizer: str) -> dict:
    """The memory figures of one stage (see the module docstring); inputs and internals are per micro-batch."""
    m = microbatches
    state = OPTIMIZER_STATE[optimizer] * weights
    remat = m * inputs_micro + internal_micro
    full = m * (inputs_micro + internal_micro)
    in_flight = min(stages - index, m)
    f1b = in_flight * (inputs_micro + internal_micro)
    resident = 2 * weights + state
    return {"weights": int(weights), "gradients": int(weights), "optimizer": int(state),
            "activations_remat": int(remat), "activations": int(full), "activations_1f1b": int(f1b),
            "total_remat": int(resident + remat), "total": int(resident + full),
            "input_micro": int(inputs_micro), "internal_micro": int(internal_micro)}


def memory_vector(wprefix: np.ndarray, aprefix: np.ndarray, cut: np.ndarray, *, microbatches: int, optimizer: str,
                  remat: bool):
    """``f(i, j)`` giving the memory of stages [i, j) for a vector of ``i``: the model the partitioner caps.

    Weights come from a prefix sum that counts a weight shared by several nodes at its first reader only, so
    a stage holding only later readers is under-counted; the pass re-checks the exact figures afterwards.
    """
    wf = weight_factor(optimizer)
    m = microbatches

    def f(i: np.ndarray, j: int) -> np.ndarray:
        internal = aprefix[j] - aprefix[i]
        act = m * cut[i] + (internal if remat else m * internal)
        return wf * (wprefix[j] - wprefix[i]) + act
    return f
