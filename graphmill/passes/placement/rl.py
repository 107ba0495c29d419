"""Learned placers trained with REINFORCE on the simulated step time (torch, CPU).

* ``rl`` (Mirhoseini et al., 2017): the ops are gathered into their colocation groups (an op with its gradient /
  update: ``problem.colocation_groups``; constants are never placed), every chain of groups between forks and
  joins is contracted into one unit (``chain_units``, option ``chains``, default on: one choice moves a whole
  branch of an Inception module, which is what spreads parallel branches over devices) and, when there are more
  than ``max_groups`` (default 256) units, the units of each layer are merged into runs of about equal time (at
  most ``max_groups`` units in all, a unit never mixing layers; the paper grouped large graphs by hand). Each unit is embedded (op type, output shape, time,
  weights, adjacency: in/out degree and the mean position of its producers and readers) and a sequence-to-
  sequence policy (bidirectional LSTM encoder over the units in topological order, LSTM decoder with attention
  over the encoder states, the previous unit's device fed back) outputs one device per unit.
* ``hierarchical`` (Mirhoseini et al., 2018): a feed-forward grouper (a 2-layer MLP over the chain units'
  embeddings, as above without the merging) samples one of ``groups`` (default 64) groups for each, and the same sequence-to-sequence placer
  places the groups (a group's embedding: the mean of its members' plus its size); both are trained jointly,
  the log-probability of a sample being the sum of the grouper's and the placer's choices. No manual grouping:
  this is the method for graphs of tens of thousands of ops.

Training (the policy proposes changes to the best placement so far, which it sees: Placeto's iterative
improvement, Addanki et al. 2019, with the cross-entropy update towards the best sample of Post, Gao et al.
2018): the *incumbent* is the best valid baseline's placement (per unit the device most of its time is on; for
the grouper, each device's units cut in the graph's order into its share of the groups), later the best sample.
Every unit's embedding carries its incumbent device (one-hot), and a *copy term* adds a learned logit ``keep``
(one for the placer, one for the grouper) to the incumbent's choice at every position, started at the value
that keeps each choice with probability 1 - ``explore`` / P: the policy's own layers only learn *which edits*
to propose, and when the incumbent changes its samples follow the new one at once (without it, a policy that
had learned the old incumbent's devices kept proposing to undo each improvement). The policy is warm-started by at most
``warm_steps`` (100) steps towards the incumbent's choices. Each step samples ``samples`` placements (default 8)
and teacher-forces the incumbent as one more row; each distinct placement is simulated once
(``schedule.simulate``); reward ``-sqrt(makespan / reference)`` (reference: the best valid baseline's makespan),
``-sqrt(invalid_penalty)`` (10) for a placement over some device's memory; advantage = reward - the mean reward
of the step's other samples (leave-one-out); loss = -advantage * log-probability - ``entropy`` (0.01) * mean
entropy per choice + ``imitation`` (1) * sum over the incumbent's choices of (log-probability - log(1 - explore
/ P))^2, P the number of choices: every choice of the incumbent is held near probability 1 - ``explore`` / P,
so that a sample differs from the incumbent in about ``explore`` (2) choices spread over the whole graph (a
plain cross-entropy lets a few uncertain choices take all the exploration); Adam (``lr`` 0.005). A sample
better than the incumbent becomes the incumbent. The incumbent at the start is the baseline as the units express
it, which can be slower than the baseline (units that METIS splits); while no sample beat the baseline it counts
as the baseline's time, and after ``patience`` (300) samples none of which did, as its own simulated time, so that
samples improving on it are kept (otherwise no sample of 800 beat METIS on NMT with 8 devices). ``start="random"`` (from scratch, for counting samples as
Placeto does) starts the incumbent at a seeded uniformly random placement instead of the best baseline's.

**Never worse than the best baseline**: every baseline's placement is evaluated first and the placer returns the
best valid placement it evaluated, baselines included. ``samples_to_best_baseline`` counts the sampled
placements until one was at least as good as the best baseline (None: none was; 1 or so when started from it,
which is why ``start="random"`` exists), ``samples_to_beat_best_baseline`` until one was faster than it,
``samples_to_goal`` until one
was 10% faster than the better of HEFT and METIS (issue 12's goal; None: none was).

``budget`` bounds the sampled placements (default 800); ``time_limit`` (seconds, default 480) bounds the training
wall time. A ``checkpoint`` file (torch.save, written atomically after every step) holds the policy, the
optimizer, the baseline, the best placement and the random states; a run given an existing checkpoint of the
same problem resumes from it and reaches the same result as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from graphmill.ir import UserInputError
from graphmill.util.files import load_torch_checkpoint, save_torch_checkpoint
from graphmill.util.torch_state import is_count, is_generator_state, module_state_damage, optimizer_state_damage
from graphmill.util.suggest import did_you_mean

from .problem import PlacementProblem, op_bytes
from .schedule import simulate

DEFAULTS = {"samples": 8, "lr": 0.005, "entropy": 0.01, "baseline_decay": 0.9, "hidden": 64, "max_groups": 256,
            "groups": 64, "warm_steps": 100, "explore": 2.0, "imitation": 1.0, "invalid_penalty": 10.0,
            "time_limit": 480.0, "budget": 800, "progress_every": 10, "chains": True,
            "start": "best", "patience": 300}


# -- features ---------------------------------------------------------------------------------------------------

def op_features(prob: PlacementProblem) -> tuple[np.ndarray, np.ndarray, int]:
    """Numeric features [n, F] (standardized) and op-type ids [n] of every op.

    Per op: log time (mean over devices) and log of its fastest/slowest device time ratio (device speed), output,
    input and weight bytes, position in the graph's order, in/out degree, the last four output dims, the mean
    forward distance to its readers, and the critical-path features list schedulers use: the upward rank (HEFT's
    ``baselines.upward_rank``: the longest path from the op to the end, transfers over the mean link), the
    downward rank (longest path from the start to the op, op times only) and the slack (the critical path's
    length minus both, 0 on the critical path), each as a fraction of the critical path."""
    from .baselines import upward_rank

    n = prob.n
    types: dict[str, int] = {}
    tid = np.zeros(n, np.int64)
    feats = np.zeros((n, 17))
    out_b, in_b, w_b = op_bytes(prob)
    up = upward_rank(prob)
    w = prob.op_time.mean(axis=1)
    down = np.zeros(n)  # longest path from the start to the op's start (op times only)
    for i in range(n):
        for j in prob.succs[i]:
            down[j] = max(down[j], down[i] + w[i])
    cp = max(float((up + down).max()), 1e-30)
    for i, node in enumerate(prob.nodes):
        tid[i] = types.setdefault(node.qualified_op, len(types))  # ai.onnx::Conv is Conv
        shape = ()
        for o in node.outputs:
            if o is not None and getattr(o.type, "shape", None) is not None:
                shape = tuple(d if isinstance(d, int) else 1 for d in o.type.shape)
                break
        dims = list(shape[-4:])
        dims = [1] * (4 - len(dims)) + dims
        preds, succs = prob.preds[i], prob.succs[i]
        ti = prob.op_time[i]
        feats[i] = [math.log1p(ti.mean()), math.log1p(out_b[i]), math.log1p(in_b[i]),
                    math.log1p(w_b[i]), i / max(1, n - 1), math.log1p(len(preds)), math.log1p(len(succs)),
                    *[math.log1p(d) for d in dims], (np.mean(succs) - i) / max(1, n) if succs else 0.0,
                    up[i] / cp, down[i] / cp, (cp - up[i] - down[i]) / cp,
                    math.log((ti.max() + 1e-9) / (ti.min() + 1e-9)), math.log1p(up[i])]
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    return ((feats - mu) / sd).astype(np.float32), tid, len(types)


def chain_units(prob: PlacementProblem, base: np.ndarray | None = None) -> np.ndarray:
    """op -> unit: the units of ``base`` (default: the colocation groups) with every chain between forks and
    joins contracted into one, so that one choice of the policy moves a whole branch (an Inception module's
    branch: conv, ReLU, conv, ... between the module's input and its concat, with their gradients).

    The chains are those of the forward direction: an edge between two units counts when it goes from the unit
    of the earlier first op to the later one (a gradient edge goes back, from a later unit to an earlier one,
    and is ignored); unit ``a`` is merged with ``b`` when ``b`` is ``a``'s only successor and ``a`` is ``b``'s
    only predecessor. Units are numbered in the graph's order of their first op."""
    base = np.asarray(prob.groups if base is None else base)
    n_base = int(base.max()) + 1 if len(base) else 0
    first = np.full(n_base, len(base))
    np.minimum.at(first, base, np.arange(len(base)))
    out: list[set[int]] = [set() for _ in range(n_base)]
    inn: list[set[int]] = [set() for _ in range(n_base)]
    for p, c in prob.edge_bytes:
        a, b = int(base[p]), int(base[c])
        if a != b and first[a] < first[b]:
            out[a].add(b)
            inn[b].add(a)
    head = list(range(n_base))  # unit -> the first unit of its chain (chains only grow forward)
    for a in sorted(range(n_base), key=lambda k: first[k]):
        if len(out[a]) == 1:
            b = next(iter(out[a]))
            if len(inn[b]) == 1:
                head[b] = head[a]
    ids: dict[int, int] = {}
    for a in sorted(range(n_base), key=lambda k: first[k]):
        ids.setdefault(head[a], len(ids))
    return np.array([ids[head[int(u)]] for u in base], np.int64)


def merge_units(prob: PlacementProblem, max_units: int, base: np.ndarray | None = None) -> np.ndarray:
    """op -> unit: the units of ``base`` (default: the colocation groups); when there are more than
    ``max_units``, the units of each layer (``problem.layer_index``; a unit's layer: its last listed op's) are
    merged, in the graph's order, into runs of about equal time, each layer getting runs in proportion to its
    time (at least one), so that a run never mixes layers."""
    groups = np.asarray(prob.groups if base is None else base)
    ng = int(groups.max()) + 1
    if ng <= max_units:
        return groups
    t = prob.op_time.mean(axis=1) + 1e-9
    gt = np.zeros(ng)
    np.add.at(gt, groups, t)
    glayer = np.zeros(ng, np.int64)
    glayer[groups] = np.asarray(prob.layers)  # a group's layer: its (last listed) op's
    layers = np.unique(glayer)
    lt = np.array([gt[glayer == layer].sum() for layer in layers])
    quota = np.maximum(1, np.floor(lt / lt.sum() * (max_units - len(layers)) + 1).astype(int))
    unit_of_group = np.zeros(ng, np.int64)
    nxt = 0
    for layer, q in zip(layers, quota):
        members = np.flatnonzero(glayer == layer)
        cum = np.cumsum(gt[members]) - gt[members] / 2
        chunk = np.minimum((cum / gt[members].sum() * q).astype(int), q - 1)
        _, dense = np.unique(chunk, return_inverse=True)
        unit_of_group[members] = nxt + dense
        nxt += int(dense.max()) + 1
    return unit_of_group[groups]


# -- the policy -------------------------------------------------------------------------------------------------

class Seq2SeqPlacer(nn.Module):
    """Bidirectional LSTM encoder; LSTM decoder with attention; one device per position."""

    def __init__(self, feat: int, hidden: int, devices: int) -> None:
        super().__init__()
        self.devices = devices
        self.inp = nn.Linear(feat, hidden)
        self.enc = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.dev_emb = nn.Embedding(devices + 1, hidden)  # index `devices`: the start token
        self.cell = nn.LSTMCell(2 * hidden + hidden, hidden)
        self.q = nn.Linear(hidden, 2 * hidden, bias=False)
        self.out = nn.Linear(hidden + 2 * hidden, devices)

    def forward(self, x: torch.Tensor, *, sample: bool, gen: torch.Generator | None = None,
                target: torch.Tensor | None = None,
                prior: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, L, F] -> (devices [B, L], log-prob of each choice [B, L], entropy [B]); ``target`` (>= 0)
        teacher-forces choices; ``prior`` ([L, devices]) is added to the logits (the copy term: the incumbent's
        device, scaled by the policy's ``keep``)."""
        B, L, _ = x.shape
        enc, _ = self.enc(torch.tanh(self.inp(x)))  # [B, L, 2H]
        h = x.new_zeros(B, self.cell.hidden_size)
        c = x.new_zeros(B, self.cell.hidden_size)
        prev = torch.full((B,), self.devices, dtype=torch.long)
        chosen, logp, ent = [], [], x.new_zeros(B)
        for t in range(L):
            h, c = self.cell(torch.cat([enc[:, t], self.dev_emb(prev)], -1), (h, c))
            att = torch.softmax(torch.einsum("bld,bd->bl", enc, self.q(h)) / math.sqrt(enc.shape[-1]), -1)
            ctx = torch.einsum("bl,bld->bd", att, enc)
            logits = self.out(torch.cat([h, ctx], -1))
            lp = torch.log_softmax(logits if prior is None else logits + prior[t], -1)
            if target is not None and bool((target[:, t] >= 0).all()):
                a = target[:, t]
            else:
                a = torch.multinomial(lp.exp(), 1, generator=gen).squeeze(1) if sample else lp.argmax(-1)
                if target is not None:  # rows with a target >= 0 are teacher-forced, the others sample
                    a = torch.where(target[:, t] >= 0, target[:, t], a)
            logp.append(lp.gather(1, a[:, None]).squeeze(1))
            ent = ent - (lp.exp() * lp).sum(-1)
            chosen.append(a)
            prev = a
        return torch.stack(chosen, 1), torch.stack(logp, 1), ent


class Policy(nn.Module):
    """``rl``: the placer over fixed units; ``hierarchical``: grouper + placer."""

    def __init__(self, feat: int, ntypes: int, hidden: int, devices: int, groups: int | None) -> None:
        super().__init__()
        self.type_emb = nn.Embedding(max(1, ntypes), 16)
        f = feat + 16 + devices  # + the incumbent placement (one-hot device), as Placeto's policy sees it
        self.groups = groups
        # the copy term: a logit added to the incumbent's choice at every position, so that the policy
        # proposes edits of the incumbent (Placeto) and follows it at once when it changes; set by the trainer
        # to the value that keeps each choice with probability 1 - explore / positions, then learned
        self.keep = nn.Parameter(torch.zeros(2))  # [placer, grouper]
        if groups is not None:
            self.grouper = nn.Sequential(nn.Linear(f, hidden), nn.ReLU(), nn.Linear(hidden, groups))
            self.placer = Seq2SeqPlacer(f + 1, hidden, devices)
        else:
            self.placer = Seq2SeqPlacer(f + 1, hidden, devices)

    def unit_embed(self, feats: torch.Tensor, tids: torch.Tensor, unit: torch.Tensor, nunits: int) -> torch.Tensor:
        e = torch.cat([feats, self.type_emb(tids)], -1)
        s = e.new_zeros(nunits, e.shape[1]).index_add_(0, unit, e)
        cnt = e.new_zeros(nunits).index_add_(0, unit, torch.ones_like(unit, dtype=e.dtype))
        return s / cnt.clamp(min=1)[:, None], cnt

    def sample(self, emb: torch.Tensor, cnt: torch.Tensor, K: int, gen: torch.Generator | None, *,
               sample: bool = True, target_groups: torch.Tensor | None = None,
               target_devices: torch.Tensor | None = None,
               incumbent: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """K placements of the units: (unit devices [K, U], log-prob of each choice [K, P] (P = U, or U + G
        with the grouper), entropy [K], the choices (groups [K, U] or None, placer devices [K, U or G])).
        ``incumbent`` (placer devices [1, U or G], groups [1, U] or None, ...): the choices the copy term
        favours."""
        U = emb.shape[0]
        devices = self.placer.devices
        prior = None
        if incumbent is not None:
            prior = self.keep[0] * nn.functional.one_hot(incumbent[0][0], devices).to(emb.dtype)
        if self.groups is None:
            x = torch.cat([emb, torch.log1p(cnt)[:, None]], -1)[None].expand(K, U, -1)
            dev, lp, ent = self.placer(x, sample=sample, gen=gen, target=target_devices, prior=prior)
            return dev, lp, ent, (None, dev)
        G = self.groups
        logits = self.grouper(emb)
        if incumbent is not None and incumbent[1] is not None:
            logits = logits + self.keep[1] * nn.functional.one_hot(incumbent[1][0], G).to(emb.dtype)
        lg = torch.log_softmax(logits, -1)  # [U, G]
        if target_groups is not None and bool((target_groups >= 0).all()):
            grp = target_groups
        else:
            grp = (torch.multinomial(lg.exp(), K, replacement=True, generator=gen).T if sample
                   else lg.argmax(-1)[None].expand(K, U))  # [K, U]
            if target_groups is not None:
                grp = torch.where(target_groups >= 0, target_groups, grp)
        glogp = lg.gather(1, grp.T).T  # [K, U]
        gent = -(lg.exp() * lg).sum()
        w = cnt[None].expand(K, U)
        s = emb.new_zeros(K, G, emb.shape[1]).scatter_add_(1, grp[..., None].expand(K, U, emb.shape[1]),
                                                            (emb * cnt[:, None])[None].expand(K, U, -1))
        c = emb.new_zeros(K, G).scatter_add_(1, grp, w)
        x = torch.cat([s / c.clamp(min=1)[..., None], torch.log1p(c)[..., None]], -1)  # [K, G, F+1]
        gdev, plogp, pent = self.placer(x, sample=sample, gen=gen, target=target_devices, prior=prior)
        return gdev.gather(1, grp), torch.cat([glogp, plogp], 1), gent + pent, (grp, gdev)


# -- training -----------------------------------------------------------------------------------------------------

def merge_options(defaults: dict, options: dict | None, what: str) -> dict:
    """``defaults`` updated with ``options``, each converted to its default's type; an unknown key is refused
    in one line with the closest known one (``what``: whose options, e.g. "rl")."""
    opts = dict(defaults)
    for k, v in (options or {}).items():
        if k not in defaults:
            raise UserInputError(f"unknown {what} option {k!r}{did_you_mean(k, defaults)}; "
                                 f"known: {', '.join(defaults)}")
        opts[k] = type(defaults[k])(v)
    return opts


def load_checkpoint(path: str, signature: str, what: str, differ: str) -> dict:
    """A training checkpoint written with ``signature``, or a one-line refusal: a file ``torch.load`` cannot
    read as tensors and plain data, or one of another run (``differ``: what would differ); ``what`` names the
    run ("placement")."""
    ck = load_torch_checkpoint(path, f"a {what} checkpoint")
    if not isinstance(ck, dict) or ck.get("signature") != signature:
        raise UserInputError(f"{path}: a checkpoint of another {what} run ({differ} differ); give another path or "
                             "remove it")
    return ck


def _checkpoint_damage(ck: dict, prob: PlacementProblem, optim, units: int, groups: int | None) -> str:
    """What in a placement checkpoint whose signature matched no run writes ('' when nothing). Its best placement
    is simulated again and must take the step time it claims: a forged ``best_t`` of 0 made an all-on-one-device
    placement 2.9 times slower than METIS's the answer, exit 0; other fields ended in tracebacks (an outside
    check). The policy's own tensors are checked before it is loaded (``module_state_damage``)."""
    why = optimizer_state_damage(optim, ck.get("optim"))
    if why:
        return why
    if not (is_generator_state(ck.get("gen")) and is_generator_state(ck.get("torch_rng"))):
        return "its random generator states are not what graphmill writes"
    state, D = ck.get("state"), prob.devices

    def devices(t, width: int, top: int) -> bool:  # a [1, width] or [width] long tensor of choices below top
        return isinstance(t, torch.Tensor) and t.dtype == torch.long and t.shape[-1] == width and \
            t.numel() == width and bool(((t >= 0) & (t < top)).all())

    if not isinstance(state, dict) or not all(is_count(state.get(k)) for k in ("step", "samples")):
        return "its state's step and samples are not counts"
    for key in ("to_best", "to_beat", "to_goal", "stalled_at", "warm"):
        if state.get(key) is not None and not is_count(state[key]):
            return f"its state's {key} is not a count"
    for key in ("baseline", "incumbent_t", "projected_t"):
        v = state.get(key)
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)):
            return f"its state's {key} is not a number"
    if not isinstance(state.get("history"), list):
        return "its state's history is not a list"
    inc = state.get("incumbent")
    if not (isinstance(inc, tuple) and len(inc) == 3 and devices(inc[0], groups or units, D) and devices(
            inc[2], units, D) and (inc[1] is None if groups is None else devices(inc[1], units, groups))):
        return "its incumbent is not a placement of this graph's units"
    pl, t = ck.get("best_pl"), ck.get("best_t")
    if pl is None:
        return "" if t == math.inf else "its best step time has no placement"
    if not (isinstance(pl, list) and len(pl) == prob.n and all(is_count(d) and d < D for d in pl)):
        return f"its best placement is not one device in 0..{D - 1} per op ({prob.n})"
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isclose(t, _projected_time(prob, pl),
                                                                                    rel_tol=1e-9, abs_tol=1e-9):
        return f"its best placement does not take the step time it records ({str(t)[:30]})"
    return ""


def _projected_time(prob: PlacementProblem, placement) -> float:
    """The step time of ``placement`` (a device per op), infinite when it is over some device's memory."""
    sch = simulate(prob, np.asarray(placement).tolist())
    return sch.makespan if sch.over(prob.capacity) is None else math.inf


def _signature(prob: PlacementProblem, method: str, seed: int) -> str:
    """What a checkpoint must have been written for: the graph, the devices with their memory and links, the
    method and seed (a run resumed under another --memory kept the best placement of the old one and was refused
    as invalid at its end, after sampling; an outside check)."""
    # by device, in order: totals let two devices swapped (a fast one and a slow one) or one slow link moved to
    # another pair pass as the same set (a review)
    digest = hashlib.sha256()
    for a in (prob.op_time.sum(axis=0), prob.capacity, prob.latency, prob.bytes_per_unit):
        digest.update(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes())
    return (f"v4|{method}|{prob.n}|{prob.devices}|{seed}|{float(prob.op_time.sum()):.6g}|{len(prob.values)}|"
            f"{digest.hexdigest()[:16]}")


def learned_placement(prob: PlacementProblem, method: str, baselines: list[Any], *, budget: int = 0, seed: int = 0,
                      options: dict | None = None, progress: Callable[[str], None] | None = None,
                      checkpoint: str | None = None) -> tuple[list[int], dict]:
    """Train the ``rl`` or ``hierarchical`` policy on ``prob`` and return (best placement, statistics).

    torch runs on one thread here: the policy's tensors are small and step by step, and several threads only
    contend (ten times slower on a loaded two-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _learned_placement(prob, method, baselines, budget=budget, seed=seed, options=options,
                                  progress=progress, checkpoint=checkpoint)
    finally:
        torch.set_num_threads(threads)


def _learned_placement(prob: PlacementProblem, method: str, baselines: list[Any], *, budget: int, seed: int,
                       options: dict | None, progress: Callable[[str], None] | None,
                       checkpoint: str | None) -> tuple[list[int], dict]:
    opts = merge_options(DEFAULTS, options, method)
    if opts["start"] not in ("best", "random"):
        raise UserInputError(f"{method} option start={opts['start']!r}: choose 'best' (the best baseline's placement) "
                             "or 'random' (from scratch)")
    budget = budget or int(opts["budget"])
    K = int(opts["samples"])
    D = prob.devices
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    valid = [c for c in baselines if c.valid]
    best_base = min(valid, key=lambda c: c.schedule.makespan) if valid else None
    ref = best_base.schedule.makespan if best_base else min(c.schedule.makespan for c in baselines)
    ref = max(ref, 1e-9)
    best_pl = list(best_base.placement) if best_base else None
    best_t = best_base.schedule.makespan if best_base else math.inf
    best_from = best_base.method if best_base else None
    if D == 1:
        return [0] * prob.n, {"steps": 0, "samples": 0, "best_from": "single", "samples_to_best_baseline": 0,
                              "samples_to_beat_best_baseline": None, "samples_to_goal": None, "reference": ref}
    feats, tids, ntypes = op_features(prob)
    hier = method == "hierarchical"
    base = chain_units(prob) if opts["chains"] else np.asarray(prob.groups)
    unit = base if hier else merge_units(prob, int(opts["max_groups"]), base)
    U = int(unit.max()) + 1
    G = min(int(opts["groups"]), U) if hier else None
    policy = Policy(feats.shape[1], ntypes, int(opts["hidden"]), D, G)
    optim = torch.optim.Adam(policy.parameters(), lr=float(opts["lr"]))
    ft, tt, ut = torch.from_numpy(feats), torch.from_numpy(tids), torch.from_numpy(unit)
    state: dict[str, Any] = {"step": 0, "samples": 0, "baseline": None, "history": [], "to_best": None,
                             "to_goal": None, "incumbent": None}
    heft_metis = [c.schedule.makespan for c in valid if c.method in ("heft", "metis")]
    goal_ref = min(heft_metis) if heft_metis else ref
    sig = _signature(prob, method, seed) + f"|{opts['start']}|{int(bool(opts['chains']))}"
    resumed = False
    if checkpoint and os.path.exists(checkpoint):
        ck = load_checkpoint(checkpoint, sig, "placement", "graph, devices, their memory or links, method or seed")
        why = module_state_damage(policy, ck.get("policy"))  # against the fresh policy's own tensors
        try:
            if not isinstance(ck.get("policy"), dict):
                raise TypeError
            policy.load_state_dict(ck["policy"])
        except RuntimeError:  # the signature matched, the policy's shapes do not: its op-type vocabulary changed
            # (ai.onnx::Relu was keyed apart from Relu before 2026-12-05), which no signature of the graph records
            raise UserInputError(f"{checkpoint}: a checkpoint of another placement run (its policy's op types "
                                 "differ); give another path or remove it") from None
        except TypeError:
            pass  # said below, as damage
        why = why or _checkpoint_damage(ck, prob, optim, U, G)
        if why:
            raise UserInputError(f"{checkpoint}: a damaged placement checkpoint ({why}); give another path or remove "
                                 "it")
        optim.load_state_dict(ck["optim"])
        gen.set_state(ck["gen"])
        torch.set_rng_state(ck["torch_rng"])
        state = ck["state"]
        if ck["best_t"] < best_t:
            best_t, best_pl, best_from = ck["best_t"], ck["best_pl"], ck["best_from"]
        resumed = True
        if progress and state["samples"] >= budget:  # as search: nothing more to sample, and it says so
            progress(f"{method}: {checkpoint} already holds {state['samples']} placements, --budget {budget}: "
                     "nothing sampled; its best is reported")
        elif progress:  # it went on at a later step's line, saying nothing of the checkpoint (an outside check)
            progress(f"{method}: resuming from {checkpoint}: {state['samples']}/{budget} placements, step "
                     f"{state['step']}")

    def unit_targets(pl: list[int]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The policy's choices closest to placement ``pl``: (placer devices [1, U or G], groups [1, U] or None,
        unit devices [U]). Per unit the device most of its time is on; for the grouper, the units of each device
        cut in the graph's order into that device's share of the ``G`` groups (at least one), so that any
        placement of the units is one the grouper-placer can sample."""
        votes = np.zeros((U, D))
        np.add.at(votes, (unit, np.asarray(pl)), prob.op_time.mean(axis=1) + 1e-9)
        udev = votes.argmax(1)
        if not hier:
            return torch.from_numpy(udev)[None], None, torch.from_numpy(udev)
        used = [d for d in range(D) if np.any(udev == d)]
        count = np.array([np.sum(udev == d) for d in used], dtype=float)
        share = np.maximum(1, np.floor(count / count.sum() * (G - len(used)))).astype(int)
        grp = np.zeros(U, np.int64)
        gdev = np.full(G, used[0], np.int64)
        nxt = 0
        for d, q in zip(used, share):
            members = np.flatnonzero(udev == d)
            grp[members] = nxt + np.minimum(np.arange(len(members)) * q // len(members), q - 1)
            gdev[nxt:nxt + q] = d
            nxt += q
        return torch.from_numpy(gdev)[None], torch.from_numpy(grp)[None], torch.from_numpy(udev)

    def save() -> None:
        if not checkpoint:
            return
        save_torch_checkpoint(checkpoint, {
            "signature": sig, "policy": policy.state_dict(), "optim": optim.state_dict(), "gen": gen.get_state(),
            "torch_rng": torch.get_rng_state(), "state": state, "best_t": best_t, "best_pl": best_pl,
            "best_from": best_from})

    positions = U + (G or 0)
    # each of the incumbent's choices is held at probability 1 - explore / positions (a squared error on its
    # log-probability: the cross-entropy towards the incumbent below that, an exploration floor above), so
    # that a sample differs from the incumbent in about `explore` choices spread over all positions: the policy
    # proposes changes to the best placement so far, which it sees as an input (Placeto's iterative improvement)
    keep = math.log(max(1e-6, 1.0 - float(opts["explore"]) / positions))
    if not resumed:  # the copy term's start: each choice keeps the incumbent's with probability exp(keep)
        eps = 1.0 - math.exp(keep)
        with torch.no_grad():
            policy.keep[0] = math.log((1 - eps) * max(1, D - 1) / eps)
            policy.keep[1] = math.log((1 - eps) * max(1, (G or 1) - 1) / eps)

    def embed(inc: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        emb, cnt = policy.unit_embed(ft, tt, ut, U)
        return torch.cat([emb, nn.functional.one_hot(inc[2], D).to(emb.dtype)], -1), cnt

    if not resumed:
        if opts["start"] == "random":  # from scratch: a seeded uniformly random placement of the units
            rand = np.random.default_rng(seed).integers(0, D, U)[unit].tolist()
            state["incumbent"] = unit_targets(rand)
            state["incumbent_t"] = _projected_time(prob, rand)
        elif best_base is not None:
            state["incumbent"] = unit_targets(best_base.placement)
            state["incumbent_t"] = best_t
            # the incumbent is the baseline as the units express it (per unit its majority device), which can be
            # slower than the baseline (a unit METIS splits); after `patience` samples none of which beat the
            # baseline, the incumbent's own step time replaces the baseline's (below)
            state["projected_t"] = _projected_time(prob, state["incumbent"][2].numpy()[unit])
        else:  # no valid baseline: start from the first device everywhere
            state["incumbent"] = unit_targets([0] * prob.n)
            state["incumbent_t"] = math.inf
        state["warm"] = 0
        for _ in range(int(opts["warm_steps"])):  # warm start: imitate the incumbent (the best baseline)
            state["warm"] += 1
            inc = state["incumbent"]
            emb, cnt = embed(inc)
            _, lp, _, _ = policy.sample(emb, cnt, 1, gen, target_groups=inc[1], target_devices=inc[0],
                                        incumbent=inc)
            if int((lp[0].detach() < 2 * keep).sum()) <= float(opts["explore"]):
                break  # likely enough; the rest of the distribution explores
            optim.zero_grad()
            ((lp[0] - keep) ** 2).sum().backward()
            optim.step()
    penalty = -math.sqrt(float(opts["invalid_penalty"]))
    every = max(1, int(opts["progress_every"]))
    seen: dict[bytes, tuple[float, bool]] = {}
    while state["samples"] < budget and time.perf_counter() - t_start < float(opts["time_limit"]):
        if (state.get("stalled_at") is None and state["samples"] >= int(opts["patience"])
                and state.get("to_beat") is None and state.get("projected_t", -math.inf) > state["incumbent_t"]):
            # stalled: no sample beat the baseline, whose time the incumbent (the baseline as the units express
            # it) cannot reach; from now on a sample faster than the incumbent itself replaces it (NMT, 8 devices:
            # 1.000 of METIS before, README "Placement benchmark")
            state["incumbent_t"] = state["projected_t"]
            state["stalled_at"] = state["samples"]
        inc = state["incumbent"]
        emb, cnt = embed(inc)
        # rows 0..K-1 sample; row K is the incumbent, teacher-forced, for the cross-entropy hinge
        tdev = torch.cat([torch.full((K, inc[0].shape[1]), -1, dtype=torch.long), inc[0]])
        tgrp = None if inc[1] is None else torch.cat([torch.full((K, U), -1, dtype=torch.long), inc[1]])
        udev, lp_all, ent_all, (cg, cd) = policy.sample(emb, cnt, K + 1, gen, target_groups=tgrp,
                                                        target_devices=tdev, incumbent=inc)
        rewards = []
        improved = None
        n = min(K, budget - state["samples"])  # the last step uses only what is left of the budget
        for k in range(n):
            key = udev[k].numpy().astype(np.int16).tobytes()
            if key not in seen:  # a placement sampled again is not simulated again (it still counts)
                sch = simulate(prob, udev[k].numpy()[unit].tolist())
                seen[key] = (sch.makespan, sch.over(prob.capacity) is None)
            t_k, ok = seen[key]
            state["samples"] += 1
            rewards.append(-math.sqrt(t_k / ref) if ok else penalty)
            if ok and t_k < best_t:
                best_t, best_pl, best_from = t_k, udev[k].numpy()[unit].tolist(), f"{method} sample {state['samples']}"
            if ok and t_k < state["incumbent_t"]:
                state["incumbent_t"] = t_k
                improved = k
            if ok and state["to_best"] is None and t_k <= ref:
                state["to_best"] = state["samples"]
            if ok and state.get("to_beat") is None and t_k < ref:
                state["to_beat"] = state["samples"]
            if ok and state.get("to_goal") is None and t_k <= 0.9 * goal_ref:
                state["to_goal"] = state["samples"]
        r = torch.tensor(rewards)
        b = state["baseline"]
        b = float(r.mean()) if b is None else b
        # leave-one-out baseline (the mean reward of the step's other samples; the moving average with one)
        base = (r.sum() - r) / (n - 1) if n > 1 else r.new_full((n,), b)
        loss = -((r - base) * lp_all[:n].sum(1)).mean() - float(opts["entropy"]) * ent_all[:n].mean() / positions
        loss = loss + float(opts["imitation"]) * ((lp_all[K] - keep) ** 2).sum()
        optim.zero_grad()
        loss.backward()
        optim.step()
        if improved is not None:  # the new incumbent: the sample's own choices
            new_udev = udev[improved].clone()
            state["incumbent"] = (cd[improved:improved + 1].clone(),
                                  None if cg is None else cg[improved:improved + 1].clone(), new_udev)
        state["baseline"] = float(opts["baseline_decay"]) * b + (1 - float(opts["baseline_decay"])) * float(r.mean())
        state["step"] += 1
        state["history"].append({"step": state["step"], "samples": state["samples"], "best": best_t,
                                 "mean_reward": float(r.mean())})
        save()
        if progress and (state["step"] % every == 0 or state["samples"] >= budget):
            base_txt = f"{best_base.method} {ref:,.0f}" if best_base else "none valid"
            progress(f"{method}: step {state['step']}, {state['samples']}/{budget} placements, best step time "
                     f"{best_t:,.0f} ({best_t / ref:.3f} of the best baseline), baseline {base_txt}, mean reward "
                     f"{float(r.mean()):.3f}")
    if best_pl is None:
        raise UserInputError(f"the {method} placer found no placement that fits the devices' memory in "
                             f"{state['samples']} samples (nor did any baseline)")
    stats = {"steps": state["step"], "samples": state["samples"], "best_from": best_from,
             "samples_to_best_baseline": state["to_best"], "samples_to_beat_best_baseline": state.get("to_beat"),
             "samples_to_goal": state.get("to_goal"),
             "reference": ref, "units": U, "warm_steps": state.get("warm"),
             "groups": G, "projected_start": state.get("projected_t"),
             "stalled_at": state.get("stalled_at"), "seconds": time.perf_counter() - t_start,
             "resumed": resumed}
    return list(best_pl), stats
