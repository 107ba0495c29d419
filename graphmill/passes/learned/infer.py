"""Zero-shot use of a trained policy on a graph it has never seen: **iterative refinement** (Placeto/GDP-style).
The state starts as the hint (the best baseline, whose simulation the features need anyway); each round is one
forward pass of the policy on the current state's features (its devices, order, slack, one-step move
estimates: ``features.state_features``) giving its greedy decisions, the state with its k most probable
device changes (``top_moves``), the state with its k most wanted chain units moved whole (``top_unit_moves``:
a single op moved off a chain pays two transfers, a unit moved whole one), plus ``samples`` draws from the same
pass; each is simulated, and the next round refines the best state so far. A decision set simulated already (the
start state, an earlier candidate: ``state_key``) is not simulated again nor counted, so at most ``rounds`` x (1 +
len(``top``) + len(``units``) + ``samples``) simulations in all, and at most as many forward passes as rounds
(seconds even for thousands of ops). No search happens here besides keeping the best simulated state, and no training
(fine-tuning, ``graphmill.search.learned.fine_tune``, starts with these rounds: it calls ``refine``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from graphmill.passes.placement.rl import chain_units, merge_units

from .env import Decisions, JointProblem, Outcome
from .features import node_features, state_features
from .policy import GraphPolicy, obs_tensors

__all__ = ["Proposal", "propose", "refine", "state_key", "top_moves", "ranked_moves", "moved", "task_units",
           "unit_members", "ranked_unit_moves", "top_unit_moves", "ROUNDS", "TOP", "UNIT_TOP"]

#: refinement rounds of zero-shot use (the passes' and ``propose``'s default)
ROUNDS = 4
#: per round, candidates with the policy's k most probable device changes (``top_moves``)
TOP = (1, 2, 4, 8, 16, 32)
#: per round, candidates with the policy's k most wanted chain units moved whole (``top_unit_moves``)
UNIT_TOP = (1, 2, 4, 8, 16)


@dataclass
class Proposal:
    decisions: Decisions
    outcome: Outcome
    source: str  # "round r greedy", "round r sample k", or "hint" (no round improved on the start state)
    seconds: float
    info: dict = field(default_factory=dict)


def _key(o: Outcome) -> tuple[bool, float]:
    return (not o.valid, o.makespan)


def state_key(d: Decisions) -> bytes:
    """The state's identity: devices, fusions and the order the priorities give (same key, same simulation),
    as a 128-bit digest, so that the set of states a fine-tuning simulated stays small in memory and in its
    checkpoint (the raw arrays were ~17 bytes per op and state)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for part in (np.asarray(d.device, np.int64), np.asarray(d.fuse, bool), np.argsort(d.priority, kind="stable")):
        h.update(part.tobytes())
        h.update(b"|")
    return h.digest()


def refine(policy: GraphPolicy, jp: JointProblem, obs: dict, *, rounds: int = ROUNDS, samples: int = 0,
           seed: int = 0, transform: Callable[[Decisions], Decisions] | None = None,
           start: tuple[Decisions, Outcome] | None = None, top: tuple[int, ...] = (), units: tuple[int, ...] = (),
           budget: int | None = None, seen: set[bytes] | None = None
           ) -> tuple[Decisions, Outcome, str, list[float]]:
    """Refine from ``start`` (default: the hint, ``obs``' state; else a state and its outcome, simulated
    already) for ``rounds`` (module docstring); ``transform`` maps the policy's decisions to the ones simulated
    (a pass deciding only some of the three). Returns (best decisions, their outcome, where they came from, the
    step time of every simulation in order, inf when invalid). The start state is the answer only when no
    candidate beats it.

    ``seen``: the ``state_key`` of every decision set simulated already (default: a new set); the start state's
    and every simulated candidate's are added, in place, so a caller that goes on searching (``fine_tune``)
    never simulates one of them twice. A candidate whose key is there is answered from memory: not simulated
    again and not counted (it was compared with the best when it was simulated; a caller adding keys of its
    own has kept the best of those). ``budget``: at most that many simulations (the start state's not counted).
    ``top`` and ``units``: the k of ``top_moves`` and of ``top_unit_moves`` (default: none of either)."""
    seen = set() if seen is None else seen
    members = unit_members(task_units(jp)) if units else []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if start is None:
            dec, out = obs["decisions"], obs["outcome"]
            if transform is not None:
                dec = transform(dec)
                out = jp.evaluate(dec)
                obs = state_features(jp, obs, dec, out)
        else:
            dec, out = start
            obs = state_features(jp, obs, dec, out)
        seen.add(state_key(dec))
        best = (dec, out, "hint")
        gen = torch.Generator().manual_seed(seed)
        times: list[float] = []
        for r in range(rounds):
            if budget is not None and len(times) >= budget:
                break
            t = obs_tensors(obs)
            with torch.no_grad():
                heads = policy.heads(t)  # the round's one forward pass
            cands = [(policy.act(t, greedy=True, heads=heads).decisions, f"round {r + 1} greedy")]
            cands += [(d, f"round {r + 1} top {k}") for k, d in top_moves(jp, obs["decisions"], heads[0], top)]
            cands += [(d, f"round {r + 1} units {k}")
                      for k, d in top_unit_moves(jp, obs["decisions"], heads[0], members, units)]
            cands += [(policy.act(t, gen=gen, heads=heads).decisions, f"round {r + 1} sample {k + 1}")
                      for k in range(samples)]
            improved = False
            for d, label in cands:
                d = transform(d) if transform is not None else d
                key = state_key(d)
                if key in seen:
                    continue  # simulated already: compared with the best then
                if budget is not None and len(times) >= budget:
                    break
                seen.add(key)
                o = jp.evaluate(d)
                times.append(o.makespan if o.valid else float("inf"))
                if _key(o) < _key(best[1]):
                    best, improved = (d, o, label), True
            if not improved and not samples:
                break  # the next round's forward pass would see the same state: the same candidates, all seen
            if improved:
                obs = state_features(jp, obs, best[0], best[1])
    finally:
        torch.set_num_threads(threads)
    return best[0], best[1], best[2], times


