"""Device sets for placement (graphmill/backends/simulator/devices.py): the devices TOML, its one-line errors, and
the cost model's op and transfer times (reference: hand computation from the roofline model and the README's
formulas)."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest

from graphmill.backends.simulator import RooflineCostModel, load_accel
from graphmill.backends.simulator.devices import (DEFAULT_PLACEMENT_ACCEL, MAX_DEVICES, DeviceSet, PlacementCostModel,
                                                  device_set, device_set_from_meta, load_devices)
from graphmill.ir import UserInputError
from graphmill.ir.builder import GraphBuilder

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def _mm_graph():
    b = GraphBuilder("mm")
    x = b.input("x", "float32", [64, 256])
    y = b.MatMul(x, np.ones((256, 256), np.float32))
    b.output(b.Relu(y))
    return b.build()


def _write(tmp_path, text: str, name: str = "d.toml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


HETERO = """
[[device]]
name = "cpu"
speed = 0.25
memory_gb = 64
[[device]]
name = "gpu0"
memory_gb = 16
[[device]]
name = "gpu1"
memory_gb = 16
[link]
bytes_per_cycle = 32
latency_cycles = 100
[[links]]
between = ["cpu", "gpu1"]
bytes_per_cycle = 8
latency_cycles = 500
"""


def test_heterogeneous_file_speeds_memory_and_links(tmp_path):
    ds = load_devices(_write(tmp_path, HETERO))
    assert ds.names == ["cpu", "gpu0", "gpu1"] and ds.memory == [64e9, 16e9, 16e9]
    assert not ds.uniform_link()
    cm = PlacementCostModel(ds)
    g = _mm_graph()
    mm = g.nodes[0]
    base = RooflineCostModel(load_accel_dict()).op_time(mm)
    assert base > 0
    # a device of speed 0.25 takes 4x the base time; the others the base time (same accelerator, same clock)
    assert cm.op_time(mm, 0) == pytest.approx(4 * base)
    assert cm.op_time(mm, 1) == cm.op_time(mm, 2) == pytest.approx(base)
    # latency + bytes / bandwidth, the per-pair override in both directions
    assert cm.transfer_time(1000, 0, 1) == pytest.approx(100 + 1000 / 32)
    assert cm.transfer_time(1000, 2, 0) == pytest.approx(500 + 1000 / 8)
    assert cm.transfer_time(1000, 1, 1) == 0
    assert cm.memory(mm) == 256 * 256 * 4


def load_accel_dict():
    import dataclasses

    from graphmill.backends.simulator.config import from_dict

    return dataclasses.replace(from_dict(DEFAULT_PLACEMENT_ACCEL), chips=1)


def test_device_with_own_accelerator_converts_clock(tmp_path):
    edge = os.path.abspath(os.path.join(EXAMPLES, "accelerators", "edge.toml"))  # 500 MHz
    ds = load_devices(_write(tmp_path, f"""
