"""Mixture-of-experts benchmark (issue 16's goal): the MoE LSTM LM against a dense LSTM LM at equal compute per
token, load balance with and without the auxiliary losses, dropped tokens against the capacity factor, and
expert-parallel step time on 4 and 8 simulated chips.

Corpus (generated, nothing downloaded): ``--topics`` first-order Markov "languages" over one vocabulary; each
sequence is drawn from one topic, each topic's transition rows put their mass on ``--successors`` random next
tokens. Knowing the topic (inferable from the context) sharpens the next-token distribution, and the
topic-specific transition tables are more than the dense model's FFN holds: the structure the MoE paper's
claim is about (more parameters at the same compute per token).

Models (torch, trained from scratch, same seeds, same steps): embedding -> LSTM -> {MoE | dense FFN} with a
residual -> LSTM -> softmax, as ``graphmill zoo moe_lstm_lm``. The MoE layer is the torch backend's own
``graphmill::MoE`` implementation (``moe_forward``; noisy top-k, Shazeer et al. 2017); the dense FFN has
``k * expert_hidden`` hidden units, so both spend the same MACs per token except the gate's (reported, counted
by graphmill's cost model on the zoo graph with the same sizes). Aux losses: ``w * (importance + load)`` with
``w = --aux`` (Shazeer's 0.1) or 0.

Per run the result is written to OUT/runs/<name>.json (atomically): a rerun skips finished runs (Ctrl-C
between or within runs loses at most the current run). Progress lines go to stderr.

    nice -n 10 .venv/bin/python benchmarks/bench_moe.py [--steps 1500] [--out bench-moe] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from graphmill import api
from graphmill.backends.simulator import load_accel
from graphmill.backends.simulator.expert_parallel import MoELayer, simulate_expert_parallel
from graphmill.backends.torch.ops.moe import moe_forward
from graphmill.util.files import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- corpus ------------------------------------------------------------------------------------------------------

def make_corpus(*, vocab: int, topics: int, successors: int, seq: int, sequences: int, seed: int) -> np.ndarray:
    """[sequences, seq + 1] int64 token ids from ``topics`` sparse Markov chains (module docstring)."""
    rng = np.random.default_rng(seed)
    trans = np.zeros((topics, vocab, vocab))
    for t in range(topics):
        for a in range(vocab):
            nxt = rng.choice(vocab, size=successors, replace=False)
            trans[t, a, nxt] = rng.dirichlet(np.ones(successors))
    cum = trans.cumsum(-1)
    out = np.empty((sequences, seq + 1), np.int64)
    topic = rng.integers(0, topics, size=sequences)
    out[:, 0] = rng.integers(0, vocab, size=sequences)
    u = rng.random((sequences, seq))
    for i in range(seq):
        rows = cum[topic, out[:, i]]
        out[:, i + 1] = np.minimum((rows < u[:, i:i + 1]).sum(1), vocab - 1)
    return out


# -- models ------------------------------------------------------------------------------------------------------

class LM(nn.Module):
    def __init__(self, *, vocab: int, hidden: int, experts: int, k: int, expert_hidden: int, moe: bool,
                 capacity_factor: float, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.moe, self.k, self.cf = moe, k, capacity_factor
        self.embed = nn.Embedding(vocab, hidden)
        self.low = nn.LSTM(hidden, hidden, batch_first=True)
        self.high = nn.LSTM(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)
        if moe:
            lim1, lim2 = 1 / math.sqrt(hidden), 1 / math.sqrt(expert_hidden)
            self.wg = nn.Parameter(torch.zeros(hidden, experts))  # Shazeer et al.: gate and noise start at zero
            self.wnoise = nn.Parameter(torch.zeros(hidden, experts))
            self.w1 = nn.Parameter(torch.empty(experts, hidden, expert_hidden).uniform_(-lim1, lim1))
            self.b1 = nn.Parameter(torch.zeros(experts, expert_hidden))
            self.w2 = nn.Parameter(torch.empty(experts, expert_hidden, hidden).uniform_(-lim2, lim2))
            self.b2 = nn.Parameter(torch.zeros(experts, hidden))
        else:
            self.ffn = nn.Sequential(nn.Linear(hidden, k * expert_hidden), nn.ReLU(), nn.Linear(k * expert_hidden, hidden))

    def forward(self, tokens: torch.Tensor, capacity_factor: float | None = None):
        h, _ = self.low(self.embed(tokens))
        aux = None
        if self.moe:
            y, imp, load, counts, dropped = moe_forward(
                h, self.wg, self.wnoise, self.w1, self.b1, self.w2, self.b2, k=self.k,
                capacity_factor=capacity_factor or self.cf, gate="topk", training=self.training)
            aux = (imp, load, counts, dropped)
        else:
            y = self.ffn(h)
        h2, _ = self.high(h + y)
        return self.out(h2), aux


def macs_per_token(args) -> dict:
    """MACs per token from graphmill's cost model on the zoo graph of the same sizes (MoE), and the dense
    model's (the same graph with the MoE's MACs replaced by the dense FFN's ``2 d k h``)."""
    g = api.zoo_build("moe_lstm_lm", batch=1, steps=1, vocab=args.vocab, hidden=args.hidden, layers=1,
                      experts=args.experts, k=args.k, expert_hidden=args.expert_hidden, capacity_factor=1.0)
    total = api.inspect(g)["macs"]
    from graphmill.ir.ops import lookup

    moe_macs = sum(lookup(n.domain, n.op_type).cost(n).macs for n in g.nodes if n.op_type == "MoE")
    dense_ffn = 2 * args.hidden * args.k * args.expert_hidden
    gate = args.hidden * args.experts * 2
    return {"moe": total, "dense": total - moe_macs + dense_ffn, "moe_gate": gate,
            "moe_experts": moe_macs - gate, "dense_ffn": dense_ffn}


