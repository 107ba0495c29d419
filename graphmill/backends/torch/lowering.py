"""The torch backend: ``to_torch(graph) -> nn.Module``, so that search can train candidates.

The module interprets the graph node by node in topological order with torch
ops (``ops`` holds each op's ONNX semantics, by op family); it is eager, not traced, so
shape-computing subgraphs (Shape -> Gather -> Concat -> Reshape) simply run.

Weights:
  * only the graph's weights become trainable ``nn.Parameter``s: Conv/ConvTranspose/
    Gemm/MatMul weights and biases, normalization scales and biases, embedding tables
    and learned position embeddings (``weights.weight_initializers`` states the rules;
    ``to_torch(graph, trainable=names)`` overrides them);
  * every other initializer (attention scales, mask fill values, GELU constants,
    shapes, axes, running statistics) and every Constant node is a buffer: it moves
    with ``.to(device)``, no optimizer sees it, and training leaves it unchanged.
    Buffers are persistent, so ``state_dict()`` holds the whole graph's state;
  * an initializer the TorchScript exporter deduplicated (``n2.bias = Identity(a.bias)``: see
    ``weights``) is untied again: each trainable copy is its own Parameter, initialized with the
    initializer's values, so ``a.bias`` and ``n2.bias`` train separately as they did in torch.
    Ops reading one initializer directly share its Parameter (genuine tying, e.g. an embedding
    shared with the LM head);
  * a weight the ``cse`` pass merged with equal, independent ones (recorded in the graph's
    ``metadata_props``: ``passes.cleanup.cse.merged_initializers``) is refused: trained, they
    would be one Parameter;
  * names are sanitized (``[A-Za-z0-9_]``) and made unique; ``module.param_names``
    maps each Parameter's name to the graph value it came from, ``module.buffer_names``
    each initializer buffer's.

``module.train()`` / ``eval()`` switch Dropout between a real dropout and the
identity; BatchNormalization always uses the running statistics (inference
semantics), with trainable scale and bias. ``export_weights(module, graph)``
writes the trained Parameters back into the graph's initializers, so a trained
candidate exports to ONNX again; a copy whose trained values differ from what its
``Identity`` would give becomes an initializer of its own in place of the ``Identity``.

Anything the backend cannot run (an op it does not know, a variant of one it
does, a subgraph op) is refused with a ``UserInputError`` naming the node when
the module is built, before any run.
"""

from __future__ import annotations

import re
from typing import Any, Collection

import numpy as np
import torch
from torch import nn

from graphmill.ir import AttrKind, Graph, Tensor, TensorType, UserInputError, topological_order
from graphmill.ir.exporter_copies import initializer_root
from graphmill.ir.graph import recorded_fixed_rows, recorded_torch_roles
from graphmill.passes.cleanup.cse import MERGED_INITIALIZERS, merged_initializers
from graphmill.util.errors import ExecutionError

from .ops import CHECKS, OPS
from .tensors import to_numpy, to_torch_tensor, torch_dtype
from .weights import initializer_copies, weight_initializers

_DEFAULT_DOMAINS = ("", "ai.onnx")


def op_key(node) -> str:
    """The ``OPS`` key of a node: its op type, or ``domain::op_type`` for ops of graphmill's domain
    (``graphmill::MoE``), which the torch backend runs directly, without their ONNX lowering."""
    return node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def supported_ops() -> list[str]:
    """The ops the torch backend runs: ONNX's (default domain) by name, graphmill's own as ``domain::op``."""
    return sorted(set(OPS) | {"Constant"})


