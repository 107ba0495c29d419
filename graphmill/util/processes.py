"""Other processes, read from outside: whether one runs, and a child's peak memory.

``ru_maxrss`` of a waited-for child is not its own peak on Linux: a forked child starts with its parent's
high-water mark and keeps it across ``exec``, so under a 1.5 GB test runner every child "peaks" at 1.5 GB.
``VmHWM`` in ``/proc/PID/status`` belongs to the child's own address space (reset by ``exec``); the child is
held open at its end (it waits for its stdin to close) so that the parent can read it before the process goes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Sequence

#: appended to a child's code: tell the parent the work is done, then wait until it has read the peak
_HOLD = "\nimport sys as _s\n_s.stdout.write('\\n__peak_ready__\\n'); _s.stdout.flush(); _s.stdin.read()\n"


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


def peak_rss_mib(code: str, args: Sequence[str] = (), *, env: dict | None = None) -> tuple[float, str]:
    """Run ``python -c code args...`` and return (its own peak resident memory in MiB, its stdout).

    Raises RuntimeError (with the child's stderr tail) when the child fails."""
    p = subprocess.Popen([sys.executable, "-c", code + _HOLD, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env if env is not None else dict(os.environ))
    out_lines = []
    peak = None
    assert p.stdout is not None and p.stdin is not None
    for line in p.stdout:
        if line.rstrip("\n") == "__peak_ready__":
            peak = _vm_hwm_kib(p.pid) / 1024
            break
        out_lines.append(line)
    rest, err = p.communicate("")  # closes the child's stdin: it exits
    if p.returncode != 0 or peak is None:
        tail = (err or "").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"child failed (exit {p.returncode}): {tail[0]}")
    return peak, "".join(out_lines) + (rest or "")


def process_running(pid: int) -> bool:
    """Whether process ``pid`` runs: not when it is gone or a zombie (killed, not yet reaped); yes when it is
    another user's (``kill`` refused) or the pid is no pid at all (not ours to judge, so nothing of it is taken
    for dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux): kill's answer stands
        return True


def die_with_parent(parent_pid: int) -> None:  # pragma: no cover - runs in a child process
    """End this child process when its parent dies. After ``kill -9`` of a search its workers would finish their
    evaluations for no one (the results never reach the journal, and the resumed search repeats them beside them),
    and pipeline stages blocked on each other would wait forever (an outside check). On Linux the kernel kills the
    child when its parent dies (``PR_SET_PDEATHSIG``): under ``spawn`` and ``fork``. Under ``forkserver`` the
    parent is the server, which outlives a killed command (a review), so a watchdog thread also ends the child
    once ``parent_pid`` is gone, within half a second; it covers a parent that died before the call too (given
    its id, not ``os.getppid()``, which is then init's)."""
    import signal
    import threading
    import time

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while process_running(parent_pid):
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="graphmill-parent-watchdog", daemon=True).start()
