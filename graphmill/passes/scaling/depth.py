"""Depth: a stage of n blocks gets ceil(n * d) by appending copies of its last block.

Each new block is a copy of the stage's *last* block with its weights (new
initializers holding the same values, so that training does not tie them),
inserted right after the stage and rewired: the tensors that read the stage's
output now read the last copy's output.

When the last block is not shape-preserving (it has a stride, or its input
channels differ from its output channels), the copy is made so that it is:
every ``strides`` attribute in it becomes 1, and the channel group of its
input is resized to the block's output channels (``channels.resize_groups``
with ``reinit``): the tensors whose shape changes (e.g. the first 1x1 conv's
weight, a depthwise conv of an expand-1 block and its BN) are re-initialised,
seeded by the pass seed and the new tensor's name, with the statistics of
the tensor they replace. Tensors whose shape does not change keep the copied
weights. Such a copy (of a stage-opening block, which lacks a skip because of
its stride or channel change) of an inverted-residual block (the zoo's node meta
``kind`` ``mbconv`` or ``fused_mbconv``) gains the skip connection its family
adds wherever the shapes allow (MobileNetV2, MnasNet, EfficientNet: stride 1 and
input channels = output channels), as the zoo's own deeper models have it; other
copies gain none (MnasNet's ``sepconv`` blocks never skip).
"""

from __future__ import annotations

import copy as _copy
from typing import Any

from graphmill.ir import Graph, Node, Tensor, TensorType, Value
from graphmill.ir.scaling import squeeze_channels

from . import channels
from .structure import Block, Stage, StructureError


def _clear(v: Value) -> None:
    if isinstance(v.type, TensorType):
        v.type = TensorType(v.type.dtype, None)


def copy_block(graph: Graph, block: Block, after: Value, *, index: int, stage: Any, seed: int,
               constant: set[int]) -> tuple[list[Node], Value]:
    """A copy of ``block`` reading ``after``; returns (new nodes, its output). Not yet inserted."""
    tag = f"s{stage}b{index}"
    outer = _outer_inputs(block, constant)
    if len(outer) != 1:
        raise StructureError(f"stage {stage}: its last block reads {len(outer)} computed tensors from outside; "
                             "a block copy needs exactly one")
    block.input = outer[0]
    shape_preserving = block.shape_preserving
    placeholder = Value(graph.unique_name(f"{block.input.name}_{tag}_in"), block.input.type)
    memo: dict[int, Value] = {id(block.input): placeholder}
    new_nodes: list[Node] = []
    for n in block.nodes:
        ins = []
        for v in n.inputs:
            if v is None:
                ins.append(None)
            elif id(v) in memo:
                ins.append(memo[id(v)])
            elif v.is_initializer and v.const is not None and v.shape is not None and len(v.shape) >= 1:
                arr = v.const.numpy().copy()
                nv = graph.add_initializer(Value(graph.unique_name(f"{v.name}_{tag}"), v.type,
                                                 const=Tensor(arr)))
                memo[id(v)] = nv
                ins.append(nv)
            elif id(v) in constant:
                ins.append(v)  # a shared scalar or a computed constant: shared
            else:
                raise StructureError(f"{n.describe()} in stage {stage} reads %{v.name} from outside its block")
        outs = []
        for v in n.outputs:
            if v is None:
                outs.append(None)
                continue
            nv = Value(graph.unique_name(f"{v.name}_{tag}"), v.type)
            memo[id(v)] = nv
            outs.append(nv)
        nn = Node(n.op_type, ins, None, outputs=outs, domain=n.domain,
                  name=graph.unique_name(f"{n.name or n.op_type}_{tag}") if n.name else "")
        nn.attrs = {k: _copy.copy(a) for k, a in n.attrs.items()}
        nn.meta = dict(n.meta)
        if "block" in nn.meta:
            nn.meta["block"] = index
        if "stride" in nn.meta:
            nn.meta["stride"] = 1
        new_nodes.append(nn)
    out = memo[id(block.output)]
    if not shape_preserving:
        for nn in new_nodes:
            s = nn.attr("strides")
            if s is not None and any(int(k) != 1 for k in s):
                nn.set_attr("strides", [1] * len(s))
        cin = block.input.shape[1] if block.input.shape else None
        cout = block.output.shape[1] if block.output.shape else None
        if isinstance(cin, int) and isinstance(cout, int) and cin != cout:
            cg = channels.analyze(new_nodes, constant=constant | {id(v) for v in memo.values() if v.is_initializer})
            root = cg.find(cg.el(placeholder, 1))
            members = cg.groups()[root]
            if any(m[0] == id(out) for m in members):
                raise StructureError(f"stage {stage}: the copy of its last block ties input and output channels")
            # the input group's old size is cin (from the weights); plan: resize to cout
            for m in members:
                cg.size[m] = cin
            sizes = {root: cout}
            sizes.update(mbconv_inner_sizes(new_nodes, cg, cout))
            channels.resize_groups(None, cg, channels.Plan(sizes, seed=seed, reinit=True))
        for nn in new_nodes:
            for v in nn.outputs:
                if v is not None:
                    _clear(v)
        if _skips_where_shapes_allow(block) and not _has_skip(block):
            # B1's second 320-channel block adds its input, as the zoo builds it; the copy of B0's one block
            # (320 from 192 channels: no skip) had none, so the scaled B0 was not the zoo's B1
            add = _skip_add(graph, out, placeholder, tag, new_nodes[-1])  # its meta: index and stride updated above
            new_nodes.append(add)
            out = add.outputs[0]
    for nn in new_nodes:
        for i, v in enumerate(nn.inputs):
            if v is placeholder:
                nn.set_input(i, after)
    return new_nodes, out