def _sanitize(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "w"
    if s[0].isdigit():
        s = "w_" + s
    return s


def _plain_attrs(node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, a in node.attrs.items():
        v = a.value
        if a.kind == AttrKind.TENSOR and isinstance(v, Tensor):
            v = to_torch_tensor(v.numpy())
        elif isinstance(v, bytes):
            try:
                v = v.decode()
            except UnicodeDecodeError:
                pass
        out[k] = v
    return out


def _constant_value(node) -> np.ndarray:
    a = node.attrs
    if "value" in a:
        return np.asarray(a["value"].value.numpy())
    if "value_float" in a:
        return np.array(a["value_float"].value, dtype=np.float32)
    if "value_floats" in a:
        return np.array(a["value_floats"].value, dtype=np.float32)
    if "value_int" in a:
        return np.array(a["value_int"].value, dtype=np.int64)
    if "value_ints" in a:
        return np.array(a["value_ints"].value, dtype=np.int64)
    raise UserInputError(f"{node.describe()}: Constant with {', '.join(a) or 'no value'} is not supported by "
                         "the torch backend (string and sparse constants have no torch equivalent)")


class _Step:
    __slots__ = ("node", "fn", "attrs", "inputs", "outputs", "drop")

    def __init__(self, node, fn, attrs, inputs, outputs) -> None:
        self.node = node
        self.fn = fn
        self.attrs = attrs
        self.inputs = inputs
        self.outputs = outputs
        self.drop: list[str] = []


class GraphModule(nn.Module):
    """An ``ir.Graph`` as a trainable ``nn.Module`` (build it with ``to_torch``).

    ``forward`` takes the graph's (non-initializer) inputs positionally or by
    name, as tensors or numpy arrays, and returns one tensor, or a tuple when
    the graph has several outputs.
    """

    def __init__(self, graph: Graph, trainable: Collection[str] | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.opset = graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 17))
        self.current_outputs = 1
        self.param_names: dict[str, str] = {}   # parameter name -> graph value name
        self.buffer_names: dict[str, str] = {}  # buffer name -> graph value name
        self.copy_names: set[str] = set()       # graph values that are untied initializer copies (Parameters, buffers)
        self._slot: dict[str, str] = {}         # graph value name -> attribute holding it
        self._taken: set[str] = set()

        try:
            order = topological_order(graph)
        except Exception as e:  # noqa: BLE001 -- a cycle: the IR's message names the node
            raise UserInputError(f"graph {graph.name!r} cannot run under torch: {e}") from None
        self._check(order)

        inits = graph.initializers
        self.input_names = [v.name for v in graph.inputs if v.name not in inits]
        self._expected = {v.name: _expected_input(v.type) for v in graph.inputs if v.name not in inits}
        self.output_names = [v.name for v in graph.outputs]
        copies = initializer_copies(graph)
        chosen = trainable is not None
        trainable = weight_initializers(graph) if trainable is None else self._check_trainable(trainable, copies)
        self._refuse_merged(trainable, chosen)
        for name, v in inits.items():
            if v.const is None or not hasattr(v.const, "numpy"):
                raise UserInputError(f"initializer {name!r} of graph {graph.name!r}: sparse initializers are not "
                                     "supported by the torch backend")
            try:
                t = to_torch_tensor(v.const.numpy())
            except TypeError as e:
                if not any(True for _ in v.uses()):
                    continue
                raise UserInputError(f"initializer {name!r}: {e}") from None
            if name in trainable and t.is_floating_point():
                self._register(name, nn.Parameter(t), param=True)
            else:
                self._register(name, t, param=False)

        # copies that hold values of their own, so their Identity does not run: a trainable one is a Parameter; any
        # other a buffer frozen at the values it starts with (a BatchNormalization's running mean that the exporter
        # stored as an Identity of an equal zero bias read the bias Parameter: it trained with it, and torch
        # refused to differentiate through a running statistic)
        untied: set[str] = set()
        for name, src in copies.items():
            if name not in self._slot:
                t = to_torch_tensor(inits[src].const.numpy())
                if t.is_floating_point():
                    trains = name in trainable
                    self._register(name, nn.Parameter(t) if trains else t.clone(), param=trains)
                    untied.add(name)
        self.copy_names = untied
        self._fixed_rows = {name: rows for name, rows in recorded_fixed_rows(graph).items()
                            if name in self.param_names.values()}

        self._steps: list[_Step] = []
        for node in order:
            if node.op_type == "Identity" and node.outputs and node.outputs[0] is not None \
                    and node.outputs[0].name in untied:
                continue
            if node.op_type == "Constant":
                out = node.outputs[0]
                self._register(out.name, to_torch_tensor(_constant_value(node)), param=False, constant=True)
                continue
            attrs = _plain_attrs(node)
            ins = [v.name if v is not None else None for v in node.inputs]
            while ins and ins[-1] is None:
                ins.pop()
            outs = [v.name if v is not None else None for v in node.outputs]
            self._steps.append(_Step(node, OPS[op_key(node)], attrs, ins, outs))
        self._plan_frees()

    # -- construction helpers ----------------------------------------------------------------------
    def _check(self, order) -> None:
        g = self.graph
        for v in list(g.inputs) + list(g.outputs) + [o for n in order for o in n.outputs if o is not None]:
            t = v.type
            if t is None:
                continue
            if not isinstance(t, TensorType):
                raise UserInputError(f"value {v.name!r} of graph {g.name!r} has type {t}; the torch backend "
                                     "runs dense tensors only")
            if t.dtype:
                try:
                    torch_dtype(t.dtype)
                except (TypeError, ValueError) as e:
                    raise UserInputError(f"value {v.name!r} of graph {g.name!r}: {e} (the torch backend supports "
                                         "float16/32/64, bfloat16, bool, int8/16/32/64, uint8)") from None
        for node in order:
            if node.domain not in _DEFAULT_DOMAINS and op_key(node) not in OPS:
                # "lower it first" read as if a lowering existed: graphmill has none for ai.onnx.ml (an outside check)
                raise UserInputError(f"{node.describe()}: the torch backend runs only default-domain ONNX ops "
                                     f"(and graphmill's own); it has no {node.domain}::{node.op_type}")
            if any(True for _ in node.subgraphs()):
                raise UserInputError(f"{node.describe()}: ops with subgraphs ({node.op_type}) are not supported by "
                                     "the torch backend")
            if node.op_type != "Constant" and op_key(node) not in OPS:
                # the ~120 names it listed made a 1,500-character line (an outside check): the function lists them
                raise UserInputError(f"{node.describe()}: op {node.op_type} is not supported by the torch backend "
                                     f"(graphmill.backends.torch.supported_ops() lists the {len(supported_ops())} "
                                     "it runs)")
            chk = CHECKS.get(node.op_type)
            why = chk(node, self.opset) if chk is not None else None
            if why:
                raise UserInputError(f"{node.describe()}: {why} by the torch backend")

    def _refuse_merged(self, trainable: Collection[str], chosen: bool = False) -> None:
        """A weight that ``cse`` merged with equal ones (its graph's record, ``merged_initializers``) would train
        them as one Parameter, though they were independent: refused in one line. ``chosen``: the caller named
        what trains (``trainable=``), so only those count (``trainable=[]`` of an optimized graph, to run it, was
        refused for weights nothing would train; an outside check)."""
        merged = merged_initializers(self.graph)
        # by default a merged-away name the module trains counts too: a frozen survivor took a trainable weight with
        # it, which then quietly stopped training (a review)
        module_trains = set() if chosen else recorded_torch_roles(self.graph)[0]
        for name in sorted(merged):
            if name in trainable or module_trains & set(merged[name]):
                others = ", ".join(repr(n) for n in merged[name])
                raise UserInputError(
                    f"graph {self.graph.name!r}: weight {name!r} also stands for {others}, equal initializers the "
                    "'cse' pass merged; trained, they would be one Parameter: train before optimizing, or optimize "
                    f"with a schedule without cse (or delete graph.metadata_props[{MERGED_INITIALIZERS!r}] to train "
                    "them as one)")

    def _check_trainable(self, names: Collection[str], copies: dict[str, str]) -> set[str]:
        if isinstance(names, str):
            names = [names]
        inits = self.graph.initializers
        for n in names:
            v = inits.get(n, inits.get(copies.get(n, "")))
            survivor = next((k for k, vs in merged_initializers(self.graph).items() if n in vs), None)
            if v is None and survivor is not None:
                raise UserInputError(f"to_torch(trainable=...): graph {self.graph.name!r} has no initializer {n!r}: "
                                     f"the 'cse' pass merged it into the equal {survivor!r}")
            if v is None:
                raise UserInputError(f"to_torch(trainable=...): graph {self.graph.name!r} has no initializer {n!r} "
                                     "(nor an initializer copy, an Identity of one, of that name)")
            if not (isinstance(v.const, Tensor) and v.const.dtype.is_floating):
                raise UserInputError(f"to_torch(trainable=...): initializer {n!r} is not a floating-point tensor "
                                     "and cannot be trained")
        return set(names)

    def _register(self, value_name: str, t: torch.Tensor, *, param: bool, constant: bool = False) -> None:
        base = ("c_" if constant else "") + _sanitize(value_name)
        name, i = base, 1
        while name in self._taken or hasattr(self, name):
            name, i = f"{base}_{i}", i + 1
        self._taken.add(name)
        if param:
            self.register_parameter(name, t)
            self.param_names[name] = value_name
        else:
            self.register_buffer(name, t)
            if not constant:
                self.buffer_names[name] = value_name
        self._slot[value_name] = name

    def _plan_frees(self) -> None:
        last: dict[str, int] = {}
        for i, st in enumerate(self._steps):
            for n in st.inputs:
                if n is not None:
                    last[n] = i
        keep = set(self.output_names)
        for n, i in last.items():
            if n not in keep and n not in self._slot:
                self._steps[i].drop.append(n)

    # -- running -----------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if len(args) + len(kwargs) != len(self.input_names):
            raise UserInputError(f"graph {self.graph.name!r} takes {len(self.input_names)} input(s) "
                                 f"({', '.join(self.input_names)}); got {len(args) + len(kwargs)}")
        env: dict[str, torch.Tensor] = {}
        for name, v in zip(self.input_names, args):
            env[name] = v if isinstance(v, torch.Tensor) else _as_tensor(v)
        for name, v in kwargs.items():
            if name not in self.input_names:
                raise UserInputError(f"graph {self.graph.name!r} has no input {name!r}; inputs: "
                                     f"{', '.join(self.input_names)}")
            env[name] = v if isinstance(v, torch.Tensor) else _as_tensor(v)
        for name in self.input_names:
            _check_input(name, env[name], self._expected[name])
        for vname, attr in self._slot.items():
            env.setdefault(vname, getattr(self, attr))
        for vname, rows in self._fixed_rows.items():  # the same values; no gradient reaches those rows
            w = env[vname]
            if w.requires_grad:
                held = torch.zeros(w.shape[0], dtype=torch.bool, device=w.device)
                held[rows] = True
                env[vname] = torch.where(held.reshape(-1, *([1] * (w.dim() - 1))), w.detach(), w)
        for st in self._steps:
            ins = [env[n] if n is not None else None for n in st.inputs]
            self.current_outputs = len(st.outputs)
            try:
                res = st.fn(self, st.attrs, ins)
            except UserInputError:
                raise
            except Exception as e:  # noqa: BLE001 -- name the node that failed
                raise ExecutionError(f"torch backend: {st.node.describe()} failed: "
                                     f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
            if not isinstance(res, tuple):
                res = (res,)
            for n, t in zip(st.outputs, res):
                if n is not None:
                    env[n] = t
            for n in st.drop:
                env.pop(n, None)
        outs = tuple(env[n] for n in self.output_names)
        return outs[0] if len(outs) == 1 else outs

    def extra_repr(self) -> str:
        return (f"graph={self.graph.name!r}, nodes={len(self._steps)}, params={len(self.param_names)}, "
                f"inputs={self.input_names}, outputs={self.output_names}")

    def export_weights(self, graph: Graph | None = None) -> int:
        return export_weights(self, graph)


def _expected_input(t: Any) -> tuple[torch.dtype | None, int | None, str]:
    """(element type, rank, how the model declares it) of a graph input, None where it does not say."""
    if not isinstance(t, TensorType):
        return None, None, ""
    try:
        dtype = torch_dtype(t.dtype) if t.dtype else None
    except TypeError:
        dtype = None
    return dtype, None if t.shape is None else len(t.shape), str(t)


def _check_input(name: str, value: torch.Tensor, expected: tuple) -> None:
    """A tensor of another element type or rank than the input declares is refused naming the input: the op that
    then failed said "failed: 0" or "expected scalar type Double but found Float" (an outside check). Sizes are not
    checked: a model exported at one batch size trains at others."""
    dtype, rank, declared = expected
    if (dtype is not None and value.dtype != dtype) or (rank is not None and value.dim() != rank):
        got = str(value.dtype).removeprefix("torch.")
        raise UserInputError(f"input {name!r} is declared {declared}; got {got}[{','.join(map(str, value.shape))}]")


def _as_tensor(v) -> torch.Tensor:
    try:
        return to_torch_tensor(np.asarray(v))
    except TypeError as e:
        raise UserInputError(f"torch backend input: {e}") from None


def to_torch(graph: Graph, *, trainable: Collection[str] | None = None) -> GraphModule:
    """Lower ``graph`` to an ``nn.Module`` whose Parameters are the graph's weights (see the module docstring).

    ``trainable`` names exactly the initializers to train instead of the automatic choice
    (``weight_initializers(graph)``), e.g. to add a layer scale it does not recognize or to
    freeze part of the model; everything else becomes a buffer.
    """
    if not isinstance(graph, Graph):  # a path gave a bare AttributeError (an outside check)
        raise UserInputError(f"to_torch takes a graphmill Graph (graphmill.load(path) reads a file), got "
                             f"{type(graph).__name__} {graph!r:.80}")
    return GraphModule(graph, trainable)


def export_weights(module: GraphModule, graph: Graph | None = None) -> int:
    """Write ``module``'s Parameters back into ``graph``'s initializers (default: the graph it was built from).

    Each initializer keeps its element type. A Parameter that is an initializer copy (the output
    of an ``Identity`` of an initializer, untied by ``to_torch``) keeps its ``Identity`` while its
    values equal what the ``Identity`` reads (e.g. before training); otherwise the ``Identity`` is
    replaced by an initializer of the copy's name holding the trained values, so the graph computes
    what the module does. A copy that is a buffer (not trained) is written the same way, with the values
    it kept. Returns how many Parameters and copies were written.
    """
    g = graph if graph is not None else module.graph
    n = 0
    pending: dict[str, np.ndarray] = {}
    for pname, vname in module.param_names.items():
        v = g.initializers.get(vname)
        if v is None:
            if vname in module.copy_names:
                pending[vname] = to_numpy(getattr(module, pname))
                continue
            raise UserInputError(f"graph {g.name!r} has no initializer {vname!r} (parameter {pname!r}); "
                                 "export into the graph the module was built from, or a copy of it")
        p = getattr(module, pname)
        old = v.const
        arr = to_numpy(p)
        if old is not None and hasattr(old, "dtype"):
            arr = arr.astype(old.dtype.numpy(), copy=False)
        v.const = Tensor(np.ascontiguousarray(arr), name=getattr(old, "name", vname) or vname)
        if isinstance(v.type, TensorType):
            v.type = TensorType(v.type.dtype, tuple(arr.shape), v.type.denotation)
        n += 1
    for attr, vname in module.buffer_names.items():  # frozen copies: their Identity may now read trained values
        if vname in module.copy_names and vname not in g.initializers:
            pending[vname] = to_numpy(getattr(module, attr))
    if pending:
        copies = initializer_copies(g)
        values = g.value_map()
        for vname in [c for c in copies if c in pending]:  # node order: a copy of a copy after what it reads
            _write_copy(g, values[vname], pending.pop(vname))
            n += 1
        if pending:
            name = next(iter(pending))
            raise UserInputError(f"graph {g.name!r} has no initializer or Identity copy {name!r}; export into the "
                                 "graph the module was built from, or a copy of it")
    return n


def _current(v) -> np.ndarray:
    """What an initializer or an initializer copy holds in the graph now."""
    return initializer_root(v).const.numpy()


def _write_copy(g: Graph, v, arr: np.ndarray) -> None:
    """Give the copy ``v`` (``v = Identity(src)``) the values ``arr``: keep the Identity when ``src`` already
    holds exactly them, else replace it by an initializer named ``v.name``."""
    identity = v.producer
    src = _current(identity.inputs[0])
    arr = np.ascontiguousarray(arr.astype(src.dtype, copy=False))
    if arr.shape == src.shape and np.array_equal(arr, src, equal_nan=arr.dtype.kind in "fc"):
        return
    name = v.name
    g.rename(v, g.unique_name(name + "_identity"))
    new = g.add_initializer(Tensor(arr, name=name), name)
    v.replace_all_uses_with(new)
    g.remove_node(identity)
