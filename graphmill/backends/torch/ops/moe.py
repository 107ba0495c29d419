"""``graphmill::MoE`` in torch: the mixture-of-experts layer as ``graphmill.ir.ops.moe`` defines it, trainable.

Gradients reach the gate through the k gate values of every kept assignment (and through the auxiliary
losses) and every expert through the tokens it received; an expert that received no kept token gets a zero
gradient. Dispatch is an ``index_add`` into an ``[E, C + 1, d]`` buffer (slot ``C`` collects the dropped
assignments and is discarded), so the experts compute ``E (C + 1)`` rows, not ``E T``.

``moe_forward`` is public so that benchmarks and models written directly in torch run the very function the
graph's torch lowering runs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from graphmill.ir.ops.moe import CV_EPSILON, check_moe_config, moe_capacity

from .common import check, op

SQRT2 = math.sqrt(2.0)


def cv_squared(v: torch.Tensor) -> torch.Tensor:
    """``var / (mean^2 + 1e-10)``, population variance (tensor2tensor's ``cv_squared``)."""
    v = v.to(torch.float32) if not v.is_floating_point() else v
    mean = v.mean()
    return ((v - mean) ** 2).mean() / (mean * mean + CV_EPSILON)


def topk(x: torch.Tensor, k: int, dim: int = -1, *, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the k largest (smallest) along ``dim``, equal values in index order as ONNX's TopK
    defines it (``torch.topk`` breaks ties in no set order, so routing on tied logits could differ from ONNX
    Runtime's); a stable sort, differentiable in the values."""
    v, i = torch.sort(x, dim=dim, descending=largest, stable=True)
    return v.narrow(dim, 0, k), i.narrow(dim, 0, k)


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z / SQRT2))


def moe_forward(x: torch.Tensor, wg: torch.Tensor, wnoise: torch.Tensor | None, w1: torch.Tensor, b1: torch.Tensor,
                w2: torch.Tensor, b2: torch.Tensor, noise: torch.Tensor | None = None, *, k: int = 1,
                capacity_factor: float = 1.0, gate: str = "topk", activation: str = "relu",
                training: bool = False) -> tuple[torch.Tensor, ...]:
    """(Y, importance_loss, load_loss, expert_counts, dropped) of the MoE layer (``ir/ops/moe.py``).

    ``noise``: standard-normal samples [T, E]; when absent and ``training`` with noise weights, they are
    drawn here (Shazeer's noisy gating); at inference without ``noise`` the gate is noise-free.
    """
    E = wg.shape[1]
    check_moe_config(experts=E, k=k, capacity_factor=capacity_factor, gate=gate, activation=activation)
    shape = x.shape
    d = shape[-1]
    x2 = x.reshape(-1, d)
    T = x2.shape[0]
    clean = x2 @ wg
    std = None
    if wnoise is not None:
        std = F.softplus(x2 @ wnoise)
        if noise is None and training:
            noise = torch.randn_like(clean)
    noisy = clean + noise * std if (std is not None and noise is not None) else clean
    probs = None
    if gate == "topk":
        topv, topi = topk(noisy, k, 1)
        w = torch.softmax(topv, dim=1)
    else:
        probs = torch.softmax(noisy, dim=1)
        topv, topi = topk(probs, k, 1)
        w = topv / topv.sum(dim=1, keepdim=True) if gate == "gshard" else topv

    # capacity: choice-major ranks per expert
    C = moe_capacity(T, k, E, capacity_factor)
    flat_e = topi.t().reshape(-1)  # [k T]: all first choices, then all second choices, ...
    onehot = F.one_hot(flat_e, E)  # int64
    pos = (torch.cumsum(onehot, 0) - onehot).gather(1, flat_e[:, None])[:, 0]
    keep = pos < C
    slot = flat_e * (C + 1) + torch.where(keep, pos, torch.full_like(pos, C))
    x_rep = x2.repeat(k, 1)
    buf = torch.zeros(E * (C + 1), d, dtype=x2.dtype, device=x2.device).index_add(0, slot, x_rep)
    h = torch.relu(torch.bmm(buf.view(E, C + 1, d), w1) + b1[:, None, :])
    out = (torch.bmm(h, w2) + b2[:, None, :]).reshape(E * (C + 1), d)
    wflat = w.t().reshape(-1) * keep.to(w.dtype)
    y2 = (out[slot] * wflat[:, None]).view(k, T, d).sum(0)
    y = y2.reshape(shape)

    counts = onehot.sum(0)
    dropped = (~keep).sum()
    gates_dense = torch.zeros(T, E, dtype=w.dtype, device=w.device).scatter(1, topi, w)
    importance_loss = cv_squared(gates_dense.sum(0))
    if gate == "topk":
        if std is not None and k < E:
            top_k1 = topk(noisy, k + 1, 1)[0]
            thr_in, thr_out = top_k1[:, k:k + 1], top_k1[:, k - 1:k]
            is_in = noisy > thr_in
            p = torch.where(is_in, _normal_cdf((clean - thr_in) / std), _normal_cdf((clean - thr_out) / std))
            load_loss = cv_squared(p.sum(0))
        else:
            load_loss = cv_squared(counts.to(x2.dtype))
    else:
        tokens = max(x2.shape[0], 1)  # a mean over no tokens is 0, not NaN (ONNX lowering: the same)
        f = F.one_hot(topi[:, 0], E).to(probs.dtype).sum(0) / tokens
        load_loss = E * (f * (probs.sum(0) / tokens)).sum()
    return y, importance_loss, load_loss, counts, dropped


@op("graphmill::MoE")
def _moe(rt, a, x):
    x = list(x) + [None] * (8 - len(x))
    gate = a.get("gate", "topk")
    act = a.get("activation", "relu")
    return moe_forward(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], k=int(a.get("k", 1)),
                       capacity_factor=float(a.get("capacity_factor", 1.0)),
                       gate=gate.decode() if isinstance(gate, bytes) else gate,
                       activation=act.decode() if isinstance(act, bytes) else act, training=rt.training)


