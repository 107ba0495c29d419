"""SIGTERM is handled as Ctrl-C is (``graphmill.util.interrupts.TerminateAsInterrupt``, active in every
``graphmill`` command). Reference: the operating system's own signal delivery and exit statuses, and the
output folder's listing."""

from __future__ import annotations

import os
import signal
import time

import pytest

from graphmill.util.interrupts import DeferredInterrupt, TerminateAsInterrupt
from tests.support.cli_process import run_graphmill
from tests.support.interrupts import raise_numba_wrapped_interrupt
from tests.support.models import save_relu_model

# Loaded by the command as a pass plugin: the first file it flushes to disk, it terminates itself, as `kill PID`
# during a save would (deterministically, between the write and the rename).
TERMINATE_AFTER_FIRST_FSYNC = """
import os, signal
_fsync = os.fsync
def _fsync_then_terminate(fd):
    _fsync(fd)
    os.kill(os.getpid(), signal.SIGTERM)
os.fsync = _fsync_then_terminate
"""


def test_sigterm_during_a_save_leaves_no_temporary_file(tmp_path):
    """`kill PID` between a save's write and its rename left a hidden `.o.onnx.XXXX.tmp` beside the output (the
    interpreter died without cleaning up; an outside check). Now it cleans up as Ctrl-C does, exit status 143."""
    model = save_relu_model(tmp_path)
    plugin = tmp_path / "plugin.py"
    plugin.write_text(TERMINATE_AFTER_FIRST_FSYNC)
    before = sorted(os.listdir(tmp_path))
    r = run_graphmill("optimize", model, "-o", str(tmp_path / "o.onnx"), "--load-passes", str(plugin))
    assert (r.returncode, r.stderr) == (143, "graphmill optimize: terminated\n"), r.stderr
    assert sorted(os.listdir(tmp_path)) == before  # no output, no temporary file


def test_sigterm_is_deferred_like_ctrl_c_inside_a_training_loop():
    """A loop that finishes its step on Ctrl-C (DeferredInterrupt) does so on SIGTERM too; without one, SIGTERM
    raises KeyboardInterrupt where Ctrl-C would."""
    before = signal.getsignal(signal.SIGTERM)
    with TerminateAsInterrupt() as term, DeferredInterrupt() as deferred:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs between bytecodes
        assert deferred.requested and term.terminated
    with TerminateAsInterrupt() as term:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert term.terminated
    assert signal.getsignal(signal.SIGTERM) is before  # restored on exit


def test_sigterm_is_deferred_where_ctrl_c_is_ignored():
    """A background job of a script (or ``nohup``) starts with Ctrl-C ignored, so DeferredInterrupt installed no
    handler and TerminateAsInterrupt raised at once: ``kill`` of a background ``graphmill train`` lost the step
    under way, and before the first checkpoint the whole run (an outside check). Reference: the operating
    system's signal delivery; Ctrl-C must stay ignored."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with TerminateAsInterrupt() as term, DeferredInterrupt() as deferred:
            os.kill(os.getpid(), signal.SIGINT)  # still ignored
            time.sleep(0.01)
            assert not deferred.requested
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs between bytecodes
            assert deferred.requested and term.terminated
            with pytest.raises(KeyboardInterrupt):  # a second one stops at once, as a second Ctrl-C does
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        with TerminateAsInterrupt(), pytest.raises(KeyboardInterrupt):  # no loop to finish: it stops at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    finally:
        signal.signal(signal.SIGINT, before)


def test_sigterm_with_ctrl_c_ignored_reaches_the_outermost_deferral_as_ctrl_c_would():
    """Nested loops that each finish their step: a Ctrl-C reaches the outer one (the inner finds its handler
    installed and installs none), so a SIGTERM where Ctrl-C is ignored must too, or the outer loop never stops
    (a review). Reference: the operating system's signal delivery."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with TerminateAsInterrupt(), DeferredInterrupt() as outer:
            with DeferredInterrupt() as inner:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)
            assert outer.requested and not inner.requested
            again = DeferredInterrupt()
            with again, again:  # entered twice, left twice: no stale deferral stays behind
                pass
        with TerminateAsInterrupt(), pytest.raises(KeyboardInterrupt):  # none left to take it: it stops at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_forked_worker_still_dies_on_sigterm():
    """A worker forked while the handler is active (a process pool's) inherits it; it must still end on SIGTERM,
    as the pool's terminate() expects, not raise inside whatever it runs."""
    with TerminateAsInterrupt():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                time.sleep(30)
            finally:
                os._exit(7)  # reached only if the SIGTERM became an exception
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


