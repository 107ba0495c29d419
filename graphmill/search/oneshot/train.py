"""Training the supernet (BigNAS): the sandwich rule with in-place distillation, checkpointed and resumable.

The task: scikit-learn's digits (1,797 8x8 images, 10 classes), upsampled bilinearly to each child's
resolution and normalized (``search.evaluators.training.digits_data``, split seed 0: the held-out fifth is
the test set); the last ``VAL`` of the training images are held out too, as the validation set child
selection ranks children on. Every step draws one batch and trains four children on it, accumulating
their gradients into the shared weights before one Adam step (cosine learning rate):

* the largest child, on the labels (cross-entropy), with dropout before the classifier and an L2 weight
  decay on convolution and classifier weights: BigNAS regularizes only the largest child;
* the smallest child and two random children (each choice uniform), on the largest child's soft labels
  (in-place distillation: cross-entropy to its detached softmax), without dropout or weight decay. Departure
  from BigNAS (``label_weight``, default 0.5): their loss is half distillation, half cross-entropy on the
  labels; in our short runs the pure distillation of BigNAS left the smallest child behind (400 steps, seed 0:
  smallest 0.877 vs 0.923 validation accuracy, ten random children 0.782 vs 0.797 on average);
  ``label_weight=0`` is BigNAS's rule.

BatchNormalization uses each child's batch statistics while training; afterwards statistics are
re-estimated per child (``calibrate``), as BigNAS does before evaluating a child.

``train_supernet`` writes OUT/checkpoint.pt (``torch.save`` of state dicts, numbers and strings, loaded
with ``weights_only=True``, written atomically) every ``log_every`` steps with a progress line; rerunning
the same call continues from it (same options required). Ctrl-C lets the step under way finish, checkpoints
it and stops, so no step is trained twice (a second Ctrl-C stops at once, the last checkpoint standing).
When done: OUT/supernet.onnx (the supernet graph: the largest child with every shared
weight, statistics of the largest child) and OUT/supernet.json (spec, task, options, history).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from graphmill.util.errors import UserInputError
from graphmill.util.files import CHECKPOINT_LIMIT, atomic_write_many, check_out_folder, parse_json, read_user_file
from graphmill.util.interrupts import DeferredInterrupt

from .space import DIGITS_SPEC, SupernetSpec

#: the files ``train_supernet`` writes in its folder (no report or selected child may overwrite them)
SUPERNET_FILES = ("supernet.onnx", "supernet.json", "checkpoint.pt")
FORMAT = "graphmill-supernet"
VERSION = 1
VAL = 300  #: training images held out as the validation set of child selection
#: what a step reports (its row), and what a sandwich step adds; a history row is their mean over its steps
STEP_KEYS = ("loss_largest", "train_acc_largest")
SANDWICH_KEYS = ("train_acc_smallest", "loss_distill")
TASK = ("scikit-learn digits (1,797 8x8 images, 10 classes), upsampled bilinearly to the child's resolution; "
        f"test = the seeded held-out fifth (359), validation = {VAL} more held out of the training part")


@dataclass
class DigitsSplit:
    """Train / validation / test tensors of digits at one resolution."""

    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    x_test: Any
    y_test: Any


def digits_split(resolution: int, channels: int = 1) -> DigitsSplit:
    """The supernet task at ``resolution`` (the same images and split at every resolution)."""
    from graphmill.search.evaluators.training import digits_data

    xtr, ytr, xte, yte = digits_data(int(resolution), int(channels), 0)
    return DigitsSplit(xtr[:-VAL], ytr[:-VAL], xtr[-VAL:], ytr[-VAL:], xte, yte)


@dataclass
class TrainOptions:
    """What a supernet training run is made with (a resume must repeat it)."""

    steps: int = 1200  #: 600 left children 0.2-1.6 points under stand-alone, 1200 within 1 (README, goal (a); docs/results/supernet.md)
    seed: int = 0
    batch: int = 128  #: 1200 x 128 is ~135 epochs of the 1,138 training images
    lr: float = 1e-2  #: Adam's peak; 3e-3 left children 2-6 points under stand-alone (docs/results/supernet.md)
    weight_decay: float = 5e-5
    dropout: float = 0.1
    temperature: float = 1.0
    label_weight: float = 0.5  #: children's loss = (1 - w) * distillation + w * cross-entropy on the labels
    random_children: int = 2
    log_every: int = 25
    calibrate: int = 256
    spec: SupernetSpec = field(default_factory=lambda: DIGITS_SPEC)
    sandwich: bool = True  #: False trains only ``fixed`` (the stand-alone baseline: same loop, one child)
    fixed: dict | None = None

    def check(self) -> None:
        for name in ("steps", "batch", "log_every", "calibrate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserInputError(f"--{name} {v!r}: must be an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserInputError(f"--seed {self.seed!r}: must be an integer >= 0")
        if not self.sandwich:
            if self.fixed is None:
                raise UserInputError("stand-alone training needs the child's configuration")
            self.fixed = self.spec.check(self.fixed)

    def to_json(self) -> dict:
        return {"steps": self.steps, "seed": self.seed, "batch": self.batch, "lr": self.lr,
                "weight_decay": self.weight_decay, "dropout": self.dropout, "temperature": self.temperature,
                "label_weight": self.label_weight, "random_children": self.random_children, "log_every": self.log_every, "calibrate": self.calibrate,
                "spec": json.dumps(self.spec.to_json(), sort_keys=True), "sandwich": self.sandwich,
                "fixed": json.dumps(self.fixed, sort_keys=True)}


@dataclass
class TrainResult:
    """What ``train_supernet`` did (``interrupted`` after Ctrl-C; ``checkpoint_step`` what the file holds;
    ``resumed_at`` the steps the checkpoint already held when the call began: equal to ``steps`` when a finished
    folder is run again and nothing was trained)."""

    out: str
    steps: int
    total_steps: int
    interrupted: bool
    checkpoint_step: int | None
    train_seconds: float
    history: list[dict]
    files: dict[str, str]
    resumed_at: int = 0

    def to_dict(self) -> dict:
        return {"out": self.out, "steps": self.steps, "total_steps": self.total_steps, "interrupted": self.interrupted,
                "resumed_at": self.resumed_at,
                "checkpoint_step": self.checkpoint_step, "train_seconds": round(self.train_seconds, 3),
                "task": TASK, "history": self.history, "files": self.files}


def sample_child(spec: SupernetSpec, generator) -> dict:
    """A child with every choice uniform, drawn from the torch ``generator`` (checkpointed with the run)."""
    import torch

    def pick(vals) -> int:
        return vals[int(torch.randint(len(vals), (1,), generator=generator))]
    cfg: dict[str, Any] = {"resolution": pick(spec.resolutions)}
    for name, st in zip(spec.stage_names(), spec.stages):
        cfg[name] = {"depth": pick(st.depths), "width": pick(st.widths), "kernel": pick(spec.kernels),
                     "expand": pick(spec.expands)}
    return cfg


def calibrate(module, config: Mapping[str, Any], data: DigitsSplit, n: int) -> dict[str, np.ndarray]:
    """BigNAS's BN recalibration of child ``config``: its statistics on the first ``n`` training images, written
    into ``module``'s buffers (leading channels) and returned (for the child's graph)."""
    stats = module.batch_statistics(data.x_train[:n], config)
    module.set_statistics(stats)
    return stats


def accuracy(module, config: Mapping[str, Any], x, y) -> float:
    """Accuracy of child ``config`` with the module's current statistics (eval mode)."""
    import torch

    was = module.training
    module.eval()
    with torch.no_grad():
        pred = module(x, config).argmax(1)
    module.train(was)
    return float((pred == y).float().mean())