[[device]]
name = "fast"
memory_gb = 1
[[device]]
name = "edge"
accel = "{edge}"
memory_gb = 1
[link]
bytes_per_cycle = 16
latency_cycles = 0
"""))
    cm = PlacementCostModel(ds)
    mm = _mm_graph().nodes[0]
    edge_cycles = RooflineCostModel(load_accel(edge)).op_time(mm)
    # reference clock 1000 MHz (the base accelerator); edge cycles at 500 MHz count twice
    assert cm.op_time(mm, 1) == pytest.approx(edge_cycles * 1000 / 500)
    assert ds.units == "cycles at 1000 MHz"


def test_identical_chips_from_accel_and_count():
    ds = device_set(devices=4)
    assert ds.count == 4 and ds.uniform_link() and ds.memory == [16e9] * 4
    assert ds.latency[0, 1] == 1000 and ds.bytes_per_unit[0, 1] == 64 and math.isinf(ds.bytes_per_unit[2, 2])
    edge = device_set(accel=os.path.join(EXAMPLES, "accelerators", "edge.toml"))
    assert edge.count == 2 and edge.latency[1, 0] == 200 and edge.bytes_per_unit[0, 1] == 16
    again = DeviceSet.from_dict(ds.to_dict())
    assert again.names == ds.names and np.array_equal(again.latency, ds.latency)


@pytest.mark.parametrize("text, message", [
    ("[[device]]\nmemory_gb = 1\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n", "device 0: missing field 'name'"),
    ("[[device]]\nname = 'a'\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n", "device 'a': missing field 'memory_gb'"),
    ("[[device]]\nname = 'a'\nmemory_gb = 1\n", "missing [link]"),
    ("[[device]]\nname = 'a'\nmemory_gb = 1\n[links]\nbytes_per_cycle = 1\nlatency_cycles = 0\n",
     "missing [link] (bytes_per_cycle and latency_cycles between devices); [links] is the optional array of "
     "per-pair overrides, written [[links]]"),  # the one-letter typo named
    ("[[device]]\nname = 'a'\nmemory_gb = 1\n[link]\nbytes_per_cycle = 1\n", "[link]: missing field 'latency_cycles'"),
    ("[[device]]\nname = 'a'\nmemory_gb = 0\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n", "memory_gb must be a number > 0"),
    # finite in GB, infinite in bytes: the report wrote null and the table crashed after the files were written
    ("[[device]]\nname = 'a'\nmemory_gb = 1e300\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n",
     "memory_gb must be a number > 0 and at most 1e+09, got 1e+300"),
    ("[[device]]\nname = 'a'\nmemory_gb = 1\nspeed = -1\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n",
     "speed must be a number >= 1e-06 and <= 1e+06, got -1"),
    # finite and > 0, yet every step time came out infinite
    ("[[device]]\nname = 'a'\nmemory_gb = 1\nspeed = 5e-324\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n",
     "speed must be a number >= 1e-06 and <= 1e+06, got 5e-324"),
    ("[[device]]\nname = 'a'\nmemory_gb = 1\n[link]\nbytes_per_cycle = 5e-324\nlatency_cycles = 0\n",
     "[link] bytes_per_cycle must be a number >= 0.001 and <= 1.09951e+12, got 5e-324"),
    ("[[device]]\nname = 'a'\nmemory_gb = 1\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 1e308\n",
     "[link] latency_cycles must be a number >= 0 and <= 1.09951e+12, got 1e+308"),
    ("[[device]]\nname = 'a'\nmemory_gb = 1\ncolour = 1\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n", "unknown key 'colour'"),
    ("device = []\n", "no [[device]] entries"),
    ("[[device]]\nname = 'a'\nmemory_gb = 1\n[[device]]\nname = 'a'\nmemory_gb = 1\n[link]\nbytes_per_cycle = 1\n"
     "latency_cycles = 0\n", "name 'a' is used twice"),
    ("[[device]]\nname = 'a'\nmemory_gb = 1\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n[[links]]\n"
     "between = ['a', 'a']\nbytes_per_cycle = 1\nlatency_cycles = 0\n", "between must name two different devices"),
    # the unknown name named, with the nearest when one is nearest ("between must name two different devices ...,
    # got ['cpu', 'gpuO']" left it to guess: an outside check); gpuO is as near gpu0 as gpu1, so no guess there
    ("[[device]]\nname = 'a'\nmemory_gb = 1\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n[[links]]\n"
     "between = ['a', 'z']\nbytes_per_cycle = 1\nlatency_cycles = 0\n", "links 0: between names 'z', no device of "
     "this file; devices: a"),
    ("[[device]]\nname = 'cpu'\nmemory_gb = 1\n[[device]]\nname = 'gpu0'\nmemory_gb = 1\n[link]\n"
     "bytes_per_cycle = 1\nlatency_cycles = 0\n[[links]]\nbetween = ['cpu', 'gpo0']\nbytes_per_cycle = 1\n"
     "latency_cycles = 0\n", "between names 'gpo0', no device of this file (did you mean 'gpu0'?); devices: cpu, gpu0"),
    ("[[device]]\nname = 'cpu'\nmemory_gb = 1\n[[device]]\nname = 'gpu0'\nmemory_gb = 1\n[[device]]\nname = 'gpu1'"
     "\nmemory_gb = 1\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n[[links]]\nbetween = ['cpu', 'gpuO']\n"
     "bytes_per_cycle = 1\nlatency_cycles = 0\n", "between names 'gpuO', no device of this file; devices: cpu, gpu0, gpu1"),
    # a misspelt required field named as the typo, not as "missing field 'bytes_per_cycle'" (an outside check)
    ("[[device]]\nname = 'a'\nmemory_gb = 1\n[link]\nbytes_per_cylce = 1\nlatency_cycles = 0\n",
     "[link]: unknown key 'bytes_per_cylce' (did you mean 'bytes_per_cycle'?); known: bytes_per_cycle, latency_cycles"),
    ("[[device]]\nname = 'a'\nmemroy_gb = 1\n[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n",
     "device 0: unknown key 'memroy_gb' (did you mean 'memory_gb'?); known: name, memory_gb, speed, accel"),
    ("[[device]\n", "not valid TOML"),
    # one link given twice (either direction): the later entry silently won (an outside check)
    ("[[device]]\nname = 'a'\nmemory_gb = 1\n[[device]]\nname = 'b'\nmemory_gb = 1\n[link]\nbytes_per_cycle = 1\n"
     "latency_cycles = 0\n[[links]]\nbetween = ['a', 'b']\nbytes_per_cycle = 1\nlatency_cycles = 0\n[[links]]\n"
     "between = ['b', 'a']\nbytes_per_cycle = 2\nlatency_cycles = 0\n",
     "links 1: the link between 'b' and 'a' is already given by links 0"),
])
def test_bad_devices_file_one_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(UserInputError) as e:
        load_devices(path)
    assert message in str(e.value) and path in str(e.value) and "\n" not in str(e.value)


def test_zero_devices_refused():
    with pytest.raises(UserInputError, match="--devices 0: must be an integer >= 1"):
        device_set(devices=0)


def test_more_devices_than_the_limit_refused(tmp_path):
    """`place --devices 100000` failed as "out of memory" blaming the model: a 10^5 x 10^5 link matrix. The
    limit is the accelerator TOML's own for system.chips (4096). Reference: the messages written out here."""
    with pytest.raises(UserInputError, match="--devices 100000: at most 4,096 devices"):
        device_set(devices=100000)
    assert device_set(devices=MAX_DEVICES).count == MAX_DEVICES == 4096
    text = "".join(f"[[device]]\nname = 'd{i}'\nmemory_gb = 1\n" for i in range(MAX_DEVICES + 1))
    path = _write(tmp_path, text + "[link]\nbytes_per_cycle = 1\nlatency_cycles = 0\n")
    with pytest.raises(UserInputError, match="4,097 \\[\\[device\\]\\] entries; at most 4,096"):
        load_devices(path)


