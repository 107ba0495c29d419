"""PyTorch frontend: ``from_torch(module, example_inputs) -> ir.Graph``.

The module goes through ``torch.onnx.export`` into an in-memory ``ModelProto``
(an ``io.BytesIO``: nothing is written to the user's folders) and then through
``from_proto``, so that everything downstream sees ordinary ONNX semantics.

Exporter choice: the legacy TorchScript exporter (``dynamo=False``).
Measured here with torch 2.13.0 (CPU) and onnxscript 0.7.2 on conv/BN/pool/
linear, Linear+LayerNorm+GELU, GroupNorm+SiLU, ``nn.MultiheadAttention`` and
a hand-written ``scaled_dot_product_attention`` block, each with a dynamic
batch dimension and checked under ONNX Runtime against torch eager:

* legacy: all five exported and matched (max |diff| <= 1e-6), 0.2-0.7 s each,
  at the requested opset (17) directly;
* dynamo: the SDPA block failed to convert (``ConversionError``); the others
  matched but took 1-5 s each, and the exporter has no opset-17 implementations
  any more: it exports opset 18 and down-converts (with a fallback warning),
  printing several warnings per export.

When the legacy exporter fails, the dynamo exporter is tried before giving up
(with torch 2.13 it exports ``nn.TransformerEncoderLayer`` in eval mode, whose
fast path the tracer cannot export); the error then reports the legacy
exporter's message, which names the failing ``aten::`` op.

The legacy exporter traces, so data-dependent Python control flow is frozen
at the example inputs: ``if x.sum() > 0:`` keeps the branch the example took.
torch reports each such place with a ``TracerWarning``; ``from_torch`` passes
those raised in the user's code (not in torch's own library, whose argument
checks raise them on every ``nn.MultiheadAttention``) on as a
``graphmill.errors.TracingWarning`` naming the module class, the file, line
and source torch points at; ``strict=True`` raises ``UserInputError`` instead.
The dynamo fallback refuses data-dependent control flow outright. It
exports in eval mode (``training=TrainingMode.EVAL``): Dropout disappears and
BatchNorm uses its running statistics.

Tied parameters (one ``nn.Parameter`` reachable under several names, e.g. ``head.weight =
emb.weight``) stay one initializer: the exporter's constant folding turns a bias-free
``Linear``'s ``MatMul`` operand into a new initializer holding the transposed weight, which
would make the head a second, independent weight under ``to_torch``; ``from_torch`` replaces
such a folded copy of a tied parameter (an exporter-named initializer equal to it or to its
transpose) by ``Transpose``/a direct read of the tied initializer (``_retie``).

With ``dynamic_batch`` every input's first dimension is the symbol ``"N"``,
and so is every output's first dimension when, in the example run, it equals
the first input's batch size.
"""

from __future__ import annotations

import contextlib
import io
import linecache
import os
import re
import sys
import tempfile
import warnings
from typing import Any, Sequence

from graphmill.ir import Graph, Node, Tensor, UserInputError, Value
from graphmill.ir.graph import TORCH_ROLES_KEY
from graphmill.util.errors import TracingWarning
from graphmill.util.limits import check_flags

from .onnx_import import from_proto

_OP_PATTERNS = (
    re.compile(r"operator '([\w:.]+)'"),
    re.compile(r"\b(aten::[\w.]+)"),
    re.compile(r"\b(prim::[\w.]+)"),
    re.compile(r"\b(onnx::[\w.]+)"),
)


def _failing_op(text: str) -> str | None:
    for pat in _OP_PATTERNS:
        m = pat.search(text)
        if m:
            return m.group(1)
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@contextlib.contextmanager
def _quiet(fd: int):
    """Silence a file descriptor (1 or 2): the exporters print from C++ and through logging. Named by number, not
    by ``sys.stdout``/``sys.stderr``: while a command's --json goes to stdout, ``sys.stdout`` is ``sys.stderr``."""
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved = os.dup(fd)
    except (AttributeError, OSError, ValueError):
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(AttributeError, OSError, ValueError):
                        stream.flush()
                os.dup2(saved, fd)
    finally:
        os.close(saved)


def _export_legacy(torch, module, args, buf, opset, in_names, out_names, dynamic_axes) -> list[str]:
    """Export with the tracer; returns the places in the user's code where it froze a value (see _frozen_sites).

    ``TrainingMode.PRESERVE`` on a module in eval mode is ``EVAL`` without the exporter's eval peephole, which
    folded every BatchNorm into its Conv: ``to_torch`` then had no BatchNorm scale and bias to train, and one SGD
    step moved the weights away from the original's (an outside check). Folding is ``fuse-conv-bn``'s job. Constant
    folding is off too: it wrote a buffer sliced by a constant, a frozen LSTM's reordered gates and a tied weight's
    transpose as new initializers no module name covered, so the torch backend could not tell what the module
    trains (an outside check); ``fold-constants`` folds them when asked."""
    with warnings.catch_warnings(record=True) as caught, _quiet(1):
        warnings.simplefilter("always")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=opset, input_names=in_names,
                          output_names=out_names, dynamic_axes=dynamic_axes, do_constant_folding=False,
                          training=torch.onnx.TrainingMode.PRESERVE)
    return _frozen_sites(torch, caught)


