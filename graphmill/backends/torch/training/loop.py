"""The training loop every graphmill training feature shares: steps in stages, progress, checkpoints, Ctrl-C.

``training_loop`` runs a plan (a list of ``Stage``s) one optimizer step at a time through a caller's
``step(stage)`` (which computes the loss, back-propagates and steps the optimizer) and, every ``log_every``
steps and at the end of each stage, evaluates, appends a history row, writes the checkpoint and prints one
progress line. The checkpoint is ``torch.save`` of state dicts, plain numbers and strings only (read back
with ``torch.load(weights_only=True)``: no pickled code runs), written atomically: the module's
state (Parameters and buffers), the optimizer's, torch's global random state and the sampling generator's,
the step, the history and the configuration it was made with. Resuming restores all of it, so an
interrupted run continues exactly as the uninterrupted one would have (same thread count assumed).
Ctrl-C stops between steps (``util.interrupts.DeferredInterrupt``): the step under way finishes and is
checkpointed with the losses since the last history row, so the resumed run neither repeats a step nor loses
one from its next row's mean; the loop returns ``interrupted=True``. A second Ctrl-C stops at once, and the
last checkpoint stands.

``train_classifier`` is the classification step on digits (cross-entropy, RandAugment and mixup at the
stage's strength, the stage's dropout rate); ``calibrate_batchnorm`` starts a random network at unit scale.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from graphmill.ir import Graph, Tensor, topological_order
from graphmill.util.errors import ExecutionError, UserInputError
from graphmill.util.files import MODEL_FILE_LIMIT, load_torch_checkpoint, save_torch_checkpoint
from graphmill.util.interrupts import DeferredInterrupt
from graphmill.util.torch_state import (finite_number, is_count, is_generator_state, module_state_damage,
                                        optimizer_state_damage)

from .data import mixup, rand_augment
from .progressive import DROPOUT_RATIO, Stage


def first_output(out: Any):
    """A module's first output (a graph with several outputs returns a tuple; the first is the logits)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def calibrate_batchnorm(graph: Graph, x, *, eps: float = 0.0, only: dict | None = None) -> int:
    """Set every BatchNormalization's mean and variance to its input's statistics on ``x``, in graph order.

    The torch backend runs BatchNormalization as in inference (the graph's statistics, not the batch's), so
    a candidate trains with whatever scale its random weights give: past a few layers on a small proxy input
    (stages at 1x1, where a k x k kernel sees one tap) the signal vanishes and training stalls at chance.
    Re-estimating the statistics on training data first (BN recalibration, as one-shot NAS does) starts
    every candidate at unit scale. Each BatchNormalization is calibrated after the ones before it (one
    forward pass each). Returns how many were calibrated; the graph's initializers hold the statistics.
    ``only`` (``{running-mean initializer name: bool mask of channels}``) calibrates just those channels of
    those layers, leaving every other statistic as it is (a network that inherited trained weights: EvaNet).
    """
    import numpy as np
    import torch

    from ..lowering import to_torch

    def own_const(v) -> bool:
        return v is not None and v.is_initializer and v.num_uses == 1
    if only is None:
        own_statistics(graph)
    bns = [n for n in topological_order(graph) if n.op_type == "BatchNormalization" and len(n.inputs) == 5
           and own_const(n.inputs[3]) and own_const(n.inputs[4]) and (only is None or n.inputs[3].name in only)]
    if not bns:
        return 0
    probe = graph.copy()
    values = probe.value_map()
    first_extra = len(probe.outputs)
    probe.outputs.extend(values[n.inputs[0].name] for n in bns)
    module = to_torch(probe)
    slot = {vname: attr for attr, vname in module.buffer_names.items()}
    module.eval()
    with torch.no_grad():
        for i, bn in enumerate(bns):
            t = module(x)[first_extra + i]
            dims = [d for d in range(t.dim()) if d != 1]
            mean, var = t.mean(dims), t.var(dims, unbiased=False) + eps
            mask = None if only is None else torch.as_tensor(only[bn.inputs[3].name], dtype=torch.bool)
            for v, stat in ((bn.inputs[3], mean), (bn.inputs[4], var)):
                buf = getattr(module, slot[v.name])
                if mask is None:
                    buf.copy_(stat)
                else:
                    buf[mask] = stat[mask].to(buf.dtype)
                    stat = buf.clone()
                arr = stat.numpy().astype(v.const.numpy().dtype)
                v.const = Tensor(np.ascontiguousarray(arr), name=v.const.name or v.name)
    return len(bns)


