"""Channel groups: which tensor axes must keep the same size, and resizing them.

The analysis walks the nodes and ties together, with a union-find, every
"channel slot" that must have the same size: axis 1 of a non-constant tensor
(NCHW, or [N, C] after Flatten) and the matching axes of the constants that
act on it (a Conv weight's output and input axes, a BatchNormalization's
parameters, a Gemm weight, a channel-wise constant in Add/Mul). A group that
holds the output of a Conv/ConvTranspose/Gemm/MatMul is a *source* group and
may be resized; one that touches a graph input or a graph output is *fixed*
(the image channels, the classifier's classes); one that passes through an op
whose channel semantics are not known (a Reshape with hard-coded channels, a
Transpose, a grouped convolution, a Split) is *blocked*, and resizing it is
refused with an error naming that node. Concat along channels produces a
*derived* group whose size is the sum of its parts.

``resize_groups`` then rewrites every constant of a resized group (copying the
overlap, filling new entries reproducibly, see ``_resize_array``), fixes the
attributes that follow channel counts (depthwise ``group``, a flatten-like
Reshape's target shape), and clears the stale types of the values so the
caller re-infers them.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from graphmill.ir import Graph, Node, Tensor, TensorType, UserInputError, Value
from graphmill.util.limits import max_elements

# Ops whose output has the input's channels, element- or channel-wise.
SAME = frozenset({
    "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "Softplus",
    "Softsign", "Erf", "Gelu", "Mish", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Identity", "Dropout",
    "Cast", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool", "LRN",
    "Softmax", "LogSoftmax", "Floor", "Ceil", "Round", "Sign", "ThresholdedRelu", "Shrink", "Not",
})
# Elementwise with numpy broadcasting.
BROADCAST = frozenset({"Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean", "Pow", "PRelu", "Where"})
# Reductions: they keep the channels when they reduce only axes after the channel axis.
REDUCE = frozenset({"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
                    "ReduceLogSumExp", "ReduceSumSquare", "ReduceLogSum"})
# Reading a tensor's shape or nothing of its channels.
NEUTRAL = frozenset({"Shape", "Size"})


class WidthError(UserInputError):
    """Channel counts cannot be changed through some node."""


@dataclass
class ChannelGroups:
    parent: dict = field(default_factory=dict)
    size: dict = field(default_factory=dict)  # element -> its size
    values: dict = field(default_factory=dict)  # id -> Value
    sources: set = field(default_factory=set)  # elements that are a source op's output
    fixed: dict = field(default_factory=dict)  # element -> why
    blocked: dict = field(default_factory=dict)  # element -> (node, why)
    derived: dict = field(default_factory=dict)  # element -> list of part elements (Concat)
    out_axis: dict = field(default_factory=dict)  # id(const value) -> axis that indexes output channels
    depthwise: list = field(default_factory=list)  # (node, element) whose ``group`` follows the channels
    flat_reshapes: list = field(default_factory=list)  # Reshape nodes whose shape[1] must become -1

    def el(self, v: Value, axis: int) -> tuple:
        key = (id(v), axis)
        if key not in self.parent:
            self.parent[key] = key
            self.values[id(v)] = v
            shape = v.shape
            self.size[key] = shape[axis] if shape is not None and axis < len(shape) else None
        return key

    def find(self, k: tuple) -> tuple:
        while self.parent[k] != k:
            self.parent[k] = self.parent[self.parent[k]]
            k = self.parent[k]
        return k

    def union(self, a: tuple, b: tuple) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def groups(self) -> dict[tuple, list[tuple]]:
        out: dict[tuple, list[tuple]] = {}
        for k in self.parent:
            out.setdefault(self.find(k), []).append(k)
        return out

    def group_size(self, members: list[tuple]) -> int | None:
        for m in members:
            if isinstance(self.size.get(m), int):
                return self.size[m]
        return None


def _is_const(v: Value | None, constant: set[int]) -> bool:
    return v is not None and id(v) in constant


def _rank(v: Value | None) -> int | None:
    s = v.shape if v is not None else None
    return None if s is None else len(s)


def _const_array(v: Value) -> np.ndarray | None:
    return v.const.numpy() if v.const is not None else None


def _concat_entries(v: Value, batch) -> list[int | None]:
    """The entries of a shape operand built by ``Concat`` along axis 0: constants where a part is one, None for
    a part that reads a batch of size ``batch`` with ``Shape`` (``x.size(0)``); [] when the form is another (a
    computed part of another size: ``x.view(x.size(1), -1)`` must not pass for the batch)."""
    p = v.producer
    if p is None or p.op_type != "Concat" or int(p.attr("axis", 0)) != 0:
        return []
    out: list[int | None] = []
    for part in p.inputs:
        arr = _const_array(part) if part is not None else None
        if arr is not None and arr.ndim == 1:
            out += [int(a) for a in arr]
        elif part is not None and part.shape is not None and tuple(part.shape) == (1,) and _reads_batch(part, batch):
            out.append(None)
        else:
            return []
    return out


def _reads_batch(v: Value, batch) -> bool:
    """Whether ``v`` is dimension 0 of a tensor whose dimension 0 is ``batch``: Gather(Shape(t), 0), Slice(Shape(t),
    0, 1) or Shape(t, start=0, end=1), through Unsqueeze/Cast/Identity."""
    while v.producer is not None and v.producer.op_type in ("Unsqueeze", "Cast", "Identity"):
        v = v.producer.input_at(0)
    p = v.producer
    if p is None:
        return False
    if p.op_type == "Shape":
        src = p.input_at(0)
        ok = int(p.attr("start", 0)) == 0 and p.attr("end") in (1,)
    elif p.op_type in ("Gather", "Slice") and p.input_at(0) is not None and p.input_at(0).producer is not None \
            and p.input_at(0).producer.op_type == "Shape" and not p.input_at(0).producer.attrs:
        src = p.input_at(0).producer.input_at(0)
        first = [_const_array(p.input_at(i)) if p.input_at(i) is not None else None
                 for i in ((1,) if p.op_type == "Gather" else (1, 2))]
        axes = _const_array(p.input_at(3)) if p.op_type == "Slice" and p.input_at(3) is not None else None
        ok = (all(a is not None and a.size == 1 for a in first)
              and [int(a.reshape(-1)[0]) for a in first] == ([0] if p.op_type == "Gather" else [0, 1])
              and (p.op_type == "Gather" or p.input_at(3) is None or (axes is not None and axes.size == 1
                                                                      and int(axes.reshape(-1)[0]) == 0)))
    else:
        return False
    shape = src.shape if src is not None else None
    return ok and shape is not None and len(shape) > 0 and shape[0] == batch


def analyze(nodes: Iterable[Node], *, constant: set[int], graph_inputs: Iterable[Value] = (),
            graph_outputs: Iterable[Value] = ()) -> ChannelGroups:
    """Channel groups of ``nodes`` (in topological order); constants are the ids in ``constant``."""
    cg = ChannelGroups()
    for v in graph_inputs:
        if id(v) not in constant and (_rank(v) or 0) >= 2:
            cg.fixed[cg.el(v, 1)] = f"graph input %{v.name}"
    for v in graph_outputs:
        if id(v) not in constant and (_rank(v) or 0) >= 2:
            cg.fixed[cg.el(v, 1)] = f"graph output %{v.name}"

    def block(node: Node, why: str) -> None:
        for v in list(node.inputs) + list(node.outputs):
            if v is not None and id(v) not in constant and (_rank(v) or 0) >= 2:
                cg.blocked[cg.el(v, 1)] = (node, why)

    def const_tie(c: Value, axis: int, other: tuple, out_axis: int | None = None) -> None:
        if c.const is None:
            raise WidthError(f"{node.describe()}: its weight %{c.name} is computed, not an initializer; "
                             "run fold-constants first")
        cg.union(cg.el(c, axis), other)
        if out_axis is not None:
            cg.out_axis[id(c)] = out_axis

    for node in nodes:
        if id(node.outputs[0]) in constant if node.outputs and node.outputs[0] is not None else False:
            continue  # weight construction
        op = node.op_type
        ins, outs = node.inputs, node.outputs
        x = ins[0] if ins else None
        y = outs[0] if outs else None
        if node.domain not in ("", "ai.onnx"):
            block(node, f"op {node.domain}::{op} has no known channel semantics")
            continue
        if op in NEUTRAL or y is None:
            continue
        ry = _rank(y)
        if op in SAME:
            if x is not None and id(x) not in constant and (ry or 0) >= 2 and _rank(x) == ry:
                cg.union(cg.el(x, 1), cg.el(y, 1))
            continue
        if op in ("BatchNormalization", "InstanceNormalization"):
            if (ry or 0) < 2:
                block(node, "rank below 2")
                continue
            e = cg.el(y, 1)
            cg.union(cg.el(x, 1), e)
            for p in ins[1:]:
                if p is not None:
                    const_tie(p, 0, e, out_axis=0)
            continue
        if op in BROADCAST:
            if ry is None or ry < 2:
                continue
            ey = cg.el(y, 1)
            cy = y.shape[1]
            for v in ins:
                if v is None:
                    continue
                r = _rank(v)
                if r is None:
                    block(node, f"input %{v.name} of unknown rank")
                    break
                ax = 1 - (ry - r)
                if ax < 0 or v.shape[ax] == 1:
                    continue
                if v.shape[ax] != cy:
                    block(node, "broadcast over channels it cannot follow")
                    break
                if id(v) in constant:
                    if op == "Where" or v.const is None:
                        block(node, f"constant %{v.name} spans the channels")
                        break
                    const_tie(v, ax, ey, out_axis=ax)
                else:
                    if ax != 1:
                        block(node, "inputs of different ranks")
                        break
                    cg.union(cg.el(v, 1), ey)
            continue
        if op in ("Conv", "ConvTranspose"):
            w = ins[1] if len(ins) > 1 else None
            b = ins[2] if len(ins) > 2 else None
            if w is None or id(w) not in constant or w.const is None or (ry or 0) < 3:
                block(node, "its weight is not an initializer")
                continue
            g = int(node.attr("group", 1))
            ws = w.const.shape
            ex, ey = cg.el(x, 1), cg.el(y, 1)
            if op == "Conv":
                cin = x.shape[1] if x.shape else None
                if g == 1:
                    const_tie(w, 1, ex)
                    const_tie(w, 0, ey, out_axis=0)
                    cg.sources.add(ey)
                elif g == cin and ws[1] == 1 and ws[0] == g:
                    cg.union(ex, ey)
                    const_tie(w, 0, ey, out_axis=0)
                    cg.depthwise.append((node, ey))
                else:
                    block(node, f"grouped convolution (group={g}) that is not depthwise")
                    continue
            else:
                if g != 1:
                    block(node, f"grouped transposed convolution (group={g})")
                    continue
                const_tie(w, 0, ex)
                const_tie(w, 1, ey, out_axis=1)
                cg.sources.add(ey)
            if b is not None:
                const_tie(b, 0, ey, out_axis=0)
            continue
        if op in ("Gemm", "MatMul"):
            w = ins[1] if len(ins) > 1 else None
            if (w is None or id(w) not in constant or w.const is None or _rank(x) != 2 or len(w.const.shape) != 2
                    or (op == "Gemm" and node.attr("transA", 0))):
                block(node, "not a [N, K] x constant [K, M] product")
                continue
            tb = op == "Gemm" and bool(node.attr("transB", 0))
            ex, ey = cg.el(x, 1), cg.el(y, 1)
            const_tie(w, 1 if tb else 0, ex)
            const_tie(w, 0 if tb else 1, ey, out_axis=0 if tb else 1)
            cg.sources.add(ey)
            c = ins[2] if len(ins) > 2 else None
            if c is not None and _rank(c) and c.shape[-1] != 1:
                if c.const is None:
                    block(node, "its bias is computed")
                    continue
                const_tie(c, len(c.const.shape) - 1, ey, out_axis=len(c.const.shape) - 1)
            continue
        if op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
            xs, ys = x.shape, y.shape
            ok = False
            if xs is not None and ys is not None and len(xs) >= 2 and len(ys) >= 2:
                if op == "Flatten":
                    ok = int(node.attr("axis", 1)) == 1 and all(d == 1 for d in xs[2:])
                elif op == "Reshape":
                    shp = ins[1]
                    arr = _const_array(shp) if shp is not None else None
                    ok = (arr is not None and len(ys) == 2 and all(d == 1 for d in xs[2:]) and len(arr) == 2
                          and ys[1] == xs[1] and arr[0] in (0, xs[0]) if arr is not None else False)
                    if ok and arr[1] != -1:
                        cg.flat_reshapes.append(node)
                    if arr is None and shp is not None and len(ys) == 2 and all(d == 1 for d in xs[2:]):
                        # x.view(x.size(0), -1) with a symbolic batch: Concat(the batch from Shape, [-1]) keeps
                        # the channels on axis 1 whatever their count (refused as "hard-coded": an outside check)
                        entries = _concat_entries(shp, xs[0])
                        ok = (len(entries) == 2 and entries[1] in (-1, 0) and entries[0] in (None, 0, xs[0])
                              and ys[1] == xs[1])
                else:  # keep axes 0 and 1 where they are
                    ok = xs[:2] == ys[:2] and all(d == 1 for d in (xs[2:] if len(xs) > len(ys) else ys[2:]))
            if ok:
                cg.union(cg.el(x, 1), cg.el(y, 1))
            else:
                block(node, "a reshape that does not keep the channel axis (hard-coded channel counts)")
            continue
        if op == "Concat":
            axis = int(node.attr("axis", 0))
            if ry and axis % ry == 1:
                ey = cg.el(y, 1)
                cg.derived[ey] = [cg.el(v, 1) for v in ins]
                for v in ins:
                    if id(v) in constant:
                        block(node, "concatenates a constant along the channels")
            elif ry and ry >= 2:
                for v in ins:
                    cg.union(cg.el(v, 1), cg.el(y, 1))
            continue
        if op == "Pad":
            pads = _const_array(ins[1]) if len(ins) > 1 and ins[1] is not None else None
            r = _rank(x)
            if pads is not None and r and pads[1] == 0 and pads[1 + r] == 0:
                cg.union(cg.el(x, 1), cg.el(y, 1))
            else:
                block(node, "pads that may touch the channel axis")
            continue
        if op in REDUCE:
            # x.mean((2, 3)) (a PyTorch model's global pooling): the channels stay on axis 1 when no reduced axis
            # is 0 or 1 (with keepdims=0 the later axes go, the first two stay)
            axes = node.attr("axes")
            if axes is None and len(ins) > 1 and ins[1] is not None:
                axes = _const_array(ins[1])
            r = _rank(x)
            kept = (axes is not None and r is not None and len(axes) > 0
                    and all(int(a) % r >= 2 for a in axes))
            if kept:
                cg.union(cg.el(x, 1), cg.el(y, 1))
            else:
                block(node, "a reduction over the batch or channel axis (or over every axis)")
            continue
        if op in ("Resize", "Upsample"):
            sizes = ins[3] if len(ins) > 3 else None
            if sizes is not None:
                block(node, "explicit output sizes (including channels)")
            else:
                cg.union(cg.el(x, 1), cg.el(y, 1))
            continue
        # anything else: if it touches a channel group, the group cannot change
        block(node, f"op {op} has no known channel semantics here")
    return cg


@dataclass
class Plan:
    """New sizes for the groups to resize (root -> new size), and how to fill new entries."""

    sizes: dict[tuple, int]
    seed: int = 0
    reinit: bool = False  # re-initialise tensors whose shape changes instead of copying the overlap


def source_groups(cg: ChannelGroups) -> list[tuple[tuple, list[tuple], int]]:
    """(root, members, size) for every group that may be resized: a source, not fixed; blocked ones raise later."""
    out = []
    for root, members in cg.groups().items():
        if not any(m in cg.sources for m in members):
            continue
        if any(m in cg.fixed for m in members):
            continue
        size = cg.group_size(members)
        if not isinstance(size, int):
            continue
        out.append((root, members, size))
    return out


def _check(cg: ChannelGroups, members: list[tuple]) -> None:
    for m in members:
        if m in cg.blocked:
            node, why = cg.blocked[m]
            raise WidthError(f"cannot change the channel count through {node.describe()}: {why}; "
                             "scale this model without width (beta=1) or rewrite that node")


def parameter_elements(graph: Graph) -> int:
    """The elements of ``graph``'s initializers: what the size limit counts of a scaled model."""
    return sum(math.prod(v.const.shape) for v in graph.initializers.values() if v.const is not None)