#: Block kinds (the zoo's node meta) whose family adds the block's input wherever stride and channels allow.
SKIPS_WHEN_SHAPES_ALLOW = frozenset({"mbconv", "fused_mbconv"})


def _skip_add(graph: Graph, out: Value, block_input: Value, tag: str, last: Node) -> Node:
    """The residual ``Add(out, block_input)`` of a block whose last node is ``last``, with that node's meta but
    "layer": the zoo's residual Add has none, and ``mbconv_inner_sizes`` reads it to find expansions and squeezes."""
    add = Node("Add", [out, block_input], None, outputs=[Value(graph.unique_name(f"{out.name}_skip"), out.type)],
               name=graph.unique_name(f"Add_{tag}"))
    add.meta = {k: v for k, v in last.meta.items() if k != "layer"}
    return add


def _outer_inputs(block: Block, constant: set[int]) -> list[Value]:
    """The computed tensors ``block`` reads from outside itself (its input, when there is one)."""
    produced = {id(v) for n in block.nodes for v in n.outputs if v is not None}
    outer = {id(v): v for n in block.nodes for v in n.inputs
             if v is not None and id(v) not in produced and id(v) not in constant}
    return list(outer.values())


def _skips_where_shapes_allow(block: Block) -> bool:
    """Whether ``block`` adds its input wherever the shapes allow: a searched block by its choice (MnasNet's space:
    ``skip`` ``"identity"``, whatever its op, as ``build_mnasnet`` builds it; a review found conv and dwconv blocks
    without it), any other by its family (an inverted-residual kind)."""
    meta = block.nodes[-1].meta
    choice = meta.get("choice")
    if isinstance(choice, dict) and "skip" in choice:
        return choice["skip"] == "identity"
    return meta.get("kind") in SKIPS_WHEN_SHAPES_ALLOW


def shape_preserving_blocks(graph: Graph, stages: list[Stage]) -> set[int]:
    """The ``id`` of each body block (its last node) whose input and output shapes are equal now: taken before a
    width change, for ``add_skips_where_shapes_allow``."""
    from graphmill.ir.summary import constant_values

    constant = constant_values(graph)
    out = set()
    for stage in stages:
        for b in stage.blocks:
            inputs = _outer_inputs(b, constant)
            if len(inputs) == 1 and _same_shape(inputs[0], b.output):
                out.add(id(b.nodes[-1]))
    return out


def _same_shape(a: Value, b: Value) -> bool:
    return a.shape is not None and b.shape is not None and tuple(a.shape[1:]) == tuple(b.shape[1:])


