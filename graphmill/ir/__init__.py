"""graphmill's graph IR. Imports nothing else of graphmill, so every part can build on it."""

from .attrs import Attr, AttrKind, infer_attr
from .dtypes import DataType
from graphmill.util.errors import (
    ExecutionError,
    GraphmillError,
    IRError,
    ModelLoadError,
    ShapeInferenceError,
    UnsafeModelError,
    UnsupportedModelError,
    UserInputError,
    VerificationError,
)
from .graph import (Function, Graph, ModelInfo, Node, Value, captured_values, describe_node, require_graph,
                    topological_order)
from .tensor import SparseTensor, Tensor, as_tensor
from .types import (
    Dim,
    MapType,
    OpaqueType,
    OptionalType,
    SequenceType,
    SparseTensorType,
    TensorType,
    Type,
    format_shape,
    is_static,
    num_elements,
)
from .verifier import find_problems, verify

__all__ = [
    "Attr", "AttrKind", "infer_attr", "DataType", "ExecutionError", "GraphmillError", "IRError",
    "ModelLoadError", "ShapeInferenceError", "UnsafeModelError", "UnsupportedModelError",
    "UserInputError", "VerificationError", "Function", "Graph", "ModelInfo", "Node", "Value",
    "captured_values", "describe_node", "require_graph", "topological_order", "SparseTensor", "Tensor", "as_tensor",
    "Dim", "MapType",
    "OpaqueType", "OptionalType", "SequenceType", "SparseTensorType", "TensorType", "Type",
    "format_shape", "is_static", "num_elements", "find_problems", "verify",
]
