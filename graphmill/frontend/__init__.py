"""Ways into and out of the IR: ONNX files (and, later, torch modules, the zoo, the schedule DSL)."""

from .onnx_export import to_proto
from .onnx_import import from_proto
from .onnx_io import load, save

__all__ = ["load", "save", "from_proto", "to_proto"]