def _sleep_long(rank: int) -> None:  # pragma: no cover - runs in the spawned processes
    time.sleep(120)


def test_join_or_stop_terminates_the_processes_when_the_parent_is_interrupted():
    """Spawned processes are not daemons: a parent interrupted while waiting for them (SIGTERM or Ctrl-C to it
    alone) waited for them at exit without end (`partition --run`, `place --run`; an outside check). Reference:
    the processes' own liveness, read through multiprocessing."""
    import torch.multiprocessing as mp

    from graphmill.util.interrupts import join_or_stop

    ctx = mp.start_processes(_sleep_long, nprocs=2, join=False, start_method="spawn")
    ticks = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 3:
            raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        join_or_stop(ctx, tick, poll_s=0.05)
    assert not any(p.is_alive() for p in ctx.processes) and time.monotonic() - t0 < 60


EVALUATOR_RECORDING_ITS_IMPORT = """
import os, signal
with open(os.environ["GRAPHMILL_TEST_RECORD"], "w") as f:  # how Ctrl-C acts while the worker imports this module
    f.write(str(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)
            + str(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])))  # ignored, not blocked
def evaluate(config):
    return 0.0
"""


def test_search_workers_ignore_ctrl_c_while_they_import_the_evaluator(tmp_path, monkeypatch):
    """A terminal's Ctrl-C reaches the whole process group: a pool worker importing the evaluator's module (torch,
    seconds) printed its own KeyboardInterrupt traceback under the search's one line, as it set SIGINT ignored only
    once it ran. Now it starts with SIGINT ignored (the search stops its workers itself). Reference: the
    disposition the worker reads while its evaluator's module is imported; the parent's own is unchanged."""
    import importlib
    import sys

    from graphmill.search.executors.pool import ProcessPoolExecutor

    (tmp_path / "records_import.py").write_text(EVALUATOR_RECORDING_ITS_IMPORT)
    record = tmp_path / "record"
    monkeypatch.setenv("GRAPHMILL_TEST_RECORD", str(record))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    evaluate = importlib.import_module("records_import").evaluate
    assert record.read_text() == "FalseFalse"  # here, in the test's process, Python's KeyboardInterrupt handler
    record.unlink()
    before = signal.getsignal(signal.SIGINT)
    pool = ProcessPoolExecutor(evaluate, 1)
    try:
        assert signal.getsignal(signal.SIGINT) is before
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        pool.submit(0, {})
        for _ in range(600):
            if record.exists() and record.read_text():
                break
            time.sleep(0.1)
        assert record.read_text() == "TrueFalse"  # ignored (a mask blocked for life was a review's finding)
    finally:
        pool.close()
        sys.modules.pop("records_import", None)


