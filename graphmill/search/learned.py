"""Training the learned passes' graph policy with PPO across graphs (issue 14, items 3-4).

The policy and its inference live in ``graphmill.passes.learned`` (passes never import search); the trainer
lives here because training is a search over policies, and search may import passes. It writes the policy file
the passes load (``policy.save_policy``: .npz + .json, never a pickle).

* **Tasks**: a graph on a device set (``identical chips`` of the default placement accelerator, roofline
  costs), its environment (``JointProblem``), observation and *reference*: the best baseline's step time
  (``passes.learned.baselines.best_baseline``: 6 placements x 2 fusions x 3 schedules).
* **Training set** (``training_set``): zoo models (ResNet-18, MobileNetV2, each forward and as a training step),
  random DAGs of realistic op mixes (``random_graph``: an MLP/attention mix of MatMul, Add, Mul, Relu, Tanh,
  Sigmoid, Softmax; a CNN mix of Conv, BatchNormalization, Relu, Add, MaxPool), on 2, 4 and 8 devices.
  ``random_graph`` also makes unrolled gated recurrent cells of random wiring (``rnn``); a policy trained with
  two of them added ranked the held-out NMT's helpful moves lower and was not shipped.
* **PPO** (one-step episodes: all decisions at once, as changes to a state): each step draws ``graphs`` tasks,
  samples ``samples`` decision sets per task from the current policy on the task's *state* (its decisions and
  their simulated schedule: ``features.state_features``), rewards ``-makespan / reference`` (``-penalty`` when
  a device's memory overflows), advantages normalized within each task's samples (the group mean is the
  baseline; no critic), then ``epochs`` passes of the clipped surrogate (``clip``) over every unmasked choice
  (each fuse, device and priority draw is one token sharing its sample's advantage) with an entropy bonus;
  Adam. A task's state starts as its hint (the best baseline) and moves to its best sample when that is
  faster, so the policy also learns to refine refined states (iterative refinement, ``infer.refine``); with
  probability ``reset`` per draw it returns to the hint.
* **Checkpoint/resume**: after every step the policy, optimizer, history and the tasks' states are written atomically
  (``torch.save`` of tensors and plain data, read back with ``weights_only=True``); the random draws of step
  ``k`` come from ``seed`` and ``k`` alone, so a resumed run equals an uninterrupted one.
* ``fine_tune``: zero-shot refinement, then the same PPO on one graph for a sample budget together with moves
  of whole chain units (the ``rl`` placer's units; which unit and where read from the best state's simulated
  schedule: ``critical_chain``, ``blame_unit_moves``), keeping the best decisions it simulated; from a fresh
  policy it is one of the two per-graph RL baselines of the benchmark (the other: ``place --method rl``).
"""

from __future__ import annotations

import bisect
import copy
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from graphmill.ir import Graph, UserInputError
from graphmill.ir.builder import GraphBuilder
from graphmill.passes.learned.env import Decisions, JointProblem, Outcome
from graphmill.passes.learned.features import node_features, state_features
from graphmill.passes.learned.infer import (ROUNDS, TOP, UNIT_TOP, moved, ranked_moves, refine, state_key, task_units,
                                            top_moves, unit_members)
from graphmill.passes.learned.policy import POLICY_FORMAT, GraphPolicy, Sample, obs_tensors, save_policy
from graphmill.passes.placement import build_problem, training_graph
from graphmill.passes.placement.rl import load_checkpoint, merge_options
from graphmill.util.files import save_torch_checkpoint
from graphmill.util.interrupts import DeferredInterrupt
from graphmill.util.torch_state import (finite_number, is_count, is_generator_state, module_state_damage,
                                        optimizer_state_damage)

__all__ = ["Task", "make_task", "random_graph", "training_set", "train", "fine_tune", "DEFAULTS",
           "TRAINING_MODELS", "task_units", "unit_moves", "fresh_policy",
           "guided_unit_moves", "blame_unit_moves", "critical_chain", "PORTABLE_ENV"]

DEFAULTS = {"steps": 60, "graphs": 4, "samples": 8, "epochs": 3, "clip": 0.2, "lr": 0.003, "entropy": 0.001,
            "penalty": 3.0, "hidden": 64, "layers": 3, "time_limit": 600.0, "reset": 0.3}

#: The environment under which training rounds alike on every x86-64 CPU: torch's kernels without the
#: vectorization they pick by CPU (AVX2, AVX-512) and MKL's conditional numerical reproducibility (one code path
#: whatever the CPU). Training is deterministic on one machine without them, but PPO turns a last-bit rounding
#: difference into another policy: the shipped command retrained on a Zen 5 (AVX-512) CPU ended 0.92 away (largest
#: weight difference) from the policy trained on the machine before, and 0.85-0.93 away with either variable set to
#: imitate an AVX2 CPU. Both are read when torch loads, so they are set in the shell, before the command.
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}

#: unit moves generated per one simulated (``fine_tune``'s ``units`` counts new states: a move to a state simulated
#: already is skipped, not counted, so an iteration on an unchanged state goes on past its earlier moves)
GEN = 8

#: zoo models in the default training set (model, build kwargs); none of the held-out benchmark graphs
TRAINING_MODELS = (("resnet18", {"batch": 8}), ("mobilenet_v2", {"batch": 8}))


@dataclass
class Task:
    name: str
    jp: JointProblem
    obs: dict
    t: dict
    reference: float
    baseline: str
    baseline_decisions: Decisions | None = None


def make_task(name: str, graph: Graph, cost: Any, *, hint: np.ndarray | None = None) -> Task:
    """A graph on the devices of ``cost`` (a ``PlacementCostModel``), ready for training or fine-tuning;
    ``hint``: the placement its features start from (default: the best baseline's)."""
    jp = JointProblem(build_problem(graph, cost), cost)
    obs = node_features(jp, hint=hint)  # its hint: the best baseline (for that placement)
    hd = obs["hint_decisions"]
    return Task(name, jp, obs, obs_tensors(obs), max(jp.evaluate(hd).makespan, 1e-9), obs["hint_name"], hd)


