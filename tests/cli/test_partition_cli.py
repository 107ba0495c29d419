"""``graphmill partition``: the JSON contract (issue 13, item 5), an independent re-optimization of the reported
numbers, the Gantt PNG, bad input (item 6: one line, exit 2, nothing written), and a real 2-process run started
by the CLI itself.

References: a dynamic program written here over the report's own per-node times and per-cut transfer times
(the optimum must equal the reported bottleneck); single-process training (the run's comparison).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from graphmill import api
from graphmill.cli import main
from graphmill.errors import UserInputError
from graphmill.frontend import load, save, zoo
from graphmill.ir.builder import GraphBuilder

STAGE_KEYS = {"index", "nodes", "forward", "backward", "send_bytes", "memory"}
TOP_KEYS = {"stages", "bottleneck", "bubble_fraction", "step_time", "speedup_vs_one_device", "units", "node_times"}


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "r18.onnx"
    save(zoo.build("resnet18", resolution=32, width=0.5), str(path))
    return str(path)


def independent_bottleneck(report: dict, k: int) -> float:
    """The least bottleneck over every cut of the order into k stages, each holding a compute op (`compute`), a
    stage's time being its chip's work (forward + backward, + forward again when re-materialized) or its outgoing
    link's, whichever is larger."""
    order = report["order"]
    again = 2 if report["remat"] else 1
    t = [again * report["node_times"][n]["forward"] + report["node_times"][n]["backward"] for n in order]
    send = report["cut_transfer"]
    n = len(order)
    prefix = np.concatenate([[0.0], np.cumsum(t)])
    computes = np.concatenate([[0], np.cumsum(report["compute"])])
    best = {(0, 0): 0.0}
    for s in range(1, k + 1):
        for j in range(s, n + 1):
            cands = []
            for i in range(s - 1, j):
                if (s - 1, i) in best and computes[j] > computes[i]:
                    cost = max(prefix[j] - prefix[i], send[j - 1] if s < k else 0.0)
                    cands.append(max(best[(s - 1, i)], cost))
            if cands:
                best[(s, j)] = min(cands)
    return best[(k, n)]


def test_the_optimum_is_recomputable_from_the_report_with_constant_nodes(tmp_path, capsys):
    """A torch-exported encoder layer has constant nodes (shapes) in `order`; nothing marked them, and a program
    re-optimizing over the report (as the README offers) gave stages of a constant alone, 1,005 cycles against
    the true 1,024 (an outside check). Reference: the independent dynamic program above, over the report's
    numbers, with `compute` marking the ops a stage must hold."""
    torch = pytest.importorskip("torch")

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.layer(x))

    torch.manual_seed(0)
    path = tmp_path / "enc.onnx"
    torch.onnx.export(Encoder().eval(), (torch.randn(4, 6, 16),), str(path), dynamo=False)
    rep = tmp_path / "rep.json"
    assert main(["partition", str(path), "--stages", "4", "-o", str(tmp_path / "out.onnx"), "--json", str(rep)]) == 0
    capsys.readouterr()
    r = json.loads(rep.read_text())
    assert len(r["compute"]) == len(r["order"]) and not all(r["compute"])  # constant nodes are there
    assert independent_bottleneck(r, 4) == pytest.approx(r["bottleneck"], rel=1e-12)


