"""Simulated GPipe and 1F1B schedules.

References: GPipe (Huang et al. 2019, §2.2): on K balanced stages with M micro-batches the bubble is
(K - 1) / (M + K - 1) of the step, the step (M + K - 1) (F + B); PipeDream-flush / 1F1B (Narayanan et al.
2021) has the same bubble and keeps at most K - s micro-batches in flight on stage s; the rest are hand
computations. The devices file is the device-placement one (backends/simulator/devices.py).
"""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction

import numpy as np
import pytest

from graphmill.backends.simulator.config import load_accel
from graphmill.backends.simulator.devices import load_devices
from graphmill.backends.simulator.pipeline import pipeline_devices, simulate_pipeline, task_order
from graphmill.ir import UserInputError
from graphmill.ir.builder import GraphBuilder
from graphmill.passes.pipeline import partition_graph


class Link:
    units = "cycles"

    def __init__(self, lat=0.0, bw=1.0):
        self.lat, self.bw = lat, bw

    def op_time(self, node, device=0):
        return 3.0

    def transfer_time(self, nbytes, src, dst):
        return 0.0 if src == dst or nbytes <= 0 or (self.lat == 0 and self.bw == 0) else self.lat + nbytes / self.bw

    def memory(self, node):
        return 0


def chain_plan(k, m, f=3.0, b=6.0, send=0, remat=False):
    return {"stages": [{"index": s, "forward": f, "backward": b, "send_bytes": send if s < k - 1 else 0}
                       for s in range(k)], "microbatches": m, "remat": remat, "one_device_time": k * m * (f + b)}


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("k", [2, 4, 8])
@pytest.mark.parametrize("m", [1, 4, 8, 32])
def test_bubble_of_balanced_chain_is_exact(schedule, k, m):
    r = simulate_pipeline(chain_plan(k, m), Link(), schedule=schedule)
    assert r.step_time == (m + k - 1) * 9.0
    assert Fraction(r.bubble_fraction).limit_denominator(10 ** 6) == Fraction(k - 1, m + k - 1)
    assert r.bubble_fraction == pytest.approx((k - 1) / (m + k - 1), abs=1e-15)
    assert r.speedup == pytest.approx(k * m / (m + k - 1))


def test_balanced_chain_graph_through_the_partitioner():
    # 8 identical layers on 4 stages: the partitioner cuts 2 per stage and the bubble is (K-1)/(M+K-1)
    b = GraphBuilder("chain")
    h = b.input("x", "float32", ["N", 8])
    for i in range(8):
        h = b.Relu(h, name=f"r{i}")
    b.output(h, name="y")
    g = b.build()
    cost = Link(0.0, 0.0)  # free links
    plan = partition_graph(g, cost, stages=4, microbatches=8, batch=8, remat=False)
    assert [len(s["nodes"]) for s in plan["stages"]] == [2, 2, 2, 2]
    r = simulate_pipeline(plan, cost, schedule="gpipe")
    assert r.bubble_fraction == pytest.approx(3 / 11, abs=1e-15)
    assert r.step_time == 11 * (2 * 3.0 + 2 * 3.0)  # per stage: 2 Relu forwards of 3, backwards of 3


def test_transfers_and_recompute_by_hand():
    # 2 stages, M = 1: F0, send 64 B (lat 10 + 64/4), F1, B1 (+recompute F1), gradients back, B0 (+recompute F0)
    plan = chain_plan(2, 1, f=5.0, b=7.0, send=64, remat=True)
    r = simulate_pipeline(plan, Link(10.0, 4.0))
    t = 10 + 64 / 4
    assert r.step_time == 5 + t + 5 + (7 + 5) + t + (7 + 5)
    assert r.transfer_bytes == 128
    r2 = simulate_pipeline(plan, Link(10.0, 4.0), remat=False)
    assert r2.step_time == 5 + t + 5 + 7 + t + 7


def test_link_serializes_transfers():
    # M = 2 forwards of 1 cycle each, transfers of 10 cycles: the second waits for the link
    plan = chain_plan(2, 2, f=1.0, b=1.0, send=10)
    r = simulate_pipeline(plan, Link(0.0, 1.0))
    f1 = [s for s in r.spans if s.kind == "forward" and s.device == 1]
    assert [s.start for s in f1] == [11.0, 21.0]


def test_1f1b_order_and_in_flight():
    assert task_order("1f1b", 0, 4, 6) == [("F", 0), ("F", 1), ("F", 2), ("F", 3), ("B", 0), ("F", 4), ("B", 1),
                                            ("F", 5), ("B", 2), ("B", 3), ("B", 4), ("B", 5)]
    assert task_order("1f1b", 3, 4, 2) == [("F", 0), ("B", 0), ("F", 1), ("B", 1)]
    r = simulate_pipeline(chain_plan(4, 8), Link(), schedule="1f1b")
    assert r.in_flight == [4, 3, 2, 1]
    g = simulate_pipeline(chain_plan(4, 8), Link(), schedule="gpipe")
    assert g.in_flight == [8, 8, 8, 8]
    with pytest.raises(UserInputError, match="unknown pipeline schedule"):
        simulate_pipeline(chain_plan(2, 2), Link(), schedule="zb")


