"""Lowering: IR nodes -> simulator primitives.

* ``ArrayLayer``: a matrix product on the systolic array, described the way SCALE-Sim describes a
  convolution (padded input H x W, filter R x S, C channels, N filters, stride), so that
  M = output pixels, N = filters, K = R*S*C (im2col). Gemm/MatMul are the 1-column convolution SCALE-Sim's
  GEMM mode uses (H=M, W=K, R=1, S=K, C=1). ``repeat`` counts identical instances that run back to back:
  batch, conv groups (a grouped/depthwise conv is lowered per group: C = Cin/group, N = Cout/group),
  MatMul batch dims, and the time steps of a recurrent layer's H·R. ``recurrent_words`` > 0 marks the
  per-step H·R of a recurrent layer: its ``repeat`` instances are ``weight_sets`` groups (directions) of
  time steps that share one recurrent weight matrix of ``recurrent_words`` words (the engine keeps it on
  chip when it fits the filter buffer's active half, else re-reads it each step and charges the load).
* ``VectorLayer``: elementwise ops, pooling, softmax, normalization and data movement on the vector unit.
  Its DRAM traffic is counted in *words* (operand elements), as the array's is: bytes = words x
  ``word_bytes``, time against the configured words per cycle.
* ``BranchChoice``: an ``If`` whose condition is not constant; the engine costs every branch and keeps
  the most expensive (the worst case).
* Recurrent layers (ONNX LSTM, GRU, RNN; forward, reverse or bidirectional; the sequence length and batch
  from X's shape and ``layout``): X·W^T for all time steps of a direction as ONE matmul (M = steps x
  batch: it does not depend on the recurrence), then per time step and direction H_{t-1}·R^T on the array
  (GRU with ``linear_before_reset=0``: H·R for the z and r gates, then (r*H)·R for the hidden gate, which
  needs r first; both marked with the whole R's size, which must stay on chip for either to reuse it),
  and the gate math (bias adds, activations, cell and state updates, peepholes) on the vector unit.
* ``Gather`` (an embedding lookup): the gathered rows (output elements) and the indices read from DRAM,
  the output written; the table itself is not streamed.
* Control flow with a static trip count: ``Loop`` with a constant trip-count input M costs M iterations
  of its body (an upper bound when the body's condition can end it earlier), ``Scan`` one body per
  element of the scanned axis, ``If`` the branch its constant condition selects, else a ``BranchChoice``.
* Nodes with ``node.meta["fused_into"]`` set (the name of the node that absorbs them, e.g. a Relu after a
  Conv, set by a fusion pass) cost nothing extra: they are lowered to nothing.
* Shape-only ops (Reshape, Flatten, Transpose, ...), constants and shape arithmetic (nodes that compute
  only from Shape/Size outputs and constants, as exporters emit for dynamic shapes) are free.
* Anything else needs an op-registry cost entry (then it runs on the vector unit); a node without one,
  a Loop without a constant trip count, or a custom-domain op is *uncosted*: ``lower`` lists it in
  ``Lowering.uncosted`` and the report says its totals are partial.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from graphmill.ir import Graph, Node, UserInputError, Value
from graphmill.ir.control_flow import if_branch, loop_runs
from graphmill.ir.ops.nn import einsum_labels
from graphmill.ir.ops.registry import InferenceContext
from graphmill.ir.ops.window import read_window
from graphmill.ir.summary import (computed_from_shapes, constant_values, is_constant_node, node_cost, reads_shape_only,
                                   where_shapes_stop)
from graphmill.ir.types import TensorType, num_elements

FUSED_KEY = "fused_into"
MAX_OPERAND_WORDS = 2 ** 31 - 1

_STANDARD = ("", "ai.onnx")
_MS = "com.microsoft"
_FREE = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Size", "Constant",
                   "Dropout", "ConstantOfShape", "Cast", "Slice", "Concat", "Transpose", "Split", "Expand"})
_VECTOR_FLOPS = {"Softmax": 5, "LogSoftmax": 5, "BatchNormalization": 2, "LayerNormalization": 8,
                 "InstanceNormalization": 8, "GroupNormalization": 8, "Sigmoid": 4, "Tanh": 4, "Gelu": 8,
                 "Erf": 4, "Exp": 2, "HardSwish": 3, "HardSigmoid": 2, "Relu": 1, "Clip": 1, "LeakyRelu": 2,
                 "Affine": 2, "ThresholdedRelu": 1, "ScaledTanh": 5, "Elu": 4, "Softsign": 3, "Softplus": 4}


@dataclass(frozen=True)
class ArrayLayer:
    name: str
    op: str
    H: int
    W: int
    R: int
    S: int
    C: int
    N: int
    stride_h: int = 1
    stride_w: int = 1
    repeat: int = 1
    recurrent_words: int = 0  # > 0: the H·R of a recurrent layer (module docstring)
    weight_sets: int = 1  # with recurrent_words: the groups of repeats sharing one weight matrix

    @property
    def out_h(self) -> int:
        return -(-(self.H - self.R + self.stride_h) // self.stride_h)

    @property
    def out_w(self) -> int:
        return -(-(self.W - self.S + self.stride_w) // self.stride_w)

    @property
    def M(self) -> int:
        return self.out_h * self.out_w

    @property
    def K(self) -> int:
        return self.R * self.S * self.C

    @property
    def macs(self) -> int:
        return self.M * self.N * self.K * self.repeat

    def shape_text(self) -> str:
        return f"M{self.M} N{self.N} K{self.K}" + (f" x{self.repeat}" if self.repeat > 1 else "")

    def validate(self, where: str) -> "ArrayLayer":
        for f in ("H", "W", "R", "S", "C", "N", "stride_h", "stride_w", "repeat"):
            v = getattr(self, f)
            if not isinstance(v, int) or v <= 0:
                raise UserInputError(f"{where}: {f} must be a positive integer, got {v!r}")
        if self.R > self.H or self.S > self.W:
            raise UserInputError(f"{where}: filter {self.R}x{self.S} is larger than the input {self.H}x{self.W}")
        for what, words in (("ifmap", self.H * self.W * self.C), ("filter", self.K * self.N),
                            ("ofmap", self.M * self.N)):
            if words > MAX_OPERAND_WORDS:  # the memory kernels address operands with 32-bit integers
                raise UserInputError(f"{where}: the {what} operand has {words:,} words; the simulator handles at "
                                     f"most {MAX_OPERAND_WORDS:,} per operand")
        return self


@dataclass(frozen=True)
class VectorLayer:
    name: str
    op: str
    elements: int  # output elements
    flops: int  # vector operations
    words_read: int  # DRAM words (operand elements) read; bytes = words x the accelerator's word_bytes
    words_written: int

    def shape_text(self) -> str:
        return f"{self.elements} elems"


@dataclass(frozen=True)
class BranchChoice:
    """Alternative primitive lists (an If's branches); the engine keeps the one that takes longest."""

    name: str
    op: str
    branches: tuple[tuple, ...]
    labels: tuple[str, ...]


class Uncosted(Exception):
    """The simulator has no cost model for a node (the message says why)."""


@dataclass
class Lowering:
    """``lower``'s result: (node, primitives) for every node that does work, and the nodes that could not
    be costed as {"name", "op", "reason"} (qualified "outer/inner" inside control-flow bodies)."""

    items: list[tuple[Node, list]] = field(default_factory=list)
    uncosted: list[dict] = field(default_factory=list)

    def __iter__(self):
        return iter(self.items)

    @property
    def primitives(self) -> list:
        return [p for _, ps in self.items for p in ps]


def gemm_layer(name: str, op: str, m: int, n: int, k: int, repeat: int = 1) -> ArrayLayer:
    """A GEMM as SCALE-Sim's GEMM mode writes it: ifmap M x K (H=M, W=K, R=1, S=K, C=1), N filters."""
    return ArrayLayer(name, op, H=m, W=k, R=1, S=k, C=1, N=n, repeat=repeat)


def repeated(prims: list, k: int, prefix: str = "") -> list:
    """``prims`` run ``k`` times back to back (array layers: repeat x k; vector work x k), names prefixed."""
    out = []
    for p in prims:
        name = prefix + p.name
        if isinstance(p, ArrayLayer):
            out.append(dataclasses.replace(p, name=name, repeat=p.repeat * k))
        elif isinstance(p, VectorLayer):
            out.append(dataclasses.replace(p, name=name, elements=p.elements * k, flops=p.flops * k,
                                           words_read=p.words_read * k, words_written=p.words_written * k))
        else:
            out.append(dataclasses.replace(p, name=name, branches=tuple(tuple(repeated(list(b), k, prefix))
                                                                        for b in p.branches)))
    return out


def _static(shape, what: str, node: Node) -> tuple[int, ...]:
    if shape is not None and num_elements(shape) is not None:
        return tuple(shape)
    stop = _shapes_stop(node)
    if isinstance(stop, Node):  # a Conv or MatMul after a custom op said only "unknown" (an outside check)
        raise UserInputError(f"{node.describe()}: its {what} shape is {'unknown' if shape is None else shape}"
                             f"{_stop_text(stop)}; the simulator needs static shapes")
    if shape is None:
        raise UserInputError(f"{node.describe()}: its {what} shape is unknown (shape inference could not infer it); "
                             "the simulator needs static shapes")
    # name what lacks a size: "fix the batch size" misled where H and W were open
    if not any(isinstance(d, str) for d in shape):  # no symbol to bind: --dim cannot help (a review: a TopK with
        # k=-1 has no size any run can have; `inspect` lists why)
        raise UserInputError(f"{node.describe()}: {what} shape {shape} is not static: shape inference could not "
                             "size it (`graphmill inspect` lists the problems it found); the simulator needs a "
                             "size for every dimension")
    open_dims = ", ".join(str(d) for d in shape if not isinstance(d, int)) or "?"
    raise UserInputError(f"{node.describe()}: {what} shape {shape} is not static (no size for {open_dims}); the "
                         "simulator needs a size for every dimension (bind the symbols: --dim NAME=SIZE where a "
                         "command has it, or build the model with fixed sizes)")


def _tshape(v) -> tuple | None:
    return v.type.shape if v is not None and isinstance(v.type, TensorType) else None


def _is_static(v) -> bool:
    shape = _tshape(v)
    return shape is not None and num_elements(shape) is not None


def _shapes_stop(node: Node) -> Node | Value | None:
    """Where the shapes stopped before ``node`` (``where_shapes_stop`` over inputs without a static shape): an op
    whose inputs are static and outputs are not (an op without shape inference: a custom domain's), or the graph
    input whose size is not static (a symbolic one: ``--dim`` binds it); None when ``node``'s own inputs are
    static."""
    return where_shapes_stop(node, lambda v: not _is_static(v))


def _stop_text(stop: Node) -> str:
    return f" (the shapes stop at {stop.describe()}, whose output shape is not inferred: declare it in the model's " \
        "value_info)"


def _not_static(node: Node) -> UserInputError:
    """"output shape is not static", with where the shapes stopped (``_shapes_stop``), or the graph input with a
    symbolic size. The message named the first costed op after a custom one, whose own shape rule was fine (an
    outside check)."""
    stop = _shapes_stop(node)
    if isinstance(stop, Node):
        return UserInputError(f"{node.describe()}: output shape is not static{_stop_text(stop)}; the simulator needs "
                              "static shapes")
    said = "" if stop is None else f" (input {stop.name!r} has shape {_tshape(stop)})"
    return UserInputError(f"{node.describe()}: output shape is not static{said}; the simulator needs static shapes")


def _elements(v) -> int:
    """Elements of a value with a static shape (0 when absent or unknown)."""
    shape = _tshape(v)
    n = num_elements(shape) if shape is not None else None
    return n or 0


def _words(values) -> int:
    """DRAM words (elements) of the present values: one word per element, whatever the dtype, as the
    array counts its operands (the accelerator's ``word_bytes`` sets the bytes)."""
    return sum(_elements(v) for v in values if v is not None)


def _input(node: Node, i: int):
    return node.inputs[i] if len(node.inputs) > i else None


def _lower_conv(node: Node, name: str) -> list:
    op = node.op_type
    wi = 3 if op == "QLinearConv" else 1
    xs = _static(_tshape(node.inputs[0]), "input", node)
    ws = _static(_tshape(node.inputs[wi]), "weight", node)
    ys = _static(_tshape(node.outputs[0]), "output", node)
    if len(xs) not in (3, 4, 5):
        raise UserInputError(f"{node.describe()}: only 1-D, 2-D and 3-D convolutions are simulated "
                             f"(input rank {len(xs)})")
    if len(ws) != len(xs) or len(ys) != len(xs):
        raise UserInputError(f"{node.describe()}: input, weight and output ranks differ ({len(xs)}, {len(ws)}, "
                             f"{len(ys)}): the model declares a shape its Conv cannot give")
    win = read_window(InferenceContext(node, 0, {}), tuple(ws[2:]))
    group = int(node.attr("group", 1))
    if group < 1 or xs[1] % group or ys[1] % group or ws[1] * group != xs[1]:
        raise UserInputError(f"{node.describe()}: group {group} does not fit {xs[1]} input and {ys[1]} output "
                             f"channels with a weight of {ws[1]} input channels per group")
    n_batch, cout, ow = ys[0], ys[1], ys[-1]
    frames, taps = 1, 1
    if len(xs) == 3:  # 1-D (nn.Conv1d): a 2-D convolution of height 1
        oh, kh, kw, sh, sw = 1, 1, win.extent(0), 1, win.strides[0]
    else:
        # 3-D (video) convolutions: each output frame is a 2-D convolution over the kt input frames it reads,
        # stacked as channels (the same MACs; the ifmap is read again for every output frame)
        lead = len(xs) - 4
        if lead:
            frames, taps = ys[2], win.extent(0)
        oh = ys[-2]
        kh, kw = win.extent(lead), win.extent(lead + 1)  # dilation widens the window (approximation: dense taps)
        sh, sw = win.strides[lead], win.strides[lead + 1]
    # The padded input SCALE-Sim sees: exactly what the output size implies.
    hp, wp = (oh - 1) * sh + kh, (ow - 1) * sw + kw
    lay = ArrayLayer(name, op, H=hp, W=wp, R=kh, S=kw, C=ws[1] * taps, N=cout // group, stride_h=sh, stride_w=sw,
                     repeat=n_batch * group * frames)
    return [lay.validate(node.describe())]


def _lower_conv_transpose(node: Node, name: str) -> list:
    """ConvTranspose as the GEMM it is (each input pixel times the weight: M = batch x input pixels, N = output
    channels per group x kernel taps, K = input channels per group; groups as ``repeat``), then, where windows
    overlap, the col2im sum on the vector unit: it reads the M x N partial products the GEMM wrote and writes the
    output (without overlap the partial products are the output's elements). It ran on the vector unit whole,
    2 x MACs / lanes: 258 times an equal-MAC Conv (an outside check)."""
    xs = _static(_tshape(node.inputs[0]), "input", node)
    ws = _static(_tshape(node.inputs[1]), "weight", node)
    ys = _static(_tshape(node.outputs[0]), "output", node)
    if len(xs) < 3 or len(ws) != len(xs) or len(ys) != len(xs):
        raise UserInputError(f"{node.describe()}: input, weight and output ranks ({len(xs)}, {len(ws)}, {len(ys)}) "
                             "are no transposed convolution's")
    group = int(node.attr("group", 1))
    if group < 1 or xs[1] % group or ws[0] != xs[1]:
        raise UserInputError(f"{node.describe()}: group {group} does not fit {xs[1]} input channels with a weight "
                             f"of {ws[0]} input channels")
    m, n, k = xs[0] * math.prod(xs[2:]), ws[1] * math.prod(ws[2:]), xs[1] // group
    prims: list = [gemm_layer(name, node.op_type, m, n, k, repeat=group).validate(node.describe())]
    win = read_window(InferenceContext(node, 0, {}), tuple(ws[2:]))  # Conv's reading of the window attributes
    if any(_windows_overlap(length, kk, s, d) for length, kk, s, d in zip(xs[2:], ws[2:], win.strides,
                                                                          win.dilations)):
        partial = m * n * group
        prims.append(VectorLayer(f"{name}:col2im", node.op_type, num_elements(ys), partial, partial,
                                 num_elements(ys)))
    return prims


def _windows_overlap(length: int, kernel: int, stride: int, dilation: int) -> bool:
    """Whether two input positions of a transposed convolution write one output position along an axis: taps j1,
    j2 and inputs i1, i2 with stride x (i1 - i2) = dilation x (j2 - j1), whose least solution is i apart by
    dilation / g and j by stride / g (g their gcd); a 1-pixel input or taps that never meet (stride 2, dilation 3,
    kernel 2) have no sum to do (a review)."""
    g = math.gcd(stride, dilation)
    return stride // g <= kernel - 1 and dilation // g <= length - 1


def _lower_matmul(node: Node, name: str) -> list:
    op = node.op_type
    if op == "Gemm" or op == "FusedGemm":
        a = _static(_tshape(node.inputs[0]), "A", node)
        b = _static(_tshape(node.inputs[1]), "B", node)
        m, k = (a[1], a[0]) if node.attr("transA", 0) else (a[0], a[1])
        n = b[0] if node.attr("transB", 0) else b[1]
        return [gemm_layer(name, op, m, n, k).validate(node.describe())]
    bi = 3 if op == "QLinearMatMul" else 1
    a = _static(_tshape(node.inputs[0]), "A", node)
    b = _static(_tshape(node.inputs[bi]), "B", node)
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if node.attr("transA", 0):  # FusedMatMul
        a2 = a2[:-2] + (a2[-1], a2[-2])
    if node.attr("transB", 0):
        b2 = b2[:-2] + (b2[-1], b2[-2])
    ys = _static(_tshape(node.outputs[0]), "output", node)
    batch = max(1, num_elements(ys) // max(1, a2[-2] * b2[-1]))
    return [gemm_layer(name, op, a2[-2], b2[-1], a2[-1], repeat=batch).validate(node.describe())]


def _lower_einsum(node: Node, name: str) -> list | None:
    """A two-operand Einsum as the batched matrix product it is: labels in both operands and the output are the
    batch (``repeat``), in one operand and the output M or N, in neither output K (summed). Three or more: the
    loop nest the registry counts ((operands - 1) MACs per point of all labels), as that many matrix-vector
    products of the output's points by the summed labels (they went to the vector unit with 0 MACs, where
    ``inspect`` counted them; an outside check). None for one operand (a reduction: the vector unit)."""
    shapes = [_static(_tshape(v), f"operand {i}", node) for i, v in enumerate(node.inputs)]
    read = einsum_labels(str(node.attr("equation", "")), shapes)
    if read is None or len(read[0]) < 2:
        return None
    if len(read[0]) > 2:
        ops, out, size = read
        every = set().union(*map(set, ops))
        points_out = math.prod(size[c] for c in set(out))
        summed = math.prod(size[c] for c in every - set(out))
        if points_out * summed == 0:
            return []
        return [gemm_layer(name, node.op_type, points_out, 1, summed, repeat=len(ops) - 1).validate(node.describe())]
    (a, b), out, size = read
    a, b, o = set(a), set(b), set(out)

    def extent(labels: set) -> int:
        return math.prod(size[c] for c in labels)

    batch, m, n, k = extent(a & b & o), extent((a - b) & o), extent((b - a) & o), extent((a | b) - o)
    if batch * m * n * k == 0:
        return []
    return [gemm_layer(name, node.op_type, m, n, k, repeat=batch).validate(node.describe())]


_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_DEFAULT_ACTS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}


def _activation_flops(node: Node) -> list[int]:
    acts = node.attr("activations") or _DEFAULT_ACTS[node.op_type]
    names = [a.decode() if isinstance(a, bytes) else str(a) for a in acts]
    return [_VECTOR_FLOPS.get(a, 4) for a in names]


def _lower_recurrent(node: Node, name: str) -> list:
    """LSTM / GRU / RNN (ONNX semantics): per time step and direction, X_t·W^T and H_{t-1}·R^T on the array
    and the gate math on the vector unit. Vector flops per batch row and step (H = hidden size, b = 1 with
    a bias input, f/g/h the activations' costs): LSTM 4H(1+2b) + 3H f + H g + 3H (cell) + H h + H (+6H
    peepholes); GRU 3H(1+2b) + H (r*(H·R)) + 2H f + H g + 4H (state update); RNN H(1+2b) + H f."""
    op = node.op_type
    xs = _static(_tshape(node.inputs[0]), "X", node)
    ws = _static(_tshape(node.inputs[1]), "W", node)
    if len(xs) != 3 or len(ws) != 3:
        raise UserInputError(f"{node.describe()}: X and W must have rank 3 (got {len(xs)} and {len(ws)})")
    layout = int(node.attr("layout", 0))
    steps, batch = (xs[1], xs[0]) if layout else (xs[0], xs[1])
    direction = node.attr("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    dirs = 2 if direction == "bidirectional" else 1
    gates = _GATES[op]
    hidden = int(node.attr("hidden_size", ws[1] // gates))
    inp = xs[2]
    if steps * batch * hidden * inp == 0:
        return []
    n = steps * dirs  # one H·R array pass per time step and direction
    where = node.describe()
    # X·W^T of all time steps at once (per direction): it does not depend on the recurrence.
    prims = [gemm_layer(f"{name}/XW", op, steps * batch, gates * hidden, inp, repeat=dirs).validate(where)]
    rec = dict(recurrent_words=gates * hidden * hidden, weight_sets=dirs)  # R of one direction
    if op == "GRU" and not int(node.attr("linear_before_reset", 0)):
        prims.append(dataclasses.replace(gemm_layer(f"{name}/HR[z,r]", op, batch, 2 * hidden, hidden, repeat=n),
                                         **rec).validate(where))
        prims.append(dataclasses.replace(gemm_layer(f"{name}/HR[h]", op, batch, hidden, hidden, repeat=n),
                                         **rec).validate(where))
    else:
        prims.append(dataclasses.replace(gemm_layer(f"{name}/HR", op, batch, gates * hidden, hidden, repeat=n),
                                         **rec).validate(where))
    b = 1 if _input(node, 3) is not None else 0
    act = _activation_flops(node)
    H = hidden
    if op == "LSTM":
        flops = 4 * H * (1 + 2 * b) + 3 * H * act[0] + H * act[1] + 3 * H + H * act[2] + H
        if _input(node, 7) is not None:
            flops += 6 * H
        states_in, states_out = 1, 2  # c_{t-1}; h_t, c_t
    elif op == "GRU":
        flops = 3 * H * (1 + 2 * b) + H + 2 * H * act[0] + H * act[1] + 4 * H
        states_in, states_out = 0, 1
    else:
        flops = H * (1 + 2 * b) + H * act[0]
        states_in, states_out = 0, 1
    rows = n * batch  # words: the two gate pre-activations (X·W, H·R) and the states in; the states out
    prims.append(VectorLayer(f"{name}/gates", op, rows * gates * H, rows * flops,
                             rows * (2 * gates * H + states_in * H), rows * states_out * H))
    return prims


def _lower_gather(node: Node, name: str) -> list:
    ys = _tshape(node.outputs[0])
    if ys is None or num_elements(ys) is None:
        raise _not_static(node)
    elems = num_elements(ys)
    ids = _elements(node.inputs[1]) if len(node.inputs) > 1 else 0
    return [VectorLayer(name, node.op_type, elems, max(elems, 1), elems + ids, elems)]


def _body(node: Node, graph: Graph, name: str, uncosted: list[dict]) -> list:
    sub = lower(graph)
    uncosted.extend({**u, "name": f"{name}/{u['name']}"} for u in sub.uncosted)
    return repeated(sub.primitives, 1, f"{name}/")


def _lower_control_flow(node: Node, name: str, uncosted: list[dict]) -> list:
    op = node.op_type
    if op == "Loop":
        count, why = loop_runs(node)
        if count is None:
            raise Uncosted(why)
        return repeated(_body(node, node.attr("body"), name, uncosted), count)
    if op == "Scan":
        n_scan = int(node.attr("num_scan_inputs", 0))
        if n_scan < 1:
            raise Uncosted("it has no scan inputs")
        first = node.inputs[len(node.inputs) - n_scan]
        axes = node.attr("scan_input_axes") or [0] * n_scan
        shape = _static(_tshape(first), "scan input", node)
        axis = int(axes[0]) % len(shape) if shape else 0
        return repeated(_body(node, node.attr("body"), name, uncosted), shape[axis] if shape else 1)
    branch = if_branch(node)
    if branch is not None:
        return _body(node, node.attr(branch), f"{name}/{branch[:4]}", uncosted)
    then = _body(node, node.attr("then_branch"), f"{name}/then", uncosted)
    other = _body(node, node.attr("else_branch"), f"{name}/else", uncosted)
    return [BranchChoice(name, op, (tuple(then), tuple(other)), ("then", "else"))]


def lower_node(node: Node, uncosted: list[dict] | None = None) -> list:
    """Primitives for one node (empty when it is free or fused). Raises ``Uncosted`` when the simulator has
    no cost model for it; nodes inside a control-flow body that cannot be costed are appended to
    ``uncosted`` (the body's other nodes are costed). A node whose shapes or attributes contradict each other
    (a file's declared output of another rank than its op gives, a Conv of group 0) is refused in one line naming
    it: it ended in an IndexError or ZeroDivisionError traceback (an outside check)."""
    try:
        return _lower_node(node, uncosted)
    except (IndexError, ZeroDivisionError, KeyError, TypeError, ValueError, OverflowError) as e:
        raise UserInputError(f"{node.describe()}: cannot be simulated: its shapes or attributes do not fit its op "
                             f"({type(e).__name__}: {e})") from None


def _lower_node(node: Node, uncosted: list[dict] | None) -> list:
    name = node.name or node.op_type
    op = node.op_type
    dom = node.domain
    if node.meta.get(FUSED_KEY):
        return []
    std = dom in _STANDARD
    if (std and op in ("Conv", "ConvInteger", "QLinearConv")) or (dom == _MS and op == "FusedConv"):
        return _lower_conv(node, name)
    if std and op == "ConvTranspose":
        return _lower_conv_transpose(node, name)
    if (std and op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul")) or \
            (dom == _MS and op in ("FusedGemm", "FusedMatMul")):
        return _lower_matmul(node, name)
    if std and op in _GATES:
        return _lower_recurrent(node, name)
    if std and op == "Einsum" and (product := _lower_einsum(node, name)) is not None:
        return product
    if std and op == "Gather":
        return _lower_gather(node, name)
    if std and op in ("Loop", "Scan", "If"):
        return _lower_control_flow(node, name, uncosted if uncosted is not None else [])
    if std and op in _FREE:
        return []
    if dom == "graphmill" and op == "MoE":  # gate and per-expert GEMMs (expert_parallel.py)
        from .expert_parallel import moe_primitives
        return moe_primitives(node, name)
    cost = node_cost(node)
    if cost is None:
        where = f"domain {dom!r}" if not std else "the op registry"
        raise Uncosted(f"no cost model for {op} in {where}")
    ys = _tshape(node.outputs[0]) if node.outputs and node.outputs[0] is not None else None
    elems = num_elements(ys) if ys is not None else None
    if elems is None:
        raise _not_static(node)
    per = _VECTOR_FLOPS.get(op, 1)
    flops = max(cost.flops if cost.known else 0, elems * per, 1)
    return [VectorLayer(name, op, elems, flops, _words(node.inputs), _words(node.outputs))]


def lower(graph: Graph) -> Lowering:
    """(node, primitives) for every node of ``graph`` that does work at inference (constant nodes and shape
    arithmetic excluded), and the nodes the simulator could not cost."""
    constant = constant_values(graph)
    shape_math = computed_from_shapes(graph, constant)[1]  # host-side shape math
    out = Lowering()
    for n in graph.nodes:
        if is_constant_node(n, constant) or id(n) in shape_math:
            continue
        try:
            out.items.append((n, lower_node(n, out.uncosted)))
        except Uncosted as e:
            out.uncosted.append({"name": n.name or n.op_type, "op": n.qualified_op, "reason": str(e)})
    return out
