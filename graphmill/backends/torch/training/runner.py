"""One training run of a graph on the shipped task: plan the stages, calibrate, lower, train, write back.

``TrainConfig`` holds every option (it is also what a checkpoint must match to be resumed); ``run_training``
trains ``graph`` in place (its initializers become the trained weights, so the graph saved as ONNX predicts
as it was measured) in one of three modes:

* ``fixed``: plain training at the model's input size with fixed regularization (the final strengths):
  the baseline of progressive learning;
* ``progressive``: EfficientNetV2's stages (``progressive.progressive_schedule``), from ``min_size`` to the
  model's input size; accuracy is always measured at the model's input size;
* ``contrastive``: the model is one tower; two RandAugment views of each image are the pair; the loss
  and gradient are BASIC's micro-batched exact ones (``contrastive.contrastive_backward``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from graphmill.ir import Graph
from graphmill.util.errors import UserInputError

from .contrastive import check_micro_batch, train_contrastive
from .data import TASK, digits_data
from .loop import LoopResult, calibrate_batchnorm, train_classifier
from .progressive import Stage, fixed_schedule, progressive_schedule, regularization_range, with_dropout

MODES = ("fixed", "progressive", "contrastive")
N_CLASSES = 10
RECALIBRATE = 32
"""Images BatchNormalization statistics are re-estimated on when a progressive stage changes the size."""
MAX_BATCH = 4096
"""The largest batch any training here takes (the shipped tasks hold a few thousand images; 10^5 ran a CPU out
of memory before the first step)."""


@dataclass
class TrainConfig:
    """Every option of a training run (see ``graphmill train --help`` for their meaning)."""

    mode: str = "fixed"
    steps: int | None = None
    epochs: int | None = None
    batch: int = 64
    micro_batch: int | None = None
    stages: int = 4
    min_size: int = 16
    dropout: tuple = (0.1, 0.3)
    magnitude: tuple = (5.0, 15.0)
    mixup: tuple = (0.0, 0.2)
    temperature: float | None = 0.1  # None: a mode that does not use it (api.train)
    lr: float = 3e-3
    seed: int = 0
    data_seed: int = 0
    calibrate: int = 128
    model: str = ""
    threads: int | None = None  # torch's thread count, recorded: a resume on another count gave other weights
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("dropout", "magnitude", "mixup"):  # None: an option the mode does not use (api.train)
            if d[k] is not None:
                d[k] = [float(v) for v in (d[k] if isinstance(d[k], (tuple, list)) else (d[k], d[k]))]
        return d


def check_config(cfg: TrainConfig) -> None:
    """Bad options refused in one line before anything runs (the model's own checks come later)."""
    import math

    if cfg.mode not in MODES:
        raise UserInputError(f"training mode {cfg.mode!r}: choose one of {', '.join(MODES)}")
    if cfg.steps is not None and cfg.epochs is not None:
        raise UserInputError("give --steps or --epochs, not both")
    for name, v, low in (("--steps", cfg.steps, 1), ("--epochs", cfg.epochs, 1), ("--batch", cfg.batch, 1),
                         ("--stages", cfg.stages, 1), ("--min-size", cfg.min_size, 1), ("--seed", cfg.seed, 0),
                         ("--calibrate", cfg.calibrate, 0)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise UserInputError(f"{name} {v!r}: must be an integer >= {low}")
    if cfg.batch is not None and cfg.batch > MAX_BATCH:
        raise UserInputError(f"--batch {cfg.batch}: at most {MAX_BATCH:,} (the digits task has 1,797 images in all)")
    for name, v in (("--lr", cfg.lr), ("--temperature", cfg.temperature)):
        if v is None and name == "--temperature":  # the mode does not use it
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise UserInputError(f"{name} {v!r}: must be a number > 0")
    for name in ("dropout", "magnitude", "mixup"):
        if getattr(cfg, name) is not None:
            regularization_range(name, getattr(cfg, name))
    if cfg.mode == "contrastive":
        check_micro_batch(cfg.batch, cfg.micro_batch)
    elif cfg.micro_batch is not None:
        raise UserInputError("--micro-batch applies to --contrastive training only")


def image_input(graph: Graph) -> tuple[int, int]:
    """``(channels, size)`` of a graph whose first input is ``[N, C, S, S]`` with fixed C and S."""
    non_init = [v for v in graph.inputs if not v.is_initializer]
    shape = non_init[0].shape if len(non_init) == 1 else None
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]) or shape[2] != shape[3]:
        got = "inputs " + ", ".join(f"{v.name} {v.shape}" for v in non_init) if len(non_init) != 1 else shape
        raise UserInputError(f"graph {graph.name!r}: training on images needs one input [N, C, S, S] with fixed "
                             f"C and S, got {got}")
    return int(shape[1]), int(shape[2])


