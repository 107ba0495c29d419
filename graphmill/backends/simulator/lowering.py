"""Lowering: IR nodes -> simulator primitives.

* ``ArrayLayer``: a matrix product on the systolic array, described the way SCALE-Sim describes a
  convolution (padded input H x W, filter R x S, C channels, N filters, stride), so that
  M = output pixels, N = filters, K = R*S*C (im2col). Gemm/MatMul are the 1-column convolution SCALE-Sim's
  GEMM mode uses (H=M, W=K, R=1, S=K, C=1). ``repeat`` counts identical instances that run back to back:
  batch, conv groups (a grouped/depthwise conv is lowered per group: C = Cin/group, N = Cout/group) and
  MatMul batch dims.
* ``VectorLayer``: elementwise ops, pooling, softmax, normalization on the vector unit.
* Nodes with ``node.meta["fused_into"]`` set (the name of the node that absorbs them, e.g. a Relu after a
  Conv, set by a fusion pass) cost nothing extra: they are lowered to nothing.
* Shape-only ops (Reshape, Flatten, Transpose of constants, ...) and constants are free.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphmill.ir import Graph, Node, UserInputError
from graphmill.ir.summary import constant_values, is_constant_node, node_cost
from graphmill.ir.ops.registry import InferenceContext
from graphmill.ir.ops.window import read_window
from graphmill.ir.types import TensorType, num_elements

FUSED_KEY = "fused_into"

_FREE = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Constant", "Dropout",
                   "ConstantOfShape", "Cast", "Gather", "Slice", "Concat", "Transpose", "Split", "Expand"})
_VECTOR_FLOPS = {"Softmax": 5, "LogSoftmax": 5, "BatchNormalization": 2, "LayerNormalization": 8,
                 "InstanceNormalization": 8, "GroupNormalization": 8, "Sigmoid": 4, "Tanh": 4, "Gelu": 8,
                 "Erf": 4, "Exp": 2, "HardSwish": 3, "HardSigmoid": 2, "Relu": 1, "Clip": 1, "LeakyRelu": 2}


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
        return self


@dataclass(frozen=True)
class VectorLayer:
    name: str
    op: str
    elements: int  # output elements
    flops: int  # vector operations
    bytes_read: int
    bytes_written: int

    def shape_text(self) -> str:
        return f"{self.elements} elems"


def gemm_layer(name: str, op: str, m: int, n: int, k: int, repeat: int = 1) -> ArrayLayer:
    """A GEMM as SCALE-Sim's GEMM mode writes it: ifmap M x K (H=M, W=K, R=1, S=K, C=1), N filters."""
    return ArrayLayer(name, op, H=m, W=k, R=1, S=k, C=1, N=n, repeat=repeat)


def _static(shape, what: str, node: Node) -> tuple[int, ...]:
    if shape is None or num_elements(shape) is None:
        raise UserInputError(f"{node.describe()}: {what} shape {shape} is not static; the simulator needs "
                             "static shapes (fix the batch size, e.g. build the model with batch=1)")
    return tuple(shape)


def _tshape(v) -> tuple | None:
    return v.type.shape if v is not None and isinstance(v.type, TensorType) else None


def lower_node(node: Node) -> list:
    """Primitives for one node (empty when it is free or fused)."""
    name = node.name or node.op_type
    op = node.op_type
    if node.meta.get(FUSED_KEY):
        return []
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        wi = 3 if op == "QLinearConv" else 1
        xs = _static(_tshape(node.inputs[0]), "input", node)
        ws = _static(_tshape(node.inputs[wi]), "weight", node)
        ys = _static(_tshape(node.outputs[0]), "output", node)
        if len(xs) != 4:
            raise UserInputError(f"{node.describe()}: only 2-D convolutions are simulated (input rank {len(xs)})")
        win = read_window(InferenceContext(node, 0, {}), tuple(ws[2:]))
        group = int(node.attr("group", 1))
        n_batch, cout, oh, ow = ys
        kh, kw = win.extent(0), win.extent(1)  # dilation widens the window (approximation: dense taps)
        sh, sw = win.strides
        # The padded input SCALE-Sim sees: exactly what the output size implies.
        hp, wp = (oh - 1) * sh + kh, (ow - 1) * sw + kw
        lay = ArrayLayer(name, op, H=hp, W=wp, R=kh, S=kw, C=ws[1], N=cout // group, stride_h=sh, stride_w=sw,
                         repeat=n_batch * group)
        return [lay.validate(node.describe())]
    if op == "Gemm":
        a = _static(_tshape(node.inputs[0]), "A", node)
        b = _static(_tshape(node.inputs[1]), "B", node)
        m, k = (a[1], a[0]) if node.attr("transA", 0) else (a[0], a[1])
        n = b[0] if node.attr("transB", 0) else b[1]
        return [gemm_layer(name, op, m, n, k).validate(node.describe())]
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        bi = 3 if op == "QLinearMatMul" else 1
        a = _static(_tshape(node.inputs[0]), "A", node)
        b = _static(_tshape(node.inputs[bi]), "B", node)
        a2 = (1,) + a if len(a) == 1 else a
        b2 = b + (1,) if len(b) == 1 else b
        ys = _static(_tshape(node.outputs[0]), "output", node)
        batch = max(1, num_elements(ys) // (a2[-2] * b2[-1]))
        return [gemm_layer(name, op, a2[-2], b2[-1], a2[-1], repeat=batch).validate(node.describe())]
    if op in _FREE:
        return []
    ys = _tshape(node.outputs[0]) if node.outputs and node.outputs[0] is not None else None
    elems = num_elements(ys) if ys is not None else None
    if elems is None:
        raise UserInputError(f"{node.describe()}: output shape is not static; the simulator needs static shapes")
    cost = node_cost(node)
    per = _VECTOR_FLOPS.get(op, 1)
    flops = max(cost.flops if cost is not None and cost.known else 0, elems * per, 1)
    br = cost.bytes_read if cost is not None else 0
    bw = cost.bytes_written if cost is not None else 0
    return [VectorLayer(name, op, elems, flops, br, bw)]


def lower(graph: Graph) -> list[tuple[Node, list]]:
    """(node, primitives) for every top-level node that does work at inference (constant nodes excluded)."""
    constant = constant_values(graph)
    out = []
    for n in graph.nodes:
        if is_constant_node(n, constant):
            continue
        out.append((n, lower_node(n)))
    return out
