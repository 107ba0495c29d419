"""Reference architectures built from their papers' block tables, with seeded random weights."""

from __future__ import annotations

from typing import Callable

from graphmill.ir import Graph, UserInputError

from .resnet import resnet

MODELS: dict[str, Callable[..., Graph]] = {
    "resnet18": lambda **kw: resnet("resnet18", **kw),
    "resnet34": lambda **kw: resnet("resnet34", **kw),
    "resnet50": lambda **kw: resnet("resnet50", **kw),
}


def build(name: str, **kwargs) -> Graph:
    """Build a zoo model by name (``graphmill zoo --list`` shows the names)."""
    try:
        fn = MODELS[name]
    except KeyError:
        raise UserInputError(f"unknown zoo model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    return fn(**kwargs)


__all__ = ["build", "MODELS", "resnet"]