def own_statistics(graph: Graph) -> int:
    """Give each BatchNormalization whose mean or variance is a shared initializer, or an Identity of one, an
    initializer of its own holding the same values, so that calibration can set it; returns how many were given.
    torch.onnx.export merges equal initializers: an untrained BatchNorm's running_var (ones) became
    ``Identity(bn.weight)`` and its running_mean ``Identity(bn.bias)``, and ``calibrate_batchnorm`` skipped every
    such layer without a word (a model trained to 0.76 where its own statistics gave 0.9; an outside check)."""
    import numpy as np

    made = 0
    for bn in [n for n in topological_order(graph) if n.op_type == "BatchNormalization" and len(n.inputs) == 5]:
        for idx, what in ((3, "running_mean"), (4, "running_var")):
            v = bn.inputs[idx]
            if v is None or (v.is_initializer and v.num_uses == 1):
                continue
            src = v
            while src.producer is not None and src.producer.op_type == "Identity" and src.producer.domain == "":
                src = src.producer.inputs[0]
            if not src.is_initializer or src.const is None:
                continue  # computed statistics (not an exporter's merge): left as they are
            arr = np.ascontiguousarray(np.array(src.const.numpy(), copy=True))
            name = graph.unique_name(f"{bn.name or 'batchnorm'}.{what}")
            bn.set_input(idx, graph.add_initializer(Tensor(arr, name=name), name))
            made += 1
            while v.producer is not None and v.num_uses == 0 and not v.is_graph_output:  # the merge's Identities
                node, v = v.producer, v.producer.inputs[0]
                graph.remove_node(node)
    return made


def recalibrate_batchnorm(module, x) -> int:
    """``calibrate_batchnorm`` of a ``GraphModule`` mid-training: its current weights, statistics of ``x``
    written into its buffers (and its graph). The torch backend's BatchNormalization never updates its
    statistics, so a network whose input size changes (progressive learning) keeps the statistics of the old
    size; re-estimating them at a stage change is what batch-statistics BatchNormalization would track."""
    import torch

    from ..lowering import export_weights

    export_weights(module)
    n = calibrate_batchnorm(module.graph, x)
    inits = module.graph.initializers
    # only the statistics go back: the graph holds other buffers as built (the shared Dropout ratio a stage set
    # is the module's alone; copying the graph's back reset it to the built rate for the rest of the stage)
    stats = {v.name for node in module.graph.nodes if node.op_type == "BatchNormalization"
             for v in node.inputs[3:5] if v is not None}
    with torch.no_grad():
        for attr, vname in module.buffer_names.items():
            v = inits.get(vname)
            if vname in stats and v is not None and v.const is not None:
                buf = getattr(module, attr)
                buf.copy_(torch.as_tensor(v.const.numpy()).to(buf.dtype))
    return n