def random_graph(seed: int, kind: str = "mlp", n: int = 100, batch: int = 8) -> Graph:
    """A random DAG of a realistic op mix: ``mlp`` (MatMul, Add, Mul, Relu, Tanh, Sigmoid, Softmax on [batch *
    16, h] activations, widths 256..1024), ``cnn`` (Conv 3x3/1x1, BatchNormalization, Relu, Add, MaxPool on
    NCHW, 16..128 channels; in both each op reads one of the last few values, so skip connections arise) or
    ``rnn`` (unrolled gated recurrent cells with random wiring: ``_random_rnn``)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"{kind}{seed}")
    if kind == "mlp":
        h = int(rng.choice([256, 512, 1024]))
        vals = [b.input("x", "float32", [batch * 16, h])]
        for _ in range(n):
            a = vals[int(rng.integers(max(0, len(vals) - 6), len(vals)))]
            k = rng.choice(["mm", "mm", "mm", "add", "mul", "relu", "tanh", "sigmoid", "softmax"])
            if k == "mm":
                v = b.MatMul(a, (rng.standard_normal((h, h)) * 0.02).astype(np.float32))
            elif k in ("add", "mul"):
                c = vals[int(rng.integers(max(0, len(vals) - 6), len(vals)))]
                v = b.Add(a, c) if k == "add" else b.Mul(a, c)
            else:
                v = getattr(b, {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softmax": "Softmax"}[k])(a)
            vals.append(v)
    elif kind == "cnn":
        c = int(rng.choice([16, 32, 64]))
        s = int(rng.choice([28, 56]))
        vals = [b.input("x", "float32", [batch, c, s, s])]
        for _ in range(n):
            a = vals[int(rng.integers(max(0, len(vals) - 4), len(vals)))]
            k = rng.choice(["conv3", "conv1", "bn", "relu", "relu", "add"])
            if k.startswith("conv"):
                r = 3 if k == "conv3" else 1
                v = b.Conv(a, (rng.standard_normal((c, c, r, r)) * 0.05).astype(np.float32), pads=[r // 2] * 4)
            elif k == "bn":
                ones = np.ones(c, np.float32)
                v = b.BatchNormalization(a, ones, ones * 0, ones * 0, ones)
            elif k == "add":
                v = b.Add(a, vals[int(rng.integers(max(0, len(vals) - 4), len(vals)))])
            else:
                v = b.Relu(a)
            vals.append(v)
    elif kind == "rnn":
        vals = _random_rnn(b, rng, n, batch)
    else:
        raise UserInputError(f"random graph kind {kind!r}: choose mlp, cnn or rnn")
    used = {id(x) for node in b.graph.nodes for x in node.inputs}
    for v in vals[1:]:
        if id(v) not in used:
            b.output(v)
    return b.build()


def _random_rnn(b: GraphBuilder, rng: np.random.Generator, n: int, batch: int) -> list:
    """Unrolled gated recurrent cells with random wiring (``random_graph``'s ``rnn``): 1-3 layers, each an
    LSTM-style (Concat, MatMul, Split into 4 gates, Sigmoid/Tanh, Mul, Add) or GRU-style cell (2 gates and a
    candidate MatMul), weights shared over time, random residual adds between layers and random Softmax read-outs,
    until about ``n`` ops."""
    h = int(rng.choice([128, 256, 512]))
    B = batch * 2
    L = int(rng.integers(1, 4))
    kinds = [str(rng.choice(["lstm", "gru"])) for _ in range(L)]
    w = lambda r, c: b.const((rng.standard_normal((r, c)) * 0.05).astype(np.float32))  # noqa: E731
    W = [w(2 * h, 4 * h) if k == "lstm" else (w(2 * h, 2 * h), w(2 * h, h)) for k in kinds]
    emb = w(h, h)
    x = b.input("x", "float32", [B, h])
    hs = [b.input(f"h{k}", "float32", [B, h]) for k in range(L)]
    cs = [b.input(f"c{k}", "float32", [B, h]) for k in range(L)]
    vals = [x]
    count = 0
    while count < n:
        inp = b.Tanh(b.MatMul(x if not vals[1:] else vals[-1], emb))
        count += 2
        for k in range(L):
            cat = b.Concat(inp, hs[k], axis=1)
            if kinds[k] == "lstm":
                i, f, g, o = b.op("Split", b.MatMul(cat, W[k]), outputs=4, axis=1, num_outputs=4)
                cs[k] = b.Add(b.Mul(b.Sigmoid(f), cs[k]), b.Mul(b.Sigmoid(i), b.Tanh(g)))
                hn = b.Mul(b.Sigmoid(o), b.Tanh(cs[k]))
                count += 11
            else:
                z, r = b.op("Split", b.MatMul(cat, W[k][0]), outputs=2, axis=1, num_outputs=2)
                cand = b.Tanh(b.MatMul(b.Concat(inp, b.Mul(b.Sigmoid(r), hs[k]), axis=1), W[k][1]))
                hn = b.Add(b.Mul(b.Sigmoid(z), hs[k]), cand)
                count += 11
            if k and rng.random() < 0.3:
                hn = b.Add(hn, inp)
                count += 1
            hs[k] = inp = hn
        if rng.random() < 0.4:
            vals.append(b.Softmax(b.MatMul(inp, emb), axis=1))
            count += 2
        vals.append(inp)
    vals += cs
    return vals


def training_set(*, quick: bool = False) -> list[tuple[str, Graph, int]]:
    """(name, graph, devices) of the default training set (module docstring); ``quick``: a small one."""
    from graphmill.frontend import zoo

    out: list[tuple[str, Graph, int]] = []
    models = TRAINING_MODELS[:1] if quick else TRAINING_MODELS
    for i, (m, kw) in enumerate(models):
        g = zoo.build(m, **kw)
        out.append((f"{m}", g, 4))
        if not quick:
            out.append((f"{m}-train", training_graph(g.copy()), 2 + 2 * (i % 2)))
    specs = [("mlp", 60, 2), ("mlp", 150, 4), ("mlp", 300, 8), ("cnn", 40, 2), ("cnn", 100, 4), ("mlp", 200, 2)]
    for k, (kind, n, D) in enumerate(specs[:2] if quick else specs):
        out.append((f"random-{kind}-{n}-s{k}", random_graph(100 + k, kind, n), D))
    return out


def _signature(names: list[str], opts: dict, seed: int) -> str:
    """What a training checkpoint must match to be resumed: the policy's format too, or the checkpoint of a run
    under an older policy architecture passed the check and failed in ``load_state_dict`` with a traceback."""
    keys = ("graphs", "samples", "epochs", "clip", "lr", "entropy", "penalty", "hidden", "layers", "reset")
    return f"{POLICY_FORMAT}|{'|'.join(names)}|{seed}|" + "|".join(f"{k}={opts[k]}" for k in keys)


def _rollouts(policy: GraphPolicy, t: dict, jp: JointProblem, reference: float, K: int, gen: torch.Generator,
              penalty: float, record: Callable[[Decisions, Outcome], None] | None = None,
              transform: Callable[[Decisions], Decisions] | None = None
              ) -> tuple[list[Sample], np.ndarray, list[tuple[Decisions, Outcome]]]:
    samples, rewards, sims = [], [], []
    with torch.no_grad():
        heads = policy.heads(t)  # one forward pass for the K draws
    for _ in range(K):
        s = policy.act(t, gen=gen, heads=heads)
        dec = transform(s.decisions) if transform is not None else s.decisions
        o = jp.evaluate(dec)
        samples.append(s)
        sims.append((dec, o))
        rewards.append(-o.makespan / reference if o.valid else -penalty)
        if record is not None:
            record(dec, o)
    return samples, np.asarray(rewards), sims


def _ppo_update(policy: GraphPolicy, optim: torch.optim.Optimizer, batch: list[tuple[dict, list[Sample], np.ndarray]],
                opts: dict) -> float:
    """``epochs`` clipped-surrogate passes over the batch's tokens (each item: the state's tensors, its samples,
    their advantages); the last loss."""
    loss_v = 0.0
    for _ in range(int(opts["epochs"])):
        losses = []
        for t, samples, adv in batch:
            if not np.any(adv):
                continue
            heads = policy.heads(t)
            for s, a in zip(samples, adv):
                lp, ent = policy.log_prob(t, s, heads=heads)
                ratio = torch.exp(lp - s.logp)
                clipped = torch.clamp(ratio, 1 - opts["clip"], 1 + opts["clip"])
                surr = torch.minimum(ratio * float(a), clipped * float(a))
                losses.append(-surr.mean() - opts["entropy"] * ent.mean())
        if not losses:
            break
        loss = torch.stack(losses).mean()
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optim.step()
        loss_v = float(loss.detach())
    return loss_v


def _advantages(r: np.ndarray) -> np.ndarray:
    sd = r.std()
    return (r - r.mean()) / sd if sd > 1e-9 else np.zeros_like(r)


def _options(options: dict | None) -> dict:
    return merge_options(DEFAULTS, options, "train-policy")


def fresh_policy(seed: int = 0, options: dict | None = None) -> GraphPolicy:
    """The policy training and per-graph RL (``fine_tune(None, ...)``) start from, seeded. Its device logits are
    the hint's and the one-step move estimates' (``policy.GraphPolicy``'s gains) plus a random term (seeds 0, 1 and
    2 gave the same zero-shot results on every held-out graph of the benchmark), so what it proposes is a
    heuristic: the benchmark's "untrained" column, against which training is judged."""
    opts = _options(options)
    torch.manual_seed(seed)
    return GraphPolicy(hidden=int(opts["hidden"]), layers=int(opts["layers"]))


