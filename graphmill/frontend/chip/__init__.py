"""Circuit Training's chip placement files: ``netlist.pb.txt`` (``netlist``) into ``graphmill.chip`` graphs and
``.plc`` placements (``plc``) read, applied to a graph and written back."""

from .netlist import NetlistError, parse_netlist_text, read_netlist
from .plc import PlcError, PlcFile, apply_plc, parse_plc_text, placement_text, read_plc, write_plc

__all__ = ["NetlistError", "parse_netlist_text", "read_netlist", "PlcError", "PlcFile", "apply_plc",
           "parse_plc_text", "placement_text", "read_plc", "write_plc"]