# -- checkpoints -----------------------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """``torch.save(state)`` written atomically (a reader never sees half a checkpoint)."""
    save_torch_checkpoint(path, state)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint ``save_checkpoint`` wrote, loaded with ``weights_only=True`` (tensors, numbers, strings,
    lists and dicts only: a file that asks for anything else is refused, not run)."""
    try:
        state = load_torch_checkpoint(path, "a graphmill training checkpoint", limit=MODEL_FILE_LIMIT)
    except FileNotFoundError:
        raise UserInputError(f"{path}: no checkpoint to resume from; run without --resume to start") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "step", "config"} <= set(state):
        raise UserInputError(f"{path}: not a graphmill training checkpoint (keys missing)")
    return state


#: what every history row of ``training_loop`` holds besides its evaluation's metrics
ROW_KEYS = ("step", "epoch", "stage", "stages", "size", "loss", "train_seconds")  # and cpu_seconds since 1806c79


def rows_damage(rows: list, step: int, row_keys: tuple[str, ...] = (), name: str = "history row") -> str:
    """What is wrong with the first damaged row of ``rows`` of a checkpoint at ``step`` ('' when nothing): see
    ``row_damage``. Checked after the checkpoint's config is found to be this run's (another mode's rows hold other
    metrics: the config's difference is what to say)."""
    return next(filter(None, (row_damage(r, i, step, row_keys, name) for i, r in enumerate(rows))), "")


def row_damage(row: Any, i: int, step: int, row_keys: tuple[str, ...], name: str = "history row") -> str:
    """What is wrong with row ``i`` of a checkpoint at ``step`` ('' when nothing): a row holds numbers (None for
    a setting its mode has not), ``row_keys`` among them, and a step of the run so far."""
    if not isinstance(row, dict):
        return f"{name} {i + 1} is not a table"
    missing = [k for k in row_keys if not finite_number(row.get(k))]
    if missing:  # a row {'step': 'x'} wrote the outputs, then failed formatting the accuracy (an outside check)
        return f"{name} {i + 1} has no number {missing[0]!r}"
    bad = [k for k, v in row.items() if v is not None and not finite_number(v)]
    if bad:  # a NaN reached history.json, which strict JSON readers refuse
        return f"{name} {i + 1}'s {bad[0]!r} is {str(row[bad[0]])[:40]}, not a finite number"
    if "step" in row_keys and not (isinstance(row["step"], int) and 1 <= row["step"] <= step):
        return f"{name} {i + 1}'s step {row['step']} is not a step of the run so far ({step})"
    return ""


def checkpoint_damage(state: dict) -> str:
    """What is wrong with a checkpoint ``training_loop`` wrote ('' when nothing): each key its ``save`` writes, of
    its type, each history row a table of numbers (which keys it must hold: ``rows_damage``, once the config is
    known to be the run's). The supernet's training writes these keys too, with rows of its own (and checks its
    own keys besides); AutoHAS's holds others."""
    def number(x) -> bool:
        return finite_number(x) and x >= 0

    def table(x) -> bool:
        return isinstance(x, dict)

    checks = (("model", table), ("optimizer", table), ("config", table),
              ("rng", is_generator_state), ("generator", is_generator_state),
              ("step", is_count),
              ("history", lambda x: isinstance(x, list)),
              ("train_seconds", number))
    for key, ok in checks:
        if key not in state:
            return f"no {key}"
        if not ok(state[key]):
            return f"{key} is not what graphmill writes"
    for key, ok in (("cpu_seconds", number),
                    ("pending_losses", lambda x: isinstance(x, list) and all(finite_number(v) for v in x))):
        if key in state and not ok(state[key]):  # a NaN loss: the run stops at it, so none is ever pending
            return f"{key} is not what graphmill writes"
    if state["config"].get("threads") is not None and not valid_threads(state["config"]["threads"]):
        # 2^31 reached torch.set_num_threads as a traceback; -1 was "made with threads=-1", which no one can repeat
        return "its config's threads is not what graphmill writes"
    return rows_damage(state["history"], state["step"])


def restore_weights(module, optimizer, state: dict, checkpoint: str | os.PathLike, what: str = "this model",
                    kind: str = "graphmill training") -> None:
    """Load a checkpoint's model and optimizer state into ``module`` and ``optimizer``, or a one-line
    ``UserInputError`` (what differs) before either is touched: the one way ``graphmill train`` and the supernet's
    training restore them. ``what``/``kind``: the model and the checkpoint, as the messages name them."""
    why = module_state_damage(module, state["model"])
    if why:  # torch's message's first line named nothing ("Error(s) in loading state_dict for GraphModule:")
        raise UserInputError(f"{checkpoint}: does not fit {what}: {why}")
    why = optimizer_state_damage(optimizer, state["optimizer"])
    if why:
        raise UserInputError(f"{checkpoint}: a damaged {kind} checkpoint ({why}); delete it to start afresh")
    try:
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise UserInputError(f"{checkpoint}: does not fit {what} ({str(e).splitlines()[0][:200]})") from None


#: the options of `graphmill train` a mode may not use: checkpoints before 9543a86 recorded a value for them
#: (the default, or what was given and ignored); they hold null now (a review found such a checkpoint refused, the
#: message asking for an option the mode now refuses)
MODE_OPTIONS = ("stages", "min_size", "dropout", "mixup", "temperature")


MAX_THREADS = 1024
"""Most torch threads a training run takes (``--threads``, and a checkpoint's recorded count): torch refuses 2^31
with an overflow traceback, and a damaged checkpoint's 100,000 would start that many threads."""


def valid_threads(n: Any) -> bool:
    """Whether ``n`` is a thread count graphmill records (an integer from 1 to ``MAX_THREADS``)."""
    return isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_THREADS


@contextlib.contextmanager
def torch_threads(threads: int | None, checkpoint: str | os.PathLike | None) -> Iterator[int]:
    """torch's thread count for a training run, which changes its float rounding: ``threads``, else the count
    ``checkpoint`` records (a resume: another shell's default differs), else torch's own; yields the count, and
    gives torch's own back afterwards (a second run in the process recorded the first one's)."""
    import torch

    previous = torch.get_num_threads()
    if threads is None and checkpoint is not None and os.path.isfile(checkpoint):
        threads = checkpoint_threads(checkpoint)
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def checkpoint_threads(path: str | os.PathLike) -> int | None:
    """The torch thread count the training checkpoint ``path`` was made on; None when it does not say (one from
    before the count was recorded) or cannot be read or holds what graphmill never writes (the resume itself then
    says why: ``checkpoint_damage``)."""
    try:
        threads = load_checkpoint(path)["config"].get("threads")
    except (UserInputError, OSError, AttributeError, TypeError):
        return None
    return threads if valid_threads(threads) else None


#: the options a refused resume names first when they differ (``check_same_config``)
FIRST_COMPARED = ("mode", "seed")


def check_same_config(path: str | os.PathLike, saved: dict, config: dict, *, unused: tuple[str, ...] = (),
                      recorded_since: tuple[str, ...] = ()) -> None:
    """Refuse to resume a checkpoint made with other options, naming the first that differs: ``mode`` and ``seed``,
    then the others alphabetically (what follows from the mode and seed, such as the sizes only one mode has or a
    model's description, which holds its seed, was named instead: ``min_size`` for a resume that added
    ``--progressive``, an outside check). An option the
    checkpoint does not hold is one added since it was written: unset (None) it cannot differ, set it is refused
    as newer than the checkpoint; an option only the checkpoint holds was removed since. ``unused``: options
    that, None in ``config``, the run's mode does not use: what the checkpoint holds for them cannot differ.
    ``recorded_since``: settings recorded only since some checkpoints were written (the thread count, an
    accelerator): one without them is not compared on them, since what it was made with is unknown (such
    checkpoints were refused as predating an option, every run of that time lost; a review)."""
    config = {k: v for k, v in config.items() if k not in recorded_since or k in saved}
    saved = {k: (None if k in unused and config.get(k, 0) is None else v) for k, v in saved.items()}
    rank = {k: i for i, k in enumerate(FIRST_COMPARED)}
    for key in sorted(set(saved) | set(config), key=lambda k: (rank.get(k, len(rank)), k)):
        if key not in saved and config[key] is not None:
            raise UserInputError(f"{path}: the checkpoint predates option {key} (this run has {key}="
                                 f"{config[key]!r}); it was made by an earlier version: use another --out to start "
                                 "afresh")
        if key not in config and saved[key] is not None:
            raise UserInputError(f"{path}: the checkpoint was made with option {key}={saved[key]!r}, which this "
                                 "version no longer has: use another --out to start afresh")
        if saved.get(key) != config.get(key):
            raise UserInputError(f"{path}: the checkpoint was made with {key}={saved.get(key)!r}, this run has "
                                 f"{key}={config.get(key)!r}; repeat the original options to resume, or use "
                                 "another --out to start afresh")


# -- the loop --------------------------------------------------------------------------------------------------


@dataclass
class LoopResult:
    """What ``training_loop`` did: the history rows, the step reached of ``total_steps``, whether Ctrl-C
    stopped it, the step the checkpoint holds, the training seconds (wall and this process's CPU time:
    evaluation excluded; CPU time is what a benchmark on a shared machine compares) and the last step's loss."""

    history: list[dict] = field(default_factory=list)
    step: int = 0
    total_steps: int = 0
    interrupted: bool = False
    checkpoint_step: int | None = None
    train_seconds: float = 0.0
    cpu_seconds: float = 0.0
    last_loss: float = float("nan")


def stage_at(stages: list[Stage], step: int) -> int:
    """The index of the stage that step ``step`` (0-based) belongs to."""
    end = 0
    for i, s in enumerate(stages):
        end += s.steps
        if step < end:
            return i
    return len(stages) - 1


def training_loop(module, optimizer, stages: list[Stage], step: Callable[[Stage], float],
                  evaluate: Callable[[], dict], *, log_every: int, generator, config: dict,
                  checkpoint: str | os.PathLike | None = None, resume: bool = False,
                  progress: Callable[[str], None] | None = None,
                  on_stage: Callable[[Stage, Stage | None], None] | None = None,
                  metrics: tuple[str, ...] = ()) -> LoopResult:
    """Run ``stages`` through ``step``; see the module docstring. ``on_stage(stage, previous)`` runs when a
    stage begins (and on resume), before its first step; ``previous`` is the stage before when this one
    starts now, None at the first stage or mid-stage on resume; ``generator`` is the batch sampler's, checkpointed
    too; ``metrics``: the keys ``evaluate`` returns, which every resumed history row must hold."""
    import torch

    total = sum(s.steps for s in stages)
    res = LoopResult(total_steps=total)
    if resume:
        state = load_checkpoint(checkpoint)
        why = checkpoint_damage(state)
        if why:  # a traceback (KeyError: 'rng', a generator state of the wrong size), or a history row "x" written
            raise UserInputError(f"{checkpoint}: a damaged graphmill training checkpoint ({why}); delete it to "
                                 "start afresh")
        check_same_config(checkpoint, state["config"], config, unused=MODE_OPTIONS, recorded_since=("threads",))
        why = rows_damage(state["history"], state["step"], ROW_KEYS + metrics)
        if why:
            raise UserInputError(f"{checkpoint}: a damaged graphmill training checkpoint ({why}); delete it to "
                                 "start afresh")
        if state["step"] > total:  # the same run has `total` steps: a step of 10^6 reported them done (a review)
            raise UserInputError(f"{checkpoint}: a damaged graphmill training checkpoint (step {state['step']} of a "
                                 f"run of {total} steps); delete it to start afresh")
        restore_weights(module, optimizer, state, checkpoint)
        try:
            torch.set_rng_state(state["rng"])
            generator.set_state(state["generator"])
        except (RuntimeError, ValueError) as e:
            raise UserInputError(f"{checkpoint}: a damaged graphmill training checkpoint (its random generator "
                                 f"states: {str(e).splitlines()[0][:120]}); delete it to start afresh") from None
        res.step = res.checkpoint_step = int(state["step"])
        res.history = list(state["history"])
        res.train_seconds = float(state["train_seconds"])
        res.cpu_seconds = float(state.get("cpu_seconds", 0.0))
        if progress:  # the next line was a step's, with nothing saying the run went on from a checkpoint
            progress(f"resuming from {checkpoint} at step {res.step}/{total}")
    ends = [sum(s.steps for s in stages[:i + 1]) for i in range(len(stages))]
    current = None
    # the losses of the steps since the last history row: a mid-row checkpoint (Ctrl-C) keeps them for the row
    losses: list[float] = [float(x) for x in state.get("pending_losses", [])] if resume else []

    def save() -> None:
        if checkpoint is None:
            return
        save_checkpoint(checkpoint, {
            "model": module.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
            "generator": generator.get_state(), "step": res.step, "history": res.history,
            "pending_losses": list(losses), "train_seconds": res.train_seconds, "cpu_seconds": res.cpu_seconds,
            "config": config})
        res.checkpoint_step = res.step

    module.train()
    try:
        with DeferredInterrupt() as ctrl_c:
            while res.step < total:
                si = stage_at(stages, res.step)
                t0, c0 = time.perf_counter(), time.process_time()  # a stage's set-up counts as training time
                if si != current:
                    current = si
                    if on_stage is not None:  # the previous stage, when this one starts now (not on a resume)
                        starts = res.step == (ends[si - 1] if si else 0)
                        on_stage(stages[si], stages[si - 1] if starts and si else None)
                loss = step(stages[si])
                if not math.isfinite(loss):  # the steps after it teach nothing, and the weights are lost
                    raise ExecutionError(diverged_message(loss, res.step + 1, total, optimizer, res.checkpoint_step,
                                                          checkpoint))
                res.train_seconds += time.perf_counter() - t0
                res.cpu_seconds += time.process_time() - c0
                res.step += 1
                res.last_loss = loss
                losses.append(loss)
                if res.step % log_every == 0 or res.step in ends:
                    module.eval()
                    with torch.no_grad():
                        metrics = evaluate()
                    module.train()
                    st = stages[si]
                    row = {"step": res.step, "epoch": round(res.step / log_every, 3), "stage": si + 1,
                           "stages": len(stages), "size": st.size, "dropout": st.dropout,
                           "magnitude": st.magnitude, "mixup": st.mixup, "loss": sum(losses) / len(losses),
                           **metrics, "train_seconds": round(res.train_seconds, 4),
                           "cpu_seconds": round(res.cpu_seconds, 4)}
                    losses = []
                    res.history.append(row)
                    save()
                    if progress is not None:
                        progress(progress_line(row, total))
                if ctrl_c.requested:  # the step is whole: checkpoint it (unless the row just did) and stop
                    if res.checkpoint_step != res.step:
                        save()
                    res.interrupted = True
                    break
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread's handler: the last checkpoint
        res.interrupted = True
    module.eval()
    return res


def diverged_message(loss: float, step: int, total: int, optimizer, saved: int, checkpoint) -> str:
    """Why training stopped at a loss that left the floats: before, ``graphmill train --lr 1e30`` ran on, wrote a
    model whose outputs are NaN and reports with ``"loss": NaN`` (not JSON), and exited 0 at chance accuracy."""
    lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
    kept = f"; the checkpoint of step {saved} ({checkpoint}) is kept" if checkpoint is not None and saved else ""
    return (f"training diverged: loss {loss} at step {step} of {total}" +
            (f" at learning rate {lr:g}" if isinstance(lr, (int, float)) else "") +
            f"; give a smaller --lr; nothing else was written{kept}")


def progress_line(row: dict, total: int) -> str:
    """One line per epoch/stage: where training is, the stage's settings, the loss and the metrics."""
    reg = "" if row.get("dropout") is None else f" dropout {row['dropout']:.2f}"
    reg += f" magnitude {row['magnitude']:.1f}" + ("" if row.get("mixup") is None else f" mixup {row['mixup']:.2f}")
    metrics = "  ".join(f"{k} {row[k]:.4f}" for k in ("accuracy", "knn_accuracy") if k in row)
    return (f"epoch {row['epoch']:g}  step {row['step']}/{total}  stage {row['stage']}/{row['stages']} size "
            f"{row['size']}{reg}  loss {row['loss']:.4f}  {metrics}  train {row['train_seconds']:.1f}s")


# -- classification --------------------------------------------------------------------------------------------


def accuracy(module, x, y, *, chunk: int = 512) -> float:
    """Held-out accuracy of ``module``'s first output (argmax) on ``x``, ``y``."""
    import torch

    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), chunk):
            correct += int((first_output(module(x[i:i + chunk])).argmax(1) == y[i:i + chunk]).sum())
    return correct / max(len(y), 1)


