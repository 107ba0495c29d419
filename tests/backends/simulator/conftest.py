"""Shared helpers of the simulator tests. References: SCALE-Sim 3.0.0 (run in the tests), analytic values."""

from __future__ import annotations

import pytest

from graphmill.backends.simulator.config import AccelConfig


def accel(rows, cols, df, kb=(4, 4, 2), bw=(4, 4, 4), **kw) -> AccelConfig:
    return AccelConfig(rows=rows, cols=cols, dataflow=df, ifmap_kb=kb[0], filter_kb=kb[1], ofmap_kb=kb[2],
                       ifmap_bw_words=bw[0], filter_bw_words=bw[1], ofmap_bw_words=bw[2], **kw)


@pytest.fixture(scope="session")
def scalesim():
    return pytest.importorskip("scalesim.single_layer_sim", reason="SCALE-Sim 3.0.0 (test extra) not installed")


@pytest.fixture(scope="session")
def make_accel():
    return accel