def train(tasks: list[Task], *, seed: int = 0, options: dict | None = None, checkpoint: str | None = None,
          progress: Callable[[str], None] | None = None, output: str | None = None,
          meta: dict | None = None) -> tuple[GraphPolicy, dict]:
    """PPO across ``tasks`` (module docstring); returns the policy and ``{"history", "steps", "total_steps",
    "samples", "seconds", "resumed", "interrupted"}``. ``output``: write the policy there (``save_policy``) with
    ``meta`` and the training record (tasks, seed, options, time). A Ctrl-C (or SIGTERM under
    ``TerminateAsInterrupt``) ends the run after the step under way, checkpointed: ``interrupted``, and no policy
    is written."""
    opts = _options(options)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(tasks, seed, opts, checkpoint, progress, output, meta or {})
    finally:
        torch.set_num_threads(threads)


def _decisions_damage(device: Any, fuse: Any, priority: Any, jp: JointProblem, like: Decisions) -> str:
    """What in one state's decisions (arrays or lists) no run writes for ``jp`` ('' when nothing): a device per op
    in range, as many fusion flags as ``like``'s, a finite priority per op."""
    try:
        d, f, p = np.asarray(device), np.asarray(fuse), np.asarray(priority)
    except (TypeError, ValueError):
        return "decisions that are not arrays"
    if not (d.shape == (jp.n,) and d.dtype.kind in "iu" and ((d >= 0) & (d < jp.devices)).all()):
        return f"decisions whose devices are not one in 0..{jp.devices - 1} per op ({jp.n})"
    if not (f.shape == np.shape(like.fuse) and f.dtype == bool):
        return "decisions whose fusion flags are not the graph's"
    if not (p.shape == (jp.n,) and p.dtype.kind == "f" and np.isfinite(p).all()):
        return "decisions whose priorities are not a finite number per op"
    return ""


#: what every row of train-policy's history holds as numbers (beside the step's task names)
HISTORY_NUMBERS = ("step", "samples", "mean_time_vs_best_baseline", "best_state_vs_best_baseline", "loss")


def _training_state_damage(state: Any, tasks: list[Task]) -> str:
    """What in a train-policy checkpoint's state no run writes ('' when nothing)."""
    if not isinstance(state, dict) or not (is_count(state.get("step")) and is_count(state.get("samples"))):
        return "its step and samples are not counts"
    if not (finite_number(state.get("seconds")) and state["seconds"] >= 0):  # inf ended the run at once
        return f"its seconds {str(state.get('seconds'))[:30]} is not a time"
    history = state.get("history")
    if not (isinstance(history, list) and len(history) == state["step"] and all(
            isinstance(r, dict) and all(finite_number(r.get(k)) for k in HISTORY_NUMBERS) for r in history)):
        return "its history is not one row of numbers per step"  # a NaN reached the --json report
    by_name = {t.name: t for t in tasks}
    states = state.get("states")
    if not isinstance(states, dict):
        return "its states are not a table"
    for name, dec in states.items():
        if name not in by_name or not (isinstance(dec, list) and len(dec) == 3):
            return f"its state of {str(name)[:40]} is not one of the training set's"
        why = _decisions_damage(*dec, by_name[name].jp, by_name[name].obs["decisions"])
        if why:
            return f"its state of {name}: {why}"
    return ""


