"""graphmill.search.methods: whole search methods that are more than one strategy over one space.

AutoHAS (architecture x hyper-parameters with shared weights), NAHAS (network x accelerator under an area
budget) and EvaNet (evolution whose children inherit their parent's weights, on video networks) each own their
task, space, training loop and outputs; ``graphmill search --method NAME`` runs one into a folder. They reuse
``graphmill.search`` (spaces, strategies, executors, checkpoints) for everything that is ordinary search.

The contract every method module implements, exactly::

    def run(out: str, *, budget: int | None, seed: int, workers: int, executor: str | None,
            ray_address: str | None, accel: str | None, options: dict[str, str],
            progress: Callable[[str], None] | None) -> dict

It checks its options and inputs before writing anything (a ``UserInputError`` otherwise), writes its
checkpoint, ``history.jsonl``, plots, ``best.onnx`` and ``report.json`` into ``out`` (rerunning the same
command resumes from the checkpoint), calls ``progress(line)`` as trials finish, and returns a JSON-able
summary with at least ``method``, ``task``, ``out``, ``files``, ``interrupted``, ``checkpoint``, ``best`` and
``trials``. Importing this package imports no method (nor torch): a method is imported when it is run.
"""

from __future__ import annotations

import importlib
import math
import operator
from typing import Any, Callable, Mapping

from graphmill.util.errors import UserInputError
from graphmill.util.limits import check_count

#: method name -> the module implementing ``run`` (the contract above)
METHODS: dict[str, str] = {
    "autohas": "graphmill.search.methods.autohas",
    "nahas": "graphmill.search.methods.nahas",
    "evanet": "graphmill.search.methods.evanet",
}


def check_method(name: str) -> str:
    """``name`` if it is a known method, else a ``UserInputError`` naming the nearest one."""
    from graphmill.util.suggest import did_you_mean

    if name in METHODS:
        return name
    raise UserInputError(f"--method {name!r}: unknown search method{did_you_mean(name, METHODS)}; known: "
                         f"{', '.join(METHODS)}")


#: what a value of each kind must be, in the messages of ``parse_options``
_KINDS = {bool: "true or false", int: "a whole number", float: "a finite number", str: "text"}


def _typed(raw: Any, kind: type) -> Any:
    """``raw`` (text, or a value already typed from Python) as ``kind``; a ``ValueError`` when it is not one.
    A whole number is never made of a fraction (``8.5`` is refused, not truncated to 8) nor of a bool."""
    if kind is str:
        return raw.strip() if isinstance(raw, str) else raw
    if kind is bool:
        return {"true": True, "1": True, "false": False, "0": False}[str(raw).strip().lower()]
    if isinstance(raw, bool):
        raise ValueError(raw)
    if kind is int:
        if isinstance(raw, str):
            return int(raw.strip())
        if isinstance(raw, float):
            if not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        return operator.index(raw)  # int, numpy integers; a float-like object without __index__ is refused
    value = float(raw.strip()) if isinstance(raw, str) else float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def parse_options(options: Mapping[str, Any], defaults: Mapping[str, Any], method: str,
                  *, text: tuple[str, ...] = (), lists: Mapping[str, type] | None = None) -> dict[str, Any]:
    """``defaults`` updated with ``options`` (``--option`` strings, or values already typed from Python), each
    parsed to its default's type: whole numbers for an int default, finite numbers for a float, text otherwise
    and for the keys in ``text``. The keys of ``lists`` are candidate lists (``--option rows=8,16``, or a Python
    list or tuple): every key of it comes back as a list whose items are parsed as that key's kind (``int``,
    ``float`` or ``str``), defaults included; empty items are skipped, an empty list is refused. A whole number
    is never truncated from a fraction (``rows=8.5,16`` is refused naming the option and the value). An unknown
    key is a ``UserInputError`` naming the nearest valid one; the method then checks ranges and choices itself.
    One parser, so that every method reads ``--option`` alike.
    """
    from graphmill.util.suggest import did_you_mean

    lists = dict(lists or {})
    out = dict(defaults)
    for key, raw in options.items():
        if key not in defaults:
            raise UserInputError(f"--option {key}: unknown {method} option{did_you_mean(key, defaults)}; options: "
                                 f"{', '.join(defaults)}")
        out[key] = raw
    for key, raw in out.items():
        if key in lists:
            out[key] = _parse_list(key, raw, lists[key])
            continue
        if key not in options:
            continue
        default = defaults[key]
        if key in text or isinstance(default, str) or default is None:
            out[key] = _typed(raw, str)
            continue
        kind = bool if isinstance(default, bool) else int if isinstance(default, int) else float
        try:
            out[key] = _typed(raw, kind)
        except (TypeError, ValueError, KeyError):
            raise UserInputError(f"--option {key}={raw!r}: must be {_KINDS[kind]}") from None
    return out


def _parse_list(key: str, raw: Any, kind: type) -> list:
    parts = list(raw) if isinstance(raw, (list, tuple)) else str(raw).split(",")
    values = []
    for part in parts:
        if isinstance(part, str) and not part.strip():
            continue
        try:
            values.append(str(part).strip() if kind is str else _typed(part, kind))
        except (TypeError, ValueError, KeyError):
            raise UserInputError(f"--option {key}={raw!r}: {part!r} is not {_KINDS[kind]}") from None
    if not values:
        raise UserInputError(f"--option {key}={raw!r}: give at least one value")
    return values


def run_method(name: str, *, out: str, budget: int | None = None, seed: int = 0, workers: int = 1,
               executor: str | None = None, ray_address: str | None = None, accel: str | None = None,
               options: dict[str, str] | None = None,
               progress: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) the search method ``name`` into the folder ``out``; its JSON-able summary."""
    from graphmill.search.workflow import check_ray_address

    module = importlib.import_module(METHODS[check_method(name)])
    check_ray_address(executor, ray_address)  # for every method: one that ignored it ran locally
    if not str(out).strip():
        raise UserInputError("--out '': give a folder (an empty path would write into the current one)")
    budget = None if budget is None else check_count(budget, "--budget", 1)  # numpy's integers too
    workers = check_count(workers, "--workers", 1)
    return module.run(str(out), budget=budget, seed=seed, workers=workers, executor=executor,
                      ray_address=ray_address, accel=accel, options=dict(options or {}), progress=progress)


__all__ = ["METHODS", "check_method", "parse_options", "run_method"]
