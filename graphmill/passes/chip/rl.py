"""The RL macro placer: hard macros placed one at a time, largest first, onto grid cells by a policy with a
graph encoder, masked to legal cells; reward -proxy cost; trained with PPO; pre-trained on Circuit Training's
tiny netlists plus generated ones, fine-tuned on the netlist at hand (Circuit Training's method, Mirhoseini
et al., Nature 2021, with graphmill's proxy cost).

The policy: a GraphSAGE encoder (the learned passes' ``SageLayer``, graphmill.passes.learned.policy) over the
module graph (ports, hard and soft macros; an edge per module pair sharing a net) gives each macro an
embedding; at each step the macro to place and the netlist's mean embedding are scored against every grid
cell's features (position, the density the macros placed so far give it, distance to the weighted centre of
the macro's placed neighbours and of the ports): one logit per cell, illegal cells masked (the macro centred
on the cell would leave the canvas or overlap a placed macro). The cell features make the policy
independent of the grid's size, so one policy serves every netlist. After the hard macros, the soft macros are
placed by force-directed rounds and the episode's reward is -proxy cost.

PPO: batches of episodes, advantages = normalized rewards, a clipped surrogate over every decision, an entropy
bonus. A checkpoint (policy, optimizer, episodes, best placement) is written atomically every batch when a
path is given, and a run resumes from it.
"""

from __future__ import annotations

import io
import math
import os
import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from graphmill.util.errors import UserInputError
from graphmill.util.files import atomic_write_bytes

from .cost import DEFAULT_WEIGHTS, ProxyCost
from .fd import ForceDirected, module_adjacency
from .legality import EPS, legality, place_nearest
from .problem import KIND_HARD, KIND_PORT, ChipProblem
from .sa import PlaceResult, Progress

CELL_FEATURES = 7
NODE_FEATURES = 8
DEFAULT_POLICY = os.path.join(os.path.dirname(__file__), "data", "rl_policy.npz")


@njit(cache=True)
def _legal_cells(m, w, h, x, y, placed, n_placed, cols, rows, gw, gh, cw, ch, eps, out):
    for r in range(rows):
        for c in range(cols):
            cx = (c + 0.5) * gw
            cy = (r + 0.5) * gh
            ok = cx - w[m] / 2 >= -eps and cx + w[m] / 2 <= cw + eps and cy - h[m] / 2 >= -eps and cy + h[m] / 2 <= ch + eps
            if ok:
                for a in range(n_placed):
                    j = placed[a]
                    if abs(cx - x[j]) < (w[m] + w[j]) / 2 - eps and abs(cy - y[j]) < (h[m] + h[j]) / 2 - eps:
                        ok = False
                        break
            out[r * cols + c] = ok


