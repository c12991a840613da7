"""SCDH: its own optimisation (exact block updates => monotone objective), the constrained Z-step,
the never-materialised similarity, small-data fallbacks, and retrieval quality against LSH."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchmark.metrics import evaluate
from methods.base import InvalidInputError, one_hot
from methods.lsh import LSH
from methods.scdh import SCDH, centred_orthogonal_factor, signed_label_similarity_product


def mean_average_precision(query_codes, db_codes, query_labels, db_labels):
    return evaluate(query_codes, db_codes, query_labels, db_labels, pr_curve=False).map_tie_aware


@pytest.fixture(scope="module")
def split(long_tail_split):
    return long_tail_split


@pytest.mark.parametrize("n_bits", [32, 96])
def test_objective_never_rises(split, n_bits):
    (X, y), _, _ = split
    model = SCDH(n_bits=n_bits, n_anchors=300).fit(X, y)
    for key in ("objective", "objective_steps"):
        values = np.asarray(model.training_log_[key])
        assert np.all(np.isfinite(values))
        rises = np.diff(values) / np.abs(values[:-1])
        assert rises.max() <= 1e-9, (key, values)
    assert len(model.training_log_["objective"]) == model.n_epochs
    # the first epoch improves on the random start by a real amount
    steps = model.training_log_["objective_steps"]
    assert steps[-1] < steps[0] * 0.999
    assert model.encode(X).shape == (len(X), n_bits)


def test_scdh_beats_lsh_at_64_bits(split):
    (X, y), (Xq, yq), (Xd, yd) = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer training items than the paper's 2000 anchors
        model = SCDH(n_bits=64).fit(X, y)
    scdh_map = mean_average_precision(model.encode(Xq), model.encode(Xd), yq, yd)
    lsh_maps = [mean_average_precision(*(lambda m: (m.encode(Xq), m.encode(Xd)))(LSH(64, random_state=s).fit(X)), yq, yd)
                for s in range(3)]
    assert scdh_map > np.mean(lsh_maps) + 0.2, (scdh_map, lsh_maps)


def test_z_step_satisfies_constraints_and_is_optimal():
    rng = np.random.default_rng(0)
    n, b = 60, 8
    C = rng.standard_normal((n, b))
    Z = centred_orthogonal_factor(C, np.random.default_rng(1))
    np.testing.assert_allclose(Z.sum(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(Z.T @ Z, n * np.eye(b), atol=1e-8)
    best = np.sum(Z * C)
    for _ in range(50):  # any other feasible point does no better
        Q, _ = np.linalg.qr(rng.standard_normal((n, b)) - 0)
        other = Q - Q.mean(axis=0)
        other = np.sqrt(n) * np.linalg.qr(other)[0]
        assert np.sum(other * C) <= best + 1e-9


def test_z_step_fills_rank_deficient_directions():
    rng = np.random.default_rng(0)
    n, b = 40, 6
    C = np.outer(rng.standard_normal(n), np.ones(b))  # rank one
    C[:, 3] = 5.0  # a constant column vanishes after centring
    Z = centred_orthogonal_factor(C, np.random.default_rng(2))
    assert np.all(np.isfinite(Z))
    np.testing.assert_allclose(Z.sum(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(Z.T @ Z, n * np.eye(b), atol=1e-8)


def test_similarity_product_matches_dense_matrix():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=30)
    Y = one_hot(y)
    S = 2.0 * Y @ Y.T - 1.0
    assert set(np.unique(S)) == {-1.0, 1.0}
    M = rng.standard_normal((30, 5))
    np.testing.assert_allclose(signed_label_similarity_product(Y, M), S @ M, atol=1e-12)


def test_fewer_items_than_anchors_and_single_sample_class(clustered_features):
    X, y = clustered_features
    X, y = X[:120].copy(), y[:120].copy()  # classes 0 and 1 only
    X = np.vstack([X, X[-1:] + 0.5])
    y = np.append(y, 9)  # a class with one sample
    with pytest.warns(UserWarning, match="anchors"):
        model = SCDH(n_bits=32, n_anchors=2000).fit(X, y)
    assert model.n_anchors_ == len(X)
    codes = model.encode(X)
    assert (codes.std(axis=0) > 0).sum() >= 16
    assert np.all(np.isfinite(model.projection_))


def test_too_few_items_for_the_orthogonality_constraint(clustered_features):
    X, y = clustered_features
    with pytest.raises(InvalidInputError, match="n_bits"):
        SCDH(n_bits=32, n_anchors=10).fit(X[:20], y[:20])