def test_example_devices_files_load():
    for name in ("cpu_4gpu.toml", "4chips.toml"):
        ds = load_devices(os.path.join(EXAMPLES, "devices", name))
        assert ds.count >= 4


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(latency=[[0.0, math.nan], [math.nan, 0.0]]), "latency[0][1] must be a number >= 0"),
    (lambda d: d.update(speeds=[math.nan, 1.0]), "speeds[0] must be a number >= 1e-06 and <= 1e+06, got nan"),
    (lambda d: d.update(speeds=[0.0, 0.0]), "speeds[0] must be a number >= 1e-06"),
    (lambda d: d.update(latency=[[0.0]]), "latency: expected a 2 x 2 matrix"),
    (lambda d: d.update(accels=d["accels"][:1]), "accels: expected 2 accelerator configs"),
    (lambda d: d.update(bytes_per_unit=[[None, 0.0], [0.0, None]]), "bytes_per_unit[0][1] must be a number >= 0.001"),
    (lambda d: d.update(ref_mhz=0), "ref_mhz must be a number > 0"),
    (lambda d: d.update(names=["a", "a"]), "names: expected 1 to"),
    (lambda d: d.update(names=[f"d{i}" for i in range(MAX_DEVICES + 1)]), "names: expected 1 to"),
    (lambda d: d.pop("memory"), "'memory'"),
    (lambda d: d.update(ref_mhz=10 ** 400), "ref_mhz must be a number > 0 and <= 1e+09, got 1000"),  # JSON ints
    (lambda d: d["bytes_per_unit"][1].__setitem__(0, 10 ** 400), "bytes_per_unit[1][0] must be a number"),
    # an accelerator's own check names the meta, not a --accel file (it read as a complaint about the user's file)
    (lambda d: d["accels"][0].update(rows=0), "array.rows must be an integer"),
    # JSON true and "1" passed as the numbers 1 (float() took them)
    (lambda d: d.update(speeds=[True, 1.0]), "speeds[0] must be a number >= 1e-06 and <= 1e+06, got True"),
    (lambda d: d.update(memory=["1", 1.0]), "memory[0] must be a number >= 0"),
    (lambda d: d["latency"][1].__setitem__(0, "3"), "latency[1][0] must be a number >= 0"),
    # finite and > 0, yet every step time came out infinite (op time / speed, latency + anything)
    (lambda d: d.update(speeds=[5e-324, 1.0]), "speeds[0] must be a number >= 1e-06 and <= 1e+06, got 5e-324"),
    (lambda d: d["latency"][0].__setitem__(1, 1e308), "latency[0][1] must be a number >= 0 and <= 1.09951e+12"),
    (lambda d: d["bytes_per_unit"][0].__setitem__(1, 5e-324), "bytes_per_unit[0][1] must be a number >= 0.001"),
])
def test_a_device_set_read_from_a_models_meta_is_checked(edit, message):
    """A model file's meta is untrusted: a NaN latency there hung `graphmill simulate` (no event time equals NaN),
    a speed of 0 or a short latency matrix gave a traceback (an outside check). Reference: the set's own
    to_dict, edited by hand."""
    good = device_set(devices=2).to_dict()
    back = device_set_from_meta(good, "m.onnx")
    assert back.names == ["chip0", "chip1"] and back.to_dict() == good
    edit(good)
    with pytest.raises(UserInputError, match=f"m.onnx is unreadable .*{re.escape(message)}"):
        device_set_from_meta(good, "m.onnx")


