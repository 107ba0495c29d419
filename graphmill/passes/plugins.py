"""The user's own passes, loaded from a Python file named on the command line (MLIR's ``--load-pass-plugin``).

``graphmill optimize m.onnx -o o.onnx --load-passes my_passes.py -p my-fusions`` runs ``my_passes.py``,
which registers passes and rewrite rules with the ordinary API (``@register_pass``, ``RewritePass``),
before the schedule is parsed, so its passes can be named in ``-p``, ``-s`` files and ``--explain-match``.

Code runs only from a path the user gave (``--load-passes`` or ``graphmill.api.load_passes``): nothing in
a model or a ``.mill`` file can load or name a Python file, so an untrusted model never runs code.
Loading the same file twice is a no-op. Anything the file raises (a syntax error, an import error, a
pass name already taken) is one ``UserInputError`` naming the file and line, and the passes and analyses it
registered before it failed are registered no more.

The file must be Python source whose name ends in ``.py``: anything else (a model given by mistake,
``--load-passes m.onnx``; a ``plug.txt``) is refused in one line naming it, before any of it runs.
Running an arbitrary file as Python would at best fail with a confusing syntax error and at worst run
text the user never meant as code.
"""

from __future__ import annotations

import hashlib
import os
import sys
import types
from typing import Iterable

from graphmill.ir import UserInputError
from graphmill.passes.base import registered_analyses, registered_passes, unregister
from graphmill.util.files import TEXT_FILE_LIMIT, read_user_file

_LOADED: dict[str, list[str]] = {}  # real path -> the passes that file registered


def load_pass_file(path: str | os.PathLike) -> list[str]:
    """Run the Python file ``path`` once; returns the names of the passes it registered."""
    shown = os.fspath(path)
    real = os.path.realpath(shown)
    if real in _LOADED:
        return list(_LOADED[real])
    if os.path.isdir(real):
        raise UserInputError(f"{shown}: is a folder (--load-passes takes a Python file of passes)")
    if not os.path.isfile(real):
        raise UserInputError(f"{shown}: no such file (--load-passes takes a Python file of passes)")
    if not shown.endswith(".py"):
        raise UserInputError(f"{shown}: not a Python file (--load-passes takes Python source named *.py)")
    source = read_user_file(real, TEXT_FILE_LIMIT, "a Python file of passes")
    before, before_analyses = set(registered_passes()), set(registered_analyses())
    name = "graphmill_user_passes_" + hashlib.sha1(real.encode()).hexdigest()[:12]
    module = types.ModuleType(name)  # by hand: importlib's spec_from_file_location needs a known suffix
    module.__file__ = real
    sys.modules[name] = module  # dataclasses and pickling look their module up there
    try:
        exec(compile(source, real, "exec"), module.__dict__)  # noqa: S102 -- the user's own file, by path
    except (Exception, SystemExit) as e:
        del sys.modules[name]
        # what the file registered before it failed goes with it: the fixed file then loads in the same process
        unregister(set(registered_passes()) - before, set(registered_analyses()) - before_analyses)
        raise UserInputError(f"{shown}:{_line_in(e, real)}: cannot load passes: {_one_line(e)}") from None
    added = sorted(set(registered_passes()) - before)
    _LOADED[real] = added
    return list(added)


def plugin_files(pass_names: Iterable[str]) -> list[str]:
    """The loaded files that registered any of ``pass_names``, in loading order: what a reproducer's rerun must
    load again (a schedule run from Python after ``api.load_passes`` printed a rerun without them, which then
    failed on an unknown pass: an outside check)."""
    wanted = set(pass_names)
    return [path for path, names in _LOADED.items() if wanted & set(names)]


def _line_in(e: BaseException, filename: str) -> str:
    """The line of ``filename`` where ``e`` was raised (the deepest frame in that file), or '?'."""
    if isinstance(e, SyntaxError) and e.filename == filename and e.lineno:
        return str(e.lineno)
    line = None
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return str(line) if line is not None else "?"


def _one_line(e: BaseException) -> str:
    text = (e.msg if isinstance(e, SyntaxError) and e.msg else str(e)).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
