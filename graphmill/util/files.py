"""User files in and out: bounded reads of what a user names, atomic writes of what graphmill produces.

Every file graphmill writes (models, reports, plots, reproducers, checkpoints) goes through the
atomic writers: a reader never sees a half-written file, and a failed write leaves nothing behind.

Every file a user names (models, accelerator and device TOMLs, SCALE-Sim .cfg and topology CSVs,
``.mill`` schedules, search space JSON) is read through :func:`read_user_file`: only a regular file
(``/dev/zero`` or a FIFO would be read forever), and at most a size limit, so a mistaken or hostile
path ends in one line instead of a hang or a MemoryError.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

from graphmill.util.errors import UserInputError
from graphmill.util.interrupts import held_signals
from graphmill.util.limits import size_text
from graphmill.util.processes import process_running


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def written_path(path: str) -> str:
    """The file a write to ``path`` lands in: ``path`` itself, or for a symbolic link its target, written
    through as ``open()`` and the shell's ``>`` do. The atomic rename replaced the link itself with a regular
    file (``latest.json -> run3/report.json`` stopped being a link, its target stale) and, as root,
    ``--json /dev/stdout`` replaced the system's ``/dev/stdout``. A link into ``/proc`` (``/dev/stdout`` is
    ``/proc/self/fd/1``: a process's open file, not a path to write) is refused."""
    hop = path
    for _ in range(40):  # the kernel's own limit on a chain of links
        if not os.path.islink(hop):
            return hop if hop == path else os.path.realpath(hop)
        hop = os.path.join(os.path.dirname(os.path.abspath(hop)), os.readlink(hop))
        if (os.path.realpath(os.path.dirname(hop)) + os.sep).startswith("/proc/"):
            raise UserInputError(f"{path}: is a link to a process's open file ({hop}), not a file to write; give a "
                                 "file name (a --json flag takes '-' for stdout)")
    raise UserInputError(f"{path}: too many levels of symbolic links")


def check_target(path: str) -> str:
    """The folder ``path`` will be written in (its link target's, see :func:`written_path`); a user error if it
    cannot be. Commands call it on every output before any work, so it tries the folder (a file created and
    removed): a folder that exists but refuses writes (permissions, a read-only or immutable mount; root passes
    ``os.access``) was found only when the report was written at the end, after the model beside it. A device or
    FIFO is refused: the atomic rename would replace it with a regular file (``-o /dev/null`` as root replaced
    the system's node)."""
    if not path:
        raise UserInputError("the output path is empty")
    if os.path.isdir(path):
        raise UserInputError(f"{path}: is a folder; give a file name")
    target = written_path(path)
    if os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):
        raise UserInputError(f"{path}: is not a regular file (a device, FIFO or socket); give a file name")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        # the nearest existing part: a file where a folder should be ("in.onnx/x.onnx") is not a missing folder
        part = folder
        while not os.path.exists(part) and os.path.dirname(part) != part:
            part = os.path.dirname(part)
        if os.path.exists(part) and not os.path.isdir(part):
            raise UserInputError(f"{path}: {part!r} is a file, not a folder")
        raise UserInputError(f"{path}: the folder {folder!r} does not exist")
    refused = _refuses_new_files(folder)
    if refused:
        raise UserInputError(f"{path}: cannot write in {folder!r} ({refused})")
    return folder


