"""Commands that write a folder (``--out DIR``) refuse an ``--out`` that is a file in one line naming the path and
what is expected (``graphmill.util.files.check_out_folder``, the one check they share), exit 2, nothing written.

Reference: the message written out by hand here; before the shared check ``search``, ``scale-search`` and ``demo``
said only "afile: File exists" (``os.makedirs``'s error)."""

from __future__ import annotations

import os

import pytest

from graphmill.cli import main


@pytest.mark.parametrize("argv, writer", [
    (["search", "--space", "mnasnet", "--budget", "1"], "search"),
    (["search", "--method", "nahas", "--budget", "1"], "search --method nahas"),
    (["search", "--method", "evanet", "--budget", "1"], "search --method evanet"),
    (["search", "--method", "autohas", "--budget", "1"], "search --method autohas"),
    (["scale-search", "--stub"], "scale-search"),
    (["demo"], "demo"),
    (["supernet", "train", "--steps", "1"], "supernet train"),
    (["train", "resnet18"], "train"),
])
def test_out_that_is_a_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys, argv, writer):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("kept")
    for out, says in (("afile", "--out afile: exists and is not a folder"),
                      (os.path.join("afile", "sub"), f"--out {os.path.join('afile', 'sub')}: "
                                                     f"{tmp_path / 'afile'} is a file, not a folder")):
        rc = main(argv + ["--out", out])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1, err
        assert says in err[0] and f"({writer} writes a folder: " in err[0], err
    assert os.listdir(tmp_path) == ["afile"] and (tmp_path / "afile").read_text() == "kept"


