"""The supernet as ONE ``ir.Graph``, and the extraction of a child as an ordinary standard-ONNX graph.

Representation (chosen so that nothing but standard ONNX is ever needed): the supernet graph is the largest
child, built with every shared weight at its full shape under its stable name (``weights.py``), plus

* ``graph.meta["supernet"] = {"spec": <SupernetSpec JSON>, "config": <largest child>}``: the elastic ranges;
* ``node.meta["supernet"] = {"stage", "layer", "part", "elastic": [...], "optional": bool}`` on every node,
  naming the elastic dimensions that act on it (``width``, ``expand``, ``kernel``; ``depth`` for the layers a
  child may drop, which are ``optional``; ``resolution`` on the input).

No mask or graphmill-domain op is needed: ``child(graph, config)`` rebuilds the network for ``config`` with
the same builder and fills each initializer with the leading block of the supernet's tensor of the same
name (first channels, centre kernel, first layers). The child is a verified graph of standard ops (Conv,
BatchNormalization, Relu, Add, GlobalAveragePool, Flatten, Gemm) that ``graphmill.save`` writes as an ONNX
file running under ONNX Runtime with the inherited weights. Saving the supernet graph itself writes the
largest child (its initializer names carry the sharing; the ranges travel in the run's ``supernet.json``).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from graphmill.ir import Graph, Tensor
from graphmill.ir.builder import GraphBuilder
from graphmill.util.errors import UserInputError

from .space import SupernetSpec
from .weights import child_weights, init_weights, layer_plan, last_width


def build_graph(spec: SupernetSpec, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], *,
                batch: int | str = "N", name: str = "supernet_child", supernet: bool = False) -> Graph:
    """The network of ``config`` with ``weights`` (exactly the sliced shapes of that child) as a verified graph."""
    config = spec.check(config)
    b = GraphBuilder(name, opset=17)
    r = config["resolution"]
    x = b.input("input", "float32", [batch, spec.in_channels, r, r])
    smallest = spec.smallest()

    def w(key: str):
        return b.const(np.ascontiguousarray(weights[key], dtype=np.float32), name=key)

    def conv_bn(y, prefix: str, k: int, stride: int, groups: int, relu: bool):
        wt = weights[f"{prefix}.w"]
        y = b.Conv(y, w(f"{prefix}.w"), kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4,
                   group=groups if groups != 1 else None, name=f"{prefix}.conv")
        y = b.BatchNormalization(y, *(w(f"{prefix}.bn.{p}") for p in ("scale", "bias", "mean", "var")),
                                 epsilon=spec.eps, name=f"{prefix}.bn")
        assert wt.shape[0] == weights[f"{prefix}.bn.scale"].shape[0]
        return b.Relu(y, name=f"{prefix}.relu") if relu else y

    with b.annotate(supernet={"stage": 0, "layer": 0, "part": "stem", "elastic": ["resolution"], "optional": False}):
        y = conv_bn(x, "stem", 3, spec.stem_stride, 1, True)
    for L in layer_plan(spec, config):
        optional = L.index >= smallest[f"stage{L.stage}"]["depth"]
        depth = ["depth"] if optional else []
        p = L.prefix
        parts = (("expand", ["width", "expand"], 1, 1, 1, True),
                 ("dw", ["expand", "kernel"], L.kernel, L.stride, L.hidden, True),
                 ("project", ["width", "expand"], 1, 1, 1, False))
        inp = y
        for part, elastic, k, stride, groups, relu in parts:
            meta = {"stage": L.stage, "layer": L.index, "part": part, "elastic": elastic + depth, "optional": optional}
            with b.annotate(supernet=meta):
                y = conv_bn(y, f"{p}.{part}", k, stride, groups, relu)
        if L.residual:
            with b.annotate(supernet={"stage": L.stage, "layer": L.index, "part": "residual",
                                      "elastic": ["width"] + depth, "optional": optional}):
                y = b.Add(y, inp, name=f"{p}.add")
    with b.annotate(supernet={"stage": len(spec.stages) + 1, "layer": 0, "part": "head", "elastic": ["width"],
                              "optional": False}):
        y = conv_bn(y, "head", 1, 1, 1, True)
        y = b.Flatten(b.GlobalAveragePool(y, name="pool"), axis=1, name="flatten")
        y = b.Gemm(y, w("fc.w"), w("fc.b"), transB=1, name="fc")
    b.output(y, "logits")
    g = b.build()
    g.meta["supernet"] = {"spec": spec.to_json(), "config": config, "role": "supernet" if supernet else "child"}
    return g


def supernet_graph(spec: SupernetSpec, weights: Mapping[str, np.ndarray] | None = None, *, seed: int = 0) -> Graph:
    """The supernet: the largest child holding every shared weight at full shape (``weights`` or a fresh
    BigNAS initialization), with the elastic ranges in ``graph.meta["supernet"]``."""
    weights = init_weights(spec, seed) if weights is None else weights
    return build_graph(spec, spec.largest(), weights, name="supernet", supernet=True)


def spec_of(graph: Graph) -> SupernetSpec:
    """The ``SupernetSpec`` a supernet graph carries (UserInputError when ``graph`` is not one)."""
    info = graph.meta.get("supernet")
    if not isinstance(info, dict) or "spec" not in info:
        raise UserInputError(f"graph {graph.name!r} is not a supernet (no meta['supernet'])")
    return SupernetSpec.from_json(info["spec"])


def graph_weights(graph: Graph) -> dict[str, np.ndarray]:
    """The supernet's shared weights by name (its initializers)."""
    return {n: v.const.numpy() for n, v in graph.initializers.items() if v.const is not None}


def set_graph_weights(graph: Graph, weights: Mapping[str, np.ndarray]) -> None:
    """Replace the initializers named in ``weights`` (same shapes) with new values."""
    for n, a in weights.items():
        v = graph.initializers[n]
        arr = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
        if tuple(arr.shape) != tuple(v.const.shape):
            raise ValueError(f"{n}: shape {arr.shape} is not the supernet's {tuple(v.const.shape)}")
        v.const = Tensor(arr, name=n)


def child(graph: Graph, config: Mapping[str, Any], *, spec: SupernetSpec | None = None, batch: int | str = "N",
          name: str = "supernet_child") -> Graph:
    """The child ``config`` of the supernet ``graph`` as an ordinary graph with the inherited (sliced) weights.

    ``spec`` defaults to the graph's own (``meta["supernet"]``; give it for a supernet loaded from ONNX, whose
    meta does not travel). A choice outside the supernet's ranges is a UserInputError naming it.
    """
    spec = spec or spec_of(graph)
    config = spec.check(config)
    full = graph_weights(graph)
    return build_graph(spec, config, dict(child_weights(spec, config, full)), batch=batch, name=name)


__all__ = ["build_graph", "supernet_graph", "spec_of", "graph_weights", "set_graph_weights", "child", "last_width"]