def _frozen_sites(torch, caught: list) -> list[str]:
    """``file:line `source` (torch's reason)`` for each distinct TracerWarning raised outside torch's package."""
    torch_dir = os.path.realpath(os.path.dirname(torch.__file__)) + os.sep
    sites: list[str] = []
    for w in caught:
        if not issubclass(w.category, torch.jit.TracerWarning):
            continue
        path = w.filename or "?"
        if os.path.realpath(path).startswith(torch_dir):
            continue
        reason = str(w.message).strip().split(". ")[0].splitlines()[0].rstrip(".") if str(w.message).strip() else ""
        code = linecache.getline(path, w.lineno).strip() if w.lineno else ""
        site = f"{path}:{w.lineno}" + (f" `{code}`" if code else "") + (f" ({reason})" if reason else "")
        if site not in sites:
            sites.append(site)
    return sites


def _export_dynamo(torch, module, args, buf, opset, in_names, out_names, dynamic_batch) -> None:
    dynamic_shapes = None
    if dynamic_batch:
        n = torch.export.Dim("N")
        dynamic_shapes = tuple({0: n} if a.dim() >= 1 else None for a in args)
    with warnings.catch_warnings(), _quiet(1), _quiet(2):
        warnings.simplefilter("ignore")
        module.eval()
        torch.onnx.export(module, args, buf, dynamo=True, opset_version=opset, input_names=in_names,
                          output_names=out_names, dynamic_shapes=dynamic_shapes, verbose=False,
                          optimize=False)  # its optimizer merges equal initializers: training would tie them


#: (op, attribute) pairs a later opset added whose default leaves the earlier opset's behaviour as it was: the
#: Reduce ops' ``noop_with_empty_axes`` (opset 18; 0 reduces every axis when none is given, as before). Other new
#: attributes' defaults change behaviour (Resize's ``coordinate_transformation_mode`` at opset 11: dropping it
#: turned a refusal into other numbers; a review), so only these are dropped.
NO_OP_LATER_ATTRIBUTES = frozenset((op, "noop_with_empty_axes") for op in (
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd",
    "ReduceSum", "ReduceSumSquare"))


def drop_no_op_later_attributes(model) -> int:
    """Remove the attributes of ``NO_OP_LATER_ATTRIBUTES`` from nodes of an opset before theirs where they hold
    their default: the dynamo exporter at opset 17 writes a ``ReduceL2`` (the magnitude of ``torch.fft.rfft``'s
    output) with opset 18's ``noop_with_empty_axes=0``, which ``save`` refused (a graph ``from_torch`` returned
    that could not be written; an outside check). Any other value is left for the schema check to refuse.
    Function bodies and subgraphs too. Returns how many."""
    import onnx

    def standard(imports) -> int | None:
        return next((o.version for o in imports if o.domain in ("", "ai.onnx")), None)

    dropped = 0
    # each body with the standard opset it is read at: a function's own imports (a review), else the model's
    stack = [(list(model.graph.node), standard(model.opset_import))]
    stack += [(list(f.node), standard(f.opset_import) or standard(model.opset_import)) for f in model.functions]
    while stack:
        nodes, opset = stack.pop()
        if opset is None:
            continue
        for node in nodes:
            for a in node.attribute:
                stack.extend([(list(g.node), opset) for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH
                                                              else a.graphs)])
            if node.domain not in ("", "ai.onnx"):
                continue
            for a in list(node.attribute):
                if (node.op_type, a.name) not in NO_OP_LATER_ATTRIBUTES:
                    continue
                try:
                    later = onnx.defs.get_schema(node.op_type).attributes[a.name]
                    if a.name in onnx.defs.get_schema(node.op_type, opset).attributes:
                        continue
                except (onnx.defs.SchemaError, KeyError):
                    continue
                if onnx.helper.get_attribute_value(a) == onnx.helper.get_attribute_value(later.default_value):
                    node.attribute.remove(a)
                    dropped += 1
    return dropped


def _flatten(out: Any) -> list:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten(o)]
    return []


_WEIGHT_READERS = frozenset({"MatMul", "Gemm", "Gather", "Einsum"})  # what reads an embedding table or a head


