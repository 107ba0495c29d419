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


# A user's SCALE-Sim 3.0.0 .cfg written by hand: every section SCALE-Sim reads, in another order and style
# than graphmill's own writer (comments, "=" separators, lower-case keys); fill in rows, cols, kb, df, mode.
SCALESIM_CFG_TEMPLATE = """; my accelerator
[run_presets]
InterfaceBandwidth = {mode}
UseRamulatorTrace = False

[general]
run_name = user_run

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[architecture_presets]
# array
arrayheight = {rows}
arraywidth = {cols}
dataflow = {df}
# on-chip buffers (KiB)
ifmapsramszkb = {kb}
filtersramszkb = {kb}
ofmapsramszkb = 1
ifmapoffset = 0
filteroffset = 10000000
ofmapoffset = 20000000
bandwidth = 8
readrequestbuffer = 32
writerequestbuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 6
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 4
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2
"""


@pytest.fixture(scope="session")
def scalesim_cfg() -> str:
    return SCALESIM_CFG_TEMPLATE
