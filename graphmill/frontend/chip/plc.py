"""Circuit Training's placement files (``.plc``): read, apply to a netlist graph, write.

A ``.plc`` is a header of ``#`` comment lines (canvas size, grid, routing resources, cost components,
node counts, free text) and one line per placed node: ``index x y orientation fixed`` (the index is the
node's position in the netlist, ``-`` the orientation of a port). Reading then writing a file gives it
back byte for byte (lines are kept as read unless their node moved), so users take results back to
Circuit Training's tools unchanged in format. A new placement keeps the template's header fields and
gets its own cost components; the ASCII maps CT's evaluator draws in the header are dropped (they would
describe the old placement).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from graphmill.ir import Graph
from graphmill.ir.ops.chip import (CANVAS_KEY, DOMAIN, HARD_MACRO, HARD_MACRO_PIN, MODULE_OPS, ORIENTATIONS, PORT,
                                   SOFT_MACRO, SOFT_MACRO_PIN, STDCELL, Canvas)
from graphmill.frontend.chip.netlist import MAX_MICRONS, UNPOSITIONED_KEY
from graphmill.util.errors import UserInputError
from graphmill.util.files import TEXT_FILE_LIMIT, atomic_write_text, read_user_file


class PlcError(UserInputError):
    """A placement file is malformed or does not match its netlist."""


# Circuit Training's defaults (placement_util.create_placement_cost) for a header that omits them.
DEFAULT_ROUTES = (70.33, 74.51)
DEFAULT_MACRO_ROUTES = (51.79, 51.79)
DEFAULT_SMOOTHING = 2
DEFAULT_OVERLAP_THRESHOLD = 0.004

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_HEADER = {
    "grid": re.compile(rf"Columns\s*:\s*{_NUM}\s+Rows\s*:\s*{_NUM}"),
    "size": re.compile(rf"Width\s*:\s*{_NUM}\s+Height\s*:\s*{_NUM}"),
    "routes": re.compile(rf"Routes per micron, hor\s*:\s*{_NUM}\s+ver\s*:\s*{_NUM}"),
    "macro_routes": re.compile(rf"Routes used by macros, hor\s*:\s*{_NUM}\s+ver\s*:\s*{_NUM}"),
    "smoothing": re.compile(rf"Smoothing factor\s*:\s*{_NUM}"),
    "overlap": re.compile(rf"Overlap threshold\s*:\s*{_NUM}"),
    "wirelength_cost": re.compile(rf"^#\s*Wirelength cost\s*:\s*{_NUM}"),
    "wirelength_total": re.compile(rf"^#\s*Wirelength\s*:\s*{_NUM}"),
    "density_cost": re.compile(rf"^#\s*Density cost\s*:\s*{_NUM}"),
    "congestion_cost": re.compile(rf"^#\s*Congestion cost\s*:\s*{_NUM}"),
}
_COUNTS = {"HARD_MACROs": (HARD_MACRO,), "HARD_MACRO_PINs": (HARD_MACRO_PIN,), "MACROs": (HARD_MACRO, SOFT_MACRO),
           "MACRO_PINs": (HARD_MACRO_PIN, SOFT_MACRO_PIN), "PORTs": (PORT,), "SOFT_MACROs": (SOFT_MACRO,),
           "SOFT_MACRO_PINs": (SOFT_MACRO_PIN,), "STDCELLs": (STDCELL,)}
_COUNT_RE = re.compile(r"^#\s*([A-Z_]+s)\s*:\s*(\d+)\s*$")
_MAP_TITLES = ("Hard Macro Placements:", "Overall Placement Density:", "Horizontal Routing Congestion:",
               "Vertical Routing Congestion:")
_MAP_LINE = re.compile(r"^#\s*(\d*\s*\|.*|-+\s*)$")


@dataclass
class PlcNode:
    """One node line: where a node is, its orientation (``-`` for ports) and whether it is fixed."""

    index: int
    x: float
    y: float
    orientation: str
    fixed: int
    line: str = ""  # as read (written back unchanged while the values are)
    lineno: int = 0


@dataclass
class PlcFile:
    """A ``.plc`` file: its lines (``str`` for header and other text, ``int`` for a node line by index),
    node entries, and the header values parsed from it."""

    path: str
    items: list = field(default_factory=list)
    nodes: dict[int, PlcNode] = field(default_factory=dict)
    values: dict[str, tuple[float, ...]] = field(default_factory=dict)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (count, line)
    final_newline: bool = True

    def canvas(self) -> Canvas:
        """The header's canvas; Circuit Training's defaults for routing numbers it does not give."""
        v = self.values
        if "grid" not in v or "size" not in v:
            missing = " and ".join(n for n, k in (("'Columns : C  Rows : R'", "grid"),
                                                  ("'Width : W  Height : H'", "size")) if k not in v)
            raise PlcError(f"{self.path}: the header has no {missing} line")
        cols, rows = v["grid"]
        w, h = v["size"]
        if cols != int(cols) or rows != int(rows) or cols < 1 or rows < 1 or cols * rows > 10**6:
            raise PlcError(f"{self.path}: Columns/Rows must be whole numbers from 1 with at most 10^6 cells")
        if not (0 < w <= MAX_MICRONS and 0 < h <= MAX_MICRONS):  # 1e308 overflowed the costs to nan (a fuzzer)
            raise PlcError(f"{self.path}: Width and Height must be positive, at most {MAX_MICRONS:g} microns")
        hr, vr = v.get("routes", DEFAULT_ROUTES)
        hm, vm = v.get("macro_routes", DEFAULT_MACRO_ROUTES)
        if not (hr > 0 and vr > 0):
            raise PlcError(f"{self.path}: routes per micron must be positive")
        sm = v.get("smoothing", (DEFAULT_SMOOTHING,))[0]
        ov = v.get("overlap", (DEFAULT_OVERLAP_THRESHOLD,))[0]
        return Canvas(float(w), float(h), int(cols), int(rows), float(hr), float(vr), float(hm), float(vm),
                      int(math.floor(sm)), float(ov))

    def costs(self) -> dict[str, float]:
        """The cost components written in the header (those present)."""
        return {k[:-5]: self.values[k][0] for k in ("wirelength_cost", "density_cost", "congestion_cost")
                if k in self.values}


def parse_plc_text(text: str, path: str = "<plc>") -> PlcFile:
    """Parse ``.plc`` text; ``path`` names it in errors."""
    plc = PlcFile(path)
    lines = text.split("\n")
    plc.final_newline = text.endswith("\n")
    if plc.final_newline:
        lines.pop()
    for lineno, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            plc.items.append(line)
            if s.startswith("#"):
                for key, rx in _HEADER.items():
                    m = rx.search(s)
                    if m and key not in plc.values:
                        try:
                            plc.values[key] = tuple(float(g) for g in m.groups())
                        except ValueError:
                            raise PlcError(f"{path}: line {lineno}: bad number in {s!r}") from None
                m = _COUNT_RE.match(s)
                if m and m.group(1) in _COUNTS:
                    plc.counts[m.group(1)] = (int(m.group(2)), lineno)
            continue
        parts = s.split()
        if len(parts) != 5:
            raise PlcError(f"{path}: line {lineno}: expected 'index x y orientation fixed', found {s[:60]!r}")
        try:
            idx = int(parts[0])
            x, y = float(parts[1]), float(parts[2])
            fixed = int(parts[4])
        except ValueError:
            raise PlcError(f"{path}: line {lineno}: expected 'index x y orientation fixed', found {s[:60]!r}") from None
        if not (abs(x) <= MAX_MICRONS and abs(y) <= MAX_MICRONS) or fixed not in (0, 1) or idx < 0:
            raise PlcError(f"{path}: line {lineno}: bad values in {s[:60]!r}")
        if parts[3] != "-" and parts[3] not in ORIENTATIONS:
            raise PlcError(f"{path}: line {lineno}: unknown orientation {parts[3]!r}")
        if idx in plc.nodes:
            raise PlcError(f"{path}: line {lineno}: node {idx} is placed twice")
        plc.nodes[idx] = PlcNode(idx, x, y, parts[3], fixed, line, lineno)
        plc.items.append(idx)
    return plc


def read_plc(path: str | os.PathLike) -> PlcFile:
    """Read a ``.plc`` file."""
    shown = os.fspath(path)
    try:
        data = read_user_file(shown, TEXT_FILE_LIMIT, "a .plc placement file", error=PlcError)
    except OSError as e:
        raise PlcError(f"{shown}: cannot read ({e.strerror or e})") from None
    if data[:2] == b"\x1f\x8b":  # a gzip file: a netlist.pb.txt.gz given as the placement, most likely
        raise PlcError(f"{shown}: a gzip file, not a .plc placement (a netlist.pb.txt.gz? --init takes the .plc)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PlcError(f"{shown}: not UTF-8 text (a .plc placement is text)") from None
    return parse_plc_text(text, shown)


def modules_by_index(graph: Graph) -> dict[int, object]:
    """The netlist's placeable nodes (ports, macros, standard cells) by netlist index."""
    return {int(n.attr("index")): n for n in graph if n.domain == DOMAIN and n.op_type in MODULE_OPS}


