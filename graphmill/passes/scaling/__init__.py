"""Model-level scaling: EfficientNet compound scaling of depth, width and resolution.

``structure`` finds stages (node meta or discovery), ``channels`` propagates and
resizes channel counts, ``depth`` copies blocks, ``compound`` is the
``compound-scale`` pass and the ``scale()`` API.
"""

from .compound import CompoundScale, round_resolution, scale, scale_graph
from .structure import Structure, StructureError, find_structure

__all__ = ["CompoundScale", "scale", "scale_graph", "round_resolution", "find_structure", "Structure",
           "StructureError"]