# -- training ----------------------------------------------------------------------------------------------------

def batches(data: np.ndarray, batch: int, rng: np.random.Generator):
    while True:
        idx = rng.integers(0, len(data), size=batch)
        yield torch.from_numpy(data[idx])


def cv(counts) -> float:
    a = np.asarray(counts, dtype=np.float64)
    return float(a.std() / a.mean()) if a.mean() > 0 else 0.0


def train(name: str, args, train_data: np.ndarray, test_data: np.ndarray, *, moe: bool, aux: float) -> dict:
    model = LM(vocab=args.vocab, hidden=args.hidden, experts=args.experts, k=args.k,
               expert_hidden=args.expert_hidden, moe=moe, capacity_factor=args.capacity_factor, seed=args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    it = batches(train_data, args.batch, rng)
    t0 = time.perf_counter()
    history = []
    for step in range(1, args.steps + 1):
        model.train()
        x = next(it)
        logits, a = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, args.vocab), x[:, 1:].reshape(-1))
        total = loss + (aux * (a[0] + a[1]) if (a is not None and aux) else 0.0)
        opt.zero_grad()
        total.backward()
        opt.step()
        if step % args.log_every == 0 or step == args.steps:
            ev = evaluate(model, args, test_data)
            history.append({"step": step, "train_loss": float(loss.detach()), **ev})
            extra = f" load CV {ev['load_cv']:.3f} dropped {ev['dropped_fraction']:.3f}" if moe else ""
            print(f"[{name}] step {step}/{args.steps}: train {float(loss.detach()):.4f} test {ev['test_loss']:.4f}{extra} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    res = {"name": name, "moe": moe, "aux": aux, "history": history, "final": history[-1],
           "train_seconds": time.perf_counter() - t0,
           "params": sum(p.numel() for p in model.parameters())}
    if moe:
        res["capacity_sweep"] = [
            {"capacity_factor": cf, **evaluate(model, args, test_data, capacity_factor=cf)} for cf in args.sweep]
    return res


@torch.no_grad()
def evaluate(model: LM, args, data: np.ndarray, capacity_factor: float | None = None) -> dict:
    model.eval()
    x = torch.from_numpy(data)
    logits, a = model(x[:, :-1], capacity_factor=capacity_factor)
    out = {"test_loss": float(F.cross_entropy(logits.reshape(-1, args.vocab), x[:, 1:].reshape(-1)))}
    if a is not None:
        counts = a[2].tolist()
        out.update(load_cv=cv(counts), expert_load=counts, dropped=int(a[3]),
                   dropped_fraction=int(a[3]) / (x[:, :-1].numel() * args.k))
    return out


# -- expert parallelism ------------------------------------------------------------------------------------------