def apply_plc(graph: Graph, plc: PlcFile) -> Canvas:
    """Place ``graph``'s nodes as ``plc`` says and set its canvas (``graph.meta[CANVAS_KEY]``).

    Refused (``PlcError``, naming the line) when a line names a node the netlist does not have or that is
    not placeable (a pin), or a header count disagrees with the netlist. Nodes without a line keep the
    netlist's coordinates, as in Circuit Training; a macro the netlist gives no position must have a line (it
    would sit at 0, 0, half off the canvas: the placement is not this netlist's, or was cut).
    """
    canvas = plc.canvas()
    mods = modules_by_index(graph)
    kinds: dict[str, int] = {}
    for n in graph:
        kinds[n.op_type] = kinds.get(n.op_type, 0) + 1
    for name, (count, lineno) in plc.counts.items():
        have = sum(kinds.get(k, 0) for k in _COUNTS[name])
        if have != count:
            raise PlcError(f"{plc.path}: line {lineno}: {name} is {count} but the netlist has {have}: "
                           "the placement is not for this netlist")
    for idx, pn in plc.nodes.items():
        node = mods.get(idx)
        if node is None:
            raise PlcError(f"{plc.path}: line {pn.lineno}: node {idx} is not a macro, standard cell or port of "
                           f"the netlist ({len(graph)} nodes): the placement is not for this netlist")
        if (pn.orientation == "-") != (node.op_type == PORT) and node.op_type != STDCELL:
            raise PlcError(f"{plc.path}: line {pn.lineno}: node {idx} ({node.name}) is a {node.op_type}; "
                           f"orientation {pn.orientation!r} does not fit it")
    missing = [i for i in graph.meta.get(UNPOSITIONED_KEY, ()) if i not in plc.nodes]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        kind = "hard macro" if mods[missing[0]].op_type == HARD_MACRO else "soft macro"
        raise PlcError(f"{plc.path}: no line places {kind} {mods[missing[0]].name!r} (node "
                       f"{missing[0]}){more}, and the netlist gives it no position: the placement is not for this "
                       "netlist")
    for idx, pn in plc.nodes.items():
        node = mods[idx]
        node.set_attr("x", pn.x)
        node.set_attr("y", pn.y)
        if pn.orientation != "-":
            node.set_attr("orientation", pn.orientation)
        node.set_attr("fixed", pn.fixed)
    graph.meta[CANVAS_KEY] = canvas
    return canvas


