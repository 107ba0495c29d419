"""`graphmill optimize` end to end, judged by ONNX Runtime on the original model's outputs.

Models: the onnx wheel's light models and the zoo's ResNet-18 (not seen by the passes' own tests).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.passes.dsl import parse_schedule
from graphmill.util.errors import UserInputError
from tests.support.cli_process import run_graphmill


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_graphmill(*args, timeout=600)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    from graphmill.frontend import zoo

    path = tmp_path_factory.mktemp("m") / "resnet18.onnx"
    graphmill.save(zoo.build("resnet18", batch=1), path)
    return str(path)


def test_default_schedule_keeps_numbers_and_reports(resnet18_file, tmp_path):
    before = open(resnet18_file, "rb").read()
    out = tmp_path / "o.onnx"
    report = tmp_path / "r.json"
    r = run_cli("optimize", resnet18_file, "-o", str(out), "--check-numerics", "--verify-each", "--time-passes",
                "--json", str(report))
    assert r.returncode == 0, r.stderr
    assert open(resnet18_file, "rb").read() == before  # the input is never touched
    data = json.loads(report.read_text())
    assert data["after"]["nodes"] < data["before"]["nodes"]
    assert "BatchNormalization" not in data["after"]["ops"]  # fuse-conv-bn folded all 20
    assert data["comparison"]["ok"] and data["numerics"]["checks"] >= 1
    # the report records the schedule, and it parses back to the same schedule
    assert parse_schedule(data["schedule"], entry="default").to_inline() == data["schedule_inline"]
    assert "nodes" in r.stdout and "pass" in r.stdout and "ms" in r.stdout  # summary and time table
    # reference: ONNX Runtime on the original vs the written file, ORT's own rewrites off on both sides
    # (with them on, ORT fuses Conv+BN in the original too and both sides move by ~1e-5)
    cmp = ortb.compare(graphmill.load(resnet18_file), graphmill.load(out), rtol=1e-4, atol=1e-5,
                       options=ortb.OrtOptions(optimization="disabled"))
    assert cmp.ok, cmp.to_dict()


def test_time_passes_with_json_on_stdout_prints_its_table_on_stderr(resnet18_file, tmp_path):
    """`--time-passes --json -` printed the table nowhere (stdout is the JSON alone; an outside check). Reference:
    the JSON's own time_passes, whose passes the table lists."""
    r = run_cli("optimize", resnet18_file, "-o", str(tmp_path / "o.onnx"), "--time-passes", "--json", "-",
                "--no-compare")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["time_passes"] and "ms" in r.stderr
    assert all(name in r.stderr for name in {row["pass"] for row in data["time_passes"]}), r.stderr


def test_rounding_near_zero_in_a_large_output_passes_the_final_comparison(tmp_path):
    """The README's small ResNet-18: folding batch norms moves a logit of ~0.14 by ~5e-5 while the logits reach
    ~76. Reference: ONNX Runtime on both files (its rewrites off), the difference read against the output's
    scale; a per-element numpy.allclose(rtol=1e-4, atol=1e-5) is what used to fail the command."""
    import numpy as np

    from graphmill.frontend import zoo

    src, out = tmp_path / "r18.onnx", tmp_path / "o.onnx"
    graphmill.save(zoo.build("resnet18", width=0.25, resolution=64, batch=1), src)
    r = run_cli("optimize", str(src), "-o", str(out))
    assert r.returncode == 0 and "(within atol" in r.stdout, r.stdout + r.stderr
    g0, g1 = graphmill.load(str(src)), graphmill.load(str(out))
    x = ortb.random_inputs(g0, seed=0)
    opts = ortb.OrtOptions(optimization="disabled")
    a, b = ortb.run(g0, x, opts), ortb.run(g1, x, opts)
    (ra,), (rb,) = a.values(), b.values()
    assert not np.allclose(rb, ra, rtol=1e-4, atol=1e-5)  # a per-element test flags it
    assert np.abs(rb - ra).max() <= 1e-6 * np.abs(ra).max()  # yet it is rounding: < 1e-6 of the logits' scale


@pytest.mark.parametrize("name", ["light_squeezenet", "light_inception_v1", "light_densenet121"])
def test_check_numerics_on_light_models(light_dir, tmp_path, name):
    out = tmp_path / "o.onnx"
    r = run_cli("optimize", os.path.join(light_dir, f"{name}.onnx"), "-o", str(out), "--check-numerics",
                "--json", "-")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["comparison"]["ok"], data["comparison"]
    assert data["after"]["nodes"] <= data["before"]["nodes"]


def test_inline_and_file_schedules(resnet18_file, tmp_path):
    sched = tmp_path / "s.mill"
    sched.write_text("schedule mine {\n    fuse-conv-bn\n    dce\n}\n")
    r1 = run_cli("optimize", resnet18_file, "-o", str(tmp_path / "a.onnx"), "-s", str(sched), "--json", "-")
    r2 = run_cli("optimize", resnet18_file, "-o", str(tmp_path / "b.onnx"), "-p", "fuse-conv-bn,dce", "--json", "-")
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)
    assert a["schedule_inline"] == b["schedule_inline"] == "fuse-conv-bn,dce"
    assert a["after"] == b["after"]


