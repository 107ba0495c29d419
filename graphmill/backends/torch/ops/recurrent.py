"""Recurrent layers for the torch backend: ONNX's LSTM, GRU and RNN, step by step in torch ops.

ONNX's gate layouts differ from torch's (LSTM ``i, o, f, c`` against torch's ``i, f, g, o``; GRU ``z, r, h``
against ``r, z, n``), and ``torch.nn.LSTM``'s fused kernel takes torch's layout, so the equations are written
out here as the ONNX operator documentation gives them: the weights stay the graph's tensors, trained as they
are stored, and ``export_weights`` writes them back without a reordering. Per step the work is two matrix
products and a few elementwise ops; the loop runs in Python, which is what the eager interpreter does
for every op anyway.

Supported: every direction, ``layout`` 0 and 1, ``sequence_lens`` (a shorter sequence keeps its state past its
end and writes zeros to ``Y``, and one of length 0 ends in zero states, as ONNX Runtime does), initial states,
``clip``, LSTM peepholes (``P``), GRU's ``linear_before_reset``, and the activations Sigmoid, Tanh and Relu. Others (``input_forget``, activations
with ``alpha``/``beta``) are refused when the module is built (``CHECKS``).
"""

from __future__ import annotations

import torch

from .common import check, op

# by lowercase name: ORT reads LSTM's and GRU's activations so (not RNN's); the torch backend reads all three so
_ACTS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
_DEFAULTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _activations(op_type: str, a: dict, directions: int) -> list[list]:
    """The activation functions of each direction (ONNX lists them for the forward direction, then the reverse)."""
    names = [_text(n) for n in a.get("activations") or _DEFAULTS[op_type] * directions]
    per = len(_DEFAULTS[op_type])
    if len(names) == per and directions == 2:
        names = names * 2
    return [[_ACTS[n.lower()] for n in names[d * per:(d + 1) * per]] for d in range(directions)]


@check("LSTM", "GRU", "RNN")
def _check_recurrent(node, opset: int) -> str | None:
    a = {k: v.value for k, v in node.attrs.items()}
    if a.get("activation_alpha") or a.get("activation_beta"):
        return "activations with alpha/beta are not supported"
    names = [_text(n) for n in a.get("activations") or []]
    bad = [n for n in names if n.lower() not in _ACTS]
    if bad:
        return f"activation {bad[0]!r} (supported: Sigmoid, Tanh, Relu) is not supported"
    per = len(_DEFAULTS[node.op_type])
    directions = 2 if _text(a.get("direction", "forward")) == "bidirectional" else 1
    if names and len(names) not in (per, per * directions):
        return f"{len(names)} activations for {directions} direction(s) of {per}"
    if node.op_type == "LSTM" and a.get("input_forget", 0):
        return "input_forget=1 is not supported"
    return None


def _unpack(a: dict, x: list, n_states: int):
    """X as [seq, batch, input]; the directions; W, R, B per direction; lengths; initial states [dir, batch, h]."""
    layout = a.get("layout", 0)
    X = x[0].transpose(0, 1) if layout else x[0]
    W, R = x[1], x[2]
    B = x[3] if len(x) > 3 else None
    lens = x[4] if len(x) > 4 else None
    states = [x[5 + i] if len(x) > 5 + i else None for i in range(n_states)]
    if layout:
        states = [s.transpose(0, 1) if s is not None else None for s in states]
    for s in states:  # ONNX Runtime refuses it; broadcast, a batch of 1 came out at the state's (an outside check)
        if s is not None and s.shape[1] != X.shape[1]:
            raise ValueError(f"an initial state of batch {s.shape[1]} for X of batch {X.shape[1]}")
    direction = _text(a.get("direction", "forward"))
    dirs = ["forward", "reverse"] if direction == "bidirectional" else [direction]
    return X, W, R, B, lens, states, dirs, layout


def _pack(ys: list, finals: list[list], layout: int):
    """Y [seq, dir, batch, h] (layout 1: [batch, seq, dir, h]) and each final state [dir, batch, h]."""
    Y = torch.stack([torch.stack(y) for y in ys], dim=1)
    outs = [torch.stack(f) for f in finals]
    if layout:
        return (Y.permute(2, 0, 1, 3), *[o.transpose(0, 1) for o in outs])
    return (Y, *outs)