def _refuses_new_files(folder: str) -> str | None:
    """Why ``folder`` refuses a new file (a file created and removed: root passes ``os.access``), or None."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".graphmill-probe.", dir=folder)
    except OSError as e:
        return e.strerror or str(e)
    try:
        os.close(fd)
    finally:  # a Ctrl-C here must not leave the probe behind
        os.unlink(probe)
    return None


def check_output_paths(inputs: dict[str, Any], outputs: dict[str, Any], *, made: Any = None) -> None:
    """Refuse, before any work, output paths (flag -> path; None or '-' skipped) that cannot be written, that name
    one of the ``inputs`` (flag -> path: a netlist, an accelerator file, a policy) or the same file as another
    output. Why: a command writes its outputs at the end, so ``-o p.plc --json p.plc`` left the JSON report as
    p.plc (exit 0), ``--json myedge.toml --accel myedge.toml`` replaced the user's accelerator with a report, and
    ``train-policy -o p.npz --checkpoint p.npz`` deleted the policy with the finished checkpoint. ``made``: the
    ``--out`` folder the command creates; paths in it need no existing folder yet."""
    named = {flag: os.fspath(p) for flag, p in outputs.items() if p is not None and os.fspath(p) != "-"}
    made_real = os.path.realpath(os.fspath(made)) if made is not None else None
    seen: dict[str, str] = {}
    for flag, path in named.items():
        if made_real is not None and os.path.realpath(path) == made_real:  # found only after the run, by open()
            raise UserInputError(f"{flag} {path}: is the folder the command creates ({os.fspath(made)}); give a "
                                 "file name")
        if os.path.realpath(os.path.dirname(os.path.abspath(path))) != made_real:
            check_target(path)
        for iflag, src in inputs.items():
            if src is None:
                continue
            src = os.fspath(src)
            if os.path.realpath(path) == os.path.realpath(src) or (
                    os.path.exists(path) and os.path.exists(src) and os.path.samefile(path, src)):
                raise UserInputError(f"{flag} {path}: is the input {src} ({iflag}); refusing to overwrite it, pick "
                                     "another output")
        real = os.path.realpath(path)
        if real in seen:
            raise UserInputError(f"{seen[real]} {named[seen[real]]} and {flag} {path} name the same file: one would "
                                 "overwrite the other; give each output its own path")
        seen[real] = flag


def check_inputs_outside(out: str | os.PathLike, inputs: dict[str, Any], names: tuple[str, ...], *,
                         flag: str = "--out") -> None:
    """Refuse an input file (flag -> path; None skipped) that is one of the ``names`` a command writes in its
    ``out`` folder (a file, or anything in a folder, of that name): ``search --method nahas --accel
    runs/n/best_accel.toml --out runs/n`` replaced the accelerator it read with the one it found, exit 0."""
    folder = os.path.realpath(os.fspath(out))
    written = {os.path.join(folder, n) for n in names}
    for iflag, path in inputs.items():
        if path is None or not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
            continue
        real = os.path.realpath(os.fspath(path))
        if any(real == w or real.startswith(w + os.sep) for w in written):
            raise UserInputError(f"{iflag} {os.fspath(path)}: is a file {flag} {os.fspath(out)} gets written over "
                                 "by this command; keep inputs elsewhere")


def check_out_folder(path: str | os.PathLike, command: str, contents: str, *, flag: str = "--out",
                     lock: bool = True) -> str:
    """``path`` (as a string) if ``command`` may make it the folder it writes ``contents`` in: it may not exist
    yet (the caller creates it), but neither it nor its nearest existing parent may be a file, and it may not be
    empty. Checked before any work, so the refusal is one line naming the path and what is expected rather than
    ``os.makedirs``'s bare "File exists" after the work began."""
    shown = os.fspath(path)
    if not shown.strip():
        raise UserInputError(f"{flag} '': give a folder (an empty path would write into the current one)")
    if os.path.exists(shown) and not os.path.isdir(shown):
        raise UserInputError(f"{flag} {shown}: exists and is not a folder ({command} writes a folder: {contents})")
    above = os.path.dirname(os.path.abspath(shown))
    while not os.path.exists(above):  # the root exists
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise UserInputError(f"{flag} {shown}: {above} is a file, not a folder ({command} writes a folder: "
                             f"{contents})")
    # an existing folder that refuses new files was found at the first checkpoint, after a trial or 25 training
    # steps had run (an outside check); one not made yet is tried when it is made, before any work
    refused = _refuses_new_files(shown) if os.path.isdir(shown) else None
    if refused:
        raise UserInputError(f"{flag} {shown}: cannot write in it ({refused})")
    if lock and _held_folders is not None:  # lock=False: a folder written only if something fails (a reproducer)
        _lock_folder(shown, flag)
    return shown


@contextmanager
def no_empty_folder_left(path: str | os.PathLike) -> Iterator[None]:
    """A folder the work inside makes is removed again when the work leaves it empty (refused, failed or
    interrupted before its first file): ``supernet train`` whose first checkpoint could not be written left an
    empty OUT behind (an outside check), where ``train`` removed its own."""
    path = os.path.abspath(os.fspath(path))
    missing = []  # the folder and each parent the work will make (``--out a/b/sn``: three), innermost first
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    try:
        yield
    finally:
        for folder in missing:  # the parents too: they were left behind (a review)
            if not os.path.isdir(folder) or os.listdir(folder):
                break
            os.rmdir(folder)


