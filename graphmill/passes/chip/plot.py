"""A picture of a chip placement: the routing-congestion heat map under the hard macros (blue), the soft
macros / clusters (yellow) and the ports (red), on the canvas grid."""

from __future__ import annotations

import io

import numpy as np

from graphmill.util.plots import pyplot

from .cost import ProxyCost
from .problem import KIND_HARD, KIND_PORT, KIND_SOFT, KIND_STDCELL


def placement_png(cost: ProxyCost, title: str = "") -> bytes:
    """PNG bytes of ``cost``'s problem as placed (the caller writes them with its other outputs)."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    p, c = cost.p, cost.p.canvas
    fig, ax = plt.subplots(figsize=(7, 7 * c.height / c.width + 0.6))
    try:
        img = ax.imshow(cost.congestion_grid(), origin="lower", extent=(0, c.width, 0, c.height), cmap="Reds",
                        alpha=0.8, aspect="equal")
        fig.colorbar(img, ax=ax, fraction=0.046, pad=0.04, label="routing congestion (max of H, V)")
        for v in np.linspace(0, c.width, c.columns + 1):
            ax.axvline(v, color="0.85", lw=0.3)
        for v in np.linspace(0, c.height, c.rows + 1):
            ax.axhline(v, color="0.85", lw=0.3)
        w, h = p.sizes()
        for i in np.nonzero((p.kind == KIND_SOFT) | (p.kind == KIND_STDCELL))[0]:
            ax.add_patch(Rectangle((p.x[i] - w[i] / 2, p.y[i] - h[i] / 2), w[i], h[i], facecolor="gold", alpha=0.35,
                                   edgecolor="none"))
        for i in np.nonzero(p.kind == KIND_HARD)[0]:
            ax.add_patch(Rectangle((p.x[i] - w[i] / 2, p.y[i] - h[i] / 2), w[i], h[i], facecolor="tab:blue",
                                   alpha=0.6, edgecolor="navy", lw=0.5))
        ports = p.kind == KIND_PORT
        ax.plot(p.x[ports], p.y[ports], "r.", ms=2)
        ax.set_xlim(0, c.width)
        ax.set_ylim(0, c.height)
        r = cost.report()
        ax.set_title(title or f"proxy {r.proxy:.4f} (wirelength {r.wirelength:.4f}, density {r.density:.4f}, "
                     f"congestion {r.congestion:.4f})", fontsize=9)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    return buf.getvalue()
