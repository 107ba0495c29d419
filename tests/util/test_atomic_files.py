"""util/files.atomic_write_many: several files replaced together.

Reference: the bytes each file was given; the handlers in place (Python's default_int_handler raises
KeyboardInterrupt; TerminateAsInterrupt marks a SIGTERM and raises it as one), called after the renames.
"""

from __future__ import annotations

import os
import signal

import pytest

from graphmill.util import files
from graphmill.util.interrupts import TerminateAsInterrupt


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_between_the_renames_waits_until_both_files_are_in_place(tmp_path, monkeypatch, signum):
    """An interrupt after the weights file was renamed left the old model reading the new weights (an outside
    check). Now the signal waits for the renames: both files are new, then the interrupt is raised."""
    model, weights = tmp_path / "m.onnx", tmp_path / "m.onnx.data"
    files.atomic_write_many([(str(weights), b"old weights"), (str(model), b"old model")])
    real = os.replace
    calls = []

    def replace_then_interrupt(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signum)  # Ctrl-C (or kill) right after the first rename

    monkeypatch.setattr(files.os, "replace", replace_then_interrupt)
    with TerminateAsInterrupt() as term, pytest.raises(KeyboardInterrupt):  # SIGTERM as the CLI handles it
        files.atomic_write_many([(str(weights), b"new weights"), (str(model), b"new model")])
    assert term.terminated == (signum == signal.SIGTERM)
    assert len(calls) == 2
    assert (weights.read_bytes(), model.read_bytes()) == (b"new weights", b"new model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]  # no temporary left


def test_every_signal_held_is_replayed_in_order():
    """Two Ctrl-Cs under DeferredInterrupt (a training loop's: the first asks to stop after the step, the second
    raises at once): only the first was replayed, and the second, which must raise, was lost (a reviewer)."""
    from graphmill.util.interrupts import DeferredInterrupt, held_signals

    with DeferredInterrupt() as stop, pytest.raises(KeyboardInterrupt):
        with held_signals():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            assert not stop.requested  # held: nothing happened yet
    assert stop.requested


@pytest.mark.parametrize("after_call, signum", [(1, signal.SIGTERM), (3, signal.SIGINT)])
def test_a_signal_between_the_swaps_leaves_every_handler_as_it_was(monkeypatch, after_call, signum):
    """A SIGTERM right after Ctrl-C's handler was swapped in (call 1), or a Ctrl-C right after its own was put
    back (call 3): the real handler raised between the two swaps and left the holding handler installed for
    good, so every later Ctrl-C (or `kill`) was silently held (a reviewer, with signal.signal wrapped to land
    the signal there, as here). Reference: the handlers installed before the block."""
    from graphmill.util.interrupts import held_signals

    real, calls = signal.signal, []

    def signal_then_a_signal(s, handler):
        old = real(s, handler)
        calls.append(s)
        if len(calls) == after_call:
            os.kill(os.getpid(), signum)
        return old

    def sigterm_raises(signum, frame):  # a handler that raises at once (the default Ctrl-C's does too)
        raise KeyboardInterrupt

    old_term = real(signal.SIGTERM, sigterm_raises)
    try:
        before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        monkeypatch.setattr(signal, "signal", signal_then_a_signal)
        with pytest.raises(KeyboardInterrupt):
            with held_signals():
                pass
        monkeypatch.setattr(signal, "signal", real)
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
        assert len(calls) >= after_call
    finally:
        real(signal.SIGTERM, old_term)


def test_ctrl_c_and_sigterm_held_together_both_act():
    """The replay stopped at the first handler that raised: with a Ctrl-C and a SIGTERM held together, the
    SIGTERM was dropped, so `graphmill` exited 130 where a `kill` asks for 143 (a reviewer). Reference:
    TerminateAsInterrupt's flag, which the CLI's exit status reads."""
    from graphmill.util.interrupts import held_signals

    with TerminateAsInterrupt() as term:
        with pytest.raises(KeyboardInterrupt):
            with held_signals():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
        assert term.terminated


def test_a_killed_writes_temporary_is_removed_by_the_next_write_of_that_file(tmp_path):
    """A write killed with SIGKILL cannot remove its temporary: ``.out.onnx.XXXX.tmp``, 50-100 MB of a half-written
    model, stayed beside the output (an outside check). Reference: the folder's listing, with a writer killed for
    real (a child process given SIGKILL while its temporary is open) and a live writer's temporary left alone."""
    import subprocess
    import sys

    out = tmp_path / "out.onnx"
    code = ("import os, sys, time; from graphmill.util import files\n"
            "def forever():\n    yield b'x' * 1000\n    print('writing', flush=True)\n    time.sleep(600)\n    yield b''\n"
            f"files.atomic_write_many([({str(out)!r}, forever())])\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.kill()
    child.wait()
    left = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    host = files.host_tag()
    assert len(left) == 1 and left[0].startswith(f".out.onnx.{host}.{child.pid}.")  # the premise: SIGKILL leaves it
    live = tmp_path / f".out.onnx.{host}.{os.getpid()}.abcdefgh.tmp"  # a write under way in a live process
    live.write_bytes(b"partial")
    other = tmp_path / f".other.onnx.{host}.{child.pid}.abcdefgh.tmp"  # another file's: not this write's to remove
    other.write_bytes(b"partial")
    files.atomic_write_bytes(out, b"model")
    assert out.read_bytes() == b"model"
    assert sorted(os.listdir(tmp_path)) == sorted(["out.onnx", live.name, other.name])



def test_stale_temporaries_of_other_names_hosts_or_impossible_pids_are_left_alone(tmp_path):
    """Review: a file named ``out.onnx.40000`` has temporaries ``.out.onnx.40000.HOST.PID.XXXXXXXX.tmp`` that the
    old pattern took for ``out.onnx``'s; another host's pid says nothing here; a pid os.kill cannot take made every
    write fail with an OverflowError traceback. Reference: the folder's listing."""
    host = files.host_tag()
    keep = [f".out.onnx.40000.{host}.{2**22 + 1}.abcdefgh.tmp",  # another file's temporary
            f".out.onnx.otherhost.{2**22 + 1}.abcdefgh.tmp",  # another machine's
            f".out.onnx.{host}.99999999999999999999.abcdefgh.tmp"]  # no pid this machine has
    for name in keep:
        (tmp_path / name).write_bytes(b"x")
    files.atomic_write_bytes(tmp_path / "out.onnx", b"model")
    assert sorted(os.listdir(tmp_path)) == sorted(keep + ["out.onnx"])