#: the folders this command holds (real path -> the locked descriptor); None outside ``folder_locks``
_held_folders: dict[str, int] | None = None


@contextmanager
def folder_locks() -> Iterator[None]:
    """While a ``graphmill`` command runs, every folder ``check_out_folder`` approves is locked against another
    command writing it: two searches on one ``--out`` each evaluated every trial, interleaved history.jsonl
    (numbers 3-9 twice, with different rewards) and both exited 0 (an outside check). The lock is ``flock`` on a
    file in the temporary folder named after the folder's real path, so nothing is added to the folder and a
    killed command's lock goes with its process. The Python API takes none: a notebook that ran a search would
    otherwise hold its folder until it exits."""
    global _held_folders
    outer, _held_folders = _held_folders, ({} if _held_folders is None else _held_folders)
    try:
        yield
    finally:
        if outer is None:
            for fd in _held_folders.values():
                os.close(fd)
        _held_folders = outer


def _lock_folder(shown: str, flag: str) -> None:
    import fcntl
    import hashlib

    real = os.path.realpath(shown)
    if real in _held_folders:  # this command's own second check of its folder
        return
    try:
        locks = os.path.join(tempfile.gettempdir(), f"graphmill-locks-{os.getuid()}")
        os.makedirs(locks, mode=0o700, exist_ok=True)
        st = os.lstat(locks)
        # another user may have made that folder first (the temporary folder is everyone's): a folder of theirs, or
        # one they can write, would let them hold our locks or plant a link for us to create a file through (a
        # review); then there is no lock, as without a temporary folder
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            return
        if st.st_mode & 0o022:  # ours, made under a permissive umask or by hand: made private (a review)
            os.chmod(locks, 0o700)
        path = os.path.join(locks, hashlib.sha256(real.encode()).hexdigest()[:32] + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        own = os.fstat(fd)
        if not stat.S_ISREG(own.st_mode) or own.st_uid != os.getuid() or own.st_nlink != 1:
            # planted while the folder was open to others (someone else's file, held to deny us; a review): ours
            # to remove now that the folder is private, and made afresh
            os.close(fd)
            os.unlink(path)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError:  # no writable temporary folder: the check is a courtesy, not a condition of the work
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserInputError(f"{flag} {shown}: another graphmill command is writing this folder now (two would "
                             f"repeat each other's work and interleave its files); wait for it, or give another "
                             f"{flag}") from None
    _held_folders[real] = fd


def _kept_mode(path: str) -> int:
    """The permissions a written file gets: those of the file it replaces (a private 0600 model stayed private
    only until it was rewritten), else the usual ones."""
    try:
        st = os.stat(path)
    except OSError:
        return _default_mode()
    # a regular file's read/write/execute bits only: no setuid, setgid or sticky bit, and not a FIFO's mode
    return stat.S_IMODE(st.st_mode) & 0o777 if stat.S_ISREG(st.st_mode) else _default_mode()


def host_tag() -> str:
    """This machine's name as a temporary's name carries it (letters, digits and '-' only)."""
    import socket

    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"


def remove_stale_temporaries(folder: str, name: str) -> list[str]:
    """Remove the temporaries of writes of ``name`` in ``folder`` whose process is gone; returns them.

    A write killed with SIGKILL (or a power cut) cannot remove its temporary, so a half-written ``.NAME.PID.*.tmp``
    stayed beside the destination for good (an outside check: 50-100 MB of a half-written model). Each
    temporary names its writer's pid, and the next write of the same file removes those whose writer is dead;
    a live one (another write under way) is left alone, and so is a pid reused by an unrelated process. The name
    also carries the host (``.NAME.HOST.PID.XXXXXXXX.tmp``): on a shared folder (NFS, containers) another
    machine's pids mean nothing here, so only this host's temporaries are judged, and the random part is
    mkstemp's 8 characters, so a file named ``NAME.123`` never has its temporaries taken for this one's."""
    pattern = re.compile(re.escape(f".{name}.{host_tag()}.") + r"(\d+)\.[a-z0-9_]{8}\.tmp\Z")
    removed = []
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry)
        if m and not process_running(int(m.group(1))):
            try:
                os.unlink(os.path.join(folder, entry))
                removed.append(entry)
            except OSError:
                pass
    return removed


