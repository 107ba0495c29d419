"""EvaNet: evolution of video modules whose children inherit their parent's trained weights (issue 15 item 4).

``graphmill search --method evanet --out DIR`` (``run`` below) evolves the modules of a small video network
(``_evanet_space``: 3-D / (2+1)-D / iTGM / pooling layers, temporal kernel sizes, widths, repeats) on a
generated task (``_evanet_task``: which of two shapes moves, and where to, in noisy 8 x 16 x 16 clips),
with ``graphmill.search``'s regularized evolution (population 8, sample 3 by default) on its executors.

**How a child gets its parent's weights.** The search's ``evaluate(config)`` sees only a configuration, so the
lineage travels in it: the space is a ``LineageSpace``, whose ``mutate`` returns the child with
``config["parent"]`` = the parent's ``Space.key``, and whose ``validate``/``key`` ignore that entry (an
architecture has one key whoever its parent is, and the search evaluates it once). Regularized evolution
mutates through the space, so it needs no change; random (initial) members have no ``parent``. Every
evaluation writes its trained weights to ``DIR/weights/<key>.npz`` (numpy arrays, loaded with
``allow_pickle=False``; with its validation accuracy and cumulative training steps) before its result is
returned, so a parent's file exists before any child of it can be proposed, in any worker process.
The evaluator (``EvaNetEvaluator``) is a picklable top-level dataclass: it rebuilds the child's ``ir.Graph``,
copies every parent tensor that fits (``inherit``: same shape copied, kernel axes centred and zero-padded or
cropped, channel axes cropped or padded; the rules are in ``_evanet_space``'s docstring), re-estimates the
BatchNormalization statistics of new channels (and every one from a layer where a max-pool appeared or went
onwards), and trains ``child_steps`` (default ``steps // 3``)
instead of ``steps`` from scratch, through the torch backend (Adam, batches of 32). A parent file that is
missing (removed by hand) makes the child train from scratch, and its trial says ``inherited: false``.

``DIR`` holds ``checkpoint.json`` (rerunning the same command resumes), ``job.json`` (the settings; a rerun
with different ones is refused), ``weights/``, ``history.jsonl`` (a line per trial as it finishes),
``evanet.png`` (validation accuracy vs MACs
of every evaluated network, and the training curves of inheriting children vs from-scratch members),
``best.onnx`` (the best network with its trained weights) and ``report.json``. With ``accel`` (a simulator
TOML) every trial also reports ``latency_ms`` (the simulator, batch 1) and the plot uses it instead of MACs.
Ctrl-C stops after the checkpoint of the last finished trial; ``history.jsonl`` and ``report.json`` are written
(``interrupted: true``) with the plot of the finished trials; ``best.onnx`` when the run completes. A Ctrl-C after
the last trial, while those are written, waits for them (a line says so; a second Ctrl-C stops at once).
"""

from __future__ import annotations

import io
import math
import os
import time
import zipfile
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from graphmill.search.methods._evanet_space import (LAYERS, PARENT, LineageSpace, architecture, build,
                                                    calibrate_new, describe, evanet_space, fit, inherit,
                                                    itgm_kernel, join_2plus1d, parameters, split_2plus1d)
from graphmill.search.methods._evanet_task import NUM_CLASSES, VideoTask, render, task_arrays
from graphmill.util.errors import UserInputError
from graphmill.util.files import atomic_write_bytes, check_out_folder, write_json
from graphmill.util.interrupts import DeferredInterrupt

__all__ = ["run", "OPTIONS", "DEFAULT_BUDGET", "VideoTask", "EvaNetEvaluator", "LineageSpace", "evanet_space",
           "build", "inherit", "fit", "split_2plus1d", "join_2plus1d", "calibrate_new", "parameters", "describe",
           "architecture", "itgm_kernel", "train_video", "steps_to_reach", "load_weights", "save_weights",
           "prepare_graph", "task_arrays", "render", "task_of", "heldout_accuracy", "inheritance_summary", "LAYERS",
           "PARENT", "NUM_CLASSES", "check_options"]

#: option -> default (``--option KEY=VALUE``); values are parsed to the default's type
OPTIONS: dict[str, Any] = {
    "steps": 200,          # training steps of a network trained from scratch (the initial population)
    "child_steps": 0,      # training steps of an inheriting child; 0: steps // 3
    "population": 8,       # regularized evolution's population (the first `population` trials are random)
    "sample": 3,           # its tournament size
    "batch": 32,
    "lr": 0.003,
    "eval_every": 20,      # validation accuracy every this many steps (the training curves)
    "modules": 3,          # searched video modules
    "frames": 8, "size": 16, "train": 2048, "val": 512, "test": 512, "noise": 0.4,   # the generated task
    "timeout": 0.0,        # seconds per evaluation (0: none)
}
DEFAULT_BUDGET = 24


