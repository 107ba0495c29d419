"""``run``: drive a strategy against an evaluator on an executor, with dedup, budget, checkpoints and progress.

The loop keeps ``workers`` evaluations in flight: it asks the strategy for a configuration; a configuration
already evaluated (same ``space.key``) is answered from the history (told to the strategy, never re-evaluated,
not counted against the budget); a new one is submitted. Each finished evaluation becomes a ``Trial`` (an
evaluator that raises, returns a non-finite reward or overruns ``timeout``, counted from the evaluation's
start in its worker, gives a failed trial and the search goes on), is told to the strategy, and the whole state is checkpointed atomically. With one worker the
sequence ask -> evaluate -> tell -> checkpoint is deterministic, so a run killed at any point and rerun with the
same arguments ends with exactly the history of an uninterrupted run; evaluations that were in flight are
resubmitted first on resume and no finished one is repeated: each result is appended to a write-ahead journal
(``checkpoint.journal_append``) as it arrives, before any is told to the strategy and checkpointed, and a resumed run
answers a journaled configuration from the journal (a new trial, counted like the original) when it is
submitted again, so a kill while the checkpoint is being written costs no evaluation either.

If the strategy proposes only known configurations ``MAX_REPEATS`` (50) times in a row (a converged RL
controller), the runner proposes a random unseen configuration itself and tells it to the strategy, so the
budget is still spent; when the space has no unseen configuration left the run ends early. Once a quarter of a
finite space is known the limit is ``FEW_REPEATS`` (5): repeats are then likely from any strategy, and each one
costs an ask and a tell (TPE's grows with every trial told: on a space of 260, 150 evaluations took 224 s, an
outside check). No benchmark table of the README reaches a quarter of its space (200 of 1,008 at most).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from graphmill.search import checkpoint as ckpt
from graphmill.search.executors import Executor, make
from graphmill.search.executors.base import finite_or_none, not_a_number
from graphmill.search.space import Space, check_root
from graphmill.search.strategies.base import rng_from_state, rng_state, strategy_class
from graphmill.util.errors import UserInputError
from graphmill.util.files import atomic_write_text, check_target

MAX_REPEATS = 50
FEW_REPEATS = 5
#: local worker processes at most: each is a Python process with the evaluator loaded (~40 MB and up), and
#: --workers 100000 started processes until the machine stalled (an outside check); a cluster is Ray's
MAX_LOCAL_WORKERS = 1024


@dataclass
class Trial:
    """One finished evaluation. ``reward`` is None when ``status == "failed"`` (``error`` says why)."""

    number: int
    config: dict
    key: str
    reward: float | None
    status: str
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict:
        d = {"number": self.number, "config": self.config, "key": self.key, "reward": self.reward,
             "status": self.status, "metrics": self.metrics, "seconds": self.seconds}
        if self.error is not None:
            d["error"] = self.error
        return d

    @staticmethod
    def from_json(d: dict) -> "Trial":
        """The trial ``to_json`` wrote; a ``ValueError`` for one no run writes (a damaged checkpoint: a NaN or text
        reward was resumed, and the run failed with a traceback once it had evaluated more)."""
        reward, status = d["reward"], d["status"]
        if status not in ("ok", "failed") or (reward is None) != (status == "failed"):
            raise ValueError(f"trial {d.get('number')!r}: status {status!r} with reward {reward!r}")
        if reward is not None and (not_a_number(reward) or finite_or_none(reward) is None):
            raise ValueError(f"trial {d.get('number')!r}: reward {reward!r} is not a finite number")
        if not isinstance(d["config"], dict) or not isinstance(d.get("metrics", {}), dict):
            raise ValueError(f"trial {d.get('number')!r}: its config and metrics must be objects")
        try:  # a run writes a non-finite metric as null (_jsonable): a NaN here reached results files as NaN
            json.dumps(d.get("metrics", {}), allow_nan=False)
        except ValueError:
            raise ValueError(f"trial {d.get('number')!r}: its metrics hold a number that is not finite") from None
        return Trial(number=int(d["number"]), config=d["config"], key=str(d["key"]),
                     reward=None if reward is None else float(reward), status=status, metrics=d.get("metrics", {}),
                     seconds=float(d.get("seconds", 0.0)), error=d.get("error"))


def recorded_figure_damage(history: Any, names: Sequence[str], *, required: bool,
                           minimum: float = -math.inf) -> tuple[Any, str, Any] | None:
    """``(trial number, name, value)`` of the first finished trial of a checkpoint's ``history`` whose figure
    ``name`` (of ``names``) is not a finite number >= ``minimum``; absent or null passes unless ``required`` (a run
    writes a non-finite figure as null). For a search method whose report reads those figures: the runner checks
    rewards, not what a method keeps in metrics (a cost of "cheap" or an accuracy of 'x' were tracebacks)."""
    for t in history if isinstance(history, list) else []:
        m = t.get("metrics") if isinstance(t, dict) and t.get("status") == "ok" else None
        for name in names if isinstance(m, dict) else ():
            v = m.get(name)
            if v is None and not required:
                continue
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and minimum <= v < math.inf):
                return t.get("number"), name, v
    return None


def restored_trials(state: dict, space: Space, checkpoint: str) -> list[Trial]:
    """The history of a checkpoint's ``state``, each trial checked (``Trial.from_json``; a configuration of
    ``space`` under its own key), or a one-line ``UserInputError`` calling the checkpoint damaged: an edited one
    was resumed, and the run died with a traceback after evaluating more, or reported a configuration the space
    does not hold as its best (outside checks). Read before anything else reads the history."""
    try:
        if not isinstance(state["history"], list):  # 'int' object is not iterable, said as the damage
            raise ValueError(f"history is {str(state['history'])[:40]}, not a list of trials")
        trials = [Trial.from_json(t) for t in state["history"]]
        for t in trials:
            try:
                if space.key(t.config) != t.key:
                    raise ValueError(f"trial {t.number}: its key is not its configuration's")
            except UserInputError as e:
                raise ValueError(f"trial {t.number}: {e}") from None
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as e:
        raise UserInputError(f"{checkpoint}: the checkpoint is damaged ({_damage(e)}); remove it to start "
                             "afresh") from None
    return trials


def _damage(e: Exception) -> str:
    return f"no {e}" if isinstance(e, KeyError) else str(e) or type(e).__name__


def _metric(t: Trial, name: str) -> float | None:
    v = t.reward if name == "reward" else t.metrics.get(name)
    return finite_or_none(v)


@dataclass
class SearchResult:
    """The outcome of ``run``: ``history`` (trials in evaluation order), ``best``, ``pareto(a, b)``."""

    space: Space
    strategy: str
    history: list[Trial]
    interrupted: bool = False
    exhausted: bool = False

    @property
    def best(self) -> Trial | None:
        """The trial of highest reward (the earliest on ties); None when no evaluation succeeded."""
        best = None
        for t in self.history:
            if t.status == "ok" and t.reward is not None and (best is None or t.reward > best.reward):
                best = t
        return best

    def best_so_far(self) -> list[float | None]:
        """Best reward after each trial (None before the first success), for plots and benchmarks."""
        out, best = [], None
        for t in self.history:
            if t.status == "ok" and t.reward is not None and (best is None or t.reward > best):
                best = t.reward
            out.append(best)
        return out

    def pareto(self, metric_a: str = "accuracy", metric_b: str = "latency", *,
               maximize: tuple[bool, bool] = (True, False)) -> list[Trial]:
        """The successful trials no other trial beats on both metrics (``"reward"`` or names in ``metrics``);
        by default ``metric_a`` is maximized and ``metric_b`` minimized. Sorted by ``metric_b``."""
        from graphmill.search.objectives import pareto_front

        return pareto_front(self.history, metric_a, metric_b, maximize=maximize)

    def to_json(self) -> dict:
        best = self.best
        return {"strategy": self.strategy, "trials": len(self.history), "interrupted": self.interrupted,
                "exhausted": self.exhausted, "best": best.to_json() if best else None,
                "history": [t.to_json() for t in self.history]}


def _history_line(trial: Trial | dict) -> str:
    return json.dumps(trial if isinstance(trial, dict) else trial.to_json(), allow_nan=False) + "\n"


def write_history_jsonl(path: str, trials: list[Trial | dict]) -> None:
    """``trials`` as JSON lines (one ``Trial.to_json()`` per line; a method's own rows, dicts, as they are),
    written atomically."""
    atomic_write_text(path, "".join(_history_line(t) for t in trials))


def append_history_jsonl(path: str, trial: Trial | dict) -> None:
    """One more line of ``write_history_jsonl``'s file, for a file that follows a run (``tail -F``)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(_history_line(trial))


class HistoryFollower:
    """history.jsonl as a run goes (``tail -F``), the one way ``graphmill search`` and its methods write it:
    rewritten whole at a call's first result (the resumed trials with it, whatever a killed run left in it), then
    one appended line per result. ``lines``: the trials the file holds, as this call wrote it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines = 0

    def add(self, row: Trial | dict, everything: Callable[[], list[Trial | dict]]) -> bool:
        """Record ``row``; ``everything()`` gives all trials so far, ``row`` the newest (asked for at the first
        result only). True when ``row`` is this call's first (the caller then says whether the run resumed)."""
        first = self.lines == 0
        if first:
            rows = everything()
            write_history_jsonl(self.path, rows)
            self.lines = len(rows)
        else:
            append_history_jsonl(self.path, row)
            self.lines += 1
        return first


def _check_int(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise UserInputError(f"{name}={v!r}: must be an integer >= {low}")
    return int(v)


def _fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def check_takes_a_config(evaluate: Callable, what: str) -> None:
    """Refuse an evaluator that cannot be called with one configuration dict: it failed every trial, each with a
    TypeError located in the executor's call, not in the user's file (an outside check). Callables whose signature
    Python cannot read (some builtins) are taken on trust."""
    try:
        signature = inspect.signature(evaluate)
    except (TypeError, ValueError):
        return
    try:
        signature.bind({})
    except TypeError as e:
        code = getattr(evaluate, "__code__", None)
        where = f" (defined at {code.co_filename}:{code.co_firstlineno})" if code is not None else ""
        raise UserInputError(f"{what}{where} cannot be called as evaluate(config): {e}; it takes the configuration "
                             "dict as its one argument") from None


def run(space: Space, evaluate: Callable[[dict], Any], *, strategy: str = "default", budget: int, seed: int = 0,
        workers: int = 1, executor: str | None = None, checkpoint: str | None = None,
        timeout: float | None = None, objective: Callable[[dict], float | None] | None = None,
        progress: bool | Callable[[dict], None] = True, ray_address: str | None = None,
        strategy_options: dict | None = None, fingerprint: Any = None) -> SearchResult:
    """Search ``space`` for the configuration of highest reward within ``budget`` evaluations.

    ``evaluate(config) -> float | dict`` (higher is better; a dict carries ``"reward"`` and metrics, or only
    metrics when ``objective(metrics) -> reward`` is given); a picklable top-level function for
    ``executor="local"``/``"ray"``. ``executor`` defaults to ``"inprocess"`` with one worker, ``"local"`` (a
    process pool) with more. ``checkpoint``: a JSON file written after every result and resumed from when it
    exists (same space, strategy, seed and options; a bigger ``budget`` continues a finished run).
    ``fingerprint``: JSON-able, whatever else must match for a checkpoint to be resumed (``evaluate`` itself is
    not compared: ``graphmill search`` passes its evaluator, objective, accelerator and proxy settings, so that a
    rerun with another evaluator into the same folder is refused instead of mixing two evaluators' rewards in one
    history); a checkpoint written with another one is refused, one written without one is not. ``progress``:
    True prints one line per finished trial to stderr, a callable receives a dict (``line``, ``trial``,
    ``count``, ``budget``, ``best``, ``rate``, ``eta``, and ``history``: every trial so far, resumed ones
    included; the runner's own list, which grows: copy it to keep it). ``budget`` also tells the strategy
    (``Strategy.budget``): the default strategy exploits in its last quarter. Ctrl-C stops cleanly: the
    checkpoint is current and the partial result comes back with ``interrupted=True``.
    """
    if not isinstance(space, Space):
        raise UserInputError(f"space must be a graphmill.search.Space, got {type(space).__name__}")
    check_root(space)
    if not list(space.params()) or space.size() == 0:  # as graphmill search refuses a space file without any
        raise UserInputError("the space has no parameters to search")
    if not callable(evaluate):
        raise UserInputError(f"evaluate {evaluate!r} is not callable")
    check_takes_a_config(evaluate, f"evaluate {getattr(evaluate, '__qualname__', evaluate)!r}")
    budget = _check_int("budget", budget, 0)
    workers = _check_int("workers", workers, 1)
    seed = _check_int("seed", seed, 0) if not isinstance(seed, (int, np.integer)) or seed < 0 else int(seed)
    if timeout is not None and (not isinstance(timeout, (int, float)) or not timeout > 0):
        raise UserInputError(f"timeout={timeout!r}: must be a number of seconds > 0")
    if executor is None:
        executor = "inprocess" if workers == 1 else "local"
    if executor == "local" and workers > MAX_LOCAL_WORKERS:
        raise UserInputError(f"workers={workers}: the local pool starts one process per worker, at most "
                             f"{MAX_LOCAL_WORKERS}; executor='ray' runs more on a cluster")
    options = dict(strategy_options or {})
    strat = strategy_class(strategy)(space, seed=seed, **options)
    strat.budget = budget

    history: list[Trial] = []
    by_key: dict[str, Trial] = {}
    pending: list[dict] = []
    waiting: list[dict] = []
    rng = np.random.default_rng([seed, 7919])
    repeats = 0
    space_json = space.to_json()
    if fingerprint is not None:
        try:
            fingerprint = json.loads(json.dumps(fingerprint, allow_nan=False))  # as the checkpoint will hold it
        except (TypeError, ValueError) as e:
            raise UserInputError(f"fingerprint={fingerprint!r} is not JSON-able: {e}") from None
    journal: dict[str, dict] = {}  # key -> Trial.to_json() of results journaled but not in the checkpoint
    fresh: dict[int, Trial] = {}  # token -> trial received and journaled, not yet recorded (receive)
    run_id = ""
    if checkpoint is not None:
        # before any evaluation: a checkpoint in a missing or read-only folder was refused at the first result,
        # which was lost (an outside check)
        check_target(os.fspath(checkpoint))
        state = ckpt.load(checkpoint)
        if state is not None and fingerprint is None and state.get("fingerprint") is not None:
            # resumed without one (from Python, of a folder `graphmill search` made): the checkpoint keeps its own,
            # which a later resume with another one is refused against (it was dropped, and then anything went)
            fingerprint = state["fingerprint"]
        run_id = ckpt.run_digest({"space": space_json, "strategy": strategy, "options": options, "seed": seed,
                                  "fingerprint": fingerprint})
        if state is not None:
            for what, mine in (("space", space_json), ("strategy", strategy), ("seed", seed), ("options", options)):
                if state.get(what) != mine:
                    # the options by name, the strategy and seed by value (a resume that left --strategy out
                    # was told only "its strategy differs"); a space is too long to print
                    differs = f"its {what} differs" if what == "space" else _differs(state.get(what), mine, what)
                    raise UserInputError(f"{checkpoint}: the checkpoint is of a different search ({differs}); use "
                                         "another path or remove it to start afresh")
            if fingerprint is not None and state.get("fingerprint", fingerprint) != fingerprint:
                raise UserInputError(f"{checkpoint}: the checkpoint is of a different search "
                                     f"({_differs(state['fingerprint'], fingerprint)}); use another path or "
                                     "remove it to start afresh")
            history = restored_trials(state, space, checkpoint)
            for t in history:
                by_key.setdefault(t.key, t)
            try:  # a checkpoint edited or damaged: one line before any evaluation, not a traceback after them
                strat.load_state_dict(state["strategy_state"])
                pending = list(state["pending"])
                waiting = list(state["waiting"])
                for what, configs in (("pending", pending), ("waiting", waiting)):
                    for c in configs:  # `pending: [1]` was refused at its evaluation, naming no file
                        try:
                            space.key(c)
                        except UserInputError as e:
                            raise ValueError(f"{what}: {e}") from None
                rng = rng_from_state(state["runner"]["rng"])
                repeats = int(state["runner"]["repeats"])
            except (KeyError, TypeError, ValueError, OverflowError, AttributeError, IndexError) as e:
                raise UserInputError(f"{checkpoint}: the checkpoint is damaged ({_damage(e)}); remove it to start "
                                     "afresh") from None
        journal = _journaled(space, checkpoint, run_id, by_key)
        ckpt.journal_rewrite(checkpoint, run_id, list(journal.values()))  # drops torn and other searches' lines

    def save() -> None:
        if checkpoint is None:
            return
        ckpt.save(checkpoint, {"space": space_json, "strategy": strategy, "options": options, "seed": seed,
                               "budget": budget, "history": [t.to_json() for t in history],
                               "pending": [c for c in pending], "waiting": waiting,
                               "strategy_state": strat.state_dict(),
                               "runner": {"rng": rng_state(rng), "repeats": repeats},
                               **({"fingerprint": fingerprint} if fingerprint is not None else {})})
        # the checkpoint has landed: the journal keeps what it lacks, results received and not yet recorded too
        ckpt.journal_rewrite(checkpoint, run_id, list(journal.values()) + [t.to_json() for t in fresh.values()])

    report = _progress(progress, budget)
    size = space.size()
    result = SearchResult(space, strategy, history)
    if executor != "inprocess":  # no more processes than evaluations left: --workers 8 started 8 for a budget of
        # 2, and a resume with one evaluation left started all of them (a review)
        workers = min(workers, max(1, budget - len(history)))
    exec_: Executor = make(executor, evaluate, workers=workers, timeout=timeout, ray_address=ray_address)
    in_flight: dict[int, tuple[dict, str, float]] = {}  # token -> (config, key, submitted at)
    ready: list[int] = []  # tokens answered from the journal, finished without an evaluation
    next_token = 0
    start = time.perf_counter()
    done_here = 0

    def submit(config: dict, key: str) -> None:
        nonlocal next_token
        if key in journal:
            ready.append(next_token)
        else:
            exec_.submit(next_token, config)
        in_flight[next_token] = (config, key, time.perf_counter())
        next_token += 1

    def tell_repeat(config: dict, t: Trial) -> None:
        strat.tell(config, t.reward if t.status == "ok" else None, t.metrics)

    busy = False  # inside record(): a Ctrl-C there leaves its trial half-recorded (the journal holds it)
    reported = len(history)  # trials with their progress line printed

    def record(token: int, outcome: tuple | None) -> None:
        """A finished evaluation (``outcome`` None: answered from the journal) into the history, the strategy,
        the checkpoint and the progress lines."""
        nonlocal done_here, busy
        busy = True
        config, key, _ = in_flight.pop(token)
        if outcome is None:  # answered from the journal: the evaluation finished before the kill
            trial = Trial.from_json({**journal.pop(key), "number": len(history), "config": config})
        elif token in fresh:  # made and journaled when it arrived (receive)
            trial = dataclasses.replace(fresh.pop(token), number=len(history))
        else:
            trial = _make_trial(len(history), config, key, outcome, objective)
            if checkpoint is not None:
                ckpt.journal_append(checkpoint, run_id, trial.to_json())  # before tell and checkpoint
        history.append(trial)
        by_key[key] = trial
        _remove_first(pending, config)
        strat.tell(config, trial.reward, trial.metrics)
        for c in [c for c in waiting if space.key(c) == key]:
            _remove_first(waiting, c)
            tell_repeat(c, trial)
        if outcome is not None:  # a journal's answer took no time here: counted, a resumed run's first line
            done_here += 1  # said 66 evals/s where its evaluations took 4 s each (an outside check)
        save()
        busy = False
        report_new()

    finished: list[tuple[int, tuple | None]] = []  # received from the executor, not yet recorded

    def receive(got: list[tuple[int, tuple | None]]) -> None:
        """Results as they arrive into ``finished``, each made a trial once (the objective runs once) and all
        journaled at once (one write), kept in the journal by every checkpoint save until recorded (``fresh``):
        recorded one by one, each behind the previous one's checkpoint save, a result waited unjournaled, and a
        ``kill -9`` then made the resumed run evaluate it again (an outside check: 2 workers, ppo's megabyte
        checkpoints)."""
        finished.extend(got)
        made = {token: _make_trial(len(history), in_flight[token][0], in_flight[token][1], outcome, objective)
                for token, outcome in got if outcome is not None and token in in_flight and token not in fresh}
        if checkpoint is not None and made:
            ckpt.journal_append(checkpoint, run_id, *(t.to_json() for t in made.values()))
        fresh.update(made)

    def record_finished() -> None:
        while finished:
            token, outcome = finished[0]
            if token in in_flight:
                record(token, outcome)
            finished.pop(0)

    def report_new() -> None:
        nonlocal reported
        while reported < len(history):
            reported += 1
            report(result, history[reported - 1], done_here, time.perf_counter() - start, len(in_flight))

    try:
        # evaluations in flight when the previous run stopped go first (the strategy already asked them), at most
        # `workers` at a time: a run resumed with fewer workers than it had keeps the rest queued (they stay in
        # `pending` for the checkpoint until they finish)
        queued = list(pending)
        while True:
            while queued and len(in_flight) < workers:
                c = queued.pop(0)
                submit(c, space.key(c))
            while len(in_flight) < workers and len(history) + len(in_flight) + len(queued) < budget \
                    and not result.exhausted:
                flying = {k for _, k, _ in in_flight.values()}
                if repeats >= (MAX_REPEATS if 4 * len(by_key) < size else FEW_REPEATS):
                    config = _unseen(space, rng, by_key, flying)
                    if config is None:
                        result.exhausted = True
                        break
                    repeats = 0
                else:
                    config = strat.ask()
                key = space.key(config)
                if key in by_key:
                    tell_repeat(config, by_key[key])
                    repeats += 1
                    if size != math.inf and len(by_key) >= size:
                        result.exhausted = True
                    continue
                if key in flying:
                    waiting.append(config)  # told when that evaluation finishes
                    repeats += 1
                    continue
                repeats = 0
                pending.append(config)
                submit(config, key)
            if not in_flight:
                break
            if ready:
                finished.extend((token, None) for token in ready)
                ready.clear()
            else:
                receive(exec_.wait(_next_deadline(exec_, in_flight, timeout)))
            now = time.perf_counter()
            if not finished and timeout:
                for token in list(in_flight):
                    t0 = exec_.started(token)  # the timeout counts from the evaluation's start in its worker
                    if t0 is not None and now - t0 > timeout + _GRACE:
                        exec_.abandon(token)
                        receive([(token, ("failed", f"timeout: no result after {timeout:g} s", now - t0))])
            record_finished()
    except KeyboardInterrupt:
        result.interrupted = True
        try:
            # evaluations that finished meanwhile (pool workers ignore Ctrl-C) are kept, not rerun: those received
            # but not recorded, and those already back (wait(0) returns one pass's worth: until nothing is left)
            while True:
                got = exec_.wait(0)
                if not got:
                    break
                receive(got)
            if not busy:
                record_finished()
            elif checkpoint is not None:  # a Ctrl-C inside record(): its trial is half-recorded (the journal
                # holds it or it runs again); the others are in the journal (receive), which a resumed run answers
                # from, unless the Ctrl-C came inside receive itself
                for token, outcome in finished:
                    if token in in_flight and outcome is not None and token not in fresh:
                        config, key, _ = in_flight[token]
                        ckpt.journal_append(checkpoint, run_id,
                                            _make_trial(len(history), config, key, outcome, objective).to_json())
            report_new()  # a trial recorded as Ctrl-C came gets its progress line too
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once (the journal holds every finished evaluation)
            pass
    finally:
        exec_.close()
    if size != math.inf and len(by_key) >= size:  # a budget equal to the space's size evaluates all of it too
        result.exhausted = True
    return result


_GRACE = 5.0


def _differs(was: Any, now: Any, path: str = "") -> str:
    """What differs between a checkpoint's fingerprint and this run's, for the refusal message: each differing
    leaf by its dotted path (``its settings.steps was 10, now 11``), not whole nested settings."""
    if isinstance(was, dict) and isinstance(now, dict):
        keys = [k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
        return "; ".join(_differs(was[k] if k in was else _DEFAULT, now[k] if k in now else _DEFAULT,
                                  f"{path}.{k}" if path else str(k)) for k in keys)
    shown = [("the default" if v is _DEFAULT else json.dumps(v)) for v in (was, now)]
    return f"its {path or 'fingerprint'} was {shown[0]}, now {shown[1]}"


_DEFAULT = object()  # an option the run did not give: the strategy's default (it was printed as null)
_START_POLL = 1.0  # seconds between looks at evaluations whose worker has not reported their start yet


def _next_deadline(exec_: Executor, in_flight: dict, timeout: float | None) -> float | None:
    """Seconds until the first started evaluation overruns ``timeout + _GRACE``; while some have not started,
    at most ``_START_POLL`` (their clock starts when their worker reports the start)."""
    if not timeout:
        return None
    now = time.perf_counter()
    starts = [exec_.started(token) for token in in_flight]
    waits = [t0 + timeout + _GRACE - now for t0 in starts if t0 is not None]
    if any(t0 is None for t0 in starts):
        waits.append(_START_POLL)
    return max(0.05, min(waits))


def _journaled(space: Space, checkpoint: str, run_id: str, by_key: dict) -> dict[str, dict]:
    """The trials of the checkpoint's journal that its history lacks, by key (valid ones of this search)."""
    out: dict[str, dict] = {}
    for d in ckpt.journal_read(checkpoint, run_id):
        try:
            t = Trial.from_json(d)
            if t.key != space.key(t.config):
                continue
        except Exception:  # a line this version cannot read: the configuration is evaluated again
            continue
        if t.key not in by_key:
            out.setdefault(t.key, t.to_json())
    return out


def _remove_first(items: list[dict], config: dict) -> None:
    for i, c in enumerate(items):
        if c == config:
            del items[i]
            return


def _unseen(space: Space, rng: np.random.Generator, by_key: dict, flying: set) -> dict | None:
    for _ in range(1000):
        c = space.sample(rng)
        k = space.key(c)
        if k not in by_key and k not in flying:
            return c
    if space.size() != math.inf:
        for c in space.enumerate():
            k = space.key(c)
            if k not in by_key and k not in flying:
                return c
    return None


def _make_trial(number: int, config: dict, key: str, outcome: tuple, objective) -> Trial:
    status, value, seconds = outcome
    if status != "ok":
        return Trial(number, config, key, None, "failed", {}, float(seconds), str(value))
    metrics: dict = {}
    error = None
    if isinstance(value, dict):
        metrics = {str(k): v for k, v in value.items() if k != "reward"}
    raw = value.get("reward") if isinstance(value, dict) else value
    if not_a_number(raw):  # `return acc > 0.5` or "0.93": float() would take both, silently
        return Trial(number, config, key, None, "failed", _jsonable(metrics), float(seconds),
                     f"evaluate returned the reward {raw!r} ({type(raw).__name__}): a reward is a number")
    if objective is not None:  # its error (a metric the evaluator did not return) fails this trial, not the run
        given = ({**metrics, "reward": value["reward"]} if "reward" in value else metrics) \
            if isinstance(value, dict) else {"reward": value}
        try:
            reward = objective(given)
        except Exception as e:
            reward, error = None, f"objective failed: {type(e).__name__}: {e}"
    elif not isinstance(value, dict):
        reward = value
    elif "reward" in value:
        reward = value["reward"]
    else:
        reward, error = None, "evaluate returned a dict without 'reward' (and no objective was given)"
    r = finite_or_none(reward)
    if r is None:
        return Trial(number, config, key, None, "failed", _jsonable(metrics), float(seconds),
                     error or f"the reward {reward!r} is not a finite number")
    return Trial(number, config, key, r, "ok", _jsonable(metrics), float(seconds))


METRIC_ARRAY_LIMIT = 1000  # elements of a numpy array metric kept as a list; larger ones as their summary text


def _numpy_to_json(v: Any) -> Any:
    """json.dumps's ``default`` for what evaluators return: numpy arrays as lists (they were kept as their str,
    "[0 1 2]"; an outside check), a large one as numpy prints it, summarized (the checkpoint is rewritten whole
    after every trial: 300,000 floats made it 35 MB; a review), numpy scalars as numbers."""
    if isinstance(v, np.ndarray):
        return v.tolist() if v.size <= METRIC_ARRAY_LIMIT else str(v)
    if isinstance(v, np.generic):
        return v.item()
    return float(v)


def _jsonable(metrics: dict) -> dict:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (np.ndarray, np.bool_)):
            v = _numpy_to_json(v)
        if isinstance(v, (bool, str)) or v is None:
            out[k] = v
        elif isinstance(v, (int, float, np.number)):
            f = float(v)
            out[k] = (int(v) if isinstance(v, (int, np.integer)) else f) if math.isfinite(f) else None
        elif isinstance(v, (list, tuple, dict)):
            try:
                out[k] = json.loads(json.dumps(v, allow_nan=False, default=_numpy_to_json))
            except (TypeError, ValueError):
                out[k] = str(v)
        else:
            out[k] = str(v)
    return out


def _progress(progress, budget: int):
    def report(result: SearchResult, trial: Trial, done_here: int, elapsed: float, flying: int) -> None:
        if not progress:
            return
        best = result.best
        rate = done_here / elapsed if elapsed > 0 else math.inf
        left = max(0, budget - len(result.history))
        eta = left / rate if rate > 0 else math.inf
        r = f"{trial.reward:.4g}" if trial.reward is not None else f"failed ({(trial.error or '')[:120]})"
        line = (f"[search] trial {len(result.history)}/{budget}  reward {r}  best "
                f"{best.reward:.4g}" if best else f"[search] trial {len(result.history)}/{budget}  reward {r}  best -")
        line += f"  {rate:.3g} evals/s  ETA {_fmt_time(eta)}"
        if callable(progress):
            progress({"line": line, "trial": trial, "count": len(result.history), "budget": budget,
                      "best": best.reward if best else None, "rate": rate, "eta": eta, "history": result.history})
        else:
            print(line, file=sys.stderr, flush=True)

    return report
