"""Node features of the learned passes' policy: what the GNN sees of each op (issue 14, item 3).

Per op (``NODE_FEATURES`` columns): a one-hot of its op type over ``OP_VOCAB`` (others: ``other``; a training
graph's backward op: ``backward``), then log-scaled numbers made relative to the graph, so that one policy reads
graphs of any size: its mean time over the devices / the graph's mean, output / input / weight bytes / the
graph's mean output bytes, in- and out-degree, its position in the graph's order, its upward rank / the
largest (the critical path through it), whether it has a fusion producer, whether fusing with it fits the
buffers, the bytes it would keep on chip; then the *current decisions* and their simulated schedule: whether
the op is fused and its place in the current order (0..1), its slack (how late it could start without delaying
the step, with the other ops' times and order fixed) / the step time, whether it is critical (no slack), its
start and finish / the step time.

The current decisions start as the *hint*, the best baseline (``baselines.best_baseline``: the best of the
placement x fusion x schedule heuristics, simulated); the policy proposes changes to them (``state_features``
rebuilds the dynamic columns from the decisions of the previous round: iterative refinement, one forward
pass and one simulation per round).

Per op and device (``DEVICE_FEATURES``): the op's time on the device / its mean over the devices, the device's
memory / the largest, whether the current decisions place it there, the share of its producers placed there,
and a one-step estimate of moving it there alone (``move_estimates``): when its inputs would arrive, the
earliest idle gap of that device's current schedule that holds it, and when its readers would then get its
output, against the same now (the gain, signed, / the graph's mean op time and / the step time). Devices are
scored one by one from these, so one policy serves any number of devices.
"""

from __future__ import annotations

import numpy as np

from graphmill.passes.placement.baselines import BusyIntervals, upward_rank
from graphmill.passes.placement.problem import op_bytes

from .env import Decisions, JointProblem, Outcome

OP_VOCAB = ("Conv", "MatMul", "Gemm", "Add", "Mul", "Sub", "Div", "Relu", "Clip", "Sigmoid", "Tanh", "Softmax",
            "BatchNormalization", "LayerNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat",
            "Split", "Slice", "Reshape", "Transpose", "Gather", "LSTM", "GRU", "Erf", "Pow", "ReduceMean",
            "Sqrt", "Flatten", "Squeeze", "Unsqueeze", "Identity", "HardSigmoid", "HardSwish", "other", "backward")
NUMERIC = ("time", "out_bytes", "in_bytes", "weight_bytes", "in_degree", "out_degree", "position", "rank",
           "has_fuse_producer", "fuse_fits", "fuse_bytes", "hint_fuse", "hint_order", "slack", "critical", "start",
           "finish")
NODE_FEATURES = len(OP_VOCAB) + len(NUMERIC)
DEVICE_FEATURES = 7

__all__ = ["OP_VOCAB", "NUMERIC", "NODE_FEATURES", "DEVICE_FEATURES", "node_features", "hint_decisions",
           "state_features", "slack", "move_estimates"]


def hint_decisions(jp: JointProblem, placement: np.ndarray | None = None) -> tuple[Decisions, str]:
    """The best baseline (of every placement, or of ``placement`` alone, x fusions x schedules): the hint."""
    from .baselines import best_baseline

    bb = best_baseline(jp, placements=None if placement is None else {"given": np.asarray(placement, np.int64)})
    return bb.decisions, bb.name


