"""Memory-optimized contrastive training (BASIC): micro-batched gradients against full-batch autograd.

References: full-batch autograd of the same loss on models this file builds itself (never the zoo's), an
independent numpy InfoNCE, and peak RSS of child processes read from outside (the child's own VmHWM in /proc).
"""

from __future__ import annotations

import os
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from graphmill.backends.torch.training import contrastive_backward, info_nce
from graphmill.errors import UserInputError
from graphmill.util.processes import peak_rss_mib


def _tower(seed: int, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 8, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(dropout), nn.Linear(32, 16))


def _text_tower(seed: int) -> nn.Module:  # the second tower of a two-tower model: a bag of token features
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 20), nn.GELU(), nn.Linear(20, 16))


def _grads(*mods) -> list[torch.Tensor]:
    return [p.grad.clone() for m in mods for p in m.parameters()]


def _close(a: list[torch.Tensor], b: list[torch.Tensor], rel: float = 1e-5) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        scale = float(y.abs().max())
        assert scale > 0
        assert float((x - y).abs().max()) <= rel * scale, (float((x - y).abs().max()), scale)


@pytest.mark.parametrize("micro", [1, 5, 10, 30])
def test_two_tower_micro_batches_give_the_full_batch_gradient(micro):
    # reference: the same loss on the whole batch with plain autograd
    gen = torch.Generator().manual_seed(1)
    images, texts = torch.randn(30, 1, 9, 9, generator=gen), torch.randn(30, 12, generator=gen)
    ref_a, ref_b = _tower(0), _text_tower(1)
    loss_ref = info_nce(ref_a(images), ref_b(texts), 0.07)
    loss_ref.backward()
    a, b = _tower(0), _text_tower(1)
    loss = contrastive_backward(a, b, images, texts, micro_batch=micro, temperature=0.07)
    assert abs(loss - float(loss_ref.detach())) <= 1e-6 * abs(float(loss_ref))
    _close(_grads(a, b), _grads(ref_a, ref_b))


def test_one_tower_two_views_accumulates_both_views():
    gen = torch.Generator().manual_seed(2)
    va, vb = torch.randn(16, 1, 8, 8, generator=gen), torch.randn(16, 1, 8, 8, generator=gen)
    ref = _tower(3)
    info_nce(ref(va), ref(vb)).backward()
    m = _tower(3)
    contrastive_backward(m, m, va, vb, micro_batch=4)
    _close(_grads(m), _grads(ref))


def test_dropout_masks_are_replayed_in_the_autograd_pass():
    # With dropout on, the micro-batched gradient must be that of the function its first pass evaluated:
    # reference = the same micro-batch forwards, in the same order from the same seed, all kept in autograd.
    gen = torch.Generator().manual_seed(4)
    xa, xb = torch.randn(12, 1, 8, 8, generator=gen), torch.randn(12, 1, 8, 8, generator=gen)
    ref_a, ref_b = _tower(5, dropout=0.5), _tower(6, dropout=0.5)
    torch.manual_seed(123)
    za = torch.cat([ref_a(c) for c in xa.split(3)])
    zb = torch.cat([ref_b(c) for c in xb.split(3)])
    info_nce(za, zb).backward()
    a, b = _tower(5, dropout=0.5), _tower(6, dropout=0.5)
    torch.manual_seed(123)
    contrastive_backward(a, b, xa, xb, micro_batch=3)
    _close(_grads(a, b), _grads(ref_a, ref_b))


def test_graph_module_tower_from_the_ir():
    # a graphmill graph lowered by to_torch as the tower (held-out: a zoo model this file does not train)
    from graphmill.backends.torch import to_torch
    from graphmill.frontend import zoo

    g = zoo.build("mobilenet_v2", width=0.25, depth=0.3, resolution=32, num_classes=8, seed=3)
    gen = torch.Generator().manual_seed(7)
    xa, xb = torch.randn(8, 3, 32, 32, generator=gen), torch.randn(8, 3, 32, 32, generator=gen)
    ref = to_torch(g.copy())
    info_nce(ref(xa), ref(xb)).backward()
    m = to_torch(g.copy())
    contrastive_backward(m, m, xa, xb, micro_batch=2)
    _close(_grads(m), _grads(ref))


def test_info_nce_matches_an_independent_numpy_computation():
    gen = np.random.default_rng(0)
    a, b = gen.normal(size=(5, 4)), gen.normal(size=(5, 4))
    na = a / np.linalg.norm(a, axis=1, keepdims=True)
    nb = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = na @ nb.T / 0.5

    def ce_diag(m):
        m = m - m.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(m).sum(axis=1)) - np.diag(m)))
    want = (ce_diag(logits) + ce_diag(logits.T)) / 2
    got = float(info_nce(torch.tensor(a), torch.tensor(b), 0.5))
    assert abs(got - want) < 1e-12


@pytest.mark.parametrize("batch,micro", [(10, 3), (64, 48), (7, 0)])
def test_a_micro_batch_that_does_not_divide_the_batch_is_refused(batch, micro):
    m = _tower(0)
    x = torch.randn(batch, 1, 8, 8)
    with pytest.raises(UserInputError, match="micro-batch"):
        contrastive_backward(m, m, x, x, micro_batch=micro)
    assert all(p.grad is None for p in m.parameters())  # refused before any work


CHILD = textwrap.dedent("""
    import sys, torch
    from torch import nn
    from graphmill.backends.torch.training import contrastive_backward
    torch.set_num_threads(1)
    B, b = int(sys.argv[1]), (int(sys.argv[2]) or None)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 16))
    x = torch.randn(B, 1, 32, 32)
    contrastive_backward(m, m, x, x.flip(3), micro_batch=b)
""")


def _peak_rss_mb(*settings: tuple[int, int]) -> list[float]:
    """Peak RSS (MB) of child processes, one per (batch, micro-batch) setting, each running one contrastive
    step, read from outside: the child's own VmHWM in /proc (graphmill.util.processes; ru_maxrss would carry
    the test runner's own high-water mark into every child)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return [peak_rss_mib(CHILD, [str(B), str(b)], env=env)[0] for B, b in settings]


@pytest.mark.slow
@pytest.mark.xdist_group("processes")  # child processes' peak memory
def test_peak_memory_grows_with_the_micro_batch_not_the_batch():
    # A full-batch step keeps ~4 activations of 16x32x32 floats per example and view for the backward
    # (~0.5 MB per example: ~90-140 MB at B=256, as the allocator goes). Micro-batched, B=1024 costs only its
    # inputs and embeddings beyond one micro-batch of 16 (~10-20 MB), so it must peak below the full-batch step
    # of a batch 4x smaller; a step that kept B's activations would peak ~400 MB above it.
    micro_large, full_small = _peak_rss_mb((1024, 16), (256, 0))
    assert micro_large + 20 < full_small, (micro_large, full_small)


def test_knn_accuracy_is_the_exact_fraction_of_the_test_set():
    """Reported at float32 precision it was 0.44568246603012085 for 160 of 359 (an outside check). Reference:
    Python's 160 / 359 for a nearest-neighbour rule whose answer is known by construction (each test point is a
    training point; 160 of them keep its label)."""
    from graphmill.backends.torch.training.contrastive import knn_accuracy

    rng = np.random.default_rng(0)
    x_train = torch.tensor(rng.standard_normal((359, 8)))
    y_train = torch.arange(359)
    y_test = torch.where(torch.arange(359) < 160, y_train, y_train + 1000)
    assert knn_accuracy(nn.Identity(), x_train, y_train, x_train.clone(), y_test) == 160 / 359
