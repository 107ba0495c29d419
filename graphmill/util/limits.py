"""Sizes no real model has: the limits that keep an untrusted model from exhausting memory.

A 4 KB file can declare a tensor of 2^40 elements, or a shape operand of 2^24 entries (a tensor of
rank 2^24): shape inference, random inputs and the registry would then allocate per element or per
dimension until the machine gives out. graphmill refuses such sizes where a model is loaded and
before anything is allocated from a declared shape.

* ``GRAPHMILL_MAX_ELEMENTS`` (default 2^31): elements of one tensor, and so also any one dimension.
  The largest tensors of real models (LLM embedding tables, ~2^30) fit.
* ``GRAPHMILL_MAX_RANK`` (default 64, numpy's own maximum): dimensions of one tensor, and so the
  entries of a shape operand (Reshape's, Expand's, ConstantOfShape's).

Both are read from the environment on every check, so a user with a larger model raises them for one
command (``GRAPHMILL_MAX_ELEMENTS=8589934592 graphmill inspect big.onnx``).
"""

from __future__ import annotations

import os

DEFAULT_MAX_ELEMENTS = 2**31
DEFAULT_MAX_RANK = 64


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        from graphmill.util.errors import UserInputError

        raise UserInputError(f"{name}={text!r}: must be a positive integer")
    return value


def max_elements() -> int:
    """Most elements one tensor may have (``GRAPHMILL_MAX_ELEMENTS``, default 2^31)."""
    return _env_int("GRAPHMILL_MAX_ELEMENTS", DEFAULT_MAX_ELEMENTS)


def max_rank() -> int:
    """Most dimensions one tensor may have (``GRAPHMILL_MAX_RANK``, default 64)."""
    return _env_int("GRAPHMILL_MAX_RANK", DEFAULT_MAX_RANK)


def shape_problem(shape) -> str | None:
    """Why a shape (ints, symbols or None entries) is beyond the limits, or None when it is not.

    Only the known dimensions count toward the element total: a symbol is bound later, and checked
    then (``random_inputs`` checks the sizes it is given)."""
    if shape is None:
        return None
    if len(shape) > max_rank():
        return f"rank {len(shape)}, more than the limit of {max_rank()} dimensions (GRAPHMILL_MAX_RANK)"
    limit = max_elements()
    total = 1
    for d in shape:
        if isinstance(d, int) and not isinstance(d, bool):
            total *= max(d, 0)
    if total > limit:
        return f"{total} elements, more than the limit of {limit} per tensor (GRAPHMILL_MAX_ELEMENTS)"
    return None
