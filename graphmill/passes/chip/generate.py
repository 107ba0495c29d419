"""Random netlists in the ``graphmill.chip`` form, for tests, benchmarks and pre-training the RL placer.

Why generated: Circuit Training's policy is pre-trained on many netlists before it is fine-tuned on a new
one; the public netlists are few, so like the learned-passes corpus we generate more: hard macros of a few
sizes with pins on their edges, soft macros (clusters) with two pins, ports on the canvas boundary, and nets
from a random driver pin to one to four sinks, with integer weights.
"""

from __future__ import annotations

import numpy as np

from graphmill.ir import Graph, Node, Value
from graphmill.ir.ops.chip import (CANVAS_KEY, DOMAIN, HARD_MACRO, HARD_MACRO_PIN, NET_TYPE, PORT, SOFT_MACRO,
                                   SOFT_MACRO_PIN, Canvas)


def generate_netlist(*, hard: int = 8, soft: int = 16, ports: int = 8, nets: int | None = None, seed: int = 0,
                     size: float = 400.0, grid: int = 8, hard_fill: float = 0.35, soft_fill: float = 0.2) -> Graph:
    """A random netlist on a ``size`` x ``size`` canvas with a ``grid`` x ``grid`` grid; hard macros cover about
    ``hard_fill`` of the canvas and soft macros ``soft_fill``. Every node starts at the canvas centre."""
    rng = np.random.default_rng(seed)
    g = Graph(f"generated{seed}")
    g.opset_imports[DOMAIN] = 1
    specs: list[tuple[str, str, dict]] = []
    pins: list[int] = []  # spec indices of ports and pins
    owner: dict[int, str] = {}

    def add(op: str, name: str, **attrs) -> int:
        attrs["index"] = len(specs)
        specs.append((op, name, attrs))
        return len(specs) - 1

    centre = size / 2
    for i in range(ports):
        side = int(rng.integers(4))
        t = float(rng.uniform(0, size))
        x, y = [(0.0, t), (size, t), (t, 0.0), (t, size)][side]
        pins.append(add(PORT, f"port{i}", x=x, y=y, width=0.0, height=0.0, orientation="-", fixed=1,
                        side=["LEFT", "RIGHT", "BOTTOM", "TOP"][side]))
    area = hard_fill * size * size / max(hard, 1)
    for i in range(hard):
        aspect = float(rng.choice([0.5, 1.0, 2.0]))
        w = float(np.sqrt(area * aspect) * rng.uniform(0.8, 1.2))
        h = float(area / w)
        add(HARD_MACRO, f"M{i}", width=w, height=h, x=centre, y=centre, orientation="N", fixed=0)
        for k in range(int(rng.integers(2, 5))):
            j = add(HARD_MACRO_PIN, f"M{i}/p{k}", macro=f"M{i}", x=centre, y=centre,
                    x_offset=float(rng.uniform(-w / 2, w / 2)), y_offset=float(rng.uniform(-h / 2, h / 2)))
            pins.append(j)
            owner[j] = f"M{i}"
    area = soft_fill * size * size / max(soft, 1)
    for i in range(soft):
        w = float(np.sqrt(area) * rng.uniform(0.7, 1.3))
        h = float(area / w)
        add(SOFT_MACRO, f"G{i}", width=w, height=h, x=centre, y=centre, orientation="N", fixed=0)
        for k in ("in", "out"):
            j = add(SOFT_MACRO_PIN, f"G{i}/{k}", macro=f"G{i}", x=centre, y=centre, x_offset=0.0, y_offset=0.0)
            pins.append(j)
            owner[j] = f"G{i}"
    nets = nets if nets is not None else len(pins)
    sinks_of: dict[int, list[int]] = {}
    for _ in range(nets):
        d = pins[int(rng.integers(len(pins)))]
        if d in sinks_of:
            continue
        cand = [pins[int(s)] for s in rng.choice(len(pins), size=min(int(rng.integers(1, 5)), len(pins)), replace=False)]
        sinks = [s for s in cand if s != d and (s not in owner or owner.get(s) != owner.get(d))]
        if sinks:
            sinks_of[d] = sinks
            if specs[d][0] != PORT and rng.random() < 0.3:
                specs[d][2]["weight"] = float(rng.integers(2, 6))
    nodes = [Node(op, (), attrs, outputs=[Value(name, NET_TYPE)] if i in sinks_of else [], domain=DOMAIN, name=name)
             for i, (op, name, attrs) in enumerate(specs)]
    for d, sinks in sinks_of.items():
        for s in sinks:
            nodes[s].append_input(nodes[d].outputs[0])
    g.extend(nodes)
    g.meta[CANVAS_KEY] = Canvas(size, size, grid, grid, 10.0, 10.0, 5.0, 5.0, 0, 0.0)
    return g
