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
from typing import Callable

from graphmill.util.errors import UserInputError

#: method name -> the module implementing ``run`` (the contract above)
METHODS: dict[str, str] = {
    "autohas": "graphmill.search.methods.autohas",
    "nahas": "graphmill.search.methods.nahas",
    "evanet": "graphmill.search.methods.evanet",
}


def check_method(name: str) -> str:
    """``name`` if it is a known method, else a ``UserInputError`` naming the nearest one."""
    import difflib

    if name in METHODS:
        return name
    close = difflib.get_close_matches(str(name), list(METHODS), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserInputError(f"--method {name!r}: unknown search method{hint}; known: {', '.join(METHODS)}")


def run_method(name: str, *, out: str, budget: int | None = None, seed: int = 0, workers: int = 1,
               executor: str | None = None, ray_address: str | None = None, accel: str | None = None,
               options: dict[str, str] | None = None,
               progress: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) the search method ``name`` into the folder ``out``; its JSON-able summary."""
    module = importlib.import_module(METHODS[check_method(name)])
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise UserInputError(f"--budget {budget!r}: must be a whole number >= 1")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise UserInputError(f"--workers {workers!r}: must be a whole number >= 1")
    return module.run(str(out), budget=budget, seed=seed, workers=workers, executor=executor,
                      ray_address=ray_address, accel=accel, options=dict(options or {}), progress=progress)


__all__ = ["METHODS", "check_method", "run_method"]
