"""The ``compound-scale`` pass: EfficientNet's compound scaling of depth, width and resolution.

With coefficient ``phi`` and multipliers ``alpha, beta, gamma`` (Tan & Le 2019, Eq. 3):
depth ``d = alpha**phi``, width ``w = beta**phi``, resolution ``r = gamma**phi``.

* depth: each body stage of n blocks gets ``ceil(n * d)`` (``depth.deepen``);
  the stem and the head are not deepened;
* width: every channel group produced by a Conv/ConvTranspose/Gemm/MatMul
  becomes ``round_filters(c * w, divisor)`` (the zoo's rule: nearest multiple
  of ``divisor``, never more than 10% down), except groups that reach a graph
  input or output (the image channels, the classifier's classes);
  ``channels`` says how counts propagate and how new weights are filled;
* resolution: every 4-d graph input's H and W become ``floor(H * r + 0.5)``
  (round half up), then shapes are re-inferred. An AveragePool/MaxPool whose
  window is its whole input (a global pool written with a fixed kernel, as in
  many exported ResNets) is first rewritten to the Global op, so it stays
  global at the new size; other hard-coded spatial sizes make inference fail.

Order: depth (copies made at the old width), width (new blocks are widened
with the rest), resolution. The result is verified, and ``graph.meta`` is
updated: ``model`` (width, depth, resolution), ``stages`` and ``blocks``
(repeats, channels, out_size) and ``scaling`` (the applied w/d/r and the
per-stage before/after table).
"""

from __future__ import annotations

import math
from typing import Any

from graphmill.ir import Graph, ShapeInferenceError, TensorType, UserInputError, verify
from graphmill.ir.graph import DECISIONS, drop_decisions
from graphmill.ir.summary import constant_values
from graphmill.ir.ops import infer_types
from graphmill.ir.scaling import round_filters, squeeze_channels  # the zoo's rules too: one definition
from graphmill.util.limits import check_count, max_elements

from ..base import Option, Pass, PassContext, PassResult, register_pass
from . import channels
from .depth import add_skips_where_shapes_allow, deepen, mbconv_inner_sizes, shape_preserving_blocks
from .structure import Structure, channels_of, check_structure_meta, find_structure

CHANNEL_KEYS = ("cin", "cout", "width", "se_channels", "stem", "head")

MAX_PHI = 100.0
"""Largest ``phi`` a schedule may name (checked when it is parsed). EfficientNet-B7 is phi = 6; the bound
refuses an absurd coefficient (``phi=1e300`` overflowed ``alpha ** phi``) in one line before any work."""

MAX_MULTIPLIER = 16.0
"""Largest depth, width or resolution multiplier (``alpha**phi``, ``beta**phi``, ``gamma**phi``) ``scale_graph``
accepts. EfficientNet-B7's largest is 3.1 (depth); 16x the width alone is 256x the parameters. Larger asks
are refused before the graph is touched, instead of an OverflowError or a model too large to build."""


def round_resolution(size: int, r: float) -> int:
    """The documented resolution rounding: ``floor(size * r + 0.5)`` (round half up)."""
    return int(math.floor(size * r + 0.5))


def _patch_strides(v) -> tuple[int, int] | None:
    """The strides of a patch embedding reading input ``v`` (a 2-D Conv whose kernel is its stride, unpadded:
    ViT's), or None."""
    for node, i in v.uses():
        if node.op_type != "Conv" or i != 0:
            continue
        k, st = node.attr("kernel_shape", None), node.attr("strides", None)
        pads = node.attr("pads", [0, 0, 0, 0])
        if k is not None and st is not None and len(st) == 2 and list(k) == list(st) and min(st) > 1 \
                and not any(pads) and node.attr("auto_pad", "NOTSET") in ("NOTSET", "VALID", b"NOTSET", b"VALID"):
            return int(st[0]), int(st[1])
    return None


def check_multiplier(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise UserInputError(f"{name}={value!r}: must be a number > 0")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"{name}={value!r}: must be a number > 0") from None
    if not math.isfinite(v) or v <= 0:
        raise UserInputError(f"{name}={value!r}: must be a number > 0")
    return v