def _fine_tune_damage(ck: dict, jp: JointProblem, start: Decisions, budget: int) -> str:
    """What in a fine-tuning checkpoint no run writes ('' when nothing); its best state's step time is checked
    once it is simulated again (``_best_time_damage``), as the resume does anyway."""
    try:  # the generator's state, checked by setting it on a scratch generator
        torch.Generator().set_state(ck.get("gen"))
    except (RuntimeError, TypeError, ValueError):
        return "its random generator states are not what graphmill writes"
    if not is_generator_state(ck.get("gen")) or not isinstance(ck.get("urng"), dict):
        return "its random generator states are not what graphmill writes"
    seen = ck.get("seen")
    if not (isinstance(seen, list) and all(isinstance(k, bytes) for k in seen)):
        return "its simulated states are not what graphmill writes"
    b = ck.get("best")
    if not isinstance(b, dict) or not all(is_count(b.get(k)) for k in ("n", "steps")) or b["n"] > budget:
        return "its best's sample and step counts are not counts within the budget"  # 10^12 skipped all sampling
    if any(b.get(k) is not None and not is_count(b[k]) for k in ("to_ref", "to_beat")) or not (isinstance(
            b.get("curve"), list) and all(isinstance(t, (int, float)) and not isinstance(t, bool) and not math.isnan(t)
                                         for t in b["curve"])):
        return "its best's record is not what graphmill writes"
    if not all(isinstance(b.get(k), torch.Tensor) for k in ("device", "fuse", "priority")):
        return "its best decisions are not tensors"
    why = _decisions_damage(b["device"].numpy(), b["fuse"].numpy(), b["priority"].numpy(), jp, start)
    return f"its best has {why}" if why else ""


def _best_time_damage(recorded: Any, out: Outcome) -> str:
    """Whether a checkpoint's best state, simulated again (``out``), takes the step time it records."""
    t = out.makespan if out.valid else math.inf
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool) and (
            recorded == t or math.isclose(recorded, t, rel_tol=1e-9)):
        return ""
    return f"its best state does not take the step time it records ({str(recorded)[:30]})"


def _train(tasks, seed, opts, checkpoint, progress, output, meta):
    # Ctrl-C finishes the step under way and checkpoints it (a second: at once); from the start, so that one
    # while the policy and its optimizer are built (torch imports for seconds) ends the run before step 1 with
    # its report, as one during a step does (it raised through, and `--json` wrote nothing: an outside check)
    with DeferredInterrupt() as ctrl_c:
        t_start = time.perf_counter()
        policy = fresh_policy(seed, opts)
        optim = torch.optim.Adam(policy.parameters(), lr=float(opts["lr"]))
        sig = _signature([t.name for t in tasks], opts, seed)
        state: dict = {"step": 0, "samples": 0, "history": [], "seconds": 0.0, "states": {}}
        resumed = False
        if checkpoint and os.path.exists(checkpoint):
            ck = load_checkpoint(checkpoint, sig, "training", "training set, options, seed or policy format")
            why = module_state_damage(policy, ck.get("policy")) or optimizer_state_damage(optim, ck.get("optim")) \
                or _training_state_damage(ck.get("state"), tasks)
            if why:  # tracebacks, or a silent wrong run: seconds=inf wrote a 3-step policy as finished (outside check)
                raise UserInputError(f"{checkpoint}: a damaged training checkpoint ({why}); give another path or "
                                     "remove it")
            policy.load_state_dict(ck["policy"])
            optim.load_state_dict(ck["optim"])
            state = ck["state"]
            resumed = True
        steps = int(opts["steps"])
        if resumed and progress and state["step"] >= steps:  # as search and the placers: nothing to train, said
            progress(f"train-policy: {checkpoint} already holds {state['step']} steps, --steps {steps}: nothing "
                     f"trained; the policy written is its {state['step']}-step one")
        elif resumed and progress:  # as the searches' resume lines (it went on at step 14 without a word)
            progress(f"train-policy: resumed from {checkpoint}: {state['step']} of {steps} steps done")
        seconds0 = float(state["seconds"])
        current: dict[str, tuple[dict, float]] = {}  # task -> (its refined state's observation, step time)
        G = min(int(opts["graphs"]), len(tasks))
        K = int(opts["samples"])
        while state["step"] < steps and not ctrl_c.requested:
            if seconds0 + time.perf_counter() - t_start > float(opts["time_limit"]):
                if progress:
                    progress(f"train-policy: time limit {opts['time_limit']:g} s reached at step {state['step']}")
                break
            k = state["step"]
            rng = np.random.default_rng([seed, k])
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            chosen = rng.choice(len(tasks), size=G, replace=False)
            resets = rng.random(G) < float(opts["reset"])
            batch = []
            ratios, bests = [], []
            for ti, reset in zip(chosen, resets):
                task = tasks[int(ti)]
                obs, cur_t = _state_of(task, state["states"], current, bool(reset))
                t = obs_tensors(obs)
                samples, r, sims = _rollouts(policy, t, task.jp, task.reference, K, gen, float(opts["penalty"]))
                batch.append((t, samples, _advantages(r)))
                ratios.append(float(np.mean(-r)))
                dec, o = min(sims, key=lambda s: (not s[1].valid, s[1].makespan))
                bests.append(min(cur_t, o.makespan if o.valid else math.inf) / task.reference)
                if o.valid and o.makespan < cur_t:  # the task's state moves on: later steps refine the refined state
                    state["states"][task.name] = [dec.device.tolist(), np.asarray(dec.fuse, bool).tolist(),
                                                  np.asarray(dec.priority, np.float64).tolist()]
                    current[task.name] = (state_features(task.jp, task.obs, dec, o), o.makespan)
                state["samples"] += K
            loss = _ppo_update(policy, optim, batch, opts)
            state["step"] += 1
            state["history"].append({"step": state["step"], "samples": state["samples"],
                                     "mean_time_vs_best_baseline": float(np.mean(ratios)),
                                     "best_state_vs_best_baseline": float(np.mean(bests)), "loss": loss,
                                     "tasks": [tasks[int(i)].name for i in chosen]})
            state["seconds"] = seconds0 + time.perf_counter() - t_start
            if checkpoint:
                save_torch_checkpoint(checkpoint, {"signature": sig, "policy": policy.state_dict(),
                                                   "optim": optim.state_dict(), "state": state})
            if progress:
                progress(f"train-policy: step {state['step']}/{steps}, {state['samples']} samples, mean step time "
                         f"{np.mean(ratios):.3f} of the best baseline (states {np.mean(bests):.3f}), loss {loss:.4f}, "
                         f"{state['seconds']:.0f} s")
    interrupted = ctrl_c.requested and state["step"] < steps
    info = {"history": state["history"], "steps": state["step"], "samples": state["samples"],
            "seconds": state["seconds"], "resumed": resumed, "interrupted": interrupted, "total_steps": steps}
    if output and not interrupted:  # an interrupted run writes no policy: its checkpoint resumes it
        record = {"training_set": [{"name": t.name, "ops": t.jp.n, "devices": t.jp.devices,
                                    "best_baseline": t.baseline} for t in tasks],
                  "seed": seed, "options": opts, "steps": state["step"], "samples": state["samples"],
                  "train_seconds": round(state["seconds"], 1), **meta}
        save_policy(policy, output, record)
    if checkpoint and state["step"] >= steps and os.path.exists(checkpoint):
        os.unlink(checkpoint)  # finished (as chip place's .rl-checkpoint): a rerun trains afresh, not a no-op 'resume'
    return policy, info


