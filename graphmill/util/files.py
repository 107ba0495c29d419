"""Atomic file output: a reader never sees a half-written file, and a failed write leaves nothing behind.

Every file graphmill writes (models, reports, plots, reproducers, checkpoints) goes through here.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from graphmill.util.errors import UserInputError


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_target(path: str) -> str:
    """The folder ``path`` will be written in; a user error if it cannot be."""
    if not path:
        raise UserInputError("the output path is empty")
    if os.path.isdir(path):
        raise UserInputError(f"{path}: is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserInputError(f"{path}: the folder {folder!r} does not exist")
    return folder


def atomic_write_many(files: list[tuple[str, bytes | list]]) -> None:
    """Write several files so that none is replaced unless all were written.

    Each goes to a temporary file in its destination folder (with the usual
    permissions, not mkstemp's 0600), is flushed to disk, and only then are they
    renamed into place, in order. On any failure the temporaries are removed.
    A file's content is bytes or a list of bytes-like chunks written in order.
    """
    temps: list[tuple[str, str]] = []
    try:
        for path, data in files:
            folder = check_target(path)
            try:
                fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
            except OSError as e:
                raise UserInputError(f"{path}: cannot write in {folder!r} ({e.strerror})") from None
            temps.append((tmp, path))
            try:
                with os.fdopen(fd, "wb") as f:
                    for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
                        f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, _default_mode())
            except OSError as e:
                raise UserInputError(f"{path}: cannot write ({e.strerror})") from None
        for tmp, path in temps:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise UserInputError(f"{path}: cannot write ({e.strerror})") from None
    except BaseException:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    atomic_write_many([(os.fspath(path), data)])


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8, atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> None:
    """Write ``data`` as JSON (non-JSON values through ``str``), atomically, ending in a newline."""
    atomic_write_text(path, json.dumps(data, indent=indent, default=str) + "\n")