def _multiplier(what: str, base: float, name: str, phi: float) -> float:
    """``base ** phi``, refused (UserInputError) when it overflows or exceeds ``MAX_MULTIPLIER``."""
    try:
        m = base ** phi
    except OverflowError:
        m = math.inf
    if not m <= MAX_MULTIPLIER:
        shown = f"{m:.4g}" if math.isfinite(m) else "too large to represent"
        raise UserInputError(f"phi={phi!r}: the {what} multiplier {name}**phi = {base:g}**{phi:g} is {shown}; "
                             f"at most {MAX_MULTIPLIER:g} is accepted")
    return m


def reinfer(graph: Graph) -> None:
    """Forget every node output's shape and infer them again from the inputs (after channels or the
    input size changed, the old shapes are wrong, and inference never overrides a known dim)."""
    for n in graph.nodes:
        for v in n.outputs:
            if v is not None and isinstance(v.type, TensorType):
                v.type = TensorType(v.type.dtype, None)
    infer_types(graph, strict=True)


def _globalize_pools(graph: Graph) -> int:
    """An AveragePool/MaxPool whose window covers its whole input (no padding) becomes the Global op.

    Exact at the old resolution, and keeps a "global pool in disguise" (common in exported ResNets:
    AveragePool 7x7 on a 7x7 map) global when the resolution changes. Returns how many were rewritten.
    """
    from graphmill.ir import Node

    count = 0
    for n in graph.nodes:
        if n.op_type not in ("AveragePool", "MaxPool") or len(n.outputs) != 1:
            continue
        x = n.inputs[0]
        shp = x.shape if x is not None else None
        k = n.attr("kernel_shape")
        if shp is None or k is None or list(shp[2:]) != list(k) or any(int(p) for p in (n.attr("pads") or [])) \
                or n.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or n.attr("dilations") is not None:
            continue
        op = "GlobalAveragePool" if n.op_type == "AveragePool" else "GlobalMaxPool"
        new = Node(op, [x], None, name=graph.unique_name(f"{n.name or op}_global"))
        new.meta = dict(n.meta)
        graph.replace_node(n, new)
        count += 1
    return count


def _weights_folded(graph: Graph) -> bool:
    """Whether every constant a computing node reads is an initializer, as the channel analysis needs. Not only
    the Conv/Gemm weights: a freshly initialized torch CNN shares its equal tensors (zero biases and running means)
    through exporter ``Identity`` nodes, and a BatchNormalization's running mean read through one was refused as
    "computed, not an initializer" (an outside check)."""
    constant = constant_values(graph)
    for n in graph.nodes:
        if n.outputs and n.outputs[0] is not None and id(n.outputs[0]) in constant:
            continue  # a constant's construction: folding it is the point
        if any(v is not None and id(v) in constant and v.const is None for v in n.inputs):
            return False
    return True


def _stage_rows(graph: Graph, struct: Structure | None) -> list[dict]:
    """Each stage's repeats and channels. A stem's channels are what it hands the first body block (None where
    the discovered first stage opens with a block without a skip, whose input the cuts do not give); a head's are
    the output channels of its last convolution (EfficientNet's 1x1 to 1280), None without one (ResNet's pool
    and classifier keep the last stage's width)."""
    if struct is None:
        return []
    body = [s for s in struct.body() if s.blocks]

    def channels(v) -> int | None:
        return channels_of(v) if v is not None and isinstance(v.type, TensorType) else None

    # a discovered stage's opening block without a skip is counted but not listed, and the cuts give only its
    # projection: what it reads is not known, and its first listed block's input read as the stem's (an imported
    # EfficientNet-B0's stem 24 -> 40, its first stage's output, for 16 -> 24: an outside check)
    opens_unlisted = bool(body) and body[0].meta.get("opener_without_skip", False)
    stem = channels(body[0].blocks[0].input) if body and not opens_unlisted else None
    head = None
    last = body[-1].blocks[-1].output.producer if body else None
    if last is not None and last in graph.nodes:
        after = graph.nodes[graph.nodes.index(last) + 1:]
        convs = [n for n in after if n.op_type == "Conv" and n.outputs and n.outputs[0] is not None]
        head = channels(convs[-1].outputs[0]) if convs else None
    return [dict(stage=s.id, kind=s.kind, repeats=s.repeats,
                 channels=stem if s.kind == "stem" else head if s.kind == "head" else s.channels)
            for s in struct.stages]


