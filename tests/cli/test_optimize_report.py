"""`graphmill optimize`'s report: its "before" figures are `graphmill inspect`'s on the same file, a
reproducer's rerun command reproduces the failure with every option that decided it, and the `ort`
schedule says nothing about rules that could not have matched.

References: `graphmill inspect` (whose MACs and parameters are checked against published tables in
tests/cli/test_inspect.py) for the figures; the failing run itself for the reproducer.
"""

from __future__ import annotations

import json
import shlex
import subprocess

import numpy as np
import pytest
from tests.support.cli_process import run_graphmill


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_graphmill(*args, timeout=300)


@pytest.fixture(scope="module")
def torchscript_cnn(tmp_path_factory) -> str:
    """A small CNN through the TorchScript exporter (dynamo=False): no intermediate shapes in the file."""
    torch = pytest.importorskip("torch")

    class CNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(16, 10)

        def forward(self, x):
            y = torch.relu(self.c1(x))
            y = torch.relu(self.c2(y))
            return self.fc(y.mean(dim=(2, 3)))

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ts") / "cnn.onnx"
    torch.onnx.export(CNN().eval(), (torch.randn(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return str(path)


def test_before_figures_are_inspects(torchscript_cnn, tmp_path):
    # hand count: conv1 8*32*32*3*9 = 221,184; conv2 16*16*16*8*9 = 294,912; fc 16*10 = 160 -> 516,256 per sample
    for dims, n in (([], 1), (["--dim", "N=4"], 4)):
        inspected = json.loads(run_cli("inspect", torchscript_cnn, "--json", *dims).stdout)
        r = run_cli("optimize", torchscript_cnn, "-o", str(tmp_path / "o.onnx"), "--json", "-", *dims)
        assert r.returncode == 0, r.stderr
        before = json.loads(r.stdout)["before"]
        for key in ("nodes", "params", "macs", "flops", "ops", "symbols"):
            assert before[key] == inspected[key], (key, before[key], inspected[key])
        assert before["macs"] == 516_256 * n


def test_dim_naming_no_symbol_of_the_model_is_refused(torchscript_cnn, tmp_path):
    for command in (["inspect", torchscript_cnn], ["optimize", torchscript_cnn, "-o", str(tmp_path / "o.onnx")]):
        r = run_cli(*command, "--dim", "n=8")
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "no symbolic dimension named 'n'; its symbols: N" in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_size_of_zero_is_refused_where_the_outputs_are_compared(torchscript_cnn, tmp_path):
    """`optimize --dim N=0` compared empty tensors and reported "max |diff| 0, within tolerance" (a new user's
    check): nothing had been checked."""
    r = run_cli("optimize", torchscript_cnn, "-o", str(tmp_path / "o.onnx"), "--dim", "N=0")
    assert r.returncode == 2 and "--dim N=0: the outputs are compared at these sizes" in r.stderr, r.stderr
    assert "(or --no-compare)" in r.stderr
    # with --check-numerics, --no-compare would not help: the message does not offer it (a review)
    r = run_cli("optimize", torchscript_cnn, "-o", str(tmp_path / "o.onnx"), "--dim", "N=0", "--no-compare",
                "--check-numerics")
    assert r.returncode == 2 and "give a size >= 1" in r.stderr and "--no-compare" not in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


BREAKER = '''
from graphmill.passes import Pass, PassResult, register_pass


@register_pass
class BreakRelu(Pass):
    """Turns every Relu into a Sigmoid: a pass that breaks the numbers."""
    name = "break-relu"

    def run(self, graph, ctx):
        hits = [n for n in graph.nodes if n.op_type == "Relu"]
        for n in hits:
            n.op_type = "Sigmoid"
        return PassResult(bool(hits))
'''


def test_reproducer_rerun_carries_every_option_and_reproduces(torchscript_cnn, tmp_path):
    plugin = tmp_path / "breaker.py"
    plugin.write_text(BREAKER)
    repro = tmp_path / "repro"
    options = ["--rtol", "0.001", "--atol", "1e-06", "--seed", "7", "--allow", "approximate", "--dim", "N=2"]
    r = run_cli("optimize", torchscript_cnn, "-o", str(tmp_path / "o.onnx"), "--load-passes", str(plugin),
                "-p", "break-relu", "--check-numerics", "--reproducer-dir", str(repro), *options)
    assert r.returncode == 2 and "after pass 'break-relu'" in r.stderr, r.stderr
    rerun = r.stderr.split("(rerun: ", 1)[1].rstrip().removesuffix(")")
    argv = shlex.split(rerun)
    assert argv[:2] == ["graphmill", "optimize"] and "/tmp/out.onnx" not in rerun
    assert argv[argv.index("-o") + 1] == str(repro / "after.onnx")
    for flag, value in zip(options[::2], options[1::2]):
        assert value in [argv[i + 1] for i, a in enumerate(argv) if a == flag], (flag, rerun)
    assert argv[argv.index("--load-passes") + 1] == str(plugin)
    again = run_cli(*argv[1:])
    assert again.returncode == 2 and "after pass 'break-relu'" in again.stderr
    assert "seed 7" in again.stderr and "atol=1e-06 + rtol=0.001" in again.stderr, again.stderr


DRIFT = '''
from graphmill.ir import Tensor
from graphmill.passes import Pass, PassResult, register_pass


@register_pass
class Drift(Pass):
    """Adds 0.006 to the classifier's bias each run: one run is within --atol 0.01 of the original, two are not."""
    name = "drift"

    def run(self, graph, ctx):
        b = [n for n in graph.nodes if n.op_type == "Gemm"][-1].inputs[2]
        b.const = Tensor(b.const.numpy() + b.const.numpy().dtype.type(0.006))
        return PassResult(True)
'''


def test_a_failure_built_up_over_several_passes_reruns_with_the_whole_run(torchscript_cnn, tmp_path):
    """--check-numerics compares each pass with the original: drift that builds up over two passes failed at the
    second, and the one-pass rerun (``before.onnx`` against itself) reported nothing (an outside check). The
    reproducer also gives the whole run on the input model. Reference: the first run's failure, repeated by that
    command (the classifier's bias moved by 0.006 per pass against --atol 0.01)."""
    plugin = tmp_path / "drift.py"
    plugin.write_text(DRIFT)
    repro = tmp_path / "repro"
    r = run_cli("optimize", torchscript_cnn, "-o", str(tmp_path / "o.onnx"), "--load-passes", str(plugin),
                "-p", "repeat(3){drift}", "--check-numerics", "--rtol", "0", "--atol", "0.01",
                "--reproducer-dir", str(repro))
    assert r.returncode == 2 and "after pass 'drift' (#2" in r.stderr, r.stderr
    whole = r.stderr.split("the whole run, for a failure built up over several passes: ", 1)[1].rstrip()
    argv = shlex.split(whole.removesuffix(")"))
    assert argv[2] == torchscript_cnn and argv[argv.index("-s") + 1] == str(repro / "schedule.mill")
    assert f"(a failure built up over several passes): {shlex.join(argv)}" in (repro / "README.txt").read_text()
    again = run_cli(*argv[1:])
    assert again.returncode == 2 and "after pass 'drift' (#2" in again.stderr, again.stderr


BOOM = DRIFT + '''

@register_pass
class Boom(Pass):
    name = "boom"

    def run(self, graph, ctx):
        raise ValueError("boom")
'''


def test_the_rerun_commands_repeat_the_runs_own_checks_and_devices(torchscript_cnn, tmp_path):
    """The whole run's rerun added --check-numerics the run did not have, so it failed at an earlier pass that
    moved the numbers, with another error; and both reruns dropped --devices, so a schedule placing ops was
    refused for want of devices (an outside check). Reference: the first run's failure (the pass 'boom'), which
    each printed command repeats."""
    plugin = tmp_path / "boom.py"
    plugin.write_text(BOOM)
    for schedule, more in (("drift,repeat(2){drift},boom", []), ("place,boom", ["--devices", "2", "--dim", "N=2"])):
        repro = tmp_path / f"repro{len(more)}"
        r = run_cli("optimize", torchscript_cnn, "-o", str(tmp_path / "o.onnx"), "--load-passes", str(plugin),
                    "-p", schedule, "--rtol", "0", "--atol", "0.01", "--reproducer-dir", str(repro), *more)
        assert r.returncode == 2 and "pass 'boom'" in r.stderr and "ValueError: boom" in r.stderr, r.stderr
        readme = (repro / "README.txt").read_text()
        one = next(x for x in readme.splitlines() if x.startswith("rerun: ")).split(": ", 1)[1]
        whole = readme.split("(a failure built up over several passes): ", 1)[1].splitlines()[0]
        for command in (one, whole):
            argv = shlex.split(command)
            assert "--check-numerics" not in argv
            again = run_cli(*argv[1:])
            assert again.returncode == 2 and "pass 'boom'" in again.stderr and "ValueError: boom" in again.stderr, \
                (command, again.stderr)


NAN_BIAS = DRIFT.replace("class Drift", "class NanBias").replace('name = "drift"', 'name = "nan-bias"').replace(
    "b.const.numpy() + b.const.numpy().dtype.type(0.006)", "np.full_like(b.const.numpy(), np.nan)").replace(
    "from graphmill.ir import Tensor", "import numpy as np\nfrom graphmill.ir import Tensor")


def test_an_output_outside_tolerance_says_why_when_the_difference_is_not_a_number(torchscript_cnn, tmp_path):
    """The final comparison's line read "max |diff| inf ... OUTSIDE" where an output's shape had changed (a fuzzer:
    a fused GELU of lower rank), which reads as an overflow; the output's own note (its shapes, NaN positions) now
    follows. Reference: the comparison's note for a bias made NaN by a plugin pass."""
    plugin = tmp_path / "nan_bias.py"
    plugin.write_text(NAN_BIAS)
    r = run_cli("optimize", torchscript_cnn, "-o", str(tmp_path / "o.onnx"), "--load-passes", str(plugin),
                "-p", "nan-bias")
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    at = next(i for i, x in enumerate(lines) if x.strip().startswith("outputs   max |diff|"))
    assert "OUTSIDE" in lines[at] and lines[at + 1].strip().endswith(": NaN positions differ"), r.stdout
    # the largest difference is over the values both have: "max |diff| 0 ... OUTSIDE" read as a contradiction
    assert "over the values compared under ONNX Runtime" in lines[at], lines[at]

def test_a_relative_reproducer_dir_reruns_from_any_folder(torchscript_cnn, tmp_path):
    """`--reproducer-dir rd` printed `graphmill optimize rd/before.onnx -s rd/repro.mill ... -o rd/after.onnx`:
    from any other folder (README.txt's own included) the rerun failed on a missing folder (an outside check).
    Reference: the rerun run from another folder fails as the first run did."""
    plugin = tmp_path / "breaker.py"
    plugin.write_text(BREAKER)
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    r = run_graphmill("optimize", torchscript_cnn, "-o", "o.onnx", "--load-passes", str(plugin), "-p", "break-relu",
                      "--check-numerics", "--reproducer-dir", "rd", cwd=tmp_path / "work", timeout=300)
    assert r.returncode == 2 and "reproducer in rd (rerun: " in r.stderr, r.stderr
    argv = shlex.split(r.stderr.split("(rerun: ", 1)[1].rstrip().removesuffix(")"))
    assert argv[argv.index("-o") + 1] == str(tmp_path / "work" / "rd" / "after.onnx")
    readme = (tmp_path / "work" / "rd" / "README.txt").read_text()
    assert f"rerun: {shlex.join(argv)}" in readme
    again = run_graphmill(*argv[1:], cwd=tmp_path / "elsewhere", timeout=300)
    assert again.returncode == 2 and "after pass 'break-relu'" in again.stderr, again.stderr


def test_ort_schedule_says_nothing_of_rules_that_could_not_match(torchscript_cnn, tmp_path):
    """A CNN has no LayerNormalization: the SkipLayerNormalization rules (off in the ort schedule) could not
    have matched, so they are not mentioned."""
    r = run_cli("optimize", torchscript_cnn, "-o", str(tmp_path / "o.onnx"), "-s", "ort")
    assert r.returncode == 0, r.stderr
    assert "note:" not in r.stdout, r.stdout


def test_verbose_after_the_subcommand_works_like_before_it(torchscript_cnn, tmp_path):
    """`graphmill optimize M -o O -v` (argparse would reject a top-level flag there) logs the passes,
    as `graphmill -v optimize ...` does; -vv counts across both places."""
    out = str(tmp_path / "o.onnx")
    after = run_cli("optimize", torchscript_cnn, "-o", out, "-v")
    before = run_cli("-v", "optimize", torchscript_cnn, "-o", out, "--force")
    assert after.returncode == 0 and before.returncode == 0, after.stderr
    assert "graphmill.passes: fold-constants" in after.stderr
    assert after.stderr.count("graphmill.passes:") == before.stderr.count("graphmill.passes:")
    quiet = run_cli("optimize", torchscript_cnn, "-o", out, "--force")
    assert "graphmill.passes" not in quiet.stderr


def test_an_input_random_data_cannot_be_made_for_points_to_no_compare(tmp_path):
    """An Optional graph input: the comparison's random data cannot be made, and the line said "pass inputs
    explicitly", which optimize has no option for (an outside check). Reference: the ONNX model written here
    (an optional<float[2]> input unwrapped by OptionalGetElement), which --no-compare optimizes."""
    import onnx
    from onnx import TensorProto
    from onnx import helper as h

    opt = h.make_optional_type_proto(h.make_tensor_type_proto(TensorProto.FLOAT, [2]))
    graph = h.make_graph([h.make_node("OptionalGetElement", ["o"], ["x"]), h.make_node("Relu", ["x"], ["y"])], "g",
                         [h.make_value_info("o", opt)], [h.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = tmp_path / "opt.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), str(model))
    out = tmp_path / "o.onnx"
    r = run_graphmill("optimize", str(model), "-o", str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "cannot make random data for input %o of type optional<" in r.stderr
    assert "--no-compare skips the comparison" in r.stderr and "pass inputs explicitly" not in r.stderr
    assert not out.exists()
    r = run_graphmill("optimize", str(model), "-o", str(out), "--no-compare", "--check-numerics")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr  # the instrument said it too
    assert "(leave --check-numerics out)" in r.stderr and "pass inputs explicitly" not in r.stderr
    r = run_graphmill("optimize", str(model), "-o", str(out), "--no-compare")
    assert r.returncode == 0 and out.exists(), r.stderr


def test_an_input_onnxruntime_cannot_run_is_refused_naming_the_file(tmp_path):
    """--check-numerics runs the input first: ai.onnx.ml's OneHotEncoder (zeros=0, as skl2onnx writes
    handle_unknown='error') fails under ONNX Runtime on the random strings, and the line named no file and no way out
    (an outside check). Reference: ONNX Runtime refusing the same input itself."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto
    from onnx import helper as h

    graph = h.make_graph([h.make_node("OneHotEncoder", ["s"], ["y"], domain="ai.onnx.ml", cats_strings=["x", "y"],
                                      zeros=0)], "g", [h.make_tensor_value_info("s", TensorProto.STRING, [1])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = tmp_path / "enc.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("ai.onnx.ml", 1)]),
              str(model))
    with pytest.raises(Exception, match="Unknown Category"):
        ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"s": np.array(["a"], object)})
    out = tmp_path / "o.onnx"
    r = run_graphmill("optimize", str(model), "-o", str(out), "--no-compare", "--check-numerics")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"error: {model}: ONNX Runtime failed running graph" in r.stderr
    assert r.stderr.rstrip().endswith("(leave --check-numerics out))") and not out.exists()
