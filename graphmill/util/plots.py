"""PNG output of matplotlib figures, written atomically; matplotlib is the optional ``plot`` extra."""

from __future__ import annotations

import io
import os
from typing import Any

from graphmill.util.errors import UserInputError
from graphmill.util.files import atomic_write_bytes


def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend, or a user error saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserInputError("plots need matplotlib: pip install 'graphmill[plot]'") from None
    return plt


def check_png_path(path: str | os.PathLike | None, flag: str = "--plot") -> None:
    """Refuse, before any work, a plot path whose name says another format: the figure is PNG whatever the
    name, so ``--plot e.txt`` wrote PNG bytes into a ``.txt`` file."""
    if path is not None and not os.fspath(path).lower().endswith(".png"):
        raise UserInputError(f"{flag} {os.fspath(path)}: plots are written as PNG; give a name ending in .png")


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 100, tight: bool = False) -> None:
    """Render ``fig`` to PNG at ``path`` (atomically) and close it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    finally:
        pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