def expert_parallel(args, runs: dict) -> list[dict]:
    """One MoE step of the evaluation batch's tokens on 1 (replicated), 4 and 8 simulated chips, with the routing
    each trained MoE model produced (skewed without the aux loss, balanced with it)."""
    accel = load_accel(os.path.join(ROOT, "examples", "accelerators", args.accel))
    rows = []
    for name in ("moe_aux", "moe_noaux"):
        r = runs[name]
        counts = r["final"]["expert_load"]
        tokens = sum(counts) // args.k
        layer = MoELayer(name, args.experts, args.k, args.capacity_factor, "topk", tokens, args.hidden,
                         args.expert_hidden, True, counts=counts)
        one = simulate_expert_parallel(layer, accel, 1)
        for chips in (4, 8):
            for method in ("contiguous", "balanced"):
                cfg = dataclasses.replace(accel, chips=chips)
                p = simulate_expert_parallel(layer, cfg, chips, method=method)
                rows.append({"model": name, "chips": chips, "placement": method, "step_cycles": p.step_cycles,
                             "one_chip_cycles": one.step_cycles, "speedup": one.step_cycles / p.step_cycles,
                             "all_to_all_cycles": p.dispatch_cycles + p.combine_cycles,
                             "expert_cycles": p.expert_cycles, "load_cv": cv(counts)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench-moe", help="folder: runs/<name>.json and summary.json")
    ap.add_argument("--steps", type=int, default=1500, help="training steps per model")
    ap.add_argument("--log-every", type=int, default=250, help="steps between progress lines")
    ap.add_argument("--batch", type=int, default=32, help="sequences per step")
    ap.add_argument("--seq", type=int, default=32, help="tokens per sequence")
    ap.add_argument("--vocab", type=int, default=64, help="the corpus's vocabulary")
    ap.add_argument("--topics", type=int, default=32, help="Markov languages in the corpus")
    ap.add_argument("--successors", type=int, default=3, help="likely next tokens per token and topic")
    ap.add_argument("--hidden", type=int, default=64, help="LSTM units")
    ap.add_argument("--experts", type=int, default=16, help="experts in the MoE layer")
    ap.add_argument("--k", type=int, default=2, help="experts per token (top-k)")
    ap.add_argument("--expert-hidden", type=int, default=64, help="hidden units per expert (dense FFN: k times)")
    ap.add_argument("--capacity-factor", type=float, default=1.25, help="expert capacity in units of T*k/E")
    ap.add_argument("--aux", type=float, default=0.1, help="weight of importance + load losses (Shazeer: 0.1)")
    ap.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    ap.add_argument("--sweep", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.25, 1.5, 2.0],
                    help="capacity factors for the dropped-assignment table")
    ap.add_argument("--accel", default="tpu-v1-like.toml", help="accelerator of the expert-parallel step")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--seed", type=int, default=0, help="seed of the corpus and the models")
    args = ap.parse_args()
    api.zoo_moe_options(experts=args.experts, k=args.k, capacity_factor=args.capacity_factor)  # one-line errors
    if args.k > args.experts:
        print(f"bench_moe: error: --k {args.k} > --experts {args.experts}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    data = make_corpus(vocab=args.vocab, topics=args.topics, successors=args.successors, seq=args.seq,
                       sequences=4096 + 256, seed=args.seed)
    train_data, test_data = data[:4096], data[4096:]
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    plan = {"dense": dict(moe=False, aux=0.0), "moe_aux": dict(moe=True, aux=args.aux),
            "moe_noaux": dict(moe=True, aux=0.0)}
    runs = {}
    try:
        for name, kw in plan.items():
            path = os.path.join(args.out, "runs", f"{name}.json")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    runs[name] = json.load(f)
                print(f"[{name}] done before: {path}", file=sys.stderr)
                continue
            runs[name] = train(name, args, train_data, test_data, **kw)
            write_json(path, runs[name])
    except KeyboardInterrupt:
        print("bench_moe: interrupted; finished runs are kept, rerun the same command to continue", file=sys.stderr)
        return 130
    macs = macs_per_token(args)
    ep = expert_parallel(args, runs)
    summary = {"config": vars(args), "macs_per_token": macs,
               "test_loss": {n: r["final"]["test_loss"] for n, r in runs.items()},
               "params": {n: r["params"] for n, r in runs.items()},
               "load_cv": {n: r["final"].get("load_cv") for n, r in runs.items() if r["moe"]},
               "capacity_sweep": {n: [{k: v for k, v in row.items() if k != "expert_load"}
                                      for row in r["capacity_sweep"]] for n, r in runs.items() if r["moe"]},
               "expert_parallel": ep}
    write_json(os.path.join(args.out, "summary.json"), summary)
    print(f"\nMACs per token (graphmill cost model): MoE {macs['moe']:,} (gate {macs['moe_gate']:,}), "
          f"dense {macs['dense']:,}")
    print(f"{'model':<10} {'params':>9} {'test loss':>10} {'vs dense':>8} {'load CV':>8}")
    dense = runs["dense"]["final"]["test_loss"] if "dense" in runs else None  # the peer at equal MACs per token
    for n, r in runs.items():
        lcv = r["final"].get("load_cv")
        ratio = "" if dense is None else f"{r['final']['test_loss'] / dense:.3f}"
        print(f"{n:<10} {r['params']:>9,} {r['final']['test_loss']:>10.4f} {ratio:>8} "
              f"{'' if lcv is None else f'{lcv:.3f}':>8}")
    print("\ndropped assignments vs capacity factor (evaluation batch, fraction of T*k):")
    print(f"{'cf':>5} " + " ".join(f"{n:>10}" for n in runs if runs[n]["moe"]))
    for i, cf in enumerate(args.sweep):
        print(f"{cf:>5} " + " ".join(f"{runs[n]['capacity_sweep'][i]['dropped_fraction']:>10.3f}"
                                     for n in runs if runs[n]["moe"]))
    print(f"\nexpert-parallel MoE step ({args.accel}), cycles:")
    for row in ep:
        print(f"{row['model']:<10} {row['chips']} chips {row['placement']:<10} {row['step_cycles']:>12,.0f} "
              f"(one chip {row['one_chip_cycles']:,.0f}, {row['speedup']:.2f}x; all-to-all "
              f"{row['all_to_all_cycles']:,.0f}, experts {row['expert_cycles']:,.0f})")
    print(f"\nwrote {os.path.join(args.out, 'summary.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
