"""KNNH: exact blockwise kNN, the reference's in-place shrinkage, ITQ on the shrunk points (loss never
rises, early stop at the fixed point = all iterations), out-of-sample encoding, retrieval quality
against LSH and PCAH, and the named errors."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.metrics import evaluate
from methods.base import InvalidInputError, binarize
from methods.knnh import KNNH, knn_shrinkage
from methods.itq import ITQ
from methods.lsh import LSH
from methods.pcah import PCAH
from methods.shared_math import itq_rotation, k_nearest_neighbors


def brute_force_knn(X, k):
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=-1)
    np.fill_diagonal(D, np.inf)
    return np.argsort(D, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("block_size, n_threads", [(1, 1), (7, 2), (64, 3), (149, 1), (150, 2), (4096, 4)])
def test_blockwise_knn_equals_brute_force(block_size, n_threads):
    X = np.random.default_rng(1).standard_normal((150, 6))
    expected = brute_force_knn(X, 9)
    np.testing.assert_array_equal(k_nearest_neighbors(X, 9, block_size=block_size, n_threads=n_threads), expected)
    # every other point (k = n - 1): a full ordering, never the point itself
    everything = k_nearest_neighbors(X, 149, block_size=block_size, n_threads=n_threads)
    np.testing.assert_array_equal(everything, brute_force_knn(X, 149))


def test_knn_never_returns_the_point_itself_among_duplicates():
    X = np.repeat(np.random.default_rng(2).standard_normal((20, 3)), 3, axis=0)  # each point 3 times
    neighbors = k_nearest_neighbors(X, 2, block_size=5)
    rows = np.arange(len(X))
    assert not (neighbors == rows[:, None]).any()
    # the two nearest are the point's two duplicates (distance 0)
    np.testing.assert_array_equal(neighbors // 3, np.repeat(np.arange(20), 3)[:, None] * np.ones((1, 2), int))


def test_knn_rejects_impossible_k():
    X = np.zeros((5, 2))
    with pytest.raises(InvalidInputError, match="n_neighbors <= 4"):
        k_nearest_neighbors(X, 5)
    with pytest.raises(InvalidInputError, match="block_size"):
        k_nearest_neighbors(X, 2, block_size=0)
    with pytest.raises(InvalidInputError, match="n_threads"):
        k_nearest_neighbors(X, 2, n_threads=0)


def test_shrinkage_follows_the_reference_loop():
    rng = np.random.default_rng(3)
    V = rng.standard_normal((40, 4))
    neighbors = k_nearest_neighbors(V, 5)
    # the reference: for i = 1:n, V(i,:) = mean(V(idX(i,:),:)) -- overwriting as it goes
    expected = V.copy()
    for i in range(len(V)):
        expected[i] = expected[neighbors[i]].mean(axis=0)
    np.testing.assert_allclose(knn_shrinkage(V, neighbors, "in_place"), expected, rtol=0, atol=1e-12)
    simultaneous = knn_shrinkage(V, neighbors, "simultaneous")
    np.testing.assert_allclose(simultaneous, V[neighbors].mean(axis=1), rtol=0, atol=1e-12)
    # the two updates differ (later rows see shrunk neighbours in place), and the input is untouched
    assert np.abs(simultaneous - expected).max() > 1e-3
    assert knn_shrinkage(V, neighbors, "in_place", n_passes=0) is not V
    np.testing.assert_array_equal(knn_shrinkage(V, neighbors, "in_place", n_passes=0), V)
    # shrinkage pulls points together: the spread drops
    assert expected.var(axis=0).sum() < 0.6 * V.var(axis=0).sum()


def _shrunk_training_points(model, X):
    V = (X - model.mean_) @ model.pca_
    return knn_shrinkage(V, k_nearest_neighbors(V, model.n_neighbors), model.shrinkage_update, model.n_shrinkage_passes)


@pytest.mark.parametrize("n_bits", [8, 24])
def test_itq_on_shrunk_points_descends_to_its_fixed_point(clustered_features, n_bits):
    X, _ = clustered_features
    model = KNNH(n_bits=n_bits, random_state=5).fit(X)
    losses = model.quantization_loss_
    assert np.all(np.diff(losses) <= 1e-9 * losses[0]), losses
    assert losses[-1] < 0.95 * losses[0]
    assert model.n_iterations_ < model.n_iterations  # stopped at the fixed point, not by the cap
    shrunk = _shrunk_training_points(model, X)
    R = model.rotation_
    np.testing.assert_allclose(R.T @ R, np.eye(n_bits), atol=1e-10)
    B = np.where(shrunk @ R >= 0, 1.0, -1.0)
    assert losses[-1] == pytest.approx(np.sum((B - shrunk @ R) ** 2), rel=1e-10)
    # fixed point: one more Procrustes step returns the same rotation
    U, _, Wt = np.linalg.svd(shrunk.T @ B)
    np.testing.assert_allclose(U @ Wt, R, atol=1e-8)
    # stopping there equals running every iteration of plain ITQ from the same seeded start
    R_full, full_losses = itq_rotation(shrunk, model.n_iterations_ + 30, model._rng())
    np.testing.assert_allclose(R_full, R, atol=1e-8)
    np.testing.assert_allclose(full_losses[: len(losses)], losses, rtol=1e-10)


def test_encoding_is_out_of_sample_and_centred_on_the_training_mean(clustered_features):
    X = clustered_features[0].astype(np.float64)
    model = KNNH(n_bits=16).fit(X[:400])
    np.testing.assert_allclose(model.mean_, X[:400].mean(axis=0))
    expected = binarize((X - X[:400].mean(axis=0)) @ model.pca_ @ model.rotation_)
    np.testing.assert_array_equal(model.encode(X), expected)


def _map(model, Xq, yq, Xd, yd):
    return evaluate(model.encode(Xq), model.encode(Xd), yq, yd, pr_curve=False).map_tie_aware


def test_knnh_beats_lsh_and_pcah_and_matches_itq_at_32_bits(long_tail_benchmark):
    data = long_tail_benchmark
    X, _ = data.subset(data.train)
    Xq, yq = data.subset(data.query_index)
    Xd, yd = data.subset(data.database_index)
    knnh = _map(KNNH(n_bits=32).fit(X), Xq, yq, Xd, yd)
    lsh = [_map(LSH(n_bits=32, random_state=seed).fit(X), Xq, yq, Xd, yd) for seed in range(3)]
    pcah = _map(PCAH(n_bits=32).fit(X), Xq, yq, Xd, yd)
    itq = _map(ITQ(n_bits=32).fit(X), Xq, yq, Xd, yd)
    # measured: KNNH 0.607, ITQ 0.580, PCAH 0.342, LSH 0.236-0.268 (tie-aware MAP)
    assert knnh > max(lsh) + 0.2, (knnh, lsh)
    assert knnh > pcah + 0.15, (knnh, pcah)
    assert knnh >= itq - 0.02, (knnh, itq)


def test_bits_beyond_the_pca_rank_are_a_named_error(clustered_features):
    X, _ = clustered_features  # 32-d
    assert KNNH.max_bits_for(32, 600) == 32
    assert KNNH.max_bits_for(512, 30) == 29  # centred: rank <= n - 1
    with pytest.raises(InvalidInputError, match="n_bits <= 32"):
        KNNH(n_bits=33).fit(X)
    assert KNNH(n_bits=32).fit(X).encode(X).shape == (len(X), 32)


def test_bad_hyperparameters_are_named_errors(clustered_features):
    X, _ = clustered_features
    with pytest.raises(InvalidInputError, match="n_neighbors"):
        KNNH(n_bits=8, n_neighbors=20).fit(X[:20])
    with pytest.raises(InvalidInputError, match="n_neighbors"):
        KNNH(n_bits=8, n_neighbors=0).fit(X)
    with pytest.raises(InvalidInputError, match="shrinkage_update"):
        KNNH(n_bits=8, shrinkage_update="jacobi").fit(X)
    with pytest.raises(InvalidInputError, match="n_iterations"):
        KNNH(n_bits=8, n_iterations=0).fit(X)
    with pytest.raises(InvalidInputError, match="block_size"):
        KNNH(n_bits=8, neighbor_block_size=0).fit(X)