def test_json_contract_png_and_independent_optimum(cnn, tmp_path, capsys):
    out, rep, png = tmp_path / "out.onnx", tmp_path / "rep.json", tmp_path / "g.png"
    rc = main(["partition", cnn, "--stages", "3", "--microbatches", "4", "--batch", "8", "--schedule", "1f1b",
               "-o", str(out), "--json", str(rep), "--plot", str(png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "bottleneck" in text and f"wrote {out}" in text
    r = json.loads(rep.read_text())
    assert TOP_KEYS <= set(r)
    assert all(STAGE_KEYS <= set(s) for s in r["stages"])
    assert [s["index"] for s in r["stages"]] == [0, 1, 2]
    # the stages' node lists, concatenated, are a topological order of the model
    g = load(str(out))
    concat = [name for s in r["stages"] for name in s["nodes"]]
    assert sorted(concat) == sorted(n.name for n in g.nodes) and concat == r["order"]
    where = {name: i for i, name in enumerate(concat)}
    for node in g.nodes:
        for v in node.inputs:
            if v is not None and v.producer is not None:
                assert where[v.producer.name] < where[node.name]
        assert node.meta["stage"] == next(s["index"] for s in r["stages"] if node.name in s["nodes"])
    # re-optimized independently from the report's numbers
    assert independent_bottleneck(r, 3) == pytest.approx(r["bottleneck"], rel=1e-12)
    assert set(r["node_times"]) == set(concat)
    assert 0 < r["bubble_fraction"] < 1 and r["step_time"] > r["bottleneck"]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_balanced_methods_and_devices_file(cnn, tmp_path):
    res = {}
    for method in ("optimal", "balanced-time", "balanced-params", "equal-layers"):
        rep = tmp_path / f"{method}.json"
        assert main(["partition", cnn, "--stages", "4", "--microbatches", "2", "--method", method,
                     "-o", str(tmp_path / f"{method}.onnx"), "--json", str(rep)]) == 0
        res[method] = json.loads(rep.read_text())["bottleneck"]
    assert res["optimal"] <= min(res.values())
    dev = tmp_path / "d.toml"  # the device-placement format (backends/simulator/devices.py), identical devices
    dev.write_text('[[device]]\nname = "a"\nmemory_gb = 0.2\n[[device]]\nname = "b"\nmemory_gb = 0.2\n'
                   "[link]\nbytes_per_cycle = 32\nlatency_cycles = 50\n")
    rep = tmp_path / "dev.json"
    assert main(["partition", cnn, "--stages", "2", "--microbatches", "2", "--devices-file", str(dev),
                 "-o", str(tmp_path / "dev.onnx"), "--json", str(rep)]) == 0
    r = json.loads(rep.read_text())
    assert r["memory_cap"] == 0.2e9 and max(s["memory"] for s in r["stages"]) <= 0.2e9
    assert r["link"] == {"latency": 50, "bytes_per_unit": 32}


def test_table_header_counts_in_the_singular_too(cnn, tmp_path, capsys):
    """It read "1 stages, 1 micro-batches of 1" (an outside check)."""
    capsys.readouterr()
    assert main(["partition", cnn, "--stages", "1", "--microbatches", "1", "-o", str(tmp_path / "o.onnx")]) == 0
    assert capsys.readouterr().out.startswith("1 stage, 1 micro-batch of ")
    assert main(["partition", cnn, "--stages", "2", "--microbatches", "2", "-o", str(tmp_path / "p.onnx")]) == 0
    assert capsys.readouterr().out.startswith("2 stages, 2 micro-batches of ")


EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def test_example_placement_devices_file(cnn, tmp_path):
    """examples/devices/4chips.toml (four tpu-v1-like chips, 8 GB each, 32 bytes/cycle, 500 cycles latency):
    the chips, the memory cap and the link come from the file. Reference: the same partition run with an
    accelerator TOML written here stating those chips and that link (--accel), and by hand, every boundary
    transfer = 2 x (500 + ceil(bytes / 32)) cycles (activations out, gradients back)."""
    dev = os.path.join(EXAMPLES, "devices", "4chips.toml")
    rep = tmp_path / "4.json"
    assert main(["partition", cnn, "--stages", "4", "--microbatches", "2", "--devices-file", dev,
                 "-o", str(tmp_path / "4.onnx"), "--json", str(rep)]) == 0
    r = json.loads(rep.read_text())
    assert r["accel"] == "tpu-v1-like" and r["clock_mhz"] == 700
    assert r["link"] == {"latency": 500, "bytes_per_unit": 32}
    assert r["memory_cap"] == 8e9 and max(s["memory"] for s in r["stages"]) <= 8e9
    assert any(r["cut_bytes"])
    for b, t in zip(r["cut_bytes"], r["cut_transfer"], strict=True):
        assert t == (500 + -(-b // 32) if b else 0)  # one way: activations and gradients have a link each
    base = open(os.path.join(EXAMPLES, "accelerators", "tpu-v1-like.toml")).read().split("[system]")[0]
    acc = tmp_path / "tpu4.toml"
    acc.write_text(base + "[system]\nchips = 4\nlink_bw_bytes_per_cycle = 32\nlink_latency_cycles = 500\n")
    ref = tmp_path / "ref.json"
    assert main(["partition", cnn, "--stages", "4", "--microbatches", "2", "--accel", str(acc),
                 "--memory-cap", "8GB", "-o", str(tmp_path / "ref.onnx"), "--json", str(ref)]) == 0
    a = json.loads(ref.read_text())
    assert [s["nodes"] for s in r["stages"]] == [s["nodes"] for s in a["stages"]]
    for key in ("bottleneck", "step_time", "bubble_fraction", "cut_transfer", "node_times", "link"):
        assert r[key] == a[key], key


def scalar_model(path):
    b = GraphBuilder("scalar")
    x = b.input("x", "float32", [])
    b.output(b.Relu(b.Relu(x, name="a"), name="b"), name="y")
    save(b.build(), str(path))


@pytest.mark.parametrize("case", ["too_many_stages", "zero_microbatches", "huge_microbatches", "no_batch_dim", "cap_too_small",
                                  "bad_method", "bad_devices_file", "heterogeneous_devices", "per_pair_link",
                                  "different_accel", "old_format_without_link", "stages_over_devices_file",
                                  "stages_over_accel_chips"])
def test_bad_input_one_line_exit_2_nothing_written(cnn, tmp_path, capsys, case):
    out, rep, png = tmp_path / "o.onnx", tmp_path / "r.json", tmp_path / "g.png"
    model, extra = cnn, []
    if case == "too_many_stages":
        extra = ["--stages", "5000"]
        expect = "only"
    elif case == "zero_microbatches":
        extra = ["--stages", "2", "--microbatches", "0"]
        expect = "--microbatches 0"
    elif case == "huge_microbatches":  # before: memory grew 2.6 KB per micro-batch; 10^9 of them met the OOM killer
        extra = ["--stages", "2", "--microbatches", "1000000000"]
        expect = "--microbatches 1000000000: at most 4,096"
    elif case == "no_batch_dim":
        model = str(tmp_path / "s.onnx")
        scalar_model(model)
        extra = ["--stages", "2"]
        expect = "no batch dimension"
    elif case == "cap_too_small":
        extra = ["--stages", "2", "--memory-cap", "10KB"]
        expect = "over"
    elif case == "bad_method":
        extra = ["--stages", "2", "--method", "greedy"]
        expect = "greedy"
    elif case == "bad_devices_file":  # the placement parser's message (devices.load_devices)
        d = tmp_path / "d.toml"
        d.write_text('[[device]]\nname = "a"\n')
        extra = ["--stages", "1", "--devices-file", str(d)]
        expect = f"{d}: device 'a': missing field 'memory_gb'"
    elif case == "heterogeneous_devices":  # examples/devices/cpu_4gpu.toml: a CPU at speed 0.1 and four chips
        d = os.path.join(EXAMPLES, "devices", "cpu_4gpu.toml")
        extra = ["--stages", "2", "--devices-file", d]
        expect = f"{d}: device 'cpu': speed 0.1: pipeline stages run on identical devices"
    elif case == "per_pair_link":
        d = tmp_path / "d.toml"
        d.write_text("".join(f'[[device]]\nname = "{n}"\nmemory_gb = 8\n' for n in "abc") +
                     '[link]\nbytes_per_cycle = 32\nlatency_cycles = 50\n'
                     '[[links]]\nbetween = ["b", "c"]\nbytes_per_cycle = 8\nlatency_cycles = 50\n')
        extra = ["--stages", "2", "--devices-file", str(d)]
        expect = f"{d}: the link between devices 'b' and 'c' differs"
    elif case == "different_accel":
        d = tmp_path / "d.toml"
        edge = os.path.abspath(os.path.join(EXAMPLES, "accelerators", "edge.toml"))
        d.write_text(f'[[device]]\nname = "a"\nmemory_gb = 8\n[[device]]\nname = "b"\nmemory_gb = 8\n'
                     f'accel = "{edge}"\n[link]\nbytes_per_cycle = 32\nlatency_cycles = 50\n')
        extra = ["--stages", "2", "--devices-file", str(d)]
        expect = f"{d}: device 'b': its accelerator differs from device 'a'"
    elif case == "stages_over_devices_file":  # it said to set system.chips, which a devices file does not have
        d = tmp_path / "d.toml"
        d.write_text("".join(f'[[device]]\nname = "{n}"\nmemory_gb = 8\n' for n in "ab") +
                     '[link]\nbytes_per_cycle = 32\nlatency_cycles = 50\n')
        extra = ["--stages", "3", "--devices-file", str(d)]
        expect = f"--stages 3: 3 stages need 3 devices; {d} lists 2: add [[device]] entries"
    elif case == "stages_over_accel_chips":  # examples/accelerators/edge.toml: system.chips = 2
        extra = ["--stages", "3", "--accel", os.path.join(EXAMPLES, "accelerators", "edge.toml")]
        expect = "--stages 3: 3 stages need 3 devices; the accelerator has 2: set system.chips in its TOML"
    else:  # the pipeline's former minimal format: [link] was optional; the placement format requires it
        d = tmp_path / "d.toml"
        d.write_text('[[device]]\nname = "a"\nmemory_gb = 8\n[[device]]\nname = "b"\nmemory_gb = 8\n')
        extra = ["--stages", "2", "--devices-file", str(d)]
        expect = f"{d}: missing [link]"
    rc = main(["partition", model, *extra, "-o", str(out), "--json", str(rep), "--plot", str(png)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("graphmill partition: error:") and expect in err
    assert not out.exists() and not rep.exists() and not png.exists()


@pytest.mark.xdist_group("processes")  # --run: torch.distributed (gloo) processes
def test_real_run_launched_by_the_cli(tmp_path):
    rng = np.random.default_rng(3)
    b = GraphBuilder("mlp")
    x = b.input("x", "float32", ["N", 6])
    h = b.Relu(b.Gemm(x, (rng.standard_normal((6, 8)) * 0.4).astype(np.float32), np.zeros(8, np.float32),
                      name="fc1"), name="r1")
    h = b.Tanh(b.MatMul(h, (rng.standard_normal((8, 8)) * 0.4).astype(np.float32), name="mm2"), name="t2")
    b.output(b.MatMul(h, (rng.standard_normal((8, 2)) * 0.4).astype(np.float32), name="mm3"), name="y")
    model, out, rep = tmp_path / "mlp.onnx", tmp_path / "trained.onnx", tmp_path / "r.json"
    save(b.build(), str(model))
    exe = os.path.join(os.path.dirname(sys.executable), "graphmill")
    p = subprocess.run([exe, "partition", str(model), "--stages", "2", "--microbatches", "2", "--run", "--steps",
                        "2", "--batch", "4", "--lr", "0.1", "-o", str(out), "--json", str(rep)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    steps = [line for line in p.stderr.splitlines() if line.startswith("partition --run: ")]
    assert [line.split(", loss")[0] for line in steps] == [  # one progress line per step, reference then pipeline
        "partition --run: one process (the reference), step 1/2", "partition --run: one process (the reference), step 2/2",
        "partition --run: 2 stage processes (gpipe), step 1/2", "partition --run: 2 stage processes (gpipe), step 2/2"]
    r = json.loads(rep.read_text())["run"]
    assert r["stages"] == 2 and r["max_loss_rel_diff"] <= 1e-5 and r["max_grad_rel_diff"] <= 1e-5
    assert r["grads_compared"] == 2 * 4  # fc1 weight and bias, mm2, mm3
    before, after = load(str(model)), load(str(out))
    changed = [n for n in before.initializers
               if not np.array_equal(before.initializers[n].const.numpy(), after.initializers[n].const.numpy())]
    assert len(changed) == 4  # the trained weights were written back and saved


@pytest.mark.parametrize("lr", ["-1", "nan", "inf"])
def test_run_with_a_learning_rate_that_cannot_train_is_refused(cnn, tmp_path, capsys, lr):
    """`--run --lr -1` ended in torch's 22-line traceback (exit 1); `--lr nan` wrote a model of NaN weights and
    exit 0. Reference: the message written out by hand; nothing is written."""
    out = str(tmp_path / "p.onnx")
    assert main(["partition", cnn, "--stages", "2", "--microbatches", "2", "--batch", "4", "-o", out, "--run",
                 "--steps", "1", "--lr", lr]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--lr {float(lr)}: must be a finite number > 0" in err[0], err
    assert not os.path.exists(out)


@pytest.mark.parametrize("kwargs,flag", [({"run": True, "lr": -1.0}, "--lr"), ({"run": True, "lr": 0}, "--lr"),
                                         ({"memory_cap": -1.0}, "--memory-cap"),
                                         ({"memory_cap": float("nan")}, "--memory-cap"),
                                         ({"run": True, "seed": -1}, "seed -1")])  # as every other seed (it ran)
def test_the_python_api_refuses_what_the_cli_refuses(cnn, kwargs, flag):
    """`api.partition(run=True, lr=-1)` skipped the CLI's check (torch's ValueError from a stage process), lr=0
    trained nothing and reported success; a negative memory cap reached the partitioner. Reference: the CLI's
    refusals (test above), raised before any work."""
    graph = load(cnn)
    with pytest.raises(UserInputError, match=flag):
        api.partition(graph, stages=2, microbatches=2, batch=4, steps=1, **kwargs)
    assert "pipeline" not in graph.meta


def test_run_whose_training_diverges_is_refused_and_writes_nothing(cnn, tmp_path, capsys):
    """A finite learning rate that diverges (the loss inf, then NaN) wrote a model of NaN weights, exit 0, and
    reported a relative difference of 0 between NaN losses. Now one line names the step and the rate, exit 2,
    before any stage process starts (the one-process reference diverges first). Reference: the losses the
    progress lines printed."""
    out = tmp_path / "p.onnx"
    rc = main(["partition", cnn, "--stages", "2", "--microbatches", "2", "--batch", "4", "-o", str(out), "--run",
               "--steps", "4", "--lr", "1e6"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    steps = [line for line in err if line.startswith("partition --run: one process")]
    assert steps and not any("stage processes" in line for line in err)
    assert err[-1].startswith("graphmill partition: error: training in one process diverged: loss ")
    assert f"at step {len(steps)} of 4" in err[-1] and "learning rate 1e+06; give a smaller --lr" in err[-1]
    last = steps[-1].split("loss ")[1].split(",")[0]
    assert last in ("inf", "nan", "-inf") and f"loss {last} at step" in err[-1]


def _torch_exports(folder) -> dict[str, str]:
    """Files as torch.onnx.export (TorchScript exporter) writes them: no intermediate shapes (value_info)."""
    import torch

    class Mixer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.LayerNorm(32), torch.nn.Linear(32, 32),
                                                                  torch.nn.GELU()) for _ in range(4))
            self.head = torch.nn.Linear(32, 10)

        def forward(self, x):
            for b in self.blocks:
                x = x + b(x)
            return self.head(x.mean(1))

    encoder = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2,
                                          enable_nested_tensor=False)
    files = {}
    for name, model, x, axes in (
            ("mixer_fixed", Mixer(), torch.randn(4, 8, 32), None),
            ("mixer_dynamic", Mixer(), torch.randn(4, 8, 32), {"x": {0: "N"}, "y": {0: "N"}}),
            ("encoder_dynamic", encoder, torch.randn(4, 8, 32), {"x": {0: "N"}, "y": {0: "N"}})):
        path = str(folder / f"{name}.onnx")
        torch.onnx.export(model.eval(), (x,), path, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes=axes)
        files[name] = path
    return files


@pytest.mark.slow  # three torch exports
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, used on purpose
@pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean")  # its tracer, on nn.MultiheadAttention
def test_torch_exports_partition_at_their_own_or_the_given_batch(tmp_path):
    """Found by an outside check: a fixed-batch export (batch 4) was refused unless --microbatches was 4 ('a fixed
    batch of 4; batch=2 cannot change it': the default batch was M, not the model's), and a dynamic-batch export
    was refused at any --batch ('/inp/MatMul: output shape None is not static': the batch was bound but the
    shapes, which the file does not declare, never inferred), a stock nn.TransformerEncoder included. Reference:
    the model's own batch split into M, and the same partition for the dynamic file at that batch."""
    files = _torch_exports(tmp_path)
    reports = {}
    for name, extra in (("mixer_fixed", []), ("mixer_dynamic", ["--batch", "4"]),
                        ("encoder_dynamic", ["--batch", "4"])):
        rep = str(tmp_path / f"{name}.json")
        assert main(["partition", files[name], "--stages", "2", "--microbatches", "2", *extra, "-o",
                     str(tmp_path / f"{name}.out.onnx"), "--json", rep]) == 0, name
        reports[name] = json.loads(open(rep).read())
        assert (reports[name]["batch"], reports[name]["microbatch_size"]) == (4, 2), name
    fixed, dynamic = reports["mixer_fixed"], reports["mixer_dynamic"]
    assert fixed["bottleneck"] == dynamic["bottleneck"] and fixed["step_time"] == dynamic["step_time"]
    with pytest.raises(UserInputError, match="a fixed batch of 4; batch=8 cannot change it"):
        api.partition(load(files["mixer_fixed"]), stages=2, microbatches=2, batch=8)
    with pytest.raises(UserInputError, match="does not split into 3 equal micro-batches"):
        api.partition(load(files["mixer_fixed"]), stages=2, microbatches=3)


@pytest.mark.slow  # two stage processes
@pytest.mark.xdist_group("processes")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean")
def test_run_cuts_a_torch_export_at_typed_values(tmp_path, capsys):
    """--run cuts the graph at its stage boundaries, which need types: on a torch export (no value_info) it was
    refused ('boundary 0->1 carries ... of type None') once the partition itself worked. Reference: one
    process's training, which --run compares with (loss within 1e-5 relative)."""
    files = _torch_exports(tmp_path)
    rep = tmp_path / "run.json"
    assert main(["partition", files["mixer_dynamic"], "--stages", "2", "--microbatches", "2", "--batch", "4",
                 "--run", "--steps", "1", "-o", str(tmp_path / "run.onnx"), "--json", str(rep)]) == 0
    run = json.loads(rep.read_text())["run"]
    assert run["stages"] == 2 and run["max_loss_rel_diff"] <= 1e-5


def test_symbolic_sizes_other_than_the_batch_are_named(tmp_path, capsys):
    """A model of input [N, 3, H, W] bound at --batch: the refusal said 'fix the batch size', which was bound;
    it now names H and W. Reference: the input's declared dimensions."""
    b = GraphBuilder("hw")
    x = b.input("x", "float32", ["N", 3, "H", "W"])
    w = b.const(np.ones((4, 3, 3, 3), np.float32))
    b.output(b.Relu(b.Conv(x, w)))
    path = str(tmp_path / "hw.onnx")
    save(b.build(), path)
    assert main(["partition", path, "--stages", "1", "--batch", "2", "-o", str(tmp_path / "o.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no size for H, W" in err and "batch" not in err.split("static")[1]
    assert not os.path.exists(tmp_path / "o.onnx")


def test_a_finite_blow_up_of_the_loss_is_warned_about():
    """`partition resnet18 --run --steps 2 --lr 0.01` went from a loss of 523.8 to 1.459e27 and exited 0
    without a word (a new user's report; only inf and NaN were refused). Reference: the losses given here."""
    from graphmill.cli.partition import divergence_warning

    line = divergence_warning({"losses": [523.8, 1.459e27]}, 0.01)
    assert line.startswith("warning: the loss grew from 523.8 to 1.459e+27 in 2 steps") and "--lr 0.01" in line
    assert divergence_warning({"losses": [2.3, 2.1, 40.0]}, 0.01) is None  # noisy, not diverged
    assert divergence_warning({"losses": [2.3]}, 0.01) is None and divergence_warning(None, 0.01) is None


def test_dim_binds_a_symbol_other_than_the_batch(tmp_path, capsys):
    """A model symbolic in its image size was refused with "bind the symbols: --dim NAME=SIZE where a command has
    it", and `partition` had no --dim (an outside check). Reference: the saved model's input shape, and the MACs
    of the two 3x3 convolutions at 16x16 counted by hand (3*8*9*256 + 8*8*9*256 per sample, 2 samples)."""
    b = GraphBuilder("hw")
    x = b.input("x", "float32", ["N", 3, "H", "W"])
    rng = np.random.default_rng(0)
    h = b.Relu(b.Conv(x, rng.standard_normal((8, 3, 3, 3)).astype(np.float32), pads=[1, 1, 1, 1]))
    b.output(b.Conv(h, rng.standard_normal((8, 8, 3, 3)).astype(np.float32), pads=[1, 1, 1, 1]), "y")
    model, out = str(tmp_path / "hw.onnx"), str(tmp_path / "p.onnx")
    save(b.build(), model)
    argv = ["partition", model, "--stages", "2", "--microbatches", "2", "-o", out]
    assert main(argv) == 2
    assert "no size for H, W" in capsys.readouterr().err and not os.path.exists(out)
    assert main([*argv, "--dim", "H=16", "--dim", "W=16"]) == 0
    assert load(out).inputs[0].type.shape == ("N", 3, 16, 16)  # the batch stays the model's symbol
    assert api.inspect(load(out), dims={"N": 2})["macs"] == 2 * (3 * 8 * 9 * 256 + 8 * 8 * 9 * 256)
    assert main([*argv, "--dim", "H=0", "--dim", "W=16"]) == 2
    assert "--dim H=0, --dim W=16: a size to partition at must be >= 1" in capsys.readouterr().err
    assert main([*argv, "--dim", "N=4", "--dim", "H=16", "--dim", "W=16"]) == 2  # the batch is --batch's
    assert "--dim N: the batch dimension; --batch B sizes it" in capsys.readouterr().err


def test_dim_of_inputs_leading_with_different_symbols_fixes_the_batch():
    """Inputs a:[N,8] and c:[M,8] have no one batch symbol: --dim N=4 --dim M=4 fixes their batch, as before the
    refusal of --dim for the batch symbol, which took M for the batch (a review). Reference: the partition of the
    same graph built at a fixed batch of 4."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 8)).astype(np.float32)

    def two(n, m):
        b = GraphBuilder("two")
        a, c = b.input("a", "float32", [n, 8]), b.input("c", "float32", [m, 8])
        b.output(b.Relu(b.Add(b.MatMul(a, w), b.MatMul(c, w))), "y")
        return b.build()

    got = api.partition(two("N", "M"), stages=2, microbatches=2, dims={"N": 4, "M": 4})
    assert got["bottleneck"] == api.partition(two(4, 4), stages=2, microbatches=2)["bottleneck"]