def _trainer(module, opts: TrainOptions, data: dict[int, DigitsSplit], generator):
    import torch
    import torch.nn.functional as F

    spec = opts.spec
    big = spec.largest() if opts.sandwich else opts.fixed
    small = spec.smallest()
    n_train = len(data[spec.resolutions[0]].y_train)
    decay = module.decay_parameters()

    def step(optimizer, k: int) -> dict[str, float]:
        for g in optimizer.param_groups:  # cosine schedule, a function of the step alone (nothing to checkpoint)
            g["lr"] = opts.lr * 0.5 * (1 + math.cos(math.pi * k / opts.steps))
        idx = torch.randint(n_train, (opts.batch,), generator=generator)
        optimizer.zero_grad()
        d = data[big["resolution"]]
        y = d.y_train[idx]
        out = module(d.x_train[idx], big, dropout=opts.dropout)
        loss = F.cross_entropy(out, y)
        if opts.weight_decay:
            loss = loss + 0.5 * opts.weight_decay * sum((p * p).sum() for p in decay)
        loss.backward()
        row = dict(zip(STEP_KEYS, (float(loss.detach()), float((out.argmax(1) == y).float().mean()))))
        if opts.sandwich:
            soft = F.softmax(out.detach() / opts.temperature, dim=1)
            children = [small] + [sample_child(spec, generator) for _ in range(opts.random_children)]
            kd = 0.0
            for i, c in enumerate(children):
                o = module(data[c["resolution"]].x_train[idx], c)
                loss_c = -(soft * F.log_softmax(o / opts.temperature, dim=1)).sum(1).mean()
                if opts.label_weight:
                    loss_c = (1 - opts.label_weight) * loss_c + opts.label_weight * F.cross_entropy(o, y)
                loss_c.backward()
                kd += float(loss_c.detach()) / len(children)
                if i == 0:
                    row[SANDWICH_KEYS[0]] = float((o.argmax(1) == y).float().mean())
            row[SANDWICH_KEYS[1]] = kd
        optimizer.step()
        return row
    return step