def _state_of(task: Task, saved: dict, current: dict, reset: bool) -> tuple[dict, float]:
    """The observation and step time of ``task``'s training state: the hint after a reset (the saved state is
    dropped), else the refined state saved for it (rebuilt after a resume: the simulation is deterministic)."""
    if reset:
        saved.pop(task.name, None)
        current.pop(task.name, None)
    if task.name not in saved:
        return task.obs, task.reference
    if task.name not in current:
        dev, fuse, prio = saved[task.name]
        dec = Decisions(np.asarray(dev, np.int64), np.asarray(fuse, bool), np.asarray(prio, np.float64))
        o = task.jp.evaluate(dec)
        current[task.name] = (state_features(task.jp, task.obs, dec, o), o.makespan)
    return current[task.name]


def fine_tune(policy: GraphPolicy | None, task: Task, *, budget: int = 100, samples: int = 10, seed: int = 0,
              options: dict | None = None, progress: Callable[[str], None] | None = None,
              transform: Callable[[Decisions], Decisions] | None = None, reference: float | None = None,
              top: tuple[int, ...] = TOP, unit_top: tuple[int, ...] = UNIT_TOP, singles: int = 4, units: int = 40,
              rounds: int = ROUNDS,
              start: tuple[Decisions, Outcome] | None = None, seen: set[bytes] | None = None,
              pick: str = "guided", mix: float = 0.0, checkpoint: str | None = None) -> dict:
    """PPO on one graph for ``budget`` simulated samples, starting from ``policy`` (a copy; None: a fresh
    policy, the per-graph RL baseline: the same algorithm from scratch). It first runs zero-shot use
    (``infer.refine`` itself: ``rounds`` rounds of greedy decisions, top-k changes and top-k unit moves
    (``unit_top``) from the hint, each simulation counted in the budget, its set of simulated states kept for
    what follows), so fine-tuning is never worse than zero-shot; then, refining the best state so far, each
    iteration simulates its greedy decisions and its
    ``top`` most probable device changes (``infer.top_moves``), then up to ``singles`` of its most probable
    single changes not simulated yet (one at a time, in the policy's order; none once this iteration improved
    the state), a candidate already simulated, the start state included, being neither simulated again nor
    counted, and ``samples`` - 1 - len(``top``) - ``singles`` draws (at least 2) on the current state's features,
    updates the policy with PPO on the draws, and moves the state to the best simulated so far. Returns ``{"decisions",
    "outcome", "samples", "samples_to_reference", "samples_to_beat", "curve", "steps"}``: the best valid decisions
    simulated (the start state when none beat it), the samples until one was at least as good as
    ``reference`` (default: the task's best baseline; the hint counts as 0 samples when it is, a caller's
    ``start`` never: it is not a new sample), until
    one was strictly better, and the best step time after each sample. ``transform`` maps the policy's
    decisions to the ones simulated (a pass deciding only some of the three: ``passes.learned.passes.combine``).

    ``units``: per iteration, after the policy's candidates, that many **chain-unit moves** (the placement RL
    placer's units, an Inception branch with its gradients, moved whole to another device), each simulated on
    the current state and kept at once when faster (first improvement); a move to a state simulated already is
    skipped and not counted, so an iteration on a state that did not change goes on past the earlier ones. A
    single-op change of a chain adds two transfers, so the policy's single-op moves cannot spread parallel
    branches; these can. ``pick="guided"``
    (default): chosen from the best state's simulated schedule (``guided_unit_moves``: the units the chain of
    waits setting its step time blames, ``blame_unit_moves``), uniform draws once those are spent (and with
    probability ``mix`` after a state's first move); ``pick="uniform"``: a seeded random unit and other device
    each (``unit_moves``, the algorithm before). Ranking units by the policy's mean device logits instead did
    worse than uniform draws on Inception-V3 (docs/results/learned.md).

    ``start``: the state to refine instead of the hint, with its outcome (a caller that already ran zero-shot
    passes its best and ``rounds=0``), so that no simulation is repeated and none is counted twice; the
    returned ``steps`` is the number of PPO updates. ``seen``: the ``state_key`` of states the caller simulated
    already (its zero-shot candidates): no greedy, top-k, single or unit candidate is simulated again or
    counted (PPO's draws are on-policy samples: simulated and counted as drawn, even when seen); filled in place.

    ``checkpoint``: a file written atomically after the zero-shot rounds and after every iteration (the policy,
    Adam's state, both random generators, the best decisions, the counters and curve, the simulated states'
    keys: ``torch.save`` of tensors and plain data, read back with ``weights_only=True``). Given an existing one
    of the same run (graph, devices, start state, policy, seed, budget and options: a larger budget cannot
    continue exactly, the last iteration was cut to fit), fine-tuning continues from it and
    returns exactly what an uninterrupted run returns; the best state's outcome is simulated again on resume,
    deterministic and not counted. Ctrl-C between two checkpoints loses at most one iteration's samples."""
    opts = _options(options)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        pol = copy.deepcopy(policy) if policy is not None else fresh_policy(seed, opts)
        pol.train()
        optim = torch.optim.Adam(pol.parameters(), lr=float(opts["lr"]))
        gen = torch.Generator().manual_seed(seed)
        ref = task.reference if reference is None else reference
        if start is not None:  # already simulated by the caller: not again, and not counted
            dec0, out0 = start
            obs = state_features(task.jp, task.obs, dec0, out0)
        else:
            dec0 = task.obs["decisions"] if transform is None else transform(task.obs["decisions"])
            out0 = task.jp.evaluate(dec0)
            obs = task.obs if transform is None else state_features(task.jp, task.obs, dec0, out0)
        best: dict = {"t": out0.makespan if out0.valid else math.inf, "dec": dec0, "out": out0, "n": 0, "steps": 0,
                      "to_ref": 0 if start is None and out0.valid and out0.makespan <= ref else None,
                      "to_beat": None, "curve": []}
        t_start = best["t"]

        seen = set() if seen is None else seen
        seen.add(state_key(dec0))
        unit_of = task_units(task.jp) if units else None
        urng = np.random.default_rng([seed, 1])
        sig = _fine_tune_signature(task, pol, dec0, seed, ref, dict(budget=budget, samples=samples, units=units,
                                   singles=singles, top=list(top), unit_top=list(unit_top), rounds=rounds, pick=pick,
                                   mix=mix, unit_gen=GEN,
                                   transform=transform is not None, opts=[opts[k] for k in sorted(opts)]))
        resumed = False
        if checkpoint and os.path.exists(checkpoint):
            ck = load_checkpoint(checkpoint, sig, "fine-tuning",
                                 "graph, devices, start, policy, seed, budget or options")
            why = module_state_damage(pol, ck.get("policy")) or optimizer_state_damage(optim, ck.get("optim")) \
                or _fine_tune_damage(ck, task.jp, dec0, budget)
            if not why:
                try:
                    urng.bit_generator.state = ck["urng"]
                except (TypeError, ValueError, KeyError):
                    why = "its random generator states are not what graphmill writes"
            if why:  # a forged best (t = 0) was the answer, exit 0; other fields: tracebacks (an outside check)
                raise UserInputError(f"{checkpoint}: a damaged fine-tuning checkpoint ({why}); give another path or "
                                     "remove it")
            pol.load_state_dict(ck["policy"])
            optim.load_state_dict(ck["optim"])
            gen.set_state(ck["gen"])
            b = ck["best"]
            bdec = Decisions(b["device"].numpy(), b["fuse"].numpy(), b["priority"].numpy())
            best.update(t=b["t"], n=b["n"], steps=b["steps"], to_ref=b["to_ref"], to_beat=b["to_beat"],
                        curve=list(b["curve"]), dec=bdec, out=task.jp.evaluate(bdec))  # not a new sample
            why = _best_time_damage(b["t"], best["out"])
            if why:  # a forged best (t = 0) was the answer, exit 0 (an outside check)
                raise UserInputError(f"{checkpoint}: a damaged fine-tuning checkpoint ({why}); give another path or "
                                     "remove it")
            seen.update(ck["seen"])
            # obs was the best state's features unless it is still the task's own (the hint: no start, no
            # transform, nothing better found yet)
            if start is not None or transform is not None or best["t"] < t_start:
                obs = state_features(task.jp, task.obs, best["dec"], best["out"])
            resumed = True
            if progress:  # as rl and train-policy say it (an outside check: the rerun went on without a word)
                progress(f"fine-tune {task.name}: " + (
                    f"{checkpoint} already holds {best['n']}/{budget} samples: nothing sampled" if best["n"] >= budget
                    else f"resumed from {checkpoint}: {best['n']}/{budget} samples done"))

        def save() -> None:
            if not checkpoint:
                return
            d = best["dec"]
            state = {"signature": sig, "policy": pol.state_dict(), "optim": optim.state_dict(),
                     "gen": gen.get_state(), "urng": urng.bit_generator.state, "seen": sorted(seen),
                     "best": {"t": best["t"], "n": best["n"], "steps": best["steps"], "to_ref": best["to_ref"],
                              "to_beat": best["to_beat"], "curve": list(best["curve"]),
                              "device": torch.from_numpy(np.asarray(d.device, np.int64).copy()),
                              "fuse": torch.from_numpy(np.asarray(d.fuse, bool).copy()),
                              "priority": torch.from_numpy(np.asarray(d.priority, np.float64).copy())}}
            save_torch_checkpoint(checkpoint, state)

        def count(t: float) -> None:  # one more simulation, its step time t (inf: invalid)
            best["n"] += 1
            best["t"] = min(best["t"], t)
            if best["to_ref"] is None and t <= ref:  # a caller's start is no sample: only new simulations count
                best["to_ref"] = best["n"]
            if best["to_beat"] is None and best["t"] < min(ref, t_start):
                best["to_beat"] = best["n"]
            best["curve"].append(best["t"])

        def record(dec: Decisions, o: Outcome) -> None:
            seen.add(state_key(dec))
            if o.valid and o.makespan < best["t"]:
                best.update(dec=dec, out=o)
            count(o.makespan if o.valid else math.inf)

        if rounds and not resumed:  # zero-shot first (infer.refine), each simulation counted
            dec, out, _, times = refine(pol, task.jp, obs, rounds=rounds, transform=transform, start=(dec0, out0),
                                        top=top, units=unit_top, budget=budget, seen=seen)
            for x in times:
                count(x)
            if best["t"] < t_start:  # refine's best: the fastest valid state it simulated
                best.update(dec=dec, out=out)
                obs = state_features(task.jp, task.obs, dec, out)
        if not resumed:
            save()
        said = [-1]

        def say() -> None:
            if progress and said[0] != best["n"]:
                said[0] = best["n"]
                # a graph that simulates in 0 cycles (an uncosted Loop alone) has a best baseline of 0: 1 between equals
                ratio = best["t"] / ref if ref else 1.0 if best["t"] == 0 else math.inf
                progress(f"fine-tune {task.name}: {best['n']}/{budget} samples, best {best['t']:,.0f} "
                         f"({ratio:.3f} of " + (f"the best baseline {task.baseline})" if reference is None
                                                else f"the reference {ref:,.0f})"))
        while best["n"] < budget:
            t = obs_tensors(obs)
            before = best["t"]
            with torch.no_grad():
                heads = pol.heads(t)
            g = pol.act(t, greedy=True, heads=heads).decisions
            cands = [g] + [d for _, d in top_moves(task.jp, obs["decisions"], heads[0], top)]
            for g in cands:
                g = transform(g) if transform is not None else g
                if state_key(g) not in seen and best["n"] < budget:
                    record(g, task.jp.evaluate(g))
            # the policy's single most probable changes not simulated yet, one at a time, in its order
            order, to = ranked_moves(obs["decisions"], heads[0])
            found = 0
            for i in order[:200]:
                if found >= singles or best["n"] >= budget or best["t"] < before:
                    break
                g = moved(task.jp, obs["decisions"], np.array([i]), to[[i]])
                g = transform(g) if transform is not None else g
                if state_key(g) not in seen:
                    record(g, task.jp.evaluate(g))
                    found += 1
            K = min(max(samples - 1 - len(top) - singles, 2), budget - best["n"])
            if K <= 0:
                break
            ss, r, _ = _rollouts(pol, t, task.jp, task.reference, K, gen, float(opts["penalty"]), record, transform)
            _ppo_update(pol, optim, [(t, ss, _advantages(r))], opts)
            best["steps"] += 1
            if units and best["n"] < budget:
                if pick == "uniform":
                    gen_moves = unit_moves(task.jp, lambda: best["dec"], unit_of, urng, GEN * units)
                else:
                    gen_moves = guided_unit_moves(task.jp, lambda: (best["dec"], best["out"]), unit_of, urng,
                                                  GEN * units, mix=mix)
                tried = 0
                for g in gen_moves:
                    if best["n"] >= budget or tried >= units:
                        break
                    g = transform(g) if transform is not None else g
                    if state_key(g) not in seen:
                        record(g, task.jp.evaluate(g))
                        tried += 1
            if best["t"] < before:
                obs = state_features(task.jp, task.obs, best["dec"], best["out"])
            save()
            say()
        say()  # the last samples, when the loop ended before its line (the last line said 19/20 of a budget of 20)
    finally:
        torch.set_num_threads(threads)
    return {"decisions": best["dec"], "outcome": best["out"], "samples": best["n"], "steps": best["steps"],
            "samples_to_reference": best["to_ref"], "samples_to_beat": best["to_beat"], "curve": best["curve"]}