def _retie(graph: Graph, module) -> int:
    """Make the graph read each tied parameter of ``module`` from its one initializer again.

    The legacy exporter constant-folds ``Transpose(weight)`` (a bias-free ``Linear`` on 3-D input exports as
    ``MatMul``) into a new initializer named ``onnx::MatMul_N``; for a tied weight that copy would untie the
    head from the embedding. An initializer whose name is none of the module's parameters or buffers and
    whose data equals a tied parameter (or its 2-D transpose) exactly, read only as a weight (MatMul, Gemm,
    Gather, Einsum), is replaced by a direct read (or a ``Transpose``) of the tied parameter's initializer. Returns how many copies were replaced.
    """
    import numpy as np

    groups: dict[int, tuple] = {}
    own: set[str] = set()
    for name, p in module.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), (p, []))[1].append(name)
        own.add(name)
    own.update(name for name, _ in module.named_buffers(remove_duplicate=False))
    inits = graph.initializers
    done = 0
    for p, names in groups.values():
        src = next((inits[n] for n in names if n in inits), None) if len(names) > 1 else None
        if src is None or not isinstance(src.const, Tensor):
            continue
        arr = src.const.numpy()
        for v in list(inits.values()):
            if v is src or v.name in own or v in graph.inputs or not isinstance(v.const, Tensor) \
                    or not all(n.op_type in _WEIGHT_READERS for n, _ in v.uses()):
                continue  # a constant read elsewhere (a mask, a fill value) is left alone even if equal
            c = v.const.numpy()
            if c.dtype != arr.dtype:
                continue
            same = c.shape == arr.shape and np.array_equal(c, arr)
            transposed = not same and arr.ndim == 2 and c.shape == arr.shape[::-1] and np.array_equal(c, arr.T)
            if not (same or transposed):
                continue
            name = v.name
            if same:
                v.replace_all_uses_with(src)
            else:
                out = Value("", v.type)
                node = Node("Transpose", [src], {"perm": [1, 0]}, outputs=[out], name=f"{name}_retie")
                if graph.nodes:
                    graph.insert_before(graph.nodes[0], node)
                else:
                    graph.append(node)
                v.replace_all_uses_with(out)
            graph.remove_initializer(v)
            if not same:
                graph.rename(out, name)
            done += 1
    return done


#: the least nn.Softplus threshold whose dropped branch stays under float32's resolution (exp(-16) = 1.1e-7): torch's
#: default, 20, is far above it
SOFTPLUS_THRESHOLD = 16


