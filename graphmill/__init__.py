"""graphmill: a compiler-style graph optimization framework for neural networks.

The Python API mirrors the CLI: ``load``/``save`` ONNX files, ``optimize`` a graph with a
schedule, ``inspect`` it, ``simulate`` it on an accelerator, ``to_torch`` to train it. The IR
lives in ``graphmill.ir``; ``graphmill.api`` holds the functions re-exported here, with
``partition`` (pipeline stages) and ``place`` (device placement). ``graphmill.search`` is the search
package (``graphmill.search.run``, spaces, strategies), imported on first use; ``to_torch`` and
``export_weights`` import torch on first use, so ``import graphmill`` never does.
"""

from graphmill.api import inspect, inspect_file, optimize, partition, place, save, simulate
from graphmill.frontend import load
from graphmill.frontend.onnx_shape_inference import infer_shapes
from graphmill.frontend.torch_import import from_torch
from graphmill.ir import Graph, GraphmillError, Node, Value, verify
from graphmill.ir.builder import GraphBuilder
from graphmill.providers import install_default_providers

# Passes reach ONNX Runtime (node evaluation) and onnx's shape inference only through the PassContext;
# these are the defaults a context built without them uses (graphmill/providers.py).
install_default_providers()

__version__ = "0.1.0"

__all__ = ["load", "save", "optimize", "inspect", "inspect_file", "simulate", "infer_shapes", "Graph", "Node", "Value", "verify",
           "GraphBuilder", "GraphmillError", "__version__", "from_torch", "to_torch", "export_weights", "partition",
           "place", "search"]


def __getattr__(name: str):  # the torch backend and the search package: imported only when asked for
    if name == "search":
        import importlib

        return importlib.import_module("graphmill.search")  # also binds graphmill.search for later lookups
    if name in ("to_torch", "export_weights"):
        from graphmill.backends import torch as torch_backend

        return getattr(torch_backend, name)
    raise AttributeError(f"module 'graphmill' has no attribute {name!r}")
