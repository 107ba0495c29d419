"""Which initializers of a graph are weights, i.e. what ``to_torch`` trains.

ONNX does not say which constants a model learned: a Conv weight, a GELU's 0.5, an
attention scale and a Reshape's target shape are all initializers. Training every
floating one would move the constants that define the model's function, so the torch
backend trains only what plays a weight's part in the graph's structure:

* **weight slots**: Conv/ConvTranspose weight and bias; Gemm's operands and C; an
  initializer operand of MatMul or Einsum; the scale and bias of BatchNormalization,
  LayerNormalization, InstanceNormalization and GroupNormalization, RMSNormalization's scale (not
  BatchNormalization's running mean and variance); Gather's and GatherND's data (an embedding table,
  a relative-position bias table as dynamo writes its lookup); PRelu's slope; LSTM/GRU/RNN's W, R, B
  (and LSTM's peepholes);
* **biases and affine parameters**: the initializer of an Add whose other operand comes
  from one of those products (Conv/ConvTranspose/Gemm/MatMul/Einsum with a weight: a
  Linear's bias on 3-D activations is exported as MatMul + Add), from a normalization,
  or from a Mul that scales a normalization's output; the initializer of such a Mul.
  This is how ``nn.GroupNorm`` exports (Reshape, InstanceNormalization with constant
  ones and zeros, Reshape, Mul by the weight, Add of the bias): its weight and bias are
  trained, the exporter's ones and zeros are not;
* **learned embeddings**: an initializer of rank >= 2 added to, or concatenated with,
  activations (ViT's position embedding and class token), unless the sum feeds a
  Softmax (an additive attention mask).

An initializer counts through ops that only view it (Reshape, Transpose, Squeeze,
Unsqueeze, Flatten, Identity, Cast, CastLike, Expand): a weight transposed before its MatMul is
still a weight. In a weight slot of a product, a normalization or a recurrent op it also counts
through ops that cut or assemble initializers (Slice and Split of one, Concat of several): torch
dynamo's unoptimized LSTM/GRU export, whose W, R and B are Concats of Slices of the PyTorch
weights. Not on the other paths: a table sliced to the sequence length and added to activations
(``pe[:, :S]``), or cut and then gathered, is as often a buffer (PyTorch's tutorial sinusoidal
encoding, a causal mask, rotary cos/sin tables) as a learned table, and ONNX does not say which;
``from_torch`` records what the module says (``TORCH_ROLES_KEY`` in ``graph.meta``: the tensors it
trains, and those it keeps fixed, its buffers and frozen parameters), and that decides over these
rules. Only floating initializers qualify. Everything else (attention scales,
mask fill values, GELU and epsilon constants, shapes, axes, running statistics, integer
tables, ``Constant`` nodes) stays constant. A LayerNorm written out with elementwise ops, as the
TorchScript exporter does below opset 17 (``(x - mean(x)) / sqrt(var + eps)``, a Div of a Sub of a
ReduceMean), is a normalization too: the Mul and Add after it hold its scale and bias. Not
recognized: other normalizations written out (RMSNorm's ``x * rsqrt(...)``) and per-channel layer
scales; ``to_torch(graph, trainable=...)`` takes an explicit set for those.

**Copies are separate weights.** torch's TorchScript exporter stores parameters with equal
initial values once (e.g. every zero bias, every LayerNorm's ones) and gives each other
parameter an ``Identity`` of that initializer, named after the parameter (``n2.bias =
Identity(a.bias)``). Such an ``Identity`` is the exporter's deduplication marker, not a
model's weight tying, so the rule is: **the output of an ``Identity`` whose input is an
initializer (or another such copy) is a copy** (``initializer_copies``), classified by its
own uses like an initializer of its own, and ``to_torch`` gives each trainable copy its own
``nn.Parameter`` initialized with the initializer's values; so is an exporter-named copy of a folded weight
(``graphmill.ir.exporter_copies`` says why). Ops that read one initializer
directly (no ``Identity``), e.g. an embedding table shared with the LM head, share it: that
is genuine tying, and it stays one Parameter. ``weight_initializers`` returns the names of
trainable initializers and copies.
"""

from __future__ import annotations

from graphmill.ir import Graph, Node, Tensor, Value, topological_order
from graphmill.ir.exporter_copies import identity_source, initializer_root
from graphmill.ir.graph import recorded_torch_roles

