"""Stage structure of a conv net: stages of repeated blocks, from node meta or discovered.

*Known* structure: every node carries ``meta["model_stage"]`` and ``meta["block"]``
(the zoo's models; not ``meta["stage"]``, the pipeline stage ``pipeline-partition``
writes, so a partitioned model still scales by its architectural stages). Stage 0
or ``kind == "stem"`` is the stem, the last stage or ``kind == "head"`` the head;
neither is deepened.

*Discovered* structure (an imported ONNX conv net without meta):

1. A *cut* is a point in topological order where exactly one non-constant
   tensor is live; the nodes between two cuts form a segment with one input
   and one output tensor.
2. A shape-preserving segment without a Conv/Gemm/MatMul (BN, an activation)
   joins the segment before it.
3. A segment with a Conv and a residual Add/Sum of two computed tensors is a
   *block* (compound scaling is for conv nets: a transformer layer's residual
   MatMul segment is no block).
   Consecutive blocks whose outputs have the same (channels, H, W) form a
   stage; a new resolution or width starts the next stage.
4. A stage's repeats also count a stage-opening block without a skip (as in
   MobileNetV2/EfficientNet) when the segment just before the stage's first
   residual block outputs the stage's shape, ends in a pointwise (1x1) Conv,
   grouped or not (the projection MBConv, separable, Fused-MBConv and
   ShuffleNet blocks end with; not a ResNet stem's conv or MaxPool, a deep
   stem's last 3x3 conv, an upsampling ConvTranspose between stages), and is
   not the stem (some segment before it computes); that block is not copied
   (the stage's last block is). Everything before the first stage is the stem,
   everything after the last the head. A single-block stage without any
   residual connection cannot be told apart from the stem/head and is not
   deepened (documented limitation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from graphmill.ir import Graph, Node, UserInputError, Value
from graphmill.ir.summary import constant_values

COMPUTE = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


class StructureError(UserInputError):
    """The stages of a graph cannot be found."""


@dataclass
class Block:
    nodes: list[Node]
    input: Value
    output: Value
    index: int

    @property
    def shape_preserving(self) -> bool:
        a, b = self.input.shape, self.output.shape
        return a is not None and b is not None and tuple(a[1:]) == tuple(b[1:])


@dataclass
class Stage:
    id: Any
    kind: str  # "stem", "body", "head"
    blocks: list[Block]
    repeats: int
    meta: dict = field(default_factory=dict)

    @property
    def channels(self) -> int | None:
        return channels_of(self.blocks[-1].output) if self.blocks else None


def channels_of(v: Value | None) -> int | None:
    """A feature map's (or token sequence's) channel count, on its layout's channel axis (``channel_axis``)."""
    s = v.shape if v is not None else None
    if s is None or len(s) < 2:
        return None
    axis = channel_axis(v)
    c = s[axis] if axis < len(s) else s[1]
    return c if isinstance(c, int) else None


#: the ops whose output holds the input's data in another shape: the channel axis moves with ``_reshaped``
_RESHAPES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})