def set_dropout(module, rate: float | None) -> None:
    """Set the training copy's shared Dropout ratio (``progressive.with_dropout``); None leaves it."""
    if rate is None:
        return
    for attr, vname in module.buffer_names.items():
        if vname == DROPOUT_RATIO:
            getattr(module, attr).fill_(float(rate))
            return
    if rate > 0:
        raise UserInputError("dropout rate given but the module has no shared Dropout ratio (build it from "
                             "progressive.with_dropout(graph))")


def train_classifier(module, data: Callable[[int], tuple], stages: list[Stage], *, batch: int, lr: float,
                     seed: int, eval_size: int, log_every: int | None = None, config: dict | None = None,
                     checkpoint=None, resume: bool = False, progress=None, recalibrate: int = 0) -> LoopResult:
    """Train ``module`` (10 logits first) with Adam on ``data(size) -> (x_train, y_train, x_test, y_test)``
    through ``stages``: batches of ``batch`` drawn with replacement by a generator seeded with ``seed``,
    augmented (RandAugment at the stage's magnitude, mixup at its alpha), the stage's dropout rate;
    held-out accuracy at ``eval_size``. ``log_every`` defaults to one epoch (steps per pass over the data).
    With plain stages (no augmentation, no mixup, dropout None) a step draws only its batch indices, so it
    is the plain fixed-size training the search's evaluators run. ``recalibrate``: when the image size
    changes between stages, BatchNormalization statistics are re-estimated on that many training images at
    the new size (``recalibrate_batchnorm``; 0: never)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    n_train = len(data(stages[0].size)[1])
    log_every = log_every or max(1, -(-n_train // batch))
    train = {}

    def on_stage(stage: Stage, previous: Stage | None) -> None:
        set_dropout(module, stage.dropout)
        train["x"], train["y"] = data(stage.size)[:2]
        if recalibrate and previous is not None and previous.size != stage.size:
            recalibrate_batchnorm(module, train["x"][:recalibrate])

    def step(stage: Stage) -> float:
        xtr, ytr = train["x"], train["y"]
        idx = torch.randint(0, len(ytr), (batch,), generator=gen)
        x, y = rand_augment(xtr[idx], stage.magnitude), ytr[idx]
        x, ya, yb, lam = mixup(x, y, stage.mixup)
        out = first_output(module(x))
        loss = F.cross_entropy(out, ya)
        if lam != 1.0:
            loss = lam * loss + (1 - lam) * F.cross_entropy(out, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def evaluate() -> dict:
        _, _, xte, yte = data(eval_size)
        return {"accuracy": accuracy(module, xte, yte)}

    return training_loop(module, optimizer, stages, step, evaluate, log_every=log_every, generator=gen,
                         config=config or {}, checkpoint=checkpoint, resume=resume, progress=progress,
                         on_stage=on_stage, metrics=("accuracy",))
