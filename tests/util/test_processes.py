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
