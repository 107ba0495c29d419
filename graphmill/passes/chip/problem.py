"""A ``graphmill.chip`` netlist graph as flat arrays, the form the proxy cost and the placers work on.

Why arrays: the proxy cost is evaluated hundreds of thousands of times by simulated annealing, so it runs
in numba over contiguous arrays (modules, pins, nets in CSR form) built once from the ``ir.Graph``;
``write_back`` puts the placement back on the graph's nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphmill.ir import Graph
from graphmill.ir.ops.chip import (CANVAS_KEY, DOMAIN, HARD_MACRO, HARD_MACRO_PIN, ORIENTATIONS, PORT,
                                   SOFT_MACRO, SOFT_MACRO_PIN, STDCELL, Canvas)
from graphmill.util.errors import UserInputError

KIND_PORT, KIND_HARD, KIND_SOFT, KIND_STDCELL = 0, 1, 2, 3
_KIND = {PORT: KIND_PORT, HARD_MACRO: KIND_HARD, SOFT_MACRO: KIND_SOFT, STDCELL: KIND_STDCELL}
ORIENT_CODE = {o: i for i, o in enumerate(ORIENTATIONS)}  # N S E W FN FS FE FW


class ChipPlacementError(UserInputError):
    """A netlist/placement that cannot be placed (no canvas, macros larger than the canvas, ...)."""


@dataclass
class ChipProblem:
    """Modules (ports, hard macros, soft macros, standard cells), their pins and the nets between them.

    ``x``/``y`` are module centres (mutable: the placement), ``w``/``h`` sizes in orientation N,
    ``orient`` codes into ``ORIENTATIONS``. Pin ``p`` sits at its module's centre plus its offset turned
    by the module's orientation. Net ``k``'s pins are ``net_pins[net_ptr[k]:net_ptr[k+1]]``, driver
    first; ``net_weight`` scales its HPWL, ``net_route_weight`` its routing demand (Circuit Training
    counts a weight <= 1 as 1 there), and ``net_count`` (the sum of driver weights, ports counting 1)
    normalizes wirelength.
    """

    canvas: Canvas
    names: list[str]
    node_index: np.ndarray
    kind: np.ndarray
    w: np.ndarray
    h: np.ndarray
    x: np.ndarray
    y: np.ndarray
    orient: np.ndarray
    fixed: np.ndarray
    pin_mod: np.ndarray
    pin_dx: np.ndarray
    pin_dy: np.ndarray
    net_ptr: np.ndarray
    net_pins: np.ndarray
    net_weight: np.ndarray
    net_route_weight: np.ndarray
    net_count: float
    mod_net_ptr: np.ndarray
    mod_nets: np.ndarray

    @property
    def hard(self) -> np.ndarray:
        return np.nonzero(self.kind == KIND_HARD)[0]

    @property
    def soft(self) -> np.ndarray:
        return np.nonzero(self.kind == KIND_SOFT)[0]

    def sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """Widths and heights as oriented (E/W/FE/FW swap them)."""
        turned = (self.orient >= 2) & (self.orient <= 3) | (self.orient >= 6)
        return np.where(turned, self.h, self.w), np.where(turned, self.w, self.h)

    def copy_placement(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.x.copy(), self.y.copy(), self.orient.copy()

    def set_placement(self, placement: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        self.x[:], self.y[:], self.orient[:] = placement

    def write_back(self, graph: Graph) -> None:
        """Put this placement on ``graph``'s nodes (attributes x, y, orientation)."""
        by_name = {n.name: n for n in graph if n.domain == DOMAIN}
        for i, name in enumerate(self.names):
            node = by_name[name]
            node.set_attr("x", float(self.x[i]))
            node.set_attr("y", float(self.y[i]))
            if self.kind[i] != KIND_PORT:
                node.set_attr("orientation", ORIENTATIONS[int(self.orient[i])])

    def check_area(self) -> None:
        """Refuse a netlist whose hard and soft macros cannot fit the canvas at all."""
        area = float(np.sum((self.w * self.h)[(self.kind == KIND_HARD) | (self.kind == KIND_SOFT)]))
        canvas_area = self.canvas.width * self.canvas.height
        if area > canvas_area:
            raise ChipPlacementError(
                f"the macros' total area ({area:.6g}, hard and soft) exceeds the canvas ({self.canvas.width:g} x "
                f"{self.canvas.height:g} = {canvas_area:.6g}): no legal placement exists")
        w, h = self.sizes()
        big = np.nonzero((self.kind == KIND_HARD) & ((w > self.canvas.width) | (h > self.canvas.height)))[0]
        if len(big):
            i = int(big[0])
            raise ChipPlacementError(f"hard macro {self.names[i]!r} ({w[i]:g} x {h[i]:g}) does not fit the canvas "
                                     f"({self.canvas.width:g} x {self.canvas.height:g})")