class Episode:
    """What one netlist needs for episodes: the problem, its graph tensors, the placement order."""

    def __init__(self, problem: ChipProblem, weights=DEFAULT_WEIGHTS) -> None:
        import torch

        self.p = p = problem
        self.cost = ProxyCost(p, weights)
        self.adj = module_adjacency(p)
        ptr, nbr, wts = self.adj
        w, h = p.sizes()
        self.w, self.h = w, h
        self.order = p.hard[p.fixed[p.hard] == 0]
        self.order = self.order[np.argsort(-(w[self.order] * h[self.order]), kind="stable")]
        c = p.canvas
        self.gw, self.gh = c.width / c.columns, c.height / c.rows
        n = len(p.x)
        deg = np.diff(ptr).astype(np.float64)
        feats = np.zeros((n, NODE_FEATURES), dtype=np.float32)
        feats[np.arange(n), np.minimum(p.kind, 3)] = 1.0
        feats[:, 4] = w / c.width
        feats[:, 5] = h / c.height
        feats[:, 6] = np.log1p(deg) / 5
        feats[:, 7] = np.log1p(np.array([wts[ptr[i]:ptr[i + 1]].sum() for i in range(n)])) / 5
        src = np.repeat(np.arange(n), np.diff(ptr))
        self.t = {"x": torch.from_numpy(feats), "src": torch.from_numpy(src), "dst": torch.from_numpy(nbr.copy())}
        ones = torch.ones(len(src))
        self.t["deg_in"] = torch.zeros(n).index_add_(0, self.t["dst"], ones).clamp(min=1)[:, None]
        self.t["deg_out"] = torch.zeros(n).index_add_(0, self.t["src"], ones).clamp(min=1)[:, None]
        rows = np.arange(c.columns * c.rows) // c.columns
        cols = np.arange(c.columns * c.rows) % c.columns
        self.cx = (cols + 0.5) * self.gw
        self.cy = (rows + 0.5) * self.gh
        ports = p.kind == KIND_PORT
        self.port_c = (float(np.mean(p.x[ports])), float(np.mean(p.y[ports]))) if ports.any() else (c.width / 2, c.height / 2)
        self.start = p.copy_placement()
        self.fd = ForceDirected(p, adjacency=self.adj) if p.soft.size else None

    def cell_features(self, m: int, occ: np.ndarray, placed_mask: np.ndarray) -> np.ndarray:
        p, c = self.p, self.p.canvas
        ptr, nbr, wts = self.adj
        nb = nbr[ptr[m]:ptr[m + 1]]
        nw = wts[ptr[m]:ptr[m + 1]]
        known = placed_mask[nb] | (p.kind[nb] == KIND_PORT)
        f = np.zeros((len(self.cx), CELL_FEATURES), dtype=np.float32)
        f[:, 0] = self.cx / c.width
        f[:, 1] = self.cy / c.height
        f[:, 2] = occ
        scale = c.width + c.height
        if known.any():
            tx = float(np.average(p.x[nb[known]], weights=nw[known]))
            ty = float(np.average(p.y[nb[known]], weights=nw[known]))
            f[:, 3] = (np.abs(self.cx - tx) + np.abs(self.cy - ty)) / scale
            f[:, 4] = 1.0
        f[:, 5] = (np.abs(self.cx - self.port_c[0]) + np.abs(self.cy - self.port_c[1])) / scale
        f[:, 6] = np.minimum(np.minimum(self.cx, c.width - self.cx) / c.width, np.minimum(self.cy, c.height - self.cy) / c.height)
        return f