def from_torch(module, example_inputs, *, dynamic_batch: bool = True, opset: int = 17,
               input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
               strict: bool = False) -> Graph:
    """Import ``module`` (an ``nn.Module``) by exporting it to ONNX with ``example_inputs``.

    ``example_inputs`` is a tensor or a tuple/list of tensors. Names default to
    ``input``/``output`` (``input_0``, ``input_1``... when there are several).
    Raises ``UserInputError`` naming the module class and the failing op when
    torch cannot export the module. Where the tracer froze a value computed from
    tensor data (data-dependent control flow), the graph is right only for inputs
    that take the same path: that is a ``TracingWarning`` naming the module and the
    line, or with ``strict=True`` a ``UserInputError``.
    """
    import torch

    cls = type(module).__name__
    if not isinstance(module, torch.nn.Module):
        raise UserInputError(f"from_torch needs a torch.nn.Module, got {cls}")
    check_flags("graphmill.from_torch", dynamic_batch=dynamic_batch, strict=strict)
    args = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise UserInputError(f"from_torch({cls}): example_inputs must be a tensor or a tuple of tensors")

    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not 7 <= opset <= newest:
        # the dynamo fallback ignored it: opset=99 or "17" gave an opset-18 graph without a word (an outside check)
        raise UserInputError(f"from_torch({cls}): opset={opset!r}: give an integer from 7 to {newest}")
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.LSTM) and getattr(m, "proj_size", 0) > 0:
            # ONNX's LSTM has no projection: torch exports one whose initial_c has the projected size, which ONNX
            # Runtime refuses when it runs (and a graph with the wrong semantics besides)
            raise UserInputError(f"from_torch({cls}): {name or cls} is an nn.LSTM with proj_size={m.proj_size}, "
                                 "which ONNX's LSTM cannot express (the projected state feeds the recurrence)")
        if isinstance(m, torch.nn.Softplus) and m.threshold < SOFTPLUS_THRESHOLD:
            # torch returns x itself where beta*x > threshold; ONNX's Softplus has no threshold and torch's exporter
            # drops it, so the graph differs from the module by up to exp(-threshold)/beta there (threshold 5:
            # 3.3e-3 on values of 22, silently: an outside check's fuzzer)
            raise UserInputError(f"from_torch({cls}): {name or cls} is an nn.Softplus with threshold={m.threshold:g}, "
                                 f"which ONNX's Softplus cannot express (its exporter drops it, changing outputs by up "
                                 f"to exp(-threshold)/beta); use a threshold of at least {SOFTPLUS_THRESHOLD}")
    modes = [(m, m.training) for m in module.modules()]  # restored exactly afterwards (mixed modes too)

    def restore() -> None:
        for m, t in modes:
            m.training = t

    try:
        module.eval()
        with torch.no_grad():
            outs = _flatten(module(*args))
    except Exception as e:  # noqa: BLE001 -- the user's module failed on the user's inputs
        raise UserInputError(f"from_torch({cls}): the module fails on the example inputs: {_first_line(e)}") from e
    finally:
        restore()
    if not outs:
        raise UserInputError(f"from_torch({cls}): the module returns no tensor")

    in_names = list(input_names) if input_names is not None else (
        ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))])
    out_names = list(output_names) if output_names is not None else (
        ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))])
    if len(in_names) != len(args):
        raise UserInputError(f"from_torch({cls}): {len(in_names)} input name(s) for {len(args)} input(s)")
    if len(out_names) != len(outs):
        raise UserInputError(f"from_torch({cls}): {len(out_names)} output name(s) for {len(outs)} output(s)")

    dynamic_axes = None
    if dynamic_batch:
        batch = args[0].shape[0] if args[0].dim() else None
        dynamic_axes = {n: {0: "N"} for n, a in zip(in_names, args) if a.dim() >= 1}
        for n, o in zip(out_names, outs):
            if o.dim() >= 1 and batch is not None and o.shape[0] == batch:
                dynamic_axes[n] = {0: "N"}

    buf = io.BytesIO()
    frozen: list[str] = []
    try:
        module.eval()  # eval semantics (Dropout off, BatchNorm's running statistics), restored below
        frozen = _export_legacy(torch, module, args, buf, opset, in_names, out_names, dynamic_axes)
    except Exception as e:  # noqa: BLE001 -- torch raises many types; the user gets one clear message
        restore()
        buf = io.BytesIO()
        try:  # what the tracer cannot export, torch.export sometimes can (e.g. TransformerEncoderLayer's fast path)
            _export_dynamo(torch, module, args, buf, opset, in_names, out_names, dynamic_batch)
        except Exception:  # noqa: BLE001 -- report the first exporter's failure: it names the op
            op = _failing_op(str(e))
            where = f" (failing op: {op})" if op else ""
            raise UserInputError(f"from_torch: cannot export {cls} to ONNX opset {opset}{where}: "
                                 f"{_first_line(e)}") from e
    finally:
        restore()
    if frozen and strict:
        raise UserInputError(f"from_torch({cls}, strict=True): torch's tracer froze values computed from tensor data "
                             f"to what the example inputs gave, at {'; '.join(frozen)}: the graph would hold only the "
                             "path those inputs took")
    for site in frozen:
        warnings.warn(TracingWarning(
            f"from_torch({cls}): torch's tracer froze a value computed from tensor data to what the example inputs "
            f"gave, at {site}: the graph holds only the path those inputs took (strict=True makes this an error)"),
            stacklevel=2)

    import onnx

    model = onnx.ModelProto.FromString(buf.getvalue())
    drop_no_op_later_attributes(model)
    graph = from_proto(model, path=f"<torch {cls}>")
    _retie(graph, module)
    # which initializers the module trains and which it keeps fixed: ONNX does not say (a sliced learned position
    # table and the tutorial's sliced sinusoidal buffer export alike), and the torch backend reads this
    # (a parameter with requires_grad=False is fixed, as torch keeps it). Names: initializers, and the exporter's
    # copies (n2.weight = Identity(n1.weight) for equal initial values), each a tensor of its own in the module
    fixed = [n for n, p in module.named_parameters() if not p.requires_grad] + [n for n, _ in module.named_buffers()]
    held = set(graph.initializers) | {o.name for n in graph.nodes if n.op_type == "Identity" for o in n.outputs
                                      if o is not None}
    trained = sorted(n for n, p in module.named_parameters() if p.requires_grad and n in held)
    graph.meta[TORCH_ROLES_KEY] = {"parameters": trained, "buffers": sorted(n for n in fixed if n in held)}
    # an nn.Embedding's padding_idx row gets no gradient in torch; ONNX's Gather cannot say so, and the torch backend
    # trained it (an outside check: one SGD step moved outputs by 1.4 on a scale of 1.6)
    rows = {f"{name}.weight" if name else "weight": [m.padding_idx % m.num_embeddings]
            for name, m in module.named_modules()
            if isinstance(m, torch.nn.Embedding) and m.padding_idx is not None}
    rows = {n: r for n, r in rows.items() if n in trained}
    if rows:
        graph.meta[TORCH_ROLES_KEY]["fixed_rows"] = rows
    if graph.name in ("", "main_graph"):
        graph.name = cls
    return graph


__all__ = ["from_torch"]