def ranked_moves(cur: Decisions, dev_logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The policy's device changes, most probable first: (ops in that order, each op's best other device),
    ranked by ``logit(i, d) - logit(i, current)``."""
    lg = dev_logits.detach().numpy().astype(np.float64).copy()
    dev = np.asarray(cur.device, np.int64)
    n = len(dev)
    own = lg[np.arange(n), dev].copy()
    lg[np.arange(n), dev] = -np.inf
    best = lg.argmax(1)
    return np.argsort(-(lg[np.arange(n), best] - own), kind="stable"), best


def moved(jp: JointProblem, cur: Decisions, ops: np.ndarray, to: np.ndarray) -> Decisions:
    """``cur`` with ``ops`` moved to devices ``to``: the order kept, and every fusion whose two ops still share a
    device (those of unmoved ops, and those inside a chain unit moved whole: dropping these made every unit move
    of a fused state pay for its lost fusions)."""
    d = np.asarray(cur.device, np.int64).copy()
    d[ops] = to
    fuse = np.asarray(cur.fuse, bool) & jp.same_device_fusions(d)
    return Decisions(d, fuse, np.asarray(cur.priority, np.float64))


def top_moves(jp: JointProblem, cur: Decisions, dev_logits: torch.Tensor, ks: tuple[int, ...]
              ) -> list[tuple[int, Decisions]]:
    """For each ``k`` of ``ks``: the current state with the policy's ``k`` most probable device changes applied
    (``ranked_moves``: one per op; the order and the fusions of unmoved ops kept). Decoding of the same
    forward pass: the ranking is the policy's."""
    if not ks:
        return []
    order, best = ranked_moves(cur, dev_logits)
    return [(k, moved(jp, cur, order[:k], best[order[:k]])) for k in ks if k <= len(order)]


def task_units(jp: JointProblem, max_units: int = 256) -> np.ndarray:
    """op -> chain unit of the placement RL placer (``placement.rl.chain_units``: chains of colocation groups
    between forks and joins; merged per layer into at most ``max_units`` runs, ``rl.merge_units``, as ``rl`` does)."""
    return merge_units(jp.prob, max_units, chain_units(jp.prob))


def unit_members(unit: np.ndarray) -> list[list[int]]:
    """unit -> its ops (``unit``: op -> unit, as ``task_units`` gives)."""
    members: list[list[int]] = [[] for _ in range(int(unit.max()) + 1 if len(unit) else 0)]
    for i, u in enumerate(unit.tolist()):
        members[u].append(i)
    return members


def ranked_unit_moves(cur: Decisions, dev_logits: torch.Tensor, members: list[list[int]]
                      ) -> list[tuple[int, int]]:
    """The policy's chain-unit moves, most wanted first: (unit, device) for every unit, to the device of highest
    mean ``logit(i, d) - logit(i, current(i))`` over its ops, a device that holds the whole unit already excluded;
    ties in unit order. The policy scores ops; a unit's mean is its wish to move the unit whole."""
    lg = dev_logits.detach().numpy().astype(np.float64)
    dev = np.asarray(cur.device, np.int64)
    scored = []
    for u, ops in enumerate(members):
        if not ops:
            continue
        ops_ = np.asarray(ops, np.int64)
        gain = (lg[ops_] - lg[ops_, dev[ops_]][:, None]).mean(0)
        here = np.bincount(dev[ops_], minlength=lg.shape[1]) == len(ops_)
        gain[here] = -np.inf
        d = int(gain.argmax())
        if np.isfinite(gain[d]):
            scored.append((-float(gain[d]), u, d))
    scored.sort()
    return [(u, d) for _, u, d in scored]


def top_unit_moves(jp: JointProblem, cur: Decisions, dev_logits: torch.Tensor, members: list[list[int]],
                   ks: tuple[int, ...]) -> list[tuple[int, Decisions]]:
    """For each ``k`` of ``ks``: the current state with the policy's ``k`` most wanted unit moves
    (``ranked_unit_moves``) applied together, each unit moved whole (``moved``: the order and the fusions that
    stay on one device kept)."""
    if not ks:
        return []
    ranked = ranked_unit_moves(cur, dev_logits, members)
    out = []
    for k in ks:
        if k > len(ranked):
            continue
        ops = np.concatenate([np.asarray(members[u], np.int64) for u, _ in ranked[:k]])
        to = np.concatenate([np.full(len(members[u]), d, np.int64) for u, d in ranked[:k]])
        out.append((k, moved(jp, cur, ops, to)))
    return out


def propose(policy: GraphPolicy, jp: JointProblem, *, samples: int = 0, seed: int = 0,
            obs: dict | None = None, guard: bool = False, rounds: int = ROUNDS, top: tuple[int, ...] = TOP,
            units: tuple[int, ...] = UNIT_TOP) -> Proposal:
    """The policy's refined decisions for ``jp`` (module docstring). ``guard`` is kept for callers: refinement
    starts from the hint and keeps the best state, so the result is never worse than the hint anyway."""
    t0 = time.perf_counter()
    obs = obs if obs is not None else node_features(jp)
    dec, out, src, times = refine(policy, jp, obs, rounds=rounds, samples=samples, seed=seed, top=top, units=units)
    return Proposal(dec, out, src, time.perf_counter() - t0, {"candidates": times})