def train_supernet(out: str | os.PathLike, opts: TrainOptions | None = None, *,
                   progress: Callable[[str], None] | None = None, threads: int | None = None) -> TrainResult:
    """Train (or continue, from OUT/checkpoint.pt) the supernet of ``opts.spec``; see the module docstring.
    ``threads``: torch's thread count (default: a checkpoint's, else torch's own), recorded in the checkpoint's
    config, since it changes float rounding: a resume on another machine's default count continued with other
    numbers and no word (as ``graphmill train``'s did); torch's count is given back at the end."""
    from graphmill.backends.torch.training.loop import torch_threads

    with torch_threads(threads, os.path.join(os.fspath(out), "checkpoint.pt")):
        return _train_supernet(out, opts, progress=progress)


def _train_supernet(out: str | os.PathLike, opts: TrainOptions | None, *,
                    progress: Callable[[str], None] | None) -> TrainResult:
    import torch

    from graphmill.backends.torch.training.loop import (check_same_config, checkpoint_damage, load_checkpoint,
                                                        restore_weights, rows_damage, save_checkpoint)

    from .torchnet import SupernetModule
    from .weights import init_weights

    opts = opts or TrainOptions()
    opts.check()
    out = check_out_folder(out, "supernet train", "checkpoint.pt, supernet.onnx and supernet.json")
    spec = opts.spec
    files = {"checkpoint": os.path.join(out, "checkpoint.pt"), "supernet": os.path.join(out, "supernet.onnx"),
             "report": os.path.join(out, "supernet.json")}
    config = {**opts.to_json(), "threads": torch.get_num_threads()}
    state = None
    if os.path.exists(files["checkpoint"]):
        state = load_checkpoint(files["checkpoint"])
        # a step of 'abc', a config of None, an rng of zeros: tracebacks; a step of -4 trained 34 of 30 steps
        # and one of 10^6 rewrote the outputs as 'already trained' (an outside check)
        why = checkpoint_damage(state)
        if not why:
            steps, rows = state["config"].get("steps"), state.get("rows", [])  # its own steps: another --steps is
            # refused below, as another config
            if isinstance(steps, int) and not isinstance(steps, bool) and state["step"] > steps:
                why = "step is not what graphmill writes"
            elif not isinstance(rows, list):
                why = "rows is not what graphmill writes"
        if not why:
            check_same_config(files["checkpoint"], state["config"], config, recorded_since=("threads",))
            step_keys = STEP_KEYS + (SANDWICH_KEYS if opts.sandwich else ())  # a history row averages steps' rows
            history_keys = ("step", "train_seconds", "val_acc_largest") + step_keys + (
                ("val_acc_smallest",) if opts.sandwich else ())
            why = rows_damage(state["history"], state["step"], history_keys) or rows_damage(
                rows, state["step"], step_keys, "step row")
            if not why and any(set(r) != set(step_keys) for r in rows):  # the next history row: a KeyError
                why = "a step row holds other keys than a step's"
        if why:
            raise UserInputError(f"{files['checkpoint']}: a damaged supernet checkpoint ({why}); delete it to start "
                                 "afresh")
    torch.manual_seed(opts.seed)
    data = {r: digits_split(r, spec.in_channels) for r in spec.resolutions}
    module = SupernetModule(spec, init_weights(spec, opts.seed))
    optimizer = torch.optim.Adam(module.parameters(), lr=opts.lr)
    generator = torch.Generator().manual_seed(opts.seed)
    history: list[dict] = []
    step_no, seconds, held = 0, 0.0, None
    if state is not None:
        restore_weights(module, optimizer, state, files["checkpoint"], "this supernet", "supernet")
        torch.set_rng_state(state["rng"])
        generator.set_state(state["generator"])
        step_no = held = int(state["step"])
        history, seconds = list(state["history"]), float(state["train_seconds"])
        if progress is not None and held < opts.steps:  # as train-policy says it (an outside check: a silent rerun)
            progress(f"resumed from {files['checkpoint']}: {held} of {opts.steps} steps done")
    os.makedirs(out, exist_ok=True)
    step = _trainer(module, opts, data, generator)
    big = spec.largest() if opts.sandwich else opts.fixed
    module.train()
    rows: list[dict] = list(state.get("rows", [])) if state is not None else []  # steps since the last row

    def save() -> None:
        save_checkpoint(files["checkpoint"], {
            "model": module.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
            "generator": generator.get_state(), "step": step_no, "history": history, "rows": rows,
            "train_seconds": seconds, "config": config})
    interrupted = False
    t_start = time.perf_counter()
    done_at_start = step_no
    stop = DeferredInterrupt()
    try:
        with stop:
            while step_no < opts.steps:
                t0 = time.perf_counter()
                rows.append(step(optimizer, step_no))
                seconds += time.perf_counter() - t0
                step_no += 1
                if step_no % opts.log_every == 0 or step_no == opts.steps:
                    row = {"step": step_no, **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]},
                           "train_seconds": round(seconds, 3)}
                    rows = []
                    d = data[big["resolution"]]
                    calibrate(module, big, d, opts.calibrate)
                    row["val_acc_largest"] = accuracy(module, big, d.x_val, d.y_val)
                    if opts.sandwich:
                        s = spec.smallest()
                        ds = data[s["resolution"]]
                        calibrate(module, s, ds, opts.calibrate)
                        row["val_acc_smallest"] = accuracy(module, s, ds.x_val, ds.y_val)
                    module.train()
                    history.append(row)
                    save()
                    held = step_no
                    if progress is not None:
                        rate = (step_no - done_at_start) / max(time.perf_counter() - t_start, 1e-9)
                        eta = (opts.steps - step_no) / rate if rate else float("inf")
                        progress(progress_line(row, opts.steps, rate, eta))
                if stop.requested:  # Ctrl-C during this step: it finished; keep it (no step is trained twice)
                    if held != step_no:
                        save()
                        held = step_no
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
    if not interrupted:
        calibrate(module, big, data[big["resolution"]], opts.calibrate)  # the saved graph's statistics: the largest's
        write_result(files, module, opts, history, seconds)
    written = {k: v for k, v in files.items() if os.path.exists(v)}  # interrupted: the checkpoint alone, if any
    return TrainResult(out, step_no, opts.steps, interrupted, held, seconds, history, written, done_at_start)