VIEWS = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Cast", "CastLike",
                   "Expand"})
#: ops that cut (their data input) or assemble (every input) weights: looked through on the way to a weight slot of
#: a product, a normalization or a recurrent op only
CUTS = frozenset({"Slice", "Split"})
PRODUCTS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum"})
NORMALIZATIONS = frozenset({"BatchNormalization", "LayerNormalization", "InstanceNormalization",
                            "GroupNormalization", "RMSNormalization"})
EVERY_INPUT = None
WEIGHT_SLOTS: dict[str, tuple[int, ...] | None] = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1), "Einsum": EVERY_INPUT,
    "BatchNormalization": (1, 2), "LayerNormalization": (1, 2), "InstanceNormalization": (1, 2),
    "GroupNormalization": (1, 2), "RMSNormalization": (1,),
    "Gather": (0,), "GatherND": (0,), "PRelu": (1,),
    "LSTM": (1, 2, 3, 7), "GRU": (1, 2, 3), "RNN": (1, 2, 3),  # W, R, B (and LSTM's peepholes P)
    "RelativeAttention": (3,),  # graphmill::RelativeAttention: the relative position bias table
    "MoE": (1, 2, 3, 4, 5, 6),  # graphmill::MoE: gate, noise and expert weights (ir/ops/moe.py)
}


def initializer_copies(graph: Graph) -> dict[str, str]:
    """Each copy's value name -> the initializer it copies: the outputs of ``Identity`` nodes of ``graph``
    whose input is an initializer or another copy (the TorchScript exporter's deduplication marker), in
    node order (a copy of a copy comes after the copy it reads)."""
    copies: dict[str, str] = {}
    for node in topological_order(graph):
        if node.op_type != "Identity" or not node.inputs or node.inputs[0] is None or not node.outputs:
            continue
        src, out = node.inputs[0], node.outputs[0]
        if out is None:
            continue
        if src.is_initializer:
            copies[out.name] = src.name
        elif src.name in copies and src.producer is not None and src.producer.op_type == "Identity":
            copies[out.name] = copies[src.name]
    return copies


def _is_copy(v: Value) -> bool:
    src = identity_source(v)
    return src is not None and (src.is_initializer or _is_copy(src))


def _source(v: Value) -> Value:
    """The initializer holding a copy's (or an initializer's) values."""
    return initializer_root(v)


def _weight_sources(v: Value | None, *, cuts: bool = True) -> list[Value]:
    """The initializers or copies whose values ``v`` holds (through VIEWS' data input and, with ``cuts``, CUTS'
    and every input of a Concat); [] when ``v`` depends on anything else (an activation, a computation)."""
    out: list[Value] = []
    todo = [v]
    while todo:
        v = todo.pop()
        if v is None:
            return []
        if v.is_initializer or _is_copy(v):
            out.append(v)
            continue
        p = v.producer
        if p is None or not p.inputs:
            return []
        if p.op_type in VIEWS or (cuts and p.op_type in CUTS):
            todo.append(p.inputs[0])
        elif cuts and p.op_type == "Concat":
            todo.extend(p.inputs)
        else:
            return []
    return out


def torch_roles(graph: Graph) -> tuple[set[str], set[str]]:
    """The initializers ``from_torch`` recorded as the module's parameters and as its buffers (``TORCH_ROLES_KEY`` in
    ``graph.meta``; those still in the graph), or two empty sets."""
    parameters, buffers = recorded_torch_roles(graph)
    # read ones (a pass folding a view of one leaves it unread until dce) and the exporter's copies of them
    names = {n for n, v in graph.initializers.items() if v.num_uses or v.is_graph_output}
    names |= set(initializer_copies(graph))
    return parameters & names, buffers & names


def _root(v: Value | None) -> Node | None:
    """The first producer of ``v`` that is not a view."""
    p = v.producer if v is not None else None
    while p is not None and p.op_type in VIEWS and p.inputs and p.inputs[0] is not None:
        p = p.inputs[0].producer
    return p


def _viewers(v: Value) -> list[Node]:
    """The nodes reading ``v`` directly or through views."""
    out, todo = [], [v]
    while todo:
        for node, _ in todo.pop().uses():
            if node.op_type in VIEWS:
                todo.extend(o for o in node.outputs if o is not None)
            else:
                out.append(node)
    return out