def test_builtin_ort_schedule_by_name(light_dir, tmp_path):
    """`-s ort` picks the embedded schedule; reference: ONNX Runtime on the original GoogLeNet (light model)."""
    out = tmp_path / "o.onnx"
    r = run_cli("optimize", os.path.join(light_dir, "light_inception_v1.onnx"), "-o", str(out), "-s", "ort",
                "--json", "-")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert "fuse-ort-contrib" in data["schedule_inline"] and data["comparison"]["ok"]
    ops = {n.op_type for n in graphmill.load(str(out)).nodes}
    assert "FusedConv" in ops and "Relu" not in ops  # every Conv -> Relu, hoisted or not, is one FusedConv
    r = run_cli("optimize", os.path.join(light_dir, "light_inception_v1.onnx"), "-o", str(out) + "2", "-s", "orrt")
    assert r.returncode == 2 and "not a built-in schedule (did you mean 'ort'?) (the built-in ones: default, ort, " \
                                 "cleanup)" in r.stderr


def test_print_ir_after_and_diff(resnet18_file, tmp_path):
    r = run_cli("optimize", resnet18_file, "-o", str(tmp_path / "o.onnx"), "-p", "fuse-conv-bn,dce",
                "--print-ir-after", "fuse-conv-bn")
    assert r.returncode == 0
    assert "IR after pass 'fuse-conv-bn'" in r.stderr and "BatchNormalization" not in r.stderr.split("IR after")[1]
    r = run_cli("optimize", resnet18_file, "-o", str(tmp_path / "o.onnx"), "-p", "fuse-conv-bn", "--print-ir-diff")
    assert "IR diff after pass 'fuse-conv-bn'" in r.stderr and "-  %" in r.stderr


def test_explain_match_says_why_a_rule_did_not_fire(resnet18_file, tmp_path):
    r = run_cli("optimize", resnet18_file, "-o", str(tmp_path / "o.onnx"), "-p", "dce", "--explain-match",
                "matmul-add")
    assert r.returncode == 0, r.stderr
    assert "rule 'matmul-add'" in r.stdout and ("does not fire" in r.stdout or "cannot match" in r.stdout)


def test_explain_match_of_an_unknown_rule_is_one_short_line(resnet18_file, tmp_path):
    # reference: the rule names `graphmill passes --json` lists
    r = run_cli("optimize", resnet18_file, "-o", str(tmp_path / "o.onnx"), "--explain-match", "matmul-ad")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "did you mean 'matmul-add'?" in r.stderr and len(r.stderr) < 300, r.stderr
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("name, needle", [
    ("fuse-conv-bn", "'fuse-conv-bn' is a pass, not a rewrite rule; its rules: conv-bn, "),
    ("dce", "'dce' is a pass, not a rewrite rule; it has no rewrite rules to explain"),
])
def test_explain_match_of_a_pass_name_names_its_rules(name, needle):
    """A new user's first try is the pass's name; it was told "did you mean 'fused-conv'?", an unrelated rule (an
    outside check). Reference: the README's rule of fuse-conv-bn (conv-bn); dce is no rewrite pass."""
    from graphmill.passes.rewrite_pass import find_rule

    with pytest.raises(UserInputError) as e:
        find_rule(name)
    assert str(e.value).startswith(needle) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("args, needle", [
    (["-p", "fold-constants,dcee"], "unknown pass or schedule 'dcee' (did you mean 'dce'?)"),
    (["-p", "fold-constants{size_limit=big}"], "option 'size_limit' must be"),
    (["-p", "fixpoint{simplify,cse"], "'{' is never closed"),
])
def test_bad_schedules_are_located_and_write_nothing(resnet18_file, tmp_path, args, needle):
    out = tmp_path / "o.onnx"
    r = run_cli("optimize", resnet18_file, "-o", str(out), *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "<inline>:1:" in r.stderr and "^" in r.stderr
    assert not out.exists() and os.listdir(tmp_path) == []


def test_missing_include_is_located(resnet18_file, tmp_path):
    sched = tmp_path / "s.mill"
    sched.write_text('\ninclude "other.mill"\nschedule x { dce }\n')
    r = run_cli("optimize", resnet18_file, "-o", str(tmp_path / "o.onnx"), "-s", str(sched))
    assert r.returncode == 2 and f"{sched}:2:1: cannot include 'other.mill'" in r.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_optimize_refuses_to_overwrite_its_input(resnet18_file):
    r = run_cli("optimize", resnet18_file, "-o", resnet18_file)
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr


def test_passes_lists_every_pass_of_the_default_schedule():
    r = run_cli("passes", "--json")
    assert r.returncode == 0
    names = {p["name"] for p in json.loads(r.stdout)["passes"]}
    from graphmill.passes.builtin_schedules import default_schedule

    assert {run.name for run in default_schedule().runs()} <= names
    for p in json.loads(r.stdout)["passes"]:
        assert p["doc"], f"pass {p['name']} has no documentation"


def test_passes_text_shows_each_passs_whole_first_paragraph():
    # reference: each pass's docstring (its first paragraph, whitespace aside), as the JSON listing gives it
    docs = {p["name"]: p["doc"] for p in json.loads(run_cli("passes", "--json").stdout)["passes"]}
    text = " ".join(run_cli("passes").stdout.split())
    for name, doc in docs.items():
        assert " ".join(doc.split("\n\n", 1)[0].split()) in text, name
