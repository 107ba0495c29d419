"""Top-level evaluators for the runner tests (importable by worker processes and by the kill -9 script)."""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

from graphmill import search


def small_space() -> search.Space:
    return search.Space({
        "op": search.Choice(["conv", "dwconv", "mbconv"]),
        "expand": search.Choice([1, 3, 6], when={"op": "mbconv"}),
        "k": search.Choice([3, 5]),
        "depth": search.Int(1, 5),
        "lr": search.Float(1e-3, 1e-1, log=True),
    })


def score(c: dict) -> float:
    r = {"conv": 0.0, "dwconv": 0.3, "mbconv": 0.5}[c["op"]] + 0.05 * c.get("expand", 0)
    return r + 0.2 * (c["k"] == 5) - 0.1 * abs(c["depth"] - 3) - 0.1 * abs(math.log10(c["lr"]) + 2)


def evaluate(c: dict) -> dict:
    if c["depth"] == 5 and c["op"] == "conv":
        raise RuntimeError("this candidate crashes")
    return {"reward": score(c), "accuracy": 0.5 + score(c) / 4, "latency": 1.0 + c["depth"] + c.get("expand", 0)}


def evaluate_slowly(c: dict) -> dict:
    time.sleep(float(os.environ.get("GM_EVAL_SLEEP", "0.05")))
    return evaluate(c)


def sleep_for_a(c: dict) -> float:
    time.sleep(c["a"])
    return float(c["a"])


def exits_when_a_is_1(c: dict) -> float:
    """An evaluator that calls ``sys.exit`` for one configuration."""
    if c["a"] == 1:
        sys.exit(3)
    return float(c["a"])


def retries_past_its_timeout(c: dict) -> float:
    """An evaluator whose retry loop catches every ``Exception``, as training code often does."""
    if c["a"] == 1:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            try:
                time.sleep(0.05)
            except Exception:  # noqa: BLE001 -- the point: it swallows whatever it can
                pass
    return float(c["a"])


def sleep_and_log(c: dict) -> float:
    """``sleep_for_a`` that appends ``a`` to the file ``GM_EVAL_LOG`` names once the evaluation is done."""
    time.sleep(c["a"])
    with open(os.environ["GM_EVAL_LOG"], "a") as f:
        f.write(f"{c['a']!r}\n")
    return float(c["a"])


def record_pid_and_sleep(c: dict) -> dict:
    """``evaluate_slowly`` that first writes its process id into the folder ``GM_EVAL_PIDS`` names."""
    with open(os.path.join(os.environ["GM_EVAL_PIDS"], str(os.getpid())), "w"):
        pass
    return evaluate_slowly(c)


def running(pid: int) -> bool:
    """Whether process ``pid`` runs, read from the kernel's process table (a zombie, killed but not yet reaped by
    init, is dead all the same): the kill -9 tests' reference, independent of the pool's own watchdog."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def sleep_one_second(c: dict) -> float:
    time.sleep(1.0)
    return float(c["x"])


class StartsLate:
    """``sleep_for_a`` whose worker starts ``delay`` seconds late: unpickling it (in a spawned worker, before the
    worker can take an evaluation) sleeps, as a worker importing heavy modules on a loaded machine does."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __setstate__(self, state: dict) -> None:
        time.sleep(state["delay"])
        self.__dict__.update(state)

    def __call__(self, c: dict) -> float:
        return sleep_for_a(c)


def _cannot_load() -> None:
    raise RuntimeError("this evaluator cannot be loaded in a worker process")


class Unloadable:
    """An evaluate that pickles in the parent but cannot be unpickled in a worker (``_cannot_load`` raises), as
    when a spawned worker re-imports an unguarded script's main module and dies before its first evaluation."""

    def __call__(self, c: dict) -> float:
        return 0.0

    def __reduce__(self):
        return (_cannot_load, ())


def evaluate_and_edit(c: dict) -> dict:
    """``evaluate``, from an evaluator that edits its argument (rounds ``lr``, adds a key)."""
    out = evaluate(c)
    c["lr"] = round(c.pop("lr"), 1)
    c["note"] = "seen"
    return out


def numpy_metrics(c: dict) -> dict:
    """Metrics of numpy types, as an evaluator computing with numpy returns them."""
    return {"reward": score(c), "per_class": np.arange(3), "ok": np.bool_(True), "pair": (np.float32(0.5), 2),
            "nested": [np.int64(4), np.arange(2)], "big": np.zeros(300_000, np.float32)}
