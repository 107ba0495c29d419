"""Memory of one pipeline stage during a training step, with and without re-materialization (GPipe, §2.3).

Per stage, in bytes:

* ``weights``: the constant tensors its nodes read (each counted once per stage);
* ``gradients``: one gradient per trained weight (the same bytes): the floating-point ones but BatchNorm's
  running statistics (buffers, which no optimizer sees); integer constants (shapes) have none;
* ``optimizer``: the optimizer's state per trained weight: Adam 2x (first and second moments), momentum SGD 1x,
  plain SGD 0x;
* ``activations_remat``: with re-materialization only the stage's input activations of all ``M``
  micro-batches are kept, plus one micro-batch's internal activations while its forward pass is recomputed
  during the backward pass;
* ``activations``: without it, every micro-batch's internal activations and inputs are kept until its
  backward pass (GPipe's schedule runs all forwards first);
* ``activations_1f1b``: 1F1B without re-materialization keeps at most ``min(K - s, M)`` micro-batches in
  flight on stage ``s``; ``activations_1f1b_remat``: with it, their inputs plus one micro-batch's internals.

A stage's ``memory`` (what a cap holds it to) is its resident weights, gradients and optimizer state plus the
activations of the schedule it runs and whether it re-materializes: the same figure the simulated schedule's
peak gives (``backends/simulator/pipeline.py``, from the micro-batches it actually holds).

Internal activations are the outputs of the stage's nodes; the stage's input is the bytes crossing the cut
before it (the model's inputs for stage 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

OPTIMIZER_STATE = {"adam": 2.0, "momentum": 1.0, "sgd": 0.0}


def trained_factor(optimizer: str) -> float:
    """Bytes resident per trained weight byte beyond the weight itself: its gradient and the optimizer's state."""
    return 1.0 + OPTIMIZER_STATE[optimizer]


SCHEDULES = ("gpipe", "1f1b")


def in_flight(schedule: str, microbatches: int, stages: int, index: int) -> int:
    """Micro-batches whose activations stage ``index`` holds at once: all M under GPipe (every forward before
    any backward), at most ``min(K - s, M)`` under 1F1B (its warm-up forwards, then one forward per backward)."""
    return microbatches if schedule == "gpipe" else min(stages - index, microbatches)


def activations(held: Any, inputs_micro: Any, internal_micro: Any, remat: bool) -> Any:
    """Activation bytes of a stage holding ``held`` micro-batches: their stage inputs, and their internal
    activations too unless re-materialized (then one micro-batch's, while its forward is recomputed). Numbers or
    numpy arrays: the planner's vector over cut points, a stage's figures and the simulated peak are this one."""
    return held * inputs_micro + (internal_micro if remat else held * internal_micro)


def stage_memory(weights: float, inputs_micro: float, internal_micro: float, *, microbatches: int, stages: int,
                 index: int, optimizer: str, remat: bool = True, schedule: str = "gpipe",
                 trained: float | None = None) -> dict:
    """The memory figures of one stage (see the module docstring); inputs and internals are per micro-batch;
    ``trained``: the bytes of its weights that train (default: all). ``memory``: the figure of ``schedule`` with
    or without ``remat``."""
    m = microbatches
    trained = weights if trained is None else trained
    state = OPTIMIZER_STATE[optimizer] * trained
    n = in_flight("1f1b", m, stages, index)
    remat_acts, full = (activations(m, inputs_micro, internal_micro, r) for r in (True, False))
    f1b_remat, f1b = (activations(n, inputs_micro, internal_micro, r) for r in (True, False))
    resident = weights + trained + state
    acts = activations(in_flight(schedule, m, stages, index), inputs_micro, internal_micro, remat)
    return {"weights": int(weights), "gradients": int(trained), "optimizer": int(state),
            "activations_remat": int(remat_acts), "activations": int(full), "activations_1f1b": int(f1b),
            "activations_1f1b_remat": int(f1b_remat),
            "total_remat": int(resident + remat_acts), "total": int(resident + full),
            "memory": int(resident + acts),
            "input_micro": int(inputs_micro), "internal_micro": int(internal_micro)}


def memory_vector(wprefix: np.ndarray, aprefix: np.ndarray, cut: np.ndarray, *, microbatches: int, optimizer: str,
                  remat: bool, shared: list[tuple[float, np.ndarray]] = (), stages: int = 1,
                  schedule: str = "gpipe", tprefix: np.ndarray | None = None,
                  shared_trained: list[tuple[float, np.ndarray]] | None = None):
    """``f(s, i, j)`` giving the memory of stage ``s`` holding [i, j) for a vector of ``i``, under ``schedule``
    (of ``stages``): the model the partitioner caps.

    ``wprefix`` counts each weight at its first reader; ``shared`` (bytes, sorted reader positions) adds a weight
    read at several positions to every stage holding one of its later readers but not its first (each stage
    keeps its own copy, as the exact figures count it). Without that, a tied weight was missing from every stage
    after its first reader's: `--objective memory` missed the least-memory cut and `--memory-cap` refused
    models a cut would fit. Still approximate where a weight is also read through a folded constant node (a
    ``Transpose(W)``): the compute ops read W and W^T, both counted here, while a stage holding the constant
    node keeps W alone; the pass re-checks the exact figures afterwards. ``tprefix`` and ``shared_trained``: the
    same of the trained bytes, which also hold a gradient and the optimizer's state (default: all of them).
    """
    tf = trained_factor(optimizer)
    m = microbatches
    n = len(wprefix) - 1
    tprefix = wprefix if tprefix is None else tprefix
    shared_trained = shared if shared_trained is None else shared_trained

    def extra_of(entries: list[tuple[float, np.ndarray]]):
        """Bytes of shared weights in [i, j) beyond what a prefix counts: each whose first reader is before ``i``
        and a reader is in [i, j), i.e. first < i <= its last reader before j."""
        if not entries:
            return lambda i, j: 0.0
        sizes = np.array([b for b, _ in entries], dtype=float)
        first = np.array([r[0] for _, r in entries], dtype=np.int64)
        width = max(len(r) for _, r in entries)
        readers = np.full((len(entries), width), np.iinfo(np.int64).max, dtype=np.int64)
        for s, (_, r) in enumerate(entries):
            readers[s, :len(r)] = r

        def extra(i: np.ndarray, j: int) -> np.ndarray:
            before = (readers < j).sum(1) - 1  # index of the last reader before j (0: only the first)
            hit = before >= 1
            last = readers[hit, before[hit]]
            diff = np.zeros(n + 2)
            np.add.at(diff, first[hit] + 1, sizes[hit])
            np.add.at(diff, last + 1, -sizes[hit])
            return np.cumsum(diff)[i]
        return extra

    extra_weights, extra_trained = extra_of(list(shared)), extra_of(list(shared_trained))

    def f(s: int, i: np.ndarray, j: int) -> np.ndarray:
        internal = aprefix[j] - aprefix[i]
        act = activations(in_flight(schedule, m, stages, s), cut[i], internal, remat)
        i = np.asarray(i)
        weights = wprefix[j] - wprefix[i] + extra_weights(i, j)
        trained = tprefix[j] - tprefix[i] + extra_trained(i, j)
        return weights + tf * trained + act
    return f