def _fine_tune_signature(task: Task, policy: GraphPolicy, start: Decisions, seed: int, reference: float,
                         options: dict) -> str:
    """What a fine-tuning checkpoint must match to be resumed: the graph (name, ops, devices), the start
    state, the starting policy's weights, the seed, the reference and the options."""
    import hashlib

    h = hashlib.sha256(state_key(start))
    for v in policy.state_dict().values():
        h.update(v.detach().cpu().numpy().tobytes())
    return (f"fine-tune|{task.name}|{task.jp.n}|{task.jp.devices}|{seed}|{reference!r}|{h.hexdigest()}|"
            + "|".join(f"{k}={options[k]}" for k in sorted(options)))


def unit_moves(jp: JointProblem, current: Callable[[], Decisions], unit: np.ndarray, rng: np.random.Generator,
               k: int):
    """Up to ``k`` states, each the state ``current()`` returns then with one random chain unit (``unit``: op ->
    unit) moved whole to a random other device (the fusions now across devices dropped, the order kept:
    ``infer.moved``), generated lazily, so that a move the caller kept is built on by the next (first improvement)."""
    D = jp.devices
    U = int(unit.max()) + 1 if len(unit) else 0
    if D < 2 or not U:
        return
    members = unit_members(unit)
    for _ in range(k):
        u = int(rng.integers(U))
        ops = np.asarray(members[u], np.int64)
        cur = current()
        d = _other_device(rng, D, cur, ops)
        yield moved(jp, cur, ops, np.full(len(ops), d, np.int64))