def add_skips_where_shapes_allow(graph: Graph, stages: list[Stage], preserving_before: set[int]) -> int:
    """After a width change: a block of an inverted-residual family that the change made shape-preserving (B0's
    first block, 32 -> 16 channels at stride 1, is 8 -> 8 at width 0.25) gains the skip EfficientNet's builder
    adds wherever stride is 1 and input channels equal output channels, as the zoo builds the same width (an
    outside check: B0 scaled to width 0.25 had 9 residual Adds, the zoo's and the official rule's 10). A block
    shape-preserving before and without a skip keeps its choice. Returns the number of skips added."""
    from graphmill.ir.summary import constant_values

    constant = constant_values(graph)
    added = 0
    for stage in stages:
        for b in stage.blocks:
            if id(b.nodes[-1]) in preserving_before or not _skips_where_shapes_allow(b) or _has_skip(b):
                continue
            inputs = _outer_inputs(b, constant)
            if len(inputs) != 1 or not _same_shape(inputs[0], b.output) or b.output.producer is None:
                continue
            out = b.output
            readers = out.uses()
            slots = [i for i, v in enumerate(graph.outputs) if v is out]
            add = _skip_add(graph, out, inputs[0], f"s{stage.id}b{b.index}", b.nodes[-1])
            graph.insert_after(out.producer, add)
            for node, i in readers:
                node.set_input(i, add.outputs[0])
            for i in slots:
                graph.outputs[i] = add.outputs[0]
            b.nodes.append(add)
            b.output = add.outputs[0]
            added += 1
    return added


def _has_skip(block: Block) -> bool:
    """Whether ``block`` adds its own input to its output (a residual Add/Sum reading the block's input)."""
    return any(n.op_type in ("Add", "Sum") and any(v is block.input for v in n.inputs) for n in block.nodes)


def mbconv_inner_sizes(nodes: list[Node], cg: channels.ChannelGroups, cin: int) -> dict[tuple, int]:
    """EfficientNet's rule for an MBConv or Fused-MBConv block (the zoo's node meta ``expand``/``se``) that reads
    ``cin`` channels: the expansion's group (root -> size) is ``expand * cin`` and the squeeze's ``max(1, int(se *
    cin))``, both from the block's input, never rounded on their own. Used for a copied block (B1's second block of
    stage 7 expands 320 to 1920 and squeezes to 80; a plain copy of the first block kept 1152 and 48) and for
    width scaling (B0 widened for B4 expanded 32 input channels to 200, rounding alone; EfficientNet-B4: 192).
    Blocks without that meta get nothing: their inner widths keep their own rules."""
    out: dict[tuple, int] = {}
    for n in nodes:
        meta = n.meta
        # a Fused-MBConv's kxk expansion follows the same rule (EfficientNetV2's code; it was rounded on its
        # own: V2-S widened 1.1x expanded 56 channels to 208, not 4 x 56 = 224; an outside check)
        if meta.get("kind") not in ("mbconv", "fused_mbconv") or n.op_type != "Conv" or n.outputs[0] is None:
            continue
        root = cg.find(cg.el(n.outputs[0], 1))
        if meta.get("layer") in ("expand", "fused_expand") and isinstance(meta.get("expand"), (int, float)):
            out[root] = int(cin * meta["expand"])
        elif meta.get("layer") == "se" and isinstance(meta.get("se"), (int, float)) and n.inputs[0] is not None \
                and n.inputs[0].producer is not None and n.inputs[0].producer.op_type == "GlobalAveragePool":
            out[root] = squeeze_channels(cin, meta["se"])
    return out


def deepen(graph: Graph, stage: Stage, new_repeats: int, *, seed: int) -> int:
    """Append copies of ``stage``'s last block until it has ``new_repeats`` blocks; returns #added."""
    from graphmill.ir.summary import constant_values

    add = new_repeats - stage.repeats
    if add <= 0:
        return 0
    if not stage.blocks:
        raise StructureError(f"stage {stage.id} has no block that can be copied")
    last = stage.blocks[-1]
    constant = constant_values(graph)
    tail = last.output
    readers = tail.uses()
    out_slots = [i for i, v in enumerate(graph.outputs) if v is tail]
    anchor = tail.producer
    first_index = max(b.index for b in stage.blocks) + 1
    for k in range(add):
        idx = first_index + k
        nodes, out = copy_block(graph, last, tail, index=idx, stage=stage.id, seed=seed, constant=constant)
        graph.insert_after(anchor, nodes)
        anchor = nodes[-1]
        stage.blocks.append(Block(nodes, tail, out, idx))
        tail = out
    for node, i in readers:
        node.set_input(i, tail)
    for i in out_slots:
        graph.outputs[i] = tail
    stage.repeats = new_repeats
    return add
