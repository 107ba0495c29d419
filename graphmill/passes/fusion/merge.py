"""Compute the same thing with fewer standard ONNX nodes: merges that no single fusion covers.

These are the rewrites that separate a model with "only real work left" (every Conv followed by
its Relu) from one with fewer nodes that still runs anywhere ONNX runs. Legal cases:

- ``activation-over-concat``: ``Concat(f(a), f(b), ...)`` -> ``f(Concat(a, b, ...))`` when every
  Concat input is produced by the same elementwise unary op ``f`` with the same attributes (and,
  for Clip, the same bounds), each read only by the Concat. Inception and SqueezeNet branches end
  in Conv -> Relu -> Concat: one Relu per module instead of one per branch. Exact for the
  piecewise-linear ops (Relu, LeakyRelu, Clip, Abs, Neg, ...): each element is computed by the
  same formula wherever it sits. Weighed, not just matched: a Relu, Clip, LeakyRelu, Sigmoid,
  Tanh or HardSigmoid taken off a Conv or Gemm is one that ONNX Runtime (FusedConv, FusedGemm) or
  the simulator (fuse-activation) would have applied in the producer's output stage for free, so
  the hoist needs those producers to do at least ``hoist_min_macs`` (default 256)
  multiply-accumulates per element of their part of the Concat, enough that the extra elementwise
  pass is noise (SqueezeNet's first six Fire modules, 80-240 per element, are refused; its last
  two, 320, and Inception's, 480 and up, are hoisted). Other activations and producers hoist freely.
- ``activation-over-concat-transcendental``: the same for Sigmoid, Tanh, Elu, Softplus, Erf, ...:
  float-reassociating, since a vectorised kernel may evaluate an element in its SIMD body or its
  scalar tail depending on where it sits in the tensor.
- ``permutation-as-gather``: ``Reshape -> Transpose -> Reshape`` that gives back the input's shape
  and only permutes the entries along one axis (ShuffleNet's channel shuffle) -> one
  ``Gather(x, perm, axis)``. Exact (pure data movement). Needs static shapes; the permutation is
  found by running the three ops on an index tensor (at most 2^22 entries).
- ``global-pool-flatten``: ``Flatten(GlobalAveragePool(x))`` (or a Reshape to ``[N, C]``) ->
  ``ReduceMean(x, spatial axes, keepdims=0)``; also an AveragePool with one window covering the
  whole (static) spatial extent, undilated, any padding not counted (count_include_pad=0), and GlobalMaxPool -> ReduceMax (exact: a max is
  order-free). The mean is float-reassociating: ONNX Runtime's two kernels may sum in a
  different order.

Refused: an intermediate read by anything else or that is a graph output (it would be
recomputed or lost); non-static shapes where the rule needs them; Concat with one input.
ONNX Runtime's Conv+activation fusion no longer sees the hoisted activation, so
``fuse-activation(emit=fused-conv)`` sinks it back into the Convs (``activation-into-concat``).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from graphmill.ir import Node
from graphmill.ir.rewrite import EXACT, REASSOCIATING, Match, Op, Rule, Var

from ..base import Option, PassContext, register_pass
from ..cleanup.common import (
    ONNX_DOMAINS,
    PIECEWISE_LINEAR,
    TRANSCENDENTAL,
    checked_by,
    concat_producers,
    const_of,
    is_static,
    opset,
    shape_of,
)
from ..rewrite_pass import RewritePass
from .activation import ACTIVATIONS

MAX_PERMUTATION_ENTRIES = 1 << 22


def _same_bounds(a: Node, b: Node) -> bool:
    """Clip's min/max inputs (opset >= 11): the same values, or equal constants."""
    if len(a.inputs) != len(b.inputs):
        return False
    for va, vb in zip(a.inputs[1:], b.inputs[1:]):
        if va is vb:
            continue
        ca, cb = const_of(va), const_of(vb)
        if ca is None or cb is None or ca.dtype != cb.dtype or not np.array_equal(ca, cb):
            return False
    return True


def _activation_producers(m: Match, ops: tuple[str, ...]) -> list[Node] | str:
    if len(m.root.inputs) < 2:
        return "Concat has a single input"
    acts = concat_producers(m.root, ops)
    if isinstance(acts, str):
        return acts
    first = acts[0]
    for p in acts[1:]:
        if p.op_type != first.op_type:
            return f"Concat inputs come from different ops ({first.op_type}, {p.op_type})"
        if {k: a.value for k, a in p.attrs.items()} != {k: a.value for k, a in first.attrs.items()}:
            return f"{p.describe()} and {first.describe()} have different attributes"
        if not _same_bounds(p, first):
            return f"{p.describe()} and {first.describe()} have different bounds"
    return acts