def _check_smallest_input(graph: Graph, r: float) -> None:
    """Refuse a resolution under the model's total downsampling (its input over its smallest feature map larger
    than 1x1: 224/7 = 32 for EfficientNet-B0): below it the last stages compute on padding only, and the zoo
    refuses to build such a model (`gamma=0.01` turned B0's 224x224 input into 2x2 without a word)."""
    images = [v for v in graph.inputs if not v.is_initializer and isinstance(v.type, TensorType)
              and v.shape is not None and len(v.shape) == 4]
    if len(images) != 1:  # several images at different sizes: the smallest map says nothing of one input's
        return
    maps = [v.shape for v in graph.values() if not v.is_initializer and v not in graph.inputs
            and isinstance(v.type, TensorType) and v.shape is not None and len(v.shape) == 4]
    for v in images:
        for ax in (2, 3):
            size = v.shape[ax]
            smallest = min((s[ax] for s in maps if isinstance(s[ax], int) and s[ax] > 1), default=None)
            if not isinstance(size, int) or smallest is None:
                continue
            factor = size // smallest
            if round_resolution(size, r) < factor:
                raise UserInputError(
                    f"resolution x{r:.4g}: input %{v.name}'s {size} becomes {max(1, round_resolution(size, r))}, "
                    f"under the model's downsampling of {factor} ({size} to a smallest feature map of {smallest}): "
                    f"its last stages would compute on padding only; the smallest resolution is x{factor / size:.4g}")


