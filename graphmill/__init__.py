"""graphmill: a compiler-style graph optimization framework for neural networks.

The Python API mirrors the CLI: ``load``/``save`` ONNX files, ``inspect`` a
graph, ``infer_shapes``; the IR lives in ``graphmill.ir`` and ONNX Runtime
execution in ``graphmill.backends.onnxruntime``.
"""

from graphmill.api import inspect, inspect_file, simulate
from graphmill.frontend import load, save
from graphmill.frontend.onnx_shape_inference import infer_shapes
from graphmill.ir import Graph, GraphmillError, Node, Value, verify
from graphmill.ir.builder import GraphBuilder

__version__ = "0.1.0"

__all__ = ["load", "save", "inspect", "inspect_file", "simulate", "infer_shapes", "Graph", "Node", "Value", "verify",
           "GraphBuilder", "GraphmillError", "__version__"]