def _check_sizes(cg: ChannelGroups, touched: dict[int, dict[int, list[tuple[int, int]]]], graph: Graph | None) -> None:
    """Refuse, before anything is allocated, a resize whose weights pass the per-tensor element limit or whose
    parameters together do (the zoo's rule for its width multiplier): ``scale --divisor 100000`` asked for an 18.6
    GiB array and the machine's whole memory, and ``--beta 8`` under a lower limit wrote a model its own loader
    then refused (outside checks)."""
    limit = max_elements()
    grown = 0
    for vid, axes in touched.items():
        v = cg.values[vid]
        if v.const is None:
            continue
        shape = list(v.const.shape)
        old = math.prod(shape)
        for axis, segs in axes.items():
            shape[axis] = sum(n for _, n in segs)
        n = math.prod(shape)
        if n > limit:
            raise WidthError(f"tensor {v.name!r} would become {shape}: {n:,} elements, more than the limit of "
                             f"{limit:,} per tensor (GRAPHMILL_MAX_ELEMENTS); choose a smaller width (beta, divisor)")
        grown += n - old
    if graph is not None and grown > 0:
        total = parameter_elements(graph) + grown
        if total > limit:
            raise WidthError(f"the scaled model would have {total:,} parameters, more than the limit of {limit:,} "
                             "(GRAPHMILL_MAX_ELEMENTS); choose a smaller width (beta, divisor)")