def scale_graph(graph: Graph, *, phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15,
                divisor: int = 8, seed: int = 0) -> dict:
    """Compound-scale ``graph`` in place; returns the report also stored in ``graph.meta["scaling"]``."""
    if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not math.isfinite(phi) or phi < 0:
        raise UserInputError(f"phi={phi!r}: must be a number >= 0")
    alpha, beta, gamma = (check_multiplier(k, v) for k, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)))
    divisor = check_count(divisor, "divisor", 1)
    d, w, r = (_multiplier(what, base, name, phi) for what, base, name in
               (("depth", alpha, "alpha"), ("width", beta, "beta"), ("resolution", gamma, "gamma")))
    check_structure_meta(graph)  # before any work: the meta updated at the end is the file's too
    if not _weights_folded(graph):
        from graphmill.passes.base import pass_class

        pass_class("fold-constants")(size_limit=1 << 30).run(graph, PassContext(seed=seed))
        pass_class("dce")().run(graph, PassContext(seed=seed))
    infer_types(graph)
    if r != 1:
        _check_smallest_input(graph, r)

    struct: Structure | None = None
    needs_depth = False
    try:
        struct = find_structure(graph)
    except UserInputError:
        if d != 1:
            raise
    if struct is not None:
        fewer = [s for s in struct.body() if math.ceil(s.repeats * d) < s.repeats]
        if fewer:  # removing blocks is not done: said, rather than the depth left as it is with exit 0
            s0 = fewer[0]
            raise UserInputError(f"depth {d:g} (alpha={alpha:g} ** phi={phi:g}) would cut stage {s0.id} from "
                                 f"{s0.repeats} blocks to {math.ceil(s0.repeats * d)}: compound-scale adds blocks, "
                                 "it does not remove them (EfficientNet's alpha >= 1); width and resolution may "
                                 "shrink")
        needs_depth = any(math.ceil(s.repeats * d) != s.repeats for s in struct.body())
    before = _stage_rows(graph, struct)
    params_before = channels.parameter_elements(graph)
    added = 0
    if needs_depth:
        # a narrower width may bring the copies back under the limit (the end's count says), one that rounds every
        # stage back to its width cannot (beta 0.999 with divisor 8 built all of alpha 16's copies before the end's
        # refusal; a review)
        if not any(isinstance(row["channels"], int) and round_filters(row["channels"], w, divisor) < row["channels"]
                   for row in before):
            _check_depth_size(graph, struct, d)
        for s in struct.body():
            n = deepen(graph, s, int(math.ceil(s.repeats * d)), seed=seed)
            if n:
                added += n
                graph.sort()
                reinfer(graph)  # the next stage's copy reads this stage's new output shapes

    widened = resized = skips = 0
    if w != 1:
        preserving = shape_preserving_blocks(graph, struct.body()) if struct is not None else set()
        constant = constant_values(graph)
        cg = channels.analyze(graph.nodes, constant=constant,
                              graph_inputs=[v for v in graph.inputs if not v.is_initializer],
                              graph_outputs=graph.outputs)
        plan: dict = {}
        sizes = {root: size for root, _, size in channels.source_groups(cg)}
        for root, size in sizes.items():
            new = round_filters(size, w, divisor)
            if new != size:
                plan[root] = new
        for root, new in mbconv_derived_sizes(struct, cg, lambda r: plan.get(r, sizes.get(r))).items():
            if root in sizes:
                plan.pop(root, None)
                if new != sizes[root]:
                    plan[root] = new
        if not plan and cg.blocked and any(round_filters(sz, w, divisor) != sz
                                           for sz in {cg.size[k] for k in cg.blocked if isinstance(cg.size[k], int)}):
            node, why = next(iter(cg.blocked.values()))
            raise channels.WidthError(f"cannot change the channel count through {node.describe()}: {why}; "
                                      "no channel group of this model can be widened (use beta=1)")
        resized = channels.resize_groups(graph, cg, channels.Plan(plan, seed=seed))
        widened = len(plan)
        if plan:
            reinfer(graph)
            if struct is not None:
                skips = add_skips_where_shapes_allow(graph, struct.body(), preserving)
                if skips:
                    reinfer(graph)

    globalized = _globalize_pools(graph) if r != 1 else 0
    res_before: dict[str, list] = {}
    res_after: dict[str, list] = {}
    for v in graph.inputs:
        if v.is_initializer or not isinstance(v.type, TensorType) or v.shape is None or len(v.shape) != 4:
            continue
        shp = list(v.shape)
        res_before[v.name] = shp[2:]
        if r != 1:
            patch = _patch_strides(v)
            for k, ax in enumerate((2, 3)):
                if not isinstance(shp[ax], int):
                    raise UserInputError(f"input %{v.name} has a symbolic spatial size {shp[ax]!r}; "
                                         "resolution scaling needs a fixed input size")
                # a patch embedding reads whole patches: a size between two multiples of the patch dropped its
                # last rows and columns silently (ViT 64 -> 74 px, still 4 x 4 patches); the zoo rounds so too
                s = patch[k] if patch else 1
                shp[ax] = s * max(1, round_resolution(shp[ax], r / s))
            v.type = v.type.with_shape(shp)
        res_after[v.name] = shp[2:]
    try:
        reinfer(graph)
    except ShapeInferenceError as e:
        if r == 1:
            raise
        raise UserInputError(f"resolution x{r:.4g} ({res_before} -> {res_after}): {e}; the model has a size "
                             "fixed for its input (e.g. a Flatten into a Gemm): scale it with gamma=1") from None
    verify(graph)
    _check_total_size(graph, params_before)

    after = _stage_rows(graph, struct)
    report = dict(phi=phi, alpha=alpha, beta=beta, gamma=gamma, divisor=divisor, seed=seed, depth=d, width=w,
                  resolution=r, structure=struct.source if struct else None, input_size_before=res_before,
                  input_size_after=res_after, pools_made_global=globalized, blocks_added=added, skips_added=skips,
                  channel_groups_resized=widened,
                  tensors_resized=resized,
                  stages=[dict(stage=b["stage"], kind=b["kind"], repeats_before=b["repeats"],
                               repeats_after=a["repeats"], channels_before=b["channels"],
                               channels_after=a["channels"]) for b, a in zip(before, after)])
    _update_meta(graph, struct, report)
    if blocks_or_sizes_changed(report):  # another network: a placement's copied devices and a training table's
        # names described the old one (simulate refused the result, or replayed it past a device's memory: an
        # outside check)
        report["decisions_dropped"] = [DECISIONS[k] for k in drop_decisions(graph)]
    return report