def guided_unit_moves(jp: JointProblem, current: Callable[[], tuple[Decisions, Outcome]], unit: np.ndarray,
                      rng: np.random.Generator, k: int, *, mix: float = 0.0):
    """Like ``unit_moves``, but the unit and its device are chosen from the current state's simulated schedule
    (``current()`` returns the state and its ``Outcome``; nothing is simulated here): ``blame_unit_moves``'s
    list, most blamed first, re-ranked whenever the state changed (a move was kept); once the list is spent (and,
    after a state's first move, with probability ``mix``) a uniform draw as ``unit_moves`` makes. Placeto and
    GDP observe the current placement's runtime state the same way; reading the last simulation is free, as a
    forward pass is."""
    D = jp.devices
    U = int(unit.max()) + 1 if len(unit) else 0
    if D < 2 or not U:
        return
    members = unit_members(unit)
    ranked: list[tuple[int, int]] = []
    last = None
    pos = 0
    for _ in range(k):
        cur, out = current()
        if out is not last:
            ranked, last, pos = blame_unit_moves(jp, out, members), out, 0
        if pos < len(ranked) and (pos == 0 or rng.random() >= mix):  # a new state's first move: its most blamed
            u, d = ranked[pos]
            pos += 1
        else:
            u = int(rng.integers(U))
            d = _other_device(rng, D, cur, np.asarray(members[u], np.int64))
        ops = np.asarray(members[u], np.int64)
        yield moved(jp, cur, ops, np.full(len(ops), d, np.int64))


def _other_device(rng: np.random.Generator, D: int, cur: Decisions, ops: np.ndarray) -> int:
    """A uniform draw among the devices other than the one holding most of ``ops`` in ``cur``."""
    d = int(rng.integers(D - 1))
    return d + (d >= int(np.bincount(np.asarray(cur.device, np.int64)[ops], minlength=D).argmax()))