def check_report_path(out: str | os.PathLike, report: str | os.PathLike) -> None:
    """``supernet train --json REPORT``, checked before any training: a file path that can be written once the
    run has made OUT (in OUT, or in an existing folder), and neither OUT itself nor one of the files the run
    writes there (the report would replace the supernet it describes)."""
    from graphmill.util.files import check_target

    path, folder = os.fspath(report), os.path.realpath(os.fspath(out))
    if os.path.realpath(path) == folder:
        raise UserInputError(f"--json {path}: is the --out folder; give a file name")
    if os.path.dirname(os.path.realpath(path)) != folder:
        check_target(path)
    elif os.path.basename(path) in SUPERNET_FILES:
        raise UserInputError(f"--json {path}: is the run's own {os.path.basename(path)}, which the report would "
                             "overwrite; write it elsewhere")
    elif os.path.isdir(path):
        raise UserInputError(f"{path}: is a folder; give a file name")


def progress_line(row: dict, total: int, rate: float, eta: float) -> str:
    small = f"  val acc smallest {row['val_acc_smallest']:.4f}" if "val_acc_smallest" in row else ""
    kd = f"  distill loss {row['loss_distill']:.4f}" if "loss_distill" in row else ""
    return (f"step {row['step']}/{total}  loss largest {row['loss_largest']:.4f}{kd}  val acc largest "
            f"{row['val_acc_largest']:.4f}{small}  {rate:.2f} steps/s  ETA {eta:.0f}s")