# What a backend applies in a producer's output stage for free: fuse-activation's mark-activation
# (the simulator) and ONNX Runtime's FusedConv/FusedGemm take these activations after Conv or Gemm.
# Hoisting one of them off such a producer gives that fusion up; any other activation or producer
# costs nothing to hoist.
EPILOGUE_OPS = frozenset({"Conv", "Gemm"})
DEFAULT_HOIST_MIN_MACS = 256


def _macs_per_element(node: Node) -> float | None:
    """Multiply-accumulates per output element of a Conv or Gemm, from its weight's shape alone (so a
    symbolic batch or image size does not matter); None when that shape is unknown."""
    w = shape_of(node.inputs[1]) if len(node.inputs) > 1 else None
    if w is None or not is_static(w) or len(w) < 2:
        return None
    if node.op_type == "Conv":
        return float(np.prod(w[1:]))  # [M, C/group, k...]
    return float(w[1] if node.attr("transB") else w[0])  # Gemm: B is [K, N], or [N, K] with transB


def _hoist_cost_check(acts: list[Node], concat: Node, min_macs: int) -> str | None:
    """Refuse when the activation leaves Conv/Gemm producers that do little work per element.

    A backend that fuses the activation into its producer runs it for free; after the hoist it pays one
    elementwise pass over those producers' part of the Concat. That pass is worth a node only when it is
    small next to their arithmetic: the mean MACs per element over that part, weighted by each part's
    size, must reach ``min_macs`` (SqueezeNet's Fire modules, 80-320 MACs per element: hoisting all
    eight cost ONNX Runtime 3.8% with its fusions on; Inception's, 480-1460: no measurable cost)."""
    if min_macs <= 0 or acts[0].op_type not in ACTIVATIONS:
        return None
    axis = concat.attr("axis")
    fused: list[tuple[Node, float, int]] = []  # producer, MACs per element, its index in the Concat
    for i, a in enumerate(acts):
        f = a.inputs[0].producer
        if f is None or f.op_type not in EPILOGUE_OPS or (f.domain or "") not in ONNX_DOMAINS:
            continue  # nothing would fuse the activation into it: hoisting it off costs nothing
        k = _macs_per_element(f)
        if k is None:
            return f"the work of {f.describe()} per element is unknown (its weight's shape is not static)"
        fused.append((f, k, i))
    if not fused or min(k for _, k, _ in fused) >= min_macs:
        return None  # every part is above the threshold: no need to weigh the parts
    work = extent = 0.0
    for f, k, i in fused:  # weigh each producer by its share of the Concat
        shape = shape_of(concat.inputs[i])
        e = shape[axis] if shape is not None and axis is not None and -len(shape) <= axis < len(shape) else None
        if not isinstance(e, int):
            top = max(k for _, k, _ in fused)
            if top < min_macs:  # every part is below: the sizes cannot change the answer
                return (f"its Conv/Gemm producers do at most {top:.0f} MACs per element, under "
                        f"hoist_min_macs={min_macs}: the activation costs less fused into them than the node it saves")
            return f"the size of {f.describe()}'s part of the Concat is unknown (its shape is not static)"
        work, extent = work + k * e, extent + e
    if work >= min_macs * extent:
        return None
    return (f"its Conv/Gemm producers do {work / extent:.0f} MACs per element, under hoist_min_macs={min_macs}: "
            "the activation costs less fused into them than the node it saves")


def _hoist_check(ops: tuple[str, ...], min_macs: int = DEFAULT_HOIST_MIN_MACS):
    def check(m: Match) -> str | None:
        acts = _activation_producers(m, ops)
        if isinstance(acts, str):
            return acts
        return _hoist_cost_check(acts, m.root, min_macs)
    return check


def _hoist(ops: tuple[str, ...]):
    def replace(m: Match, r):
        acts = _activation_producers(m, ops)
        assert not isinstance(acts, str)
        concat = m.root
        joined = r.op("Concat", *[a.inputs[0] for a in acts], attrs=dict(concat.attrs), name=concat.name)
        first = acts[0]
        return r.op(first.op_type, joined, *first.inputs[1:], attrs=dict(first.attrs), name=first.name)
    return replace


