"""Node features of the learned passes' policy: what the GNN sees of each op (issue 14, item 3).

Per op (``NODE_FEATURES`` columns): a one-hot of its op type over ``OP_VOCAB`` (others: ``other``; a training
graph's backward op: ``backward``), then log-scaled numbers made relative to the graph, so that one policy reads
graphs of any size: its mean time over the devices / the graph's mean, output / input / weight bytes / the
graph's mean output bytes, in- and out-degree, its position in the graph's order, its upward rank / the
largest (the critical path through it), whether it has a fusion producer, whether fusing with it fits the
buffers, the bytes it would keep on chip, and the *hint*: whether the best baseline (``baselines.best_baseline``:
the best of the placement x fusion x schedule heuristics, simulated) fuses it and its place in that baseline's
order (0..1). The policy starts from the best heuristic and learns where to depart from it.

Per op and device (``DEVICE_FEATURES``): the op's time on the device / its mean over the devices, the device's
memory / the largest, whether the hint places it there, and the share of its producers the hint places there.
Devices are scored one by one from these, so one policy
serves any number of devices.
"""

from __future__ import annotations

import numpy as np

from graphmill.passes.placement.baselines import upward_rank
from graphmill.passes.placement.problem import op_bytes

from .env import Decisions, JointProblem

OP_VOCAB = ("Conv", "MatMul", "Gemm", "Add", "Mul", "Sub", "Div", "Relu", "Clip", "Sigmoid", "Tanh", "Softmax",
            "BatchNormalization", "LayerNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat",
            "Split", "Slice", "Reshape", "Transpose", "Gather", "LSTM", "GRU", "Erf", "Pow", "ReduceMean",
            "Sqrt", "Flatten", "Squeeze", "Unsqueeze", "Identity", "HardSigmoid", "HardSwish", "other", "backward")
NUMERIC = ("time", "out_bytes", "in_bytes", "weight_bytes", "in_degree", "out_degree", "position", "rank",
           "has_fuse_producer", "fuse_fits", "fuse_bytes", "hint_fuse", "hint_order")
NODE_FEATURES = len(OP_VOCAB) + len(NUMERIC)
DEVICE_FEATURES = 4

__all__ = ["OP_VOCAB", "NUMERIC", "NODE_FEATURES", "DEVICE_FEATURES", "node_features", "hint_decisions"]


def hint_decisions(jp: JointProblem, placement: np.ndarray | None = None) -> tuple[Decisions, str]:
    """The best baseline (of every placement, or of ``placement`` alone, x fusions x schedules): the hint."""
    from .baselines import best_baseline

    bb = best_baseline(jp, placements=None if placement is None else {"given": np.asarray(placement, np.int64)})
    return bb.decisions, bb.name


def node_features(jp: JointProblem, hint: np.ndarray | None = None) -> dict:
    """The observation: ``x`` [n, NODE_FEATURES], ``dev_x`` [n, D, DEVICE_FEATURES], ``src``/``dst`` (edges
    producer -> reader), ``fuse_producer`` [n], ``fuse_ok`` [n] (bool), ``hint`` [n], ``hint_name``.
    ``hint``: a placement to use as the hint (a graph already placed) instead of the best baseline."""
    prob = jp.prob
    n, D = prob.n, prob.devices
    x = np.zeros((n, NODE_FEATURES), np.float32)
    vocab = {k: i for i, k in enumerate(OP_VOCAB)}
    for i, node in enumerate(prob.nodes):
        if node.domain == "graphmill":
            x[i, vocab["backward"]] = 1
        else:
            x[i, vocab.get(node.op_type, vocab["other"])] = 1
    out_b, in_b, w_b = op_bytes(prob)
    t = prob.op_time.mean(axis=1)
    tm = max(t.mean(), 1e-9)
    bm = max(out_b.mean(), 1.0)
    rank = upward_rank(prob)
    fp = jp.fuse_producer
    hd, hint_name = hint_decisions(jp, hint)
    hint = np.asarray(hd.device, np.int64)
    hint_fuse = np.asarray(hd.fuse, bool) & (jp.fuse_producer >= 0)
    order = np.empty(n)
    order[np.argsort(hd.priority, kind="stable")] = np.arange(n)
    hint_order = order / max(1, n - 1)
    fuse_ok = np.zeros(n, bool)
    fuse_b = np.zeros(n)
    for i in range(n):
        p = int(fp[i])
        if p >= 0:
            _, why = jp.group_cost((p, i), int(hint[p]))
            fuse_ok[i] = not why
            fuse_b[i] = prob.edge_bytes.get((p, i), 0)
    k = len(OP_VOCAB)
    x[:, k + 0] = np.log1p(t / tm)
    x[:, k + 1] = np.log1p(out_b / bm)
    x[:, k + 2] = np.log1p(in_b / bm)
    x[:, k + 3] = np.log1p(w_b / bm)
    x[:, k + 4] = np.log1p([len(p) for p in prob.preds])
    x[:, k + 5] = np.log1p([len(s) for s in prob.succs])
    x[:, k + 6] = np.arange(n) / max(1, n - 1)
    x[:, k + 7] = rank / max(rank.max(), 1e-9)
    x[:, k + 8] = fp >= 0
    x[:, k + 9] = fuse_ok
    x[:, k + 10] = np.log1p(fuse_b / bm)
    x[:, k + 11] = hint_fuse
    x[:, k + 12] = hint_order
    dev_x = np.zeros((n, D, DEVICE_FEATURES), np.float32)
    dev_x[:, :, 0] = np.log((prob.op_time + 1e-9) / (t[:, None] + 1e-9))
    dev_x[:, :, 1] = (prob.capacity / prob.capacity.max())[None, :]
    dev_x[np.arange(n), hint, 2] = 1
    for i in range(n):
        ps = prob.preds[i]
        if ps:
            np.add.at(dev_x[i, :, 3], hint[ps], 1.0 / len(ps))
    src = np.array([p for i in range(n) for p in prob.preds[i]], np.int64)
    dst = np.array([i for i in range(n) for _ in prob.preds[i]], np.int64)
    return {"x": x, "dev_x": dev_x, "src": src, "dst": dst, "fuse_producer": fp.copy(), "fuse_ok": fuse_ok,
            "hint": hint, "hint_name": hint_name, "hint_decisions": hd}
