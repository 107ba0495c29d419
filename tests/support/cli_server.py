"""A fork server for the CLI tests: imports graphmill's CLI once, then forks one child per command.

Why: starting ``python -m graphmill.cli`` costs about 3 s of imports on the 2-core CI machine (onnx's ml_dtypes
alone takes 1 s), and the suite runs a few hundred commands. A forked child is still a separate process with
the command's own argv, working directory, environment, stdin/stdout/stderr and exit status, so the tests see
what a user's shell sees; only the imports are shared. ``cli_process.run_graphmill`` is the client.

What a forked command shares with the server, and a fresh interpreter would not: the modules already imported
(a file in the command's folder cannot shadow them), the str-hash seed and the settings read at start-up
(PYTHON* variables, thread counts, locale: ``cli_process`` starts a fresh interpreter when a command's
environment changes one of them).

Protocol (one JSON object per line on stdin and stdout): a request ``{"args", "cwd", "env", "stdout",
"stderr", "address_space"}`` is answered by ``{"pid": P}`` as soon as the child runs (so the client can kill it
on a timeout) and then ``{"returncode": R}`` when it ends (negative for a signal, as ``subprocess`` says).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import sys
import threading
import traceback
import types


def _run_child(req: dict) -> None:
    """Become ``python -m graphmill.cli ARGS`` run in ``cwd`` with ``env``; never returns."""
    rc = 1
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, 0)
        for target, path in ((1, req["stdout"]), (2, req["stderr"])):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(os.devnull)  # the request pipe is the server's, not the command's
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        import tempfile

        tempfile.tempdir = None  # TMPDIR is read again, as a new process would
        # sys.path as `python -m` builds it: the working directory, then PYTHONPATH, then the interpreter's own
        extra = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:] = [req["cwd"], *extra, *_BASE_PATH]
        if req.get("address_space"):
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (req["address_space"], req["address_space"]))
        main_mod = types.ModuleType("__main__")  # what `-m graphmill.cli` leaves as __main__ (a spawned pool
        main_mod.__spec__ = _MAIN_SPEC           # worker then skips re-running it, as for any package __main__)
        main_mod.__file__ = _MAIN_SPEC.origin
        sys.modules["__main__"] = main_mod
        sys.argv = [_MAIN_SPEC.origin, *req["args"]]
        from graphmill.cli import main

        try:
            code = main(req["args"])
        except SystemExit as e:
            code = e.code
        if code is None:
            rc = 0
        elif isinstance(code, int):
            rc = code
        else:
            print(code, file=sys.stderr)
            rc = 1
    except BaseException:  # what the interpreter prints for an uncaught exception, and its status
        traceback.print_exc()
        rc = 1
    finally:
        try:
            # what the interpreter does at exit, in its order: wait for non-daemon threads, then exit handlers
            threading._shutdown()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc & 0xFF)


def serve() -> None:
    import graphmill
    import graphmill.cli  # noqa: F401  (the point: imported once, before any fork)

    if not os.path.abspath(graphmill.__file__).startswith(_ROOT + os.sep):
        raise SystemExit(f"cli_server: imported {graphmill.__file__}, not the tree under test {_ROOT}")

    if threading.active_count() != 1:  # forking a process with threads can deadlock its children
        raise SystemExit(f"cli_server: importing graphmill.cli started threads: {threading.enumerate()}")
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        out.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(req)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        out.flush()


# argv[1]: the folder holding the graphmill package the tests import (the tree under test, which an installed
# copy elsewhere must not replace); it goes first, as the folder of the code under test
_ROOT = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.getcwd()
_BASE_PATH = [_ROOT] + [p for p in sys.path[1:] if p not in os.environ.get("PYTHONPATH", "").split(os.pathsep)]
sys.path[:] = _BASE_PATH
_MAIN_SPEC = importlib.util.find_spec("graphmill.cli.__main__")

if __name__ == "__main__":
    serve()