def resize_groups(graph: Graph | None, cg: ChannelGroups, plan: Plan) -> int:
    """Apply ``plan``: rewrite constants and attributes; clear the types of affected values. Returns #tensors."""
    groups = cg.groups()
    new_size: dict[tuple, int] = {}  # root -> new size
    for root, n in plan.sizes.items():
        members = groups[cg.find(root)]
        _check(cg, members)
        new_size[cg.find(root)] = n
    if not new_size:
        return 0

    def seg_of(el: tuple) -> list[tuple[int, int]]:
        """[(old, new)] segments of an element's axis (several for a Concat output)."""
        root = cg.find(el)
        for m in groups[root]:
            if m in cg.derived:
                segs: list[tuple[int, int]] = []
                for part in cg.derived[m]:
                    segs += seg_of(part)
                return segs
        old = cg.group_size(groups[root])
        return [(old, new_size.get(root, old))]

    # derived groups that contain a resized part are resized too (and must not be fixed/blocked)
    for root, members in groups.items():
        for m in members:
            if m in cg.derived:
                segs = seg_of(m)
                if any(o != n for o, n in segs):
                    _check(cg, members)
                    fixed = [cg.fixed[x] for x in members if x in cg.fixed]
                    if fixed:
                        raise WidthError(f"a channel concatenation reaches {fixed[0]}, whose size is fixed")

    touched: dict[int, dict[int, list[tuple[int, int]]]] = {}
    changed_values: set[int] = set()
    for root, members in groups.items():
        for m in members:
            segs = seg_of(m)
            if all(o == n for o, n in segs):
                continue
            vid, axis = m
            touched.setdefault(vid, {})[axis] = segs
            changed_values.add(vid)
    _check_sizes(cg, touched, graph)
    count = 0
    for vid, axes in touched.items():
        v = cg.values[vid]
        if v.const is None:
            if v.type is not None and isinstance(v.type, TensorType) and v.producer is not None:
                v.type = TensorType(v.type.dtype, None)
            continue
        arr = v.const.numpy()
        new = _resize_array(arr, axes, cg.out_axis.get(vid), seed=plan.seed, name=v.name, reinit=plan.reinit)
        t = Tensor(new, name=v.name)
        v.const = t
        v.type = TensorType(v.type.dtype if v.type is not None else t.dtype, new.shape)
        count += 1
    for node, el in cg.depthwise:
        root = cg.find(el)
        if root in new_size:
            node.set_attr("group", int(new_size[root]))
    for node in cg.flat_reshapes:
        x = node.inputs[0]
        if cg.find(cg.el(x, 1)) in new_size:
            shp = node.inputs[1]
            arr = shp.const.numpy().copy()
            arr[1] = -1
            shp.const = Tensor(arr, name=shp.name)
    return count