def check_options(options: dict[str, str]) -> dict[str, Any]:
    """``options`` (strings from ``--option KEY=VALUE``, or already typed values) parsed and range-checked;
    an unknown key is a ``UserInputError`` naming the nearest valid one."""
    from graphmill.search.methods import parse_options

    out = parse_options(options, OPTIONS, "evanet")
    for k in ("steps", "population", "sample", "batch", "eval_every", "modules"):
        if out[k] < 1:
            raise UserInputError(f"--option {k}={out[k]}: must be >= 1")
    if out["child_steps"] < 0:
        raise UserInputError(f"--option child_steps={out['child_steps']}: must be >= 0 (0: steps // 3)")
    if out["child_steps"] == 0:
        out["child_steps"] = max(1, out["steps"] // 3)
    if not (math.isfinite(out["lr"]) and 0 < out["lr"] < 1):
        raise UserInputError(f"--option lr={out['lr']}: must be in (0, 1)")
    if not (math.isfinite(out["timeout"]) and out["timeout"] >= 0):
        raise UserInputError(f"--option timeout={out['timeout']}: must be >= 0 seconds")
    from graphmill.backends.torch.training.runner import MAX_BATCH

    if out["steps"] > 100000 or out["child_steps"] > 100000 or out["batch"] > MAX_BATCH:
        raise UserInputError(f"--option steps/child_steps <= 100000 and batch <= {MAX_BATCH:,} (a CPU proxy)")
    evanet_space(out["modules"])
    task_of(out).check()
    return out


def task_of(opts: dict[str, Any], seed: int = 0) -> VideoTask:
    return VideoTask(seed=int(seed), frames=int(opts["frames"]), size=int(opts["size"]), train=int(opts["train"]),
                     val=int(opts["val"]), test=int(opts["test"]), noise=float(opts["noise"]))


# -- training ---------------------------------------------------------------------------------------------------


def _tensors(task: VideoTask):
    import torch

    return tuple(torch.from_numpy(a) for a in task_arrays(task))


def _accuracy(module, x, y) -> float:
    from graphmill.backends.torch.training import accuracy

    return float(accuracy(module, x, y, chunk=256))


def train_video(graph, task: VideoTask, *, steps: int, batch: int = 32, lr: float = 3e-3, seed: int = 0,
                eval_every: int = 20, target: float | None = None, threads: int = 1) -> dict:
    """Train ``graph`` (in place: its initializers become the trained weights) on ``task``'s training clips.

    Adam, ``batch`` clips drawn with replacement by a generator seeded with ``seed``; the validation accuracy
    at step 0 and every ``eval_every`` steps (``curve``: ``[[step, accuracy], ...]``). With ``target`` the
    training stops at the first evaluation whose accuracy is >= ``target`` (``reached``: that step, else None).
    The torch backend's own loop has no step-0 point nor early stop, which the inheritance measurement needs.
    """
    import torch
    import torch.nn.functional as F

    from graphmill.backends.torch import export_weights, to_torch, weight_initializers
    from graphmill.search.oneshot.video import itgm_parameters

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    xtr, ytr, xva, yva, _, _ = _tensors(task)
    module = to_torch(graph, trainable=weight_initializers(graph) | itgm_parameters(graph))
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    module.eval()
    curve = [[0, _accuracy(module, xva, yva)]]
    reached = 0 if target is not None and curve[0][1] >= target else None
    step, t0, loss = 0, time.perf_counter(), float("nan")
    while step < steps and reached is None:
        module.train()
        idx = torch.randint(0, len(ytr), (batch,), generator=gen)
        out = module(xtr[idx])
        out = out[0] if isinstance(out, (tuple, list)) else out
        lossv = F.cross_entropy(out, ytr[idx])
        opt.zero_grad()
        lossv.backward()
        opt.step()
        loss = float(lossv.detach())
        step += 1
        if step % eval_every == 0 or step == steps:
            module.eval()
            curve.append([step, _accuracy(module, xva, yva)])
            if target is not None and curve[-1][1] >= target:
                reached = step
    module.eval()
    export_weights(module, graph)
    return {"accuracy": curve[-1][1], "curve": curve, "steps": step, "reached": reached, "loss": loss,
            "train_seconds": time.perf_counter() - t0}


def heldout_accuracy(graph, task: VideoTask) -> float:
    """Accuracy of ``graph`` (its current weights) on ``task``'s test clips."""
    from graphmill.backends.torch import to_torch

    _, _, _, _, xte, yte = _tensors(task)
    return _accuracy(to_torch(graph), xte, yte)


def save_weights(path: str, graph, *, accuracy: float, total_steps: int) -> None:
    """``graph``'s inheritable tensors as an ``.npz`` (no pickle), with its accuracy and cumulative steps."""
    arrays = dict(parameters(graph))
    arrays["__accuracy__"] = np.asarray(accuracy, np.float64)
    arrays["__total_steps__"] = np.asarray(total_steps, np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_weights(path: str) -> tuple[dict[str, np.ndarray], float, int]:
    """``(tensors, accuracy, total_steps)`` of a file ``save_weights`` wrote (``allow_pickle=False``); anything
    else is refused naming the file (a damaged one was a numpy traceback)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        acc = float(arrays.pop("__accuracy__"))
        total = int(arrays.pop("__total_steps__"))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise UserInputError(f"{path}: not a weights file of this search ({type(e).__name__}: {e})") from None
    return arrays, acc, total


def check_weights(path: str, arrays: dict[str, np.ndarray], graph) -> None:
    """``arrays`` hold every inheritable tensor of ``graph`` with its shape and type, or the file is refused:
    best.onnx was written from a damaged file with a tensor of the wrong shape (a model ONNX Runtime cannot run)
    or, a tensor missing, with that tensor's fresh initialization (an untrained model under the best's name)."""
    for name, want in parameters(graph).items():
        got = arrays.get(name)
        if got is None:
            raise UserInputError(f"{path}: tensor {name!r} is missing; the file does not hold this architecture's "
                                 "trained weights")
        if got.shape != want.shape or got.dtype != want.dtype:
            raise UserInputError(f"{path}: tensor {name!r} is {got.dtype}{list(got.shape)}, the architecture's is "
                                 f"{want.dtype}{list(want.shape)}")


def init_seed(key: str, seed: int) -> int:
    """The fresh initialization's seed: the architecture's key and the run's seed (the same in every process)."""
    return (int(key[:12], 16) + 1000003 * int(seed)) % (2 ** 32)


def prepare_graph(config: dict, task: VideoTask, *, modules: int, seed: int,
                  parent: dict[str, np.ndarray] | None) -> tuple[Any, str]:
    """The child's graph, freshly initialized, then (with ``parent``'s tensors) inheriting and with new
    BatchNormalization channels calibrated, else fully calibrated on 256 training clips. ``(graph, key)``."""
    import torch

    from graphmill.backends.torch.training import calibrate_batchnorm

    space = evanet_space(modules)
    arch = space.validate(architecture(config))
    key = space.key(arch)
    graph = build(arch, frames=task.frames, size=task.size, num_classes=NUM_CLASSES, seed=init_seed(key, seed))
    x = torch.from_numpy(task_arrays(task)[0][:256])
    if parent is not None:
        masks = inherit(graph, parent)
        calibrate_new(graph, x, masks)
    else:
        calibrate_batchnorm(graph, x)
    return graph, key


def steps_to_reach(curve: list, target: float) -> int | None:
    """The first step of ``curve`` whose accuracy is >= ``target`` (None: never)."""
    for s, a in curve:
        if a >= target:
            return int(s)
    return None


@dataclass
class EvaNetEvaluator:
    """``evaluate(config)`` of the search (picklable: workers and Ray run it): build, inherit or calibrate, train,
    save the weights under ``weights_dir``; the reward is the validation accuracy."""

    task: VideoTask
    weights_dir: str
    steps: int = 200
    child_steps: int = 100
    batch: int = 32
    lr: float = 3e-3
    eval_every: int = 20
    modules: int = 3
    seed: int = 0
    accel: str | None = None

    def __call__(self, config: dict) -> dict:
        from graphmill.search.evaluators.cost import cost_metrics

        parent_key = config.get(PARENT)
        parent = None
        parent_acc = None
        parent_total = 0
        if parent_key:
            path = os.path.join(self.weights_dir, f"{parent_key}.npz")
            if os.path.exists(path):
                parent, parent_acc, parent_total = load_weights(path)
        graph, key = prepare_graph(config, self.task, modules=self.modules, seed=self.seed, parent=parent)
        counts = graph.meta.get("inherited")
        steps = self.child_steps if parent is not None else self.steps
        r = train_video(graph, self.task, steps=steps, batch=self.batch, lr=self.lr, seed=self.seed,
                        eval_every=self.eval_every)
        total = parent_total + r["steps"]
        save_weights(os.path.join(self.weights_dir, f"{key}.npz"), graph, accuracy=r["accuracy"], total_steps=total)
        metrics: dict[str, Any] = {"reward": r["accuracy"], "accuracy": r["accuracy"],
                                   "test_accuracy": heldout_accuracy(graph, self.task), **cost_metrics(graph),
                                   "steps": r["steps"], "total_steps": total, "inherited": parent is not None,
                                   "parent": parent_key, "parent_accuracy": parent_acc,
                                   "start_accuracy": r["curve"][0][1], "curve": r["curve"],
                                   "arch": describe(architecture(config)), "train_seconds": r["train_seconds"]}
        if parent is not None:
            metrics["steps_to_parent"] = steps_to_reach(r["curve"], parent_acc)
            metrics["tensors"] = counts
        if self.accel is not None:
            from graphmill.search.evaluators.latency import simulated_latency

            metrics["latency_ms"] = simulated_latency(graph, self.accel)["latency"]
        return metrics


# -- the method ------------------------------------------------------------------------------------------------


def _job(opts: dict, seed: int, accel: str | None) -> dict:
    return {"method": "evanet", "seed": int(seed), "options": opts, "accel": os.path.abspath(accel) if accel else None}


def run(out: str, *, budget: int | None, seed: int, workers: int, executor: str | None,
        ray_address: str | None, accel: str | None, options: dict[str, str],
        progress: Callable[[str], None] | None) -> dict:
    """Run (or resume) EvaNet's weight-inheriting evolution into ``out`` (the module docstring says what it
    writes); everything is checked before anything is written. Returns the JSON-able summary."""
    from graphmill.search.runner import run as search_run
    from graphmill.util.files import TEXT_FILE_LIMIT, parse_json, read_user_file

    opts = check_options(options)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserInputError(f"--seed {seed!r}: must be a whole number >= 0")
    budget = DEFAULT_BUDGET if budget is None else budget
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise UserInputError(f"--budget {budget!r}: must be a whole number >= 1")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserInputError(f"--workers {workers!r}: must be a whole number >= 1")
    from graphmill.search.workflow import check_executor

    check_executor(executor, workers)
    if accel is not None:
        if not os.path.isfile(accel):
            raise UserInputError(f"--accel {accel}: no such file")
        from graphmill.backends.simulator.config import as_accel

        as_accel(accel)
    check_out_folder(out, "search --method evanet", "job.json, checkpoint.json, history.jsonl, weights/, "
                                                   "report.json, best.onnx and evanet.png")
    job = _job(opts, seed, accel)
    job_path = os.path.join(out, "job.json")
    if os.path.exists(job_path):
        import json

        try:
            old = parse_json(read_user_file(job_path, TEXT_FILE_LIMIT, "an evanet job file").decode("utf-8"))
        except (OSError, ValueError) as e:
            raise UserInputError(f"{job_path}: unreadable ({e}); remove {out} to start afresh") from None
        if not isinstance(old, dict):
            raise UserInputError(f"{job_path}: not an evanet job file; remove {out} to start afresh")
        if old != job:
            was = old.get("options", {})
            diff = sorted(k for k in set(was) | set(opts) if was.get(k) != opts.get(k))
            # with the values: child_steps changed with steps (its default, steps // 3) though not given
            parts = [f"options {', '.join(f'{k} ({was.get(k)!r} there, {opts.get(k)!r} now)' for k in diff)}"] \
                if diff else []
            if old.get("seed") != job["seed"]:
                parts.append(f"--seed {old.get('seed')} there, {job['seed']} now")
            if old.get("accel") != job["accel"]:
                parts.append(f"--accel {old.get('accel') or 'none'} there, {job['accel'] or 'none'} now")
            what = "; ".join(parts) or "settings"
            raise UserInputError(f"{out}: holds an evanet run with different settings ({what}); use another "
                                 "--out or remove it to start afresh")
    elif os.path.exists(os.path.join(out, "checkpoint.json")):
        # the search checkpoint records only the strategy's options: job.json is the record of the rest
        raise UserInputError(f"{out}: holds a checkpoint.json but no job.json (its settings); use another --out "
                             "or remove it to start afresh")
    task = task_of(opts, seed)
    space = evanet_space(opts["modules"])

    weights_dir = os.path.join(out, "weights")
    os.makedirs(weights_dir, exist_ok=True)
    write_json(job_path, job)
    evaluator = EvaNetEvaluator(task=task, weights_dir=os.path.abspath(weights_dir), steps=opts["steps"],
                                child_steps=opts["child_steps"], batch=opts["batch"], lr=opts["lr"],
                                eval_every=opts["eval_every"], modules=opts["modules"], seed=seed,
                                accel=os.path.abspath(accel) if accel else None)
    checkpoint = os.path.join(out, "checkpoint.json")

    from graphmill.search.runner import HistoryFollower

    history = HistoryFollower(os.path.join(out, "history.jsonl"))
    finished = [0]  # trials this call finished

    def report(d: dict) -> None:
        """history.jsonl follows the run, as ``graphmill search`` writes it (``HistoryFollower``): it was written
        only at the end, and a resumed run said nothing of the trials before (an outside check)."""
        if history.add(d["trial"], lambda: d["history"]) and progress is not None and len(d["history"]) > 1:
            progress(f"[evanet] resumed from {checkpoint}: {len(d['history']) - 1} trial(s) recorded before")
        finished[0] += 1
        if progress is None:
            return
        t = d["trial"]
        m = t.metrics
        if t.status == "ok":
            how = (f"inherited from {str(m.get('parent'))[:8]} ({m.get('steps')} steps, start "
                   f"{m.get('start_accuracy', 0):.3f})" if m.get("inherited") else f"scratch ({m.get('steps')} steps)")
            what = f"{m.get('arch')}  acc {t.reward:.3f}  {how}"
        else:
            what = f"failed ({(t.error or '')[:80]})"
        best = f"{d['best']:.3f}" if d["best"] is not None else "-"
        eta = d["line"].rsplit("ETA ", 1)[-1]
        progress(f"[evanet] trial {d['count']}/{d['budget']}  {what}  best {best}  ETA {eta}")

    result = search_run(space, evaluator, strategy="evolution", budget=budget, seed=seed, workers=workers,
                        executor=executor, checkpoint=checkpoint, timeout=opts["timeout"] or None,
                        progress=report, ray_address=ray_address,
                        strategy_options={"population": opts["population"], "sample": opts["sample"]})
    # seconds of writing (the plot, best.onnx, the report): a Ctrl-C there waits for them (a second one stops at
    # once), or the run that had finished would leave no report (an outside check: interrupted after the last
    # trial, exit 130, stdout empty, no report.json)
    with DeferredInterrupt() as ctrl_c:
        summary = _finish(out, result, task, opts, space, checkpoint)
    summary["new_trials"] = finished[0]
    if not finished[0] and not result.interrupted and progress is not None:  # said, as --space searches say it
        # (a rerun with a spent budget only printed the old best; an outside check)
        progress(f"[evanet] nothing evaluated: {checkpoint} already holds {len(result.history)} trial(s) for "
                 f"--budget {budget}; give a larger --budget to continue")
    if ctrl_c.requested and progress is not None:
        progress("[evanet] Ctrl-C came after the last trial: the outputs were written first, the run is complete")
    return summary


def _finish(out: str, result, task: VideoTask, opts: dict, space: LineageSpace, checkpoint: str) -> dict:
    from graphmill.search.runner import write_history_jsonl

    best = result.best
    best_graph = None
    path = os.path.join(out, "weights", f"{best.key}.npz") if best is not None else ""
    if best is not None and os.path.exists(path) and not result.interrupted:
        # read and checked before anything is written: a damaged file is refused with the outputs as they were
        from graphmill.ir import Tensor

        arrays, _, _ = load_weights(path)
        best_graph = build(architecture(best.config), frames=task.frames, size=task.size, num_classes=NUM_CLASSES)
        check_weights(path, arrays, best_graph)
        for name, v in best_graph.initializers.items():
            if name in arrays:
                v.const = Tensor(np.ascontiguousarray(arrays[name]), name=name)
    # what is there: a Ctrl-C during the first evaluation leaves no checkpoint (it was listed all the same)
    files = [f for f in ("checkpoint.json", "job.json", "weights/") if os.path.exists(os.path.join(out, f))]
    write_history_jsonl(os.path.join(out, "history.jsonl"), result.history)
    files.append("history.jsonl")
    if plot(os.path.join(out, "evanet.png"), result.history, task):  # interrupted: the finished trials' (as autohas)
        files.append("evanet.png")
    best_json = None
    if best is not None:
        m = best.metrics
        best_json = {"config": architecture(best.config), "arch": m.get("arch"), "accuracy": best.reward,
                     "test_accuracy": m.get("test_accuracy"), "macs": m.get("macs"), "params": m.get("params"),
                     "steps": m.get("steps"), "total_steps": m.get("total_steps"), "inherited": m.get("inherited"),
                     "key": best.key}
        if "latency_ms" in m:
            best_json["latency_ms"] = m["latency_ms"]
    if best_graph is not None:
        from graphmill.frontend import save

        save(best_graph, os.path.join(out, "best.onnx"))
        files.append("best.onnx")
    inheritance = inheritance_summary(result.history)
    space_text = (f"{opts['modules']} video modules x {{layer: 3d, 2+1d, itgm, pool; kt: 1, 3, 5, 7; width: 8, 12, "
                  "16; repeat: 1, 2}")
    summary = {"method": "evanet", "task": task.describe(), "out": out,  # as given, as autohas and nahas
               "files": files + ["report.json"], "interrupted": bool(result.interrupted),
               "checkpoint": checkpoint if os.path.exists(checkpoint) else None, "best": best_json,
               "trials": len(result.history), "inheritance": inheritance, "options": opts, "space": space_text}
    write_json(os.path.join(out, "report.json"), summary)
    return summary


def inheritance_summary(history: list) -> dict:
    """Over the inheriting children of a run: how many, their mean start accuracy relative to the parent's, how
    many reached the parent's accuracy within their ``child_steps`` and after how many steps (mean)."""
    kids = [t for t in history if t.status == "ok" and t.metrics.get("inherited")]
    reached = [t.metrics["steps_to_parent"] for t in kids if t.metrics.get("steps_to_parent") is not None]
    gap = [t.metrics["start_accuracy"] - t.metrics["parent_accuracy"] for t in kids]
    return {"children": len(kids), "reached_parent_accuracy": len(reached),
            "mean_steps_to_parent_accuracy": float(np.mean(reached)) if reached else None,
            "mean_start_minus_parent_accuracy": float(np.mean(gap)) if gap else None,
            "scratch": sum(1 for t in history if t.status == "ok" and not t.metrics.get("inherited"))}


def plot(path: str, history: list, task: VideoTask) -> bool:
    """Validation accuracy vs MACs (vs simulated latency when the trials have it: ``--accel``) of every evaluated
    network (inheriting children vs from scratch), and the training curves of both kinds. False when no trial
    succeeded."""
    from graphmill.util.plots import pyplot, save_figure

    ok = [t for t in history if t.status == "ok"]
    if not ok:
        return False
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    lat = all(t.metrics.get("latency_ms") is not None for t in ok)  # with --accel: simulated latency

    def xof(t) -> float:
        return t.metrics["latency_ms"] if lat else t.metrics["macs"] / 1e6
    for inh, color, label in ((False, "tab:blue", "from scratch"), (True, "tab:orange", "inheriting child")):
        pts = [t for t in ok if bool(t.metrics.get("inherited")) == inh]
        if pts:
            a.scatter([xof(t) for t in pts], [t.reward for t in pts], c=color, label=label, s=22)
        for i, t in enumerate(pts):
            c = np.asarray(t.metrics.get("curve") or [[0, 0]], float)
            b.plot(c[:, 0], c[:, 1], color=color, alpha=0.5, lw=1, label=label if i == 0 else None)
    best = max(ok, key=lambda t: t.reward)
    a.scatter([xof(best)], [best.reward], marker="*", s=160, c="red", label="best")
    a.set_xlabel("simulated latency per clip (ms, --accel)" if lat else "MACs per clip (millions)")
    a.set_ylabel("validation accuracy")
    a.set_title("EvaNet: evaluated video networks")
    a.legend(fontsize=8)
    b.set_xlabel("training steps (this network's own)")
    b.set_ylabel("validation accuracy")
    b.set_title("training curves")
    b.legend(fontsize=8)
    import textwrap

    fig.suptitle(textwrap.fill(task.describe(), 170), fontsize=7)  # whole: it was cut at 150 characters
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for its two lines above the panels' titles
    save_figure(fig, path, tight=True)
    return True