def node_features(jp: JointProblem, hint: np.ndarray | None = None) -> dict:
    """The observation of the hint's state: ``x`` [n, NODE_FEATURES], ``dev_x`` [n, D, DEVICE_FEATURES],
    ``src``/``dst`` (edges producer -> reader), ``fuse_producer`` [n], ``fuse_ok`` [n] (bool), ``hint`` [n],
    ``hint_name``, ``hint_decisions``, ``decisions`` / ``outcome`` (the current state: the hint's).
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
    dev_x = np.zeros((n, D, DEVICE_FEATURES), np.float32)
    dev_x[:, :, 0] = np.log((prob.op_time + 1e-9) / (t[:, None] + 1e-9))
    dev_x[:, :, 1] = (prob.capacity / prob.capacity.max())[None, :]
    src = np.array([p for i in range(n) for p in prob.preds[i]], np.int64)
    dst = np.array([i for i in range(n) for _ in prob.preds[i]], np.int64)
    static = {"x": x, "dev_x": dev_x, "src": src, "dst": dst, "fuse_producer": fp.copy(), "fuse_ok": fuse_ok,
              "hint": hint, "hint_name": hint_name, "hint_decisions": hd, "mean_time": tm}
    return state_features(jp, static, hd, jp.evaluate(hd))


def state_features(jp: JointProblem, obs: dict, dec: Decisions, out: Outcome) -> dict:
    """``obs`` with its dynamic columns (module docstring) rebuilt for the state ``dec`` (simulated: ``out``):
    a new dict sharing the static arrays; ``outcome`` the state's, ``decisions`` the ones that ran (devices after
    the fusion mask, the fusions that happened; the same outcome)."""
    prob = jp.prob
    n = prob.n
    k = len(OP_VOCAB)
    x = obs["x"].copy()
    dev_x = obs["dev_x"].copy()
    cur = np.asarray(out.device, np.int64)
    order = np.empty(n)
    order[np.argsort(dec.priority, kind="stable")] = np.arange(n)
    ms = max(out.makespan, 1e-9)
    sl = slack(jp, out)
    fp = jp.fuse_producer  # fused: in its fusion producer's group (a fusion the buffers refused is not)
    fused = (fp >= 0) & (out.group == out.group[np.maximum(fp, 0)])
    x[:, k + 11] = fused
    x[:, k + 12] = order / max(1, n - 1)
    x[:, k + 13] = np.log1p(100 * sl / ms)
    x[:, k + 14] = sl <= 1e-9 * ms
    x[:, k + 15] = out.start / ms
    x[:, k + 16] = out.finish / ms
    dev_x[:, :, 2:] = 0
    dev_x[np.arange(n), cur, 2] = 1
    for i in range(n):
        ps = prob.preds[i]
        if ps:
            np.add.at(dev_x[i, :, 3], cur[ps], 1.0 / len(ps))
    gain = move_estimates(jp, out)
    dev_x[:, :, 4] = np.sign(gain) * np.log1p(np.abs(gain) / obs["mean_time"])
    dev_x[:, :, 5] = np.clip(100 * gain / ms, -10, 10)
    dev_x[:, :, 6] = (gain > 0) & (sl <= 1e-9 * ms)[:, None]
    # the state as it ran (devices after the fusion mask, the fusions that happened): the same outcome, and the key
    # an untrained policy's greedy decisions reproduce (a refused fusion kept in the decisions made them another
    # key of the same state, simulated again)
    ran = Decisions(cur.copy(), fused, np.asarray(dec.priority, np.float64))
    return dict(obs, x=x, dev_x=dev_x, hint=cur, decisions=ran, outcome=out)


def _transfer(prob, nbytes: float, a: int, b: int) -> float:
    return 0.0 if a == b else float(prob.transfer(nbytes, a, b))


def slack(jp: JointProblem, out: Outcome) -> np.ndarray:
    """Per op, how much later it could start than ``out`` starts it without delaying the step, the other ops'
    times, devices and order fixed (readers wait for its output's transfer; the next op of its device waits
    for it); members of a fusion group share theirs."""
    prob = jp.prob
    n = prob.n
    st, fi, dev, grp = out.start, out.finish, out.device, out.group
    ms = out.makespan
    nxt = np.full(n, -1, np.int64)
    for ops in out.order():
        ops = [i for i in ops]
        for a, b in zip(ops, ops[1:]):
            nxt[a] = b
    lf = np.full(n, ms)
    ls = np.zeros(n)
    for i in sorted(range(n), key=lambda i: (fi[i], st[i], i), reverse=True):
        f = ms
        for j in prob.succs[i]:
            if grp[j] == grp[i]:
                f = min(f, lf[j])
            else:
                f = min(f, ls[j] - _transfer(prob, prob.edge_bytes.get((i, j), 0), int(dev[i]), int(dev[j])))
        j = int(nxt[i])
        while j >= 0 and grp[j] == grp[i]:
            j = int(nxt[j])
        if j >= 0:
            f = min(f, ls[j])
        lf[i] = f
        ls[i] = f - (fi[i] - st[i])
    return np.maximum(ls - st, 0.0)


def move_estimates(jp: JointProblem, out: Outcome) -> np.ndarray:
    """[n, D]: the estimated gain of moving op ``i`` alone to device ``d`` (0 on its own device): when its
    readers would get its output, now minus after the move, the move's start being the earliest idle gap of
    ``d``'s current schedule at or after its inputs' arrival (the producers' finishes plus their transfers to
    ``d``). A one-step estimate from the current schedule (nothing is simulated): the policy decides."""
    prob = jp.prob
    n, D = prob.n, prob.devices
    st, fi, dev = out.start, out.finish, np.asarray(out.device, np.int64)
    busy: list[list[tuple[float, float]]] = [[] for _ in range(D)]
    for i in range(n):
        if fi[i] > st[i]:
            busy[int(dev[i])].append((float(st[i]), float(fi[i])))
    timelines = [BusyIntervals(set(b)) for b in busy]
    gain = np.zeros((n, D))
    eb = prob.edge_bytes
    for i in range(n):
        di = int(dev[i])
        now = max([fi[i]] + [fi[i] + _transfer(prob, eb.get((i, j), 0), di, int(dev[j])) for j in prob.succs[i]])
        for d in range(D):
            if d == di:
                continue
            w = float(prob.op_time[i, d])
            ready = max([0.0] + [fi[p] + _transfer(prob, eb.get((p, i), 0), int(dev[p]), d) for p in prob.preds[i]])
            f = timelines[d].earliest(ready, w) + w
            after = max([f] + [f + _transfer(prob, eb.get((i, j), 0), d, int(dev[j])) for j in prob.succs[i]])
            gain[i, d] = now - after
    return gain
