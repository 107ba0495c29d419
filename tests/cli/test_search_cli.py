"""``graphmill search`` end to end, each command its own process (tests/support/cli_process.py).

References: ONNX Runtime loads and runs the best model the search wrote; the history file is checked against
the trial count asked for; bad input must give one line on stderr, exit status 2 and no output folder.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from tests.support.cli_process import run_graphmill

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EDGE = os.path.join(ROOT, "examples", "accelerators", "edge.toml")
# a very small proxy: 3 training steps on 16x16 digits, latency of the network at width 0.25 and 32x32
TINY = ["--steps", "3", "--proxy-width", "0.25", "--proxy-resolution", "16", "--latency-width", "0.25",
        "--latency-resolution", "32"]


def run_cli(*args: str, cwd=None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(cwd or ""), ROOT,
                                                                     os.environ.get("PYTHONPATH", "")])))
    return run_graphmill("search", *args, cwd=cwd, timeout=timeout, env=env)


def test_mnasnet_search_writes_a_best_model_that_runs_under_onnxruntime(tmp_path):
    import onnxruntime as ort

    out = tmp_path / "run"
    r = run_cli("--space", "mnasnet", "--strategy", "random", "--budget", "3", "--out", str(out), "--accel", EDGE,
                "--seed", "1", *TINY)
    assert r.returncode == 0, r.stderr
    progress = [line for line in r.stdout.splitlines() if line.startswith("[search] trial ")]
    assert [line.split()[2] for line in progress] == ["1/3", "2/3", "3/3"]
    assert all(" best " in line and "evals/s" in line and "ETA" in line for line in progress)
    for name in ("checkpoint.json", "history.jsonl", "best.onnx", "best_so_far.png", "pareto.png"):
        assert (out / name).is_file(), name
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 3 and all(h["status"] == "ok" for h in history)
    assert all({"accuracy", "latency", "cycles", "macs", "params"} <= set(h["metrics"]) for h in history)
    best = max(history, key=lambda h: h["reward"])
    assert f"latency {best['metrics']['latency']:.4g} ms" in r.stdout, r.stdout  # the built-in evaluator's unit
    sess = ort.InferenceSession(str(out / "best.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 1, 16, 16)).astype(np.float32)
    (logits,) = sess.run(None, {sess.get_inputs()[0].name: x})
    assert logits.shape == (2, 10) and np.isfinite(logits).all()
    # the ONNX model is the best trial's network: its configuration travels in the graph's metadata
    from graphmill import load

    assert load(str(out / "best.onnx")).meta["config"] == best["config"]
    # rerunning the finished command evaluates nothing again
    again = run_cli("--space", "mnasnet", "--strategy", "random", "--budget", "3", "--out", str(out), "--accel",
                    EDGE, "--seed", "1", "--json", *TINY)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["trials"] == 3 and summary["best"]["config"] == best["config"]


EVALUATORS = '''
def quadratic(config):
    return -(config["x"] - 0.3) ** 2

def timed(config):
    return {"reward": config["x"], "latency": 0.5}

def chatty(config):
    import os
    # one string: print's separate writes of its arguments interleave between two workers on the shared stderr
    # ("workerworker  64216420  evaluatesevaluates", a CI run), which no program can prevent in a user's print
    print(f"worker {os.getpid()} evaluates {config['x']}", flush=True)
    os.write(1, b"and writes to its descriptor 1\\n")
    return config["x"]

def broken(config):
    if config["x"] > 0.5:
        raise ValueError("no")
    return config["x"]
'''


def test_user_space_and_evaluator(tmp_path):
    (tmp_path / "myeval.py").write_text(EVALUATORS)
    (tmp_path / "space.json").write_text(json.dumps({"type": "space", "params": {
        "x": {"type": "float", "low": 0.0, "high": 1.0}}}))
    r = run_cli("--space", "space.json", "--evaluator", "myeval:broken", "--strategy", "random", "--budget", "6",
                "--out", "o", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # stdout is the JSON alone; the progress lines went to stderr
    assert sum(line.startswith("[search] trial ") for line in r.stderr.splitlines()) == 6, r.stderr
    history = [json.loads(line) for line in (tmp_path / "o" / "history.jsonl").read_text().splitlines()]
    assert len(history) == summary["trials"] == 6
    assert summary["space"] == "space.json"  # the file searched (it said "file")
    failed = [h for h in history if h["config"]["x"] > 0.5]
    assert all(h["status"] == "failed" for h in failed) and summary["failed"] == len(failed)
    assert summary["best"]["reward"] == max(h["config"]["x"] for h in history if h["config"]["x"] <= 0.5)
    assert all("ValueError: no" in h["error"] for h in failed)
    assert not (tmp_path / "o" / "best.onnx").exists()  # no network for a user space


def test_a_user_evaluators_latency_is_shown_without_a_unit(tmp_path):
    """The summary showed a user evaluator's unitless latency as "latency 0.5 ms" (an outside check). Reference: the
    evaluator's own return value, which names no unit."""
    (tmp_path / "myeval.py").write_text(EVALUATORS)
    (tmp_path / "space.json").write_text(json.dumps({"type": "space", "params": {
        "x": {"type": "float", "low": 0.0, "high": 1.0}}}))
    r = run_cli("--space", "space.json", "--evaluator", "myeval:timed", "--strategy", "random", "--budget", "2",
                "--out", "o", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ": latency 0.5\n" in r.stdout, r.stdout


@pytest.mark.xdist_group("processes")
def test_worker_processes_prints_leave_json_on_stdout_readable(tmp_path):
    """An evaluator that prints, run in a pool's worker processes, put its lines on stdout before the JSON of
    `--json` (the parent's redirection of sys.stdout does not reach a process that starts with descriptor 1; an
    outside check). Reference: json.loads of stdout; the workers' lines on stderr."""
    (tmp_path / "myeval.py").write_text(EVALUATORS)
    (tmp_path / "space.json").write_text(json.dumps({"type": "space", "params": {
        "x": {"type": "float", "low": 0.0, "high": 1.0}}}))
    r = run_cli("--space", "space.json", "--evaluator", "myeval:chatty", "--strategy", "random", "--budget", "4",
                "--workers", "2", "--executor", "local", "--out", "o", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["trials"] == 4
    assert r.stderr.count(" evaluates ") == 4 and r.stderr.count("and writes to its descriptor 1") == 4, r.stderr


BAD_SPACE = '{"type": "space", "params": {"lr": {"type": "float", "low": "a", "high": 1}}}'


@pytest.mark.parametrize("args, files, expect", [
    (["--space", "bad.json"], {"bad.json": BAD_SPACE}, "space.params.lr"),
    (["--space", "bad.json"], {"bad.json": '{"type": "space",\n "params": {,}}'}, "bad.json:2:"),
    (["--space", "empty.json"], {"empty.json": '{"type": "space", "params": {}}'}, "no parameters"),
    # 100,000 nested brackets: a RecursionError traceback, exit 1 (an outside check)
    (["--space", "deep.json"], {"deep.json": "[" * 100_000 + "]" * 100_000}, "deep.json: not valid JSON: nested too deeply"),
    (["--space", "mnasnet", "--option", "x=" + "[" * 5000 + "]" * 5000], {}, "--option x: nested too deeply"),
    # a key given twice: json.loads kept the last, and the search ran a space the file does not say (an outside
    # check; reference: RFC 8259, names should be unique)
    (["--space", "dup.json"], {"dup.json": BAD_SPACE.replace('"a"', "0").replace("}}}", '}, "lr": {"type": "int", '
                                                                                   '"low": 1, "high": 3}}}')},
     "dup.json: not valid JSON: the key 'lr' appears twice in one object"),
    (["--space", "mnasnet", "--option", 'x={"a": 1, "a": 2}'], {}, "--option x: the key 'a' appears twice"),
    (["--space", "mnasnt"], {}, "did you mean 'mnasnet'"),
    (["--space", "mnasnet", "--strategy", "evolutoin"], {}, "did you mean 'evolution'"),
    # an empty name (a shell variable left unset) ran the default strategy without a word (an outside check)
    (["--space", "mnasnet", "--strategy", ""], {}, "unknown strategy ''"),
    (["--space", "mnasnet", "--strategy", "evolution", "--option", "populaton=20"], {}, "did you mean 'population'"),
    (["--space", "mnasnet", "--evaluator", "nosuchmodule:f"], {}, "cannot import 'nosuchmodule'"),
    # a module that calls sys.exit(3) as it is imported ended the command with status 3 and no word (an outside
    # check)
    (["--space", "mnasnet", "--evaluator", "exits:f"], {"exits.py": "import sys\nsys.exit(3)\n"},
     "cannot import 'exits': SystemExit: the module called sys.exit(3) as it was imported"),
    (["--space", "mnasnet", "--evaluator", "json:nosuch"], {}, "json has no 'nosuch'"),
    # a function of no argument failed every trial, located in graphmill's executor, exit 0 (an outside check)
    (["--space", "mnasnet", "--evaluator", "noarg:f"], {"noarg.py": "def f():\n    return 1.0\n"},
     "noarg.py:1) cannot be called as evaluate(config): too many positional arguments"),
    # a proxy setting beside an evaluator that has none was accepted and ignored (an outside check)
    (["--space", "mnasnet", "--evaluator", "json:loads", "--steps", "5"], {},
     "--evaluator json:loads takes no proxy settings (given: steps)"),
    (["--space", "accelerator", "--latency-resolution", "32"], {},
     "the accelerator space's built-in evaluator takes no proxy settings (given: latency_resolution)"),
    (["--space", "mnasnet", "--evaluator", "bultin"], {}, "MODULE:FUNCTION (did you mean 'builtin'?)"),
    (["--space", "mnasnet", "--objective", "mnasnet:target=3"], {}, "did you mean 'target_ms'"),
    # inf/nan reached the checkpoint's fingerprint: "not JSON-able", an empty --out left behind (an outside check)
    (["--space", "mnasnet", "--objective", "mnasnet:target_ms=inf"], {}, "target_ms needs a finite number"),
    (["--space", "mnasnet", "--objective", "mnasnet-hard:alpha=nan"], {}, "alpha needs a finite number"),
    (["--space", "mnasnet", "--executor", "rey"], {}, "did you mean 'ray'"),
    (["--space", "mnasnet", "--evaluator", "json:loads", "--objective", "mnasnet"], {}, "target_ms=T"),
    (["--space", "mnasnet", "--budget", "0"], {}, "--budget=0"),
    # an option value the strategy refuses: the folder used to be created before the refusal
    (["--space", "mnasnet", "--strategy", "evolution", "--option", "population=0"], {}, "population=0 must be >= 1"),
    (["--space", "mnasnet", "--accel", "missing.toml"], {}, "missing.toml"),
    # nothing listens on port 1: ray.init waited there without end (no answer after 400 s), after creating --out
    (["--space", "mnasnet", "--executor", "ray", "--ray-address", "127.0.0.1:1"], {}, "nothing answers at 127.0.0.1:1"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, files, expect):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    r = run_cli(*args, "--out", "o", cwd=tmp_path, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphmill search: error:") and expect in lines[0], lines
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # two CLI processes, ~5 s
def test_rerun_with_another_evaluator_is_refused(tmp_path):
    # reference: the first run's history.jsonl, which must stay as it was. Before the fix the rerun with
    # myeval:broken resumed the checkpoint of myeval:quadratic (exit 0) and its best mixed the two evaluators
    (tmp_path / "myeval.py").write_text(EVALUATORS)
    (tmp_path / "space.json").write_text(json.dumps({"type": "space", "params": {
        "x": {"type": "float", "low": 0.0, "high": 1.0}}}))
    args = ["--space", "space.json", "--strategy", "random", "--out", "o"]
    assert run_cli(*args, "--evaluator", "myeval:quadratic", "--budget", "2", cwd=tmp_path).returncode == 0
    before = (tmp_path / "o" / "history.jsonl").read_text()
    r = run_cli(*args, "--evaluator", "myeval:broken", "--budget", "4", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'its evaluator was "myeval:quadratic", now "myeval:broken"' in lines[0], lines
    assert (tmp_path / "o" / "history.jsonl").read_text() == before


WATCHER = '''
import json, os

def lines_so_far(config):
    """Reward and, as a metric, the lines history.jsonl holds while this trial runs (in process, one worker)."""
    path = os.path.join(os.environ["GM_TEST_OUT"], "history.jsonl")
    lines = open(path).read().splitlines() if os.path.exists(path) else []
    return {"reward": config["x"], "lines": len(lines), "last": json.loads(lines[-1])["config"]["x"] if lines else None}
'''


def watched(tmp_path, monkeypatch):
    """A user space of one float and the watcher evaluator, importable from tmp_path (the cwd); the out folder."""
    (tmp_path / "watcher.py").write_text(WATCHER)
    (tmp_path / "space.json").write_text(json.dumps({"type": "space", "params": {
        "x": {"type": "float", "low": 0.0, "high": 1.0}}}))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GM_TEST_OUT", str(tmp_path / "o"))
    return tmp_path / "o"


def test_history_jsonl_grows_as_trials_finish(tmp_path, monkeypatch):
    # reference: the trial count and order the run itself reports. Before history.jsonl followed the run it was
    # written only at the end, so every trial saw 0 lines (or, resumed, only the previous call's); a resumed call
    # that only appended would keep the damaged file's 2 lines at its first trial
    from graphmill.search.workflow import run_search

    out = watched(tmp_path, monkeypatch)
    first = run_search("space.json", "watcher:lines_so_far", out=str(out), strategy="random", budget=3)
    # as a kill -9 may leave it: the last trial's line missing (the checkpoint, not this file, is the state)
    lines = (out / "history.jsonl").read_text().splitlines()
    (out / "history.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    resumed = run_search("space.json", "watcher:lines_so_far", out=str(out), strategy="random", budget=6)
    assert len(first["result"].history) == 3
    history = resumed["result"].history
    # trial 4 (the resumed call's first) still sees the damaged file; its result rewrites it whole, so trial 5
    # sees trials 1-4 (appending only would leave it 3 lines)
    assert [t.metrics["lines"] for t in history] == [0, 1, 2, 2, 4, 5]
    # otherwise each trial saw the previous trial as the file's last line
    seen_last = [t.metrics["last"] for t in history[1:3] + history[4:]]
    assert seen_last == [t.config["x"] for t in history[0:2] + history[3:5]]
    written = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [w["config"] for w in written] == [t.config for t in history]


def test_a_budget_the_checkpoint_holds_evaluates_nothing_and_says_so(tmp_path, monkeypatch, capsys):
    # reference: the trial counts of the two commands; before, the second printed only the summary, exit 0
    from graphmill.cli import main

    out = watched(tmp_path, monkeypatch)
    args = ["search", "--space", "space.json", "--evaluator", "watcher:lines_so_far", "--strategy", "random",
            "--out", str(out), "--budget"]
    assert main(args + ["3"]) == 0 and "nothing evaluated" not in capsys.readouterr().out
    assert main(args + ["2"]) == 0
    assert "nothing evaluated: the checkpoint already holds 3 trial(s) for --budget 2" in capsys.readouterr().out
    assert main(args + ["3", "--json"]) == 0
    io = capsys.readouterr()
    summary = json.loads(io.out)  # stdout is the JSON alone; the notice is on stderr (it was not said at all)
    assert summary["trials"] == 3 and summary["new_trials"] == 0
    assert "nothing evaluated: the checkpoint already holds 3 trial(s) for --budget 3" in io.err


def test_a_rerun_of_a_space_evaluated_whole_says_nothing_was_evaluated(tmp_path, monkeypatch, capsys):
    """A rerun over a space whose every configuration the checkpoint holds evaluated nothing and said nothing but
    the usual summary (an outside check). Reference: the space's size (2 configurations)."""
    from graphmill.cli import main

    (tmp_path / "two.py").write_text("def evaluate(config):\n    return float(config['k'])\n")
    (tmp_path / "two.json").write_text(json.dumps({"type": "space", "params": {
        "k": {"type": "choice", "values": [0, 1]}}}))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    args = ["search", "--space", "two.json", "--evaluator", "two:evaluate", "--strategy", "random", "--out", "o",
            "--budget", "5"]
    assert main(args) == 0 and "nothing evaluated" not in capsys.readouterr().out
    assert main(args) == 0
    assert ("nothing evaluated: the checkpoint already holds every configuration of the space (2 trial(s)); no "
            "--budget adds any") in capsys.readouterr().out


def test_a_resumed_search_says_so_before_its_first_new_trial(tmp_path, monkeypatch, capsys):
    """A rerun that continues a checkpoint said nothing but "trial 4/5" (an outside check found the same in
    train and AutoHAS). Reference: the trial counts of the two commands."""
    from graphmill.cli import main

    out = watched(tmp_path, monkeypatch)
    args = ["search", "--space", "space.json", "--evaluator", "watcher:lines_so_far", "--strategy", "random",
            "--out", str(out), "--budget"]
    assert main(args + ["3"]) == 0 and "[search] resumed from" not in capsys.readouterr().out
    assert main(args + ["5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"[search] resumed from {out / 'checkpoint.json'}: 3 trial(s) recorded before", lines
    assert lines[1].startswith("[search] trial 4/5"), lines


def test_a_complete_history_jsonl_is_not_replaced_at_the_end(tmp_path, monkeypatch):
    # reference: the file's inode. The end-of-run atomic rewrite replaced a file the run had just completed line
    # by line, and `tail -F` then printed every trial a second time
    from graphmill.search.workflow import run_search

    out = watched(tmp_path, monkeypatch)
    inodes = []
    import graphmill.search as gs

    real = gs.write_history_jsonl

    def spy(path, trials):
        real(path, trials)
        inodes.append(os.stat(path).st_ino)

    monkeypatch.setattr(gs, "write_history_jsonl", spy)  # the end's rewrite, if any
    monkeypatch.setattr(gs.runner, "write_history_jsonl", spy)  # the first result's (runner.HistoryFollower)
    run_search("space.json", "watcher:lines_so_far", out=str(out), strategy="random", budget=4)
    assert len(inodes) == 1  # the first result's write only
    assert os.stat(out / "history.jsonl").st_ino == inodes[0]
    assert len((out / "history.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("flag,value,why", [
    ("--steps", "0", "must be a whole number >= 1"),
    ("--proxy-width", "0", "must be a number > 0"),
    ("--latency-width", "-1", "must be a number > 0"),
    # a resolution under 16 was a multiplier of 224 (the zoo's convention): --proxy-resolution 1 trained a
    # 224x224 proxy for 87 s a trial instead of 16x16
    ("--proxy-resolution", "1", "an input size in pixels, a whole number >= 16"),
    ("--latency-resolution", "8", "an input size in pixels, a whole number >= 16"),
])
def test_a_proxy_setting_that_fails_every_trial_is_refused_up_front(tmp_path, flag, value, why):
    """Before: every trial failed (an IndexError for 0 steps; 'width=0.0 ... must be a number > 0' inside each),
    the command exited 0 and wrote its folder. Now one line naming the flag, exit 2, nothing written."""
    r = run_cli("--space", "mnasnet", "--budget", "2", flag, value, "--out", "o", cwd=tmp_path, timeout=120)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1, r.stderr
    assert f"{flag} " in err[0] and why in err[0]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("written", [False, True])
def test_an_interrupted_search_names_a_checkpoint_only_when_there_is_one(tmp_path, capsys, monkeypatch, written):
    """Ctrl-C before the first result said "resume from OUT/checkpoint.json", a file that did not exist (an outside
    check). Reference: the checkpoint file, present or not by construction."""
    from graphmill import api
    from graphmill.cli import main

    ck = tmp_path / "out" / "checkpoint.json"
    ck.parent.mkdir()
    if written:
        ck.write_text("{}")
    summary = {"new_trials": 0, "interrupted": True, "exhausted": False, "best": None, "trials": 0, "failed": 0,
               "files": ["history.jsonl"], "out": str(ck.parent), "checkpoint": str(ck)}
    monkeypatch.setattr(api, "search", lambda *a, **k: {"summary": summary})
    assert main(["search", "--space", "mnasnet", "--out", str(ck.parent), "--budget", "2"]) == 130
    err = capsys.readouterr().err
    if written:
        assert f"resume from {ck}" in err
    else:
        assert "interrupted before the first result: run the same command again to start it over" in err
        assert "resume from" not in err


def test_a_second_ctrl_c_still_says_how_to_resume(tmp_path, capsys, monkeypatch):
    """Three Ctrl-Cs within a second left only "graphmill search: interrupted" (the clean stop's own line was
    skipped; an outside check). Reference: the checkpoint file, written by the test."""
    from graphmill import api
    from graphmill.cli import main

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "checkpoint.json").write_text("{}")
    monkeypatch.setattr(api, "search", interrupted)
    assert main(["search", "--space", "mnasnet", "--out", str(tmp_path / "o"), "--budget", "2"]) == 130
    assert "graphmill search: interrupted; run the same command again to resume" in capsys.readouterr().err


@pytest.mark.parametrize("wrapped", [False, True])
def test_ctrl_c_while_ray_starts_promises_no_resume(tmp_path, capsys, monkeypatch, wrapped):
    """Ctrl-C while Ray started (before the runner's own handling) said "resume from the last checkpoint" where no
    folder had been made, and --json printed nothing (an outside check). Reference: the folder, absent. ``wrapped``:
    the Ctrl-C as numba raises it (tests/support/interrupts.py), which skipped this handling (a review)."""
    from graphmill import api
    from graphmill.cli import main
    from tests.support.interrupts import raise_numba_wrapped_interrupt

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "search", raise_numba_wrapped_interrupt if wrapped else interrupted)
    out = tmp_path / "o"
    assert main(["search", "--space", "mnasnet", "--out", str(out), "--budget", "2", "--json"]) == 130
    io = capsys.readouterr()
    assert json.loads(io.out) == {"space": "mnasnet", "strategy": "default", "out": str(out), "interrupted": True,
                                  "checkpoint": None, "trials": 0, "failed": 0, "new_trials": 0,
                                  "exhausted": False, "files": [], "best": None}
    assert io.err.strip() == ("graphmill search: interrupted before the first checkpoint: run the same command "
                              "again to start it over")


def test_a_closed_output_pipe_stops_the_search_with_sigpipes_status(tmp_path):
    """`graphmill search ... | head -2` stopped after 3 of 20 trials with exit 0 and no word, which a script reads
    as a finished search (an outside check). Reference: a Unix tool killed by SIGPIPE exits 128 + 13; the rerun
    resumes from the checkpoint (the trials recorded before the pipe closed are kept)."""
    import subprocess
    import sys

    (tmp_path / "myeval.py").write_text(EVALUATORS)
    (tmp_path / "space.json").write_text(json.dumps({"type": "space", "params": {
        "x": {"type": "float", "low": 0.0, "high": 1.0}}}))
    args = [sys.executable, "-m", "graphmill", "search", "--space", "space.json", "--evaluator", "myeval:quadratic",
            "--strategy", "random", "--budget", "2000", "--out", "o"]  # far more than the pipe's buffer holds
    p = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert p.stdout.readline().startswith(b"[search] trial 1/2000")
    p.stdout.close()  # as `head -1` does
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141, err
    assert err.strip().endswith("stopped: the pipe its output went to was closed; run the same command again to "
                                "resume from the last checkpoint (a finished evaluation is not repeated)"), err
    again = run_cli("--space", "space.json", "--evaluator", "myeval:quadratic", "--strategy", "random", "--budget",
                    "1", "--out", "o", "--json", cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["new_trials"] == 0, again.stderr  # the checkpoint
    assert 1 <= json.loads(again.stdout)["trials"] < 2000  # holds the trials recorded before the pipe closed
