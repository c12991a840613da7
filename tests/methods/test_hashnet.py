"""HashNet: weighted pairwise loss gradient, class-imbalance weights, continuation schedule."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from methods.hashnet import continuation_scale, hashnet_loss


def test_loss_gradient_matches_finite_differences():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(5, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 2, 1])
    assert gradcheck(lambda x: hashnet_loss(torch.tanh(2.0 * x), labels, 10.0 / 6), (z,))


def test_weights_balance_similar_and_dissimilar_pairs():
    generator = torch.Generator().manual_seed(1)
    h = torch.tanh(torch.randn(4, 8, dtype=torch.float64, generator=generator))
    labels = torch.tensor([0, 0, 1, 2])
    alpha = 10.0 / 8
    logits = alpha * h @ h.T
    similar = [(0, 1), (1, 0)]
    dissimilar = [(i, j) for i in range(4) for j in range(4) if i != j and (i, j) not in similar]
    pos = sum(F.softplus(logits[i, j]) - logits[i, j] for i, j in similar) / len(similar)
    neg = sum(F.softplus(logits[i, j]) for i, j in dissimilar) / len(dissimilar)
    # S/S1 and S/S0 weights, divided by S: mean over similar pairs + mean over dissimilar pairs
    assert abs(hashnet_loss(h, labels, alpha).item() - (pos + neg).item()) < 1e-12


def test_batch_without_similar_pairs_uses_dissimilar_mean_only():
    h = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 2])
    logits = h @ h.T
    mask = ~torch.eye(3, dtype=torch.bool)
    expected = F.softplus(logits[mask]).mean()
    assert abs(hashnet_loss(h, labels, 1.0).item() - expected.item()) < 1e-12


def test_continuation_scale_steps_every_200_iterations():
    assert continuation_scale(0) == 1.0
    assert continuation_scale(199) == 1.0
    assert continuation_scale(200) == math.sqrt(1 + 0.005 * 200)
    assert continuation_scale(399) == math.sqrt(2.0)
    assert continuation_scale(10000) == math.sqrt(51.0)


# ---------------------------------------------------------------------------- training
SHORT_RUN = dict(settings="features", learning_rate=1e-3, n_epochs=30, n_threads=1)


def test_learns_on_long_tail_features(long_tail_benchmark):
    from deep_baseline_checks import benchmark_map, lsh_map

    from methods.hashnet import HashNet

    method = HashNet(n_bits=64, random_state=0, **SHORT_RUN)
    deep_map = benchmark_map(method, long_tail_benchmark)
    assert deep_map > lsh_map(long_tail_benchmark, 64) + 0.1
    losses = method.training_log_["loss"]
    assert len(losses) == 30 and losses[-1] < 0.9 * losses[0]
    # 385 items, batch 32: 13 steps per epoch; beta follows the stepped schedule
    betas = method.training_log_["continuation_beta"]
    assert betas[0] == 1.0
    assert betas[-1] == continuation_scale(30 * 13 - 1)
    assert method.head_.beta == betas[-1]


def test_sigmoid_scale_defaults_to_ten_over_bits():
    from methods.hashnet import HashNet

    assert HashNet(n_bits=32)._sigmoid_scale() == 10.0 / 32
    assert HashNet(n_bits=32, sigmoid_scale=0.5)._sigmoid_scale() == 0.5