@pytest.mark.parametrize("diagonal", ["x", True, 10 ** 400, None, 7.0], ids=["str", "bool", "huge-int", "null", "number"])
def test_a_device_to_itself_is_no_link_whatever_the_meta_says_there(diagonal):
    """The diagonal of the link matrices (a device to itself) is not read: a string, a bool or a 400-digit integer
    there gave a traceback (``fill_diagonal`` of nothing; an outside check). Reference: the set's own to_dict, the
    diagonal edited by hand, read back equal to the unedited one."""
    good = device_set(devices=2).to_dict()
    edited = json.loads(json.dumps(good))
    for key in ("latency", "bytes_per_unit"):
        edited[key][1][1] = diagonal
    assert device_set_from_meta(edited, "m.onnx").to_dict() == good


@pytest.mark.parametrize("cost", [5, "bogus", None, ["roofline"]])
def test_a_placed_models_recorded_cost_model_is_checked(tmp_path, cost):
    """`cost: 5` in a saved placement's meta gave a traceback in `graphmill simulate` ('int' object has no
    attribute 'op_time'); `cost: "bogus"` was reported as a bad `--cost` flag the user never gave (outside
    checks). Reference: the placement's own meta, edited by hand; the unedited model replays."""
    from graphmill import api
    from graphmill.backends.simulator.devices import cost_from_meta

    g = _mm_graph()
    api.place(g, devices=2, method="heft")
    path = str(tmp_path / "placed.onnx")
    api.save(g, path)
    assert api.replay_placement(api.load(path))["makespan"] == g.meta["placement"]["makespan"]
    g.meta["placement"]["cost"] = cost
    with pytest.raises(UserInputError) as e:
        api.replay_placement(g)
    assert str(e.value) == (f"graph 'mm': its placement names the cost model {cost!r}; a saved placement replays "
                            "with roofline or simulator or ort")
    with pytest.raises(UserInputError, match="its learned passes names the cost model"):  # learned_replay's check
        cost_from_meta({"cost": cost}, "graph 'mm': its learned passes")
    assert cost_from_meta({}, "x") == "roofline" and cost_from_meta({"cost": "simulator"}, "x") == "simulator"
