"""Real pipeline-parallel training of a partitioned graph on ``torch.distributed.pipelining``.

The graph's compute nodes carry ``node.meta["stage"]`` (the ``pipeline-partition`` pass); each stage is cut
out as a graph of its own (``graphmill.ir.partition.extract_stages``: its inputs are the values crossing into
it, skip connections relayed stage by stage), lowered with ``to_torch`` and wrapped in a ``PipelineStage``;
``ScheduleGPipe`` or ``Schedule1F1B`` drives ``K`` local processes that talk over gloo. The processes are
started here (``torch.multiprocessing`` spawn, a free localhost port): no torchrun.

Training, the same in every process and in the single-process reference: generated data (seeded normal
inputs; integer inputs in [0, 2)), a fixed random target for the first output, loss = MSE(first output,
target) + the mean square of every other output, averaged over the ``M`` micro-batches (the schedule's
``scale_grads``), plain SGD; modules in eval mode (Dropout off, BatchNormalization on running statistics:
the torch backend's semantics), so that both runs compute the same function. The report compares every
step's loss and every parameter's gradient with the reference (``max |a - b| / max |b|`` per tensor), and
the trained weights are written back into the graph's initializers (``export_weights``).

What pipelining cannot pass is refused before any process starts, naming the boundary: a value that is not a
dense tensor, an element type gloo does not send (bool, complex), a shape not known or a size computed from
shapes (``shape_values``); a weight read by two stages (each process would train its own copy); and under
``1f1b`` fewer micro-batches than stages (torch's ``Schedule1F1B`` refuses them).
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import tempfile
import time
from datetime import timedelta
from typing import Any, Callable

import numpy as np
import torch

from graphmill.ir import Graph, TensorType, UserInputError
from graphmill.ir.partition import StageGraph, compute_nodes, extract_stages
from graphmill.ir.summary import computed_from_shapes, constant_values
from graphmill.passes.pipeline.memory import SCHEDULES  # the one list: the planner counts their memory
from graphmill.util.errors import ExecutionError
from graphmill.util.interrupts import join_or_stop, start_spawned

from .lowering import export_weights, to_torch
from .tensors import torch_dtype
from .weights import initializer_copies, weight_initializers

_SENDABLE = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.uint8, torch.int32,
             torch.int64)


def stages_of(graph: Graph) -> list[list]:
    """The compute nodes of ``graph`` grouped by ``node.meta["stage"]``, checked contiguous and edge-respecting."""
    nodes = compute_nodes(graph)
    missing = [n for n in nodes if not isinstance(n.meta.get("stage"), int)]
    if missing:
        raise UserInputError(f"{missing[0].describe()} has no pipeline stage (node.meta['stage']); run "
                             "pipeline-partition first")
    k = max(n.meta["stage"] for n in nodes) + 1
    groups: list[list] = [[] for _ in range(k)]
    for n in nodes:
        groups[n.meta["stage"]].append(n)
    for s, g in enumerate(groups):
        if not g:
            raise UserInputError(f"graph {graph.name!r}: pipeline stage {s} has no compute node")
    return groups


def shape_values(graph: Graph) -> set[str]:
    """Names of the integer values computed from tensor shapes alone (a Shape or Size, then arithmetic on it and
    on constants): sizes, not data. A ConstantOfShape's output is a tensor of its ``value``, not a size."""
    values, _ = computed_from_shapes(graph, constant_values(graph), data_ops=frozenset({"ConstantOfShape"}),
                                     counts=lambda v: isinstance(v.type, TensorType) and v.type.dtype is not None
                                     and v.type.dtype.is_integer)
    return {v.name for n in graph.nodes for v in n.outputs if v is not None and id(v) in values}


