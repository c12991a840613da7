"""DPSH: loss gradient, stable softplus, memory-bank training on long-tail features."""
from __future__ import annotations

import numpy as np
import torch
from torch.autograd import gradcheck

from methods.dpsh import dpsh_loss, pairwise_similarity


def tiny_problem(seed=0):
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.randn(4, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    bank = torch.randn(10, 6, dtype=torch.float64, generator=generator)
    similarity = pairwise_similarity(torch.tensor([0, 1, 0, 2]), torch.arange(10) % 4, torch.float64)
    return outputs, bank, similarity


def test_loss_gradient_matches_finite_differences():
    outputs, bank, similarity = tiny_problem()
    assert gradcheck(lambda u: dpsh_loss(u, bank, similarity, 10.0, 10), (outputs,))


def test_loss_value_by_hand():
    outputs, bank, similarity = tiny_problem(1)
    u = outputs.detach()
    theta = 0.5 * u @ bank.T
    likelihood = (np.log1p(np.exp(theta.numpy())) - similarity.numpy() * theta.numpy()).sum()
    quantization = ((np.where(u.numpy() >= 0, 1, -1) - u.numpy()) ** 2).sum()
    expected = (likelihood + 10.0 * quantization) / (10 * 4)
    assert abs(dpsh_loss(u, bank, similarity, 10.0, 10).item() - expected) < 1e-10


def test_loss_is_finite_for_huge_logits():
    outputs = torch.full((2, 4), 100.0, requires_grad=True)
    bank = torch.full((3, 4), 100.0)
    similarity = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    loss = dpsh_loss(outputs, bank, similarity, 10.0, 3)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(outputs.grad).all()
    # theta = 2e4: a dissimilar pair costs ~theta, a similar one ~0
    assert loss.item() > 1e3


# ---------------------------------------------------------------------------- training
SHORT_RUN = dict(settings="features", learning_rate=1e-3, n_epochs=30, n_threads=1)


def test_learns_on_long_tail_features(long_tail_benchmark):
    from deep_baseline_checks import benchmark_map, lsh_map

    from methods.dpsh import DPSH

    method = DPSH(n_bits=64, random_state=0, **SHORT_RUN)
    deep_map = benchmark_map(method, long_tail_benchmark)
    assert deep_map > lsh_map(long_tail_benchmark, 64) + 0.1
    losses = method.training_log_["loss"]
    assert len(losses) == 30 and losses[-1] < 0.9 * losses[0]
    assert not hasattr(method, "output_bank_")  # training state is dropped after fit


def test_paper_settings_are_the_default():
    from methods.dpsh import DPSH

    method = DPSH(mode="finetune")  # settings="auto": the paper's in finetune mode
    assert method.resolved_settings()["learning_rate"] == 1e-5
    assert method.resolved_settings()["n_epochs"] == 100
    assert method.quantization_weight == 10.0
