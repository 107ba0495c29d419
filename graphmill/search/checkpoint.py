"""Search checkpoints: one JSON file holding everything a run needs to continue, written atomically.

Schema (``version`` 1)::

    {"format": "graphmill-search-checkpoint", "version": 1,
     "space": <Space.to_json()>, "strategy": NAME, "options": {...}, "seed": 0,
     "history": [<Trial.to_json()>, ...],          # finished evaluations, in finishing order
     "pending": [config, ...],                      # submitted, not finished (resubmitted on resume)
     "waiting": [config, ...],                      # repeats of a pending config, told when it finishes
     "strategy_state": {...}, "runner": {"rng": ..., "repeats": 0}}

The file is replaced through a temporary file renamed into place (``graphmill.util.files``) after every
result, so a ``kill -9`` at any moment leaves either the previous or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import os
from typing import Any

from graphmill.util.errors import UserInputError
from graphmill.util.files import CHECKPOINT_LIMIT, atomic_write_text, read_user_file

FORMAT = "graphmill-search-checkpoint"
VERSION = 1


def save(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (plus format and version) to ``path`` atomically."""
    data = {"format": FORMAT, "version": VERSION, **state}
    atomic_write_text(path, json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n")


def load(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none; a ``UserInputError`` when it is not one."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    try:
        data = json.loads(read_user_file(path, CHECKPOINT_LIMIT, "a search checkpoint (JSON)").decode("utf-8"))
    except (OSError, ValueError) as e:
        raise UserInputError(f"{path}: cannot read the search checkpoint ({e}); remove it to start afresh") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserInputError(f"{path}: not a graphmill search checkpoint; give another path")
    if data.get("version") != VERSION:
        raise UserInputError(f"{path}: checkpoint version {data.get('version')!r} is not {VERSION}")
    return data