def _num(x: float) -> str:
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


def _node_line(idx: int, node) -> str:
    o = node.attr("orientation", "-") if node.op_type != PORT else "-"
    return f"{idx} {_num(node.attr('x'))} {_num(node.attr('y'))} {o or '-'} {int(node.attr('fixed', 0))}"


def format_plc(plc: PlcFile) -> str:
    """The text of ``plc`` as read (the inverse of ``parse_plc_text``)."""
    out = [it if isinstance(it, str) else plc.nodes[it].line for it in plc.items]
    return "\n".join(out) + ("\n" if plc.final_newline else "")


def placement_text(graph: Graph, template: PlcFile, costs: dict[str, float] | None = None) -> str:
    """A ``.plc`` for ``graph``'s current placement: ``template``'s header (canvas, grid, routing and other
    fields kept; cost lines replaced by ``costs``: wirelength/density/congestion, and the ``Wirelength :`` total by
    ``costs["hpwl"]``, the placement's net-weighted HPWL in microns), then one line per
    port, macro and standard cell in netlist order (a line unchanged from the template is kept as is)."""
    header: list[str] = []
    in_map = False
    written_costs: set[str] = set()
    for it in template.items:
        if not isinstance(it, str):
            continue
        s = it.strip()
        if s.startswith("#") and s[1:].strip() in _MAP_TITLES:
            in_map = True
            continue
        if in_map and _MAP_LINE.match(s):
            continue
        in_map = False
        if costs is not None and "hpwl" in costs and _HEADER["wirelength_total"].search(s):
            header.append(f"# Wirelength : {costs['hpwl']:.3f}")  # the net-weighted HPWL total, as plc_client
            written_costs.add("hpwl")
            continue
        if costs is not None:
            replaced = False
            for key in ("wirelength", "density", "congestion"):
                if _HEADER[f"{key}_cost"].search(s) and key in costs:
                    header.append(f"# {key.capitalize()} cost : {costs[key]:.4f}")
                    written_costs.add(key)
                    replaced = True
            if replaced:
                continue
        header.append(it)
    if costs is not None:
        missing = [k for k in ("wirelength", "density", "congestion") if k in costs and k not in written_costs]
        if missing:
            at = next((i for i, h in enumerate(header) if _HEADER["size"].search(h)), len(header) - 1) + 1
            for k in reversed(missing):
                header.insert(at, f"# {k.capitalize()} cost : {costs[k]:.4f}")
        if "hpwl" in costs and "hpwl" not in written_costs:  # before the cost lines, where plc_client writes it
            at = next((i for i, h in enumerate(header) if any(_HEADER[f"{k}_cost"].search(h.strip())
                                                               for k in ("wirelength", "density", "congestion"))),
                      len(header))
            header.insert(at, f"# Wirelength : {costs['hpwl']:.3f}")
    if not any("node_index" in h for h in header):
        header.append("# node_index x y orientation fixed")
    lines = list(header)
    for idx, node in sorted(modules_by_index(graph).items()):
        line = _node_line(idx, node)
        old = template.nodes.get(idx)
        if old is not None and old.x == node.attr("x") and old.y == node.attr("y") and int(old.fixed) == int(
                node.attr("fixed", 0)) and (old.orientation == "-" or old.orientation == node.attr("orientation")):
            line = old.line
        lines.append(line)
    # a template with Windows line ends (CRLF) gets them on every line, not only on the lines kept from it
    raw = [it if isinstance(it, str) else template.nodes[it].line for it in template.items]
    eol = "\r\n" if raw and sum(r.endswith("\r") for r in raw) * 2 > len(raw) else "\n"
    return eol.join(ln.rstrip("\r") for ln in lines) + eol


def write_plc(path: str | os.PathLike, graph: Graph, template: PlcFile, costs: dict[str, float] | None = None) -> None:
    """Write ``placement_text`` to ``path`` atomically."""
    atomic_write_text(path, placement_text(graph, template, costs))
