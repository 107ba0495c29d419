"""Memory-optimized contrastive training (BASIC, Pham et al. 2021, section 4: gradient accumulation of a
contrastive loss), with exact gradients.

A two-tower contrastive loss over a batch of B pairs couples every example with every other (a B x B
similarity matrix), so plain gradient accumulation over micro-batches computes a different loss. BASIC's
way, implemented by ``contrastive_backward``:

1. embed the whole batch in micro-batches of b **without autograd** (no activations kept), both towers;
2. compute the loss on the B x D embeddings with autograd and its gradient with respect to them (cheap:
   B x D and B x B numbers, no network);
3. re-run each micro-batch with autograd and back-propagate its slice of that gradient
   (``z.backward(dL/dz[slice])``); the parameter gradients accumulate to exactly the full-batch ones.

Peak activation memory is that of one micro-batch of b, not of B. The random state is saved before each
micro-batch of step 1 and restored for its re-run in step 3, so dropout draws the same masks twice and the
gradients are those of the function step 1 evaluated. The torch backend's BatchNormalization uses running
statistics (no batch dependence), so micro-batching changes nothing there either; a plain torch tower with
``nn.BatchNorm`` in training mode normalizes each micro-batch by its own statistics, which no micro-batching
can reproduce exactly (BASIC's caveat): put such layers in eval mode, or accept that difference.

The loss (``info_nce``) is the symmetric InfoNCE of CLIP/ALIGN/BASIC: L2-normalized embeddings, logits
``za @ zb.T / temperature``, cross-entropy to the diagonal in both directions, averaged. The two towers may
be one module (two augmented views of an image, SimCLR-style) or two (image and "text").

Remainder rule: none. A micro-batch must divide the batch; anything else is refused as bad input.
"""

from __future__ import annotations

from typing import Callable

from graphmill.util.errors import UserInputError

from .data import rand_augment
from .loop import first_output, training_loop
from .progressive import Stage