def blocks_or_sizes_changed(report: dict) -> bool:
    """Whether a scaling report's network differs from the one it scaled."""
    return bool(report["blocks_added"] or report["tensors_resized"]
                or report["input_size_before"] != report["input_size_after"])


def _check_total_size(graph: Graph, before: int) -> None:
    """The scaled model's parameters against GRAPHMILL_MAX_ELEMENTS, counted (the zoo's rule for its multipliers),
    when scaling added some: the estimates before copying and resizing are bounds (a review: B0 at alpha 2 under a
    1e7 limit wrote 10.3M parameters, an opening block's copies being larger than the block)."""
    limit = max_elements()
    total = channels.parameter_elements(graph)
    if total > limit and total > before:
        raise UserInputError(f"the scaled model has {total:,} parameters, more than the limit of {limit:,} "
                             "(GRAPHMILL_MAX_ELEMENTS); choose a smaller depth or width (alpha, beta)")


def _check_depth_size(graph: Graph, struct: Structure, d: float) -> None:
    """Refuse, before any block is copied, a depth whose copies take the parameters past GRAPHMILL_MAX_ELEMENTS,
    as the width's resize does and the zoo's depth multiplier does (a review: ``--alpha 2`` under a 4e6 limit wrote
    a model of 10.3M parameters, which the width check alone let through). A lower bound (a copy of a stage-opening
    block grows to the stage's width: counted as the block), so it never refuses a model that fits; the finished
    model is counted too (``_check_total_size``)."""
    limit = max_elements()
    total = channels.parameter_elements(graph)
    for s in struct.body():
        add = math.ceil(s.repeats * d) - s.repeats
        if add <= 0 or not s.blocks:
            continue
        weights = {id(v): v for n in s.blocks[-1].nodes for v in n.inputs
                   if v is not None and v.is_initializer and v.const is not None}
        total += add * sum(math.prod(v.const.shape) for v in weights.values())
    if total > limit:
        raise UserInputError(f"depth {d:g}: the scaled model would have {total:,} parameters, more than the limit of "
                             f"{limit:,} (GRAPHMILL_MAX_ELEMENTS); choose a smaller depth (alpha)")


def mbconv_derived_sizes(struct: Structure | None, cg: channels.ChannelGroups,
                         new_size: Any) -> dict[tuple, int]:
    """``depth.mbconv_inner_sizes`` of every body block, from the *new* size of its input's group
    (``new_size(root)``): with it, B0 scaled with Bx's coefficients is the zoo's (torchvision's) Bx."""
    out: dict[tuple, int] = {}
    for stage in (struct.body() if struct is not None else []):
        for blk in stage.blocks:
            cin = new_size(cg.find(cg.el(blk.input, 1))) if id(blk.input) in cg.values else None
            if isinstance(cin, int):
                out.update(mbconv_inner_sizes(blk.nodes, cg, cin))
    return out


