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

Writing it takes time (an RL controller's state makes it megabytes), so each result is first appended to a
write-ahead journal next to it (``<checkpoint>.journal``, one JSON line ``{"run": DIGEST, "trial": <Trial>}``,
flushed and fsynced) before the strategy hears of it; a ``kill -9`` while the checkpoint is being written then
loses no result: the resumed run answers the journaled configurations from the journal when its strategy asks
for them again instead of evaluating them twice. ``DIGEST`` (``run_digest``) names the search (space, strategy,
options, seed, fingerprint), so a journal left by another search is ignored; a torn last line (killed mid-append)
is ignored too. The journal holds only results the checkpoint lacks: it is rewritten (removed when empty) each
time a checkpoint lands. A checkpoint without a journal (older versions) resumes as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from graphmill.util.errors import UserInputError
from graphmill.util.files import CHECKPOINT_LIMIT, atomic_write_text, parse_json, read_user_file

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
        raw = read_user_file(path, CHECKPOINT_LIMIT, "a search checkpoint (JSON)")
    except OSError as e:  # a checkpoint that may be good: no "damaged", no "remove it" (an outside check)
        raise UserInputError(f"{path}: cannot read the search checkpoint ({e.strerror or e})") from None
    try:
        data = parse_json(raw.decode("utf-8"))
    except ValueError as e:
        # not "remove it": a path named by mistake is the user's own file (a model, a report)
        raise UserInputError(f"{path}: not a graphmill search checkpoint (cannot read it as one: {e}); give a new "
                             "path, or remove it if it is a damaged checkpoint of yours") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserInputError(f"{path}: not a graphmill search checkpoint; give another path")
    if data.get("version") != VERSION:
        raise UserInputError(f"{path}: checkpoint version {data.get('version')!r} is not {VERSION}")
    return data


def journal_path(path: str | os.PathLike) -> str:
    """The write-ahead journal of the checkpoint at ``path``: ``<path>.journal``."""
    return os.fspath(path) + ".journal"


def run_digest(identity: Any) -> str:
    """A short stable digest of ``identity`` (JSON-able), tagging journal lines with the search they belong to."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def journal_append(path: str | os.PathLike, run: str, *trials: dict[str, Any]) -> None:
    """Append ``trials`` to the journal of ``path`` (one write) and fsync it: once this returns, a ``kill -9``
    cannot lose them."""
    jpath = journal_path(path)
    data = "".join(json.dumps({"run": run, "trial": t}, separators=(",", ":"), allow_nan=False) + "\n"
                   for t in trials).encode()
    try:
        fd = os.open(jpath, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise UserInputError(f"{jpath}: cannot write ({e.strerror})") from None


def journal_read(path: str | os.PathLike, run: str) -> list[dict[str, Any]]:
    """The trials journaled for the search ``run`` next to ``path``, in order; [] when there is no journal.
    Lines of another search, lines that do not parse and a torn last line (no newline) are skipped."""
    jpath = journal_path(path)
    try:
        with open(jpath, "rb") as f:
            raw = f.read(CHECKPOINT_LIMIT)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UserInputError(f"{jpath}: cannot read the search journal ({e.strerror}); remove it") from None
    out = []
    for line in raw.split(b"\n")[:-1]:  # the last piece is "" or a torn line
        try:
            d = parse_json(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(d, dict) and d.get("run") == run and isinstance(d.get("trial"), dict):
            out.append(d["trial"])
    return out


def journal_rewrite(path: str | os.PathLike, run: str, trials: list[dict[str, Any]]) -> None:
    """Leave only ``trials`` in the journal of ``path`` (atomically; the file is removed when there are none).
    Called once a checkpoint holding every other journaled trial has landed."""
    jpath = journal_path(path)
    if not trials:
        try:
            os.unlink(jpath)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise UserInputError(f"{jpath}: cannot remove ({e.strerror})") from None
        return
    atomic_write_text(jpath, "".join(json.dumps({"run": run, "trial": t}, separators=(",", ":"), allow_nan=False)
                                     + "\n" for t in trials))