@pytest.mark.parametrize("argv", [
    ["search", "--space", "mnasnet", "--budget", "1"],
    ["search", "--method", "nahas", "--budget", "1"],
    ["search", "--method", "evanet", "--budget", "1"],
    ["search", "--method", "autohas", "--budget", "1"],
    ["scale-search", "--stub"],
    ["supernet", "train", "--steps", "1"],
    ["train", "resnet18", "--steps", "1"],
])
def test_an_existing_out_that_refuses_new_files_is_refused_before_any_work(tmp_path, monkeypatch, capsys, argv):
    """An outside check (a chmod 555 folder, root's override dropped): search ran a whole trial and supernet train
    25 steps before the first checkpoint failed. Reference: the folder's refusal, made here by a probe that fails
    there (as root the test cannot take the permission away); the README's "refused before any work"."""
    import tempfile

    out = tmp_path / "ro"
    out.mkdir()
    real = tempfile.mkstemp

    def refusing(*a, dir=None, **k):
        if dir is not None and os.path.realpath(dir) == os.path.realpath(out):
            raise PermissionError(13, "Permission denied")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", refusing)
    rc = main(argv + ["--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"graphmill {argv[0]}{' train' if argv[0] == 'supernet' else ''}: error: --out {out}: "
                               "cannot write in it (Permission denied)"], err
    assert os.listdir(out) == []


HOLDER = """
import sys, time
from graphmill.util.files import check_out_folder, folder_locks
with folder_locks():
    check_out_folder(sys.argv[1], "search", "its files")
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize("argv, writer", [
    (["search", "--space", "mnasnet", "--budget", "1"], "search"),
    (["supernet", "train", "--steps", "1"], "supernet train"),
    (["train", "resnet18", "--steps", "1"], "train"),
])
def test_a_folder_another_command_is_writing_is_refused(tmp_path, capsys, argv, writer):
    """Two searches on one --out each evaluated every trial, interleaved history.jsonl and both exited 0 (an
    outside check). Reference: a second process holding the folder as a command does (``folder_locks``); once
    it is gone the folder is free again, and one command's own second check of its folder passes."""
    import subprocess
    import sys

    from graphmill.util.files import check_out_folder, folder_locks

    out = tmp_path / "o"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        rc = main(argv + ["--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and f"--out {out}: another graphmill command is writing this folder" in err[0]
        assert not out.exists()
    finally:
        holder.communicate("\n", timeout=60)
    with folder_locks():
        assert check_out_folder(out, writer, "its files") == str(out)
        assert check_out_folder(out, writer, "its files") == str(out)


def test_a_reproducer_folder_is_not_locked(tmp_path):
    """``optimize`` writes its --reproducer-dir only when a pass fails, so parallel runs may share one; the folder
    lock refused the second as "writing this folder now" (a review). Reference: a second process holding the
    folder as a command holds its --out."""
    import subprocess
    import sys

    from tests.support.models import save_relu_model

    model = save_relu_model(tmp_path, "m.onnx")
    rep = tmp_path / "rep"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(rep)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["optimize", model, "-o", str(tmp_path / "o.onnx"), "--reproducer-dir", str(rep)]) == 0
    finally:
        holder.communicate("\n", timeout=60)


@pytest.mark.parametrize("plant", ["writable", "link"])
def test_a_lock_folder_others_can_write_is_made_private_and_links_are_not_followed(tmp_path, monkeypatch, plant):
    """The locks' folder is in the temporary folder, which every user shares: one others can write would let them
    hold our locks (a denial) or plant a link through which we create a file (a review). Ours is made private
    before use (another user's is not used: the test, running as one user, cannot make one), and a link in it is
    not followed. Reference: the folder's mode and the link's target, made here."""
    import hashlib
    import tempfile

    from graphmill.util.files import check_out_folder, folder_locks

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    locks = tmp_path / "tmp" / f"graphmill-locks-{os.getuid()}"
    locks.mkdir(parents=True)
    out = tmp_path / "o"
    victim = tmp_path / "victim"
    name = hashlib.sha256(os.path.realpath(out).encode()).hexdigest()[:32] + ".lock"
    if plant == "writable":  # ours but writable by others: made private before use (an attacker's: not used)
        os.chmod(locks, 0o777)
    else:  # our own folder, but a link in it: not followed
        os.chmod(locks, 0o700)
        os.symlink(victim, locks / name)
    with folder_locks():
        assert check_out_folder(out, "search", "its files") == str(out)
    assert not victim.exists()
    if plant == "writable":
        assert os.stat(locks).st_mode & 0o777 == 0o700


PLANTED_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


@pytest.mark.skipif(os.name != "posix" or os.getuid() != 0, reason="making another user's file needs root")
def test_a_lock_file_planted_by_another_user_is_replaced_not_obeyed(tmp_path, monkeypatch):
    """A lock file another user planted (and holds) while our locks' folder was open to others denied our command
    ("another graphmill command is writing this folder now") after the folder was made private (a review).
    Reference: the planted file's owner (uid 1234) and its holder, a second process."""
    import hashlib
    import subprocess
    import sys
    import tempfile

    from graphmill.util.files import check_out_folder, folder_locks

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    locks = tmp_path / "tmp" / f"graphmill-locks-{os.getuid()}"
    locks.mkdir(parents=True)
    os.chmod(locks, 0o777)
    out = tmp_path / "o"
    planted = locks / (hashlib.sha256(os.path.realpath(out).encode()).hexdigest()[:32] + ".lock")
    planted.write_text("")
    os.chown(planted, 1234, 1234)
    holder = subprocess.Popen([sys.executable, "-c", PLANTED_HOLDER, str(planted)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with folder_locks():
            assert check_out_folder(out, "search", "its files") == str(out)
        assert planted.stat().st_uid == os.getuid()
    finally:
        holder.communicate("\n", timeout=60)


def test_reproducer_dir_that_is_a_file_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """``optimize --reproducer-dir FILE`` said "File exists" only once a pass had failed (the folder is made
    then); now it is refused up front like every ``--out`` folder, even for a run that would not fail."""
    from tests.support.models import save_relu_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("kept")
    save_relu_model(tmp_path)
    rc = main(["optimize", "m.onnx", "-o", "o.onnx", "--reproducer-dir", "afile"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "--reproducer-dir afile: exists and is not a folder (optimize writes a folder: " in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["afile", "m.onnx"] and (tmp_path / "afile").read_text() == "kept"


@pytest.mark.parametrize("argv", [["search", "--space", "mnasnet"], ["search", "--method", "nahas"],
                                  ["search", "--method", "evanet"], ["search", "--method", "autohas"]])
def test_empty_out_is_refused_in_one_line(tmp_path, monkeypatch, capsys, argv):
    """``--out ''`` would write into the current folder: refused before any work (message written out here)."""
    monkeypatch.chdir(tmp_path)
    rc = main(argv + ["--budget", "1", "--out", ""])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--out '': give a folder" in err[0], err
    assert os.listdir(tmp_path) == []
