"""Ctrl-C between steps, not inside one: the one way long loops (supernet training, AutoHAS) stop and checkpoint;
signals held over a few steps that must all happen; SIGTERM handled as Ctrl-C, so that ``kill`` cleans up as Ctrl-C
does; and spawned worker processes stopped with the parent that an interrupt stops."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Callable, Iterator


#: what a place that handles Ctrl-C catches: numba wraps a KeyboardInterrupt that lands inside one of its callbacks
#: (``_numba_unpickle``) in a SystemError, so that a long `simulate` or chip placement, about 1 interrupt in 10, ended
#: in a traceback and exit 1 (an outside check); ``is_interrupt`` tells the two SystemErrors apart
INTERRUPTS = (KeyboardInterrupt, SystemError)


def is_interrupt(error: BaseException) -> bool:
    """A KeyboardInterrupt, or an error whose chain of causes holds one."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block ends, then act as they would have (the handlers in place are
    called): for a few steps that must all happen or none, as the renames of a model and its weights file
    (``files.atomic_write_many``: an interrupt between them left the old model reading the new weights, an outside
    check). Python's handlers run in the main thread whichever thread the signal reaches, so
    they are swapped, not the threads' signal masks; elsewhere than the main thread nothing is held.

    A signal can come between two swaps, where the real handler may raise: the holding handler then forwards
    to the real one once the block has ended (so one left installed behaves as the original), the swaps in are
    undone whatever raised, and the swaps back happen each whatever the other raised. Every held signal is
    replayed, in order, before the first exception a replay raised: a Ctrl-C and a SIGTERM held together
    mark the SIGTERM (exit 143) though the Ctrl-C's replay raised first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    before: dict[int, Any] = {}
    active = [True]

    def hold(signum: int, frame) -> None:
        if active[0]:
            caught.append(signum)
        else:  # a swap back was cut short by another signal's handler: act as the original
            _deliver(signum, before.get(signum, signal.SIG_DFL), frame)

    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            old = signal.getsignal(s)  # known before the swap: a signal right after it finds it to put back
            before[s] = old if old is not None else signal.SIG_DFL  # installed outside Python: the default
            signal.signal(s, hold)
        yield
    finally:
        active[0] = False
        try:
            _restore(list(before.items()))
        finally:
            error: BaseException | None = None
            for signum in caught:
                try:
                    _deliver(signum, before[signum], None)
                except BaseException as e:  # noqa: BLE001 -- raised after the others are replayed
                    error = error or e
            if error is not None:
                raise error


def _restore(handlers: list[tuple[int, Any]]) -> None:
    """Put each handler back, each even when putting back an earlier one let a signal's handler raise."""
    if not handlers:
        return
    (s, handler), rest = handlers[0], handlers[1:]
    try:
        signal.signal(s, handler)
    finally:
        _restore(rest)


def _deliver(signum: int, handler: Any, frame) -> None:
    """Act on ``signum`` as ``handler`` would: call it, or for the default end the process as the signal does."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


class DeferredInterrupt:
    """While active (in the main thread, where Ctrl-C raises KeyboardInterrupt), a first Ctrl-C only sets
    ``requested``: the loop finishes the step under way, checkpoints it and stops, so the resumed run repeats no
    step (a KeyboardInterrupt inside a step would leave its weights half-updated, and the steps since the last
    checkpoint would be trained again). A second Ctrl-C raises at once (the last checkpoint stands).

    Where Ctrl-C is ignored (a background job of a script, ``nohup``) it stays ignored, but a SIGTERM under
    ``TerminateAsInterrupt`` is still deferred to the end of the step: it used to raise at once there, so a
    ``kill`` of a background training lost the step under way, or before the first checkpoint the whole run (an
    outside check)."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._old = signal.signal(signal.SIGINT, self._handler)
            _DEFERRALS.append(self)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        if threading.current_thread() is threading.main_thread() and self in _DEFERRALS:
            _DEFERRALS.remove(self)  # one entry per entry: an instance entered twice is left twice


#: the active ones, outermost first: a SIGTERM goes to the outermost, where a Ctrl-C goes (an inner one finds
#: the outer's handler installed and installs none)
_DEFERRALS: list[DeferredInterrupt] = []


_SIGTERM_RECEIVED = False


def sigterm_received() -> bool:
    """Whether the ``TerminateAsInterrupt`` entered last in this process has handled a SIGTERM: a command that says how it stopped
    says "terminated" then, not "interrupted" (a search stopped by ``kill`` said it was interrupted)."""
    return _SIGTERM_RECEIVED


