"""The graph policy of the learned passes (issue 14, item 3) and its file format.

Network (plain torch; torch-geometric would add a dependency for three index_add calls):

* node encoder: an MLP over ``features.node_features``' ``x``;
* ``layers`` GraphSAGE-style rounds: ``h <- LayerNorm(h + ReLU(W [h, mean of producers' h, mean of readers' h]))``;
* an attention decoder: ``inducing`` learned queries attend over all nodes (multi-head), then every node attends
  to those summaries (an induced set-attention block: global context in O(n) rather than O(n^2), so graphs of
  thousands of ops take one pass);
* three heads per node (each head's learned part bounded by a tanh: +-8 device logits, +-3 fuse logits, +-0.1
  in priority, so that on a graph unlike the training set the policy departs from its state by a bounded
  amount): **device** (each device
  scored by an MLP over ``[h_i, dev_x[i, d]]``, plus a learned
  gain times "the hint places it here", plus a learned gain (``move_gain``, from 1) times the one-step estimate of
  moving it there (``features.move_estimates``, log-scaled: ``dev_x[i, d, 4]``), so that any number of devices is
  served), **fuse** with its fusion
  producer (an MLP over ``[h_i, h_producer]`` plus a learned gain times +-1 for the hint's choice), **priority**
  (a Gaussian around ``hint_order - w * rank + 0.1 mu_i``, learned ``log_std``). The "hint" columns hold the
  *current state* (``features.state_features``), which starts as the best baseline: the greedy decisions of an
  untrained policy are the state itself (but for a move whose estimated gain is some 150 times the mean op time,
  which ``move_gain`` lifts over the hint's gain), and training learns which changes to it pay (iterative refinement,
  ``infer.refine``).

Masks: an op without a fusion producer, or whose fusion would not fit the buffers, cannot fuse; a fused op runs
on its producer's device (its device choice is masked out of the log-probability), so a fusion never crosses
devices. Each unmasked choice is one "token" of PPO (``graphmill.search.learned``).

Files: a policy is ``NAME.npz`` (the state dict, loaded with ``allow_pickle=False``) and ``NAME.json`` (the
architecture, training set, seed and time). Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from graphmill.ir import UserInputError
from graphmill.util.files import atomic_write_many

from .env import Decisions
from .features import DEVICE_FEATURES, NODE_FEATURES

__all__ = ["GraphPolicy", "Sample", "obs_tensors", "save_policy", "load_policy", "default_policy_path",
           "POLICY_FORMAT"]

POLICY_FORMAT = "graphmill-learned-policy/3"  # /2: refinement features (current state, slack, moves); /3: move_gain


def default_policy_path() -> str:
    """The pretrained policy shipped with graphmill (``data/policy.npz`` next to this module)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "policy.npz")


def obs_tensors(obs: dict) -> dict:
    """The observation as torch tensors (``features.node_features``' keys)."""
    out = {k: torch.from_numpy(np.ascontiguousarray(obs[k])) for k in ("x", "dev_x", "src", "dst", "fuse_producer",
                                                                        "hint")}
    out["fuse_ok"] = torch.from_numpy(np.asarray(obs["fuse_ok"], bool))
    n = obs["x"].shape[0]
    deg_in = torch.zeros(n).index_add_(0, out["dst"], torch.ones(len(out["dst"])))
    deg_out = torch.zeros(n).index_add_(0, out["src"], torch.ones(len(out["src"])))
    out["deg_in"] = deg_in.clamp(min=1)[:, None]
    out["deg_out"] = deg_out.clamp(min=1)[:, None]
    out["position"] = torch.arange(n, dtype=torch.float32) / max(1, n - 1)
    from .features import NUMERIC, OP_VOCAB

    k = len(OP_VOCAB)
    out["rank"] = out["x"][:, k + NUMERIC.index("rank")]
    out["hint_fuse"] = out["x"][:, k + NUMERIC.index("hint_fuse")]
    out["hint_order"] = out["x"][:, k + NUMERIC.index("hint_order")]
    return out


@dataclass
class Sample:
    """Sampled (or greedy) decisions with what PPO needs to re-score them."""

    decisions: Decisions
    device: torch.Tensor  # [n] long
    fuse: torch.Tensor  # [n] bool
    prio_noise: torch.Tensor  # [n] the Gaussian draw (priority offset)
    logp: torch.Tensor  # [tokens] the old log-probabilities of the unmasked choices