def atomic_write_many(files: list[tuple[str, bytes | list]]) -> None:
    """Write several files so that none is replaced unless all were written.

    Each goes to a temporary file in its destination folder (with the permissions of the file it replaces, else
    the usual ones, not mkstemp's 0600), is flushed to disk, and only then are they
    renamed into place, in order. On any failure the temporaries are removed.
    A file's content is bytes or a list of bytes-like chunks written in order.
    """
    temps: list[tuple[str, str, str]] = []  # (temporary, destination, the path as the caller named it)
    try:
        for shown, data in files:
            folder = check_target(shown)
            path = written_path(shown)
            remove_stale_temporaries(folder, os.path.basename(path))
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{host_tag()}.{os.getpid()}.",
                                           suffix=".tmp", dir=folder)
            except OSError as e:
                raise UserInputError(f"{shown}: cannot write in {folder!r} ({e.strerror})") from None
            temps.append((tmp, path, shown))
            try:
                with os.fdopen(fd, "wb") as f:
                    for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
                        f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, _kept_mode(path))
            except OSError as e:
                raise UserInputError(f"{shown}: cannot write ({e.strerror})") from None
        with held_signals():  # an interrupt between them left the old model reading the new weights
            for tmp, path, shown in temps:
                try:
                    os.replace(tmp, path)
                except OSError as e:
                    raise UserInputError(f"{shown}: cannot write ({e.strerror})") from None
    except BaseException:
        for tmp, _, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    atomic_write_many([(os.fspath(path), data)])


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8, atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_npz_arrays(path: str | os.PathLike) -> dict[str, Any]:
    """The arrays of an ``.npz`` a user gives, read without unpickling anything (``allow_pickle=False``);
    ``ValueError`` naming the first member that is no numeric array (numpy hands back a member that is no ``.npy``
    file as its raw bytes: a hostile policy file gave an AttributeError traceback, an outside check)."""
    import numpy as np

    with np.load(os.fspath(path), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
            raise ValueError(f"member {k!r} is not a numeric array")
    return arrays


JSON_NESTING_LIMIT = 64
"""Deepest nesting of lists and objects ``parse_json`` takes: graphmill's own files nest a few levels (a search
space's sub-spaces, a checkpoint's trials); what reads them recurses (``Space.from_json``, hashing a
configuration), and 480 nested sub-spaces, which parse, overflowed there with a 1,000-line traceback (a review)."""


class JsonTooDeep(ValueError):
    """``parse_json``'s refusal of a document nested deeper than ``JSON_NESTING_LIMIT``: a caller that words the
    two apart (a model's ``graphmill.meta``) tells it from malformed JSON."""


def json_nesting(value: Any, cap: int) -> int:
    """How deep lists and objects nest in a parsed JSON value, counted up to ``cap + 1`` (iteratively: the value
    may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= cap:
                stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


class JsonDuplicateKey(ValueError):
    """``parse_json``'s refusal of an object that names a key twice: ``json.loads`` keeps the last silently, so a
    space file's second ``"lr"`` replaced the first without a word (an outside check); RFC 8259 says names
    should be unique and leaves what a reader does with a repeated one open."""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonDuplicateKey(f"the key {key!r} appears twice in one object")
            seen.add(key)
    return out


def parse_json(data: str | bytes) -> Any:
    """``json.loads`` for what a user gives: a document nested deeper than ``JSON_NESTING_LIMIT`` (or than Python's
    parser recurses: 100,000 brackets), or an object naming a key twice, is a ``ValueError`` like any other
    malformed JSON, so the caller's one-line refusal says it, instead of a RecursionError traceback or the last
    value silently winning (outside checks)."""
    try:
        value = json.loads(data, object_pairs_hook=_object_without_duplicates)
    except RecursionError:
        raise JsonTooDeep("nested too deeply") from None
    if json_nesting(value, JSON_NESTING_LIMIT) > JSON_NESTING_LIMIT:
        raise JsonTooDeep(f"nested too deeply (more than {JSON_NESTING_LIMIT} levels)")
    return value


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> None:
    """Write ``data`` as JSON (non-JSON values through ``str``), atomically, ending in a newline."""
    atomic_write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


TEXT_FILE_LIMIT = 16 * 2**20
"""Most bytes of a text input (TOML, .cfg, topology CSV, .mill, JSON): real ones are a few KB."""

MODEL_FILE_LIMIT = 2**31 - 1
"""Most bytes of an ONNX model file: protobuf's own limit on one message (larger models keep their
weights in external data files, which are read tensor by tensor)."""

CHECKPOINT_LIMIT = 2**30
"""Most bytes of a search checkpoint graphmill reads back (JSON of every finished candidate)."""


def read_user_file(path: str | os.PathLike, limit: int, what: str, *,
                   error: type[UserInputError] = UserInputError) -> bytes:
    """The bytes of the user's file ``path``, refused in one line (``error``) unless it is a regular file
    of at most ``limit`` bytes (``what`` names what it should be, for the message).

    The file is opened without blocking (a FIFO would otherwise wait for a writer) and checked with
    ``fstat`` on the open descriptor, so a path swapped after a check cannot slip through; at most
    ``limit`` + 1 bytes are read, so a file that grows meanwhile is still refused. ``OSError`` (no such
    file, permission denied, and ``IsADirectoryError`` for a folder) propagates for the caller to word.
    """
    shown = os.fspath(path)
    fd = os.open(shown, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):  # an OSError, so each caller words it as it words other read failures
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), shown)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{shown}: not a regular file (a device, FIFO or socket); expected {what}")
        if st.st_size > limit:
            raise error(f"{shown}: {st.st_size:,} bytes, more than the {size_text(limit)} limit for {what}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        chunks: list[bytes] = []
        got = 0
        while got <= limit:  # the whole file in one read where it can be: joining chunks copied every byte again
            chunk = os.read(fd, min(limit + 1 - got, max(st.st_size + 1 - got, 2**16)))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    if got > limit:
        raise error(f"{shown}: more than the {size_text(limit)} limit for {what} (the file grew while read)")
    return b"".join(chunks)


def save_torch_checkpoint(path: str | os.PathLike, state: Any) -> None:
    """``torch.save(state)`` written atomically (a reader never sees half a checkpoint); ``state`` holds only
    tensors and plain data, so that ``load_torch_checkpoint`` reads it back with ``weights_only=True``."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_torch_checkpoint(path: str | os.PathLike, what: str, *, limit: int = CHECKPOINT_LIMIT) -> Any:
    """What ``torch.save`` wrote to ``path``, read with ``weights_only=True`` (tensors, numbers, strings, lists
    and dicts: graphmill never unpickles code from a file), or a one-line ``UserInputError`` saying what is wrong
    with the file in graphmill's words. torch's own messages run to several paragraphs and, for a damaged file,
    advise loading it with ``weights_only=False``: the one thing an untrusted file must never get.
    ``FileNotFoundError`` propagates for the caller to word (it knows whether a missing file is an error)."""
    import io
    import re
    import warnings

    import torch

    shown = os.fspath(path)
    try:
        data = read_user_file(path, limit, what)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise UserInputError(f"{shown}: cannot read {what} ({e.strerror or e})") from None
    if not data:
        raise UserInputError(f"{shown}: an empty file, not {what}")
    try:
        with warnings.catch_warnings():  # torch warns about a file's pickle protocol before refusing it
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unreadable file is the user's to fix
        text = str(e)
        wanted = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if "central directory" in text or "zip archive" in text:
            why = "damaged or cut short: not a complete torch.save archive"
        elif wanted:
            why = f"it asks for the Python object {wanted.group(1)}; graphmill loads only tensors and plain data"
        elif ("Weights only load failed" in text or "pickle" in text.lower() or "load key" in text
              or isinstance(e, (KeyError, EOFError, ValueError))):  # KeyError(101): text is read as opcodes
            why = "not a torch.save file of tensors and plain data"
        else:
            why = text.strip().splitlines()[0][:160] if text.strip() else type(e).__name__
        raise UserInputError(f"{shown}: not {what} ({why}); remove it or give another path to start afresh") from None
