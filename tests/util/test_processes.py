"""graphmill.util.processes.peak_rss_mib: a child's own peak memory, read from outside. Reference: the sizes
of the arrays the children allocate (numpy.ones of a known byte count), under a parent that holds more."""

from __future__ import annotations

import numpy as np
import pytest

from graphmill.util.processes import peak_rss_mib


@pytest.mark.xdist_group("processes")  # a child's peak memory
def test_child_peak_is_its_own_not_the_parents():
    held = np.ones(400 * 2**20 // 8)  # the parent holds 400 MiB: ru_maxrss would report >= 400 for any child
    small, out = peak_rss_mib("print('ok')")
    big, _ = peak_rss_mib("import numpy as np; a = np.ones(200 * 2**20 // 8); print(a.size)")
    assert out.strip() == "ok"
    assert small < 100, small
    assert 200 < big < 400, big
    assert held.size  # kept alive until both children ran


def test_failing_child_raises_with_its_error():
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        peak_rss_mib("1 / 0")


PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import os, time; from graphmill.util.processes import die_with_parent; die_with_parent(os.getppid()); "
    "print('ready', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "ready"
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc")
def test_a_child_dies_with_its_killed_parent():
    """``partition --run``'s stage processes outlived a ``kill -9`` of the command, blocked on each other (an
    outside check); the search's workers had the same guard of their own. Reference: the kernel's view of the
    child (``/proc/PID``) after SIGKILL of its parent."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from graphmill.util.processes import process_running

    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert process_running(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while process_running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    gone = not process_running(child)
    if not gone:
        os.kill(child, signal.SIGKILL)
    assert gone