def _update_meta(graph: Graph, struct: Structure | None, report: dict) -> None:
    w, d, div = report["width"], report["depth"], report["divisor"]
    m = graph.meta
    if isinstance(m.get("model"), dict):
        model = dict(m["model"])
        for k, f in (("width", w), ("depth", d)):
            if isinstance(model.get(k), (int, float)):
                model[k] = model[k] * f
        if isinstance(model.get("resolution"), (int, float)) and report["input_size_after"]:
            model["resolution"] = next(iter(report["input_size_after"].values()))[0]
        for k in ("stem", "head"):
            if isinstance(model.get(k), int):
                model[k] = round_filters(model[k], w, div)
        m["model"] = model
    if isinstance(m.get("stages"), list):
        rows = {row["stage"]: row for row in report["stages"]}
        new = []
        for st in m["stages"]:
            st = dict(st)
            for k in CHANNEL_KEYS:
                if isinstance(st.get(k), int):
                    st[k] = round_filters(st[k], w, div)
            if st.get("stage") in rows and "repeats" in st:
                st["repeats"] = rows[st["stage"]]["repeats_after"]
            new.append(st)
        m["stages"] = new
    if isinstance(m.get("blocks"), list) and struct is not None and struct.source == "meta":
        by_key = {(b.get("stage"), b.get("block")): b for b in m["blocks"] if isinstance(b, dict)}
        new_blocks = []
        for s in struct.stages:
            for blk in s.blocks:
                row = by_key.get((s.id, blk.index))
                if row is None:  # a copy: take the last original block's row
                    src = [b for b in m["blocks"] if b.get("stage") == s.id]
                    row = dict(src[-1]) if src else {}
                    row.update(block=blk.index, stride=1)
                    if "cout" in row:
                        row["cin"] = row["cout"]
                    row["copied"] = True
                else:
                    row = dict(row)
                for k in CHANNEL_KEYS:  # a copy's row too: it was the last block's row before widening
                    if isinstance(row.get(k), int):
                        row[k] = round_filters(row[k], w, div)
                if isinstance(row.get("se_channels"), int) and isinstance(row.get("se"), (int, float)) and \
                        isinstance(row.get("cin"), int):  # the squeeze follows the block's input (mbconv_inner_sizes)
                    row["se_channels"] = squeeze_channels(row["cin"], row["se"])
                shp = blk.output.shape
                if "out_size" in row and shp is not None and isinstance(shp[-1], int):
                    row["out_size"] = shp[-1]
                new_blocks.append(row)
        body_ids = {s.id for s in struct.body()}
        rest = [dict(b) for b in m["blocks"] if b.get("stage") not in body_ids]
        m["blocks"] = sorted(rest + new_blocks, key=lambda b: (b.get("stage", 0), b.get("block", 0)))
    m["scaling"] = report


@register_pass
class CompoundScale(Pass):
    """EfficientNet compound scaling: depth alpha^phi, width beta^phi, resolution gamma^phi (see the module doc)."""

    name = "compound-scale"
    exactness = "approximate"  # a different network: numerics are not preserved (except at phi = 0)
    resizes_interface = True  # the resolution: --verify-each refused every gamma != 1 ("the graph's inputs changed")
    options = (
        Option("phi", float, 1.0, "compound coefficient (alpha/beta/gamma**phi at most 16 each)", min=0.0,
               max=MAX_PHI),
        Option("alpha", float, 1.2, "depth multiplier base (> 0)", above=0.0),
        Option("beta", float, 1.1, "width multiplier base (> 0)", above=0.0),
        Option("gamma", float, 1.15, "resolution multiplier base (> 0)", above=0.0),
        Option("divisor", int, 8, "channel counts are rounded to multiples of this", min=1),
        Option("seed", int, 0, "seed of new weights"),
    )

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        rep = scale_graph(graph, phi=self.phi, alpha=self.alpha, beta=self.beta, gamma=self.gamma,
                          divisor=self.divisor, seed=self.seed)
        notes = [f"the decisions {who} made were dropped: they were made for the network before scaling"
                 for who in rep.get("decisions_dropped", ())]
        return PassResult(blocks_or_sizes_changed(rep), {"blocks_added": rep["blocks_added"],
                                                         "channel_groups": rep["channel_groups_resized"],
                                                         "tensors_resized": rep["tensors_resized"]}, notes)


def scale(graph: Graph, phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15, divisor: int = 8,
          *, seed: int = 0, inplace: bool = False) -> Graph:
    """The compound-scaled ``graph`` (a copy unless ``inplace``); the report is in ``graph.meta["scaling"]``."""
    g = graph if inplace else graph.copy()
    scale_graph(g, phi=phi, alpha=alpha, beta=beta, gamma=gamma, divisor=divisor, seed=seed)
    return g