def _resize_array(arr: np.ndarray, axes: dict[int, list[tuple[int, int]]], out_axis: int | None, *, seed: int,
                  name: str, reinit: bool) -> np.ndarray:
    """``arr`` with ``axes`` resized segment-wise.

    New entries are seeded (by ``seed`` and the tensor's name) and scaled like the existing ones: a weight
    (rank >= 2) draws N(mean, std * sqrt(fan_in_old / fan_in_new)); a vector is filled with its mean (BN
    scale, bias, running statistics keep their typical value). Unless ``reinit``, the old entries are
    copied into the overlap, and the entries that connect *old* output channels to *new* input channels
    are zero, so the widened layer computes exactly the old outputs on the old channels (function
    preserving: a width-only scale leaves the model's outputs unchanged).
    """
    shape = list(arr.shape)
    for ax, segs in axes.items():
        shape[ax] = sum(n for _, n in segs)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(name.encode())])
    a64 = arr.astype(np.float64) if arr.size else np.zeros(1)
    mean = float(a64.mean()) if np.issubdtype(arr.dtype, np.floating) else 0.0
    if arr.ndim >= 2 and np.issubdtype(arr.dtype, np.floating):
        oa = out_axis if out_axis is not None else 0
        fan_old = arr.size // max(arr.shape[oa], 1)
        fan_new = int(np.prod(shape)) // max(shape[oa], 1)
        std = float(a64.std()) * math.sqrt(fan_old / max(fan_new, 1))
        new = (rng.standard_normal(shape) * std + mean).astype(arr.dtype)
    else:
        new = np.full(shape, mean if np.issubdtype(arr.dtype, np.floating) else 0, dtype=arr.dtype)
    if reinit:
        return new
    # index maps: for every axis, (old indices, new indices) of the overlap; and the "new entries" mask
    old_idx, new_idx = [], []
    for ax in range(arr.ndim):
        segs = axes.get(ax, [(arr.shape[ax], arr.shape[ax])])
        o_i, n_i = [], []
        o0 = n0 = 0
        for o, n in segs:
            k = min(o, n)
            o_i += range(o0, o0 + k)
            n_i += range(n0, n0 + k)
            o0 += o
            n0 += n
        old_idx.append(np.array(o_i, dtype=np.int64))
        new_idx.append(np.array(n_i, dtype=np.int64))
    if arr.ndim >= 2 and out_axis is not None:
        # old output channels x anything new on the other axes: zero
        sel = [slice(None)] * arr.ndim
        sel[out_axis] = new_idx[out_axis]
        block = new[tuple(sel)]
        block[...] = 0
        new[tuple(sel)] = block
    new[np.ix_(*new_idx)] = arr[np.ix_(*old_idx)]
    return new
