"""``run_graphmill``: run ``graphmill ARGS`` as a separate process and return what ``subprocess.run`` returns.

The one way the tests run the CLI. Each command is a child forked from ``cli_server`` (one per pytest worker),
which imported graphmill's CLI once: the child has its own argv, working directory, environment, standard
streams and exit status, and skips the ~3 s of imports a fresh interpreter pays. ``fresh=True`` runs a real
``python -m graphmill.cli`` instead, for the few tests about the interpreter's start itself.

What forked commands share: the imports (of the tree under test, whichever graphmill is installed) and the
interpreter's str-hash seed (fixed when the server started; ``random`` is reseeded in every child). A command
whose environment changes a setting read at start-up (PYTHON* but PYTHONPATH, thread counts, locale) runs in
a fresh interpreter by itself. A test that compares two runs to show that a result does not depend on the
process (set or dict order of strings, say) starts at least one of them with ``fresh=True``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading

_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli_server.py")
_lock = threading.Lock()
_server: subprocess.Popen | None = None


_server_env: dict = {}


def _startup_settings(env: dict) -> dict:
    """The variables an interpreter (or a library it loads) reads once at start: a forked child cannot change
    them, so a command whose environment differs here from the server's runs in a fresh interpreter."""
    return {k: v for k, v in env.items()
            if (k.startswith("PYTHON") and k != "PYTHONPATH") or k.startswith("LC_") or k in _STARTUP_NAMES}


# thread counts, and the kernels torch and MKL pick for the CPU (search.learned.PORTABLE_ENV; numpy's too)
_STARTUP_NAMES = {"LANG", "LANGUAGE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                  "ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "NPY_DISABLE_CPU_FEATURES"}


def tree_under_test() -> str:
    """The folder holding the graphmill package these tests import (not an installed copy elsewhere)."""
    import graphmill

    return os.path.dirname(os.path.dirname(os.path.abspath(graphmill.__file__)))


def _server_process() -> subprocess.Popen:
    global _server, _server_env
    if _server is None or _server.poll() is not None:
        _server_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        _server = subprocess.Popen([sys.executable, _SERVER, tree_under_test()], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE,
                                   text=True, env=_server_env, cwd=os.path.dirname(_SERVER))
    return _server


def _discard_server(pid: int | None) -> None:
    """After an exchange that did not finish: the command (if it started) and the server go, so no late answer
    reaches the next command and no command runs on unwatched."""
    global _server
    for victim in (pid, _server.pid if _server is not None else None):
        if victim:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if _server is not None:
        _server.wait()
        _server = None


def _answer(server: subprocess.Popen, key: str, timeout: float | None) -> int | None:
    """The server's next answer's ``key``, or None when none came within ``timeout``."""
    box: dict = {}
    reader = threading.Thread(target=lambda: box.update(line=server.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        return None
    line = box.get("line")
    if not line:
        raise RuntimeError(f"cli_server ended without answering (exit status {server.poll()})")
    return json.loads(line)[key]


def run_graphmill(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None,
                  timeout: float | None = 300, address_space: int | None = None,
                  fresh: bool = False) -> subprocess.CompletedProcess:
    """``graphmill ARGS`` in ``cwd`` with ``env`` (default: this process's), stdout and stderr captured as text.

    ``address_space`` caps the command's virtual memory (RLIMIT_AS, bytes), as a ``preexec_fn`` would."""
    args = [str(a) for a in args]
    env = dict(os.environ if env is None else env)
    cwd = os.path.abspath(cwd if cwd is not None else os.getcwd())
    server_env = _server_env if _server is not None else {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if fresh or _startup_settings(env) != _startup_settings(server_env):
        def cap() -> None:
            if address_space:
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        # the tree under test, after the command's own PYTHONPATH and before an installed copy
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), tree_under_test()]))
        return subprocess.run([sys.executable, "-m", "graphmill.cli", *args], capture_output=True, text=True,
                              cwd=cwd, env=env, timeout=timeout, preexec_fn=cap)
    with _lock, tempfile.TemporaryDirectory(prefix="graphmill-cli-") as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        server = _server_process()
        pid = None
        try:
            server.stdin.write(json.dumps({"args": args, "cwd": cwd, "env": env, "stdout": out, "stderr": err,
                                           "address_space": address_space}) + "\n")
            server.stdin.flush()
            pid = _answer(server, "pid", 120)
            if pid is None:
                raise RuntimeError("cli_server did not start the command within 120 s")
            code = _answer(server, "returncode", timeout)
            if code is None:
                _discard_server(pid)
                raise subprocess.TimeoutExpired(["graphmill", *args], timeout)
        except subprocess.TimeoutExpired:
            raise
        except BaseException:
            _discard_server(pid)
            raise
        with open(out, encoding="utf-8", errors="replace") as f, open(err, encoding="utf-8", errors="replace") as g:
            return subprocess.CompletedProcess(["graphmill", *args], code, f.read(), g.read())