def _is_float(v: Value) -> bool:
    c = _source(v).const
    return isinstance(c, Tensor) and c.dtype.is_floating


def _rank(v: Value) -> int:
    c = _source(v).const
    return len(c.shape) if isinstance(c, Tensor) else 0


def weight_initializers(graph: Graph) -> set[str]:
    """Names of ``graph``'s initializers and initializer copies that ``to_torch`` trains (the module docstring
    gives the rules)."""
    order = topological_order(graph)
    dynamic = {v.name for v in graph.inputs if not v.is_initializer}
    for node in order:
        if any(v is not None and v.name in dynamic for v in node.inputs):
            dynamic.update(o.name for o in node.outputs if o is not None)

    weights: set[str] = set()
    weighted: set[int] = set()   # id() of products holding a weight, normalizations, affine Muls
    normalized: set[int] = set()  # id() of normalizations, written out ones included: a Mul after one is a scale

    def take(v: Value | None, cuts: bool = True) -> bool:
        held = [w for w in _weight_sources(v, cuts=cuts) if _is_float(w)]
        weights.update(w.name for w in held)
        return bool(held)

    for node in order:
        op = node.op_type
        if op in WEIGHT_SLOTS and not _group_norm_core(node):
            slots = WEIGHT_SLOTS[op]
            idx = range(len(node.inputs)) if slots is EVERY_INPUT else slots
            # a table a Gather reads may be a buffer cut to length (rotary cos/sin tables): views only there
            held = [take(node.inputs[i], cuts=op != "Gather") for i in idx if i < len(node.inputs)]
            if op in PRODUCTS and any(held):
                weighted.add(id(node))
        if op in NORMALIZATIONS or _written_out_layer_norm(node):
            weighted.add(id(node))
            normalized.add(id(node))
        if op in ("Add", "Mul") and len(node.inputs) == 2:
            for this, other in (node.inputs, node.inputs[::-1]):
                root = _root(other)
                if root is None or id(root) not in weighted:
                    continue
                if op == "Mul" and id(root) not in normalized:
                    continue
                if take(this, cuts=False) and op == "Mul":
                    weighted.add(id(node))
        if op in ("Add", "Concat") and not _feeds_softmax(node):
            for i, v in enumerate(node.inputs):
                if not any(u is not None and u.name in dynamic for j, u in enumerate(node.inputs) if j != i):
                    continue
                # views only: a table sliced to the sequence length is as often a buffer (the sinusoidal encoding
                # of PyTorch's tutorial, a causal mask) as a learned embedding, and ONNX does not say which
                weights.update(w.name for w in _weight_sources(v, cuts=False) if _is_float(w) and _rank(w) >= 2)
    parameters, buffers = torch_roles(graph)  # what the module itself said, where from_torch recorded it
    return (weights | parameters) - buffers


def _written_out_layer_norm(node: Node) -> bool:
    """``Div(Sub(x, ReduceMean(x)), Sqrt(...))``: LayerNorm as the TorchScript exporter writes it below opset 17."""
    if node.op_type != "Div" or len(node.inputs) != 2 or node.inputs[0] is None or node.inputs[1] is None:
        return False
    sub, root = node.inputs[0].producer, node.inputs[1].producer
    if sub is None or sub.op_type != "Sub" or root is None or root.op_type != "Sqrt" or None in sub.inputs:
        return False
    mean = sub.inputs[1].producer
    return mean is not None and mean.op_type == "ReduceMean" and bool(mean.inputs) and mean.inputs[0] is sub.inputs[0]


def _feeds_softmax(node: Node) -> bool:
    return any(n.op_type in ("Softmax", "LogSoftmax") for o in node.outputs if o is not None for n in _viewers(o))


def _group_norm_core(node: Node) -> bool:
    """An InstanceNormalization whose output a Mul by an initializer scales: the exporter's form of GroupNorm."""
    if node.op_type != "InstanceNormalization" or not node.outputs or node.outputs[0] is None:
        return False
    for user in _viewers(node.outputs[0]):
        if user.op_type == "Mul" and any(_weight_sources(v, cuts=False) for v in user.inputs):
            return True
    return False


__all__ = ["initializer_copies", "torch_roles", "weight_initializers"]
