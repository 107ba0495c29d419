"""Recurrent layers: LSTM, GRU and RNN (ONNX semantics, every direction and layout).

They are the compute of the NMT and language-model graphs the placement and learned passes work on,
so inference must not need onnx's help and ``inspect`` must count their MACs: per direction and time
step, the input projection X·W and the recurrent one H·R, each ``batch x gates*hidden x (input or
hidden)`` multiply-accumulates.
"""

from __future__ import annotations

from ..graph import Node
from ..types import Dim, TensorType
from .common import dims_product, io_cost
from .nn import unknown_cost, value_shape
from .registry import Cost, InferenceContext, register

#: gates per op: the rows of W and R are gates * hidden_size
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}

#: elementwise operations per hidden unit and time step, beside the matmuls: the two bias adds per
#: gate, the gate activations and the state update (LSTM: 8 + 5 + 4; GRU: 6 + 3 + 5; RNN: 2 + 1)
GATE_FLOPS = {"LSTM": 17, "GRU": 14, "RNN": 3}


def _directions(node: Node) -> int:
    return 2 if node.attr("direction", "forward") == "bidirectional" else 1


def _layout(node: Node) -> int:
    return int(node.attr("layout", 0))


def _hidden(node: Node, r: tuple[Dim, ...] | None) -> Dim:
    h = node.attr("hidden_size", None)
    if h is not None:
        return int(h)
    return r[2] if r is not None and len(r) == 3 else None


def _seq_batch(x: tuple[Dim, ...] | None, layout: int) -> tuple[Dim, Dim]:
    if x is None or len(x) != 3:
        return None, None
    return (x[1], x[0]) if layout else (x[0], x[1])


def infer_recurrent(ctx: InferenceContext) -> list:
    """Y [seq, dirs, batch, hidden] (layout 1: [batch, seq, dirs, hidden]); Y_h (and LSTM's Y_c)
    [dirs, batch, hidden] (layout 1: [batch, dirs, hidden])."""
    node = ctx.node
    x, w, r = ctx.input_shape(0), ctx.input_shape(1), ctx.input_shape(2)
    if x is not None and len(x) != 3:
        raise ctx.fail(f"X must be 3-D ([seq, batch, input] or, with layout=1, [batch, seq, input]), got {list(x)}")
    dirs = _directions(node)
    gates = GATES[node.op_type]
    hidden = _hidden(node, r)
    for name, s in (("W", w), ("R", r)):
        if s is None:
            continue
        if len(s) != 3:
            raise ctx.fail(f"{name} must be 3-D [directions, {gates}*hidden, ...], got {list(s)}")
        if isinstance(s[0], int) and s[0] != dirs:
            raise ctx.fail(f"{name} has {s[0]} direction(s), direction={node.attr('direction', 'forward')!r} "
                           f"needs {dirs}")
        if isinstance(s[1], int) and isinstance(hidden, int) and s[1] != gates * hidden:
            raise ctx.fail(f"{name} has {s[1]} rows, {node.op_type} needs {gates} x hidden_size {hidden}")
    if x is not None and w is not None and isinstance(x[2], int) and isinstance(w[2], int) and x[2] != w[2]:
        raise ctx.fail(f"X has {x[2]} input features but W expects {w[2]}")
    layout = _layout(node)
    seq, batch = _seq_batch(x, layout)
    _check_states(ctx, batch, dirs, hidden, layout)
    dtype = ctx.input_dtype(0) or ctx.input_dtype(1)
    y = (batch, seq, dirs, hidden) if layout else (seq, dirs, batch, hidden)
    state = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    out = [TensorType(dtype, y), TensorType(dtype, state)]
    if node.op_type == "LSTM":
        out.append(TensorType(dtype, state))
    return out


#: the initial state inputs (initial_h, and LSTM's initial_c) by position
_STATES = {"LSTM": (5, 6), "GRU": (5,), "RNN": (5,)}