def test_gantt_png(tmp_path):
    r = simulate_pipeline(chain_plan(3, 4, send=32), Link(2.0, 8.0), schedule="1f1b")
    out = tmp_path / "gantt.png"
    r.gantt(str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {s.kind for s in r.spans} == {"forward", "backward", "transfer"}
    assert len([s for s in r.spans if s.kind != "transfer"]) == 3 * 4 * 2
    assert np.isfinite(r.to_dict()["speedup_vs_one_device"])


# -- the devices a pipeline runs on: the device-placement devices file, identical devices only ------------------

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def test_pipeline_devices_read_the_placement_format(tmp_path):
    """examples/devices/4chips.toml through devices.load_devices: four tpu-v1-like chips (its accelerator TOML),
    8 GB each, the file's [link]. The memory cap of a K-stage pipeline is the smallest memory of the K devices
    its stages run on (stage s on device s; hand-written memories here). A devices file whose devices carry
    their own 700 MHz accelerator on the 1 GHz default reference clock: the link, 1000 reference cycles and 64
    bytes per reference cycle, is 700 cycles and 64 / 0.7 bytes per cycle of the chips (hand conversion)."""
    d = pipeline_devices(devices_file=os.path.join(EXAMPLES, "devices", "4chips.toml"))
    tpu = load_accel(os.path.join(EXAMPLES, "accelerators", "tpu-v1-like.toml"))
    assert d.count == 4 and d.names == ["chip0", "chip1", "chip2", "chip3"] and d.memory == [8e9] * 4
    assert d.accel == dataclasses.replace(tpu, chips=4, link_bw_bytes_per_cycle=32, link_latency_cycles=500)
    assert d.memory_cap(2) == d.memory_bytes == 8e9
    p = tmp_path / "mixed.toml"
    p.write_text('[[device]]\nname = "a"\nmemory_gb = 3\n[[device]]\nname = "b"\nmemory_gb = 2\n'
                 '[[device]]\nname = "c"\nmemory_gb = 1\n[link]\nbytes_per_cycle = 16\nlatency_cycles = 10\n'
                 '[[links]]\nbetween = ["a", "c"]\nbytes_per_cycle = 16\nlatency_cycles = 10\n')  # same link: uniform
    m = pipeline_devices(devices_file=p)
    assert (m.memory_cap(1), m.memory_cap(2), m.memory_cap(3)) == (3e9, 2e9, 1e9)
    assert (m.accel.link_latency_cycles, m.accel.link_bw_bytes_per_cycle, m.accel.chips) == (10, 16, 3)
    tpu_path = os.path.abspath(os.path.join(EXAMPLES, "accelerators", "tpu-v1-like.toml"))
    q = tmp_path / "clock.toml"
    q.write_text("".join(f'[[device]]\nname = "{n}"\nmemory_gb = 8\naccel = "{tpu_path}"\n' for n in "ab") +
                 '[link]\nbytes_per_cycle = 64\nlatency_cycles = 1000\n')
    c = pipeline_devices(devices_file=q)
    assert c.accel.clock_mhz == 700 and c.accel.link_latency_cycles == pytest.approx(700)
    assert c.accel.link_bw_bytes_per_cycle == pytest.approx(64 / 0.7)


def test_pipeline_devices_errors_are_the_placement_parsers(tmp_path):
    """One parser, one set of messages: a malformed file gets exactly devices.load_devices' message."""
    for text in ('[[device]]\nname = "a"\n', '[[device]]\nname = "a"\nmemory_gb = 1\nspeed = 0\n[link]\n',
                 'devices = 2\n', '[[device]]\nname = "a"\nmemory_gb = 1\n'):
        p = tmp_path / "bad.toml"
        p.write_text(text)
        with pytest.raises(UserInputError) as placement:
            load_devices(p)
        with pytest.raises(UserInputError) as pipeline:
            pipeline_devices(devices_file=p)
        assert str(pipeline.value) == str(placement.value) and str(p) in str(pipeline.value)
    with pytest.raises(UserInputError, match="device 'cpu': speed 0.1: pipeline stages run on identical devices"):
        pipeline_devices(devices_file=os.path.join(EXAMPLES, "devices", "cpu_4gpu.toml"))
    with pytest.raises(UserInputError, match="either --accel or --devices-file"):
        pipeline_devices(accel=os.path.join(EXAMPLES, "accelerators", "edge.toml"),
                         devices_file=os.path.join(EXAMPLES, "devices", "4chips.toml"))
