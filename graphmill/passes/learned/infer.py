"""Zero-shot use of a trained policy on a graph it has never seen: one forward pass gives the greedy decisions;
``samples`` more draws (0 by default) are simulated and the best valid one kept; with ``guard`` the hint (the
best baseline the policy reads as features) is a candidate too. No training happens here (fine-tuning is
``graphmill.search.learned.fine_tune``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .env import Decisions, JointProblem, Outcome
from .features import node_features
from .policy import GraphPolicy, obs_tensors

__all__ = ["Proposal", "propose", "with_parts"]


@dataclass
class Proposal:
    decisions: Decisions
    outcome: Outcome
    source: str  # "greedy" or "sample k"
    seconds: float
    info: dict = field(default_factory=dict)


def propose(policy: GraphPolicy, jp: JointProblem, *, samples: int = 0, seed: int = 0,
            obs: dict | None = None, guard: bool = False) -> Proposal:
    """The policy's decisions for ``jp`` (module docstring). ``guard``: the hint (the best baseline, an input
    of the policy) is a candidate too, so that the result is never worse than the best baseline."""
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        obs = obs if obs is not None else node_features(jp)
        t = obs_tensors(obs)
        best = policy.act(t, greedy=True)
        out = jp.evaluate(best.decisions)
        src = "greedy"
        gen = torch.Generator().manual_seed(seed)
        dec = best.decisions
        for k in range(samples):
            s = policy.act(t, gen=gen)
            o = jp.evaluate(s.decisions)
            if o.valid and (not out.valid or o.makespan < out.makespan):
                dec, out, src = s.decisions, o, f"sample {k + 1}"
        if guard:
            hd = (obs if obs is not None else {}).get("hint_decisions")
            if hd is not None:
                o = jp.evaluate(hd)
                if o.valid and (not out.valid or o.makespan < out.makespan):
                    dec, out, src = hd, o, "hint"
    finally:
        torch.set_num_threads(threads)
    return Proposal(dec, out, src, time.perf_counter() - t0)


def with_parts(learned: Decisions, base: Decisions, parts: set[str]) -> Decisions:
    """``learned``'s decisions for ``parts`` (``place``, ``fuse``, ``schedule``), ``base``'s for the others; a
    fusion whose producer is now on another device is dropped (it would cross devices)."""
    dev = learned.device if "place" in parts else base.device
    fuse = np.array(learned.fuse if "fuse" in parts else base.fuse, bool)
    prio = learned.priority if "schedule" in parts else base.priority
    return Decisions(np.asarray(dev, np.int64), fuse, np.asarray(prio, np.float64))
