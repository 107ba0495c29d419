"""The one-way architecture, checked on the package's import graph and attribute accesses.

Reference: the dependency rules of docs/architecture.md ("Dependency rules"):
- ``ir`` imports nothing of graphmill but ``util``;
- ``passes`` (and ``ir``) never import ``frontend`` or ``backends``: what a pass needs from them arrives
  through an interface carried by the ``PassContext`` (graphmill/providers.py wires it in);
- ``frontend`` imports only ``ir`` and ``util``; ``backends`` take of the frontend only its ONNX codec
  (``onnx_export``, ``onnx_shape_inference``);
- the layers (``util``, ``ir``, ``frontend``, ``passes``, ``backends``, ``search``) never import the top of the
  package (``api``, ``cli``, ``optimization``, ``providers``, nor ``graphmill`` itself), and the layers below
  ``search`` never import ``search``;
- no module of graphmill but ``graphmill.testing``'s own imports ``graphmill.testing`` (``api`` may use everything
  else, so a module it imports may not either); ``cli`` modules call ``graphmill.api`` only (plus
  ``graphmill.errors`` and ``graphmill.util``), and nothing outside ``cli`` imports ``cli``;
- nothing imports or reads another module's private names (``_x``), nor a private module from outside
  its package; nor names one in a string (``getattr(m, "_x")``, ``monkeypatch.setattr(m, "_x", ...)``).

Every module under graphmill/ is parsed with ``ast`` (imports inside functions count too); each rule
lists every offending file and line, so a failure says exactly what to fix. Not seen: a module named at run time
(``importlib.import_module(name)``: five places, four importing inside their own package, and the search's
``--evaluator MODULE:FUNCTION``, the user's own module). Nor is ``obj._x`` caught where the reading module defines
a ``_x`` of its own (``other._x`` of an instance of its own class is how Python code compares or copies objects):
without types, a read of another class's ``_x`` under the same name passes.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass

import pytest

import graphmill

ROOT = os.path.dirname(os.path.abspath(graphmill.__file__))


@dataclass
class Module:
    name: str  # dotted, e.g. graphmill.passes.base
    path: str  # relative to the repository, for messages
    tree: ast.Module
    is_package: bool


def _modules() -> list[Module]:
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, os.path.dirname(ROOT))
            parts = rel[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            with open(full, encoding="utf-8") as f:
                tree = ast.parse(f.read(), filename=rel)
            out.append(Module(".".join(parts), rel, tree, is_package))
    return out


MODULES = _modules()
MODULE_NAMES = {m.name for m in MODULES}


def _resolve(mod: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.name.split(".")
    if not mod.is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@dataclass
class Import:
    target: str  # the module imported (for ``from pkg import name``: pkg.name when that is a module)
    names: list[str]  # names imported from ``target`` by a from-import ([] for ``import x``)
    line: int


def _imports(mod: Module) -> list[Import]:
    out = []
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import):
            out.extend(Import(a.name, [], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(mod, node)
            names = [a.name for a in node.names]
            out.append(Import(base, names, node.lineno))
            for n in names:  # ``from graphmill.frontend import zoo`` imports the module graphmill.frontend.zoo
                if f"{base}.{n}" in MODULE_NAMES:
                    out.append(Import(f"{base}.{n}", [], node.lineno))
    return out


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _violations(rule) -> list[str]:
    found = []
    for mod in MODULES:
        for imp in _imports(mod):
            why = rule(mod, imp)
            if why:
                found.append(f"{mod.path}:{imp.line}: {why}")
    return found


def _show(found: list[str]) -> str:
    return "\n  " + "\n  ".join(found)


def test_passes_and_ir_never_import_frontend_or_backends():
    def rule(mod, imp):
        if (_under(mod.name, "graphmill.passes") or _under(mod.name, "graphmill.ir")) and (
                _under(imp.target, "graphmill.frontend") or _under(imp.target, "graphmill.backends")):
            return f"{mod.name} imports {imp.target} (give the pass an interface through the PassContext)"
        return None

    found = _violations(rule)
    assert not found, _show(found)


def test_ir_imports_only_util():
    def rule(mod, imp):
        if _under(mod.name, "graphmill.ir") and _under(imp.target, "graphmill") and not (
                _under(imp.target, "graphmill.ir") or _under(imp.target, "graphmill.util")
                or (imp.target == "graphmill" and set(imp.names) <= {"util", "ir"})):
            return f"{mod.name} imports {imp.target}: ir may import graphmill.util only"
        return None

    found = _violations(rule)
    assert not found, _show(found)


def test_util_imports_nothing_else_of_graphmill():
    def rule(mod, imp):
        if _under(mod.name, "graphmill.util") and _under(imp.target, "graphmill") and not (
                _under(imp.target, "graphmill.util") or (imp.target == "graphmill" and set(imp.names) <= {"util"})):
            return f"{mod.name} imports {imp.target}: util imports nothing else of graphmill"
        return None

    found = _violations(rule)
    assert not found, _show(found)


BACKENDS_MAY_IMPORT_OF_FRONTEND = ("graphmill.frontend.onnx_export", "graphmill.frontend.onnx_shape_inference")


def test_frontend_imports_only_ir_and_util():
    def rule(mod, imp):
        if _under(mod.name, "graphmill.frontend") and _under(imp.target, "graphmill") and not (
                any(_under(imp.target, ok) for ok in ("graphmill.frontend", "graphmill.ir", "graphmill.util"))
                or (imp.target == "graphmill" and set(imp.names) <= {"util", "ir", "errors", "frontend"})):
            return f"{mod.name} imports {imp.target}: the frontend builds graphs from ir and util only"
        return None

    found = _violations(rule)
    assert not found, _show(found)


def test_backends_import_of_the_frontend_only_its_onnx_codec():
    """Running a graph under ONNX Runtime means exporting it: backends may import the ONNX export and onnx's
    shape inference, nothing else of the frontend (not its importers, nor the zoo)."""
    def rule(mod, imp):
        if _under(mod.name, "graphmill.backends") and _under(imp.target, "graphmill.frontend") and not any(
                _under(imp.target, ok) for ok in BACKENDS_MAY_IMPORT_OF_FRONTEND):
            return f"{mod.name} imports {imp.target}: backends take only the frontend's ONNX codec"
        if _under(mod.name, "graphmill.backends") and imp.target == "graphmill.frontend" and not all(
                f"graphmill.frontend.{n}" in BACKENDS_MAY_IMPORT_OF_FRONTEND for n in imp.names):
            return f"{mod.name} imports {imp.names} from graphmill.frontend: backends take only its ONNX codec"
        return None

    found = _violations(rule)
    assert not found, _show(found)


TOP = ("graphmill.api", "graphmill.cli", "graphmill.optimization", "graphmill.providers")
LAYERS = ("graphmill.util", "graphmill.ir", "graphmill.frontend", "graphmill.passes", "graphmill.backends",
          "graphmill.search")


def test_layers_never_import_the_top_of_the_package():
    """api, cli, optimization and providers sit on top: the layers below never import them (nor
    ``graphmill`` itself, whose __init__ imports them)."""
    def rule(mod, imp):
        if not any(_under(mod.name, layer) for layer in LAYERS):
            return None
        if any(_under(imp.target, top) for top in TOP):
            return f"{mod.name} imports {imp.target}: the layers below api never import the top"
        if imp.target == "graphmill" and not imp.names:  # a bare ``import graphmill`` runs the __init__ too
            return f"{mod.name} imports graphmill itself (the package's __init__ sits on top)"
        if imp.target == "graphmill" and not set(imp.names) <= {"util", "ir", "errors"} | {
                n for n in imp.names if f"graphmill.{n}" in MODULE_NAMES and any(
                    _under(f"graphmill.{n}", layer) for layer in LAYERS)}:
            return f"{mod.name} imports {imp.names} from graphmill (the package's __init__ sits on top)"
        return None

    found = _violations(rule)
    assert not found, _show(found)


BELOW_SEARCH = ("graphmill.util", "graphmill.ir", "graphmill.frontend", "graphmill.passes", "graphmill.backends")


def test_layers_below_search_never_import_it():
    """search sits on the layers (it trains the learned passes' policy, which the passes only load): util, ir,
    frontend, passes and backends never import it."""
    def rule(mod, imp):
        if not any(_under(mod.name, layer) for layer in BELOW_SEARCH):
            return None
        if _under(imp.target, "graphmill.search") or (imp.target == "graphmill" and "search" in imp.names):
            return f"{mod.name} imports {imp.target}{' ' + str(imp.names) if imp.names else ''}: search sits above it"
        return None

    found = _violations(rule)
    assert not found, _show(found)


def test_nothing_but_testing_imports_testing():
    """graphmill.testing is for tests and benchmarks: api may use everything else, so no module it imports,
    however indirectly, may import testing either (checked as: no module of graphmill outside testing does)."""
    def rule(mod, imp):
        if _under(mod.name, "graphmill.testing"):
            return None
        if _under(imp.target, "graphmill.testing") or (imp.target == "graphmill" and "testing" in imp.names):
            return f"{mod.name} imports {imp.target}: graphmill.testing is for tests only"
        return None

    found = _violations(rule)
    assert not found, _show(found)


CLI_MAY_IMPORT = ("graphmill.api", "graphmill.errors", "graphmill.util", "graphmill.cli")


def test_nothing_outside_cli_imports_cli():
    """cli sits above api: api, optimization and providers (and the layers, checked above) never import it."""
    def rule(mod, imp):
        if _under(mod.name, "graphmill.cli"):
            return None
        if _under(imp.target, "graphmill.cli") or (imp.target == "graphmill" and "cli" in imp.names):
            return f"{mod.name} imports {imp.target}: the command line sits above everything else"
        return None

    found = _violations(rule)
    assert not found, _show(found)


def test_cli_calls_api_only():
    def rule(mod, imp):
        if not _under(mod.name, "graphmill.cli") or not _under(imp.target, "graphmill"):
            return None
        if any(_under(imp.target, ok) for ok in CLI_MAY_IMPORT):
            return None
        if imp.target == "graphmill" and set(imp.names) <= {"api", "errors", "util", "cli", "__version__"}:
            return None
        return f"{mod.name} imports {imp.target}: cli modules call graphmill.api only (add the function there)"

    assert any(_under(m.name, "graphmill.cli") for m in MODULES), "graphmill/cli/ is missing"
    found = _violations(rule)
    assert not found, _show(found)


def test_no_private_name_is_imported_across_modules():
    def rule(mod, imp):
        if not _under(imp.target, "graphmill"):
            return None
        private_names = [n for n in imp.names if _private(n)]
        if private_names:
            return f"imports private name(s) {', '.join(private_names)} from {imp.target}"
        parts = imp.target.split(".")
        for i, part in enumerate(parts):
            if _private(part):
                owner = ".".join(parts[:i])  # the package the private module belongs to
                if not _under(mod.name, owner):
                    return f"imports the private module {imp.target} from outside {owner}"
        return None

    found = _violations(rule)
    assert not found, _show(found)


def _defined_private_names(mod: Module) -> set[str]:
    """Private names a module defines: functions, classes, module or class variables, ``self._x``
    attributes, ``__slots__`` entries."""
    names: set[str] = set()
    for node in ast.walk(mod.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del))
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            names.add(node.attr)  # ``self._x = ...`` defines; ``graph._nodes = ...`` elsewhere does not
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
            for elt in getattr(node.value, "elts", []):
                if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                    names.add(elt.value)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if _private(n)}


DEFINED = {m.name: _defined_private_names(m) for m in MODULES}
ANYWHERE = set().union(*DEFINED.values())


#: functions and methods that take an attribute's name as a string: getattr(obj, name), monkeypatch.setattr(obj,
#: name, value), mock.patch.object(obj, name), ...; the name is their second argument
BY_NAME = {"getattr", "setattr", "hasattr", "delattr", "object", "setitem", "delitem", "patch"}


def _private_names_in_strings(tree: ast.AST, own: set[str]):
    """(line, name) of each private name another graphmill module defines that a call passes as a string
    (``getattr(m, "_x")``, ``monkeypatch.setattr(m, "_x", f)``), or that ``monkeypatch.setattr("pkg.mod._x", f)``
    names as a dotted target."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if called not in BY_NAME:
            continue
        for arg in node.args[:2]:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                for part in arg.value.split("."):
                    if _private(part) and part in ANYWHERE and part not in own:
                        yield node.lineno, part


def test_no_private_attribute_of_another_module_is_read_or_written():
    """``obj._x`` where ``_x`` is a private name another graphmill module defines and this one does not
    (e.g. a frontend writing ``graph._nodes``, a pass reading ``fold_constants._evaluate``), also when the name
    is given as a string (``getattr(graph, "_nodes")``)."""
    found = []
    for mod in MODULES:
        own = DEFINED[mod.name]
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr in ANYWHERE \
                    and node.attr not in own:
                owners = sorted(m for m, names in DEFINED.items() if node.attr in names)
                found.append(f"{mod.path}:{node.lineno}: .{node.attr} (defined in {', '.join(owners[:3])})")
        found += [f"{mod.path}:{line}: {name!r} named in a string" for line, name in _private_names_in_strings(
            mod.tree, own)]
    assert not found, _show(found)


@pytest.mark.parametrize("rule_source, offending", [
    ("graphmill.passes.x", "from graphmill.frontend.onnx_export import to_proto"),
    ("graphmill.passes.x", "from graphmill.search.learned import train"),
    ("graphmill.backends.x", "import graphmill.search.space"),
    ("graphmill.ir.x", "from graphmill import search"),
    ("graphmill.ir.x", "import graphmill"),
    ("graphmill.backends.x", "from graphmill import api"),
    ("graphmill.ir.x", "from graphmill.passes import base"),
    ("graphmill.cli.x", "from graphmill.optimization import optimize"),
    ("graphmill.cli.x", "from graphmill.testing import onnx_corpus"),
    ("graphmill.passes.x", "from graphmill.passes.cleanup.fold_constants import _evaluate"),
    ("graphmill.passes.x", "from graphmill.frontend.zoo._common import round_filters"),
    ("graphmill.frontend.x", "from graphmill.backends.onnxruntime import OrtSession"),
    ("graphmill.frontend.x", "from graphmill.passes import run_passes"),
    ("graphmill.backends.x", "from graphmill.frontend.zoo import build"),
    ("graphmill.backends.x", "from graphmill.frontend import torch_import"),
    ("graphmill.optimization", "from graphmill.testing import onnx_corpus"),
    ("graphmill.passes.x", "import graphmill.testing.onnx_corpus"),
    ("graphmill.api", "from graphmill.cli import common"),
    ("graphmill.providers", "from graphmill import cli"),
])
def test_the_rules_catch_what_they_name(rule_source, offending):
    """Each rule fires on a one-line module that breaks it (the checks themselves can fail)."""
    global MODULES, MODULE_NAMES
    saved = MODULES, MODULE_NAMES
    fake = Module(rule_source, f"<{rule_source}>", ast.parse(offending), False)
    MODULES, MODULE_NAMES = [fake], {fake.name}
    try:
        failures = 0
        for check in (test_passes_and_ir_never_import_frontend_or_backends, test_ir_imports_only_util,
                      test_nothing_but_testing_imports_testing, test_no_private_name_is_imported_across_modules,
                      test_nothing_outside_cli_imports_cli,
                      test_frontend_imports_only_ir_and_util, test_backends_import_of_the_frontend_only_its_onnx_codec,
                      test_layers_below_search_never_import_it, test_layers_never_import_the_top_of_the_package):
            try:
                check()
            except AssertionError:
                failures += 1
        if rule_source.startswith("graphmill.cli"):
            with pytest.raises(AssertionError):
                test_cli_calls_api_only()
            failures += 1
        assert failures >= 1
    finally:
        MODULES, MODULE_NAMES = saved


@pytest.mark.parametrize("offending", [
    "getattr(graph, '_nodes')",
    "setattr(fold_constants, '_evaluate', None)",
    "monkeypatch.setattr(fold_constants, '_evaluate', never)",
    "monkeypatch.setattr('graphmill.passes.cleanup.fold_constants._evaluate', never)",
    "mock.patch('graphmill.passes.cleanup.fold_constants._evaluate')",
    "monkeypatch.setitem(fold_constants.__dict__, '_evaluate', never)",
])
def test_a_private_name_in_a_string_is_caught(offending):
    """The string form of reaching into a private attribute (how a test patched fold_constants._evaluate unseen)."""
    assert list(_private_names_in_strings(ast.parse(offending), set()))


def test_tests_use_public_names_only():
    """Tests import and touch graphmill's public names only (a test that needs a private helper is testing the
    wrong thing, or the helper should be public): from-imports, ``import graphmill.x._y``, ``obj._x`` and a
    private name given as a string (``monkeypatch.setattr(mod, "_x", ...)``)."""
    tests_root = os.path.join(os.path.dirname(ROOT), "tests")
    found = []
    for dirpath, dirnames, filenames in os.walk(tests_root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, os.path.dirname(ROOT))
            with open(full, encoding="utf-8") as f:
                tree = ast.parse(f.read(), filename=rel)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("graphmill"):
                    bad = [a.name for a in node.names if _private(a.name)]
                    bad += [p for p in node.module.split(".") if _private(p)]
                    if bad:
                        found.append(f"{rel}:{node.lineno}: from {node.module} import ... ({', '.join(bad)})")
                elif isinstance(node, ast.Import):
                    found += [f"{rel}:{node.lineno}: import {a.name}" for a in node.names
                              if a.name.startswith("graphmill") and any(_private(p) for p in a.name.split("."))]
                elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr in ANYWHERE:
                    found.append(f"{rel}:{node.lineno}: .{node.attr}")
            found += [f"{rel}:{line}: {name!r} named in a string" for line, name in _private_names_in_strings(
                tree, set())]
    assert not found, _show(found)