def info_nce(za, zb, temperature: float = 0.1):
    """Symmetric InfoNCE of paired embeddings ``za``, ``zb`` (``[B, D]``): pair i is the positive of row i."""
    import torch
    import torch.nn.functional as F

    za, zb = F.normalize(za, dim=1), F.normalize(zb, dim=1)
    logits = za @ zb.t() / temperature
    target = torch.arange(za.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def check_micro_batch(batch: int, micro_batch: int | None) -> None:
    """Refuse a batch or micro-batch that is not a positive integer, a batch of one pair (no negatives), or a
    micro-batch that does not divide the batch (there is no remainder rule), in one line."""
    for name, v in (("--batch", batch), ("--micro-batch", micro_batch)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise UserInputError(f"{name} {v!r}: must be an integer >= 1")
    if batch == 1:  # InfoNCE's negatives are the batch's other pairs: one pair has a loss of 0 and no gradient
        raise UserInputError("--batch 1: contrastive training needs at least 2 pairs per batch (each pair's "
                             "negatives are the others; with one the loss is 0 and nothing trains)")
    if micro_batch is not None and batch % micro_batch:
        raise UserInputError(f"--micro-batch {micro_batch} does not divide --batch {batch} (remainder "
                             f"{batch % micro_batch}); choose a divisor, e.g. {largest_divisor(batch, micro_batch)}")


def largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` not above ``at_most`` (for the refusal's suggestion)."""
    return next(d for d in range(min(n, at_most), 0, -1) if n % d == 0)


def _embed_no_grad(tower, x, b: int):
    import torch

    states, outs = [], []
    with torch.no_grad():
        for chunk in x.split(b):
            states.append(torch.get_rng_state())
            outs.append(first_output(tower(chunk)))
    return torch.cat(outs), states


def contrastive_backward(tower_a, tower_b, xa, xb, *, micro_batch: int | None = None, temperature: float = 0.1,
                         loss_fn: Callable | None = None) -> float:
    """Accumulate into the towers' ``.grad`` the gradient of ``loss_fn(tower_a(xa), tower_b(xb))`` (default
    ``info_nce`` at ``temperature``) over the whole batch; returns the loss. ``micro_batch`` None runs the
    batch at once with autograd; otherwise the three steps of the module docstring, in micro-batches that
    must divide the batch."""
    import torch

    loss_fn = loss_fn or (lambda a, b: info_nce(a, b, temperature))
    n = xa.shape[0]
    if xb.shape[0] != n:
        raise UserInputError(f"the two towers' batches differ ({n} and {xb.shape[0]} examples)")
    check_micro_batch(n, micro_batch)
    if micro_batch is None:
        loss = loss_fn(first_output(tower_a(xa)), first_output(tower_b(xb)))
        loss.backward()
        return float(loss.detach())
    za, states_a = _embed_no_grad(tower_a, xa, micro_batch)
    zb, states_b = _embed_no_grad(tower_b, xb, micro_batch)
    after = torch.get_rng_state()
    za.requires_grad_(True)
    zb.requires_grad_(True)
    loss = loss_fn(za, zb)
    ga, gb = torch.autograd.grad(loss, (za, zb))
    try:
        for tower, x, g, states in ((tower_a, xa, ga, states_a), (tower_b, xb, gb, states_b)):
            for chunk, g_chunk, state in zip(x.split(micro_batch), g.split(micro_batch), states):
                torch.set_rng_state(state)
                first_output(tower(chunk)).backward(g_chunk)
    finally:
        torch.set_rng_state(after)
    return float(loss.detach())


def knn_accuracy(module, x_train, y_train, x_test, y_test, *, chunk: int = 512) -> float:
    """Held-out accuracy of 1-nearest-neighbour (cosine) classification in ``module``'s embedding space: how
    well the contrastive embedding separates the classes it never saw as labels."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        def embed(x):
            return F.normalize(torch.cat([first_output(module(x[i:i + chunk])) for i in range(0, len(x), chunk)]),
                               dim=1)
        et, eq = embed(x_train), embed(x_test)
        pred = y_train[(eq @ et.t()).argmax(1)]
    # a count over the test set: exact, not float32; no test images, no accuracy (as the mean of nothing was)
    return int((pred == y_test).sum()) / len(y_test) if len(y_test) else float("nan")


def train_contrastive(module, data: Callable[[int], tuple], stage: Stage, *, batch: int, micro_batch: int | None,
                      lr: float, seed: int, temperature: float = 0.1, log_every: int | None = None,
                      config: dict | None = None, checkpoint=None, resume: bool = False, progress=None):
    """Contrastive training of one tower ``module`` on two RandAugment views (magnitude ``stage.magnitude``)
    of ``batch`` images drawn with replacement from ``data(stage.size)``; the loss and gradient through
    ``contrastive_backward`` in micro-batches of ``micro_batch`` (None: the whole batch at once). Metric:
    ``knn_accuracy`` on the held-out fifth. Returns the ``LoopResult``."""
    import torch

    check_micro_batch(batch, micro_batch)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    xtr, ytr, xte, yte = data(stage.size)
    log_every = log_every or max(1, -(-len(ytr) // batch))

    def step(st: Stage) -> float:
        x = xtr[torch.randint(0, len(ytr), (batch,), generator=gen)]
        xa, xb = rand_augment(x, st.magnitude), rand_augment(x, st.magnitude)
        optimizer.zero_grad()
        loss = contrastive_backward(module, module, xa, xb, micro_batch=micro_batch, temperature=temperature)
        optimizer.step()
        return loss

    def evaluate() -> dict:
        return {"knn_accuracy": knn_accuracy(module, xtr, ytr, xte, yte)}

    return training_loop(module, optimizer, [stage], step, evaluate, log_every=log_every, generator=gen,
                         config=config or {}, checkpoint=checkpoint, resume=resume, progress=progress,
                         metrics=("knn_accuracy",))