def critical_chain(jp: JointProblem, out: Outcome) -> list[tuple]:
    """The chain of waits that sets the step time of a simulated state, walked back from the op finishing last:
    an op waited for its latest input (a local producer: ``("data", producer, op)``; a transfer:
    ``("send", producer, op, seconds)``; for an op of a fusion group, the latest outside input of any member, the
    reader named) or, ready earlier, for its device (``("device", op ahead, op, wait)``);
    a transfer waited for its producer or for its link (``("link", producer of the transfer ahead, its
    destination device, wait)``: links carry one transfer at a time). Read from the ``Outcome`` alone."""
    prob = jp.prob
    n = prob.n
    if not n:
        return []
    st, fi = np.asarray(out.start, np.float64), np.asarray(out.finish, np.float64)
    dev = np.asarray(out.device, np.int64)
    grp = np.asarray(out.group, np.int64)
    eps = 1e-9 * max(out.makespan, 1.0)
    prev = np.full(n, -1, np.int64)  # the op that ran last on the same device before (another group)
    for ops in out.order():
        last = -1
        for i in ops:
            if last >= 0 and grp[last] != grp[i]:
                prev[i] = last
            elif last >= 0:
                prev[i] = prev[last]
            last = i
    sends: dict[tuple[int, int], tuple[float, float]] = {}  # (value, dst) -> (start, end)
    links: dict[tuple[int, int], list[tuple[float, float, int]]] = {}  # (src, dst) -> (start, end, producer op)
    for v, src, dst, s0, e in out.schedule.transfers:
        k = out.transfer_value(v)  # a fused state's schedule names the contracted problem's values
        p = prob.values[k].producer
        if p is not None:
            links.setdefault((src, dst), []).append((s0, e, int(p)))
            sends[(k, dst)] = (s0, e)
    for lst in links.values():
        lst.sort()

    def send_of(p: int, i: int) -> tuple[float, float] | None:  # the latest transfer of p's values to i's device
        got = [sends[(k, int(dev[i]))] for k in prob.out_values[p]
               if (k, int(dev[i])) in sends and i in prob.values[k].consumers]
        return max(got, key=lambda x: x[1]) if got else None

    chain: list[tuple] = []
    i = int(np.argmax(fi))
    for _ in range(4 * n + 8):  # every step goes strictly back in time or to a producer
        if st[i] <= eps:
            break
        ready, why, reader = 0.0, None, -1
        # a fused group starts once every member's outside input is there: the latest of them all is the wait (an
        # op's own inputs alone can be early, which would read as a wait for the device)
        for m in out.groups[grp[i]]:
            for p in prob.preds[m]:
                if grp[p] == grp[m]:
                    continue
                if dev[p] == dev[m]:
                    a = fi[p]
                else:
                    s = send_of(p, m)
                    a = s[1] if s is not None else fi[p] + prob.transfer(prob.edge_bytes.get((p, m), 0), int(dev[p]),
                                                                           int(dev[m]))
                if a > ready:
                    ready, why, reader = a, p, m
        if ready < st[i] - eps and prev[i] >= 0:  # ready earlier: it waited for its device
            chain.append(("device", int(prev[i]), i, st[i] - ready))
            i = int(prev[i])
            continue
        if why is None:
            break
        i = reader
        if dev[why] == dev[i]:
            chain.append(("data", int(why), i))
            i = int(why)
            continue
        s = send_of(int(why), i)
        chain.append(("send", int(why), i, ready - fi[why]))
        if s is not None and s[0] > fi[why] + eps:  # the transfer waited for its link
            lst = links[(int(dev[why]), int(dev[i]))]
            k = bisect.bisect_left(lst, (s[0], -math.inf, -1)) - 1
            if k >= 0:
                ahead = lst[k][2]
                chain.append(("link", ahead, int(dev[i]), s[0] - fi[why]))
                i = ahead
                continue
        i = int(why)
    return chain


AHEAD = 0.5  # share of a device wait blamed on the op ahead (the waiting op's unit: all of it)


def blame_unit_moves(jp: JointProblem, out: Outcome, members: list[list[int]]) -> list[tuple[int, int]]:
    """(unit, device) moves that would shorten the ``critical_chain`` of a simulated state, most blamed first:
    an op waiting for its device blames the op ahead (its unit moved to the least busy other device during the
    unit's time window) and itself (the same); a transfer on the chain blames its producer's unit moved to the
    reader's device and the reader's unit moved to the producer's; a transfer waiting for its link blames the
    unit of the transfer ahead, moved to that transfer's destination. Each move's score: the wait it could
    remove, summed over the chain. Nothing is simulated."""
    prob = jp.prob
    n, D = prob.n, prob.devices
    if not n or D < 2:
        return []
    unit = np.zeros(n, np.int64)
    for u, ops in enumerate(members):
        unit[ops] = u
    dev = np.asarray(out.device, np.int64)
    st, fi = np.asarray(out.start, np.float64), np.asarray(out.finish, np.float64)
    score: dict[tuple[int, int], float] = {}

    # one op per group: members share the group's start and finish, so each would count its whole time again
    heads = np.array([g[0] for g in out.groups], np.int64)

    def idle_device(u: int) -> int:  # the other device least busy while the unit's ops run
        ops = members[u]
        lo, hi = float(st[ops].min()), float(fi[ops].max())
        busy = np.clip(np.minimum(fi[heads], hi) - np.maximum(st[heads], lo), 0, None)
        load = np.bincount(dev[heads], weights=busy, minlength=D)
        load[np.bincount(dev[ops], minlength=D).argmax()] = np.inf
        return int(load.argmin())

    def add(u: int, d: int, s: float) -> None:
        if np.all(dev[members[u]] == d):
            return
        score[(u, d)] = score.get((u, d), 0.0) + s

    where: dict[int, int] = {}
    for item in critical_chain(jp, out):
        kind = item[0]
        if kind == "device":
            _, a, b, w = item
            for x, share in ((b, 1.0), (a, AHEAD)):
                u = int(unit[x])
                if u not in where:
                    where[u] = idle_device(u)
                add(u, where[u], share * w)
        elif kind == "send":
            _, p, c, w = item
            add(int(unit[p]), int(dev[c]), w)
            add(int(unit[c]), int(dev[p]), w)
        elif kind == "link":
            _, q, dst, w = item
            add(int(unit[q]), dst, w)
    return [k for k, _ in sorted(score.items(), key=lambda kv: -kv[1])]

