"""The ``graphmill.chip`` ops: a chip netlist (Circuit Training's ``netlist.pb.txt``) as an ``ir.Graph``.

Why in the IR: macro placement reuses the graph machinery the rest of graphmill speaks (placement
passes, graph encoders, search), so a netlist is just another graph. The convention:

- every netlist node is one ``Node`` in domain ``graphmill.chip`` whose ``op_type`` says what it is:
  ``HardMacro`` / ``SoftMacro`` (a standard-cell cluster) / ``StdCell`` / ``Port`` (placeable: attributes
  ``width``, ``height``, ``x``, ``y`` (centre), ``orientation``, ``fixed``; ports have ``side``),
  ``HardMacroPin`` / ``SoftMacroPin`` (attributes ``macro`` = the owner's name, ``x_offset``,
  ``y_offset`` from the owner's centre in orientation N, optional ``weight``);
- a net is a ``Value``: its producer is the driver (a pin, port or standard cell; output 0, named after
  it), its users are the sinks; a net's weight is the driver's ``weight`` attribute (1 when absent);
- every node carries ``index``, its position in the netlist file: ``.plc`` files name nodes by it;
- the placement's canvas (size, grid, routing resources) is ``graph.meta[CANVAS_KEY]``, a ``Canvas``.

The ops have no tensor semantics: inference gives nets an opaque ``net`` type, and cost is zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import Graph, Node
from ..types import OpaqueType
from .registry import Cost, InferenceContext, register

DOMAIN = "graphmill.chip"
HARD_MACRO = "HardMacro"
SOFT_MACRO = "SoftMacro"
STDCELL = "StdCell"
PORT = "Port"
HARD_MACRO_PIN = "HardMacroPin"
SOFT_MACRO_PIN = "SoftMacroPin"
MODULE_OPS = (HARD_MACRO, SOFT_MACRO, STDCELL, PORT)
PIN_OPS = (HARD_MACRO_PIN, SOFT_MACRO_PIN)
CANVAS_KEY = "graphmill.chip.canvas"
NET_TYPE = OpaqueType(DOMAIN, "net")

ORIENTATIONS = ("N", "S", "E", "W", "FN", "FS", "FE", "FW")


@dataclass
class Canvas:
    """Where the netlist is placed and how its cost is measured (a ``.plc`` header's numbers).

    ``hroutes``/``vroutes`` are routing tracks per micron; ``hmacro``/``vmacro`` the tracks per micron a
    hard macro blocks; ``smoothing`` the congestion smoothing range in grid cells.
    """

    width: float
    height: float
    columns: int
    rows: int
    hroutes: float = 0.0
    vroutes: float = 0.0
    hmacro: float = 0.0
    vmacro: float = 0.0
    smoothing: int = 0
    overlap_threshold: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def cell_width(self) -> float:
        return self.width / self.columns

    @property
    def cell_height(self) -> float:
        return self.height / self.rows


def _infer_net(ctx: InferenceContext) -> list:
    return [NET_TYPE for _ in ctx.node.outputs]


def _no_cost(node: Node) -> Cost:
    """Zero: a macro, cell or port of a netlist computes nothing; its "cost" is where it is placed, which the
    proxy cost (passes/chip/cost.py) measures, not the op registry."""
    return Cost()


register(list(MODULE_OPS + PIN_OPS), DOMAIN, infer=_infer_net, cost=_no_cost,
         doc="chip netlist node (macro, cluster, standard cell, port, pin); see graphmill.ir.ops.chip")


def is_chip_graph(graph: Graph) -> bool:
    """True when ``graph`` is a chip netlist (all its nodes are ``graphmill.chip`` ops)."""
    return len(graph) > 0 and all(n.domain == DOMAIN for n in graph)


def oriented_offset(dx: float, dy: float, orientation: str) -> tuple[float, float]:
    """A pin offset (given for orientation N) as seen with the macro in ``orientation`` (LEF/DEF
    orientations: S = rotated 180, E/W = rotated 90 clockwise/counter-clockwise, F* = mirrored first)."""
    o = orientation or "N"
    if o == "N":
        return dx, dy
    if o == "S":
        return -dx, -dy
    if o == "FN":
        return -dx, dy
    if o == "FS":
        return dx, -dy
    if o == "E":
        return dy, -dx
    if o == "W":
        return -dy, dx
    if o == "FE":
        return -dy, -dx
    if o == "FW":
        return dy, dx
    raise ValueError(f"unknown orientation {orientation!r}")


def oriented_size(width: float, height: float, orientation: str) -> tuple[float, float]:
    """Width and height with the macro in ``orientation`` (E/W/FE/FW swap them)."""
    return (height, width) if (orientation or "N") in ("E", "W", "FE", "FW") else (width, height)