def _check_states(ctx: InferenceContext, batch: Dim, dirs: int, hidden: Dim, layout: int) -> None:
    """The initial states are [directions, batch, hidden] ([batch, directions, hidden] with layout 1), as ONNX
    Runtime requires: tf2onnx writes an LSTM's zero states as constants at the export's batch, and partition split
    such a model into micro-batches ONNX Runtime refuses to run (an outside check)."""
    names = {5: "initial_h", 6: "initial_c"}
    for i in _STATES[ctx.node.op_type]:
        s = ctx.input_shape(i) if ctx.has_input(i) else None
        if s is None:
            continue
        want = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
        if len(s) != 3 or any(isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(s, want)):
            raise ctx.fail(f"{names[i]} has shape {list(s)}, X and the attributes need "
                           f"{[d if d is not None else '?' for d in want]}")


def recurrent_cost(node: Node) -> Cost:
    """MACs = dirs * seq * batch * gates * hidden * (input + hidden): X·W and H·R at every step of
    every direction (``sequence_lens`` shorter than the padded length is not taken off); flops = 2 per
    MAC plus ``GATE_FLOPS`` per hidden unit and step."""
    x, r = value_shape(node, 0), value_shape(node, 2)
    w = value_shape(node, 1)
    seq, batch = _seq_batch(x, _layout(node))
    hidden = _hidden(node, r)
    inputs = x[2] if x is not None and len(x) == 3 else (w[2] if w is not None and len(w) == 3 else None)
    dirs, gates = _directions(node), GATES[node.op_type]
    steps = dims_product((dirs, seq, batch))
    per_step = dims_product((gates, hidden))
    if steps is None or per_step is None or not isinstance(inputs, int) or not isinstance(hidden, int):
        return unknown_cost(node)
    macs = steps * per_step * (inputs + hidden)
    return io_cost(node, macs=macs, flops=2 * macs + steps * hidden * GATE_FLOPS[node.op_type])


register(["LSTM", "GRU", "RNN"], infer=infer_recurrent, cost=recurrent_cost)


def _infer_dynamic_quantize_lstm(ctx: InferenceContext) -> list:
    """ONNX Runtime's com.microsoft DynamicQuantizeLSTM (what its ``quantize_dynamic`` makes of an LSTM): LSTM's
    inputs and outputs (layout 0), its W [dirs, input, 4*hidden] and R [dirs, hidden, 4*hidden] stored transposed
    and quantized."""
    node = ctx.node
    x, r = ctx.input_shape(0), ctx.input_shape(2)
    hidden = node.attr("hidden_size", None)
    hidden = int(hidden) if hidden is not None else (r[1] if r is not None and len(r) == 3 else None)
    dirs = _directions(node)
    seq, batch = _seq_batch(x, 0)
    dtype = ctx.input_dtype(0)
    state = TensorType(dtype, (dirs, batch, hidden))
    return [TensorType(dtype, (seq, dirs, batch, hidden)), state, state][:len(node.outputs)]


def _dynamic_quantize_lstm_cost(node: Node) -> Cost:
    """DynamicQuantizeLSTM: an LSTM's count (``recurrent_cost``), the input width read off X or W's axis 1."""
    x, w, r = value_shape(node, 0), value_shape(node, 1), value_shape(node, 2)
    seq, batch = _seq_batch(x, 0)
    hidden = node.attr("hidden_size", None)
    hidden = int(hidden) if hidden is not None else (r[1] if r is not None and len(r) == 3 else None)
    inputs = x[2] if x is not None and len(x) == 3 else (w[1] if w is not None and len(w) == 3 else None)
    steps = dims_product((_directions(node), seq, batch))
    if steps is None or not isinstance(inputs, int) or not isinstance(hidden, int):
        return unknown_cost(node)
    macs = steps * GATES["LSTM"] * hidden * (inputs + hidden)
    return io_cost(node, macs=macs, flops=2 * macs + steps * hidden * GATE_FLOPS["LSTM"])


register("DynamicQuantizeLSTM", "com.microsoft", infer=_infer_dynamic_quantize_lstm, cost=_dynamic_quantize_lstm_cost)