def _measured_graph_inputs(graph: Graph, name: str) -> list[str]:
    """The graph inputs whose shapes the size value ``name`` is computed from, when it measures nothing else (the
    advice to move the cut cannot help then: an outside check), else []."""
    producers = {o.name: n for n in graph.nodes for o in n.outputs if o is not None}
    inputs = {v.name for v in graph.inputs if not v.is_initializer}
    measured, todo, seen = [], [name], set()
    while todo:
        node = producers.get(todo.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in ("Shape", "Size"):
            source = node.inputs[0].name if node.inputs and node.inputs[0] is not None else ""
            if source not in inputs:
                return []
            measured.append(source)
        else:
            todo.extend(v.name for v in node.inputs if v is not None)
    return sorted(set(measured))


def check_pipelinable(graph: Graph, stage_graphs: list[StageGraph]) -> None:
    """Refuse, naming the boundary, what torch.distributed.pipelining cannot carry (module docstring)."""
    sizes = shape_values(graph)
    for st in stage_graphs[1:]:
        for v in st.graph.inputs:
            where = f"boundary {st.index - 1}->{st.index} carries {v.name!r}"
            if v.name in sizes:  # the stage process then failed in torch's tracing ("SymIntArrayRef expected to
                # contain only concrete integers"), after the reference had trained (an outside check)
                inputs = _measured_graph_inputs(graph, v.name)
                advice = (f"it measures graph input {inputs[0]!r}, which only stage 0 receives, so no --stages moves "
                          "it: export the model with that size fixed (torch: x.view(-1, ...), not "
                          "x.view(x.size(0), ...))" if inputs else
                          "try another --stages (the cut falls elsewhere) or fix the model's sizes")
                raise UserInputError(f"{where}, computed from tensor shapes alone (a size, or positions made from "
                                     "one): torch.distributed.pipelining traces each stage with symbolic sizes and "
                                     f"cannot receive it; {advice}")
            t = v.type
            if not isinstance(t, TensorType):
                raise UserInputError(f"{where}, of type {t}: torch.distributed.pipelining passes only dense "
                                     "tensors between stages; move the cut")
            try:
                dt = torch_dtype(t.dtype)
            except (TypeError, ValueError):
                dt = None
            if dt not in _SENDABLE:
                raise UserInputError(f"{where}, of element type {t.dtype.short_name if t.dtype else '?'}: "
                                     "torch.distributed.pipelining over gloo cannot send it; move the cut")
            if t.shape is None or any(not isinstance(d, int) for d in t.shape[1:]):
                raise UserInputError(f"{where}, of shape {t.shape}: pipelining needs every dimension but the batch "
                                     "known; bind the model's symbols first")
    owner: dict[str, int] = {}
    for st in stage_graphs:
        for name in read_directly(st.graph):
            if name in owner and _is_float(st.graph.initializers[name]):
                raise UserInputError(f"weight {name!r} is read by stages {owner[name]} and {st.index}: each process "
                                     "would train its own copy; put its readers in one stage")
            owner[name] = st.index


def read_directly(graph: Graph) -> list[str]:
    """``graph``'s initializers read by some node other than the Identity of an initializer copy: a stage that
    holds an initializer only to copy it (``n2.bias = Identity(a.bias)``, see ``weights``) does not train it."""
    copies = initializer_copies(graph)
    read: set[str] = set()
    for node in graph.nodes:
        if node.op_type == "Identity" and node.outputs and node.outputs[0] is not None \
                and node.outputs[0].name in copies:
            continue
        read.update(v.name for v in node.inputs if v is not None and v.is_initializer)
    read.update(v.name for v in graph.outputs if v.is_initializer)
    return [n for n in graph.initializers if n in read]


def _is_float(v) -> bool:
    return isinstance(v.type, TensorType) and v.type.dtype.is_floating and v.type.shape is not None and \
        len(v.type.shape) > 0


def generated_data(graph: Graph, batch: int, seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Seeded inputs for ``graph`` with the batch dimension ``batch``, and a target shaped like its first output."""
    gen = torch.Generator().manual_seed(seed)
    constant = constant_values(graph)
    xs = []
    for v in graph.inputs:
        if id(v) in constant:
            continue
        t = v.type
        shape = [batch, *t.shape[1:]]
        bad = [d for d in shape[1:] if not isinstance(d, int)]
        if bad:
            raise UserInputError(f"input {v.name!r} has symbolic dimension {bad[0]!r}: --run needs every dimension "
                                 "but the batch fixed")
        dt = torch_dtype(t.dtype)
        if dt.is_floating_point:
            xs.append(torch.randn(shape, generator=gen).to(dt))
        else:
            xs.append(torch.randint(0, 2, shape, generator=gen).to(dt))
    module = to_torch(graph).eval()
    with torch.no_grad():
        out = module(*xs)
    first = out[0] if isinstance(out, tuple) else out
    target = torch.randn(first.shape, generator=gen).to(first.dtype)
    return xs, target


def loss_fn(output: Any, target: torch.Tensor) -> torch.Tensor:
    """MSE of the first output against the target, plus the mean square of every other output."""
    outs = output if isinstance(output, (tuple, list)) else (output,)
    loss = torch.nn.functional.mse_loss(outs[0], target)
    for o in outs[1:]:
        if o.is_floating_point():
            loss = loss + (o * o).mean()
    return loss


def check_microbatch_split(graph: Graph, xs: list[torch.Tensor], microbatches: int, *,
                           tolerance: float = 1e-3) -> None:
    """Refuse a graph whose dimension 0 is not a batch of independent samples.

    GPipe's claim (and ``torch.distributed.pipelining``'s split of every input along dimension 0) is that the
    micro-batched step computes what the whole batch would. That holds only when no op mixes samples along
    dimension 0: a sequence-first model (attention or a CumSum over dimension 0) keeps every shape at B/M, so the
    partition's shape check passes, and the reference run, which uses the same micro-batches, agrees with the
    pipeline; both then train another function than the model's (an outside check). So the model's outputs on the
    whole batch are compared here with its micro-batches' outputs concatenated (eval mode: BatchNormalization on
    running statistics, no Dropout, so a batch-first model agrees to rounding)."""
    module = to_torch(graph).eval()
    with torch.no_grad():
        whole = module(*xs)
        parts = [module(*c) for c in zip(*[x.tensor_split(microbatches) for x in xs])]
    whole = whole if isinstance(whole, (tuple, list)) else (whole,)
    parts = [p if isinstance(p, (tuple, list)) else (p,) for p in parts]
    batch = xs[0].shape[0] if xs else 0
    for i, (out, v) in enumerate(zip(whole, graph.outputs)):
        pieces = [p[i] for p in parts]
        if out.dim() == 0 or out.shape[0] != batch or sum(p.shape[0] if p.dim() else 0 for p in pieces) != batch:
            raise UserInputError(f"output {v.name!r} has shape {tuple(out.shape)} for a batch of {batch}: its "
                                 "dimension 0 is not the batch, so it cannot be split into micro-batches")
        joined = torch.cat(pieces).to(torch.float64)
        ref = out.to(torch.float64)
        # infinities and NaNs must agree in place (then check_finite speaks of a loss that is not finite; "mixes
        # samples" was said of a batch-first Log(Relu(x)) with -inf outputs, a reviewer found); finite values by size
        finite = torch.isfinite(ref)
        same_nonfinite = (torch.equal(finite, torch.isfinite(joined))
                          and torch.equal(torch.isnan(ref), torch.isnan(joined))
                          and torch.equal(ref[torch.isinf(ref)], joined[torch.isinf(ref)]))
        ref_f = ref[finite]
        scale = float(ref_f.abs().max()) if ref_f.numel() else 0.0
        if not same_nonfinite:
            diff = float("inf")
        else:
            diff = float((joined[finite] - ref_f).abs().max()) if ref_f.numel() else 0.0
        if not diff <= tolerance * max(scale, 1e-30):
            raise UserInputError(
                f"output {v.name!r} of the whole batch of {batch} differs from its {microbatches} micro-batches' "
                f"outputs joined (max relative difference {diff / max(scale, 1e-30):.3g}): an op mixes samples "
                "along dimension 0 (a sequence-first model, a CumSum or a reduction over dimension 0), so "
                "micro-batches along dimension 0 do not compute the model; export it batch-first")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reference_training(graph: Graph, xs: list[torch.Tensor], target: torch.Tensor, *, steps: int,
                       microbatches: int, lr: float, progress: Callable[[str], None] | None = None) -> dict:
    """Single-process training with the same micro-batches: losses, gradients per step, final weights.
    ``progress(line)`` gets one line per step."""
    module = to_torch(graph).eval()
    opt = torch.optim.SGD(module.parameters(), lr=lr)
    chunks = list(zip(*[x.tensor_split(microbatches) for x in xs]))
    tchunks = target.tensor_split(microbatches)
    losses, grads, times = [], [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        total = 0.0
        for c, t in zip(chunks, tchunks):
            loss = loss_fn(module(*c), t) / microbatches
            loss.backward()
            total += float(loss.detach()) * microbatches
        times.append(time.perf_counter() - t0)
        losses.append(total / microbatches)
        grads.append({module.param_names[n]: p.grad.detach().clone() for n, p in module.named_parameters()
                      if p.grad is not None})
        opt.step()
        if progress is not None:
            progress(step_line("one process (the reference)", len(losses), steps, losses[-1], times[-1]))
        check_finite(losses, lr, "in one process", steps)  # at once: the steps after a NaN teach nothing
    params = {module.param_names[n]: p.detach().clone() for n, p in module.named_parameters()}
    return {"losses": losses, "grads": grads, "params": params, "times": times}


def step_line(who: str, step: int, steps: int, loss: float, seconds: float) -> str:
    """One progress line of ``partition --run``: who trains, the step, its loss and time."""
    return f"partition --run: {who}, step {step}/{steps}, loss {loss:.6g}, {seconds * 1e3:.1f} ms"


class _ContiguousGrad(torch.autograd.Function):
    """The identity, whose gradient comes back contiguous."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad.contiguous()