def problem_from_graph(graph: Graph, canvas: Canvas | None = None) -> ChipProblem:
    """Flatten a ``graphmill.chip`` graph (placed as its node attributes say) into a ``ChipProblem``."""
    canvas = canvas or graph.meta.get(CANVAS_KEY)
    if canvas is None:
        raise ChipPlacementError("the netlist has no canvas: read a .plc placement (with Width/Height and "
                                 "Columns/Rows) first")
    mods = [n for n in graph if n.domain == DOMAIN and n.op_type in _KIND]
    mods.sort(key=lambda n: int(n.attr("index")))
    mod_of = {n.name: i for i, n in enumerate(mods)}
    pin_of: dict[str, int] = {}
    pin_mod: list[int] = []
    pin_dx: list[float] = []
    pin_dy: list[float] = []
    for i, n in enumerate(mods):  # ports and standard cells are their own (only) pin
        if n.op_type in (PORT, STDCELL):
            pin_of[n.name] = len(pin_mod)
            pin_mod.append(i)
            pin_dx.append(0.0)
            pin_dy.append(0.0)
    for n in graph:
        if n.domain == DOMAIN and n.op_type in (HARD_MACRO_PIN, SOFT_MACRO_PIN):
            pin_of[n.name] = len(pin_mod)
            pin_mod.append(mod_of[n.attr("macro")])
            pin_dx.append(float(n.attr("x_offset", 0.0)))
            pin_dy.append(float(n.attr("y_offset", 0.0)))
    net_ptr = [0]
    net_pins: list[int] = []
    weights: list[float] = []
    route_w: list[float] = []
    count = 0.0
    for n in graph:
        if n.domain != DOMAIN or not n.outputs or n.outputs[0] is None:
            continue
        users = n.outputs[0].uses()
        if not users:
            continue
        wt = n.attr("weight")
        if n.op_type == PORT or wt is None:
            wt = 1.0
        wt = float(wt)
        count += wt
        weights.append(wt if wt != 0 else 1.0)
        route_w.append(wt if wt > 1 else 1.0)
        net_pins.append(pin_of[n.name])
        for user, _ in users:
            net_pins.append(pin_of[user.name])
        net_ptr.append(len(net_pins))
    pin_mod_a = np.array(pin_mod, dtype=np.int64)
    net_ptr_a = np.array(net_ptr, dtype=np.int64)
    net_pins_a = np.array(net_pins, dtype=np.int64)
    # module -> nets touching it (each once)
    pairs = set()
    for k in range(len(net_ptr) - 1):
        for p in net_pins[net_ptr[k]:net_ptr[k + 1]]:
            pairs.add((pin_mod[p], k))
    pairs_s = sorted(pairs)
    mod_net_ptr = np.zeros(len(mods) + 1, dtype=np.int64)
    for m, _ in pairs_s:
        mod_net_ptr[m + 1] += 1
    mod_net_ptr = np.cumsum(mod_net_ptr)
    mod_nets = np.array([k for _, k in pairs_s], dtype=np.int64)
    f = lambda key, d=0.0: np.array([float(n.attr(key, d)) for n in mods], dtype=np.float64)  # noqa: E731
    return ChipProblem(
        canvas=canvas, names=[n.name for n in mods],
        node_index=np.array([int(n.attr("index")) for n in mods], dtype=np.int64),
        kind=np.array([_KIND[n.op_type] for n in mods], dtype=np.int64),
        w=f("width"), h=f("height"), x=f("x"), y=f("y"),
        orient=np.array([ORIENT_CODE.get(str(n.attr("orientation", "N")), 0) for n in mods], dtype=np.int64),
        fixed=np.array([int(n.attr("fixed", 0)) for n in mods], dtype=np.int64),
        pin_mod=pin_mod_a, pin_dx=np.array(pin_dx), pin_dy=np.array(pin_dy),
        net_ptr=net_ptr_a, net_pins=net_pins_a, net_weight=np.array(weights, dtype=np.float64),
        net_route_weight=np.array(route_w, dtype=np.float64), net_count=count,
        mod_net_ptr=mod_net_ptr, mod_nets=mod_nets)
