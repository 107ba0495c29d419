"""``run_graphmill``: run ``graphmill ARGS`` as a separate process and return what ``subprocess.run`` returns.

The one way the tests run the CLI. Each command is a child forked from ``cli_server`` (one per pytest worker),
which imported graphmill's CLI once: the child has its own argv, working directory, environment, standard
streams and exit status, and skips the ~3 s of imports a fresh interpreter pays. ``fresh=True`` runs a real
``python -m graphmill.cli`` instead, for the few tests about the interpreter's start itself.

What forked commands share: the imports and the interpreter's str-hash seed (fixed when the server started;
``random`` is reseeded in every child). A test that compares two runs to show that a result does not depend on
the process (set or dict order of strings, say) starts at least one of them with ``fresh=True``.
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


def _server_process() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        _server = subprocess.Popen([sys.executable, _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True, env=env, cwd=os.path.dirname(_SERVER))
    return _server


def _answer(server: subprocess.Popen, key: str, timeout: float | None, pid: int | None = None) -> int:
    """The server's next answer's ``key``; past ``timeout`` the command (``pid``) is killed and reaped."""
    box: dict = {}
    reader = threading.Thread(target=lambda: box.update(line=server.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reader.join(60)
        box.setdefault("timed_out", True)
    line = box.get("line")
    if not line:
        raise RuntimeError(f"cli_server ended without answering (exit status {server.poll()})")
    value = json.loads(line)[key]
    if box.get("timed_out"):
        raise subprocess.TimeoutExpired(["graphmill"], timeout)
    return value


def run_graphmill(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None,
                  timeout: float | None = 300, address_space: int | None = None,
                  fresh: bool = False) -> subprocess.CompletedProcess:
    """``graphmill ARGS`` in ``cwd`` with ``env`` (default: this process's), stdout and stderr captured as text.

    ``address_space`` caps the command's virtual memory (RLIMIT_AS, bytes), as a ``preexec_fn`` would."""
    args = [str(a) for a in args]
    env = dict(os.environ if env is None else env)
    cwd = os.path.abspath(cwd if cwd is not None else os.getcwd())
    if fresh:
        def cap() -> None:
            if address_space:
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        return subprocess.run([sys.executable, "-m", "graphmill.cli", *args], capture_output=True, text=True,
                              cwd=cwd, env=env, timeout=timeout, preexec_fn=cap)
    global _server
    with _lock, tempfile.TemporaryDirectory(prefix="graphmill-cli-") as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        server = _server_process()
        try:
            server.stdin.write(json.dumps({"args": args, "cwd": cwd, "env": env, "stdout": out, "stderr": err,
                                           "address_space": address_space}) + "\n")
            server.stdin.flush()
            pid = _answer(server, "pid", 120)
            code = _answer(server, "returncode", timeout, pid)
        except subprocess.TimeoutExpired:
            raise
        except BaseException:  # an answer may still be on its way: the next command gets a new server
            server.kill()
            server.wait()
            _server = None
            raise
        with open(out, encoding="utf-8", errors="replace") as f, open(err, encoding="utf-8", errors="replace") as g:
            return subprocess.CompletedProcess(["graphmill", *args], code, f.read(), g.read())