class _ContiguousBoundary(torch.nn.Module):
    """A stage whose tensors crossing a boundary are contiguous both ways: its outputs, and the gradients of its
    inputs, which it sends back. gloo sends and receives only contiguous tensors, and the schedule makes the
    previous stage's receive buffers with the strides of these gradients: a cut after a Transpose, whose input's
    gradient is a transposed view, stopped the run ('input tensor has to be contiguous'). The parameters stay
    ``inner``'s own objects."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *xs: torch.Tensor) -> Any:
        xs = tuple(_ContiguousGrad.apply(x) if x.requires_grad else x for x in xs)
        out = self.inner(*xs)
        if isinstance(out, (tuple, list)):
            return type(out)(o.contiguous() for o in out)
        return out.contiguous()


def _worker(rank: int, world: int, port: int, stage_graph: Graph, trainable: list[str], xs, target, steps: int,
            microbatches: int, schedule: str, lr: float, out_dir: str, lines=None) -> None:
    import torch.distributed as dist
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    try:
        module = to_torch(stage_graph, trainable=trainable).eval()
        stage = PipelineStage(_ContiguousBoundary(module), rank, world, torch.device("cpu"))
        cls = ScheduleGPipe if schedule == "gpipe" else Schedule1F1B
        sched = cls(stage, microbatches, loss_fn=loss_fn)  # every rank: it tells the schedule to run backward
        # a stage of activations or pooling only has no weights to step ("optimizer got an empty parameter list")
        opt = torch.optim.SGD(params, lr=lr) if (params := list(module.parameters())) else None
        losses, grads, times = [], [], []
        for _ in range(steps):
            dist.barrier()
            t0 = time.perf_counter()
            if opt is not None:
                opt.zero_grad()
            if rank == 0 and world == 1:
                mb_losses: list = []
                sched.step(*xs, target=target, losses=mb_losses)
            elif rank == 0:
                sched.step(*xs)
            elif rank == world - 1:
                mb_losses = []
                sched.step(target=target, losses=mb_losses)
            else:
                sched.step()
            dist.barrier()
            times.append(time.perf_counter() - t0)
            if rank == world - 1:
                losses.append(float(torch.stack([x.detach() for x in mb_losses]).mean()))
                if lines is not None:  # the last stage holds the loss: it reports the step to the parent
                    who = f"{world} stage process{'es' if world > 1 else ''} ({schedule})"
                    lines.put(step_line(who, len(losses), steps, losses[-1], times[-1]))
            grads.append({module.param_names[n]: p.grad.detach().clone() for n, p in module.named_parameters()
                          if p.grad is not None})
            if opt is not None:
                opt.step()
        params = {module.param_names[n]: p.detach().clone() for n, p in module.named_parameters()}
        torch.save({"losses": losses, "grads": grads, "params": params, "times": times},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    except Exception as e:  # the first failure is the cause; the other ranks then fail on their closed links
        with open(os.path.join(out_dir, f"rank{rank}.err"), "w") as f:
            f.write(f"{time.time()!r}\n{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
        raise
    finally:
        dist.destroy_process_group()


def first_failure(out_dir: str) -> str | None:
    """The stage process that failed first, and its error (``_worker`` writes ``rankN.err``): torch reports
    whichever process it noticed, often a peer that only lost its connection ('Connection closed by peer')."""
    found = []
    for name in os.listdir(out_dir):
        if name.startswith("rank") and name.endswith(".err"):
            with open(os.path.join(out_dir, name)) as f:
                when, _, what = f.read().partition("\n")
            found.append((float(when), int(name[4:-4]), what))
    if not found:
        return None
    _, rank, what = min(found)
    return f"stage {rank}: {what}"


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(b.abs().max()) if b.numel() else 0.0
    diff = float((a - b).abs().max()) if b.numel() else 0.0
    return diff / scale if scale > 0 else diff


def run_pipeline(graph: Graph, *, steps: int = 2, batch: int, microbatches: int, schedule: str = "gpipe",
                 lr: float = 0.01, seed: int = 0, write_back: bool = True,
                 progress: Callable[[str], None] | None = None) -> dict:
    """Train ``graph`` for ``steps`` steps pipelined over its stages, compare with one process, write weights back.

    ``progress(line)`` gets one line per step of the one-process reference, then one per pipelined step (sent
    by the last stage process, which holds the loss). Ctrl-C or SIGTERM stops every process; nothing is written back.

    Returns ``{"stages", "schedule", "steps", "batch", "microbatches", "losses", "reference_losses",
    "max_loss_rel_diff", "max_grad_rel_diff", "grads_compared", "max_weight_rel_diff", "step_time_s",
    "reference_step_time_s", "backend"}``; times are medians over the steps after the first.
    """
    if schedule not in SCHEDULES:
        raise UserInputError(f"unknown pipeline schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    for name, v in (("steps", steps), ("batch", batch), ("microbatches", microbatches)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserInputError(f"{name} must be an integer >= 1, got {v!r}")
    if batch % microbatches:
        raise UserInputError(f"--batch {batch} does not split into {microbatches} equal micro-batches")
    groups = stages_of(graph)
    k = len(groups)
    if schedule == "1f1b" and microbatches < k:  # torch's Schedule1F1B refuses it in the stage processes
        raise UserInputError(f"--schedule 1f1b --run needs at least as many micro-batches as stages: --microbatches "
                             f"{microbatches} < {k} stages (torch's Schedule1F1B); give --microbatches >= {k} or "
                             "--schedule gpipe")
    stage_graphs = extract_stages(graph, groups)
    check_pipelinable(graph, stage_graphs)
    # the whole graph decides what is a weight (a MatMul's bias is one even when the MatMul is in another stage)
    weights = weight_initializers(graph)
    trainable = [sorted(n for n in [*read_directly(st.graph), *initializer_copies(st.graph)] if n in weights)
                 for st in stage_graphs]
    for st, names in zip(stage_graphs, trainable):
        to_torch(st.graph, trainable=names)  # refuse what the torch backend cannot run before any process starts
    xs, target = generated_data(graph, batch, seed)
    check_microbatch_split(graph, xs, microbatches)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each stage process: the measured times compare like with like
    try:
        ref = reference_training(graph, xs, target, steps=steps, microbatches=microbatches, lr=lr,
                                 progress=progress)
    finally:
        torch.set_num_threads(threads)
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="graphmill-pipeline-") as tmp:
        port = _free_port()
        try:
            _spawn(mp, k, port, stage_graphs, trainable, xs, target, steps, microbatches, schedule, lr, tmp, progress)
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
            last = first_failure(tmp) or (str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
            raise ExecutionError(f"pipelined training failed in a stage process: {last}") from None
        results = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in range(k)]
    losses = results[-1]["losses"]
    check_finite(losses, lr, "pipelined", advice="one process stayed finite on the same data: a fault of the "
                 "pipelined run, please report it")
    loss_diff = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(losses, ref["losses"]))
    grad_diff, compared = 0.0, 0
    for step in range(steps):
        got: dict[str, torch.Tensor] = {}
        for r in results:
            got.update(r["grads"][step])
        for name, g in ref["grads"][step].items():
            if name not in got:
                raise UserInputError(f"weight {name!r} got a gradient in one process but none in the pipeline")
            grad_diff = max(grad_diff, _rel(got[name], g))
            compared += 1
    params: dict[str, torch.Tensor] = {}
    for r in results:
        params.update(r["params"])
    weight_diff = max((_rel(params[n], p) for n, p in ref["params"].items()), default=0.0)
    if write_back:
        full = to_torch(graph)
        with torch.no_grad():
            for pname, vname in full.param_names.items():
                getattr(full, pname).copy_(params[vname])
        export_weights(full, graph)
    pipe_times = [max(r["times"][i] for r in results) for i in range(steps)]
    tail = pipe_times[1:] or pipe_times
    rtail = ref["times"][1:] or ref["times"]
    return {"stages": k, "schedule": schedule, "steps": steps, "batch": batch, "microbatches": microbatches,
            "losses": losses, "reference_losses": ref["losses"], "max_loss_rel_diff": loss_diff,
            "max_grad_rel_diff": grad_diff, "grads_compared": compared, "max_weight_rel_diff": weight_diff,
            "step_time_s": statistics.median(tail), "reference_step_time_s": statistics.median(rtail),
            "backend": "gloo", "boundaries": [[v.name for v in st.graph.inputs] for st in stage_graphs[1:]]}


def check_finite(losses: list[float], lr: float, where: str, steps: int | None = None,
                 advice: str = "give a smaller --lr") -> None:
    """Refuse a run whose loss left the floats (the weights written back would be NaN, the comparison empty)."""
    bad = next((i for i, x in enumerate(losses) if not math.isfinite(x)), None)
    if bad is not None:
        raise ExecutionError(f"training {where} diverged: loss {losses[bad]} at step {bad + 1} of "
                             f"{steps or len(losses)} (losses {', '.join(f'{x:.6g}' for x in losses[:bad + 1])}) at "
                             f"learning rate {lr:g}; {advice}; nothing was written")


def _spawn(mp, k, port, stage_graphs, trainable, xs, target, steps, microbatches, schedule, lr, tmp,
           progress: Callable[[str], None] | None) -> None:
    lines = mp.get_context("spawn").SimpleQueue() if progress is not None else None
    ctx = start_spawned(mp, _entry, (k, port, [st.graph for st in stage_graphs], trainable, xs, target, steps,
                                     microbatches, schedule, lr, tmp), k, tmp, passed=(lines,))

    def relay() -> None:
        while lines is not None and not lines.empty():
            progress(lines.get())
    join_or_stop(ctx, relay)
    relay()


def _entry(rank: int, world: int, port: int, graphs: list[Graph], trainable, xs, target, steps, microbatches,
           schedule, lr, tmp, lines) -> None:
    _worker(rank, world, port, graphs[rank], trainable[rank], xs if rank == 0 else None, target if rank == world - 1 else None,
            steps, microbatches, schedule, lr, tmp, lines if rank == world - 1 else None)


__all__ = ["SCHEDULES", "check_finite", "check_microbatch_split", "check_pipelinable", "generated_data", "loss_fn",
           "reference_training", "run_pipeline", "stages_of", "step_line"]
