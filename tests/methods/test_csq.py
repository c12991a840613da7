"""CSQ: loss gradient, hash centres (Hadamard rows / Bernoulli), seeded reproducibility."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from methods.csq import csq_loss, hash_centers


def pairwise_hamming(centers):
    distances = (centers[:, None, :] != centers[None, :, :]).sum(-1)
    return distances[np.triu_indices(len(centers), 1)]


def test_loss_gradient_matches_finite_differences():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(4, 8, dtype=torch.float64, generator=generator, requires_grad=True)
    centers = torch.tensor(hash_centers(3, 8, np.random.default_rng(0))[0], dtype=torch.float64)
    batch_centers = centers[torch.tensor([0, 2, 1, 0])]
    assert gradcheck(lambda x: csq_loss(x, batch_centers, 1e-4), (z,))


def test_loss_equals_reference_bce_form():
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(6, 8, dtype=torch.float64, generator=generator)
    c = torch.sign(torch.randn(6, 8, dtype=torch.float64, generator=generator))
    u = torch.tanh(z)
    expected = F.binary_cross_entropy(0.5 * (u + 1), 0.5 * (c + 1)) + 1e-4 * ((u.abs() - 1) ** 2).mean()
    assert abs(csq_loss(z, c, 1e-4).item() - expected.item()) < 1e-10
    # saturated, correct outputs: finite and ~0
    assert csq_loss(50 * c, c, 1e-4).item() < 1e-6


@pytest.mark.parametrize("n_bits,n_classes", [(8, 10), (24, 10), (32, 64), (48, 90), (64, 100), (96, 100)])
def test_hadamard_centres_are_half_length_apart(n_bits, n_classes):
    centers, kind = hash_centers(n_classes, n_bits, np.random.default_rng(0))
    assert kind == "hadamard"
    assert centers.shape == (n_classes, n_bits)
    assert set(np.unique(centers).tolist()) == {-1, 1}
    distances = pairwise_hamming(centers)
    # rows of [H; -H]: K/2 apart, except a row and its negation (K apart)
    assert set(np.unique(distances).tolist()) <= {n_bits // 2, n_bits}
    assert np.sum(distances == n_bits) == max(0, n_classes - n_bits)


@pytest.mark.parametrize("n_bits,n_classes", [(32, 100), (16, 40), (30, 10)])
def test_bernoulli_centres_are_balanced_and_far_apart(n_bits, n_classes):
    centers, kind = hash_centers(n_classes, n_bits, np.random.default_rng(3))
    assert kind == "bernoulli"  # 2K < C, or no Hadamard matrix of order 30
    assert centers.shape == (n_classes, n_bits)
    np.testing.assert_array_equal((centers == -1).sum(axis=1), n_bits // 2)
    assert pairwise_hamming(centers).min() > n_bits / 4
    again, _ = hash_centers(n_classes, n_bits, np.random.default_rng(3))
    np.testing.assert_array_equal(centers, again)
    other, _ = hash_centers(n_classes, n_bits, np.random.default_rng(4))
    assert not np.array_equal(centers, other)


# ---------------------------------------------------------------------------- training
SHORT_RUN = dict(settings="features", learning_rate=1e-3, n_epochs=30, n_threads=1)


def test_learns_on_long_tail_features(long_tail_benchmark):
    from deep_baseline_checks import benchmark_map, lsh_map

    from methods.csq import CSQ

    method = CSQ(n_bits=64, random_state=0, **SHORT_RUN)
    deep_map = benchmark_map(method, long_tail_benchmark)
    assert deep_map > lsh_map(long_tail_benchmark, 64) + 0.1
    losses = method.training_log_["loss"]
    assert len(losses) == 30 and losses[-1] < 0.8 * losses[0]
    # 20 classes <= 2 * 64 bits: Hadamard centres, stored with the model
    assert method.centers_kind_ == "hadamard"
    assert method.centers_.shape == (20, 64) and method.centers_.dtype == np.int8
    # training items are pulled towards their centre: most codes lie nearer their own centre
    X, y = long_tail_benchmark.features, long_tail_benchmark.labels
    train = long_tail_benchmark.train_index
    codes = method.encode(X[train]).astype(np.int64)
    nearest = np.argmax(codes @ method.centers_.T.astype(np.int64), axis=1)
    assert np.mean(nearest == y[train]) > 0.6


def test_fitted_centres_are_seeded(clustered_features):
    from methods.csq import CSQ

    X, y = clustered_features  # 10 classes
    params = dict(n_bits=4, settings="features", n_epochs=1, n_threads=1)  # 2K = 8 < 10: Bernoulli
    first = CSQ(random_state=5, **params).fit(X, y)
    again = CSQ(random_state=5, **params).fit(X, y)
    other = CSQ(random_state=6, **params).fit(X, y)
    assert first.centers_kind_ == "bernoulli" and first.centers_.shape == (10, 4)
    np.testing.assert_array_equal(first.centers_, again.centers_)
    assert not np.array_equal(first.centers_, other.centers_)
