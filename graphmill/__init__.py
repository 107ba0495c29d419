"""graphmill: a compiler-style graph optimization framework for neural networks.

The Python API is the same as the CLI's: ``load``, ``save``, ``inspect``, and
the IR in ``graphmill.ir``.
"""

from graphmill.frontend import load, save
from graphmill.ir import Graph, GraphmillError, Node, Value, verify

__version__ = "0.1.0"

__all__ = ["load", "save", "Graph", "Node", "Value", "verify", "GraphmillError", "__version__"]