def test_a_sigterm_while_workers_start_acts_after_with_every_handler_back():
    """``ctrl_c_ignored_by_started_processes`` swapped SIGINT to ignored and back by hand: a SIGTERM handled in
    between (``kill`` of a search, TerminateAsInterrupt raising KeyboardInterrupt) could leave SIGINT ignored for
    the rest of the process (a review). Reference: the handlers and the signal mask as the process reads them."""
    from graphmill.util.interrupts import ctrl_c_ignored_by_started_processes

    before = signal.getsignal(signal.SIGINT)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    inside = []
    with TerminateAsInterrupt() as term:
        term_handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            with ctrl_c_ignored_by_started_processes():
                inside.append(signal.getsignal(signal.SIGINT))
                os.kill(os.getpid(), signal.SIGTERM)  # held until the block ends
                inside.append("after the SIGTERM")
        assert term.terminated and signal.getsignal(signal.SIGTERM) == term_handler
    assert inside == [signal.SIG_IGN, "after the SIGTERM"]
    assert signal.getsignal(signal.SIGINT) is before and signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask


EVALUATOR_TERMINATING_ON_ITS_SECOND_CALL = """
import os, signal
calls = []
def evaluate(config):
    calls.append(config)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` of the search would, during a trial
    return float(config["x"])
"""


def test_a_search_stopped_by_sigterm_says_terminated_and_how_to_resume(tmp_path):
    """A search stopped by `kill PID` said "interrupted: run the same command again ..." (left alone in earlier
    notes): it says "terminated" now, with the same advice, and exits 143. Reference: the exit status the OS
    convention gives SIGTERM (128 + 15), and the checkpoint it names, which exists."""
    import json

    (tmp_path / "ev.py").write_text(EVALUATOR_TERMINATING_ON_ITS_SECOND_CALL)
    (tmp_path / "space.json").write_text(json.dumps(
        {"type": "space", "params": {"x": {"type": "choice", "values": [1, 2, 3, 4, 5]}}}))
    r = run_graphmill("search", "--space", str(tmp_path / "space.json"), "--evaluator", "ev:evaluate",
                      "--strategy", "random", "--budget", "5", "--out", str(tmp_path / "o"), cwd=str(tmp_path),
                      env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 143, r.stderr
    line = next(x for x in r.stderr.splitlines() if "run the same command again" in x)
    assert line.startswith("graphmill search: terminated: run the same command again to resume from "), r.stderr
    assert os.path.exists(line.rsplit(" ", 1)[1])


def test_a_ctrl_c_that_numba_wrapped_in_a_system_error_is_still_an_interrupt(tmp_path, monkeypatch, capsys):
    """About 1 in 10 Ctrl-Cs or `kill`s of a long `simulate` ended in numba's SystemError traceback and exit 1
    (an outside check). Reference: the README's promise (one line, 130 for Ctrl-C) and the exception chain numba
    raises (tests/support/interrupts.py); a SystemError with no interrupt in its chain is still a bug's traceback."""
    from graphmill import api
    from graphmill.cli import main

    model = save_relu_model(tmp_path)
    monkeypatch.setattr(api, "simulate", raise_numba_wrapped_interrupt)
    accel = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "accelerators", "edge.toml")
    assert main(["simulate", str(model), "--accel", accel]) == 130
    assert capsys.readouterr().err.strip() == "graphmill simulate: interrupted"

    def plain_system_error(*args, **kwargs):
        raise SystemError("a real bug")

    monkeypatch.setattr(api, "simulate", plain_system_error)
    with pytest.raises(SystemError, match="a real bug"):
        main(["simulate", str(model), "--accel", accel])


def test_ctrl_c_while_the_parsers_are_built_is_one_line(monkeypatch, capsys):
    """Ctrl-C in the second argparse takes to build every command's parser (it asks the terminal's size per
    argument) printed a KeyboardInterrupt traceback and killed graphmill by SIGINT (an outside check, `chip place`
    interrupted 1 s after its start). Reference: the README's rule for every command (one line, exit 130)."""
    import graphmill.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    try:
        code = cli.main(["inspect", "m.onnx"])
    except KeyboardInterrupt:  # raised through main, it would stop the whole test session instead of failing here
        pytest.fail("a Ctrl-C while the parsers are built escaped graphmill.cli.main")
    assert code == 130 and capsys.readouterr().err == "graphmill: interrupted\n"