def steps_per_epoch(batch: int, size: int = 8, data_seed: int = 0) -> int:
    """Optimizer steps in one pass over the training images at batches of ``batch``."""
    return max(1, -(-len(digits_data(size, 1, data_seed)[1]) // batch))


def plan(cfg: TrainConfig, size: int) -> list[Stage]:
    """The stages of ``cfg`` for a model whose input is ``size`` x ``size``."""
    per_epoch = steps_per_epoch(cfg.batch, data_seed=cfg.data_seed)
    total = cfg.steps if cfg.steps is not None else (cfg.epochs if cfg.epochs is not None else 10) * per_epoch
    end = {k: (v if v is None or isinstance(v, (int, float)) else v[-1]) for k, v in
           (("dropout", cfg.dropout), ("magnitude", cfg.magnitude), ("mixup", cfg.mixup))}
    if cfg.mode == "progressive":
        return progressive_schedule(stages=cfg.stages, min_size=cfg.min_size, max_size=size, steps=total,
                                    dropout=cfg.dropout, magnitude=cfg.magnitude, mixup=cfg.mixup)
    if cfg.mode == "contrastive":
        # no mixup: it mixes no images (its progress said "mixup 0.00" where the report's config said null)
        return fixed_schedule(size=size, steps=total, dropout=None, magnitude=end["magnitude"], mixup=None)
    return fixed_schedule(size=size, steps=total, **end)


@dataclass
class TrainRun:
    """A finished (or interrupted) run: the config, its stages, the loop's result and the final metrics."""

    config: TrainConfig
    stages: list[Stage]
    loop: LoopResult
    channels: int
    size: int

    @property
    def final(self) -> dict:
        return dict(self.loop.history[-1]) if self.loop.history else {}

    def to_dict(self) -> dict:
        final = self.final
        metric = "knn_accuracy" if self.config.mode == "contrastive" else "accuracy"
        return {"task": TASK, "mode": self.config.mode, "model": self.config.model, "config": self.config.to_dict(),
                "input": [self.channels, self.size], "stages": [s.to_dict() for s in self.stages],
                "steps": self.loop.step, "total_steps": self.loop.total_steps, "interrupted": self.loop.interrupted,
                "checkpoint_step": self.loop.checkpoint_step, "train_seconds": round(self.loop.train_seconds, 4),
                "cpu_seconds": round(self.loop.cpu_seconds, 4),
                "metric": metric, metric: final.get(metric), "loss": final.get("loss"),
                "metrics_step": final.get("step")}  # the row they come from: an interrupted run's is earlier


def export_state(module, graph: Graph) -> None:
    """The trained Parameters (``export_weights``) and the buffers that are ``graph``'s initializers (the
    BatchNormalization statistics a stage change re-estimated) written into ``graph``."""
    import numpy as np

    from graphmill.ir import Tensor

    from ..lowering import export_weights
    from ..tensors import to_numpy

    export_weights(module, graph)
    for attr, vname in module.buffer_names.items():
        v = graph.initializers.get(vname)
        if v is not None and v.const is not None and hasattr(v.const, "numpy"):
            old = v.const.numpy()
            arr = to_numpy(getattr(module, attr)).astype(old.dtype, copy=False)
            if arr.shape == old.shape and not np.array_equal(arr, old):
                v.const = Tensor(np.ascontiguousarray(arr), name=v.const.name or vname)


def check_model(graph: Graph, cfg: TrainConfig) -> tuple[int, int]:
    """``cfg`` and ``graph`` checked against each other before any work: one image input ``[N, C, S, S]``,
    10 logits first for classification, the stages' schedule; returns ``(channels, size)``."""
    check_config(cfg)
    channels, size = image_input(graph)
    from graphmill.backends.torch.weights import weight_initializers

    if not weight_initializers(graph):  # Adam's "optimizer got an empty parameter list", a traceback (an outside check)
        raise UserInputError(f"graph {graph.name!r} has no weights to train (no float initializer feeds a MatMul, "
                             "Gemm, Conv or normalization; values held in Constant nodes are constants)")
    if cfg.mode != "contrastive":
        check_digits_classifier(graph)
    else:
        check_first_output_rank(graph, "an embedding [N, D] for --contrastive")
    x = next(v for v in graph.inputs if not v.is_initializer)
    if isinstance(x.shape[0], int):  # trained, it ran only batches of that size (359 test images: ORT refused)
        raise UserInputError(f"input {x.name!r} has a fixed batch of {x.shape[0]} ({list(x.shape)}): graphmill train "
                             f"trains batches of {cfg.batch}, and the trained model would run batches of "
                             f"{x.shape[0]} only; export it with a symbolic batch (torch.onnx.export(..., "
                             f"dynamic_axes={{{x.name!r}: {{0: 'N'}}}}))")
    plan(cfg, size)
    return channels, size


def check_stage_sizes(graph: Graph, cfg: TrainConfig, module) -> None:
    """A progressive run trains at smaller sizes first: two images through ``module`` (``graph`` lowered, as the
    caller's refusals already built it) at each, before any work, so a model of one input size (a Flatten of
    fixed size before its classifier) is refused saying so (the first step failed with "Gemm node ... mat1 and
    mat2 shapes cannot be multiplied", naming neither cause nor file)."""
    import torch

    from graphmill.util.errors import ExecutionError

    channels, size = image_input(graph)
    sizes = sorted({s.size for s in plan(cfg, size)} - {size})
    if not sizes:
        return
    module.eval()
    try:  # two images (a Squeeze without axes drops the batch of one) at the model's own size first: a model
        with torch.no_grad():  # failing there fails in plain training too, and is not refused here
            module(torch.zeros(2, channels, size, size))
    except ExecutionError:
        return
    for s in sizes:
        try:
            with torch.no_grad():
                module(torch.zeros(2, channels, s, s))
        except ExecutionError as e:
            raise UserInputError(f"graph {graph.name!r} takes {size}x{size} images only: at {s}x{s}, the first "
                                 f"size of the progressive schedule, {str(e).splitlines()[0]}; train it without "
                                 "--progressive, or give a model that takes any image size (no fixed-size Flatten, "
                                 "position table or embedding before its classifier)") from None


def check_logits(graph: Graph, cfg: TrainConfig, module) -> None:
    """Two images through ``module`` (``graph`` lowered) at the model's size, before any work: a model that fails
    there is refused now, in one line naming the file (it failed in the first step, naming neither), and a
    classifier whose output width was not declared ([N, "K"]) must give the task's 10 logits (one of 20 trained,
    and reported an accuracy; an outside check)."""
    import torch

    from graphmill.util.errors import ExecutionError

    from .loop import first_output

    channels, size = image_input(graph)
    module.eval()
    try:
        with torch.no_grad():
            out = first_output(module(torch.zeros(2, channels, size, size)))
    except ExecutionError as e:
        raise UserInputError(f"graph {graph.name!r} fails on two {size}x{size} images of {channels} channel(s), the "
                             f"size it declares: {str(e).splitlines()[0]}") from None
    if cfg.mode != "contrastive" and (out.dim() != 2 or out.shape[1] != N_CLASSES):
        raise UserInputError(f"graph {graph.name!r}: the digits task has {N_CLASSES} classes, the model's first "
                             f"output is {list(out.shape)} for two images: give a model with {N_CLASSES} logits")


def check_first_output_rank(graph: Graph, needs: str) -> None:
    """The first output, when its rank is known, is ``[N, K]``: a model whose output is a feature map (a bare Conv)
    failed in the loss with a torch traceback, "only batches of spatial targets supported" or "t() expects a
    tensor with <= 2 dimensions" (an outside check)."""
    out = graph.outputs[0].shape if graph.outputs else None
    if out is not None and len(out) != 2:
        shown = "[" + ", ".join(str(d) for d in out) + "]"
        raise UserInputError(f"graph {graph.name!r}: the model's first output is {shown} (rank {len(out)}); training "
                             f"on the digits task needs {needs}")


def check_digits_classifier(graph: Graph) -> None:
    """A classifier for the digits task: its first output is ``[N, K]`` with K = 10 (a 1000-class model
    trained on 10 digits learns in 10 of its logits and ranks the 990 others: an accuracy that means nothing)."""
    check_first_output_rank(graph, f"[N, {N_CLASSES}] logits (a classifier)")
    out = graph.outputs[0].shape if graph.outputs else None
    if out is not None and len(out) == 2 and isinstance(out[1], int) and out[1] != N_CLASSES:
        raise UserInputError(f"graph {graph.name!r}: the digits task has {N_CLASSES} classes, the model's first "
                             f"output has {out[1]}: give a model with {N_CLASSES} (graphmill train builds a zoo model, "
                             "given by name, with 10)")


def run_training(graph: Graph, cfg: TrainConfig, *, checkpoint=None, resume: bool = False,
                 progress: Callable[[str], None] | None = None) -> TrainRun:
    """Train ``graph`` in place as ``cfg`` says (see the module docstring); ``checkpoint`` is the file written
    at every progress line, and read first when ``resume``."""
    from ..lowering import to_torch

    channels, size = check_model(graph, cfg)
    stages = plan(cfg, size)

    def data(s: int):
        return digits_data(s, channels, cfg.data_seed)

    if cfg.calibrate:
        calibrate_batchnorm(graph, data(stages[0].size)[0][:cfg.calibrate])
    common = dict(lr=cfg.lr, seed=cfg.seed, config=cfg.to_dict(), checkpoint=checkpoint, resume=resume,
                  progress=progress)
    if cfg.mode == "contrastive":
        module = to_torch(graph)
        loop = train_contrastive(module, data, stages[0], batch=cfg.batch, micro_batch=cfg.micro_batch,
                                 temperature=cfg.temperature, **common)
    else:
        # a rate given is applied to the model's Dropouts, 0 too (--dropout 0:0 left a built 0.9 in place while
        # the progress said 0.00; an outside check); no Dropout and no rate: none is put in
        has_drops = any(n.op_type == "Dropout" and n.domain in ("", "ai.onnx") for n in graph.nodes)
        dropping = any(s.dropout for s in stages) or (has_drops and any(s.dropout is not None for s in stages))
        module = to_torch(with_dropout(graph) if dropping else graph)
        # re-estimation at a size change: one forward per BatchNormalization, on fewer images than the first
        # calibration (the statistics move little; 128 images cost as much as the steps saved at 16 -> 32 px)
        loop = train_classifier(module, data, stages, batch=cfg.batch, eval_size=size,
                                recalibrate=min(cfg.calibrate, RECALIBRATE), **common)
    if not loop.interrupted:
        export_state(module, graph)
    return TrainRun(cfg, stages, loop, channels, size)