class SageLayer(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * h, h)
        self.norm = nn.LayerNorm(h)

    def forward(self, h: torch.Tensor, t: dict) -> torch.Tensor:
        src, dst = t["src"], t["dst"]
        m_in = h.new_zeros(h.shape).index_add_(0, dst, h[src]) / t["deg_in"]
        m_out = h.new_zeros(h.shape).index_add_(0, src, h[dst]) / t["deg_out"]
        return self.norm(h + torch.relu(self.lin(torch.cat([h, m_in, m_out], -1))))


class GraphPolicy(nn.Module):
    """GraphSAGE encoder + induced attention decoder + device / fuse / priority heads (module docstring)."""

    def __init__(self, hidden: int = 64, layers: int = 3, inducing: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "layers": layers, "inducing": inducing, "heads": heads}
        self.source = ""  # the file it was loaded from (load_policy), for the refusal of its outputs in heads()
        self.inp = nn.Sequential(nn.Linear(NODE_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.sage = nn.ModuleList(SageLayer(hidden) for _ in range(layers))
        self.inducing = nn.Parameter(torch.randn(inducing, hidden) * 0.1)
        self.pool = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.broadcast = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm = nn.LayerNorm(hidden)
        self.dev = nn.Sequential(nn.Linear(hidden + DEVICE_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.hint_gain = nn.Parameter(torch.tensor(5.0))
        # The estimate is a feature of the MLP too, but through it alone the policy ranked the moves of the NMT
        # graph's 19 best single-op estimates 19th to 41st, below 18 moves that each made the step slower. A
        # direct term lets the ranking start from the estimate and training weigh it (docs/results/learned.md,
        # zero-shot over 5 training seeds).
        self.move_gain = nn.Parameter(torch.tensor(1.0))
        self.fuse = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.fuse_gain = nn.Parameter(torch.tensor(3.0))
        self.prio = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.rank_weight = nn.Parameter(torch.tensor(0.0))
        self.log_std = nn.Parameter(torch.tensor(-4.5))
        for head in (self.dev, self.fuse, self.prio):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def heads(self, t: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(device logits [n, D], fuse logits [n], priority means [n]) of one graph."""
        h = self.inp(t["x"])
        for layer in self.sage:
            h = layer(h, t)
        q = self.inducing[None]
        z, _ = self.pool(q, h[None], h[None])
        ctx, _ = self.broadcast(h[None], z, z)
        h = self.norm(h + ctx[0])
        n, D, _ = t["dev_x"].shape
        dev_in = torch.cat([h[:, None, :].expand(n, D, h.shape[1]), t["dev_x"]], -1)
        dev_logits = 8.0 * torch.tanh(self.dev(dev_in).squeeze(-1) / 8.0) + self.hint_gain * t["dev_x"][:, :, 2] + \
            self.move_gain * t["dev_x"][:, :, 4]
        prod = h[t["fuse_producer"].clamp(min=0)]
        fuse_logits = 3.0 * torch.tanh(self.fuse(torch.cat([h, prod], -1)).squeeze(-1)) + \
            self.fuse_gain * (2 * t["hint_fuse"] - 1)
        mu = t["hint_order"] - self.rank_weight * t["rank"] + 0.1 * torch.tanh(self.prio(h).squeeze(-1))
        if not all(bool(torch.isfinite(x).all()) for x in (dev_logits, fuse_logits, mu)):
            # finite weights too large (a policy file scaled by 1e6) overflow to inf/NaN here: sampling failed in
            # torch.multinomial with a traceback, and greedy decoding took NaN's argmax (an outside check)
            if self.training:  # train-policy or fine-tuning: the weights diverged in memory, no file is at fault
                raise UserInputError("training diverged: the policy's outputs are no longer finite numbers (its "
                                     "weights overflow); a smaller learning rate may help (train-policy's --option "
                                     "lr=...)")
            raise UserInputError(f"{self.source or 'the policy'}: its outputs on this graph are not finite numbers "
                                 "(weights so large they overflow): not a usable policy; retrain it with "
                                 "`graphmill train-policy`")
        return dev_logits, fuse_logits, mu

    def act(self, t: dict, *, greedy: bool = False, gen: torch.Generator | None = None, heads: Any = None) -> Sample:
        """One set of decisions for the graph of ``t`` (no gradient); ``heads``: this state's ``heads(t)``
        already computed (several decisions from one forward pass)."""
        with torch.no_grad():
            dev_logits, fuse_logits, mu = heads if heads is not None else self.heads(t)
            fuse_ok = t["fuse_ok"]
            if greedy:
                fuse = (fuse_logits > 0) & fuse_ok
                dev = dev_logits.argmax(-1)
                noise = torch.zeros_like(mu)
            else:
                u = torch.rand(fuse_logits.shape, generator=gen)
                fuse = (u < torch.sigmoid(fuse_logits)) & fuse_ok
                dev = torch.multinomial(torch.softmax(dev_logits, -1), 1, generator=gen).squeeze(1)
                noise = torch.randn(mu.shape, generator=gen)
            s = Sample(self._decisions(t, dev, fuse, mu + noise * self.log_std.exp()), dev, fuse, noise,
                       torch.zeros(0))
            s.logp = self.log_prob(t, s, heads=(dev_logits, fuse_logits, mu))[0]
        return s

    def _decisions(self, t: dict, dev: torch.Tensor, fuse: torch.Tensor, prio: torch.Tensor) -> Decisions:
        d = dev.numpy().astype(np.int64).copy()
        f = fuse.numpy().astype(bool)
        fp = t["fuse_producer"].numpy()
        for i in np.flatnonzero(f):  # the mask: a fused op follows its producer (producers come first)
            d[i] = d[fp[i]]
        return Decisions(d, f, prio.numpy().astype(np.float64))

    def log_prob(self, t: dict, s: Sample, heads: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probabilities [tokens], entropies [tokens]) of the unmasked choices of ``s``, in a fixed order:
        fuse choices of ops that may fuse, device choices of unfused ops, every priority."""
        dev_logits, fuse_logits, mu = heads if heads is not None else self.heads(t)
        ok = t["fuse_ok"]
        fl = fuse_logits[ok]
        ff = s.fuse[ok].float()
        lp_f = -nn.functional.binary_cross_entropy_with_logits(fl, ff, reduction="none")
        pf = torch.sigmoid(fl)
        ent_f = nn.functional.binary_cross_entropy_with_logits(fl, pf, reduction="none")
        free = ~s.fuse
        ld = torch.log_softmax(dev_logits[free], -1)
        lp_d = ld.gather(1, s.device[free][:, None]).squeeze(1)
        ent_d = -(ld.exp() * ld).sum(-1)
        std = self.log_std.exp()
        x = torch.from_numpy(s.decisions.priority).to(mu.dtype)  # the action taken
        z = (x - mu) / std
        lp_p = -0.5 * z * z - self.log_std - 0.5 * math.log(2 * math.pi)
        ent_p = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).expand_as(lp_p)
        return torch.cat([lp_f, lp_d, lp_p]), torch.cat([ent_f, ent_d, ent_p])


def save_policy(policy: GraphPolicy, path: str | os.PathLike, meta: dict) -> None:
    """``path`` (.npz, the weights) and the .json beside it (architecture + ``meta``), both atomically."""
    import io

    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise UserInputError(f"{path}: a policy file ends in .npz (its metadata goes beside it in .json)")
    buf = io.BytesIO()
    np.savez(buf, **{k: v.detach().cpu().numpy() for k, v in policy.state_dict().items()})
    doc = {"format": POLICY_FORMAT, "config": policy.config, **meta}
    atomic_write_many([(path, buf.getvalue()), (path[:-4] + ".json", (json.dumps(doc, indent=1) + "\n").encode())])


def check_state(policy: GraphPolicy, state: dict) -> None:
    """Refuse, naming the first differing tensor, a state dict that does not fit ``policy``: a policy written
    for another feature set (its input layer's width is the number of node features) or architecture."""
    own = policy.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(f"tensor {(missing or extra)[0]!r} {'missing' if missing else 'unexpected'}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            why = (f"{state[k].shape[-1]} node features, this graphmill has {NODE_FEATURES}"
                   if k == "inp.0.weight" and state[k].dim() == 2 else
                   f"{tuple(state[k].shape)}, expected {tuple(v.shape)}")
            raise ValueError(f"tensor {k!r} is {why}; retrain it with `graphmill train-policy`")
        if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all()):
            # sampling from it ended in torch.multinomial's traceback, and a greedy pass accepted it silently
            raise ValueError(f"tensor {k!r} holds NaN or infinite values")


POLICY_SIZES = {"hidden": (1, 1024), "layers": (0, 16), "inducing": (1, 256), "heads": (1, 16)}
"""The ranges a policy file's architecture may take (the shipped one: hidden 64, 3 layers, 16 inducing points,
4 heads): the network is built from them before its weights are read, so a hostile file asking for 60,000
hidden units (14 GB) or 10^8 layers is refused first (an outside check)."""


def policy_config(config: object) -> dict[str, int]:
    """A policy file's ``config`` as ``GraphPolicy``'s keyword arguments, each an integer in ``POLICY_SIZES``'s
    range; ``ValueError`` naming the first that is not."""
    if not isinstance(config, dict):
        raise ValueError("its config is not a JSON object")
    out = {}
    for k, v in config.items():
        if k not in POLICY_SIZES:
            raise ValueError(f"unknown config key {k!r}")
        lo, hi = POLICY_SIZES[k]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"config {k} = {v!r}: expected an integer in [{lo}, {hi}]")
        out[k] = v
    if out.get("hidden", 64) % out.get("heads", 4):
        raise ValueError(f"config hidden = {out.get('hidden', 64)} is not a multiple of heads = {out.get('heads', 4)}")
    return out


def load_policy(path: str | os.PathLike | None = None) -> tuple[GraphPolicy, dict]:
    """A policy saved by ``save_policy`` (default: the shipped one); one-line error for anything else."""
    path = os.fspath(path) if path is not None else default_policy_path()
    meta_path = path[:-4] + ".json" if path.endswith(".npz") else None
    if meta_path is None or not os.path.isfile(path):
        # an existing file named otherwise (a model given as --policy): "no policy there" read as "not found"
        what = "not a graphmill policy" if os.path.isfile(path) else "no policy there"
        raise UserInputError(f"{path}: {what} (a policy is NAME.npz with NAME.json beside it; "
                             "`graphmill train-policy` writes one)")
    if not os.path.isfile(meta_path):
        raise UserInputError(f"{path}: its metadata {meta_path} is missing (a policy is NAME.npz with NAME.json "
                             "beside it; `graphmill train-policy` writes both)")
    try:  # is_zipfile says False for a file it cannot read: "not an .npz archive" for a permission error
        with open(path, "rb"):
            pass
    except OSError as e:
        raise UserInputError(f"{path}: cannot read the policy ({e.strerror or e})") from None
    if not zipfile.is_zipfile(path):  # np.load would call any other file pickled data and suggest unpickling it
        raise UserInputError(f"{path}: not a graphmill policy (not an .npz archive)")
    from graphmill.util.files import TEXT_FILE_LIMIT, parse_json, read_npz_arrays, read_user_file

    try:
        meta = parse_json(read_user_file(meta_path, TEXT_FILE_LIMIT, "a policy's metadata (JSON)"))
        if not isinstance(meta, dict):
            raise ValueError(f"{meta_path} is not a JSON object")
        fmt = meta.get("format")
        family, _, ours = POLICY_FORMAT.rpartition("/")
        version = fmt[len(family) + 1:] if isinstance(fmt, str) and fmt.startswith(family + "/") else ""
        if version.isdigit() and int(version) != int(ours):
            raise UserInputError(
                f"{path}: a graphmill policy of format {fmt!r}, which this graphmill no longer reads "
                f"({POLICY_FORMAT!r}); retrain it with `graphmill train-policy`" if int(version) < int(ours) else
                f"{path}: a graphmill policy of format {fmt!r}, written by a newer graphmill (this one reads "
                f"{POLICY_FORMAT!r})")
        if fmt != POLICY_FORMAT:
            raise ValueError(f"format {fmt!r}, expected {POLICY_FORMAT!r}")
        policy = GraphPolicy(**policy_config(meta.get("config")))
        state = {k: torch.from_numpy(a.copy()) for k, a in read_npz_arrays(path).items()}
        check_state(policy, state)
        policy.load_state_dict(state)
    except (ValueError, KeyError, TypeError, OSError, RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise UserInputError(f"{path}: not a graphmill policy ({str(e).splitlines()[0] if str(e) else e})") from None
    policy.eval()
    policy.source = path
    return policy, meta
