"""Unique node names: reports (pipeline stages, placements, per-node times) key nodes by name, and
exporters may leave names empty or repeated."""

from __future__ import annotations

from .graph import Graph


def name_nodes(graph: Graph) -> bool:
    """Give every node of ``graph`` a unique name (``{name or op}_{index}``); True when a name changed."""
    seen: set[str] = set()
    changed = False
    for i, n in enumerate(graph.nodes):
        if not n.name or n.name in seen:
            base = n.name or n.op_type
            name, k = f"{base}_{i}", 1
            while name in seen:
                name, k = f"{base}_{i}_{k}", k + 1
            n.name = name
            changed = True
        seen.add(n.name)
    return changed
