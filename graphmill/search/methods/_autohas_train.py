"""AutoHAS's moving parts: the controller, one child's training step with sampled hyper-parameters, the
temporary-update scoring of the search loop, and a child trained alone (the final pick, the baselines).

Everything trains children of a ``graphmill.search.oneshot`` supernet through ``SupernetModule`` (the shared
weights at full shape, any child run by slicing them), with plain SGD (momentum 0.9) so that the learning rate
a configuration samples means the same thing in the search loop, in the final training and in the baselines.
The public names are re-exported by ``graphmill.search.methods.autohas``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping

import numpy as np

from graphmill.search.space import Choice, Space
from graphmill.search.strategies.base import rng_from_state, rng_state

MOMENTUM = 0.9
SAFE_LR = 0.03  # the shared weights' rate after a sampled rate diverged (update="sandwich")


class Controller:
    """AutoHAS's controller: one independent categorical distribution per decision (every architecture choice
    and every hyper-parameter of the joint space), trained with REINFORCE.

    ``sample()`` draws a configuration (and the actions that produce it); ``update(actions, reward)`` moves the
    logits along ``advantage * (onehot(action) - p)`` plus an entropy bonus, the advantage being the reward minus
    a moving-average baseline divided by the running standard deviation of rewards (clipped to +-5), so that the
    learning rate does not depend on the reward's scale. ``argmax()`` is the final pick. The state (logits,
    baseline, running moments, numpy RNG) is JSON-able: a checkpoint holds it and a resumed run samples what the
    uninterrupted one would have. (The LSTM controllers of ``graphmill.search.strategies`` condition each decision
    on the previous ones; AutoHAS's distributions are independent, which gives the final pick in closed form and
    per-choice probabilities to plot.)
    """

    def __init__(self, space: Space, *, seed: int = 0, lr: float = 0.05, entropy: float = 1e-3,
                 baseline_decay: float = 0.95) -> None:
        self.space = space
        self.decisions: list[tuple[str, Choice]] = []
        for path, p in space.params():
            if not isinstance(p, Choice):
                raise TypeError(f"the AutoHAS controller needs Choice parameters; {path} is {type(p).__name__}")
            self.decisions.append((path, p))
        self.index = {path: i for i, (path, _) in enumerate(self.decisions)}
        self.logits = [np.zeros(len(p.values)) for _, p in self.decisions]
        self.lr, self.entropy, self.baseline_decay = float(lr), float(entropy), float(baseline_decay)
        self.rng = np.random.default_rng([int(seed), 4242])
        self.baseline: float | None = None
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def probs(self) -> list[np.ndarray]:
        out = []
        for z in self.logits:
            e = np.exp(z - z.max())
            out.append(e / e.sum())
        return out

    def _config(self, actions: list[int]) -> dict:
        return self.space.build(lambda path, p: p.values[actions[self.index[path]]])

    def sample(self) -> tuple[dict, list[int]]:
        actions = [int(min(len(p) - 1, np.searchsorted(np.cumsum(p), self.rng.random(), side="right")))
                   for p in self.probs()]
        return self._config(actions), actions

    def argmax(self) -> dict:
        """The most probable configuration (ties: the first candidate)."""
        return self._config([int(np.argmax(p)) for p in self.probs()])

    def probability(self, config: Mapping[str, Any]) -> float:
        """The controller's probability of ``config``."""
        acts = self.actions(config)
        return float(np.prod([p[a] for p, a in zip(self.probs(), acts)]))

    def actions(self, config: Mapping[str, Any]) -> list[int]:
        out = []
        for path, p in self.decisions:
            v: Any = config
            for n in path.split("."):
                v = v[n]
            out.append(p.index(v))
        return out

    def update(self, actions: list[int], reward: float) -> float:
        """One REINFORCE step for ``actions`` scored ``reward``; returns the advantage used."""
        b = reward if self.baseline is None else self.baseline
        std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        adv = 0.0 if std < 1e-12 else max(-5.0, min(5.0, (reward - b) / std))
        for z, p, a in zip(self.logits, self.probs(), actions):
            grad = -adv * p
            grad[a] += adv
            logp = np.log(p + 1e-12)
            grad += self.entropy * (-p * (logp - (p * logp).sum()))  # d(entropy)/d(logits)
            z += self.lr * grad
        self.n += 1
        delta = reward - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (reward - self.mean)
        self.baseline = reward if self.baseline is None else \
            self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        return adv

    def state_dict(self) -> dict:
        return {"logits": [z.tolist() for z in self.logits], "rng": rng_state(self.rng), "baseline": self.baseline,
                "n": self.n, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.logits = [np.asarray(z, dtype=np.float64) for z in state["logits"]]
        self.rng = rng_from_state(dict(state["rng"]))
        self.baseline, self.n = state["baseline"], int(state["n"])
        self.mean, self.m2 = float(state["mean"]), float(state["m2"])


class JointController:
    """The controller of the joint space ``{"arch": ..., "hp": ...}``: one ``Controller`` per part, each with its
    own baseline, so that each part learns from its own reward (``search_step``): the architecture from W*'s
    validation accuracy, the hyper-parameters from the improvement their temporary update made on the same
    validation batch. Same interface as ``Controller`` (``decisions`` and ``probs`` over prefixed paths)."""

    PARTS = ("arch", "hp")

    def __init__(self, space: Space, **kwargs: Any) -> None:
        seed = int(kwargs.pop("seed", 0))
        self.parts = {name: Controller(space[name], seed=seed + 7919 * i, **kwargs)
                      for i, name in enumerate(self.PARTS)}
        self.decisions = [(f"{name}.{path}", p) for name in self.PARTS for path, p in self.parts[name].decisions]

    def probs(self) -> list[np.ndarray]:
        return [p for name in self.PARTS for p in self.parts[name].probs()]

    def sample(self) -> tuple[dict, dict]:
        config, actions = {}, {}
        for name in self.PARTS:
            config[name], actions[name] = self.parts[name].sample()
        return config, actions

    def argmax(self) -> dict:
        return {name: self.parts[name].argmax() for name in self.PARTS}

    def probability(self, config: Mapping[str, Any]) -> float:
        return float(np.prod([self.parts[name].probability(config[name]) for name in self.PARTS]))

    def update(self, actions: Mapping[str, list[int]], rewards: Mapping[str, float]) -> dict:
        return {name: self.parts[name].update(actions[name], float(rewards[name])) for name in self.PARTS}

    def state_dict(self) -> dict:
        return {name: self.parts[name].state_dict() for name in self.PARTS}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name in self.PARTS:
            self.parts[name].load_state_dict(state[name])


def decay_loss(module, spec, arch: Mapping[str, Any]):
    """``0.5 * sum(w**2)`` over the convolution and classifier weights the child ``arch`` uses (its slices:
    weight decay of the child alone, never of the weights only other children use)."""
    from graphmill.search.oneshot.weights import child_slices

    return 0.5 * sum((module.tensor(n)[s] ** 2).sum() for n, s in child_slices(spec, arch).items() if n.endswith(".w"))


def sgd(module):
    import torch

    return torch.optim.SGD(module.parameters(), lr=0.1, momentum=MOMENTUM)


def train_step(module, optimizer, spec, arch: Mapping[str, Any], hp: Mapping[str, Any], data: Mapping[int, Any],
               generator, batch: int, lr: float) -> float:
    """One SGD step of child ``arch`` with hyper-parameters ``hp`` (``weight_decay``; ``augment``: RandAugment's
    magnitude) at learning rate ``lr`` on a batch drawn with ``generator``; the loss (cross-entropy + decay)."""
    import torch
    import torch.nn.functional as F

    from graphmill.backends.torch.training import rand_augment

    d = data[arch["resolution"]]
    idx = torch.randint(len(d.y_train), (batch,), generator=generator)
    x = rand_augment(d.x_train[idx], float(hp["augment"]))
    for g in optimizer.param_groups:
        g["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(module(x, arch), d.y_train[idx])
    if hp["weight_decay"]:
        loss = loss + float(hp["weight_decay"]) * decay_loss(module, spec, arch)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


UPDATES = ("sandwich", "sampled")


def _copy_state(module, optimizer) -> tuple[list, dict]:
    saved = [p.detach().clone() for p in module.parameters()]
    return saved, _cloned(optimizer.state)


def _cloned(state) -> dict:
    """An optimizer state's per-parameter entries with their tensors copied."""
    import torch

    return {k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in v.items()} for k, v in state.items()}


def _restore_state(module, optimizer, saved: list, moments: dict) -> None:
    import torch

    with torch.no_grad():
        for p, s in zip(module.parameters(), saved):
            p.copy_(s)
    optimizer.state.clear()
    # copies: SGD updates its momentum in place, so handing it the saved tensors let the next step change the
    # copy that a second restore (of a diverged shared step) reads back (an outside check)
    optimizer.state.update(_cloned(moments))


def _shared_step(module, optimizer, spec, hp: Mapping[str, Any], data: Mapping[int, Any], generator, batch: int,
                 lr: float, step: int, copy: tuple[list, dict] | None = None, largest_every: int = 2
                 ) -> tuple[str, float]:
    """The shared weights' own SGD step under ``update="sandwich"``: the largest child on every
    ``largest_every``-th ``step`` (``step % largest_every == largest_every - 1``: the odd steps at 2), a
    uniformly drawn child on the others, with the sampled hyper-parameters ``hp`` at ``lr``; a diverged step is
    undone (from ``copy``, taken here when not given). Which child trained, and its loss."""
    from graphmill.search.oneshot.train import sample_child

    largest = step % largest_every == largest_every - 1
    if copy is None:
        copy = _copy_state(module, optimizer)
    child = spec.largest() if largest else sample_child(spec, generator)
    loss = train_step(module, optimizer, spec, child, hp, data, generator, batch, lr)
    if math.isfinite(loss) and not _weights_finite(module):  # the step itself overflowed: diverged as well
        loss = math.inf
    if not math.isfinite(loss):
        _restore_state(module, optimizer, *copy)
    return ("largest" if largest else "uniform"), loss


def _weights_finite(module) -> bool:
    """Whether every shared weight is finite, from one check of the per-tensor sums (an inf or nan makes its
    sum non-finite; a finite tensor whose sum overflows holds weights above 1e33, diverged all the same): a
    check per tensor cost 5x more, on every step."""
    import torch

    with torch.no_grad():
        return bool(torch.isfinite(torch.stack([p.sum() for p in module.parameters()])).all())


def search_step(module, optimizer, controller: JointController, spec, data: Mapping[int, Any], generator, *,
                batch: int, val_batch: int, temp_steps: int, learn: bool, update: str = "sandwich",
                step: int = 0, largest_every: int = 2) -> dict:
    """One AutoHAS step: sample (architecture, hyper-parameters); ``temp_steps`` SGD steps with them from the
    shared weights W (a copy is kept) give the temporary weights W*; the controller is rewarded on one
    validation batch: the architecture by W*'s accuracy (AutoHAS's reward), the hyper-parameters by what their
    update gained there, ``loss(W) - loss(W*)`` (the same batch and child before and after: the architecture's
    own level and the batch's difficulty cancel, which the hyper-parameters' small effect on one step needs to
    be visible at all). A diverged update (non-finite loss or logits) scores 0 / the worst gain.

    What W itself learns is ``update``:

    * ``"sandwich"`` (the default): the temporary update is undone and W takes its own step, of the largest
      child on every ``largest_every``-th step (``step``'s parity at 2) and of a uniformly drawn child on the
      others, with the sampled
      hyper-parameters. Why: when W <- W*, the children the controller samples most are the ones W trains, so
      early luck becomes a high reward (at 300 steps the picks had 8-pixel inputs where every good child has
      12-16); a controller-independent W scores every child on the same footing, and the largest child's steps
      (BigNAS's sandwich rule spread over two steps) train the weights every child slices. While the controller
      does not learn (``learn`` false: the warm-up) nothing is scored, W only steps: a reward nobody reads is
      not computed.
    * ``"sampled"``: W <- W* (AutoHAS as published: the temporary update is the shared weights' step, scoring
      adds two validation forwards).

    BatchNormalization uses the validation batch's statistics (the shared weights hold no statistics of the
    sampled child; recalibrating per step would cost more than the step)."""
    import torch
    import torch.nn.functional as F

    config, actions = controller.sample()
    arch, hp = config["arch"], config["hp"]
    if update == "sandwich" and not learn:
        trained, shared = _shared_step(module, optimizer, spec, hp, data, generator, batch, float(hp["lr"]), step,
                                       largest_every=largest_every)
        return {"config": config, "reward": None, "gain": None, "loss": None, "advantage": {}, "diverged": False,
                "trained": trained, **_shared_row(shared), "train_steps": 1, "val_forwards": 0}
    d = data[arch["resolution"]]
    vidx = torch.randint(len(d.y_val), (val_batch,), generator=generator)
    xv, yv = d.x_val[vidx], d.y_val[vidx]
    with torch.no_grad():
        before = float(F.cross_entropy(module(xv, arch), yv))
    copy = _copy_state(module, optimizer)
    losses = [train_step(module, optimizer, spec, arch, hp, data, generator, batch, float(hp["lr"]))
              for _ in range(temp_steps)]
    finite = all(math.isfinite(v) for v in losses)
    if finite:
        with torch.no_grad():  # W* diverged on its last step shows as non-finite logits
            logits = module(xv, arch)
        finite = bool(torch.isfinite(logits).all())
    if finite:
        reward = float((logits.argmax(1) == yv).float().mean())
        gain = before - float(F.cross_entropy(logits, yv))
    else:
        reward, gain = 0.0, -max(before, 1.0)
    trained, steps, shared_row = "sampled", temp_steps, {}
    if update == "sandwich" or not finite:
        _restore_state(module, optimizer, *copy)
    if update == "sandwich":  # a diverged sample's rate is not W's to take: a safe one instead
        trained, shared = _shared_step(module, optimizer, spec, hp, data, generator, batch,
                                       float(hp["lr"]) if finite else SAFE_LR, step, copy, largest_every)
        steps += 1
        shared_row = _shared_row(shared)
    adv = controller.update(actions, {"arch": reward, "hp": gain}) if learn else {}
    return {"config": config, "reward": reward, "gain": gain, "loss": float(np.mean(losses)) if finite else None,
            "advantage": adv, "diverged": not finite, "trained": trained, **shared_row, "train_steps": steps,
            "val_forwards": 2}


def _shared_row(loss: float) -> dict:
    """The history fields of the shared weights' own step: its loss, or None and ``shared_diverged`` when it
    diverged and was undone (W then skips that step; a later step draws its own batch)."""
    finite = math.isfinite(loss)
    return {"shared_loss": loss if finite else None, "shared_diverged": not finite}


def cosine(lr: float, k: int, steps: int) -> float:
    return lr * 0.5 * (1 + math.cos(math.pi * k / steps))


class ChildTrainer:
    """Child ``arch`` trained alone with ``hp`` for ``steps`` SGD steps (cosine schedule from ``hp["lr"]``),
    starting from ``weights`` (the supernet's full-shape weights: fresh ``init_weights`` for a run from scratch,
    the search's shared weights to fine-tune); resumable (``state_dict``)."""

    def __init__(self, spec, arch: Mapping[str, Any], hp: Mapping[str, Any], weights: Mapping[str, np.ndarray], *,
                 steps: int, batch: int, seed: int, data: Mapping[int, Any] | None = None) -> None:
        import torch

        from graphmill.search.oneshot.torchnet import SupernetModule
        from graphmill.search.oneshot.train import digits_split

        self.spec, self.arch, self.hp = spec, spec.check(arch), dict(hp)
        self.steps, self.batch = int(steps), int(batch)
        self.data = data if data is not None else {arch["resolution"]: digits_split(arch["resolution"],
                                                                                    spec.in_channels)}
        self.module = SupernetModule(spec, weights)
        self.module.train()
        self.optimizer = sgd(self.module)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.step_no = 0
        self.images = 0

    def step(self) -> float:
        loss = train_step(self.module, self.optimizer, self.spec, self.arch, self.hp, self.data, self.generator,
                          self.batch, cosine(float(self.hp["lr"]), self.step_no, self.steps))
        self.step_no += 1
        self.images += self.batch
        return loss

    def evaluate(self, calibrate: int = 256) -> dict[str, float]:
        """BN statistics re-estimated on training images, then validation and test accuracy."""
        from graphmill.search.oneshot.train import accuracy, calibrate as recalibrate

        d = self.data[self.arch["resolution"]]
        recalibrate(self.module, self.arch, d, calibrate)
        out = {"val_accuracy": accuracy(self.module, self.arch, d.x_val, d.y_val),
               "test_accuracy": accuracy(self.module, self.arch, d.x_test, d.y_test)}
        self.module.train()
        return out

    def graph(self):
        """The trained child as a standard-ONNX ``ir.Graph`` (after ``evaluate``: calibrated statistics)."""
        from graphmill.search.oneshot import build_graph
        from graphmill.search.oneshot.weights import child_weights

        full = self.module.weights()
        return build_graph(self.spec, self.arch, dict(child_weights(self.spec, self.arch, full)), name="autohas_best")

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "step": self.step_no, "images": self.images}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step_no, self.images = int(state["step"]), int(state["images"])


def train_alone(spec, arch: Mapping[str, Any], hp: Mapping[str, Any], *, steps: int, batch: int, seed: int,
                weights: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
    """Train child ``arch`` with ``hp`` from scratch (or from ``weights``); its accuracies, images and CPU time."""
    import torch

    from graphmill.search.oneshot import init_weights

    t0 = time.process_time()
    torch.manual_seed(seed)  # RandAugment's draws
    tr = ChildTrainer(spec, arch, hp, init_weights(spec, seed) if weights is None else weights, steps=steps,
                      batch=batch, seed=seed)
    loss = float("nan")
    for _ in range(steps):
        loss = tr.step()
    out = tr.evaluate()
    return {**out, "loss": loss, "train_images": tr.images, "cpu_seconds": time.process_time() - t0}