ACTIVATION_OVER_CONCAT = Rule(
    "activation-over-concat", Op("Concat", allow_extra_inputs=True), check=_hoist_check(PIECEWISE_LINEAR),
    replace=_hoist(PIECEWISE_LINEAR), exactness=EXACT,
    doc="Concat(f(a), f(b), ...) -> f(Concat(a, b, ...)) for piecewise-linear f (Relu, Clip, ...)")
ACTIVATION_OVER_CONCAT_TRANSCENDENTAL = Rule(
    "activation-over-concat-transcendental", Op("Concat", allow_extra_inputs=True),
    check=_hoist_check(TRANSCENDENTAL), replace=_hoist(TRANSCENDENTAL), exactness=REASSOCIATING,
    doc="Concat(f(a), f(b), ...) -> f(Concat(a, b, ...)) for Sigmoid, Tanh, Erf, ...")


def _perm_attr(node: Node, rank: int) -> list[int]:
    perm = node.attr("perm")
    return [int(p) for p in perm] if perm is not None else list(reversed(range(rank)))


def _single_axis_permutation(m: Match) -> tuple[int, np.ndarray] | str:
    x_shape = shape_of(m["x"])
    mid = shape_of(m.node("inner").outputs[0])
    out = shape_of(m.root.outputs[0])
    if not (is_static(x_shape) and is_static(mid) and is_static(out)):
        return "shapes are not static"
    if tuple(out) != tuple(x_shape):
        return f"the result's shape {tuple(out)} is not the input's {tuple(x_shape)}"
    return _axis_permutation(tuple(x_shape), tuple(mid), tuple(_perm_attr(m.node("transpose"), len(mid))))


@functools.lru_cache(maxsize=256)
def _axis_permutation(x_shape: tuple, mid: tuple, perm: tuple) -> tuple[int, np.ndarray] | str:
    """The enumeration behind ``_single_axis_permutation``, a function of the shapes and the
    permutation only: kept per (shapes, perm), since the rule's check and its replacement both ask,
    and a network repeats the same shuffle block (light_shufflenet: 32 asks, 4 distinct)."""
    size = int(np.prod(x_shape, dtype=np.int64))
    if size > MAX_PERMUTATION_ENTRIES:
        return f"{size} entries: over the {MAX_PERMUTATION_ENTRIES} this rule enumerates"
    index = np.arange(size, dtype=np.int64)
    moved = index.reshape(mid).transpose(perm).reshape(x_shape)
    base = index.reshape(x_shape)
    for axis, n in enumerate(x_shape):
        if n < 2:
            continue
        stride = int(np.prod(x_shape[axis + 1:], dtype=np.int64))
        line = moved[(0,) * axis + (slice(None),) + (0,) * (len(x_shape) - axis - 1)]
        order = line // stride
        if sorted(order.tolist()) == list(range(n)) and np.array_equal(moved, np.take(base, order, axis=axis)):
            order.setflags(write=False)  # shared by every ask
            return axis, order
    return "the three ops move entries across more than one axis"


_permutation_check = checked_by(_single_axis_permutation)


def _permutation_gather(m: Match, r):
    axis, order = _single_axis_permutation(m)  # type: ignore[misc]
    return r.op("Gather", m["x"], r.const(order.astype(np.int64), "shuffle_indices"), axis=int(axis),
                name=m.root.name)


PERMUTATION_AS_GATHER = Rule(
    "permutation-as-gather",
    Op("Reshape", Op("Transpose", Op("Reshape", Var("x"), Var("s1"), name="inner"), name="transpose"), Var("s2"),
       name="outer"),
    check=_permutation_check, replace=_permutation_gather, exactness=EXACT,
    doc="Reshape -> Transpose -> Reshape permuting one axis (channel shuffle) -> Gather(x, perm, axis)")