#: ops that ONNX defines on channels-first data: their output's channels are on axis 1, whatever came before
_CHANNELS_FIRST = frozenset({"Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "MaxPool",
                             "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "LRN"})


def channel_axis(v: Value) -> int:
    """The axis of ``v``'s shape that holds its channels: 1 for NCHW maps, the last for NHWC maps and [N, tokens,
    C] sequences (CoAtNet's NCHW -> NHWC before its attention stages, ViT's [N, C, HW] -> [N, HW, C], whose maps'
    height or token count was reported as the stage's channels: a review).

    The axis is followed forward along the map's main path from the nearest op that fixes it: a Conv, a pool or a
    BatchNormalization (axis 1, as ONNX defines them), a MatMul or Gemm by a weight or a Gather of a weight's rows
    (an embedding; the last axis), else the graph's input, taken as channels first (an NHWC input with a leading
    Transpose was reported by its map width: a review). Each Transpose moves it where its perm puts it (a swap
    such as [0, 2, 1] is its own inverse, so whether it makes channels last or first again depends on its input's
    layout: a token stage transposed back to NCHW, or the attention inside a bottleneck, was read as channels last;
    a perm not starting at 0, [L, N, C] sequences, was ignored: reviews), and a Reshape, Flatten, Squeeze or
    Unsqueeze keeps it on the axis that holds the same data (``_reshaped``: a video net's frames folded into the
    batch and back), or on its position where the reshape's output shape is unknown (those frames folded into a
    symbolic batch: the frame count is then reported). The main path goes through
    each node's main input (``_main_input``); a Concat takes the axis of its first input whose path holds an op
    that fixes it (ViT's Concat reads the class token first, whose chain has none, so its stages' token count, 197,
    was reported as their channels). Side branches are not followed: ECA-Net's channel gate, which transposes its
    pooled [N, 1, C] vector, made a conv net's map width read as its channels (a review)."""
    order: dict[int, int] = {}
    axis: dict[int, tuple[int, bool]] = {}  # by value: the channel axis, and whether an op fixed it (not a guess)
    deps: dict[int, list[Value]] = {}
    todo: list[Value] = [v]
    while todo:  # post-order without recursion: a main path may be thousands of nodes long
        x = todo[-1]
        if id(x) in axis:
            todo.pop()
            continue
        n = x.producer
        if n is None or not n.inputs or n.inputs[0] is None:
            axis[id(x)] = (1, False)
            todo.pop()
            continue
        if id(x) not in deps:
            deps[id(x)] = [i for i in n.inputs if i is not None] if n.op_type == "Concat" else [_main_input(n, order)]
            todo.extend(d for d in deps[id(x)] if id(d) not in axis)
            continue
        todo.pop()
        got = [axis[id(d)] for d in deps[id(x)]]
        at, decided = got[0]
        perm = list(n.attrs["perm"].value) if n.op_type == "Transpose" and n.attrs.get("perm") is not None else None
        weighted = n.op_type in ("MatMul", "Gemm") and len(n.inputs) > 1 and n.inputs[1] is not None and (
            n.inputs[1].is_initializer or n.inputs[1].const is not None)
        # rows of a table of weights (an embedding: BERT's encoder reported no width, a review)
        weighted = weighted or (n.op_type == "Gather" and n.attr("axis", 0) == 0 and n.inputs[0] is not None and (
            n.inputs[0].is_initializer or n.inputs[0].const is not None))
        if n.op_type in _CHANNELS_FIRST and n.domain in ("", "ai.onnx"):
            axis[id(x)] = (1, True)
        elif weighted and x.shape is not None:  # x @ W, W[ids]: the features are the last axis
            axis[id(x)] = (len(x.shape) - 1, True)
        elif n.op_type == "Concat":
            axis[id(x)] = next((g for g in got if g[1]), got[0])
        elif perm is not None and sorted(perm) == list(range(len(perm))) and at < len(perm):
            axis[id(x)] = (perm.index(at), True)
        elif n.op_type in _RESHAPES:
            axis[id(x)] = (_reshaped(at, deps[id(x)][0].shape, x.shape), decided)
        else:
            axis[id(x)] = (at, decided)
    return axis[id(v)][0]


def _reshaped(at: int, before, after) -> int:
    """Where the channel axis ``at`` of a map shaped ``before`` is in the same data shaped ``after``: the axis of
    ``after`` with the channels' size whose preceding axes hold as many elements as the axes before ``at`` did
    (known sizes), or the same leading axes; the last axis stays last when its size is kept; else ``at``."""
    if before is None or after is None or at >= len(before) or not after:
        return at
    if at == len(before) - 1 and after[-1] == before[-1]:
        return len(after) - 1
    lead = before[:at]
    if all(isinstance(d, int) for d in lead) and all(isinstance(d, int) for d in after):
        count = math.prod(lead)
        for q in range(len(after)):
            if math.prod(after[:q]) == count and after[q] == before[at]:
                return q
    if tuple(after[:at]) == tuple(lead) and at < len(after) and after[at] == before[at]:
        return at
    return at if at < len(after) else len(after) - 1


def _main_input(n: Node, order: dict[int, int]) -> Value:
    """The input of ``n`` that carries the map: of the computed ones (not a weight or a constant) with the
    output's shape (not broadcast against it), the one made first (a residual Add's skip, the trunk, rather than
    its branch); else the first computed one; else the first. ``gamma * y`` (ConvNeXt's layer scale as its code
    writes it), ``sigmoid(gate) * x`` (a squeeze-excitation gate first) and ``branch + x`` (a non-local block,
    whose branch transposes [N, C, HW] for its attention) led the search into the weight, the gate or the branch
    (a review). ``order``: node positions, filled on first use."""
    computed = [x for x in n.inputs if x is not None and x.const is None and not x.is_initializer]
    out = n.outputs[0].shape if n.outputs and n.outputs[0] is not None else None
    same = [x for x in computed if out is not None and x.shape is not None and tuple(x.shape) == tuple(out)]
    if len(same) > 1:
        if not order and n.graph is not None:
            order.update((id(m), i) for i, m in enumerate(n.graph.nodes))
        same.sort(key=lambda x: -1 if x.producer is None else order.get(id(x.producer), -1))
    return (same or computed or [n.inputs[0]])[0]


@dataclass
class Structure:
    stages: list[Stage]
    source: str  # "meta" or "discovered"

    def body(self) -> list[Stage]:
        return [s for s in self.stages if s.kind == "body"]


def _block_io(graph: Graph, nodes: list[Node], constant: set[int], where: str) -> tuple[Value, Value]:
    ids = {id(n) for n in nodes}
    produced = {id(v) for n in nodes for v in n.outputs if v is not None}
    ins: dict[int, Value] = {}
    outs: dict[int, Value] = {}
    graph_out = {id(v) for v in graph.outputs}
    for n in nodes:
        for v in n.inputs:
            if v is not None and id(v) not in produced and id(v) not in constant:
                ins[id(v)] = v
        for v in n.outputs:
            if v is None:
                continue
            if id(v) in graph_out or any(id(u) not in ids for u in v.users):
                outs[id(v)] = v
    if len(ins) != 1 or len(outs) != 1:
        raise StructureError(f"{where} has {len(ins)} input tensor(s) and {len(outs)} output tensor(s); "
                             "a block needs exactly one of each")
    return next(iter(ins.values())), next(iter(outs.values()))


def check_structure_meta(graph: Graph) -> None:
    """Refuse structure meta of types graphmill never writes: a node's ``model_stage``/``block`` (integers) and
    ``kind`` (text), the graph's ``stages`` and ``blocks`` (lists of objects whose ``stage``/``block`` are
    integers). The meta comes from the model file, and a block of "x" or a stage of [1] reached scaling as a
    TypeError traceback (an outside check)."""
    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for n in graph.nodes:
        for key, ok, want in (("model_stage", integer, "an integer"), ("block", integer, "an integer"),
                              ("kind", lambda v: isinstance(v, str), "text")):
            if key in n.meta and not ok(n.meta[key]):
                raise StructureError(f"{n.op_type} node {n.name!r}: its graphmill meta {key} is {n.meta[key]!r}, "
                                     f"where graphmill writes {want}")
    for key, fields in (("stages", ("stage", "repeats")), ("blocks", ("stage", "block"))):
        rows = graph.meta.get(key)
        if rows is None:
            continue
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise StructureError(f"graph {graph.name!r}: its graphmill meta {key} is {str(rows)[:80]}, where "
                                 "graphmill writes a list of objects")
        for i, r in enumerate(rows):
            for f in fields:
                if f in r and not integer(r[f]):
                    raise StructureError(f"graph {graph.name!r}: its graphmill meta {key}[{i}].{f} is {r[f]!r}, "
                                         "where graphmill writes an integer")


def from_meta(graph: Graph) -> Structure | None:
    """Stages from node meta, or None when the nodes carry no model_stage/block meta."""
    check_structure_meta(graph)
    constant = constant_values(graph)
    table: dict[Any, dict[Any, list[Node]]] = {}
    kinds: dict[Any, str] = {}
    for n in graph.nodes:
        if any(id(v) in constant for v in n.outputs if v is not None):
            continue
        if "model_stage" not in n.meta or "block" not in n.meta:
            if n.meta:
                continue
            return None
        table.setdefault(n.meta["model_stage"], {}).setdefault(n.meta["block"], []).append(n)
        if n.meta.get("kind") in ("stem", "head"):
            kinds[n.meta["model_stage"]] = n.meta["kind"]
    if not table:
        return None
    order = sorted(table, key=lambda s: min(graph.nodes.index(ns[0]) for ns in table[s].values()))
    stages: list[Stage] = []
    meta_stages = {s.get("stage"): s for s in graph.meta.get("stages", []) if isinstance(s, dict)}
    for i, sid in enumerate(order):
        kind = kinds.get(sid) or ("stem" if i == 0 else "head" if i == len(order) - 1 else "body")
        blocks = []
        if kind == "body":
            for bid in sorted(table[sid]):
                nodes = table[sid][bid]
                x, y = _block_io(graph, nodes, constant, f"stage {sid} block {bid}")
                blocks.append(Block(nodes, x, y, bid))
        stages.append(Stage(sid, kind, blocks, len(table[sid]), meta_stages.get(sid, {})))
    return Structure(stages, "meta")


def discover(graph: Graph) -> Structure:
    """Stages of repeated residual blocks between resolution changes (see the module doc)."""
    constant = constant_values(graph)
    nodes = [n for n in graph.nodes if not any(id(v) in constant for v in n.outputs if v is not None)]
    pos = {id(n): i for i, n in enumerate(nodes)}
    last_use: dict[int, int] = {}
    graph_out = {id(v) for v in graph.outputs}
    for i, n in enumerate(nodes):
        for v in n.inputs:
            if v is not None and id(v) not in constant:
                last_use[id(v)] = i
    live: dict[int, Value] = {id(v): v for v in graph.inputs if id(v) not in constant}
    segments: list[list[Node]] = []
    cur: list[Node] = []
    for i, n in enumerate(nodes):
        cur.append(n)
        for v in n.outputs:
            if v is not None:
                live[id(v)] = v
        for k in [k for k in live if last_use.get(k, -1) <= i and k not in graph_out]:
            del live[k]
        if len(live) == 1 and i < len(nodes) - 1:
            segments.append(cur)
            cur = []
    if cur:
        segments.append(cur)
    # merge segments without compute into the previous one
    def preserving(seg: list[Node]) -> bool:
        try:
            x, y = _block_io(graph, seg, constant, "segment")
        except StructureError:
            return False
        return x.shape is not None and y.shape is not None and tuple(x.shape) == tuple(y.shape)

    merged: list[list[Node]] = []
    for seg in segments:
        if merged and not any(n.op_type in COMPUTE for n in seg) and preserving(seg):
            merged[-1].extend(seg)
        else:
            merged.append(list(seg))

    def computes(seg: list[Node]) -> bool:
        return any(n.op_type in COMPUTE for n in seg)

    def projects(seg: list[Node]) -> bool:
        """Whether the segment's last product is a pointwise (1x1) Conv, grouped or not (ShuffleNet's units end
        in a grouped one)."""
        last = next((n for n in reversed(seg) if n.op_type in COMPUTE), None)
        w = last.inputs[1] if last is not None and last.op_type == "Conv" and len(last.inputs) > 1 else None
        shape = w.shape if w is not None else None
        return shape is not None and len(shape) >= 3 and all(d == 1 for d in shape[2:])

    def residual(seg: list[Node]) -> bool:
        # a conv block: compound scaling's width is channels and its resolution the feature map's (a transformer
        # layer's residual Add made its sequence axis "channels", and a copy of one FFN sub-layer a deeper model)
        return any(n.op_type in ("Conv", "ConvTranspose") for n in seg) and any(
            n.op_type in ("Add", "Sum") and sum(1 for v in n.inputs if v is not None and id(v) not in constant) >= 2
            for n in seg)

    def shape_of(v: Value):
        s = v.shape
        return tuple(s[1:]) if s is not None else None

    io = []
    for k, seg in enumerate(merged):
        try:
            io.append(_block_io(graph, seg, constant, f"segment {k}"))
        except StructureError:
            io.append(None)
    stages: list[Stage] = []
    k = 0
    first = None
    while k < len(merged):
        if io[k] is None or not residual(merged[k]):
            k += 1
            continue
        x, y = io[k]
        shp = shape_of(y)
        opener = 0
        # an opener is a block ending in a pointwise projection (MBConv's, a separable or Fused-MBConv's 1x1
        # conv), the segment of its projection being what the cuts give; not a ResNet stem's conv or MaxPool, a
        # deep stem's last 3x3 conv or an upsampling ConvTranspose between stages (each was counted as a block of
        # the next stage); and a stem precedes it
        if k > 1 and io[k - 1] is not None and not residual(merged[k - 1]) and shape_of(io[k - 1][1]) == shp \
                and projects(merged[k - 1]) and any(computes(seg) for seg in merged[:k - 1]) \
                and (not stages or stages[-1].blocks[-1].output is not io[k - 1][1]):
            opener = 1
        blocks = [Block(merged[k], x, y, opener)]
        j = k + 1
        while j < len(merged) and io[j] is not None and residual(merged[j]) and shape_of(io[j][1]) == shp:
            blocks.append(Block(merged[j], io[j][0], io[j][1], opener + len(blocks)))
            j += 1
        if first is None:
            first = k - opener
        stages.append(Stage(len(stages) + 1, "body", blocks, len(blocks) + opener,
                            {"opener_without_skip": bool(opener)}))
        k = j
    if not stages:
        raise StructureError(f"no stages found in graph {graph.name!r}: no convolution blocks with a residual "
                             "connection between single-tensor cuts; nodes carry no model_stage/block meta either")
    stem = Stage(0, "stem", [], 1)
    head = Stage(len(stages) + 1, "head", [], 1)
    return Structure([stem, *stages, head], "discovered")


def find_structure(graph: Graph) -> Structure:
    """Stages from node meta when present, else discovered."""
    s = from_meta(graph)
    return s if s is not None else discover(graph)
