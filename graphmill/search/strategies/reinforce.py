"""RL controllers: an LSTM that samples a configuration decision by decision (Zoph & Le 2017; ENAS; MnasNet).

The controller walks the space in dependency order (``Space.build``), so a conditional parameter is decided only
when it is active. At each step the LSTM gets the embedding of the previous decision's action plus an embedding
of which decision comes now, and a per-decision head gives the logits. Choices are categorical over their
values; an ``Int`` with at most 32 values over each value, otherwise (and every ``Float``) over ``bins`` equal
bins of its (log-)scaled range, the value being the bin's centre.

* ``reinforce``: policy gradient with a moving-average baseline (``baseline_decay``) and an entropy bonus; the
  advantage ``R - b`` is divided by the running standard deviation of rewards (clipped to +-5) so that the
  learning rate does not depend on the reward's scale. One update per ``batch`` results.
* ``ppo`` (MnasNet's choice): the same controller trained with PPO's clipped surrogate (``clip``) for
  ``epochs`` passes over each batch of ``batch`` results.

Sampling draws from the controller's probabilities with the strategy's numpy generator, and the weights and
optimizer state are saved as JSON lists, so runs are seeded, deterministic with one worker, and resumable.
A result told for a configuration the controller did not ask (a repeat, a resumed run) is scored by the
actions that produce it. A failed evaluation counts as the worst reward seen so far.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from graphmill.search.space import Choice, Float, Int, Param, Space
from graphmill.search.strategies.base import Strategy


def _to_json(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return {"__tensor__": obj.detach().cpu().reshape(-1).tolist(), "shape": list(obj.shape),
                "dtype": str(obj.dtype).replace("torch.", "")}
    if isinstance(obj, dict):
        return {"__dict__": [[_to_json(k), _to_json(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_to_json(x) for x in obj]
    return obj


def _from_json(obj: Any) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return torch.tensor(obj["__tensor__"], dtype=getattr(torch, obj["dtype"])).reshape(obj["shape"])
    if isinstance(obj, dict) and "__dict__" in obj:
        return {_from_json(k): _from_json(v) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_from_json(x) for x in obj]
    return obj


@contextlib.contextmanager
def _small_tensors() -> Iterator[None]:
    """One intra-op thread and denormals flushed while the controller works, restored after.

    The controller's tensors are tiny: with several threads every op pays a thread hand-off (measured 20 ms per
    Adam step on a busy 2-core machine instead of 0.1 ms), and Adam's second moments reach denormal floats,
    which are ~70x slower to compute with.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def _torch_work(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _small_tensors():
            return method(self, *args, **kwargs)

    return wrapper


class _Decision:
    """How one leaf parameter maps to a categorical action."""

    def __init__(self, param: Param, bins: int) -> None:
        self.param = param
        if isinstance(param, Choice):
            self.k, self.mode = len(param.values), "choice"
        elif isinstance(param, Int) and param.cardinality() <= 32:
            self.k, self.mode = int(param.cardinality()), "int"
        else:
            self.k, self.mode = (bins if param.cardinality() > 1 else 1), "bin"

    def value(self, a: int) -> Any:
        p = self.param
        if self.mode == "choice":
            return p.values[a]
        if self.mode == "int":
            return p.low + a
        v = p.unscaled((a + 0.5) / self.k)
        return min(p.high, max(p.low, int(round(v)))) if isinstance(p, Int) else v

    def action(self, value: Any) -> int:
        p = self.param
        if self.mode == "choice":
            return p.index(value)
        if self.mode == "int":
            return int(value) - p.low
        return min(self.k - 1, max(0, int(math.floor(p.scaled(value) * self.k))))


class _Controller(nn.Module):
    def __init__(self, sizes: list[int], hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.position = nn.Embedding(len(sizes), hidden)
        self.action_emb = nn.ModuleList(nn.Embedding(k, hidden) for k in sizes)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, k) for k in sizes)
        for h in self.heads:  # start near uniform
            nn.init.uniform_(h.weight, -0.01, 0.01)
            nn.init.zeros_(h.bias)

    def initial(self):
        z = torch.zeros(1, self.hidden)
        return (z, z), self.start

    def step(self, state, inp, d: int):
        h, c = self.cell(inp + self.position.weight[d : d + 1], state)
        return (h, c), self.heads[d](h)

    def next_input(self, d: int, a: int) -> torch.Tensor:
        return self.action_emb[d].weight[a : a + 1]

    def log_prob(self, traj: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of log-probabilities and of entropies of a trajectory of (decision, action)."""
        logp, ent = self.log_probs([traj])
        return logp[0], ent[0]

    def index(self, trajs: list[list[tuple[int, int]]]) -> tuple:
        """The index tensors ``log_probs`` needs for ``trajs``: decision and row of the stacked tables per
        (trajectory, position), which positions exist, and each position's segment of the stacked heads."""
        n, length = len(trajs), max(len(t) for t in trajs)
        sizes = [h.out_features for h in self.heads]
        offsets = torch.tensor([0] + sizes[:-1]).cumsum(0)
        dec = torch.zeros(n, length, dtype=torch.long)
        act = torch.zeros(n, length, dtype=torch.long)
        mask = torch.zeros(n, length, dtype=torch.bool)
        for i, t in enumerate(trajs):
            if t:
                dec[i, : len(t)] = torch.tensor([d for d, _ in t])
                act[i, : len(t)] = torch.tensor([a for _, a in t])
                mask[i, : len(t)] = True
        flat = offsets[dec] + act  # each (decision, action) as a row of the stacked tables
        col = torch.arange(sum(sizes))
        segment = (col >= offsets[dec].unsqueeze(-1)) & (col < (offsets + torch.tensor(sizes))[dec].unsqueeze(-1))
        return dec, flat, mask, segment

    def log_probs(self, trajs: list[list[tuple[int, int]]] | tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """``log_prob`` of a batch of trajectories at once: one LSTM call over the whole batch and sequence.

        Why: a PPO update scores its batch ``epochs + 1`` times, and per-trajectory, per-decision calls cost
        ~0.1 ms each in torch's Python and autograd overhead. Trajectories of a conditional space differ in
        length and in which decision comes at a position, so every row gathers its own position and action
        embeddings, and the heads are applied as one matrix of all heads' rows, each row's logits masked to its
        decision's segment (``log_softmax`` over the segment alone, as ``step`` computes it). Rows past their
        trajectory's end are masked out of the sums. ``trajs`` may be ``index(trajs)``, computed once for an
        update that scores the same batch several times.
        """
        dec, flat, mask, segment = trajs if isinstance(trajs, tuple) else self.index(trajs)
        n, length = dec.shape
        emb = torch.cat([e.weight for e in self.action_emb])
        weight = torch.cat([h.weight for h in self.heads])
        bias = torch.cat([h.bias for h in self.heads])
        # the inputs are known in advance here (the previous action's embedding + the position's), so the whole
        # sequence goes through one call of the LSTM with the cell's weights
        x = torch.cat([self.start.expand(n, 1, -1), emb[flat[:, :-1]]], 1) + self.position.weight[dec]
        h0 = torch.zeros(1, n, self.hidden)
        cell = self.cell
        hs = torch.lstm(x, (h0, h0), (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), True, 1, 0.0,
                        False, False, True)[0]
        logits = torch.matmul(hs, weight.t()) + bias  # (n, length, all heads' rows)
        lp = torch.log_softmax(logits.masked_fill(~segment, -math.inf), dim=-1)
        logp = torch.where(mask, lp.gather(2, flat.unsqueeze(-1))[..., 0], 0.0).sum(1)
        plogp = (lp.exp() * lp.masked_fill(~segment, 0.0)).sum(-1)
        ent = -torch.where(mask, plogp, 0.0).sum(1)
        return logp, ent


class Reinforce(Strategy):
    name = "reinforce"
    OPTIONS = {"hidden": 64, "lr": 0.01, "entropy": 0.0001, "baseline_decay": 0.9, "batch": 1, "bins": 16}

    RANGES = {"hidden": (1, True, None), "lr": (0.0, False, None), "entropy": (0.0, True, None),
              "baseline_decay": (0.0, True, 1.0), "batch": (1, True, None), "bins": (1, True, None),
              "epochs": (1, True, None), "clip": (0.0, False, None)}

    def __init__(self, space: Space, *, seed: int = 0, **options: Any) -> None:
        super().__init__(space, seed=seed, **options)
        with _small_tensors():
            self._build()

    def _build(self) -> None:
        space = self.space
        self.paths = [p for p, _ in space.params()]
        self.index = {p: i for i, p in enumerate(self.paths)}
        self.decisions = [_Decision(param, self.options["bins"]) for _, param in space.params()]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model = _Controller([d.k for d in self.decisions], self.options["hidden"])
        # foreach: one fused call per step over the ~2 x decisions small tensors instead of a Python loop
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.options["lr"], foreach=True)
        self.baseline: float | None = None
        self.n = 0  # rewards seen (for the running std)
        self.mean = 0.0
        self.m2 = 0.0
        self.worst: float | None = None
        self.buffer: list[tuple[list, float]] = []

    # -- proposing
    @_torch_work
    def ask(self) -> dict:
        state, inp = self.model.initial()

        def choose(path: str, param: Param) -> Any:
            nonlocal state, inp
            d = self.index[path]
            dec = self.decisions[d]
            with torch.no_grad():
                state, logits = self.model.step(state, inp, d)
                probs = torch.softmax(logits[0].double(), dim=-1).numpy()
            a = int(min(dec.k - 1, np.searchsorted(np.cumsum(probs), self.rng.random() * probs.sum(), side="right")))
            inp = self.model.next_input(d, a)
            return dec.value(a)

        with torch.no_grad():
            return self.space.build(choose)

    def trajectory(self, config: dict) -> list[tuple[int, int]]:
        """The (decision, action) sequence that produces ``config``."""
        traj: list[tuple[int, int]] = []

        def lookup(path: str, param: Param) -> Any:
            d: Any = config
            for n in path.split("."):
                d = d[n]
            i = self.index[path]
            traj.append((i, self.decisions[i].action(d)))
            return d

        self.space.build(lookup)
        return traj

    # -- learning
    def _advantage(self, reward: float) -> float:
        b = reward if self.baseline is None else self.baseline
        std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        adv = 0.0 if std < 1e-12 else max(-5.0, min(5.0, (reward - b) / std))
        return adv

    def _observe(self, reward: float) -> None:
        self.n += 1
        delta = reward - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (reward - self.mean)
        decay = self.options["baseline_decay"]
        self.baseline = reward if self.baseline is None else decay * self.baseline + (1 - decay) * reward
        self.worst = reward if self.worst is None else min(self.worst, reward)

    @_torch_work
    def tell(self, config: dict, reward: float | None, metrics: dict | None = None) -> None:
        if reward is None:
            if self.worst is None:
                return
            reward = self.worst
        reward = float(reward)
        self.buffer.append((self.trajectory(config), self._advantage(reward)))
        self._observe(reward)
        if len(self.buffer) >= self.options["batch"]:
            self._update(self.buffer)
            self.buffer = []

    def _update(self, batch: list[tuple[list, float]]) -> None:
        self.opt.zero_grad()
        logp, ent = self.model.log_probs([t for t, _ in batch])
        adv = torch.tensor([a for _, a in batch])
        loss = (-adv * logp - self.options["entropy"] * ent).sum()
        (loss / len(batch)).backward()
        self.opt.step()

    # -- state
    def state_dict(self) -> dict:
        return {**super().state_dict(), "model": _to_json(self.model.state_dict()),
                "optimizer": _to_json(self.opt.state_dict()), "baseline": self.baseline, "n": self.n,
                "mean": self.mean, "m2": self.m2, "worst": self.worst,
                "buffer": [[[list(s) for s in t], a] for t, a in self.buffer]}

    @_torch_work
    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.model.load_state_dict(_from_json(state["model"]))
        self.opt.load_state_dict(_from_json(state["optimizer"]))
        self.baseline, self.n, self.mean, self.m2 = state["baseline"], state["n"], state["mean"], state["m2"]
        self.worst = state["worst"]
        self.buffer = [([tuple(s) for s in t], float(a)) for t, a in state["buffer"]]


class PPO(Reinforce):
    name = "ppo"
    OPTIONS = {**Reinforce.OPTIONS, "batch": 8, "epochs": 4, "clip": 0.2}

    def _update(self, batch: list[tuple[list, float]]) -> None:
        trajs = self.model.index([t for t, _ in batch])
        adv = torch.tensor([a for _, a in batch])
        with torch.no_grad():
            old = self.model.log_probs(trajs)[0]
        eps = self.options["clip"]
        for _ in range(self.options["epochs"]):
            self.opt.zero_grad()
            logp, ent = self.model.log_probs(trajs)
            ratio = torch.exp(logp - old)
            surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
            loss = (-surrogate - self.options["entropy"] * ent).sum()
            (loss / len(batch)).backward()
            self.opt.step()