def _run(step, X, lens, d: str, init: list):
    """Run ``step(x_t, states) -> states`` over time in direction ``d``; a sequence past its length keeps its state
    and contributes zeros to Y."""
    T = X.shape[0]
    states = init
    ys: list = [None] * T
    for t in (range(T) if d == "forward" else range(T - 1, -1, -1)):
        new = step(X[t], states)
        if lens is None:
            states = new
            ys[t] = new[0]
        else:
            live = (t < lens).to(X.dtype).unsqueeze(1)
            states = [live * n + (1 - live) * s for n, s in zip(new, states)]
            ys[t] = live * new[0]
    if lens is not None:  # a sequence of length 0 ends in zeros, not in its initial state (as ONNX Runtime does)
        started = (lens > 0).to(X.dtype).unsqueeze(1)
        states = [started * s for s in states]
    return ys, states


def _clip(v, clip):
    return v if clip is None else v.clamp(-clip, clip)


@op("LSTM")
def _lstm(rt, a, x):
    X, W, R, B, lens, (h0, c0), dirs, layout = _unpack(a, x, 2)
    P = x[7] if len(x) > 7 else None
    H = int(a.get("hidden_size") or R.shape[-1])
    clip = a.get("clip")
    acts = _activations("LSTM", a, len(dirs))
    batch = X.shape[1]
    ys, hs, cs = [], [], []
    for k, d in enumerate(dirs):
        f, g, h = acts[k]
        w, r = W[k], R[k]
        bias = (B[k][:4 * H] + B[k][4 * H:]) if B is not None else 0
        p_i, p_o, p_f = (P[k][:H], P[k][H:2 * H], P[k][2 * H:]) if P is not None else (0, 0, 0)

        def step(xt, s, w=w, r=r, bias=bias, p_i=p_i, p_o=p_o, p_f=p_f, f=f, g=g, h=h):
            hp, cp = s
            gates = xt @ w.t() + hp @ r.t() + bias
            i, o, fg, c = gates.split(H, dim=-1)
            i = f(_clip(i + p_i * cp, clip))
            fg = f(_clip(fg + p_f * cp, clip))
            c = fg * cp + i * g(_clip(c, clip))
            o = f(_clip(o + p_o * c, clip))
            return [o * h(c), c]

        zero = X.new_zeros(batch, H)
        y, (hn, cn) = _run(step, X, lens, d, [h0[k] if h0 is not None else zero, c0[k] if c0 is not None else zero])
        ys.append(y)
        hs.append(hn)
        cs.append(cn)
    return _pack(ys, [hs, cs], layout)


@op("GRU")
def _gru(rt, a, x):
    X, W, R, B, lens, (h0,), dirs, layout = _unpack(a, x, 1)
    H = int(a.get("hidden_size") or R.shape[-1])
    clip = a.get("clip")
    before = bool(a.get("linear_before_reset", 0))
    acts = _activations("GRU", a, len(dirs))
    ys, hs = [], []
    for k, d in enumerate(dirs):
        f, g = acts[k]
        w, r = W[k], R[k]
        wb, rb = (B[k][:3 * H], B[k][3 * H:]) if B is not None else (X.new_zeros(3 * H), X.new_zeros(3 * H))

        def step(xt, s, w=w, r=r, wb=wb, rb=rb, f=f, g=g):
            hp = s[0]
            xz, xr, xh = (xt @ w.t() + wb).split(H, dim=-1)
            rz, rr, rh = r.split(H, dim=0)
            bz, br, bh = rb.split(H)
            z = f(_clip(xz + hp @ rz.t() + bz, clip))
            rg = f(_clip(xr + hp @ rr.t() + br, clip))
            if before:
                n = g(_clip(xh + rg * (hp @ rh.t() + bh), clip))
            else:
                n = g(_clip(xh + (rg * hp) @ rh.t() + bh, clip))
            return [(1 - z) * n + z * hp]

        y, (hn,) = _run(step, X, lens, d, [h0[k] if h0 is not None else X.new_zeros(X.shape[1], H)])
        ys.append(y)
        hs.append(hn)
    return _pack(ys, [hs], layout)


@op("RNN")
def _rnn(rt, a, x):
    X, W, R, B, lens, (h0,), dirs, layout = _unpack(a, x, 1)
    H = int(a.get("hidden_size") or R.shape[-1])
    clip = a.get("clip")
    acts = _activations("RNN", a, len(dirs))
    ys, hs = [], []
    for k, d in enumerate(dirs):
        f = acts[k][0]
        w, r = W[k], R[k]
        bias = (B[k][:H] + B[k][H:]) if B is not None else 0

        def step(xt, s, w=w, r=r, bias=bias, f=f):
            return [f(_clip(xt @ w.t() + s[0] @ r.t() + bias, clip))]

        y, (hn,) = _run(step, X, lens, d, [h0[k] if h0 is not None else X.new_zeros(X.shape[1], H)])
        ys.append(y)
        hs.append(hn)
    return _pack(ys, [hs], layout)