def write_result(files: dict, module, opts: TrainOptions, history: list, seconds: float) -> None:
    """OUT/supernet.onnx and OUT/supernet.json, together and atomically."""
    from graphmill.frontend.onnx_io import serialize_model

    from .graph import supernet_graph

    graph = supernet_graph(opts.spec, module.weights())
    report = {"format": FORMAT, "version": VERSION, "task": TASK, "spec": opts.spec.to_json(),
              "options": {k: v for k, v in opts.to_json().items() if k != "spec"}, "steps": opts.steps,
              "train_seconds": round(seconds, 3), "history": history}
    atomic_write_many([(files["supernet"], serialize_model(graph)),
                       (files["report"], (json.dumps(report, indent=2) + "\n").encode())])


def load_supernet(path: str | os.PathLike):
    """``(graph, spec, report)`` of a trained supernet folder, or a UserInputError saying what is missing."""
    from graphmill.frontend import load

    from .graph import supernet_graph
    from .weights import weight_shapes

    path = os.fspath(path)
    report_path, model_path = os.path.join(path, "supernet.json"), os.path.join(path, "supernet.onnx")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserInputError(f"{path}: is a file; give the folder graphmill supernet train --out wrote")
    if not os.path.isdir(path):
        raise UserInputError(f"{path}: no such folder (train a supernet with graphmill supernet train --out {path})")
    missing = [os.path.basename(p) for p in (report_path, model_path) if not os.path.exists(p)]
    if missing:  # only those missing named ("supernet.json and supernet.onnx missing" beside a supernet.onnx)
        held = " (a training checkpoint is there: rerun graphmill supernet train with the same options to finish)" \
            if os.path.exists(os.path.join(path, "checkpoint.pt")) else ""
        raise UserInputError(f"{path}: no trained supernet ({' and '.join(missing)} missing){held}")
    try:
        report = parse_json(read_user_file(report_path, CHECKPOINT_LIMIT, "a supernet report (JSON)").decode("utf-8"))
    except (OSError, ValueError) as e:
        raise UserInputError(f"{report_path}: cannot read the supernet report ({e})") from None
    if not isinstance(report, dict) or report.get("format") != FORMAT or report.get("version") != VERSION:
        raise UserInputError(f"{report_path}: not a graphmill supernet report (format {FORMAT} version {VERSION})")
    if "spec" not in report:  # a KeyError traceback, exit 1 (an outside check)
        raise UserInputError(f"{report_path}: the supernet report has no \"spec\" (the space it was trained on): "
                             "it was not written by graphmill supernet train")
    spec = SupernetSpec.from_json(report["spec"])
    weights = {n: v.const.numpy() for n, v in load(model_path).initializers.items() if v.const is not None}
    for n, shape in weight_shapes(spec).items():
        if n not in weights or tuple(weights[n].shape) != shape:
            raise UserInputError(f"{model_path}: weight {n} missing or not of shape {list(shape)}: the file does not "
                                 "match supernet.json")
    return supernet_graph(spec, weights), spec, report