class TerminateAsInterrupt:
    """While active (in the main thread), SIGTERM is handled as Ctrl-C is at that moment: ``kill PID``, a job
    scheduler's stop or a CI timeout then cleans up as Ctrl-C does (a save's temporary file removed, a training
    loop's step finished and checkpointed) instead of the interpreter dying at once and leaving a hidden
    ``.OUT.tmp`` beside the output. ``terminated`` says whether one came (``graphmill`` then exits 143).

    A process forked while this is active inherits the handler; there it restores the default and ends as a
    SIGTERM would, so a pool's ``terminate()`` still ends its workers."""

    def __init__(self) -> None:
        self.terminated = False
        self._old = None
        self._pid = os.getpid()

    def _handler(self, signum, frame) -> None:
        if os.getpid() != self._pid:  # a forked worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        global _SIGTERM_RECEIVED
        self.terminated = _SIGTERM_RECEIVED = True
        on_interrupt = signal.getsignal(signal.SIGINT)
        if callable(on_interrupt):  # Python's own (raises KeyboardInterrupt) or DeferredInterrupt's
            on_interrupt(signal.SIGINT, frame)
        elif _DEFERRALS:  # Ctrl-C ignored (a background job): the deferral still finishes the step under way
            _DEFERRALS[0]._handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> "TerminateAsInterrupt":
        global _SIGTERM_RECEIVED
        _SIGTERM_RECEIVED = False  # a command run in-process after another (tests) starts afresh
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None


@contextlib.contextmanager
def ctrl_c_ignored_by_started_processes() -> Iterator[None]:
    """Processes exec'd in the block (multiprocessing's spawn) inherit SIGINT ignored: a disposition of SIG_IGN
    survives exec (a Python handler does not), and Python then installs no KeyboardInterrupt handler of its own, so
    a terminal's Ctrl-C cannot end them with a traceback while they import; their parent stops them. For a block
    of milliseconds (one ``Process.start()``; not one whose pickled arguments outlast the pipe's buffer, which
    lasts as long as the child's imports: ``partition --run``'s stage graphs took 5.6 s, and ``start_spawned``
    hands such arguments over in a file): inside ``held_signals``, a
    SIGTERM meanwhile acts when the block ends and both handlers are put back whatever a signal raised, but a Ctrl-C
    meanwhile is lost (ignored, as the children must have it). No signal mask is changed: a mask survives exec
    too, and a SIGINT blocked for life in the workers and all they start was the first version's flaw (a
    review). Outside the main thread nothing is done; on Windows, whose spawned processes inherit no disposition,
    the children are as before."""
    if threading.current_thread() is not threading.main_thread():  # signal.signal works in the main thread only
        yield
        return
    with held_signals():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # held_signals puts the original handler back at the end
        yield


def start_spawned(mp: Any, fn: Callable[..., None], args: tuple, nprocs: int, folder: str, *,
                  passed: tuple = ()) -> Any:
    """``mp.start_processes(fn, args + passed, nprocs, join=False, start_method="spawn")`` (``mp``:
    ``torch.multiprocessing``) that a Ctrl-C cannot end with the children's tracebacks: ``args`` (stage graphs,
    data: megabytes) go in a file of ``folder`` (a private temporary folder; written here, read back by the
    children, never anyone else's file) instead of the pipe, so that each start takes milliseconds rather than
    the children's imports (a pickled payload over the pipe's buffer waits for the child to read it), and the
    starts run inside ``ctrl_c_ignored_by_started_processes``: the children ignore Ctrl-C for life and their
    parent stops them (``join_or_stop``), and die with it when it is killed (``processes.die_with_parent``, given
    this process's id: a ``kill -9`` left ``partition --run``'s stages blocked on each other for good, and one
    during their imports still did when each asked its parent's id after them; outside checks). ``passed``: what
    must go through the start itself (a multiprocessing queue), appended to ``args``."""
    import pickle

    path = os.path.join(folder, "spawned-args.pickle")
    with open(path, "wb") as f:
        pickle.dump((fn, args), f, protocol=pickle.HIGHEST_PROTOCOL)
    with ctrl_c_ignored_by_started_processes():
        return mp.start_processes(_run_from_file, args=(path, os.getpid(), *passed), nprocs=nprocs, join=False,
                                  start_method="spawn")


def _run_from_file(rank: int, path: str, parent: int, *passed: Any) -> None:
    import pickle

    from graphmill.util.processes import die_with_parent

    die_with_parent(parent)  # first: the arguments' unpickling imports graphmill and torch (seconds)
    with open(path, "rb") as f:
        fn, args = pickle.load(f)  # graphmill's own file, written by the parent just before (start_spawned)
    fn(rank, *args, *passed)


def join_or_stop(ctx: Any, tick: Callable[[], None] | None = None, poll_s: float = 0.2) -> None:
    """Wait for the processes of ``ctx`` (``torch.multiprocessing.start_processes(..., join=False)``), calling
    ``tick`` between waits; a failing process raises as ``ctx.join`` does. Interrupted (a Ctrl-C or SIGTERM that
    reached the parent alone, as ``kill PID`` does), the processes are terminated and reaped before the interrupt
    goes on: they are not daemons, so the parent printed 'terminated' and then waited for them at exit, without
    end (a pipeline's last stage blocked on its full progress pipe)."""
    try:
        while not ctx.join(timeout=poll_s):
            if tick is not None:
                tick()
    except BaseException:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.terminate()
        for proc in ctx.processes:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        raise