def _policy_class():
    import torch
    from torch import nn

    from graphmill.passes.learned.policy import SageLayer

    class PlacementPolicy(nn.Module):
        """GraphSAGE encoder (the learned passes' layer) + a cell scorer."""

        def __init__(self, hidden: int = 32, layers: int = 2) -> None:
            super().__init__()
            self.config = {"hidden": hidden, "layers": layers}
            self.inp = nn.Sequential(nn.Linear(NODE_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
            self.sage = nn.ModuleList(SageLayer(hidden) for _ in range(layers))
            self.cell = nn.Sequential(nn.Linear(CELL_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
            self.query = nn.Linear(2 * hidden, hidden)
            self.bias = nn.Sequential(nn.Linear(CELL_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            with torch.no_grad():  # start as "near the placed neighbours, off dense cells": a sensible prior
                self.bias[-1].weight.zero_()
                self.bias[-1].bias.zero_()
            self.prior = nn.Parameter(torch.tensor([-8.0, -4.0, -2.0]))  # weights on features 3 (nbr), 2 (occ), 5 (ports)

        def encode(self, t: dict) -> torch.Tensor:
            h = self.inp(t["x"])
            for layer in self.sage:
                h = layer(h, t)
            return h

        def logits(self, hm: torch.Tensor, g: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            """hm [T, H] (the macros to place), g [H], cells [T, C, F], mask [T, C] -> logits [T, C]."""
            q = self.query(torch.cat([hm, g.expand(hm.shape[0], -1)], -1))  # [T, H]
            k = self.cell(cells)  # [T, C, H]
            s = (k @ q[:, :, None])[..., 0] / math.sqrt(q.shape[-1])
            s = s + self.bias(cells)[..., 0] + self.prior[0] * cells[..., 3] + self.prior[1] * cells[..., 2] \
                + self.prior[2] * cells[..., 5]
            return s.masked_fill(~mask, -1e9)

    return PlacementPolicy


def new_policy(hidden: int = 32, layers: int = 2):
    return _policy_class()(hidden, layers)


def save_policy(policy, path: str | os.PathLike) -> None:
    """The policy's weights as .npz (architecture in the arrays' names' file ``config``), atomically."""
    buf = io.BytesIO()
    arrays = {k: v.detach().cpu().numpy() for k, v in policy.state_dict().items()}
    arrays["__config__"] = np.array([policy.config["hidden"], policy.config["layers"]])
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_policy(path: str | os.PathLike):
    """A policy saved by ``save_policy`` (read with allow_pickle=False: no code runs)."""
    import torch

    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            hidden, layers = (int(v) for v in z["__config__"])
            state = {k: torch.from_numpy(z[k]) for k in z.files if k != "__config__"}
    except (OSError, ValueError, KeyError) as e:
        raise UserInputError(f"{path}: not a chip placement policy ({e})") from None
    policy = new_policy(hidden, layers)
    policy.load_state_dict(state)
    return policy


@dataclass
class Rollout:
    reward: float
    proxy: float
    placement: tuple
    macros: np.ndarray  # [T]
    actions: np.ndarray  # [T]
    cells: np.ndarray  # [T, C, F]
    masks: np.ndarray  # [T, C]
    logp: np.ndarray  # [T]


def rollout(policy, ep: Episode, gen, *, greedy: bool = False, fd_rounds: int = 8) -> Rollout:
    """One episode: place the hard macros largest first (sampling, or the most likely cell when ``greedy``),
    force-directed rounds for the soft macros, reward -proxy."""
    import torch

    p, c = ep.p, ep.p.canvas
    p.set_placement(ep.start)
    n_cells = c.columns * c.rows
    occ = np.zeros(n_cells)
    placed = np.zeros(len(p.x), dtype=np.int64)
    placed_mask = np.zeros(len(p.x), dtype=np.bool_)
    n_placed = 0
    for j in p.hard[p.fixed[p.hard] == 1]:
        placed[n_placed] = j
        placed_mask[j] = True
        n_placed += 1
    T = len(ep.order)
    cells = np.zeros((T, n_cells, CELL_FEATURES), dtype=np.float32)
    masks = np.zeros((T, n_cells), dtype=np.bool_)
    actions = np.zeros(T, dtype=np.int64)
    logps = np.zeros(T, dtype=np.float32)
    cell_area = ep.gw * ep.gh
    with torch.no_grad():
        h = policy.encode(ep.t)
        g = h.mean(0)
        mask = np.zeros(n_cells, dtype=np.bool_)
        for step, m in enumerate(ep.order):
            m = int(m)
            _legal_cells(m, ep.w, ep.h, p.x, p.y, placed, n_placed, c.columns, c.rows, ep.gw, ep.gh, c.width,
                         c.height, EPS, mask)
            f = ep.cell_features(m, occ, placed_mask)
            cells[step] = f
            masks[step] = mask
            if not mask.any():  # nowhere on a cell centre: the nearest legal position off the grid
                place_nearest(p, m, placed[:n_placed])
                actions[step] = -1
            else:
                lg = policy.logits(h[m][None], g, torch.from_numpy(f)[None], torch.from_numpy(mask)[None])[0]
                if greedy:
                    a = int(torch.argmax(lg))
                else:
                    a = int(torch.multinomial(torch.softmax(lg, -1), 1, generator=gen))
                logps[step] = float(torch.log_softmax(lg, -1)[a])
                actions[step] = a
                p.x[m], p.y[m] = ep.cx[a], ep.cy[a]
            placed[n_placed] = m
            placed_mask[m] = True
            n_placed += 1
            # the cells the macro covers get its area (the density feature)
            x0, x1 = p.x[m] - ep.w[m] / 2, p.x[m] + ep.w[m] / 2
            y0, y1 = p.y[m] - ep.h[m] / 2, p.y[m] + ep.h[m] / 2
            for r in range(max(int(y0 // ep.gh), 0), min(int(y1 // ep.gh), c.rows - 1) + 1):
                oy = min(y1, (r + 1) * ep.gh) - max(y0, r * ep.gh)
                for q in range(max(int(x0 // ep.gw), 0), min(int(x1 // ep.gw), c.columns - 1) + 1):
                    ox = min(x1, (q + 1) * ep.gw) - max(x0, q * ep.gw)
                    if ox > 0 and oy > 0:
                        occ[r * c.columns + q] += ox * oy / cell_area
    if ep.fd is not None and fd_rounds:
        ep.fd.run(None, rounds=fd_rounds, seed=0)
    proxy = ep.cost.evaluate().proxy
    return Rollout(-proxy, proxy, p.copy_placement(), ep.order.copy(), actions, cells, masks, logps)


def ppo_update(policy, optim, ep_rolls: list[tuple[Episode, list[Rollout]]], *, epochs: int = 4, clip: float = 0.2,
               entropy: float = 0.01) -> float:
    """Clipped-surrogate PPO over every decision of the batch; advantages are each netlist's rewards
    normalized (netlists differ in scale)."""
    import torch

    total = 0.0
    for _ in range(epochs):
        optim.zero_grad()
        loss = 0.0
        for ep, rolls in ep_rolls:
            r = np.array([ro.reward for ro in rolls])
            adv = (r - r.mean()) / (r.std() + 1e-8)
            h = policy.encode(ep.t)
            g = h.mean(0)
            for ro, a_ in zip(rolls, adv):
                ok = ro.actions >= 0
                if not ok.any():
                    continue
                lg = policy.logits(h[torch.from_numpy(ro.macros[ok])], g, torch.from_numpy(ro.cells[ok]),
                                   torch.from_numpy(ro.masks[ok]))
                logp_all = torch.log_softmax(lg, -1)
                acts = torch.from_numpy(ro.actions[ok])
                logp = logp_all.gather(1, acts[:, None])[:, 0]
                ratio = torch.exp(logp - torch.from_numpy(ro.logp[ok]))
                a = float(a_)
                surr = torch.minimum(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a)
                probs = torch.softmax(lg, -1)
                ent = -(probs * logp_all.clamp(min=-1e4)).sum(-1)
                loss = loss - (surr.mean() + entropy * ent.mean()) / (len(rolls) * len(ep_rolls))
        if not torch.is_tensor(loss):  # no decisions in the batch (no movable hard macros): nothing to learn
            return 0.0
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optim.step()
        total = float(loss.detach())
    return total


def _save_checkpoint(path: str, policy, optim, state: dict) -> None:
    import torch

    buf = io.BytesIO()
    torch.save({"policy": policy.state_dict(), "optim": optim.state_dict(), "config": policy.config,
                "state": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in state.items()}}, buf)
    atomic_write_bytes(path, buf.getvalue())


def train(problems: list[ChipProblem], *, policy=None, budget_s: float = 60.0, episodes: int | None = None,
          batch: int = 8, lr: float = 3e-3, seed: int = 0, weights=DEFAULT_WEIGHTS, checkpoint: str | None = None,
          progress: Progress | None = None, progress_every: float = 5.0) -> tuple:
    """PPO on ``problems`` (pre-training: many netlists; fine-tuning: one) for ``budget_s`` seconds or
    ``episodes`` episodes. Returns ``(policy, best)`` where ``best[i]`` is the (proxy, placement) of the best
    episode on problem i. Resumes from ``checkpoint`` when it exists; writes it after every batch."""
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    policy = policy if policy is not None else new_policy()
    optim = torch.optim.Adam(policy.parameters(), lr=lr)
    eps = [Episode(p, weights) for p in problems]
    best: list[tuple[float, tuple | None]] = [(math.inf, None)] * len(problems)
    done = 0
    if checkpoint and os.path.exists(checkpoint):
        try:
            ck = torch.load(checkpoint, weights_only=True)
            policy = new_policy(**ck["config"])
            policy.load_state_dict(ck["policy"])
            optim = torch.optim.Adam(policy.parameters(), lr=lr)
            optim.load_state_dict(ck["optim"])
            done = int(ck["state"]["episodes"])
            for i, (v, pl) in enumerate(ck["state"].get("best", [])):
                if pl is not None and i < len(best):
                    best[i] = (v, tuple(np.array(a, dtype=arr.dtype) for a, arr in zip(pl, problems[i].copy_placement())))
        except Exception as e:  # noqa: BLE001 -- any unreadable checkpoint is the user's to remove
            raise UserInputError(f"{checkpoint}: cannot resume from this checkpoint ({type(e).__name__}: {e}); "
                                 "delete it to start over") from None
    t0 = time.monotonic()
    next_report = t0 + progress_every
    rng = np.random.default_rng(seed + done)
    try:
        while True:
            if episodes is not None and done >= episodes:
                break
            if episodes is None and time.monotonic() - t0 >= budget_s:
                break
            pick = rng.choice(len(eps), size=min(len(eps), 4), replace=False) if len(eps) > 4 else range(len(eps))
            ep_rolls = []
            for i in pick:
                rolls = [rollout(policy, eps[i], gen) for _ in range(batch)]
                for ro in rolls:
                    if ro.proxy < best[i][0]:
                        best[i] = (ro.proxy, ro.placement)
                ep_rolls.append((eps[i], rolls))
                done += batch
            ppo_update(policy, optim, ep_rolls)
            if checkpoint:
                _save_checkpoint(checkpoint, policy, optim, {
                    "episodes": done, "best": [(v, None if pl is None else [a.tolist() for a in pl]) for v, pl in best]})
            now = time.monotonic()
            if progress is not None and now >= next_report:
                mean = float(np.mean([ro.proxy for _, rs in ep_rolls for ro in rs]))
                progress({"elapsed": round(now - t0, 1), "episodes": done, "batch_mean_proxy": mean,
                          "best": min(v for v, _ in best)})
                next_report = now + progress_every
    except KeyboardInterrupt:
        if progress is not None:
            progress({"interrupted": True, "episodes": done})
        raise
    return policy, best


def rl_place(problem: ChipProblem, *, weights=DEFAULT_WEIGHTS, budget_s: float = 60.0, seed: int = 0,
             progress: Progress | None = None, policy_path: str | None = None, checkpoint: str | None = None,
             finetune_share: float = 0.85) -> PlaceResult:
    """Fine-tune the pre-trained policy (``policy_path``, default the shipped one) on ``problem`` for a share of
    ``budget_s``, then keep the best of its episodes and of a greedy decode, and re-place the soft macros by
    force-directed rounds (best proxy kept). Ctrl-C stops with the best placement so far."""
    t0 = time.monotonic()
    path = policy_path or DEFAULT_POLICY
    policy = load_policy(path) if os.path.exists(path) else new_policy()
    interrupted = False
    best_v, best_pl = math.inf, None
    try:
        policy, best = train([problem], policy=policy, budget_s=budget_s * finetune_share, seed=seed,
                             weights=weights, checkpoint=checkpoint, progress=progress)
        best_v, best_pl = best[0]
        import torch

        ro = rollout(policy, Episode(problem, weights), torch.Generator().manual_seed(seed), greedy=True)
        if ro.proxy < best_v:
            best_v, best_pl = ro.proxy, ro.placement
    except KeyboardInterrupt:
        interrupted = True
    if best_pl is not None:
        problem.set_placement(best_pl)
    cost = ProxyCost(problem, weights)
    if not interrupted and problem.soft.size:
        remaining = max(0.0, budget_s - (time.monotonic() - t0))
        deadline = time.monotonic() + remaining
        try:
            ForceDirected(problem).run(cost, rounds=40, seed=seed, should_stop=lambda: time.monotonic() >= deadline)
        except KeyboardInterrupt:
            interrupted = True
    report = cost.evaluate()
    return PlaceResult(report, legality(problem)[0], time.monotonic() - t0, "rl", interrupted,
                       {"best_episode": best_v})


def pretrain(problems: list[ChipProblem], out: str | os.PathLike, *, budget_s: float = 300.0, seed: int = 0,
             checkpoint: str | None = None, progress: Progress | None = None) -> dict:
    """Pre-train a policy on several netlists (the tiny ones and generated ones) and save it to ``out``."""
    policy, best = train(problems, budget_s=budget_s, seed=seed, checkpoint=checkpoint, progress=progress)
    save_policy(policy, out)
    return {"netlists": len(problems), "best": [v for v, _ in best]}