# -- the standard ops of the MoE lowering that no other op family of this backend needed: a saved MoE model
# (standard ONNX, ``passes/lowering/moe.py``) runs and trains through them (its gate is noise-free: the noise
# input is absent in the file) --------------------------------------------------------------------------------

@op("TopK")
def _topk(rt, a, x):
    """ONNX TopK: (values, int64 indices) of the k largest (``largest=1``) or smallest along ``axis``; ``k`` an input
    (opset 10 on) or an attribute (before)."""
    # before opset 10 k is an attribute (reading a second input was an IndexError; an outside check)
    k = int(x[1].reshape(-1)[0]) if len(x) > 1 and x[1] is not None else int(a["k"])
    v, i = topk(x[0], k, int(a.get("axis", -1)), largest=bool(a.get("largest", 1)))
    return v, i.to(torch.int64)


@op("ScatterND")
def _scatter_nd(rt, a, x):
    """ONNX ScatterND with ``reduction`` none or add (differentiable in ``data`` and ``updates``)."""
    data, indices, updates = x[0], x[1].to(torch.int64), x[2]
    red = a.get("reduction", "none")
    red = red.decode() if isinstance(red, bytes) else red
    q = indices.shape[-1]
    idx = indices.reshape(-1, q)
    idx = torch.where(idx < 0, idx + torch.tensor(data.shape[:q], device=idx.device), idx)
    upd = updates.reshape(idx.shape[0], *data.shape[q:])
    return data.index_put(tuple(idx.t()), upd, accumulate=red == "add")


@check("ScatterND")
def _check_scatter_nd(node, opset):
    red = node.attr("reduction", "none")
    red = red.decode() if isinstance(red, bytes) else red
    return None if red in ("none", "add") else f"ScatterND reduction {red!r} is not supported (only none and add)"


__all__ = ["cv_squared", "moe_forward", "topk"]