def _whole_window(pool: Node, spatial: tuple) -> str | None:
    """None when AveragePool's single window averages exactly the whole input: it covers every
    position, and padded positions (if any) do not count."""
    kernel = [int(k) for k in pool.attr("kernel_shape", [])]
    if len(kernel) != len(spatial):
        return "AveragePool's kernel rank differs from the input's spatial rank"
    if any(int(d) != 1 for d in pool.attr("dilations", [])):
        return "AveragePool is dilated"
    auto_pad = pool.attr("auto_pad", "NOTSET")
    pads = [int(p) for p in pool.attr("pads", [])] if auto_pad == "NOTSET" else [] if auto_pad == "VALID" else None
    if pads is None:
        return f"AveragePool auto_pad={auto_pad}"
    pads = pads or [0] * (2 * len(kernel))
    begin, end = pads[:len(kernel)], pads[len(kernel):]
    if any(p and int(pool.attr("count_include_pad", 0)) for p in pads):
        return "AveragePool counts padded positions"
    ceil = int(pool.attr("ceil_mode", 0))
    strides = [int(s) for s in pool.attr("strides", [1] * len(kernel))]
    for n, k, b, e, st in zip(spatial, kernel, begin, end, strides):
        span = n + b + e - k
        out = (-(-span // st) if ceil else span // st) + 1
        if out != 1 or k - b < n:
            return "AveragePool's window is not the whole spatial extent"
    return None


def _pool_check(m: Match) -> str | None:
    pool = m.node("pool")
    x_shape = shape_of(m["x"])
    if x_shape is None or len(x_shape) < 3:
        return "the pooled input's rank is unknown or below 3"
    if pool.op_type == "AveragePool":
        spatial = x_shape[2:]
        if not is_static(spatial):
            return "AveragePool over a non-static spatial extent"
        why = _whole_window(pool, spatial)
        if why:
            return why
    root = m.root
    want = (x_shape[0], x_shape[1])
    if root.op_type == "Flatten":
        if int(root.attr("axis", 1)) != 1:
            return "Flatten's axis is not 1"
    else:
        out = shape_of(root.outputs[0])
        if out is None or tuple(out) != want:
            return f"the Reshape gives {out}, not [N, C] = {list(want)}"
    return None


def _pool_reduce(m: Match, r):
    pool = m.node("pool")
    rank = len(shape_of(m["x"]))  # type: ignore[arg-type]
    axes = list(range(2, rank))
    op = "ReduceMax" if pool.op_type == "GlobalMaxPool" else "ReduceMean"
    new_axes_input = opset(m.graph) >= 18
    if new_axes_input:
        return r.op(op, m["x"], r.const(np.array(axes, dtype=np.int64), "pool_axes"), keepdims=0,
                    name=m.root.name)
    return r.op(op, m["x"], axes=axes, keepdims=0, name=m.root.name)


def _pool_pattern(pools: tuple[str, ...]) -> Op:
    return Op(("Flatten", "Reshape"), Op(pools, Var("x"), name="pool"), allow_extra_inputs=True, name="flatten")


GLOBAL_POOL_FLATTEN = Rule(
    "global-pool-flatten", _pool_pattern(("GlobalAveragePool", "AveragePool")), check=_pool_check,
    replace=_pool_reduce, exactness=REASSOCIATING,
    doc="Flatten(GlobalAveragePool(x)) (or a whole-extent AveragePool, or a Reshape to [N, C]) -> "
        "ReduceMean(x, spatial axes, keepdims=0)")
GLOBAL_MAXPOOL_FLATTEN = Rule(
    "global-maxpool-flatten", _pool_pattern(("GlobalMaxPool",)), check=_pool_check, replace=_pool_reduce,
    exactness=EXACT, doc="Flatten(GlobalMaxPool(x)) (or a Reshape to [N, C]) -> ReduceMax(x, spatial axes, "
                         "keepdims=0)")

RULES = (ACTIVATION_OVER_CONCAT, ACTIVATION_OVER_CONCAT_TRANSCENDENTAL, PERMUTATION_AS_GATHER, GLOBAL_POOL_FLATTEN,
         GLOBAL_MAXPOOL_FLATTEN)


@register_pass
class MergeOps(RewritePass):
    """Same computation, fewer standard ONNX nodes (activation after Concat, shuffle as Gather, pooling).

    For the node counts that fusions cannot lower further with standard ops: see the module docstring
    for each rule's legal cases."""

    name = "merge-ops"
    options = RewritePass.options + (
        Option("hoist_min_macs", int, DEFAULT_HOIST_MIN_MACS,
               "activation-over-concat takes an activation a backend would fuse off Conv/Gemm producers only "
               "when they do at least this many MACs per element of their part of the Concat (0: always)", min=0),
    )
    rules = RULES
    exactness = REASSOCIATING  # the loosest of its rules
    preserves = frozenset()

    def active_rules(self, ctx: PassContext) -> list[Rule]:
        hoists = {ACTIVATION_OVER_CONCAT.name: PIECEWISE_LINEAR,
                  ACTIVATION_OVER_CONCAT_TRANSCENDENTAL.name: TRANSCENDENTAL}
        return [dataclasses.replace(r, check=_hoist_check(hoists[r.name], self.hoist_min_macs))
                if r.name in hoists else r for r in super().active_rules(ctx)]
