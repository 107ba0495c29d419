"""The smallest ONNX models tests need, built with onnx.helper (independently of graphmill's exporter)."""
from __future__ import annotations

import os
from typing import Any, Sequence

import onnx
from onnx import helper


def relu_model(*, dims: Sequence[Any] = (2,), node_name: str = "", out: str = "y", doc: str = "",
               attrs: dict | None = None, opset: int = 17) -> onnx.ModelProto:
    """One float ``Relu`` from input ``x`` to ``out``: a valid model about which nothing else can go wrong."""
    node = helper.make_node("Relu", ["x"], [out], name=node_name, doc_string=doc)
    for k, v in (attrs or {}).items():
        node.attribute.append(helper.make_attribute(k, v))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(dims))],
                          [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, list(dims))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def save_relu_model(folder: str | os.PathLike, name: str = "m.onnx", **kw: Any) -> str:
    """``relu_model(**kw)`` written to ``folder/name``; its path."""
    path = os.path.join(folder, name)
    onnx.save(relu_model(**kw), path)
    return path
